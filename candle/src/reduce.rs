//! The tensor all-reduce, and which path (symmetric or plain) it takes.

use candle_core::Tensor;
use symmem::{Buffer, Collective, Group, ReduceOp};

use crate::convert::{from_buffer, symmem_dtype, to_buffer, TensorElement};
use crate::error::{Error, Result};

/// Why an all-reduce takes (or would take) the plain path instead of the symmetric one. The
/// plain path gives the same result; it is only slower on CUDA.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlainReason {
    /// The candle dtype has no symmem element type: the all-reduce does not run at all.
    UnsupportedDType(candle_core::DType),
    /// The group's communicator registers no symmetric windows (on CUDA: NCCL returned no
    /// window, for example for an unsupported topology), so its buffers are not symmetric.
    NoSymmetricWindows {
        /// The group.
        group: String,
    },
    /// The backend has no symmetric kernel for this reduction and element type (on CUDA,
    /// NCCL's symmetric all-reduce is `Sum` over `f32`, `f16` and `bf16`).
    NoSymmetricKernel {
        /// The group.
        group: String,
        /// The reduction.
        op: ReduceOp,
        /// The element type.
        dtype: symmem::DType,
    },
    /// The buffer does not come from this group's symmetric pool (allocated outside the
    /// group's window, or in another group's window).
    BufferNotSymmetric {
        /// The group of the collective.
        group: String,
        /// The pool the buffer came from (`default`, or another group's name).
        pool: String,
    },
}

impl std::fmt::Display for PlainReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlainReason::UnsupportedDType(d) => write!(
                f,
                "candle dtype {d:?} has no symmem element type (use f32, f64, f16, bf16 or an integer type)"
            ),
            PlainReason::NoSymmetricWindows { group } => write!(
                f,
                "group `{group}` registers no symmetric windows on this backend (see `Group::symmetric_supported`)"
            ),
            PlainReason::NoSymmetricKernel { group, op, dtype } => write!(
                f,
                "group `{group}`'s backend has no symmetric all-reduce kernel for {op:?} on {dtype} (NCCL's is Sum over f32, f16, bf16)"
            ),
            PlainReason::BufferNotSymmetric { group, pool } => write!(
                f,
                "the buffer comes from pool `{pool}`, not from group `{group}`'s symmetric pool: allocate it inside `group.window()`"
            ),
        }
    }
}

/// Which path an all-reduce takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollectivePath {
    /// The symmetric path (NCCL's symmetric kernels on CUDA; direct peer reads on the host
    /// backend).
    Symmetric,
    /// The plain path, and why.
    Plain(PlainReason),
}

impl CollectivePath {
    /// Whether this is the symmetric path.
    pub fn is_symmetric(&self) -> bool {
        matches!(self, CollectivePath::Symmetric)
    }
}

/// What a tensor all-reduce did: which group, element type, reduction and length, and which
/// path it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllReduceReport {
    /// The group.
    pub group: String,
    /// The element type.
    pub dtype: symmem::DType,
    /// The reduction.
    pub op: ReduceOp,
    /// Number of elements reduced.
    pub elements: usize,
    /// The path taken.
    pub path: CollectivePath,
}

/// The path given the group's properties and whether the buffer is from its symmetric pool.
fn decide(
    group: &Group,
    dtype: symmem::DType,
    op: ReduceOp,
    buffer_pool: Option<(&str, bool)>,
) -> CollectivePath {
    if !group.symmetric_supported() {
        return CollectivePath::Plain(PlainReason::NoSymmetricWindows {
            group: group.name().to_string(),
        });
    }
    if let Some((pool, symmetric_here)) = buffer_pool {
        if !symmetric_here {
            return CollectivePath::Plain(PlainReason::BufferNotSymmetric {
                group: group.name().to_string(),
                pool: pool.to_string(),
            });
        }
    }
    if !group.symmetric_kernels(Collective::AllReduce, op, dtype) {
        return CollectivePath::Plain(PlainReason::NoSymmetricKernel {
            group: group.name().to_string(),
            op,
            dtype,
        });
    }
    CollectivePath::Symmetric
}

/// Whether [`all_reduce`] of a tensor of `dtype` with `op` on `group` takes the symmetric path:
/// `Ok(())` if it does, else the reason it takes the plain one. Answers from the group's
/// properties alone (no collective, any thread).
pub fn would_use_symmetric(
    group: &Group,
    dtype: candle_core::DType,
    op: ReduceOp,
) -> std::result::Result<(), PlainReason> {
    let dtype = symmem_dtype(dtype).map_err(|_| PlainReason::UnsupportedDType(dtype))?;
    match decide(group, dtype, op, None) {
        CollectivePath::Symmetric => Ok(()),
        CollectivePath::Plain(why) => Err(why),
    }
}

