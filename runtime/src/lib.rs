//! # symmem-runtime
//!
//! The runtime of [symmem](https://docs.rs/symmem): ranks and groups, pool-routing windows,
//! symmetric caching pools, typed buffers, collectives and graph capture, on CUDA/NCCL or on a
//! host backend where ranks are threads.
//!
//! Users normally depend on the facade crate `symmem`, which re-exports everything here and adds
//! the `#[symmetric_memory]` attribute. See `docs/design.md` for the concepts.

#![deny(missing_docs)]

mod alloc;
pub mod backend;
mod bootstrap;
mod buffer;
pub mod capture;
mod collective;
mod dtype;
mod error;
mod group;
pub mod launch;
mod lock;
#[doc(hidden)]
pub mod macro_support;
pub mod pool;
mod validate;
pub mod window;

pub use alloc::{alloc, alloc_from_host, alloc_zeroed};
pub use backend::host;
pub use backend::BackendKind;
pub use buffer::{Buffer, SymmetricInfo};
pub use capture::{capture, is_capturing, Graph};
pub use dtype::{DType, Element, ReduceOp};
pub use error::{Error, Result};
pub use group::{
    current_stream, group, synchronize, validate_group_name, window, Group, RankConfig,
    RankContext, Stream,
};
pub use launch::{detect, run, BackendChoice, BackendReport};
pub use pool::PoolStats;
pub use window::{opt_out, reset_routing, routed_group, window_depth, OptOutGuard, WindowGuard};

#[cfg(feature = "cuda")]
pub use backend::cuda;

pub use half::{bf16, f16};
