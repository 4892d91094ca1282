//! symmem's own handle on libnccl: every NCCL entry point the backend calls, resolved once from
//! the library the probe loaded (`probe::nccl_library`).
//!
//! Why not cudarc's `nccl::sys` functions:
//! * cudarc's NCCL names (`cudarc::get_lib_name_candidates("nccl")`) do not include
//!   `libnccl.so.2`, the only name the pip wheels (`nvidia-nccl-cu12`/`-cu13`), PyTorch and the
//!   distribution runtime packages ship; this handle loads that name first (no symlink needed).
//! * cudarc's lazily loaded functions **panic** when the library or a symbol is missing; here a
//!   missing symbol is an [`Error`] at the first use, naming the symbol.
//! * cudarc binds `ncclRedOp_t`, `ncclDataType_t` and `ncclResult_t` as Rust enums. NCCL hands
//!   out reduction handles that are no variant of that enum (`ncclRedOpCreatePreMulSum` returns
//!   `ncclNumOps + k`), and a newer NCCL may return result codes the enum lacks: holding either
//!   in a Rust enum is undefined behaviour. The signatures here take and return `c_int` (a C enum
//!   is an `int` in the ABI of every platform NCCL supports).
//! * `nccl::sys::culib()` exists only under cudarc's `dynamic-loading` feature.
//!
//! * With cudarc's `nccl` feature and its `dynamic-linking` feature (what candle enables),
//!   cudarc links `libnccl` at build time; symmem does not enable cudarc's `nccl` feature at
//!   all, so building next to candle needs no NCCL installed. The handle types are declared here
//!   ([`sys`]), with the layouts of `nccl.h`.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use self::sys as nccl;

/// NCCL's handle types, as `nccl.h` declares them (symmem's own: cudarc's exist only under its
/// `nccl` feature). Pointers are interchangeable with cudarc's `nccl::sys` ones by a cast.
#[allow(non_camel_case_types)]
pub mod sys {
    /// NCCL's opaque communicator.
    #[repr(C)]
    pub struct ncclComm {
        _opaque: [u8; 0],
    }
    /// `ncclComm_t`.
    pub type ncclComm_t = *mut ncclComm;
    /// `ncclWindow_t` (an opaque handle).
    pub type ncclWindow_t = *mut std::ffi::c_void;
    /// `cudaStream_t`: the same handle as the driver's `CUstream`.
    pub type cudaStream_t = cudarc::driver::sys::CUstream;
    /// `ncclUniqueId`: 128 opaque bytes that every rank of a new world shares.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct ncclUniqueId {
        /// The bytes.
        pub internal: [std::ffi::c_char; 128],
    }
}

use crate::error::{Error, Result};

/// `ncclResult_t` as NCCL returns it: any `int`, not a Rust enum.
pub type NcclResult = c_int;
/// `ncclSuccess`.
pub const NCCL_SUCCESS: NcclResult = 0;
/// `ncclInternalError` (what symmem reports when it could not even make the call).
pub const NCCL_INTERNAL_ERROR: NcclResult = 3;
/// `ncclInvalidUsage` (what a missing optional entry point reports).
pub const NCCL_INVALID_USAGE: NcclResult = 5;
/// `ncclInProgress` (only non-blocking communicators return it; fine for blocking ones).
pub const NCCL_IN_PROGRESS: NcclResult = 7;

/// `ncclDataType_t` as an `int`.
pub type NcclDataType = c_int;
/// `ncclRedOp_t` as an `int` (built-in operations and handles of user-created ones).
pub type NcclRedOp = c_int;

/// `ncclScalarHostImmediate` of `ncclScalarResidence_t`: the scalar is read on the host at
/// `ncclRedOpCreatePreMulSum` time.
pub const NCCL_SCALAR_HOST_IMMEDIATE: c_int = 1;

/// The name of NCCL result `r` (`ncclSystemError`, ...).
pub fn result_name(r: NcclResult) -> &'static str {
    match r {
        0 => "ncclSuccess",
        1 => "ncclUnhandledCudaError",
        2 => "ncclSystemError",
        3 => "ncclInternalError",
        4 => "ncclInvalidArgument",
        5 => "ncclInvalidUsage",
        6 => "ncclRemoteError",
        7 => "ncclInProgress",
        _ => "unknown ncclResult_t",
    }
}

/// `ncclAllReduce` / `ncclReduceScatter`.
pub type ReduceFn = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    NcclDataType,
    NcclRedOp,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> NcclResult;
/// `ncclAllGather`.
pub type GatherFn = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    NcclDataType,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> NcclResult;
/// `ncclBroadcast`.
pub type BroadcastFn = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    NcclDataType,
    c_int,
    nccl::ncclComm_t,
    nccl::cudaStream_t,
) -> NcclResult;

