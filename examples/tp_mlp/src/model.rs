//! The tensor-parallel gated MLP (SwiGLU), Megatron style, on one rank of group `"tp"`.
//!
//! Row-major throughout: `x` is `[tokens, hidden]`, `W_gate` and `W_up` are `[hidden, ffn]`,
//! `W_down` is `[ffn, hidden]`, and one layer computes
//!
//! ```text
//! h = silu(x @ W_gate) * (x @ W_up)        y = h @ W_down        x <- x + y
//! ```
//!
//! Rank `r` of `tp` ranks holds columns `[r * ffn/tp, (r + 1) * ffn/tp)` of `W_gate` and `W_up`
//! (column parallel: no communication) and the matching rows of `W_down` (row parallel: it
//! produces a partial sum over the full hidden size), so one all-reduce over `"tp"` per layer
//! completes `y`. The gate and up shards are stored side by side as one `[hidden, 2 * ffn/tp]`
//! matrix (gate columns, then up columns), so both projections are one GEMM.
//!
//! The down projection's output comes from [`TpMlp::down_proj`], annotated
//! `#[symmetric_memory(group = "tp")]`: it is allocated from the group's symmetric pool, so the
//! all-reduce runs on symmetric memory (NCCL's symmetric kernels on CUDA). Everything else
//! (weights, `gate_up`, `h`, the residual stream) comes from the rank's default pool.
//!
//! The arithmetic is behind [`Kernels`]: matrixmultiply on the host backend (`host.rs`),
//! cuBLAS and an NVRTC kernel on CUDA (`cuda.rs`).

use symmem::{symmetric_memory, Buffer, Element, Error, Group, ReduceOp};

use crate::gen::{self, Slice, Weight};

/// Name of the tensor-parallel group (the `#[symmetric_memory]` attribute names it too).
pub const TP_GROUP: &str = "tp";

/// Bytes of each of the two buffers of the copy-bandwidth probe on the host backend (the
/// default of [`Kernels::probe_copy_bytes`]).
pub const HOST_PROBE_COPY_BYTES: usize = 64 << 20;

/// Bytes of each of the two buffers of the copy-bandwidth probe on the CUDA backend.
pub const CUDA_PROBE_COPY_BYTES: usize = 1 << 30;

/// The device work a rank's MLP needs. Every method queues work on the rank's stream (so it
/// is recorded by `symmem::capture`) and returns without waiting for it.
pub trait Kernels<T: Element> {
    /// `c[m x n] = a[m x k] @ b[k x n]`, row-major.
    fn gemm(
        &self,
        a: &Buffer<T>,
        b: &Buffer<T>,
        c: &mut Buffer<T>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), Error>;

    /// `h[r][c] = silu(gu[r][c]) * gu[r][shard + c]` for `rows` rows: `gu` is `[rows, 2 * shard]`
    /// (gate columns, then up columns), `h` is `[rows, shard]`.
    fn silu_mul(
        &self,
        gu: &Buffer<T>,
        h: &mut Buffer<T>,
        rows: usize,
        shard: usize,
    ) -> Result<(), Error>;

    /// The column-parallel half of a layer: `h = silu(x @ W_gate) * (x @ W_up)`, `[m, shard]`,
    /// from `x` (`[m, k]`) and `w` (`[k, 2 * shard]`, gate columns, then up columns). The
    /// default runs [`Kernels::gemm`] into a temporary `[m, 2 * shard]` buffer and
    /// [`Kernels::silu_mul`]; a backend may fuse the two (the CUDA backend's skinny decode
    /// kernels do, where they are chosen).
    fn gate_up_silu(
        &self,
        x: &Buffer<T>,
        w: &Buffer<T>,
        h: &mut Buffer<T>,
        m: usize,
        k: usize,
        shard: usize,
    ) -> Result<(), Error> {
        gate_up_unfused(self, x, w, h, m, k, shard)
    }

