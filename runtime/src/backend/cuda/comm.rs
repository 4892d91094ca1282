//! NCCL communicators: collectives, symmetric windows, the validation exchange and splits.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::sync::owner_lock::{OwnerGuard, OwnerLock};
use std::time::{Duration, Instant};

use cudarc::driver::{sys as cu, CudaContext, CudaStream};
use cudarc::nccl::sys as nccl;

use super::device::CudaRankStream;
use super::util::{cu_check, cuda_err, nccl_check, round_up, RelaxedCapture};
use crate::backend::{CommBackend, DirectAllReduce, Operand, StreamBackend, SymSegment};
use crate::{DType, Error, ReduceOp, Result};

/// `NCCL_WIN_COLL_SYMMETRIC` from `nccl.h` (2.27+): the `winFlags` of
/// `ncclCommWindowRegister` that registers a window for NCCL's symmetric kernels (cudarc's
/// bindings do not export the macro).
pub const NCCL_WIN_COLL_SYMMETRIC: i32 = 0x01;
/// Bytes per rank of a validation-exchange record (a 4-byte length, then the data).
const RECORD: usize = 256;
/// Fallback allocation granularity when the driver cannot tell (2 MiB, usual on NVIDIA GPUs).
const DEFAULT_GRANULARITY: usize = 2 << 20;

const HINT_COLL: &str = "check that every rank calls the same collectives in the same order with the same counts and types (SYMMEM_VALIDATE=1 checks it); set NCCL_DEBUG=WARN for NCCL's own diagnostics";
const HINT_MEM: &str = "the GPU is out of memory for a symmetric segment: free buffers, call group.empty_cache(), or lower the sizes";
const HINT_WIN: &str = "NCCL could not register the segment as a symmetric window; set NCCL_DEBUG=WARN for details, or update NCCL (2.28+ recommended)";

static LOGGED_NO_SYMMETRIC: AtomicBool = AtomicBool::new(false);

/// Settings every communicator of a launch shares (from the NCCL version policy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommSettings {
    /// Whether symmetric windows may be registered (`ncclCommWindowRegister` exists and the
    /// version policy allows it).
    pub(crate) windows: bool,
}

