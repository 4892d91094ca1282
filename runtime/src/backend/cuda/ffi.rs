//! Every call of the backend into the CUDA driver (cudarc's raw `sys` bindings) and into NCCL
//! (symmem's own handle, [`nccl_api`](super::nccl_api)), checked.
//!
//! The layers: the bindings -> the checked `unsafe fn`s and owners here
//! (each says what its caller must guarantee; each failure becomes an [`Error`] in this file,
//! naming the call and a hint) -> the backend's safe types (`CudaDevice`, `CudaRankStream`,
//! `NcclComm`). NCCL calls made while a communicator's lock is held return the raw
//! `ncclResult_t`: the communicator's `with_comm` checks them with [`nccl_check`], which adds
//! the communicator's last error.
//!
//! Not here: the collectives' entry points copied once into `NcclFns` (`nccl/core.rs`) and
//! called through them on the launch path (one indirect call, no wrapper), and the probes
//! (`probe/`), which load the libraries themselves before cudarc may.

use std::ffi::{c_void, CStr};

use crate::backend::cuda::nccl_api::sys as nccl;
use cudarc::driver::{result::DriverError, sys as cu};

use super::nccl_api::{
    nccl_api, result_name, NcclDataType, NcclRedOp, NcclResult, NCCL_INTERNAL_ERROR,
    NCCL_INVALID_USAGE, NCCL_IN_PROGRESS, NCCL_SUCCESS,
};

use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Convert a driver error into [`Error::Cuda`], naming the call and what to check.
///
/// The driver's name and text of the code are asked only when the driver can be loaded (cudarc
/// panics otherwise: a `DriverError` can be made without any driver, e.g. by a caller's `?`).
pub fn cuda_err(call: &'static str, e: DriverError, hint: &'static str) -> Error {
    let loaded = super::probe::probe_cuda().is_ok();
    let name = loaded
        .then(|| e.error_name().ok())
        .flatten()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{:?}", e.0));
    let text = loaded
        .then(|| e.error_string().ok())
        .flatten()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        name
    } else {
        format!("{name} ({text})")
    };
    Error::Cuda {
        call,
        message,
        hint,
    }
}

/// A cudarc driver call the caller made (for `?` on cudarc's driver API in code that returns
/// `symmem::Result`): [`Error::Cuda`] with the driver's error name and text.
impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Error {
        cuda_err(
            "(a cudarc driver call)",
            e,
            "the call was made through cudarc, outside symmem; the driver's error says what failed",
        )
    }
}

/// Check a raw `CUresult`.
fn cu_check(call: &'static str, r: cu::CUresult, hint: &'static str) -> Result<()> {
    r.result().map_err(|e| cuda_err(call, e, hint))
}

/// NCCL's text for a result code, plus the communicator's last error when there is one.
fn nccl_message(r: NcclResult, comm: nccl::ncclComm_t) -> String {
    let name = result_name(r);
    let Ok(api) = nccl_api() else {
        return format!("{name} ({r})");
    };
    // SAFETY: NCCL returns static NUL-terminated strings (or NULL) for any code.
    let base = unsafe {
        let p = (api.get_error_string)(r);
        if p.is_null() {
            format!("{name} ({r})")
        } else {
            format!("{name}: {}", CStr::from_ptr(p).to_string_lossy())
        }
    };
    // SAFETY: `comm` is NULL or a live communicator (the callers' contract); the returned
    // string is owned by NCCL and copied at once.
    let last = unsafe {
        let p = (api.get_last_error)(comm);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().trim().to_string()
        }
    };
    if last.is_empty() {
        base
    } else {
        format!("{base}; last NCCL error: {last}")
    }
}

/// Check a raw `ncclResult_t` (success and "in progress" are fine for blocking communicators).
/// `comm` is NULL or a live communicator (its last error goes into the message).
/// Inline: it follows every collective launch; the error is built out of line.
#[inline(always)]
pub fn nccl_check(
    call: &'static str,
    r: NcclResult,
    comm: nccl::ncclComm_t,
    hint: &'static str,
) -> Result<()> {
    match r {
        NCCL_SUCCESS | NCCL_IN_PROGRESS => Ok(()),
        _ => Err(nccl_error(call, r, comm, hint)),
    }
}