/// The NCCL entry points symmem calls, with their C signatures (`nccl.h`, 2.27+). Calling any of
/// them needs its C contract: every call site in `ffi.rs` and `nccl/` states its `SAFETY`
/// argument.
pub struct NcclApi {
    pub get_error_string: unsafe extern "C" fn(NcclResult) -> *const c_char,
    pub get_last_error: unsafe extern "C" fn(nccl::ncclComm_t) -> *const c_char,
    pub get_unique_id: unsafe extern "C" fn(*mut nccl::ncclUniqueId) -> NcclResult,
    pub comm_init_rank:
        unsafe extern "C" fn(*mut nccl::ncclComm_t, c_int, nccl::ncclUniqueId, c_int) -> NcclResult,
    pub comm_user_rank: unsafe extern "C" fn(nccl::ncclComm_t, *mut c_int) -> NcclResult,
    pub comm_count: unsafe extern "C" fn(nccl::ncclComm_t, *mut c_int) -> NcclResult,
    pub comm_cu_device: unsafe extern "C" fn(nccl::ncclComm_t, *mut c_int) -> NcclResult,
    pub comm_get_async_error: unsafe extern "C" fn(nccl::ncclComm_t, *mut NcclResult) -> NcclResult,
    pub comm_abort: unsafe extern "C" fn(nccl::ncclComm_t) -> NcclResult,
    pub comm_finalize: unsafe extern "C" fn(nccl::ncclComm_t) -> NcclResult,
    pub comm_destroy: unsafe extern "C" fn(nccl::ncclComm_t) -> NcclResult,
    pub comm_split: unsafe extern "C" fn(
        nccl::ncclComm_t,
        c_int,
        c_int,
        *mut nccl::ncclComm_t,
        *mut c_void,
    ) -> NcclResult,
    pub mem_alloc: unsafe extern "C" fn(*mut *mut c_void, usize) -> NcclResult,
    pub mem_free: unsafe extern "C" fn(*mut c_void) -> NcclResult,
    /// `ncclCommWindowRegister` (NCCL 2.27+; `None` in an older library).
    pub window_register: Option<
        unsafe extern "C" fn(
            nccl::ncclComm_t,
            *mut c_void,
            usize,
            *mut nccl::ncclWindow_t,
            c_int,
        ) -> NcclResult,
    >,
    /// `ncclCommWindowDeregister` (NCCL 2.27+).
    pub window_deregister:
        Option<unsafe extern "C" fn(nccl::ncclComm_t, nccl::ncclWindow_t) -> NcclResult>,
    pub red_op_create_pre_mul_sum: unsafe extern "C" fn(
        *mut NcclRedOp,
        *mut c_void,
        NcclDataType,
        c_int,
        nccl::ncclComm_t,
    ) -> NcclResult,
    pub red_op_destroy: unsafe extern "C" fn(NcclRedOp, nccl::ncclComm_t) -> NcclResult,
    pub all_reduce: ReduceFn,
    pub reduce_scatter: ReduceFn,
    pub all_gather: GatherFn,
    pub broadcast: BroadcastFn,
}

/// Look `name` up in `lib` as an `F`.
///
/// # Safety
/// `F` is the symbol's C signature.
unsafe fn symbol<F: Copy>(lib: &libloading::Library, name: &str) -> std::result::Result<F, String> {
    // SAFETY: the caller's contract.
    unsafe { lib.get::<F>(name.as_bytes()) }
        .map(|f| *f)
        .map_err(|e| format!("`{name}` is missing: {e}"))
}

impl NcclApi {
    /// Every entry point from `lib`; an error names the first missing one.
    fn resolve(lib: &libloading::Library) -> std::result::Result<NcclApi, String> {
        // SAFETY (every lookup below): each `F` is the symbol's C signature in nccl.h (2.27+),
        // with C enums as `int`; the library stays loaded for the life of the process (the probe
        // keeps it in a static), so the pointers never dangle.
        unsafe {
            Ok(NcclApi {
                get_error_string: symbol(lib, "ncclGetErrorString")?,
                get_last_error: symbol(lib, "ncclGetLastError")?,
                get_unique_id: symbol(lib, "ncclGetUniqueId")?,
                comm_init_rank: symbol(lib, "ncclCommInitRank")?,
                comm_user_rank: symbol(lib, "ncclCommUserRank")?,
                comm_count: symbol(lib, "ncclCommCount")?,
                comm_cu_device: symbol(lib, "ncclCommCuDevice")?,
                comm_get_async_error: symbol(lib, "ncclCommGetAsyncError")?,
                comm_abort: symbol(lib, "ncclCommAbort")?,
                comm_finalize: symbol(lib, "ncclCommFinalize")?,
                comm_destroy: symbol(lib, "ncclCommDestroy")?,
                comm_split: symbol(lib, "ncclCommSplit")?,
                mem_alloc: symbol(lib, "ncclMemAlloc")?,
                mem_free: symbol(lib, "ncclMemFree")?,
                window_register: symbol(lib, "ncclCommWindowRegister").ok(),
                window_deregister: symbol(lib, "ncclCommWindowDeregister").ok(),
                red_op_create_pre_mul_sum: symbol(lib, "ncclRedOpCreatePreMulSum")?,
                red_op_destroy: symbol(lib, "ncclRedOpDestroy")?,
                all_reduce: symbol(lib, "ncclAllReduce")?,
                reduce_scatter: symbol(lib, "ncclReduceScatter")?,
                all_gather: symbol(lib, "ncclAllGather")?,
                broadcast: symbol(lib, "ncclBroadcast")?,
            })
        }
    }
}

/// The entry points of the NCCL library the probe loads (`libnccl.so.2` first), resolved once.
///
/// Errors: [`Error::BackendUnavailable`] when NCCL cannot be loaded (the probe's message says
/// what was tried and what to install), [`Error::Nccl`] when the library lacks an entry point.
pub fn nccl_api() -> Result<&'static NcclApi> {
    static API: OnceLock<NcclApi> = OnceLock::new();
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let lib = super::probe::nccl_library().map_err(|e| Error::BackendUnavailable(e.to_string()))?;
    let api = NcclApi::resolve(lib).map_err(|message| Error::Nccl {
        call: "dlsym",
        message,
        hint: "the loaded libnccl is not a complete NCCL 2.27.3 or later: point LD_LIBRARY_PATH at one (e.g. the lib folder of `pip install nvidia-nccl-cu13`)",
    })?;
    Ok(API.get_or_init(|| api))
}