    /// `out = a + b`, elementwise.
    fn add(&self, a: &Buffer<T>, b: &Buffer<T>, out: &mut Buffer<T>) -> Result<(), Error>;

    /// How the kernels compute, for the report (e.g. "matrixmultiply sgemm, f32 compute").
    fn describe(&self) -> String;

    /// Bytes of the device-to-device copy that measures the copy bandwidth.
    fn probe_copy_bytes(&self) -> usize {
        HOST_PROBE_COPY_BYTES
    }

    /// The GEMM algorithm choices made so far (rank 0's cuBLASLt tuning; empty elsewhere), for
    /// the `gemm_choice` records.
    fn gemm_choices(&self) -> Vec<crate::results::GemmChoice> {
        Vec::new()
    }
}

/// The default [`Kernels::gate_up_silu`]: `kernels.gemm` into a temporary `[m, 2 * shard]`
/// buffer, then `kernels.silu_mul` (also the CUDA backend's unfused path, which its fused
/// kernels are checked and timed against).
pub fn gate_up_unfused<T: Element, K: Kernels<T> + ?Sized>(
    kernels: &K,
    x: &Buffer<T>,
    w: &Buffer<T>,
    h: &mut Buffer<T>,
    m: usize,
    k: usize,
    shard: usize,
) -> Result<(), Error> {
    let mut gu = symmem::alloc::<T>(m * 2 * shard)?;
    kernels.gemm(x, w, &mut gu, m, k, 2 * shard)?;
    kernels.silu_mul(&gu, h, m, shard)
}

/// Sizes of the model on one rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Hidden size.
    pub hidden: usize,
    /// FFN size of the full MLP.
    pub ffn: usize,
    /// Number of layers.
    pub layers: usize,
    /// Tensor-parallel degree.
    pub tp: usize,
    /// This rank's index in the group.
    pub rank: usize,
}

impl Dims {
    /// Check the sizes: all at least 1, `rank < tp`, and `tp` dividing `ffn`.
    pub fn new(
        hidden: usize,
        ffn: usize,
        layers: usize,
        tp: usize,
        rank: usize,
    ) -> Result<Dims, Error> {
        let invalid = |detail: String| Error::InvalidArgument {
            op: "TpMlp",
            detail,
        };
        if hidden == 0 || ffn == 0 || layers == 0 || tp == 0 {
            return Err(invalid(format!(
                "sizes must be at least 1 (hidden {hidden}, ffn {ffn}, layers {layers}, tp {tp})"
            )));
        }
        if !ffn.is_multiple_of(tp) {
            return Err(invalid(format!(
                "tp {tp} does not divide ffn {ffn}; every rank needs ffn / tp whole columns"
            )));
        }
        if rank >= tp {
            return Err(invalid(format!("rank {rank} is not below tp {tp}")));
        }
        Ok(Dims {
            hidden,
            ffn,
            layers,
            tp,
            rank,
        })
    }

    /// FFN columns per rank, `ffn / tp`.
    pub fn shard(&self) -> usize {
        self.ffn / self.tp
    }

    /// Weight elements one rank holds per layer.
    pub fn weight_elems_per_layer(&self) -> usize {
        3 * self.hidden * self.shard()
    }