/// The error of a failed NCCL call.
#[cold]
#[inline(never)]
fn nccl_error(
    call: &'static str,
    r: NcclResult,
    comm: nccl::ncclComm_t,
    hint: &'static str,
) -> Error {
    Error::Nccl {
        call,
        message: nccl_message(r, comm),
        hint,
    }
}

// ---------------------------------------------------------------------------------------------
// Capture mode
// ---------------------------------------------------------------------------------------------

/// Switches the calling thread's stream-capture interaction mode to *relaxed* while alive, so
/// that allocations and frees (`cuMemAlloc`, `cuMemFree`) are legal while this thread captures a
/// graph in thread-local mode. Restores the previous mode on drop.
pub struct RelaxedCapture {
    prev: Option<cu::CUstreamCaptureMode>,
}

impl RelaxedCapture {
    pub fn new() -> Self {
        let mut mode = cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
        // SAFETY: plain in/out parameter. On failure nothing was exchanged, and nothing is
        // restored on drop.
        let r = unsafe { cu::cuThreadExchangeStreamCaptureMode(&mut mode) };
        RelaxedCapture {
            prev: (r == cu::CUresult::CUDA_SUCCESS).then_some(mode),
        }
    }
}

impl Drop for RelaxedCapture {
    fn drop(&mut self) {
        if let Some(mut mode) = self.prev {
            // SAFETY: as above.
            let _ = unsafe { cu::cuThreadExchangeStreamCaptureMode(&mut mode) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Device memory
// ---------------------------------------------------------------------------------------------

/// `cuMemAlloc` of `bytes` in the current context (an error, not UB, without one).
pub fn mem_alloc(bytes: usize, hint: &'static str) -> Result<cu::CUdeviceptr> {
    let mut p: cu::CUdeviceptr = 0;
    // SAFETY: out-parameter.
    cu_check(
        "cuMemAlloc",
        unsafe { cu::cuMemAlloc_v2(&mut p, bytes) },
        hint,
    )?;
    Ok(p)
}

/// `cuMemFree`.
///
/// # Safety
/// `ptr` came from [`mem_alloc`], is not freed yet, and no queued work uses it any more.
pub unsafe fn mem_free(ptr: cu::CUdeviceptr, hint: &'static str) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check("cuMemFree", unsafe { cu::cuMemFree_v2(ptr) }, hint)
}

/// Free and total memory of the current context's device (`cuMemGetInfo`), `None` on failure.
pub fn mem_get_info() -> Option<(usize, usize)> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: out-parameters.
    let r = unsafe { cu::cuMemGetInfo_v2(&mut free, &mut total) };
    (r == cu::CUresult::CUDA_SUCCESS).then_some((free, total))
}

/// The recommended granularity of pinned device allocations on GPU `ordinal`
/// (`cuMemGetAllocationGranularity`), `None` when the driver cannot tell.
pub fn recommended_granularity(ordinal: usize) -> Option<usize> {
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
    (r == cu::CUresult::CUDA_SUCCESS).then_some(g)
}

/// A device allocation (`cuMemAlloc`) that frees itself on drop. Both happen in relaxed
/// capture mode, so they are legal while the thread captures a graph.
///
/// The owner drops it only with the allocating context current and no queued work using the
/// memory (or [`DeviceAlloc::leak`]s it when it cannot know).
pub struct DeviceAlloc {
    ptr: cu::CUdeviceptr,
}

impl DeviceAlloc {
    /// `bytes` (at least 1) in the current context.
    pub fn new(bytes: usize, hint: &'static str) -> Result<Self> {
        let _relaxed = RelaxedCapture::new();
        mem_alloc(bytes.max(1), hint).map(|ptr| DeviceAlloc { ptr })
    }

    /// The device address.
    pub fn ptr(&self) -> cu::CUdeviceptr {
        self.ptr
    }

    /// Give the memory up without freeing it (queued work may still touch it).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        let _relaxed = RelaxedCapture::new();
        // SAFETY: ours, freed once; by the owner's contract no queued work uses it any more.
        unsafe { cu::cuMemFree_v2(self.ptr) };
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// `cuStreamSynchronize`.
///
/// # Safety
/// `stream` is a live stream.
pub unsafe fn stream_synchronize(stream: cu::CUstream, hint: &'static str) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuStreamSynchronize",
        unsafe { cu::cuStreamSynchronize(stream) },
        hint,
    )
}

/// `cuStreamQuery`: whether the work queued on `stream` is done.
///
/// # Safety
/// `stream` is a live stream.
pub unsafe fn stream_query(stream: cu::CUstream, hint: &'static str) -> Result<bool> {
    // SAFETY: the caller's contract.
    match unsafe { cu::cuStreamQuery(stream) } {
        cu::CUresult::CUDA_SUCCESS => Ok(true),
        cu::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        e => Err(cuda_err("cuStreamQuery", DriverError(e), hint)),
    }
}

/// `cuMemcpyHtoDAsync` of `src` to `dst` on `stream`.
///
/// # Safety
/// `dst` holds at least `src.len()` bytes and outlives the queued copy; `stream` is live. A
/// copy from pageable memory returns once `src` is staged.
pub unsafe fn memcpy_htod_async(
    dst: cu::CUdeviceptr,
    src: &[u8],
    stream: cu::CUstream,
    hint: &'static str,
) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuMemcpyHtoDAsync",
        unsafe { cu::cuMemcpyHtoDAsync_v2(dst, src.as_ptr().cast(), src.len(), stream) },
        hint,
    )
}

/// `cuMemcpyDtoHAsync` of `dst.len()` bytes from `src` on `stream`.
///
/// # Safety
/// `src` holds at least `dst.len()` bytes; `dst` is not read until the copy completed (the
/// caller synchronises `stream` before); `stream` is live.
pub unsafe fn memcpy_dtoh_async(
    dst: &mut [u8],
    src: cu::CUdeviceptr,
    stream: cu::CUstream,
    hint: &'static str,
) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuMemcpyDtoHAsync",
        unsafe { cu::cuMemcpyDtoHAsync_v2(dst.as_mut_ptr().cast(), src, dst.len(), stream) },
        hint,
    )
}

