//! The seams between symmem's core and a device backend (a facade: the items live in the files
//! below, this module only wires and re-exports them).
//!
//! The core (groups, windows, pools, buffers, capture) is backend-agnostic; a backend supplies
//! device memory, a stream, graph capture and a communicator (`traits`). Two backends exist:
//! [`host`] (ranks are threads, device memory is host memory) and, with the `cuda` feature,
//! `cuda` (cudarc + NCCL). Device addresses travel as `u64` (a `CUdeviceptr` on CUDA, a host
//! address on the host backend).

pub(crate) mod direct;
pub(crate) mod operand;
pub(crate) mod report;
pub(crate) mod traits;

pub mod host;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use direct::{AllReduceEntry, DirectAllReduce};
pub use operand::{Operand, SymRef, SymSegment};
pub use traits::{BackendKind, CommBackend, DeviceBackend, GraphBackend, HostOp, StreamBackend};
