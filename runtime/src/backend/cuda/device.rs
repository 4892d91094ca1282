//! One rank's GPU: its CUDA context, its stream, default-pool memory and graph capture.

use symmem_rules::refusals::{self, Refusal};

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{sys as cu, CudaContext, CudaStream};

use crate::backend::cuda::ffi::{self, cuda_err, GraphExec, RelaxedCapture};
use crate::backend::traits::{BackendKind, DeviceBackend, GraphBackend, StreamBackend};
use crate::error::{Error, Result};
use crate::thread::capture_refusal;

/// Alignment the pools ask of default-pool segments.
const SEGMENT_ALIGN: u64 = 4096;

const HINT_BIND: &str = "the CUDA context could not be made current on this thread; check that the GPU is healthy (nvidia-smi) and that no earlier CUDA error poisoned the context";
const HINT_ALLOC: &str =
    "the GPU is out of memory: free buffers, call empty_cache(), or lower the sizes";
const HINT_COPY: &str = "a device address is invalid or an earlier kernel failed; run with compute-sanitizer to find the first failing launch";
const HINT_CAPTURE: &str = "an operation inside the capture was not capturable (a blocking copy, an allocation outside symmem, or work on another stream); move it before or after `symmem::capture`";

/// One rank's GPU: a CUDA context (the device's primary context), a non-blocking stream for all
/// of the rank's work, and device memory for the rank's default pool.
///
/// Memory of the default pool comes from `cuMemAlloc`, wrapped in a *relaxed* stream-capture mode
/// so that the pool may grow while the rank captures a graph (thread-local capture forbids plain
/// allocations otherwise).
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaRankStream>,
    ordinal: usize,
    name: String,
    /// Segments that needed padding to reach 4096-byte alignment: aligned address -> raw address.
    padded: Mutex<HashMap<u64, u64>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .finish()
    }
}

impl CudaDevice {
    /// Open GPU `ordinal` on the calling thread: retain its primary context, bind it to the
    /// thread, turn off cudarc's per-buffer event tracking (all of a rank's work is ordered on one
    /// stream; events recorded outside a capture would break it) and create the rank's stream.
    pub fn open(ordinal: usize) -> Result<Self> {
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            cuda_err(
                "cuDevicePrimaryCtxRetain",
                e,
                "the GPU could not be opened: check CUDA_VISIBLE_DEVICES, `nvidia-smi`, and that the ordinal is below the number of visible GPUs",
            )
        })?;
        // SAFETY: symmem orders all of a rank's work on its one stream; see the module docs.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err("cuStreamCreate", e, HINT_BIND))?;
        let name = ctx.name().unwrap_or_else(|_| "NVIDIA GPU".to_string());
        Ok(CudaDevice {
            stream: Arc::new(CudaRankStream {
                stream,
                ctx: ctx.clone(),
                capturing: AtomicBool::new(false),
                aborts: Arc::new(AbortNote::default()),
                deferred: Mutex::new(Vec::new()),
            }),
            ctx,
            ordinal,
            name,
            padded: Mutex::new(HashMap::new()),
        })
    }

    /// Use the caller's cudarc `stream` (and its context) as the rank's stream: symmem's
    /// allocations, copies, collectives and captures are then ordered with the caller's own
    /// kernels on it, with no events. The context is used as it is: symmem does not turn off
    /// cudarc's event tracking on a context it did not create (turn it off yourself before
    /// capturing graphs that use cudarc `CudaSlice`s on this stream; see `docs/candle.md`).
    pub fn adopt(stream: Arc<CudaStream>) -> Result<Self> {
        let ctx = stream.context().clone();
        ctx.bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_BIND))?;
        let ordinal = ctx.ordinal();
        let name = ctx.name().unwrap_or_else(|_| "NVIDIA GPU".to_string());
        Ok(CudaDevice {
            stream: Arc::new(CudaRankStream {
                stream,
                ctx: ctx.clone(),
                capturing: AtomicBool::new(false),
                aborts: Arc::new(AbortNote::default()),
                deferred: Mutex::new(Vec::new()),
            }),
            ctx,
            ordinal,
            name,
            padded: Mutex::new(HashMap::new()),
        })
    }

    /// The cudarc context of this GPU.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The rank's stream.
    pub fn rank_stream(&self) -> &Arc<CudaRankStream> {
        &self.stream
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_BIND))
    }

    fn raw_alloc(bytes: usize) -> Result<u64> {
        // The context is current.
        ffi::mem_alloc(bytes, HINT_ALLOC)
    }
}

impl DeviceBackend for CudaDevice {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn ordinal(&self) -> usize {
        self.ordinal
    }

    fn describe(&self) -> String {
        format!("{} (cuda:{})", self.name, self.ordinal)
    }