/// `cuMemcpyDtoDAsync` of `bytes` from `src` to `dst` on `stream`.
///
/// # Safety
/// Both hold `bytes` and outlive the queued copy; `stream` is live.
pub unsafe fn memcpy_dtod_async(
    dst: cu::CUdeviceptr,
    src: cu::CUdeviceptr,
    bytes: usize,
    stream: cu::CUstream,
    hint: &'static str,
) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuMemcpyDtoDAsync",
        unsafe { cu::cuMemcpyDtoDAsync_v2(dst, src, bytes, stream) },
        hint,
    )
}

/// `cuMemsetD8Async` of `bytes` at `dst` to `value` on `stream`.
///
/// # Safety
/// `dst` holds `bytes` and outlives the queued fill; `stream` is live.
pub unsafe fn memset_d8_async(
    dst: cu::CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: cu::CUstream,
    hint: &'static str,
) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuMemsetD8Async",
        unsafe { cu::cuMemsetD8Async(dst, value, bytes, stream) },
        hint,
    )
}

// ---------------------------------------------------------------------------------------------
// Graph capture
// ---------------------------------------------------------------------------------------------

/// `cuStreamBeginCapture` in thread-local mode.
///
/// # Safety
/// `stream` is a live stream.
pub unsafe fn begin_capture(stream: cu::CUstream, hint: &'static str) -> Result<()> {
    // SAFETY: the caller's contract.
    cu_check(
        "cuStreamBeginCapture",
        unsafe {
            cu::cuStreamBeginCapture_v2(
                stream,
                cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        },
        hint,
    )
}

/// `cuStreamEndCapture`: the captured graph. A failed capture's partial graph, if the driver
/// returned one, is destroyed; either way the stream leaves capture mode.
///
/// # Safety
/// `stream` is a live stream.
pub unsafe fn end_capture(stream: cu::CUstream, hint: &'static str) -> Result<CapturedGraph> {
    let mut graph: cu::CUgraph = std::ptr::null_mut();
    // SAFETY: out-parameter; the stream is live (the caller's contract).
    let r = unsafe { cu::cuStreamEndCapture(stream, &mut graph) };
    let graph = CapturedGraph(graph);
    cu_check("cuStreamEndCapture", r, hint)?;
    Ok(graph)
}

/// A graph returned by [`end_capture`] (`CUgraph`), destroyed on drop.
pub struct CapturedGraph(cu::CUgraph);

impl CapturedGraph {
    /// `cuGraphInstantiate`; the graph itself is destroyed (the executable graph does not need
    /// it).
    pub fn instantiate(self, hint: &'static str) -> Result<GraphExec> {
        let mut exec: cu::CUgraphExec = std::ptr::null_mut();
        // SAFETY: `self.0` is a valid graph.
        let r = unsafe { cu::cuGraphInstantiateWithFlags(&mut exec, self.0, 0) };
        // The executable graph is independent of the graph it was built from.
        drop(self);
        cu_check("cuGraphInstantiate", r, hint)?;
        Ok(GraphExec(exec))
    }
}

impl Drop for CapturedGraph {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the graph was returned to us and is not used elsewhere.
            unsafe { cu::cuGraphDestroy(self.0) };
        }
    }
}

