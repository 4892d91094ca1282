//! The backend traits: what a backend supplies to symmem's core (device memory, a stream, graph
//! capture, a communicator). Data and traits only: no backend and no launcher lives here.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::direct::DirectAllReduce;
use crate::backend::operand::{Operand, SymSegment};
use crate::dtype::{DType, ReduceOp};
use crate::error::{Error, Result};
use crate::kernels::Collective;

/// Which backend a rank runs on.
///
/// More backends may be added in any release (`#[non_exhaustive]`): a `match` on it needs a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// Ranks are threads; device memory is host memory.
    Host,
    /// NVIDIA GPUs through CUDA and NCCL.
    Cuda,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Host => "host",
            BackendKind::Cuda => "cuda",
        })
    }
}

/// A unit of work for a host stream: runs immediately, or is recorded while capturing.
pub type HostOp = Box<dyn FnMut() -> Result<()> + Send + 'static>;

/// One rank's device: raw memory for the default pool, and its stream.
pub trait DeviceBackend: Send + Sync + 'static {
    /// The backend kind.
    fn kind(&self) -> BackendKind;
    /// Device ordinal (CUDA) or rank index (host).
    fn ordinal(&self) -> usize;
    /// A human-readable description (for example `NVIDIA H100 80GB HBM3 (cuda:0)`).
    fn describe(&self) -> String;
    /// Allocate `bytes` of device memory for a default-pool segment, aligned to at least 4096.
    fn alloc_segment(&self, bytes: usize) -> Result<u64>;
    /// Free a segment from [`DeviceBackend::alloc_segment`].
    ///
    /// # Safety
    /// `ptr`/`bytes` come from `alloc_segment` of this device and no pending work uses them.
    unsafe fn free_segment(&self, ptr: u64, bytes: usize);
    /// The rank's stream, on which collectives, copies and captured work run.
    fn stream(&self) -> Arc<dyn StreamBackend>;
    /// Make this device current on the calling thread (CUDA binds its context; host: no-op).
    fn bind_to_thread(&self) -> Result<()>;
    /// Free and total device memory in bytes, where the backend knows them.
    fn mem_info(&self) -> Option<(usize, usize)> {
        None
    }
    /// Downcasting support for backend-specific extensions.
    fn as_any(&self) -> &dyn Any;
}

/// A stream: ordered device work, which can be captured into a graph.
pub trait StreamBackend: Send + Sync + 'static {
    /// Copy host bytes to device memory and wait for completion.
    fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()>;
    /// Copy device bytes to host memory and wait for completion.
    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()>;
    /// Copy between device buffers, ordered on the stream (capturable).
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()>;
    /// Fill device bytes with a value, ordered on the stream (capturable).
    fn memset(&self, dst: u64, value: u8, bytes: usize) -> Result<()>;
    /// Wait until all work on the stream has finished.
    fn synchronize(&self) -> Result<()>;
    /// Start recording the stream's work into a graph.
    fn begin_capture(&self) -> Result<()>;
    /// Stop recording and return the graph, ready to launch.
    fn end_capture(&self) -> Result<Box<dyn GraphBackend>>;
    /// Stop recording after a failure and discard what was recorded.
    fn abort_capture(&self);
    /// Drop `memory` (foreign memory whose drop queues stream work, e.g. a cudarc `CudaSlice`'s
    /// `cuMemFreeAsync`) where that work cannot be recorded into a graph: now, unless the
    /// stream is capturing (from whichever thread), else once the capture has ended.
    fn drop_outside_capture(&self, memory: Box<dyn Any + Send + Sync>) {
        drop(memory);
    }
    /// Run a host closure as stream work (host backend only; recorded while capturing).
    fn launch_host(&self, op: HostOp) -> Result<()> {
        drop(op);
        Err(Error::Unsupported {
            backend: "this",
            what: "host closures as stream work".into(),
        })
    }
    /// Downcasting support for backend-specific extensions.
    fn as_any(&self) -> &dyn Any;
}

/// An instantiated graph.
pub trait GraphBackend: Send + 'static {
    /// Launch the recorded work once on the stream it was captured on.
    fn launch(&mut self) -> Result<()>;
}

/// One rank's communicator of a group.
pub trait CommBackend: Send + Sync + 'static {
    /// This rank's index in the group.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// Whether symmetric windows work on this communicator.
    fn symmetric_supported(&self) -> bool;
    /// Whether `collective` with `op` on `dtype` runs on the backend's symmetric path when its
    /// operands are symmetric buffers of this communicator. Default: whenever symmetric windows
    /// work ([`CommBackend::symmetric_supported`]); NCCL answers from its kernel table
    /// (`crate::kernels`).
    fn symmetric_kernels(&self, collective: Collective, op: ReduceOp, dtype: DType) -> bool {
        let _ = (collective, op, dtype);
        self.symmetric_supported()
    }
    /// Allocate and register a symmetric segment (collective: every rank calls it with the same
    /// size in the same order).
    fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment>;
    /// Deregister and free a segment.
    ///
    /// # Safety
    /// No pending work may use the segment.
    unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment);
    /// `recv[i] = op over ranks of send[i]` for `count` elements.
    fn all_reduce(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>;
    /// `recv[r * count ..][..count] = send of rank r`.
    fn all_gather(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
    ) -> Result<()>;
    /// `recv = op over ranks of send[rank * count ..][..count]`.
    fn reduce_scatter(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>;
    /// `recv = send of rank root` (on root, `send` is read; elsewhere only `recv` is written).
    fn broadcast(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        root: usize,
    ) -> Result<()>;
    /// A direct entry for [`CommBackend::all_reduce`] on `stream`, if the backend has one
    /// (valid while this communicator lives and does not move: it is behind an `Arc`).
    fn direct_all_reduce(&self, stream: &dyn StreamBackend) -> Option<DirectAllReduce> {
        let _ = stream;
        None
    }
    /// Wait until every rank has reached this point on its stream.
    fn barrier(&self, stream: &dyn StreamBackend) -> Result<()>;
    /// Host-side all-gather of small byte strings, blocking, bounded by `timeout` (used by
    /// validation mode; runs outside any stream, also while capturing).
    fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>>;
    /// Split into sub-communicators: ranks with the same `color` form one, ordered by `key`
    /// then by rank (collective).
    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>>;
    /// Tell the communicator the name of the group it serves (used in its error messages).
    fn set_name(&self, _name: &str) {}
    /// Downcasting support for backend-specific extensions.
    fn as_any(&self) -> &dyn Any;
}
