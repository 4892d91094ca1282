//! What a collective launch reads: `CommLaunchLine` (one cache line) and NCCL's entry points (`NcclFns`).

use std::sync::{Arc, Mutex};

use cudarc::driver::sys as cu;
use cudarc::nccl::sys as nccl;

use super::hints::HINT_COLL;
use crate::backend::cuda::ffi::{self, nccl_check};
use crate::backend::direct::AllReduceEntry;
use crate::backend::operand::Operand;
use crate::dtype::{DType, ReduceOp};
use crate::error::{Error, Result};
use crate::sync::owner_lock::{OwnerGuard, OwnerLock};

/// `ncclAllReduce` / `ncclReduceScatter`. (Calling these entry points needs their C contract:
/// every call site states its `SAFETY` argument.)
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
/// [`CommLaunchLine`].
#[derive(Clone, Copy)]
#[repr(C)]
pub struct NcclFns {
    pub all_reduce: ReduceFn,
    pub reduce_scatter: ReduceFn,
    pub all_gather: GatherFn,
    pub broadcast: BroadcastFn,
}

impl NcclFns {
    /// Resolved from cudarc's NCCL library handle (the library every communicator came from).
    /// Only called once a communicator exists, so the library is loaded. A missing symbol (a
    /// library that is not NCCL, or a broken one) is an error, as it would be a panic inside
    /// cudarc's own wrapper.
    pub fn resolve() -> Result<NcclFns> {
        static FNS: std::sync::OnceLock<std::result::Result<NcclFns, String>> =
            std::sync::OnceLock::new();
        let fns = FNS.get_or_init(|| {
            // SAFETY: the library is loaded (a communicator exists, made through it); each `F`
            // is the symbol's C signature (nccl.h).
            unsafe {
                Ok(NcclFns {
                    all_reduce: ffi::nccl_symbol::<ReduceFn>("ncclAllReduce\0")?,
                    reduce_scatter: ffi::nccl_symbol::<ReduceFn>("ncclReduceScatter\0")?,
                    all_gather: ffi::nccl_symbol::<GatherFn>("ncclAllGather\0")?,
                    broadcast: ffi::nccl_symbol::<BroadcastFn>("ncclBroadcast\0")?,
                })
            }
        });
        fns.clone().map_err(|message| Error::Nccl {
            call: "dlsym",
            message,
            hint: "the loaded libnccl lacks a collective entry point: point LD_LIBRARY_PATH at a complete NCCL (2.27.3 or later)",
        })
    }
}

/// The raw communicator and whether it is still usable.
pub struct RawComm {
    pub comm: nccl::ncclComm_t,
    /// `Some(cause)` once aborted: no call may use `comm` any more.
    pub aborted: Option<String>,
}

// SAFETY: an ncclComm_t may be used from any thread; access is serialised by the mutex.
unsafe impl Send for RawComm {}

/// The shared core of a communicator: what an abort from another thread needs, and everything
/// a collective launch reads, laid out so that an all-reduce launch reads one cache line: the
/// lock's flags, the communicator handle, the stream and `ncclAllReduce`'s address
/// (`docs/design.md`, "The launch path"). A group's direct entry points here.
#[repr(C, align(64))]
pub struct CommLaunchLine {
    pub raw: OwnerLock<RawComm>,
    /// The raw handle of the rank stream the communicator was made for.
    pub cu_stream: cu::CUstream,
    /// NCCL's collective entry points (`ncclAllReduce` first, still in the first line).
    pub fns: NcclFns,
    /// The group's name, for errors.
    pub name: Mutex<Arc<str>>,
}

// The launch reads the lock, the handle, the stream and `ncclAllReduce` in one cache line.
const _: () = assert!(
    std::mem::offset_of!(CommLaunchLine, fns) + std::mem::size_of::<ReduceFn>() <= 64,
    "CommLaunchLine: ncclAllReduce's address must stay in the first cache line"
);

// SAFETY: `cu_stream` is a plain handle, used only to queue work (which CUDA allows from any
// thread); the function pointers are plain; the rest is `Send + Sync` on its own.
unsafe impl Send for CommLaunchLine {}
// SAFETY: as above; `cu_stream` and the functions are never mutated after creation.
unsafe impl Sync for CommLaunchLine {}

impl CommLaunchLine {
    #[inline]
    pub fn lock(&self) -> OwnerGuard<'_, RawComm> {
        self.raw.lock()
    }

    pub fn name(&self) -> Arc<str> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn aborted(&self, cause: String) -> Error {
        Error::Aborted {
            group: self.name().to_string(),
            cause,
        }
    }

    /// Run an NCCL call with the communicator, unless it was aborted. Inline, with the
    /// aborted and failed cases out of line: this wraps every collective launch.
    #[inline(always)]
    pub fn with_comm(
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
    pub fn launch_all_reduce(
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
    pub fn abort(&self, cause: &str) {
        let mut raw = self.lock();
        if raw.aborted.is_some() {
            return;
        }
        // SAFETY: the communicator is live (not aborted nor destroyed: destruction takes the
        // core out of every registry first).
        unsafe { ffi::comm_abort(raw.comm) };
        raw.aborted = Some(cause.to_string());
    }
}

/// NCCL's data type of `d`. Inline: the launch path (in another file) maps its arguments.
#[inline]
pub fn nccl_dtype(d: DType) -> nccl::ncclDataType_t {
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

/// NCCL's reduction of `op`. Inline, as [`nccl_dtype`].
#[inline]
pub fn nccl_op(op: ReduceOp) -> nccl::ncclRedOp_t {
    use nccl::ncclRedOp_t as O;
    match op {
        ReduceOp::Sum => O::ncclSum,
        ReduceOp::Prod => O::ncclProd,
        ReduceOp::Max => O::ncclMax,
        ReduceOp::Min => O::ncclMin,
        ReduceOp::Avg => O::ncclAvg,
    }
}

/// The direct all-reduce entry of a communicator: [`CommLaunchLine::launch_all_reduce`] on its own
/// stream (`DirectAllReduce::new` makes the entry from it).
impl AllReduceEntry for CommLaunchLine {
    #[inline(always)]
    fn all_reduce_entry(
        &self,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.launch_all_reduce(self.cu_stream, send, recv, count, dtype, op)
    }
}