/// An executable graph (`CUgraphExec`), destroyed on drop (the owner binds its context first;
/// an in-flight launch is freed by the driver once it completes).
pub struct GraphExec(cu::CUgraphExec);

impl GraphExec {
    /// `cuGraphLaunch` on `stream`.
    ///
    /// # Safety
    /// `stream` is a live stream of the graph's context, bound to the thread.
    pub unsafe fn launch(&self, stream: cu::CUstream, hint: &'static str) -> Result<()> {
        // SAFETY: the executable graph is live; the stream by the caller's contract.
        cu_check(
            "cuGraphLaunch",
            unsafe { cu::cuGraphLaunch(self.0, stream) },
            hint,
        )
    }
}

impl Drop for GraphExec {
    fn drop(&mut self) {
        // SAFETY: ours, destroyed once.
        unsafe { cu::cuGraphExecDestroy(self.0) };
    }
}

// ---------------------------------------------------------------------------------------------
// NCCL
// ---------------------------------------------------------------------------------------------

/// `NCCL_WIN_COLL_SYMMETRIC` from `nccl.h` (2.27+): the `winFlags` of
/// `ncclCommWindowRegister` that registers a window for NCCL's symmetric kernels (cudarc's
/// bindings do not export the macro).
pub const NCCL_WIN_COLL_SYMMETRIC: i32 = 0x01;

/// `ncclCommUserRank`.
///
/// # Safety
/// `comm` is a live communicator.
pub unsafe fn comm_user_rank(comm: nccl::ncclComm_t, hint: &'static str) -> Result<i32> {
    let api = nccl_api()?;
    let mut rank = 0;
    // SAFETY: out-parameter; `comm` is live (the caller's contract).
    let r = unsafe { (api.comm_user_rank)(comm, &mut rank) };
    nccl_check("ncclCommUserRank", r, comm, hint)?;
    Ok(rank)
}

/// `ncclCommCount`.
///
/// # Safety
/// `comm` is a live communicator.
pub unsafe fn comm_count(comm: nccl::ncclComm_t, hint: &'static str) -> Result<i32> {
    let api = nccl_api()?;
    let mut size = 0;
    // SAFETY: out-parameter; `comm` is live (the caller's contract).
    let r = unsafe { (api.comm_count)(comm, &mut size) };
    nccl_check("ncclCommCount", r, comm, hint)?;
    Ok(size)
}

/// `ncclCommCuDevice`: the CUDA device ordinal of the communicator's rank.
///
/// # Safety
/// `comm` is a live communicator.
pub unsafe fn comm_cu_device(comm: nccl::ncclComm_t, hint: &'static str) -> Result<i32> {
    let api = nccl_api()?;
    let mut dev = -1;
    // SAFETY: out-parameter; `comm` is live (the caller's contract).
    let r = unsafe { (api.comm_cu_device)(comm, &mut dev) };
    nccl_check("ncclCommCuDevice", r, comm, hint)?;
    Ok(dev)
}

/// `ncclCommGetAsyncError`: an error when the call fails or the communicator reports one.
///
/// # Safety
/// `comm` is a live communicator.
pub unsafe fn comm_async_error(comm: nccl::ncclComm_t, hint: &'static str) -> Result<()> {
    let api = nccl_api()?;
    let mut async_err: NcclResult = NCCL_SUCCESS;
    // SAFETY: out-parameter (an `int`, whatever code NCCL writes); `comm` is live.
    let r = unsafe { (api.comm_get_async_error)(comm, &mut async_err) };
    nccl_check("ncclCommGetAsyncError", r, comm, hint)?;
    nccl_check("ncclCommGetAsyncError", async_err, comm, hint)
}

