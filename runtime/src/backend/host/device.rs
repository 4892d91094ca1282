//! The host backend's device, stream and graph: "device memory" is host memory, a stream runs
//! work at once or records it while capturing, a graph replays the recording.

use std::alloc::Layout;
use std::any::Any;
use std::sync::{Arc, Mutex};

use crate::backend::traits::{BackendKind, DeviceBackend, GraphBackend, HostOp, StreamBackend};
use crate::error::{Error, Result};

/// Alignment of host "device" segments.
const SEGMENT_ALIGN: usize = 4096;

/// One host rank's "device".
pub struct HostDevice {
    rank: usize,
    stream: Arc<HostStream>,
}

impl HostDevice {
    /// A device for host rank `rank`.
    pub fn new(rank: usize) -> Self {
        HostDevice {
            rank,
            stream: Arc::new(HostStream::default()),
        }
    }
}

impl DeviceBackend for HostDevice {
    fn kind(&self) -> BackendKind {
        BackendKind::Host
    }
    fn ordinal(&self) -> usize {
        self.rank
    }
    fn describe(&self) -> String {
        format!("host rank {}", self.rank)
    }
    fn alloc_segment(&self, bytes: usize) -> Result<u64> {
        host_alloc(bytes)
    }
    /// # Safety
    /// The trait's contract: `ptr`/`bytes` come from this device's `alloc_segment` and no
    /// pending work uses them.
    unsafe fn free_segment(&self, ptr: u64, bytes: usize) {
        // SAFETY: `alloc_segment` is `host_alloc(bytes)`; the caller's contract does the rest.
        unsafe { host_free(ptr, bytes) }
    }
    fn stream(&self) -> Arc<dyn StreamBackend> {
        self.stream.clone()
    }
    fn bind_to_thread(&self) -> Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Bytes of host-backend segments currently allocated in this process.
static LIVE_SEGMENT_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Bytes of memory the host backend's pools hold right now, summed over every host rank of the
/// process (default and symmetric segments). Every segment is returned when the last owner of
/// its pool (group, rank context, buffer or graph) is gone, so this drops back to its earlier
/// value after a launch ends and its buffers drop: tests use it to prove that nothing leaks.
pub fn live_segment_bytes() -> usize {
    LIVE_SEGMENT_BYTES.load(std::sync::atomic::Ordering::SeqCst)
}

pub(crate) fn host_alloc(bytes: usize) -> Result<u64> {
    let layout = Layout::from_size_align(bytes.max(1), SEGMENT_ALIGN)
        .map_err(|_| Error::HostAlloc { bytes })?;
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return Err(Error::HostAlloc { bytes });
    }
    LIVE_SEGMENT_BYTES.fetch_add(bytes.max(1), std::sync::atomic::Ordering::SeqCst);
    Ok(p as u64)
}

/// Free a segment from [`host_alloc`].
///
/// # Safety
/// `ptr` came from `host_alloc(bytes)` with the same `bytes`, is freed once, and nothing reads
/// or writes it any more.
pub(crate) unsafe fn host_free(ptr: u64, bytes: usize) {
    // SAFETY: the same size and alignment `host_alloc` used (its layout was valid then).
    let layout = unsafe { Layout::from_size_align_unchecked(bytes.max(1), SEGMENT_ALIGN) };
    // SAFETY: the caller's contract: allocated by `host_alloc` with this layout, freed once.
    unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
    LIVE_SEGMENT_BYTES.fetch_sub(bytes.max(1), std::sync::atomic::Ordering::SeqCst);
}

/// A host stream: work runs at once, or is recorded while capturing.
#[derive(Default)]
pub struct HostStream {
    recording: Mutex<Option<Vec<HostOp>>>,
}

impl HostStream {
    /// Run `op` now, or record it if the stream is capturing.
    pub fn enqueue(&self, mut op: HostOp) -> Result<()> {
        let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        match rec.as_mut() {
            Some(ops) => {
                ops.push(op);
                Ok(())
            }
            None => {
                drop(rec);
                op()
            }
        }
    }

    /// Whether the stream is recording.
    pub fn is_capturing(&self) -> bool {
        self.recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl StreamBackend for HostStream {
    fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: `dst` is a live buffer of at least `src.len()` bytes (checked by Buffer).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }
    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        self.enqueue(Box::new(move || {
            // SAFETY: both buffers are kept alive by their owners (or the graph) while the
            // recorded work may run.
            unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
            Ok(())
        }))
    }
    fn memset(&self, dst: u64, value: u8, bytes: usize) -> Result<()> {
        self.enqueue(Box::new(move || {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(dst as *mut u8, value, bytes) };
            Ok(())
        }))
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn begin_capture(&self) -> Result<()> {
        let mut rec = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        if rec.is_some() {
            return Err(Error::NotAllowedDuringCapture {
                op: "begin_capture",
                why: "the stream is already capturing",
                fix: "finish the running capture first",
            });
        }
        *rec = Some(Vec::new());
        Ok(())
    }
    fn end_capture(&self) -> Result<Box<dyn GraphBackend>> {
        let ops = self
            .recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                Error::Graph("end_capture without begin_capture on this stream".into())
            })?;
        Ok(Box::new(HostGraph { ops }))
    }
    fn abort_capture(&self) {
        self.recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
    fn launch_host(&self, op: HostOp) -> Result<()> {
        self.enqueue(op)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A recorded host graph.
pub struct HostGraph {
    ops: Vec<HostOp>,
}

impl GraphBackend for HostGraph {
    fn launch(&mut self) -> Result<()> {
        for op in &mut self.ops {
            op()?;
        }
        Ok(())
    }
}
