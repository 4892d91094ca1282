//! Tensor-parallel layers: column- and row-parallel linear layers and a SwiGLU MLP.
//!
//! Megatron-style sharding over a group of `world_size` ranks: a [`ColumnParallelLinear`] holds
//! rows `rank * out / world_size ..` of the `[out, in]` weight and produces its slice of the
//! output features (no communication); a [`RowParallelLinear`] holds the matching columns of
//! its `[out, in]` weight, multiplies its slice of the input features and all-reduces the
//! partial outputs over the group. [`TpMlp`] chains them: `down(silu(gate(x)) * up(x))`, one
//! all-reduce per forward.
//!
//! # Which thread
//!
//! [`candle_core::Module::forward`] has no group argument, so the row-parallel layers hold
//! their [`Group`] (a cheap clone of the handle). A `Group` handle acts only on its rank's
//! thread: a forward on any other thread (the layer sent or shared elsewhere, or used after its
//! rank context ended) fails with symmem's wrong-thread error instead of touching another
//! rank's memory, so holding it is sound. Build each rank's layers on that rank's thread and
//! call them there.

use candle_core::{Module, Tensor};
use candle_nn::Linear;
use symmem::{Group, ReduceOp};

use crate::error::{Error, Result};
use crate::reduce::{all_reduce_with_report, AllReduceReport};

/// Rank `rank`'s slice of `tensor` along `dim`, when `dim`'s size divides by `world_size`:
/// `tensor.narrow(dim, rank * len, len)` with `len = size / world_size`, as a compact tensor
/// of its own (it does not keep the full tensor's storage alive, nor its autograd graph).
///
/// Errors ([`Error::Shard`]): `world_size` is 0, `rank >= world_size`, `dim` is not a
/// dimension of the tensor, or its size does not divide by `world_size`.
pub fn shard(tensor: &Tensor, dim: usize, rank: usize, world_size: usize) -> Result<Tensor> {
    let op = "shard";
    if world_size == 0 || rank >= world_size {
        return Err(Error::Shard {
            op,
            detail: format!(
                "rank {rank} of world size {world_size}: need 0 <= rank < world_size and world_size >= 1"
            ),
        });
    }
    let dims = tensor.dims();
    let Some(&size) = dims.get(dim) else {
        return Err(Error::Shard {
            op,
            detail: format!("dimension {dim} does not exist in a tensor of shape {dims:?}"),
        });
    };
    if size % world_size != 0 {
        return Err(Error::Shard {
            op,
            detail: format!(
                "dimension {dim} of shape {dims:?} has size {size}, which does not divide by the world size {world_size}; pick sizes that are multiples of the tensor-parallel degree"
            ),
        });
    }
    let len = size / world_size;
    Ok(tensor
        .narrow(dim, rank * len, len)?
        .force_contiguous()?
        .detach())
}

fn check_matrix(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match *t.dims() {
        [rows, cols] => Ok((rows, cols)),
        ref dims => Err(Error::Shard {
            op,
            detail: format!(
                "{what} must be a matrix [out_features, in_features], its shape is {dims:?}"
            ),
        }),
    }
}

fn check_bias(op: &'static str, bias: Option<&Tensor>, len: usize) -> Result<()> {
    if let Some(b) = bias {
        if b.dims() != [len] {
            return Err(Error::Shard {
                op,
                detail: format!(
                    "the bias must have shape [{len}] (the layer's output features), its shape is {:?}",
                    b.dims()
                ),
            });
        }
    }
    Ok(())
}

/// Check that `x`'s last dimension is `features` (candle's matmul would also refuse, with a
/// less specific message).
fn check_input(op: &'static str, x: &Tensor, features: usize) -> Result<()> {
    match x.dims().last() {
        Some(&k) if k == features => Ok(()),
        _ => Err(Error::Shard {
            op,
            detail: format!(
                "the input's last dimension must be this rank's {features} input features, the input's shape is {:?}",
                x.dims()
            ),
        }),
    }
}

/// A linear layer whose output features are split over the ranks: this rank computes
/// `x @ weight_shard^T (+ bias_shard)`, its `out_features / world_size` slice of the output.
/// No communication: the output stays sharded (feed it to a [`RowParallelLinear`]).
#[derive(Clone, Debug)]
pub struct ColumnParallelLinear {
    linear: Linear,
    in_features: usize,
    out_features: usize,
}