/// The result of calling `f` with the NCCL entry points, or `ncclInternalError` when NCCL
/// cannot be loaded (never the case for a live communicator: it was made through them).
fn with_api(f: impl FnOnce(&'static super::nccl_api::NcclApi) -> NcclResult) -> NcclResult {
    match nccl_api() {
        Ok(api) => f(api),
        Err(_) => NCCL_INTERNAL_ERROR,
    }
}

/// `ncclCommAbort` (unblocks kernels waiting for peers; the handle is dead afterwards).
///
/// # Safety
/// `comm` is a live communicator, not used again.
pub unsafe fn comm_abort(comm: nccl::ncclComm_t) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.comm_abort)(comm) })
}

/// `ncclCommFinalize` (flushes the communicator's work before [`comm_destroy`]).
///
/// # Safety
/// `comm` is a live communicator, used by nobody else.
pub unsafe fn comm_finalize(comm: nccl::ncclComm_t) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.comm_finalize)(comm) })
}

/// `ncclCommDestroy`.
///
/// # Safety
/// `comm` is a live communicator (finalized or never used), not used again.
pub unsafe fn comm_destroy(comm: nccl::ncclComm_t) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.comm_destroy)(comm) })
}

/// `ncclCommSplit` with a NULL config (the new communicator inherits the parent's); the new
/// handle (NULL for ranks that passed no color) goes to `new`.
///
/// # Safety
/// `comm` is a live communicator; every rank of it makes the same call.
pub unsafe fn comm_split(
    comm: nccl::ncclComm_t,
    color: i32,
    key: i32,
    new: &mut nccl::ncclComm_t,
) -> NcclResult {
    // SAFETY: the caller's contract; `new` is an out-parameter; a NULL config is allowed.
    with_api(|api| unsafe { (api.comm_split)(comm, color, key, new, std::ptr::null_mut()) })
}

/// `ncclRedOpCreatePreMulSum` with a host-immediate `scalar` of `dtype` (its bytes, read at
/// once): the handle of a reduction "multiply by `scalar`, then sum", valid on `comm` for
/// `dtype` until [`red_op_destroy`].
///
/// # Safety
/// `comm` is a live communicator; `scalar` holds one element of `dtype` (2, 4 or 8 bytes).
pub unsafe fn red_op_create_pre_mul_sum(
    comm: nccl::ncclComm_t,
    scalar: &mut [u8],
    dtype: NcclDataType,
    hint: &'static str,
) -> Result<NcclRedOp> {
    let api = nccl_api()?;
    let mut op: NcclRedOp = -1;
    // SAFETY: out-parameter (an `int`); `scalar` is readable for one element of `dtype` (the
    // caller's contract) and only read during the call (host-immediate residence).
    let r = unsafe {
        (api.red_op_create_pre_mul_sum)(
            &mut op,
            scalar.as_mut_ptr().cast(),
            dtype,
            super::nccl_api::NCCL_SCALAR_HOST_IMMEDIATE,
            comm,
        )
    };
    nccl_check("ncclRedOpCreatePreMulSum", r, comm, hint)?;
    Ok(op)
}

/// `ncclRedOpDestroy`.
///
/// # Safety
/// `comm` is live and `op` one of its user-created operations, destroyed once, used by no call
/// made after this one.
pub unsafe fn red_op_destroy(op: NcclRedOp, comm: nccl::ncclComm_t) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.red_op_destroy)(op, comm) })
}

/// `ncclMemAlloc` of `size` bytes (cuMem memory fit for a symmetric window).
///
/// # Safety
/// The context of the communicator's GPU is current.
pub unsafe fn mem_alloc_symmetric(size: usize, hint: &'static str) -> Result<*mut c_void> {
    let api = nccl_api()?;
    let mut ptr: *mut c_void = std::ptr::null_mut();
    // SAFETY: out-parameter; the context by the caller's contract.
    let r = unsafe { (api.mem_alloc)(&mut ptr, size) };
    nccl_check("ncclMemAlloc", r, std::ptr::null_mut(), hint)?;
    Ok(ptr)
}

/// `ncclMemFree`.
///
/// # Safety
/// `ptr` came from [`mem_alloc_symmetric`], is not registered any more, and no queued work
/// uses it.
pub unsafe fn mem_free_symmetric(ptr: *mut c_void, hint: &'static str) -> Result<()> {
    let api = nccl_api()?;
    // SAFETY: the caller's contract.
    let r = unsafe { (api.mem_free)(ptr) };
    nccl_check("ncclMemFree", r, std::ptr::null_mut(), hint)
}

