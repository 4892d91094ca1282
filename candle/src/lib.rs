//! # symmem-candle
//!
//! [candle](https://docs.rs/candle-core) tensors on [symmem](https://docs.rs/symmem)
//! symmetric memory: copies between `Tensor` and `Buffer`, a tensor all-reduce that runs on a
//! symmetric buffer, and tensor-parallel linear layers and a SwiGLU MLP that implement
//! [`candle_core::Module`].
//!
//! ```
//! use candle_core::{Device, Module, Tensor};
//! use symmem::ReduceOp;
//! use symmem_candle::{all_reduce, TpMlp};
//!
//! let outs = symmem::host::run(2, |ctx| -> symmem_candle::Result<Vec<f32>> {
//!     let tp = ctx.world();
//!     // Every rank sums its tensor with the others'.
//!     let x = Tensor::full(ctx.rank() as f32 + 1.0, (2, 3), &Device::Cpu)?;
//!     let sum = all_reduce(&tp, &x, ReduceOp::Sum)?; // 1 + 2 everywhere
//!     assert_eq!(sum.flatten_all()?.to_vec1::<f32>()?, vec![3.0; 6]);
//!
//!     // A tensor-parallel MLP from full weights (every rank keeps its shard).
//!     let (hidden, inter) = (4, 8);
//!     let gate = Tensor::ones((inter, hidden), candle_core::DType::F32, &Device::Cpu)?;
//!     let down = Tensor::ones((hidden, inter), candle_core::DType::F32, &Device::Cpu)?;
//!     let mlp = TpMlp::from_full(&gate, &gate, &down, &tp)?;
//!     let y = mlp.forward(&Tensor::zeros((1, hidden), candle_core::DType::F32, &Device::Cpu)?)?;
//!     Ok(y.flatten_all()?.to_vec1::<f32>()?)
//! })
//! .unwrap();
//! assert!(outs.iter().all(|y| y.as_ref().unwrap() == &vec![0.0; 4]));
//! ```
//!
//! # The rules
//!
//! * **CPU and CUDA tensors.** Tensors on candle's CPU device are copied to and from
//!   buffers of the calling rank (host memory on symmem's host backend, device memory on its
//!   CUDA backend). With the `cuda` feature (which turns on candle-core's), tensors on a CUDA
//!   device of the rank's GPU are copied device to device on the rank's stream; start the rank
//!   on candle's stream (`cuda::init_rank_on_device`) so that nothing waits on events and
//!   the all-reduce can be captured in a CUDA graph. Without the feature a CUDA tensor is
//!   refused with [`Error::CudaNotImplemented`], never served by a hidden host round-trip.
//! * **Copies, no sharing.** [`to_buffer`] and [`from_buffer`] copy; afterwards the tensor and
//!   the buffer share nothing and drop in any order (on CUDA the copies are stream-ordered, so
//!   a buffer or tensor dropped right after one is reused or freed only after the copy ran).
//!   A symmem buffer is never handed to candle as its storage (candle would free a pool's or
//!   NCCL's memory). A buffer is owned by the rank that
//!   allocated it; a tensor can go anywhere.
//! * **Which thread.** Everything that touches a buffer or a group runs on the rank's thread
//!   (inside `symmem::host::run`'s closure, or the thread a rank context is installed on).
//!   The layers hold their [`symmem::Group`]; a `Group` acts only on its rank's thread, so a
//!   layer used on another thread fails with an error rather than acting for the wrong rank.
//! * **Collectives.** [`all_reduce`] and the forward of [`RowParallelLinear`] and [`TpMlp`] are
//!   collectives: every rank of the group calls them in the same order with tensors of the
//!   same shape and dtype. Their results are new tensors outside candle's autograd graph;
//!   [`AllReduceOp`] is the all-reduce as a candle custom op, inside the graph.
//!
//! `docs/candle.md` in the repository has the longer version.

#![deny(missing_docs)]

mod convert;
#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
mod layers;
mod op;
mod reduce;

pub use convert::{copy_to_buffer, from_buffer, symmem_dtype, to_buffer, TensorElement};
pub use error::{Error, Result};
pub use layers::{shard, ColumnParallelLinear, RowParallelLinear, SwiGluMlp, TpMlp};
pub use op::AllReduceOp;
pub use reduce::{
    all_reduce, all_reduce_with_report, buffer_path, would_use_symmetric, AllReduceReport,
    CollectivePath, PlainReason,
};