    fn alloc_segment(&self, bytes: usize) -> Result<u64> {
        self.bind()?;
        let _relaxed = RelaxedCapture::new();
        let p = Self::raw_alloc(bytes.max(1))?;
        if p % SEGMENT_ALIGN == 0 {
            return Ok(p);
        }
        // cuMemAlloc guarantees 256 bytes; large allocations are 2 MiB aligned in practice. If
        // not, over-allocate and remember the raw address.
        // SAFETY: just allocated, unused.
        let _ = unsafe { ffi::mem_free(p, HINT_ALLOC) };
        let padded = bytes
            .checked_add(SEGMENT_ALIGN as usize)
            .ok_or(Error::InvalidArgument {
                op: "alloc",
                detail: format!("{bytes} bytes overflow the address space"),
            })?;
        let raw = Self::raw_alloc(padded)?;
        let aligned = raw.div_ceil(SEGMENT_ALIGN) * SEGMENT_ALIGN;
        self.padded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(aligned, raw);
        Ok(aligned)
    }

    /// # Safety
    /// The trait's contract: `ptr` came from this device's `alloc_segment`, is freed once, and
    /// no pending work uses it (the pool synchronised the stream).
    unsafe fn free_segment(&self, ptr: u64, _bytes: usize) {
        if self.bind().is_err() {
            return;
        }
        let _relaxed = RelaxedCapture::new();
        let raw = self
            .padded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ptr)
            .unwrap_or(ptr);
        // SAFETY: the caller's contract (a segment of ours, unused by queued work).
        if let Err(e) = unsafe { ffi::mem_free(raw, HINT_COPY) } {
            crate::diag::warn(format_args!(
                "cuMemFree of a default-pool segment failed: {e}"
            ));
        }
    }

    fn stream(&self) -> Arc<dyn StreamBackend> {
        self.stream.clone()
    }

    fn bind_to_thread(&self) -> Result<()> {
        self.bind()
    }

    fn mem_info(&self) -> Option<(usize, usize)> {
        self.bind().ok()?;
        // The context is current.
        ffi::mem_get_info()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The rank's CUDA stream (non-blocking, created through cudarc so that users can build cuBLAS
/// handles and launch kernels on it: see [`super::cuda_stream`]).
pub struct CudaRankStream {
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    capturing: AtomicBool,
    aborts: Arc<AbortNote>,
    /// Foreign memory dropped while the stream captured (`drop_outside_capture`), dropped when
    /// the capture ends.
    deferred: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

/// What a rank's stream learns when one of the rank's communicators is aborted (a peer
/// panicked, timed out or left the launch while a collective of this rank still needed it):
/// the collectives queued before the abort did not run to completion, so the next
/// synchronisation of the stream reports it once, as [`Error::Aborted`], instead of returning
/// as if their results were valid.
#[derive(Debug, Default)]
pub struct AbortNote {
    set: AtomicBool,
    cause: Mutex<Option<(String, String)>>,
}

impl AbortNote {
    /// Group `group` was aborted because of `cause` (the first note is kept until reported).
    pub fn note(&self, group: &str, cause: &str) {
        let mut c = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some((group.to_string(), cause.to_string()));
        }
        self.set.store(true, Ordering::Release);
    }

    /// The noted abort as an error, once (`Ok` when there is none).
    pub fn take(&self) -> Result<()> {
        if !self.set.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut c = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        self.set.store(false, Ordering::Release);
        match c.take() {
            Some((group, cause)) => Err(Error::Aborted {
                group,
                cause: format!(
                    "{cause}; collectives of this group queued before the abort did not complete, so their results are not valid"
                ),
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for CudaRankStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaRankStream")
            .field("capturing", &self.is_capturing())
            .finish_non_exhaustive()
    }
}

impl CudaRankStream {
    /// The raw `CUstream`.
    pub fn cu_stream(&self) -> cu::CUstream {
        self.stream.cu_stream()
    }

    /// Where the rank's communicators note that they were aborted (reported by the next
    /// synchronisation).
    pub(crate) fn aborts(&self) -> &Arc<AbortNote> {
        &self.aborts
    }

    /// Drop the foreign memory deferred during a capture (the capture has ended).
    fn drop_deferred(&self) {
        let items = std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|e| e.into_inner()));
        drop(items);
    }

    /// The cudarc stream object.
    pub fn cudarc_stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The cudarc context of the stream's GPU.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Whether the stream is capturing a graph (begun through symmem).
    pub fn is_capturing(&self) -> bool {
        self.capturing.load(Ordering::Acquire)
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_BIND))
    }

    /// Refuse `refusal` while this stream captures (a host wait would invalidate the capture).
    fn refuse_capturing(&self, refusal: &'static Refusal) -> Result<()> {
        if self.is_capturing() {
            return Err(capture_refusal(refusal));
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // SAFETY: the stream is live.
        unsafe {
            ffi::stream_synchronize(
                self.cu_stream(),
                "a kernel or collective on the rank's stream failed; the first failing operation is reported by compute-sanitizer, or set NCCL_DEBUG=WARN for NCCL",
            )
        }?;
        self.aborts.take()
    }
}

impl StreamBackend for CudaRankStream {
    fn copy_htod(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.refuse_capturing(&refusals::BACKEND_COPY_TO_DEVICE)?;
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // Ordered on the rank's stream (a plain cuMemcpyHtoD would run on the legacy stream,
        // which does not wait for the rank's non-blocking stream), then waited for.
        // SAFETY: `dst` holds at least `src.len()` bytes (checked by Buffer); `src` lives until
        // the synchronisation below.
        unsafe { ffi::memcpy_htod_async(dst, src, self.cu_stream(), HINT_COPY) }?;
        self.sync()
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<()> {
        self.refuse_capturing(&refusals::BACKEND_COPY_TO_HOST)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: as above; `dst` lives until the synchronisation below.
        unsafe { ffi::memcpy_dtoh_async(dst, src, self.cu_stream(), HINT_COPY) }?;
        self.sync()
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both buffers hold `bytes` (checked by Buffer) and outlive the queued copy
        // (blocks return to their pool only in stream order; see the module docs).
        unsafe { ffi::memcpy_dtod_async(dst, src, bytes, self.cu_stream(), HINT_COPY) }
    }

    fn memset(&self, dst: u64, value: u8, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: as above.
        unsafe { ffi::memset_d8_async(dst, value, bytes, self.cu_stream(), HINT_COPY) }
    }

    fn synchronize(&self) -> Result<()> {
        // Synchronising a capturing stream would invalidate the capture: refuse instead.
        self.refuse_capturing(&refusals::BACKEND_SYNCHRONIZE)?;
        self.bind()?;
        self.sync()
    }

    fn begin_capture(&self) -> Result<()> {
        if self.is_capturing() {
            return Err(Error::NotAllowedDuringCapture {
                op: "begin_capture",
                why: "the stream is already capturing",
                fix: "finish the running capture first",
            });
        }
        if self.cu_stream().is_null() {
            return Err(Error::Unsupported {
                backend: "cuda",
                what: "capturing the legacy default stream, which this rank adopted (`ctx.default_stream()`); CUDA cannot capture it: adopt a created stream (`ctx.new_stream()`; with candle, `Device::new_cuda_with_stream`)".into(),
            });
        }
        self.bind()?;
        // SAFETY: the stream is live.
        unsafe {
            ffi::begin_capture(
                self.cu_stream(),
                "the stream could not start capturing; is another capture running on it?",
            )
        }?;
        self.capturing.store(true, Ordering::Release);
        Ok(())
    }

    fn end_capture(&self) -> Result<Box<dyn GraphBackend>> {
        self.bind()?;
        // SAFETY: the stream is live. A failed capture's partial graph is destroyed.
        let graph = unsafe { ffi::end_capture(self.cu_stream(), HINT_CAPTURE) };
        self.capturing.store(false, Ordering::Release);
        self.drop_deferred();
        let exec = graph?.instantiate(HINT_CAPTURE)?;
        Ok(Box::new(CudaGraph {
            exec,
            stream: self.stream.clone(),
        }))
    }

    fn abort_capture(&self) {
        if !self.is_capturing() {
            return;
        }
        let _ = self.bind();
        // SAFETY: the stream is live. An invalidated capture returns an error and no graph:
        // either way the stream leaves capture mode, and a graph returned is destroyed.
        let _ = unsafe { ffi::end_capture(self.cu_stream(), HINT_CAPTURE) };
        self.capturing.store(false, Ordering::Release);
        self.drop_deferred();
    }

    fn drop_outside_capture(&self, memory: Box<dyn Any + Send + Sync>) {
        let mut d = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that `drop_deferred` takes after clearing the flag: an item
        // pushed here is either seen by that drain or pushed after it, when not capturing.
        if self.is_capturing() {
            d.push(memory);
        } else {
            drop(d);
            drop(memory);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An instantiated CUDA graph (`CUgraphExec`), launched on the stream it was captured on.
pub struct CudaGraph {
    /// Destroyed first on drop, with the context bound (see `Drop`).
    exec: GraphExec,
    stream: Arc<CudaStream>,
}

// SAFETY: a CUgraphExec may be launched and destroyed from any thread whose context is bound;
// symmem only replays a graph on the rank thread that captured it.
unsafe impl Send for CudaGraph {}

impl GraphBackend for CudaGraph {
    fn launch(&mut self) -> Result<()> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_BIND))?;
        // SAFETY: the stream is live and its context bound.
        unsafe {
            self.exec.launch(
                self.stream.cu_stream(),
                "the graph could not be launched; an earlier kernel may have failed (see compute-sanitizer)",
            )
        }
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // `exec` is destroyed right after this (the first field): an in-flight launch is freed
        // by the driver once it completes.
        let _ = self.stream.context().bind_to_thread();
    }
}
