//! The CUDA/NCCL backend (feature `cuda`): one GPU per rank, NCCL communicators, symmetric
//! windows, CUDA graph capture.
//!
//! Everything is loaded at run time (cudarc with dynamic loading), so building needs no CUDA
//! installation, and every entry point probes the libraries first: a machine without libcuda,
//! libnccl or GPUs gets [`Error::BackendUnavailable`](crate::Error::BackendUnavailable), never a panic from a loader.
//!
//! # Launching
//!
//! * [`run_threads`]: one process, one thread per GPU (rank `r` uses GPU `r`). The NCCL unique
//!   id is shared in memory and every thread calls `ncclCommInitRank`.
//! * [`init_from_env`]: one process per rank, started by `torchrun`, `mpirun` or `srun`; rank 0
//!   serves the NCCL unique id over TCP (`MASTER_ADDR`/`MASTER_PORT`).
//! * [`crate::launch::run`] picks this backend or the host backend at run time.
//!
//! Before the first communicator is created, `NCCL_NVLS_ENABLE=0` is put in the process
//! environment unless it is already set: symmem never uses NVLink SHARP multicast, and leaving
//! it off keeps NCCL from creating multicast objects (`cuMulticastCreate`) on shared machines.
//! Set `NCCL_NVLS_ENABLE` yourself before starting to decide otherwise.
//!
//! # Memory
//!
//! * Symmetric pools: segments from `ncclMemAlloc`, rounded up to the device's recommended
//!   allocation granularity (usually 2 MiB), each registered as one window with
//!   `ncclCommWindowRegister(comm, ptr, size, &win, NCCL_WIN_COLL_SYMMETRIC)` (one registration per
//!   whole segment, so registered offsets from the cuMem base are 0, as NCCL 2.28+ requires
//!   multiples of 4096). NCCL chooses its symmetric kernels by itself for pointers inside
//!   registered windows. If the registration succeeds but returns no window, the communicator
//!   has no symmetric support: it is recorded ([`crate::Group::symmetric_supported`] is false),
//!   logged once, and buffers take the plain path. Teardown synchronises the stream, then calls
//!   `ncclCommWindowDeregister` and `ncclMemFree`.
//! * Default pools: `cuMemAlloc`, wrapped in a *relaxed* stream-capture mode
//!   (`cuThreadExchangeStreamCaptureMode`) so the pool may grow during thread-local capture.
//!
//! # Streams and stream-ordered reuse
//!
//! Each rank has one non-blocking CUDA stream (created through cudarc: [`cuda_stream`] returns
//! it for cuBLAS handles and kernel launches). All of a rank's symmem work (collectives, copies,
//! fills, captured graphs) runs on it. When a [`crate::Buffer`] drops, its block returns to its
//! pool at once, although queued work may still use it: this is safe because the next user of
//! the block is queued on the same stream, after that work. **Buffers used on other streams
//! are not supported in this version**: work you put on another stream must be ordered with the
//! rank's stream by you (events), and a buffer must outlive it.
//!
//! cudarc's per-buffer event tracking is turned off on the rank's context (it would record
//! events outside graph captures); all ordering comes from the single stream.
//!
//! # Capture
//!
//! `cuStreamBeginCapture` in thread-local mode, `cuStreamEndCapture` + `cuGraphInstantiate`,
//! `cuGraphLaunch` on the rank's stream; a failed capture is ended and its partial graph
//! destroyed. Synchronising or blocking copies on a capturing stream are refused (they would
//! invalidate the capture). The validation exchange runs on a separate internal stream, so it
//! works while the rank's stream captures.
//!
//! # NCCL versions
//!
//! The version is read once (`ncclGetVersion`) and a policy line is logged once on stderr:
//! below 2.27.3 there are no symmetric windows (segments stay plain, `symmetric_supported()` is
//! false); 2.28.0 to 2.30.6 work, with a known symmetric-kernel race and a registration-during-
//! capture caveat (symmem never registers during capture); 2.30.7 and later are fine.
//!
//! NCCL is loaded as `libnccl.so.2` (the name the pip wheels and PyTorch ship; no `libnccl.so`
//! link is needed), then under cudarc's names, and called through symmem's own table of entry
//! points (`nccl_api`), never through cudarc's NCCL functions. All-reduce `Avg` on floats is
//! sent as a pre-multiplied sum, never as `ncclAvg` (see `docs/design.md`).
//!
//! # Departures
//!
//! In [`run_threads`], a rank that returns from its closure while peers still run is a
//! *departure*: peers' collective calls on its groups that it never joined fail at once with
//! [`Error::Aborted`](crate::Error::Aborted) (an already queued one aborts the communicator, and
//! the next synchronisation reports it); groups without it are unaffected.

pub(crate) mod availability;
pub(crate) mod device;
pub(crate) mod ffi;
pub(crate) mod nccl;
pub(crate) mod nccl_api;
pub mod probe;
pub(crate) mod util;
pub mod version;

/// The TCP rendezvous of one-process-per-rank launches (it lives in `crate::bootstrap`, which
/// has no CUDA in it; this is its public path).
pub mod bootstrap {
    #![doc = include_str!("../../bootstrap/overview.md")]
    pub use crate::bootstrap::*;
}

/// The cudarc crate symmem is built with (streams and device memory of `symmem::cuda` are
/// cudarc's): a link to its own documentation, not a copy.
#[doc(no_inline)]
pub use cudarc;

/// NCCL's handle types as symmem declares them (`nccl.h` layouts): what
/// [`NcclComm::raw_comm`] returns. A pointer casts to cudarc's `nccl::sys` type of the same name.
pub use nccl_api::sys as nccl_sys;

pub use availability::{gpu_count, nccl_version};
pub use device::{CudaDevice, CudaGraph, CudaRankStream};
pub use ffi::NCCL_WIN_COLL_SYMMETRIC;
pub use nccl::NcclComm;
pub use version::{NcclVersion, SymmetricPolicy};

pub use crate::interop::{
    adopt_nccl_comm, buffer_from_cuda_slice, cuda_context, cuda_stream, nccl_comm, view, view_mut,
    BufferCudaExt, BufferView, BufferViewMut,
};
pub use crate::launch::cuda::{
    init_from_env, init_rank, init_rank_on_stream, run_threads, UniqueId,
};
pub use nccl::CommOwnership;
