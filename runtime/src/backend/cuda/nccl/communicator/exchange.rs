//! The validation exchange: host records all-gathered over NCCL on the communicator's own stream.
//!
//! Bounded by a timeout, and usable while the rank's stream captures.

use std::time::{Duration, Instant};

use crate::backend::cuda::nccl_api::sys as nccl;
use cudarc::driver::sys as cu;

use super::NcclComm;
use crate::backend::cuda::ffi::{self, cuda_err, DeviceAlloc, RelaxedCapture};
use crate::backend::cuda::nccl::core::nccl_dtype;
use crate::backend::cuda::nccl::hints::{HINT_COLL, HINT_MEM};
use crate::backend::cuda::nccl::scratch::RECORD;
use crate::backend::cuda::util::round_up;
use crate::dtype::DType;
use crate::error::{Error, Result};

impl NcclComm {
    /// [`CommBackend::exchange`](crate::backend::CommBackend::exchange): every rank's `mine`,
    /// gathered over NCCL on the internal stream (a second round when a record is longer than
    /// [`RECORD`] allows).
    pub(super) fn validation_exchange(
        &self,
        mine: &[u8],
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>> {
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

    /// Poll `stream` until its work is done, NCCL reports an error, or `timeout` passes (then
    /// every communicator of the launch is aborted).
    fn wait(&self, stream: cu::CUstream, timeout: Duration, what: &str) -> Result<()> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            // SAFETY: the stream is live.
            let done = unsafe {
                ffi::stream_query(
                    stream,
                    "the validation exchange failed on the GPU; set NCCL_DEBUG=WARN for details",
                )
            }?;
            if done {
                return Ok(());
            }
            {
                let raw = self.core.lock();
                if raw.is_dead() {
                    drop(raw);
                    return Err(self.aborted(self.core.cause()));
                }
                // SAFETY: live communicator.
                unsafe { ffi::comm_async_error(raw.comm, HINT_COLL) }?;
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
        let temp = if n <= RECORD {
            None
        } else {
            let s = DeviceAlloc::new(n, HINT_MEM)?;
            let r = DeviceAlloc::new(total, HINT_MEM)?;
            Some((s, r))
        };
        let (send, recv) = match &temp {
            None => (scratch.xsend.ptr(), scratch.xrecv.ptr()),
            Some((s, r)) => (s.ptr(), r.ptr()),
        };
        let side = self.side.cu_stream();
        let result = (|| {
            // SAFETY: `send` holds `n` bytes; a copy from pageable memory returns once staged.
            unsafe { ffi::memcpy_htod_async(send, rec, side, HINT_COLL) }?;
            self.with_comm("ncclAllGather", |comm| {
                // SAFETY: `send` holds `n` bytes and `recv` `n * size`; both outlive the wait.
                unsafe {
                    ffi::all_gather(
                        send as *const std::ffi::c_void,
                        recv as *mut std::ffi::c_void,
                        n,
                        nccl_dtype(DType::U8),
                        comm,
                        side as nccl::cudaStream_t,
                    )
                }
            })?;
            self.wait(side, timeout, "validation exchange")?;
            let mut out = vec![0u8; total];
            // SAFETY: the gather is complete; `out` holds `total` bytes, read after the
            // synchronisation below.
            unsafe { ffi::memcpy_dtoh_async(&mut out, recv, side, HINT_COLL) }?;
            // SAFETY: the side stream is live.
            unsafe { ffi::stream_synchronize(side, HINT_COLL) }?;
            Ok(out)
        })();
        if let Some((s, r)) = temp {
            if !matches!(result, Err(Error::Timeout { .. } | Error::Aborted { .. })) {
                // The side stream is idle (or the copy failed before using them): freed.
                drop(s);
                drop(r);
            } else {
                // After a timeout an aborted kernel may still touch them: leak rather than race.
                s.leak();
                r.leak();
            }
        }
        result
    }
}
