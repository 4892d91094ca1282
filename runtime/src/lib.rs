//! # symmem-runtime
//!
//! The runtime of [symmem](https://docs.rs/symmem): ranks and groups, pool-routing windows,
//! symmetric caching pools, typed buffers, collectives and graph capture, on CUDA/NCCL or on a
//! host backend where ranks are threads.
//!
//! Users normally depend on the facade crate `symmem`, which re-exports everything here and adds
//! the `#[symmetric_memory]` attribute. See `docs/design.md` for the concepts.

#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): items behind a feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules, bottom layer first: each imports only from modules above it in this list
// (`tests/module_graph.rs` checks that the graph has no circle).
mod alloc;
pub mod backend;
mod bootstrap;
mod buffer;
pub mod capture;
mod config;
mod diag;
mod dtype;
mod error;
#[cfg(feature = "cuda")]
mod interop;
pub mod kernels;
pub mod launch;
#[doc(hidden)]
pub mod macro_support;
mod names;
pub mod pool;
mod rank;
mod sync;
mod thread;
mod validation;
pub mod window;

pub use alloc::{alloc, alloc_from_host, alloc_zeroed};
pub use backend::host;
pub use backend::traits::BackendKind;
pub use buffer::{Buffer, SymmetricInfo};
pub use capture::{capture, capture_with_error, Graph};
pub use config::RankConfig;
pub use dtype::{DType, Element, ReduceOp};
pub use error::{Error, Result};
pub use kernels::{symmetric_kernel_exists, Collective};
pub use launch::{detect, run, BackendChoice, BackendReport};
pub use names::validate_group_name;
pub use pool::PoolStats;
pub use rank::context::RankContext;
pub use rank::current::{current_stream, group, synchronize, window};
pub use rank::group::Group;
pub use rank::stream::Stream;
pub use thread::is_capturing;
pub use window::{opt_out, reset_routing, routed_group, window_depth, OptOutGuard, WindowGuard};

#[cfg(feature = "cuda")]
pub use backend::cuda;

pub use half::{bf16, f16};