impl ColumnParallelLinear {
    /// A layer from this rank's shard: `weight` is `[out_features / world_size, in_features]`,
    /// `bias` (if any) `[out_features / world_size]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let op = "ColumnParallelLinear::new";
        let (out_features, in_features) = check_matrix(op, "the weight shard", &weight)?;
        check_bias(op, bias.as_ref(), out_features)?;
        Ok(ColumnParallelLinear {
            linear: Linear::new(weight, bias),
            in_features,
            out_features,
        })
    }

    /// Rank `rank`'s layer from the full `[out_features, in_features]` weight: rows
    /// `rank * out_features / world_size ..`. Errors if `out_features` does not divide by
    /// `world_size` or the rank is out of range.
    pub fn from_full(weight: &Tensor, rank: usize, world_size: usize) -> Result<Self> {
        Self::from_full_with_bias(weight, None, rank, world_size)
    }

    /// [`from_full`](Self::from_full) with the full `[out_features]` bias, sharded the same way.
    pub fn from_full_with_bias(
        weight: &Tensor,
        bias: Option<&Tensor>,
        rank: usize,
        world_size: usize,
    ) -> Result<Self> {
        let op = "ColumnParallelLinear::from_full";
        let (out, _) = check_matrix(op, "the full weight", weight)?;
        check_bias(op, bias, out)?;
        let w = shard(weight, 0, rank, world_size)?;
        let b = bias.map(|b| shard(b, 0, rank, world_size)).transpose()?;
        Self::new(w, b)
    }

    /// This rank's weight shard, `[out_features / world_size, in_features]`.
    pub fn weight(&self) -> &Tensor {
        self.linear.weight()
    }

    /// This rank's bias shard, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.linear.bias()
    }

    /// Input features (all of them: the input is replicated).
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features of this rank's shard.
    pub fn local_out_features(&self) -> usize {
        self.out_features
    }

    fn forward_inner(&self, x: &Tensor) -> Result<Tensor> {
        check_input("ColumnParallelLinear::forward", x, self.in_features)?;
        Ok(self.linear.forward(x)?)
    }
}

impl Module for ColumnParallelLinear {
    /// `x` is `[.., in_features]` (the same on every rank); the result `[.., out_features /
    /// world_size]` is this rank's slice of the output.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_inner(x)?)
    }
}

/// A linear layer whose input features are split over the ranks: this rank computes the
/// partial product `x_shard @ weight_shard^T`, the partials are all-reduced (summed) over the
/// group (into a symmetric buffer, see [`crate::all_reduce`]), and the full bias, if any, is
/// added once after the sum. Every rank gets the full `[.., out_features]` output.
#[derive(Clone, Debug)]
pub struct RowParallelLinear {
    linear: Linear,
    bias: Option<Tensor>,
    group: Group,
    in_features: usize,
    out_features: usize,
}

impl RowParallelLinear {
    /// A layer from this rank's shard: `weight` is `[out_features, in_features / world_size]`,
    /// `bias` (the full one, added after the all-reduce) `[out_features]`. The forward
    /// all-reduces over `group` (the handle is kept; see the module docs on threads).
    pub fn new(weight: Tensor, bias: Option<Tensor>, group: &Group) -> Result<Self> {
        let op = "RowParallelLinear::new";
        let (out_features, in_features) = check_matrix(op, "the weight shard", &weight)?;
        check_bias(op, bias.as_ref(), out_features)?;
        Ok(RowParallelLinear {
            linear: Linear::new(weight, None),
            bias,
            group: group.clone(),
            in_features,
            out_features,
        })
    }

    /// This rank's layer from the full `[out_features, in_features]` weight: columns
    /// `rank * in_features / world_size ..`, with the rank and world size of `group`. Errors if
    /// `in_features` does not divide by the group's size.
    pub fn from_full(weight: &Tensor, group: &Group) -> Result<Self> {
        Self::from_full_with_bias(weight, None, group)
    }

    /// [`from_full`](Self::from_full) with the full `[out_features]` bias (not sharded: it is
    /// added once, after the all-reduce).
    pub fn from_full_with_bias(
        weight: &Tensor,
        bias: Option<&Tensor>,
        group: &Group,
    ) -> Result<Self> {
        let op = "RowParallelLinear::from_full";
        let (out, _) = check_matrix(op, "the full weight", weight)?;
        check_bias(op, bias, out)?;
        let w = shard(weight, 1, group.rank(), group.size())?;
        Self::new(w, bias.cloned(), group)
    }

    /// This rank's weight shard, `[out_features, in_features / world_size]`.
    pub fn weight(&self) -> &Tensor {
        self.linear.weight()
    }

    /// The full bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The group the forward all-reduces over.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Input features of this rank's shard.
    pub fn local_in_features(&self) -> usize {
        self.in_features
    }