    /// This rank's `[hidden, 2 * shard]` gate-and-up matrix and `[shard, hidden]` down matrix
    /// of layer `layer`, generated from `seed` (see `gen.rs`). Fails with
    /// [`Error::HostAlloc`] when the host cannot hold them.
    pub fn shard_weights<T: Element>(
        &self,
        seed: u64,
        layer: usize,
    ) -> Result<(Vec<T>, Vec<T>), Error> {
        let (h, f, s) = (self.hidden, self.ffn, self.shard());
        let oom = |n: usize| Error::HostAlloc {
            bytes: n.saturating_mul(std::mem::size_of::<T>()),
        };
        let conv = |v: f64| T::from_f64(v);
        let cols = Slice {
            row0: 0,
            rows: h,
            col0: self.rank * s,
            cols: s,
            full_cols: f,
        };
        let gate = gen::generate(
            seed,
            Weight::Gate.tensor_id(layer),
            Weight::Gate.scale(h, f),
            cols,
            conv,
        )
        .map_err(|_| oom(h * s))?;
        let up = gen::generate(
            seed,
            Weight::Up.tensor_id(layer),
            Weight::Up.scale(h, f),
            cols,
            conv,
        )
        .map_err(|_| oom(h * s))?;
        let mut gate_up = Vec::new();
        gate_up
            .try_reserve_exact(2 * h * s)
            .map_err(|_| oom(2 * h * s))?;
        for r in 0..h {
            gate_up.extend_from_slice(&gate[r * s..(r + 1) * s]);
            gate_up.extend_from_slice(&up[r * s..(r + 1) * s]);
        }
        let rows = Slice {
            row0: self.rank * s,
            rows: s,
            col0: 0,
            cols: h,
            full_cols: h,
        };
        let down = gen::generate(
            seed,
            Weight::Down.tensor_id(layer),
            Weight::Down.scale(h, f),
            rows,
            conv,
        )
        .map_err(|_| oom(s * h))?;
        Ok((gate_up, down))
    }
}

/// One layer's weights on this rank.
pub struct LayerShard<T: Element> {
    /// `[hidden, 2 * shard]`: this rank's gate columns, then its up columns.
    pub w_gate_up: Buffer<T>,
    /// `[shard, hidden]`: this rank's rows of `W_down`.
    pub w_down: Buffer<T>,
}

/// A rank's shard of the stacked MLP, with the kernels that run it.
pub struct TpMlp<T: Element, K: Kernels<T>> {
    dims: Dims,
    layers: Vec<LayerShard<T>>,
    kernels: K,
    tp: Group,
}

impl<T: Element, K: Kernels<T>> TpMlp<T, K> {
    /// Generate this rank's shards from `seed` and upload them once (blocking copies; call it
    /// outside capture). `tp` must be the group named `"tp"`; `tp.size()` must divide `ffn`.
    pub fn new(
        tp: Group,
        hidden: usize,
        ffn: usize,
        layers: usize,
        seed: u64,
        kernels: K,
    ) -> Result<Self, Error> {
        if tp.name() != TP_GROUP {
            return Err(Error::InvalidArgument {
                op: "TpMlp::new",
                detail: format!(
                    "the model all-reduces over group `{TP_GROUP}`, not `{}`",
                    tp.name()
                ),
            });
        }
        let dims = Dims::new(hidden, ffn, layers, tp.size(), tp.rank())?;
        let mut shards = Vec::with_capacity(layers);
        for l in 0..layers {
            let (gate_up, down) = dims.shard_weights::<T>(seed, l)?;
            shards.push(LayerShard {
                w_gate_up: symmem::alloc_from_host(&gate_up)?,
                w_down: symmem::alloc_from_host(&down)?,
            });
        }
        Ok(TpMlp {
            dims,
            layers: shards,
            kernels,
            tp,
        })
    }

    /// The model's sizes on this rank.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The kernels.
    pub fn kernels(&self) -> &K {
        &self.kernels
    }

    /// The tensor-parallel group.
    pub fn group(&self) -> &Group {
        &self.tp
    }

    /// Layer `layer`'s weights.
    pub fn layer(&self, layer: usize) -> &LayerShard<T> {
        &self.layers[layer]
    }

    /// Bytes of weights this rank reads per step (every layer's shards once).
    pub fn weight_bytes(&self) -> usize {
        self.dims.layers * self.dims.weight_elems_per_layer() * std::mem::size_of::<T>()
    }

