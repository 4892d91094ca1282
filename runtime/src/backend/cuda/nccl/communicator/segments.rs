//! Symmetric segments: `ncclMemAlloc` memory registered as NCCL windows, and their teardown.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::cuda::nccl_api::sys as nccl;

use super::NcclComm;
use crate::backend::cuda::ffi::{self, cuda_err, RelaxedCapture, NCCL_WIN_COLL_SYMMETRIC};
use crate::backend::cuda::nccl::hints::{HINT_MEM, HINT_WIN};
use crate::backend::cuda::util::round_up;
use crate::backend::operand::SymSegment;
use crate::backend::traits::StreamBackend;
use crate::error::{Error, Result};

/// Whether the missing symmetric support was logged (once per process).
static LOGGED_NO_SYMMETRIC: AtomicBool = AtomicBool::new(false);

impl NcclComm {
    /// [`CommBackend::create_symmetric_segment`](crate::backend::CommBackend::create_symmetric_segment): `ncclMemAlloc` memory rounded up to the
    /// granularity, registered as one window when the communicator supports it.
    pub(super) fn create_segment(&self, bytes: usize) -> Result<SymSegment> {
        let size =
            round_up(bytes.max(1), self.granularity).ok_or_else(|| Error::InvalidArgument {
                op: "create_symmetric_segment",
                detail: format!("{bytes} bytes overflow the address space"),
            })?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_MEM))?;
        let ptr = {
            let _relaxed = RelaxedCapture::new();
            // SAFETY: the context of the communicator's GPU is current.
            unsafe { ffi::mem_alloc_symmetric(size, HINT_MEM) }?
        };
        let window = self.next_window.fetch_add(1, Ordering::Relaxed);
        let mut handle = 0u64;
        if self.symmetric.load(Ordering::Relaxed) {
            let mut win: nccl::ncclWindow_t = std::ptr::null_mut();
            // Registration is collective: every rank creates the same segments in the same order.
            let r = self.with_comm("ncclCommWindowRegister", |comm| {
                // SAFETY: `ptr` is a live ncclMemAlloc allocation of `size` bytes (a whole
                // segment, so its offset from the cuMem base is 0, a multiple of 4096).
                unsafe { ffi::window_register(comm, ptr, size, &mut win, NCCL_WIN_COLL_SYMMETRIC) }
            });
            if let Err(e) = r {
                // SAFETY: ours, unregistered.
                let _ = unsafe { ffi::mem_free_symmetric(ptr, HINT_MEM) };
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
                    crate::diag::warn(format_args!(
                        "NCCL registered no symmetric window for group `{}` (this topology or configuration has no symmetric kernels); buffers of its pool take the plain collective path",
                        self.name()
                    ));
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

    /// [`CommBackend::destroy_symmetric_segment`](crate::backend::CommBackend::destroy_symmetric_segment): deregister the window (after the stream
    /// is idle), then `ncclMemFree`.
    ///
    /// # Safety
    /// As the trait's: `seg` came from [`NcclComm::create_segment`] of this communicator and is
    /// destroyed once; nothing uses it any more.
    pub(super) unsafe fn destroy_segment(&self, seg: &SymSegment) {
        let _ = self.ctx.bind_to_thread();
        if !self.stream.is_capturing() {
            let _ = self.stream.synchronize();
        }
        if seg.handle != 0 {
            // Not counted as a call the departed can still join: it makes its own
            // deregistrations in its teardown, after it left.
            let r = self
                .core
                .with_comm_uncounted("ncclCommWindowDeregister", |comm| {
                    // SAFETY: the window of this live segment, registered once on this communicator.
                    unsafe { ffi::window_deregister(comm, seg.handle as nccl::ncclWindow_t) }
                });
            if let Err(e) = r {
                if !matches!(e, Error::Aborted { .. }) {
                    crate::diag::warn(format_args!("{e}"));
                }
            }
        }
        let _relaxed = RelaxedCapture::new();
        // SAFETY: ours (the caller's contract), deregistered, and the stream is idle.
        if let Err(e) =
            unsafe { ffi::mem_free_symmetric(seg.base as *mut std::ffi::c_void, HINT_MEM) }
        {
            crate::diag::warn(format_args!("{e}"));
        }
    }
}
