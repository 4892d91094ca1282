//! The multi-process rank bootstrap: the launcher's environment and a TCP rendezvous (no CUDA).
//!
//! It shares small byte strings (the NCCL unique id) among the ranks. Nothing in it is
//! CUDA-specific: it builds without the `cuda` feature, and so do its tests.
//!
//! The user-facing description (environment, exchange, wire format) is `overview.md`, the docs
//! of its public path `symmem::cuda::bootstrap`.

// Without the `cuda` feature nothing in the crate calls the bootstrap (only its tests do).
#![cfg_attr(not(feature = "cuda"), allow(dead_code, unused_imports))]

mod client;
mod deadline;
mod env;
mod error;
mod exchange;
mod origin;
mod server;
#[cfg(test)]
mod tests;
mod wire;

pub use env::{LaunchEnv, MAX_WORLD_SIZE};
pub use error::BootstrapError;
pub use exchange::{all_gather_bytes, exchange_unique_id};
pub use origin::{EnvSource, PortOrigin, DEFAULT_PORT};
pub use wire::{MAX_PAYLOAD, UNIQUE_ID_BYTES};