    fn check_input(
        &self,
        op: &'static str,
        buf: &Buffer<T>,
        tokens: usize,
        cols: usize,
    ) -> Result<(), Error> {
        if buf.len() != tokens * cols {
            return Err(Error::LengthMismatch {
                op,
                detail: format!(
                    "expected {tokens} x {cols} = {} elements, got {}",
                    tokens * cols,
                    buf.len()
                ),
            });
        }
        Ok(())
    }

    /// Column-parallel half of layer `layer`: `h = silu(x @ W_gate) * (x @ W_up)` on this rank's
    /// columns, `[tokens, ffn/tp]`, from the default pool.
    pub fn gate_up(&self, layer: usize, x: &Buffer<T>, tokens: usize) -> Result<Buffer<T>, Error> {
        let Dims { hidden, .. } = self.dims;
        let s = self.dims.shard();
        self.check_input("TpMlp::gate_up", x, tokens, hidden)?;
        let w = &self.layers[layer];
        let mut h = symmem::alloc::<T>(tokens * s)?;
        self.kernels
            .gate_up_silu(x, &w.w_gate_up, &mut h, tokens, hidden, s)?;
        Ok(h)
    }

    /// Row-parallel half of layer `layer`: this rank's partial `h @ W_down`, `[tokens, hidden]`.
    ///
    /// The output is allocated inside the `"tp"` group's window, so it comes from the group's
    /// symmetric pool and the all-reduce that follows takes the symmetric path.
    #[symmetric_memory(group = "tp")]
    pub fn down_proj(
        &self,
        layer: usize,
        h: &Buffer<T>,
        tokens: usize,
    ) -> Result<Buffer<T>, Error> {
        let Dims { hidden, .. } = self.dims;
        let s = self.dims.shard();
        self.check_input("TpMlp::down_proj", h, tokens, s)?;
        let mut y = symmem::alloc::<T>(tokens * hidden)?;
        self.kernels
            .gemm(h, &self.layers[layer].w_down, &mut y, tokens, s, hidden)?;
        Ok(y)
    }

    /// One layer: `x + all_reduce(down_proj(gate_up(x)))`, as a new buffer.
    pub fn layer_forward(
        &self,
        layer: usize,
        x: &Buffer<T>,
        tokens: usize,
    ) -> Result<Buffer<T>, Error> {
        let h = self.gate_up(layer, x, tokens)?;
        let mut y = self.down_proj(layer, &h, tokens)?;
        drop(h);
        self.tp.all_reduce(&mut y, ReduceOp::Sum)?;
        let mut out = symmem::alloc::<T>(x.len())?;
        self.kernels.add(x, &y, &mut out)?;
        Ok(out)
    }

    /// One step: every layer in turn, `x <- x + mlp_l(x)`. `x` is `[tokens, hidden]` and is
    /// not modified; the result is a new buffer (graph-owned when captured).
    pub fn forward(&self, x: &Buffer<T>, tokens: usize) -> Result<Buffer<T>, Error> {
        self.check_input("TpMlp::forward", x, tokens, self.dims.hidden)?;
        let mut cur = self.layer_forward(0, x, tokens)?;
        for l in 1..self.dims.layers {
            cur = self.layer_forward(l, &cur, tokens)?;
        }
        Ok(cur)
    }

    /// Symmetric bytes a captured step needs reserved in the `"tp"` pool beforehand (one
    /// down-projection output per layer, rounded generously).
    pub fn symmetric_reserve(&self, tokens: usize) -> usize {
        let one = (tokens * self.dims.hidden * std::mem::size_of::<T>()).div_ceil(4096) * 4096;
        self.dims.layers * (one + 4096)
    }
}

/// A zeroed buffer of `len` elements from the `"tp"` group's symmetric pool (for timing the
/// all-reduce on symmetric memory).
#[symmetric_memory(group = "tp")]
pub fn symmetric_zeros<T: Element>(len: usize) -> Result<Buffer<T>, Error> {
    symmem::alloc_zeroed::<T>(len)
}