    /// Output features (all of them: the output is replicated).
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The forward, also returning what its all-reduce did (the path it took and why).
    pub fn forward_with_report(&self, x: &Tensor) -> Result<(Tensor, AllReduceReport)> {
        check_input("RowParallelLinear::forward", x, self.in_features)?;
        let partial = self.linear.forward(x)?;
        let (y, report) = all_reduce_with_report(&self.group, &partial, ReduceOp::Sum)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        Ok((y, report))
    }
}

impl Module for RowParallelLinear {
    /// `x` is `[.., in_features / world_size]` (this rank's slice, e.g. a
    /// [`ColumnParallelLinear`]'s output); the result `[.., out_features]` is the same on every
    /// rank. A collective: every rank of the group calls it, on its own thread.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_with_report(x)?.0)
    }
}

/// Check the shapes of a SwiGLU MLP's weights.
fn check_mlp(op: &'static str, gate: &Tensor, up: &Tensor, down: &Tensor) -> Result<()> {
    let (gi, gh) = check_matrix(op, "the gate weight", gate)?;
    let (ui, uh) = check_matrix(op, "the up weight", up)?;
    let (dh, di) = check_matrix(op, "the down weight", down)?;
    if (gi, gh) != (ui, uh) || (dh, di) != (gh, gi) {
        return Err(Error::Shard {
            op,
            detail: format!(
                "gate {:?} and up {:?} must be [intermediate, hidden] and down {:?} [hidden, intermediate]",
                gate.dims(),
                up.dims(),
                down.dims()
            ),
        });
    }
    Ok(())
}

/// A tensor-parallel SwiGLU MLP: `down(silu(gate(x)) * up(x))` with `gate` and `up`
/// column-parallel and `down` row-parallel, so each rank holds `1 / world_size` of the
/// intermediate features and one all-reduce per forward combines the partial outputs.
#[derive(Clone, Debug)]
pub struct TpMlp {
    gate: ColumnParallelLinear,
    up: ColumnParallelLinear,
    down: RowParallelLinear,
}

impl TpMlp {
    /// This rank's MLP from the full weights (no biases): `gate` and `up` are
    /// `[intermediate, hidden]`, `down` is `[hidden, intermediate]`, the rank and world size
    /// those of `group`. Errors if the shapes disagree or `intermediate` does not divide by the
    /// group's size.
    pub fn from_full(gate: &Tensor, up: &Tensor, down: &Tensor, group: &Group) -> Result<Self> {
        check_mlp("TpMlp::from_full", gate, up, down)?;
        let (rank, size) = (group.rank(), group.size());
        Ok(TpMlp {
            gate: ColumnParallelLinear::from_full(gate, rank, size)?,
            up: ColumnParallelLinear::from_full(up, rank, size)?,
            down: RowParallelLinear::from_full(down, group)?,
        })
    }

    /// The gate projection (this rank's shard).
    pub fn gate(&self) -> &ColumnParallelLinear {
        &self.gate
    }

    /// The up projection (this rank's shard).
    pub fn up(&self) -> &ColumnParallelLinear {
        &self.up
    }

    /// The down projection (this rank's shard; its forward all-reduces).
    pub fn down(&self) -> &RowParallelLinear {
        &self.down
    }

    /// The forward, also returning what its all-reduce did.
    pub fn forward_with_report(&self, x: &Tensor) -> Result<(Tensor, AllReduceReport)> {
        let g = self.gate.forward_inner(x)?;
        let u = self.up.forward_inner(x)?;
        let h = (g.silu()? * u)?;
        self.down.forward_with_report(&h)
    }
}

impl Module for TpMlp {
    /// `x` is `[.., hidden]` (the same on every rank); the result `[.., hidden]` is the same on
    /// every rank. A collective: every rank of the group calls it, on its own thread.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_with_report(x)?.0)
    }
}

/// The unsharded SwiGLU MLP `down(silu(gate(x)) * up(x))` on full weights, computed by candle
/// alone: the reference [`TpMlp`] is compared with.
#[derive(Clone, Debug)]
pub struct SwiGluMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl SwiGluMlp {
    /// The MLP of `gate` and `up` `[intermediate, hidden]` and `down` `[hidden, intermediate]`.
    pub fn new(gate: &Tensor, up: &Tensor, down: &Tensor) -> Result<Self> {
        check_mlp("SwiGluMlp::new", gate, up, down)?;
        Ok(SwiGluMlp {
            gate: Linear::new(gate.clone(), None),
            up: Linear::new(up.clone(), None),
            down: Linear::new(down.clone(), None),
        })
    }
}

impl Module for SwiGluMlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = (self.gate.forward(x)?.silu()? * self.up.forward(x)?)?;
        self.down.forward(&h)
    }
}