/// `ncclCommWindowRegister` of `size` bytes at `ptr` with `flags`; the window (NULL when NCCL
/// registered none) goes to `win`. Collective: every rank registers the same segments in the
/// same order. `ncclInvalidUsage` when the library has no window registration (NCCL < 2.27).
///
/// # Safety
/// `comm` is live; `ptr` is a live `ncclMemAlloc` allocation of `size` bytes whose offset from
/// its cuMem base is a multiple of 4096.
pub unsafe fn window_register(
    comm: nccl::ncclComm_t,
    ptr: *mut c_void,
    size: usize,
    win: &mut nccl::ncclWindow_t,
    flags: i32,
) -> NcclResult {
    with_api(|api| match api.window_register {
        // SAFETY: the caller's contract; `win` is an out-parameter.
        Some(register) => unsafe { register(comm, ptr, size, win, flags) },
        None => NCCL_INVALID_USAGE,
    })
}

/// `ncclCommWindowDeregister`.
///
/// # Safety
/// `comm` is live and `win` one of its windows, registered once and not used by queued work.
pub unsafe fn window_deregister(comm: nccl::ncclComm_t, win: nccl::ncclWindow_t) -> NcclResult {
    with_api(|api| match api.window_deregister {
        // SAFETY: the caller's contract.
        Some(deregister) => unsafe { deregister(comm, win) },
        None => NCCL_INVALID_USAGE,
    })
}

/// `ncclAllReduce` (the launch path calls `NcclFns` instead).
///
/// # Safety
/// `comm` and `stream` are live; `send` and `recv` hold `count` elements of `dtype` and outlive
/// the queued work; `op` is a built-in operation or one of `comm`'s for `dtype`.
pub unsafe fn all_reduce(
    send: *const c_void,
    recv: *mut c_void,
    count: usize,
    dtype: NcclDataType,
    op: NcclRedOp,
    comm: nccl::ncclComm_t,
    stream: nccl::cudaStream_t,
) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.all_reduce)(send, recv, count, dtype, op, comm, stream) })
}

/// `ncclAllGather` (the launch path calls `NcclFns` instead).
///
/// # Safety
/// `comm` and `stream` are live; `send` holds `count` elements of `dtype` and `recv` `count`
/// per rank; both outlive the queued work.
pub unsafe fn all_gather(
    send: *const c_void,
    recv: *mut c_void,
    count: usize,
    dtype: NcclDataType,
    comm: nccl::ncclComm_t,
    stream: nccl::cudaStream_t,
) -> NcclResult {
    // SAFETY: the caller's contract.
    with_api(|api| unsafe { (api.all_gather)(send, recv, count, dtype, comm, stream) })
}

/// `ncclGetUniqueId`: a new id for the ranks of a new world to share.
pub fn get_unique_id(hint: &'static str) -> Result<nccl::ncclUniqueId> {
    let api = nccl_api()?;
    let mut id = std::mem::MaybeUninit::<nccl::ncclUniqueId>::zeroed();
    // SAFETY: an out-parameter of the right type (128 bytes, `nccl.h`'s ncclUniqueId).
    let r = unsafe { (api.get_unique_id)(id.as_mut_ptr()) };
    nccl_check("ncclGetUniqueId", r, std::ptr::null_mut(), hint)?;
    // SAFETY: zero-initialised bytes are a valid `ncclUniqueId` (a char array), and NCCL filled
    // it on success.
    Ok(unsafe { id.assume_init() })
}

/// `ncclCommInitRank`: join the world of `world_size` ranks that shares `id`, as `rank`
/// (blocks until every rank joined). The raw communicator is the caller's to own.
///
/// # Safety
/// The GPU's context is current on the calling thread.
pub unsafe fn comm_init_rank(
    world_size: i32,
    id: nccl::ncclUniqueId,
    rank: i32,
    hint: &'static str,
) -> Result<nccl::ncclComm_t> {
    let api = nccl_api()?;
    let mut comm: nccl::ncclComm_t = std::ptr::null_mut();
    // SAFETY: an out-parameter; the caller's contract for the rest.
    let r = unsafe { (api.comm_init_rank)(&mut comm, world_size, id, rank) };
    nccl_check("ncclCommInitRank", r, std::ptr::null_mut(), hint)?;
    Ok(comm)
}