/// The path `group.all_reduce(buffer, op)` takes for this buffer: symmetric only if the buffer
/// comes from `group`'s own symmetric pool and the backend has a symmetric kernel for `op` on
/// `T`.
pub fn buffer_path<T: TensorElement>(
    group: &Group,
    buffer: &Buffer<T>,
    op: ReduceOp,
) -> CollectivePath {
    let here = buffer.is_symmetric() && buffer.group_name() == Some(group.name());
    decide(
        group,
        <T as symmem::Element>::DTYPE,
        op,
        Some((buffer.pool_label(), here)),
    )
}

fn reduce_as<T: TensorElement>(
    group: &Group,
    tensor: &Tensor,
    op: ReduceOp,
) -> Result<(Tensor, AllReduceReport)> {
    let mut buffer = {
        let _window = group.window();
        to_buffer::<T>(tensor)?
    };
    let report = AllReduceReport {
        group: group.name().to_string(),
        dtype: <T as symmem::Element>::DTYPE,
        op,
        elements: buffer.len(),
        path: buffer_path(group, &buffer, op),
    };
    group.all_reduce(&mut buffer, op)?;
    let out = from_buffer(&buffer, tensor.shape().clone(), tensor.device())?;
    Ok((out, report))
}

/// All-reduce a CPU tensor over `group`: every rank passes a tensor of the same shape and
/// dtype and gets back a new tensor holding `op` over all ranks' tensors.
///
/// The tensor is copied into a buffer allocated inside the group's window (so it is
/// symmetric), the group's all-reduce runs on it, and the result is copied into a new tensor
/// (two copies; the input tensor is not changed). If the symmetric path does not apply
/// ([`would_use_symmetric`]), the same call runs the plain path; [`all_reduce_with_report`]
/// says which ran and why.
///
/// The result is a new tensor outside candle's autograd graph (no gradient flows through it).
/// Call it on the thread of `group`'s rank; every rank of the group must call it, in the same
/// order as its other collectives. Errors: another thread, a dtype without symmem element type,
/// a CUDA tensor ([`Error::CudaNotImplemented`]), a collective that fails or times out.
pub fn all_reduce(group: &Group, tensor: &Tensor, op: ReduceOp) -> Result<Tensor> {
    all_reduce_with_report(group, tensor, op).map(|(t, _)| t)
}

/// [`all_reduce`], also returning which path it took.
pub fn all_reduce_with_report(
    group: &Group,
    tensor: &Tensor,
    op: ReduceOp,
) -> Result<(Tensor, AllReduceReport)> {
    use candle_core::DType as C;
    match tensor.dtype() {
        C::F32 => reduce_as::<f32>(group, tensor, op),
        C::F64 => reduce_as::<f64>(group, tensor, op),
        C::F16 => reduce_as::<half::f16>(group, tensor, op),
        C::BF16 => reduce_as::<half::bf16>(group, tensor, op),
        C::U8 => reduce_as::<u8>(group, tensor, op),
        C::U32 => reduce_as::<u32>(group, tensor, op),
        C::I32 => reduce_as::<i32>(group, tensor, op),
        C::I64 => reduce_as::<i64>(group, tensor, op),
        dtype => Err(Error::UnsupportedDType {
            op: "all_reduce",
            dtype,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons the host backend cannot produce (its groups register windows and serve every
    /// reduction) still say what happened and where.
    #[test]
    fn every_reason_names_the_group_and_the_cause() {
        let reasons = [
            (
                PlainReason::NoSymmetricWindows { group: "tp".into() },
                "registers no symmetric windows",
            ),
            (
                PlainReason::NoSymmetricKernel {
                    group: "tp".into(),
                    op: ReduceOp::Prod,
                    dtype: symmem::DType::F64,
                },
                "Prod on f64",
            ),
            (
                PlainReason::BufferNotSymmetric {
                    group: "tp".into(),
                    pool: "default".into(),
                },
                "pool `default`",
            ),
        ];
        for (why, cause) in reasons {
            let text = why.to_string();
            assert!(text.contains("`tp`") && text.contains(cause), "{text}");
        }
        let text = PlainReason::UnsupportedDType(candle_core::DType::I16).to_string();
        assert!(text.contains("I16"), "{text}");
        assert!(
            !CollectivePath::Plain(PlainReason::NoSymmetricWindows { group: "tp".into() })
                .is_symmetric()
        );
    }
}
