//! The host backend: ranks are threads of one process, device memory is host memory.
//!
//! It is real, not a mock. Symmetric segments are host memory every rank of a group can read
//! directly (as NVLink peers can), published per window so that a peer's buffer is found at
//! the same offset of the peer's segment. Collectives are cross-thread algorithms with proper
//! synchronisation (a reduce-scatter phase then an all-gather phase, with barriers that make
//! in-place use safe); every element is reduced by exactly one rank in rank order, so results
//! are bit-identical on every rank. Streams run work immediately, or record it while capturing;
//! a graph replays the recording. Waits are bounded by the configured timeout, and a rank that
//! panics aborts its peers' waits instead of leaving them hanging.
//!
//! [`run`] launches `N` rank threads with their contexts and a `"world"` group (the launcher
//! lives in `crate::launch::host`; this module is a facade over the backend's files and it).

pub(crate) mod comm;
pub(crate) mod device;
pub(crate) mod shared;

pub use comm::HostComm;
pub use device::{live_segment_bytes, HostDevice, HostGraph, HostStream};

pub use crate::launch::host::{run, run_with, HostConfig};