/// `ncclAllReduce` / `ncclReduceScatter`.
type ReduceFn = unsafe extern "C" fn(
    *const std::ffi::c_void,
    *mut std::ffi::c_void,
    usize,
    nccl::ncclDataType_t,
    nccl::ncclRedOp_t,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> nccl::ncclResult_t;
/// `ncclAllGather`.
type GatherFn = unsafe extern "C" fn(
    *const std::ffi::c_void,
    *mut std::ffi::c_void,
    usize,
    nccl::ncclDataType_t,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> nccl::ncclResult_t;
/// `ncclBroadcast`.
type BroadcastFn = unsafe extern "C" fn(
    *const std::ffi::c_void,
    *mut std::ffi::c_void,
    usize,
    nccl::ncclDataType_t,
    i32,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> nccl::ncclResult_t;

/// The collectives' entry points in the NCCL library cudarc loaded, resolved once, so that a
/// launch is one indirect call (cudarc's wrappers add a call and a once-initialised lookup per
/// launch). `repr(C)` with `ncclAllReduce` first: it sits in the first cache line of
/// [`CommCore`].
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct NcclFns {
    all_reduce: ReduceFn,
    reduce_scatter: ReduceFn,
    all_gather: GatherFn,
    broadcast: BroadcastFn,
}

impl NcclFns {
    /// Resolved from cudarc's NCCL library handle (the library every communicator came from).
    /// Only called once a communicator exists, so the library is loaded. A missing symbol (a
    /// library that is not NCCL, or a broken one) is an error, as it would be a panic inside
    /// cudarc's own wrapper.
    fn resolve() -> Result<NcclFns> {
        static FNS: std::sync::OnceLock<std::result::Result<NcclFns, String>> =
            std::sync::OnceLock::new();
        let fns = FNS.get_or_init(|| {
            fn get<F: Copy>(
                lib: &libloading::Library,
                name: &str,
            ) -> std::result::Result<F, String> {
                // SAFETY: `F` is the symbol's C signature (nccl.h); the library stays loaded
                // for the life of the process (cudarc keeps it in a static).
                unsafe { lib.get::<F>(name.as_bytes()).map(|f| *f) }
                    .map_err(|e| format!("{}: {e}", name.trim_end_matches('\0')))
            }
            // SAFETY: the library is loaded (a communicator exists, made through it).
            let lib = unsafe { nccl::culib() };
            Ok(NcclFns {
                all_reduce: get(lib, "ncclAllReduce\0")?,
                reduce_scatter: get(lib, "ncclReduceScatter\0")?,
                all_gather: get(lib, "ncclAllGather\0")?,
                broadcast: get(lib, "ncclBroadcast\0")?,
            })
        });
        fns.clone().map_err(|message| Error::Nccl {
            call: "dlsym",
            message,
            hint: "the loaded libnccl lacks a collective entry point: point LD_LIBRARY_PATH at a complete NCCL (2.27.3 or later)",
        })
    }
}

/// The raw communicator and whether it is still usable.
struct RawComm {
    comm: nccl::ncclComm_t,
    /// `Some(cause)` once aborted: no call may use `comm` any more.
    aborted: Option<String>,
}

// SAFETY: an ncclComm_t may be used from any thread; access is serialised by the mutex.
unsafe impl Send for RawComm {}

/// The shared core of a communicator: what an abort from another thread needs, and everything
/// a collective launch reads, laid out so that an all-reduce launch reads one cache line: the
/// lock's flags, the communicator handle, the stream and `ncclAllReduce`'s address
/// (`docs/design.md`, "The launch path"). A group's direct entry points here.
#[repr(C, align(64))]
pub(crate) struct CommCore {
    raw: OwnerLock<RawComm>,
    /// The raw handle of the rank stream the communicator was made for.
    cu_stream: cu::CUstream,
    /// NCCL's collective entry points (`ncclAllReduce` first, still in the first line).
    fns: NcclFns,
    /// The group's name, for errors.
    name: Mutex<Arc<str>>,
}

// The launch reads the lock, the handle, the stream and `ncclAllReduce` in one cache line.
const _: () = assert!(
    std::mem::offset_of!(CommCore, fns) + std::mem::size_of::<ReduceFn>() <= 64,
    "CommCore: ncclAllReduce's address must stay in the first cache line"
);

// SAFETY: `cu_stream` is a plain handle, used only to queue work (which CUDA allows from any
// thread); the function pointers are plain; the rest is `Send + Sync` on its own.
unsafe impl Send for CommCore {}
// SAFETY: as above; `cu_stream` and the functions are never mutated after creation.
unsafe impl Sync for CommCore {}

impl CommCore {
    #[inline]
    fn lock(&self) -> OwnerGuard<'_, RawComm> {
        self.raw.lock()
    }

    fn name(&self) -> Arc<str> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn aborted(&self, cause: String) -> Error {
        Error::Aborted {
            group: self.name().to_string(),
            cause,
        }
    }

    /// Run an NCCL call with the communicator, unless it was aborted. Inline, with the
    /// aborted and failed cases out of line: this wraps every collective launch.
    #[inline(always)]
    fn with_comm(
        &self,
        call: &'static str,
        f: impl FnOnce(nccl::ncclComm_t) -> nccl::ncclResult_t,
    ) -> Result<()> {
        let raw = self.lock();
        if raw.aborted.is_some() {
            return Err(self.aborted_now(raw));
        }
        let r = f(raw.comm);
        nccl_check(call, r, raw.comm, HINT_COLL)
    }

    /// The error of a call on an aborted communicator (releases the lock first).
    #[cold]
    #[inline(never)]
    fn aborted_now(&self, raw: OwnerGuard<'_, RawComm>) -> Error {
        let cause = raw.aborted.clone().unwrap_or_default();
        drop(raw);
        self.aborted(cause)
    }

    /// `ncclAllReduce` on raw stream `s`.
    #[inline(always)]
    fn enqueue_all_reduce(
        &self,
        s: cu::CUstream,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.with_comm("ncclAllReduce", |comm| {
            // SAFETY: operands hold `count` elements (checked by the core) and live until the
            // queued work ran (stream-ordered reuse).
            unsafe {
                (self.fns.all_reduce)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    nccl_op(op),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    /// Abort the communicator (unblocks kernels waiting for peers). Idempotent.
    pub(crate) fn abort(&self, cause: &str) {
        let mut raw = self.lock();
        if raw.aborted.is_some() {
            return;
        }
        // SAFETY: the communicator is live (not aborted nor destroyed: destruction takes the
        // core out of every registry first).
        unsafe { nccl::ncclCommAbort(raw.comm) };
        raw.aborted = Some(cause.to_string());
    }
}

/// The communicators of one launch (the world and its splits): when a rank panics or a wait
/// times out, every communicator is aborted so that no rank stays blocked in a collective.
#[derive(Default)]
pub(crate) struct AbortRegistry {
    comms: Mutex<Vec<Weak<CommCore>>>,
}

impl AbortRegistry {
    fn register(&self, core: &Arc<CommCore>) {
        let mut c = self.comms.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|w| w.strong_count() > 0);
        c.push(Arc::downgrade(core));
    }

    /// Abort every live communicator of the launch.
    pub(crate) fn abort_all(&self, cause: &str) {
        let comms: Vec<Arc<CommCore>> = self
            .comms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for c in comms {
            c.abort(cause);
        }
    }
}

/// Device scratch memory of a communicator.
struct Scratch {
    /// One f32 for barriers.
    barrier: u64,
    /// Send record of the validation exchange (`RECORD` bytes).
    xsend: u64,
    /// Gathered records (`RECORD * size` bytes).
    xrecv: u64,
}

/// One rank's NCCL communicator of a group.
///
/// Collectives are queued on the rank's stream with the communicator's lock held only while
/// NCCL enqueues. Symmetric segments are `ncclMemAlloc` memory registered with
/// `ncclCommWindowRegister(..., NCCL_WIN_COLL_SYMMETRIC)`; NCCL picks its symmetric kernels
/// by itself for pointers inside such windows.
pub struct NcclComm {
    core: Arc<CommCore>,
    rank: usize,
    size: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaRankStream>,
    /// Internal stream of the validation exchange (usable while the rank's stream captures).
    side: Arc<CudaStream>,
    scratch: Mutex<Scratch>,
    granularity: usize,
    settings: CommSettings,
    symmetric: AtomicBool,
    next_window: AtomicU64,
    registry: Arc<AbortRegistry>,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("name", &self.name())
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("symmetric", &self.symmetric.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn nccl_dtype(d: DType) -> nccl::ncclDataType_t {
    use nccl::ncclDataType_t as T;
    match d {
        DType::U8 => T::ncclUint8,
        DType::I32 => T::ncclInt32,
        DType::U32 => T::ncclUint32,
        DType::I64 => T::ncclInt64,
        DType::U64 => T::ncclUint64,
        DType::F16 => T::ncclFloat16,
        DType::BF16 => T::ncclBfloat16,
        DType::F32 => T::ncclFloat32,
        DType::F64 => T::ncclFloat64,
    }
}

fn nccl_op(op: ReduceOp) -> nccl::ncclRedOp_t {
    use nccl::ncclRedOp_t as O;
    match op {
        ReduceOp::Sum => O::ncclSum,
        ReduceOp::Prod => O::ncclProd,
        ReduceOp::Max => O::ncclMax,
        ReduceOp::Min => O::ncclMin,
        ReduceOp::Avg => O::ncclAvg,
    }
}

impl NcclComm {
    /// The raw stream of `stream`: the communicator's own rank stream without a downcast (the
    /// usual case, checked by address), any other CUDA rank stream by downcasting.
    #[inline(always)]
    fn cu_stream_for(&self, stream: &dyn StreamBackend) -> Result<cu::CUstream> {
        if std::ptr::addr_eq(
            stream as *const dyn StreamBackend,
            Arc::as_ptr(&self.stream),
        ) {
            return Ok(self.core.cu_stream);
        }
        cu_stream_of(stream)
    }
}

#[cold]
#[inline(never)]
fn cu_stream_of(stream: &dyn StreamBackend) -> Result<cu::CUstream> {
    stream.as_any().downcast_ref::<CudaRankStream>().map(CudaRankStream::cu_stream).ok_or_else(|| Error::WrongDevice {
        op: "collective",
        detail: "an NCCL communicator needs a CUDA stream (this rank's stream is from another backend)".into(),
    })
}

/// Recommended allocation granularity of GPU `ordinal` (what `ncclMemAlloc` rounds to).
fn granularity(ordinal: usize) -> usize {
    // SAFETY: zeroed is a valid bit pattern for this plain C struct; we set the fields used.
    let mut prop: cu::CUmemAllocationProp = unsafe { std::mem::zeroed() };
    prop.type_ = cu::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type_ = cu::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = ordinal as i32;
    let mut g = 0usize;
    // SAFETY: valid in/out pointers.
    let r = unsafe {
        cu::cuMemGetAllocationGranularity(
            &mut g,
            &prop,
            cu::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED,
        )
    };
    if r == cu::CUresult::CUDA_SUCCESS && g > 0 && g.is_power_of_two() {
        g.max(4096)
    } else {
        DEFAULT_GRANULARITY
    }
}

fn dev_alloc(bytes: usize) -> Result<u64> {
    let _relaxed = RelaxedCapture::new();
    let mut p: cu::CUdeviceptr = 0;
    // SAFETY: out-parameter; the caller bound the context.
    cu_check(
        "cuMemAlloc",
        unsafe { cu::cuMemAlloc_v2(&mut p, bytes.max(1)) },
        HINT_MEM,
    )?;
    Ok(p)
}

unsafe fn dev_free(p: u64) {
    let _relaxed = RelaxedCapture::new();
    cu::cuMemFree_v2(p);
}

impl NcclComm {
    /// Wrap a freshly initialised communicator of this rank's GPU. Takes ownership of `comm`
    /// (destroyed on drop, or on failure here).
    pub(crate) fn from_raw(
        comm: nccl::ncclComm_t,
        ctx: Arc<CudaContext>,
        stream: Arc<CudaRankStream>,
        registry: Arc<AbortRegistry>,
        settings: CommSettings,
    ) -> Result<NcclComm> {
        let destroy = |e: Error| {
            // SAFETY: ours, unused elsewhere.
            unsafe { nccl::ncclCommDestroy(comm) };
            e
        };
        let mut rank = 0;
        let mut size = 0;
        // SAFETY: out-parameters; `comm` is live.
        unsafe {
            nccl_check(
                "ncclCommUserRank",
                nccl::ncclCommUserRank(comm, &mut rank),
                comm,
                HINT_COLL,
            )
            .map_err(destroy)?;
            nccl_check(
                "ncclCommCount",
                nccl::ncclCommCount(comm, &mut size),
                comm,
                HINT_COLL,
            )
            .map_err(destroy)?;
        }
        let fns = NcclFns::resolve().map_err(destroy)?;
        ctx.bind_to_thread()
            .map_err(|e| destroy(cuda_err("cuCtxSetCurrent", e, HINT_MEM)))?;
        let side = ctx
            .new_stream()
            .map_err(|e| destroy(cuda_err("cuStreamCreate", e, HINT_MEM)))?;
        let size = size.max(1) as usize;
        let barrier = dev_alloc(256).map_err(destroy)?;
        let xsend = match dev_alloc(RECORD) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: just allocated.
                unsafe { dev_free(barrier) };
                return Err(destroy(e));
            }
        };
        let xrecv = match dev_alloc(RECORD * size) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: just allocated.
                unsafe {
                    dev_free(barrier);
                    dev_free(xsend);
                }
                return Err(destroy(e));
            }
        };
        let core = Arc::new(CommCore {
            raw: OwnerLock::new(RawComm {
                comm,
                aborted: None,
            }),
            cu_stream: stream.cu_stream(),
            fns,
            name: Mutex::new(Arc::from("world")),
        });
        registry.register(&core);
        Ok(NcclComm {
            core,
            rank: rank.max(0) as usize,
            size,
            granularity: granularity(ctx.ordinal()),
            ctx,
            stream,
            side,
            scratch: Mutex::new(Scratch {
                barrier,
                xsend,
                xrecv,
            }),
            symmetric: AtomicBool::new(settings.windows),
            settings,
            next_window: AtomicU64::new(0),
            registry,
        })
    }

    fn name(&self) -> Arc<str> {
        self.core.name()
    }

    /// The raw `ncclComm_t` (for calling NCCL directly, e.g. in benchmarks). Valid while this
    /// communicator lives and is not aborted; do not destroy it.
    pub fn raw_comm(&self) -> nccl::ncclComm_t {
        self.core.lock().comm
    }

    /// The allocation granularity symmetric segments are rounded to.
    pub fn granularity(&self) -> usize {
        self.granularity
    }

    fn aborted(&self, cause: String) -> Error {
        self.core.aborted(cause)
    }

    /// Run an NCCL call with the communicator, unless it was aborted.
    #[inline(always)]
    fn with_comm(
        &self,
        call: &'static str,
        f: impl FnOnce(nccl::ncclComm_t) -> nccl::ncclResult_t,
    ) -> Result<()> {
        self.core.with_comm(call, f)
    }

    /// Poll `stream` until its work is done, NCCL reports an error, or `timeout` passes (then
    /// every communicator of the launch is aborted).
    fn wait(&self, stream: cu::CUstream, timeout: Duration, what: &str) -> Result<()> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            // SAFETY: the stream is live.
            let r = unsafe { cu::cuStreamQuery(stream) };
            match r {
                cu::CUresult::CUDA_SUCCESS => return Ok(()),
                cu::CUresult::CUDA_ERROR_NOT_READY => {}
                e => return Err(cuda_err(
                    "cuStreamQuery",
                    cudarc::driver::result::DriverError(e),
                    "the validation exchange failed on the GPU; set NCCL_DEBUG=WARN for details",
                )),
            }
            {
                let raw = self.core.lock();
                if let Some(cause) = &raw.aborted {
                    let cause = cause.clone();
                    drop(raw);
                    return Err(self.aborted(cause));
                }
                let mut async_err = nccl::ncclResult_t::ncclSuccess;
                // SAFETY: live communicator, out-parameter.
                let r = unsafe { nccl::ncclCommGetAsyncError(raw.comm, &mut async_err) };
                nccl_check("ncclCommGetAsyncError", r, raw.comm, HINT_COLL)?;
                nccl_check("ncclCommGetAsyncError", async_err, raw.comm, HINT_COLL)?;
            }
            if start.elapsed() >= timeout {
                let err = Error::Timeout {
                    group: self.name().to_string(),
                    what: what.to_string(),
                    seconds: timeout.as_secs_f64(),
                    // NCCL does not tell how many peers arrived; only this rank is known to have.
                    arrived: 1,
                    size: self.size,
                };
                self.registry.abort_all(&err.to_string());
                return Err(err);
            }
            polls += 1;
            if polls < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(if polls < 2000 { 50 } else { 1000 }));
            }
        }
    }

    /// All-gather `rec` (`rec.len()` bytes per rank) on the internal stream, bounded by `timeout`.
    fn gather(&self, rec: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let n = rec.len();
        let total = n * self.size;
        let scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let (send, recv, temp) = if n <= RECORD {
            (scratch.xsend, scratch.xrecv, None)
        } else {
            let s = dev_alloc(n)?;
            let r = match dev_alloc(total) {
                Ok(r) => r,
                Err(e) => {
                    // SAFETY: just allocated.
                    unsafe { dev_free(s) };
                    return Err(e);
                }
            };
            (s, r, Some((s, r)))
        };
        let side = self.side.cu_stream();
        let result = (|| {
            // SAFETY: `send` holds `n` bytes; a copy from pageable memory returns once staged.
            cu_check(
                "cuMemcpyHtoDAsync",
                unsafe { cu::cuMemcpyHtoDAsync_v2(send, rec.as_ptr().cast(), n, side) },
                HINT_COLL,
            )?;
            self.with_comm("ncclAllGather", |comm| {
                // SAFETY: `send` holds `n` bytes and `recv` `n * size`; both outlive the wait.
                unsafe {
                    nccl::ncclAllGather(
                        send as *const std::ffi::c_void,
                        recv as *mut std::ffi::c_void,
                        n,
                        nccl::ncclDataType_t::ncclUint8,
                        comm,
                        side as nccl::cudaStream_t,
                    )
                }
            })?;
            self.wait(side, timeout, "validation exchange")?;
            let mut out = vec![0u8; total];
            // SAFETY: the gather is complete; `out` holds `total` bytes.
            cu_check(
                "cuMemcpyDtoHAsync",
                unsafe { cu::cuMemcpyDtoHAsync_v2(out.as_mut_ptr().cast(), recv, total, side) },
                HINT_COLL,
            )?;
            // SAFETY: the side stream is live.
            cu_check(
                "cuStreamSynchronize",
                unsafe { cu::cuStreamSynchronize(side) },
                HINT_COLL,
            )?;
            Ok(out)
        })();
        if let Some((s, r)) = temp {
            if !matches!(result, Err(Error::Timeout { .. } | Error::Aborted { .. })) {
                // SAFETY: the side stream is idle (or the copy failed before using them).
                unsafe {
                    dev_free(s);
                    dev_free(r);
                }
            }
            // After a timeout an aborted kernel may still touch them: leak rather than race.
        }
        result
    }
}

