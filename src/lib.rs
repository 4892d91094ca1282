//! # symmem
//!
//! NCCL symmetric memory made easy, fast and safe for Rust tensor-parallel code.
//!
//! Annotate the function whose output feeds an all-reduce with
//! [`#[symmetric_memory(group = "tp")]`](macro@symmetric_memory): every buffer the body
//! allocates through symmem comes from the group's symmetric pool (memory from `ncclMemAlloc`,
//! registered once per segment as an NCCL symmetric window), so the all-reduce takes NCCL's
//! symmetric kernels, eagerly and inside CUDA graphs. Routing returns to what it was when the
//! body ends, by any path.
//!
//! ```
//! use symmem::{symmetric_memory, Buffer, Error, ReduceOp};
//!
//! // Capture-fit body: no host copies inside (the macro checks it at compile time).
//! #[symmetric_memory(group = "world")]
//! fn partial_sums(input: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
//!     let mut out = symmem::alloc::<f32>(input.len())?; // from the group's symmetric pool
//!     out.copy_from(input)?; // device to device, ordered on the rank's stream
//!     Ok(out)
//! }
//!
//! let sums = symmem::host::run(4, |ctx| -> Result<Vec<f32>, Error> {
//!     let input = symmem::alloc_from_host(&vec![ctx.rank() as f32 + 1.0; 1024])?;
//!     let mut y = partial_sums(&input)?;
//!     assert!(y.is_symmetric());
//!     ctx.world().all_reduce(&mut y, ReduceOp::Sum)?; // symmetric path
//!     y.to_host_vec()
//! })
//! .unwrap();
//! assert!(sums.iter().all(|s| s.as_ref().unwrap().iter().all(|&v| v == 10.0)));
//! ```
//!
//! The runtime runs on CUDA/NCCL (feature `cuda`, loaded at run time) or on the host backend
//! (ranks are threads), so everything above also runs on machines without a GPU.

#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): items behind a feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use symmem_macros::{allow_capture_unfit, symmetric_memory};
pub use symmem_runtime::*;

// Named again so that rustdoc shows them as modules of this crate's front page (a glob's
// re-exported modules are listed nowhere); the paths are the same as the glob's.
#[cfg(feature = "cuda")]
#[doc(inline)]
pub use symmem_runtime::cuda;
#[doc(inline)]
pub use symmem_runtime::host;

/// Items the `#[symmetric_memory]` expansion refers to. Not a public API: it changes with the
/// macro, whose version is kept equal to this crate's.
#[doc(hidden)]
pub mod __private {
    pub use symmem_runtime::macro_support::{
        enter, enter_no_capture, enter_no_capture_method, enter_unless, routed, routed_boxed,
        routed_boxed_future, routed_future, routed_iter, Routed, WindowGuard,
    };
}
