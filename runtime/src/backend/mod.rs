//! The seams between symmem's core and a device backend.
//!
//! The core (groups, windows, pools, buffers, capture) is backend-agnostic; a backend supplies
//! device memory, a stream, graph capture and a communicator. Two backends exist: [`host`]
//! (ranks are threads, device memory is host memory) and, with the `cuda` feature, `cuda`
//! (cudarc + NCCL). Device addresses travel as `u64` (a `CUdeviceptr` on CUDA, a host address on
//! the host backend).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::{DType, ReduceOp, Result};

pub mod host;

#[cfg(feature = "cuda")]
pub mod cuda;

/// Which backend a rank runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Run a host closure as stream work (host backend only; recorded while capturing).
    fn launch_host(&self, op: HostOp) -> Result<()> {
        drop(op);
        Err(crate::Error::Unsupported {
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

/// A symmetric segment: memory every rank of a group allocated together and registered as one
/// window, so that the same offset names corresponding memory on every rank.
#[derive(Clone, Debug)]
pub struct SymSegment {
    /// Device address of this rank's part.
    pub base: u64,
    /// Size in bytes (the same on every rank).
    pub size: usize,
    /// Window index: the n-th window created on this communicator (the same on every rank).
    pub window: u64,
    /// Backend handle of the window (`ncclWindow_t` on CUDA; 0 when the communicator could not
    /// register a symmetric window, in which case collectives take the plain path).
    pub handle: u64,
}

/// A buffer operand of a collective: its address and, when it is symmetric, where it lies.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    /// Device address of the first element.
    pub ptr: u64,
    /// Window index and offset when the buffer lies in a symmetric window of this communicator.
    pub sym: Option<SymRef>,
}

/// Where a symmetric operand lies: a window index ([`SymSegment::window`]) and a byte offset
/// inside that window.
///
/// Packed into one non-zero 64-bit word (`(window + 1) << 44 | offset`) so that an [`Operand`]
/// is two machine words and travels in registers through every collective call: windows up to
/// [`SymRef::MAX_WINDOW`], offsets up to [`SymRef::MAX_OFFSET`] (16 TiB). A pool whose segment
/// would exceed either uses it as a plain segment (its buffers take the plain path).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymRef(std::num::NonZeroU64);

const SYM_OFFSET_BITS: u32 = 44;

impl SymRef {
    /// Largest window index a `SymRef` can name.
    pub const MAX_WINDOW: u64 = (1 << (64 - SYM_OFFSET_BITS)) - 2;
    /// Largest byte offset a `SymRef` can name.
    pub const MAX_OFFSET: usize = (1 << SYM_OFFSET_BITS) - 1;

    /// The reference to `offset` in window `window`; `None` when either is out of range.
    #[inline]
    pub fn new(window: u64, offset: usize) -> Option<SymRef> {
        if window > Self::MAX_WINDOW || offset > Self::MAX_OFFSET {
            return None;
        }
        std::num::NonZeroU64::new(((window + 1) << SYM_OFFSET_BITS) | offset as u64).map(SymRef)
    }

    /// The tag of window `window` (the word of its offset 0), if the window can be named.
    #[inline]
    pub(crate) fn window_tag(window: u64) -> Option<u64> {
        Self::new(window, 0).map(|s| s.0.get())
    }

    /// The reference at `offset` of a window with tag `tag` (from [`SymRef::window_tag`]);
    /// `offset` lies inside a segment no larger than [`SymRef::MAX_OFFSET`] + 1 bytes.
    #[inline]
    pub(crate) fn at(tag: u64, offset: usize) -> Option<SymRef> {
        debug_assert!(offset <= Self::MAX_OFFSET);
        std::num::NonZeroU64::new(tag | offset as u64).map(SymRef)
    }

    /// Window index.
    #[inline]
    pub fn window(self) -> u64 {
        (self.0.get() >> SYM_OFFSET_BITS) - 1
    }

    /// Byte offset inside the window.
    #[inline]
    pub fn offset(self) -> usize {
        (self.0.get() & Self::MAX_OFFSET as u64) as usize
    }
}

impl std::fmt::Debug for SymRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymRef")
            .field("window", &self.window())
            .field("offset", &self.offset())
            .finish()
    }
}

/// A backend's direct entry for all-reduce launches on one stream: the communicator as an
/// erased pointer and a plain function, resolved once when a group is created
/// ([`CommBackend::direct_all_reduce`]), so that a launch skips the trait object's dispatch.
#[derive(Clone, Copy, Debug)]
pub struct DirectAllReduce {
    /// The communicator the function takes.
    pub ctx: *const (),
    /// Exactly [`CommBackend::all_reduce`] of the communicator at `ctx`, on the stream it was
    /// resolved for.
    ///
    /// # Safety
    /// `ctx` must be the `ctx` of the same `DirectAllReduce`, and the communicator it points to
    /// must be alive.
    pub launch: unsafe fn(
        ctx: *const (),
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>,
}

// SAFETY: `ctx` points to a `CommBackend`, which is `Send + Sync`; the function is a plain
// function pointer.
unsafe impl Send for DirectAllReduce {}
// SAFETY: as above.
unsafe impl Sync for DirectAllReduce {}

/// One rank's communicator of a group.
pub trait CommBackend: Send + Sync + 'static {
    /// This rank's index in the group.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// Whether symmetric windows work on this communicator.
    fn symmetric_supported(&self) -> bool;
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

#[cfg(test)]
mod tests {
    use super::{Operand, SymRef};

    #[test]
    fn symref_packs_window_and_offset_losslessly_and_refuses_out_of_range() {
        for (w, o) in [
            (0, 0),
            (0, 512),
            (1, 4096),
            (77, (2 << 20) - 512),
            (SymRef::MAX_WINDOW, SymRef::MAX_OFFSET),
        ] {
            let s = SymRef::new(w, o).unwrap();
            assert_eq!((s.window(), s.offset()), (w, o));
            assert_eq!(SymRef::at(SymRef::window_tag(w).unwrap(), o), Some(s));
        }
        assert_eq!(SymRef::new(SymRef::MAX_WINDOW + 1, 0), None);
        assert_eq!(SymRef::new(0, SymRef::MAX_OFFSET + 1), None);
        assert_ne!(SymRef::new(1, 0), SymRef::new(0, 0));
        // Two machine words: passed in registers through the collective calls.
        assert_eq!(std::mem::size_of::<Option<SymRef>>(), 8);
        assert_eq!(std::mem::size_of::<Operand>(), 16);
    }
}