impl CommBackend for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn symmetric_supported(&self) -> bool {
        self.symmetric.load(Ordering::Relaxed)
    }

    fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment> {
        let size =
            round_up(bytes.max(1), self.granularity).ok_or_else(|| Error::InvalidArgument {
                op: "create_symmetric_segment",
                detail: format!("{bytes} bytes overflow the address space"),
            })?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_MEM))?;
        let mut ptr: *mut std::ffi::c_void = std::ptr::null_mut();
        {
            let _relaxed = RelaxedCapture::new();
            // SAFETY: out-parameter; the context of the communicator's GPU is current.
            let r = unsafe { nccl::ncclMemAlloc(&mut ptr, size) };
            nccl_check("ncclMemAlloc", r, std::ptr::null_mut(), HINT_MEM)?;
        }
        let window = self.next_window.fetch_add(1, Ordering::Relaxed);
        let mut handle = 0u64;
        if self.symmetric.load(Ordering::Relaxed) {
            let mut win: nccl::ncclWindow_t = std::ptr::null_mut();
            // Registration is collective: every rank creates the same segments in the same order.
            let r = self.with_comm("ncclCommWindowRegister", |comm| {
                // SAFETY: `ptr` is a live ncclMemAlloc allocation of `size` bytes (a whole
                // segment, so its offset from the cuMem base is 0, a multiple of 4096).
                unsafe {
                    nccl::ncclCommWindowRegister(comm, ptr, size, &mut win, NCCL_WIN_COLL_SYMMETRIC)
                }
            });
            if let Err(e) = r {
                // SAFETY: ours, unregistered.
                unsafe { nccl::ncclMemFree(ptr) };
                return Err(match e {
                    Error::Nccl { call, message, .. } => Error::Nccl {
                        call,
                        message,
                        hint: HINT_WIN,
                    },
                    e => e,
                });
            }
            if win.is_null() {
                self.symmetric.store(false, Ordering::Relaxed);
                if !LOGGED_NO_SYMMETRIC.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "symmem: NCCL registered no symmetric window for group `{}` (this topology or configuration has no symmetric kernels); buffers of its pool take the plain collective path",
                        self.name()
                    );
                }
            } else {
                handle = win as u64;
            }
        }
        Ok(SymSegment {
            base: ptr as u64,
            size,
            window,
            handle,
        })
    }

    unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment) {
        let _ = self.ctx.bind_to_thread();
        if !self.stream.is_capturing() {
            let _ = self.stream.synchronize();
        }
        if seg.handle != 0 {
            let r = self.with_comm("ncclCommWindowDeregister", |comm| {
                nccl::ncclCommWindowDeregister(comm, seg.handle as nccl::ncclWindow_t)
            });
            if let Err(e) = r {
                if !matches!(e, Error::Aborted { .. }) {
                    eprintln!("symmem: {e}");
                }
            }
        }
        let _relaxed = RelaxedCapture::new();
        let r = nccl::ncclMemFree(seg.base as *mut std::ffi::c_void);
        if let Err(e) = nccl_check("ncclMemFree", r, std::ptr::null_mut(), HINT_MEM) {
            eprintln!("symmem: {e}");
        }
    }

    fn all_reduce(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        self.core
            .enqueue_all_reduce(s, send, recv, count, dtype, op)
    }

    fn direct_all_reduce(&self, stream: &dyn StreamBackend) -> Option<DirectAllReduce> {
        /// [`CommCore::launch_all_reduce`] on the communicator's own stream.
        ///
        /// # Safety
        /// `ctx` is a live `CommCore` (see `DirectAllReduce`).
        unsafe fn launch(
            ctx: *const (),
            send: Operand,
            recv: Operand,
            count: usize,
            dtype: DType,
            op: ReduceOp,
        ) -> Result<()> {
            // SAFETY: by the contract of `DirectAllReduce`, `ctx` came from the core below, which
            // lives as long as the communicator.
            let core = unsafe { &*(ctx as *const CommCore) };
            core.enqueue_all_reduce(core.cu_stream, send, recv, count, dtype, op)
        }
        std::ptr::addr_eq(
            stream as *const dyn StreamBackend,
            Arc::as_ptr(&self.stream),
        )
        .then_some(DirectAllReduce {
            ctx: Arc::as_ptr(&self.core) as *const (),
            launch,
        })
    }

    fn all_gather(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
    ) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        self.with_comm("ncclAllGather", |comm| {
            // SAFETY: as above (`recv` holds `count * size`).
            unsafe {
                (self.core.fns.all_gather)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn reduce_scatter(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        self.with_comm("ncclReduceScatter", |comm| {
            // SAFETY: as above (`send` holds `count * size`).
            unsafe {
                (self.core.fns.reduce_scatter)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    nccl_op(op),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn broadcast(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        root: usize,
    ) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        let root = i32::try_from(root).map_err(|_| Error::InvalidArgument {
            op: "broadcast",
            detail: format!("root {root} is out of range"),
        })?;
        self.with_comm("ncclBroadcast", |comm| {
            // SAFETY: as above.
            unsafe {
                (self.core.fns.broadcast)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    root,
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn barrier(&self, stream: &dyn StreamBackend) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        let buf = self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .barrier;
        self.with_comm("ncclAllReduce (barrier)", |comm| {
            // SAFETY: the barrier scratch holds one f32 and lives as long as the communicator.
            unsafe {
                nccl::ncclAllReduce(
                    buf as *const std::ffi::c_void,
                    buf as *mut std::ffi::c_void,
                    1,
                    nccl::ncclDataType_t::ncclFloat32,
                    nccl::ncclRedOp_t::ncclSum,
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_COLL))?;
        let len = u32::try_from(mine.len()).map_err(|_| Error::InvalidArgument {
            op: "exchange",
            detail: format!("{} bytes are too many for a validation record", mine.len()),
        })?;
        // Thread-local capture forbids some calls on this thread; the exchange runs on its own
        // stream, outside any capture.
        let _relaxed = RelaxedCapture::new();
        let mut rec = vec![0u8; RECORD];
        rec[..4].copy_from_slice(&len.to_le_bytes());
        let head = mine.len().min(RECORD - 4);
        rec[4..4 + head].copy_from_slice(&mine[..head]);
        let all = self.gather(&rec, timeout)?;
        let lens: Vec<usize> = all
            .chunks_exact(RECORD)
            .map(|r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize)
            .collect();
        let max = lens.iter().copied().max().unwrap_or(0);
        if max <= RECORD - 4 {
            return Ok(all
                .chunks_exact(RECORD)
                .zip(&lens)
                .map(|(r, &l)| r[4..4 + l].to_vec())
                .collect());
        }
        // A longer record somewhere: every rank saw the same lengths and gathers again.
        let width = round_up(max + 4, 16).unwrap_or(max + 4);
        let mut rec = vec![0u8; width];
        rec[..4].copy_from_slice(&len.to_le_bytes());
        rec[4..4 + mine.len()].copy_from_slice(mine);
        let all = self.gather(&rec, timeout)?;
        Ok(all
            .chunks_exact(width)
            .zip(&lens)
            .map(|(r, &l)| r[4..4 + l].to_vec())
            .collect())
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>> {
        let color_i = i32::try_from(color).map_err(|_| Error::InvalidArgument {
            op: "split_group",
            detail: format!(
                "color {color} is above {} (NCCL takes a non-negative int)",
                i32::MAX
            ),
        })?;
        let key_i = i32::try_from(key).map_err(|_| Error::InvalidArgument {
            op: "split_group",
            detail: format!("key {key} is above {} (NCCL takes an int)", i32::MAX),
        })?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_COLL))?;
        let mut new: nccl::ncclComm_t = std::ptr::null_mut();
        self.with_comm("ncclCommSplit", |comm| {
            // SAFETY: live communicator; a NULL config inherits the parent's.
            unsafe { nccl::ncclCommSplit(comm, color_i, key_i, &mut new, std::ptr::null_mut()) }
        })?;
        if new.is_null() {
            return Err(Error::Nccl {
                call: "ncclCommSplit",
                message: "NCCL returned no communicator".into(),
                hint: "every rank must pass a non-negative color",
            });
        }
        let comm = NcclComm::from_raw(
            new,
            self.ctx.clone(),
            self.stream.clone(),
            self.registry.clone(),
            self.settings,
        )?;
        Ok(Arc::new(comm))
    }

    fn set_name(&self, name: &str) {
        *self.core.name.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(name);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        if !self.stream.is_capturing() {
            let _ = self.stream.synchronize();
        }
        {
            let mut raw = self.core.lock();
            if raw.aborted.is_none() {
                // SAFETY: live communicator, used by nobody else any more (we hold the only
                // strong reference to the core besides transient ones in abort_all, which take
                // this same lock and see `aborted`).
                unsafe {
                    nccl::ncclCommFinalize(raw.comm);
                    nccl::ncclCommDestroy(raw.comm);
                }
                raw.aborted = Some("the communicator was destroyed".into());
            }
        }
        // SAFETY: the side stream is idle after finalize; the scratch is ours.
        unsafe { cu::cuStreamSynchronize(self.side.cu_stream()) };
        let s = self.scratch.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: no queued work uses the scratch any more.
        unsafe {
            dev_free(s.barrier);
            dev_free(s.xsend);
            dev_free(s.xrecv);
        }
    }
}
