//! Small helpers of the CUDA backend: error conversion and the capture-mode guard.

use std::ffi::CStr;

use cudarc::driver::{result::DriverError, sys as cu};
use cudarc::nccl::sys as nccl;

use crate::Error;

/// Convert a driver error into [`Error::Cuda`], naming the call and what to check.
pub(crate) fn cuda_err(call: &'static str, e: DriverError, hint: &'static str) -> Error {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e
        .error_string()
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

/// Check a raw `CUresult`.
pub(crate) fn cu_check(
    call: &'static str,
    r: cu::CUresult,
    hint: &'static str,
) -> crate::Result<()> {
    r.result().map_err(|e| cuda_err(call, e, hint))
}

/// NCCL's text for a result code, plus the communicator's last error when there is one.
pub(crate) fn nccl_message(r: nccl::ncclResult_t, comm: nccl::ncclComm_t) -> String {
    // SAFETY: NCCL returns static NUL-terminated strings (or NULL).
    let base = unsafe {
        let p = nccl::ncclGetErrorString(r);
        if p.is_null() {
            format!("{r:?}")
        } else {
            format!("{r:?}: {}", CStr::from_ptr(p).to_string_lossy())
        }
    };
    // SAFETY: `comm` is NULL or a live communicator; the returned string is owned by NCCL.
    let last = unsafe {
        let p = nccl::ncclGetLastError(comm);
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
/// Inline: it follows every collective launch; the error is built out of line.
#[inline(always)]
pub(crate) fn nccl_check(
    call: &'static str,
    r: nccl::ncclResult_t,
    comm: nccl::ncclComm_t,
    hint: &'static str,
) -> crate::Result<()> {
    match r {
        nccl::ncclResult_t::ncclSuccess | nccl::ncclResult_t::ncclInProgress => Ok(()),
        _ => Err(nccl_error(call, r, comm, hint)),
    }
}

/// The error of a failed NCCL call.
#[cold]
#[inline(never)]
fn nccl_error(
    call: &'static str,
    r: nccl::ncclResult_t,
    comm: nccl::ncclComm_t,
    hint: &'static str,
) -> Error {
    Error::Nccl {
        call,
        message: nccl_message(r, comm),
        hint,
    }
}

/// Switches the calling thread's stream-capture interaction mode to *relaxed* while alive, so
/// that allocations and frees (`cuMemAlloc`, `cuMemFree`) are legal while this thread captures a
/// graph in thread-local mode. Restores the previous mode on drop.
pub(crate) struct RelaxedCapture {
    prev: Option<cu::CUstreamCaptureMode>,
}

impl RelaxedCapture {
    pub(crate) fn new() -> Self {
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

/// Round `n` up to a multiple of `m` (`m > 0`), `None` on overflow.
pub(crate) fn round_up(n: usize, m: usize) -> Option<usize> {
    n.checked_add(m - 1).map(|v| v / m * m)
}
