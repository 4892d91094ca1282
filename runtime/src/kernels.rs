//! Which collectives NCCL runs on its symmetric kernels: the table, as data.
//!
//! NCCL (2.27 to 2.32) builds symmetric kernels only for all-reduce with `Sum`, reduce-scatter
//! with `Sum` or `Avg`, and all-gather, on `f32`, `f16` and `bf16` (and fp8, which symmem has
//! no element type for); see `src/device/symmetric/generate.py` and `src/enqueue.cc`
//! (`ncclSymkAvailable`) in NCCL's sources. Anything else on a symmetric buffer runs NCCL's
//! regular kernels: correct, but without the speed-up. NCCL also picks them only when every rank
//! of the communicator is NVLink-connected and the operand lies in a window registered with
//! `NCCL_WIN_COLL_SYMMETRIC` at the same offset on every rank.
//!
//! `Group::symmetric_kernels` asks the group's communicator (the host backend's symmetric path
//! serves every collective; the NCCL communicator answers from [`symmetric_kernel_exists`] and
//! whether it registers windows at all).

use crate::dtype::{DType, ReduceOp};

/// A collective, as the symmetric-kernel table names them.
///
/// More collectives may be added in any release (`#[non_exhaustive]`): a `match` on it needs a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Collective {
    /// `Group::all_reduce`, `Group::all_reduce_into`.
    AllReduce,
    /// `Group::all_gather`.
    AllGather,
    /// `Group::reduce_scatter`.
    ReduceScatter,
    /// `Group::broadcast`.
    Broadcast,
}

/// Whether NCCL has a symmetric kernel for `collective` with `op` (ignored for all-gather and
/// broadcast) on `dtype`.
pub const fn symmetric_kernel_exists(collective: Collective, op: ReduceOp, dtype: DType) -> bool {
    let float = matches!(dtype, DType::F32 | DType::F16 | DType::BF16);
    float
        && match collective {
            Collective::AllReduce => matches!(op, ReduceOp::Sum),
            Collective::ReduceScatter => matches!(op, ReduceOp::Sum | ReduceOp::Avg),
            Collective::AllGather => true,
            Collective::Broadcast => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Collective::*;
        assert!(symmetric_kernel_exists(
            AllReduce,
            ReduceOp::Sum,
            DType::BF16
        ));
        assert!(!symmetric_kernel_exists(
            AllReduce,
            ReduceOp::Avg,
            DType::F32
        ));
        assert!(!symmetric_kernel_exists(
            AllReduce,
            ReduceOp::Max,
            DType::F32
        ));
        assert!(!symmetric_kernel_exists(
            AllReduce,
            ReduceOp::Sum,
            DType::F64
        ));
        assert!(!symmetric_kernel_exists(
            AllReduce,
            ReduceOp::Sum,
            DType::I32
        ));
        assert!(symmetric_kernel_exists(
            ReduceScatter,
            ReduceOp::Avg,
            DType::F16
        ));
        assert!(symmetric_kernel_exists(
            AllGather,
            ReduceOp::Max,
            DType::F32
        ));
        assert!(!symmetric_kernel_exists(
            Broadcast,
            ReduceOp::Sum,
            DType::F32
        ));
    }
}
