//! One rank's NCCL communicator of a group (`NcclComm`): its creation, what it holds, teardown.
//!
//! Its child modules add the collectives, the symmetric segments and the validation exchange;
//! being children, they use its private fields.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::cuda::nccl_api::sys as nccl;
use cudarc::driver::{sys as cu, CudaContext, CudaStream};

use super::abort::AbortRegistry;
use super::core::{AvgOps, CommLaunchLine, NcclFns, RawComm};
use super::hints::{HINT_COLL, HINT_MEM};
use super::scratch::Scratch;
use crate::backend::cuda::device::CudaRankStream;
use crate::backend::cuda::ffi::{self, cuda_err};
use crate::backend::traits::StreamBackend;
use crate::error::{Error, Result};
use crate::sync::owner_lock::OwnerLock;

mod collectives;
mod exchange;
mod segments;

/// Fallback allocation granularity when the driver cannot tell (2 MiB, usual on NVIDIA GPUs).
const DEFAULT_GRANULARITY: usize = 2 << 20;

/// Settings every communicator of a launch shares (from the NCCL version policy).
#[derive(Clone, Copy, Debug)]
pub struct CommSettings {
    /// Whether symmetric windows may be registered (`ncclCommWindowRegister` exists and the
    /// version policy allows it).
    pub windows: bool,
}

/// One rank's NCCL communicator of a group.
///
/// Collectives are queued on the rank's stream with the communicator's lock held only while
/// NCCL enqueues. Symmetric segments are `ncclMemAlloc` memory registered with
/// `ncclCommWindowRegister(..., NCCL_WIN_COLL_SYMMETRIC)`; NCCL picks its symmetric kernels
/// by itself for pointers inside such windows.
pub struct NcclComm {
    core: Arc<CommLaunchLine>,
    rank: usize,
    size: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaRankStream>,
    /// Internal stream of the validation exchange (usable while the rank's stream captures).
    side: Arc<CudaStream>,
    /// Freed at the end of `drop` itself, before the fields are dropped (the context and the
    /// streams they hold may be the last owners of the context).
    scratch: Mutex<ManuallyDrop<Scratch>>,
    granularity: usize,
    settings: CommSettings,
    symmetric: AtomicBool,
    next_window: AtomicU64,
    /// How many splits of this communicator were made (the same on every member: splitting is
    /// collective), for the splits' [`CommPlace`] keys.
    splits: AtomicU64,
    registry: Arc<AbortRegistry>,
    /// Whether symmem finalizes and destroys the communicator when it drops (false for a
    /// communicator adopted with [`CommOwnership::Borrowed`]; set only once the adoption
    /// succeeded, so that a failed one leaves the caller's communicator alone).
    owned: AtomicBool,
}

/// Who destroys an adopted NCCL communicator (see [`crate::cuda::adopt_nccl_comm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommOwnership {
    /// symmem takes it over: it finalizes and destroys it when the group's last user (the
    /// group, its pool, a buffer or graph of that pool) is gone. Do not destroy it yourself.
    Owned,
    /// It stays yours: symmem never finalizes or destroys it. Keep it alive (and do not abort
    /// it) until the group and every buffer and graph of its pool are gone.
    Borrowed,
}

/// Which group of a launch a communicator is one rank's part of, and which rank owns it.
#[derive(Clone, Debug)]
pub(crate) struct CommPlace {
    /// Equal on every member of the group and different from every other group of the launch:
    /// `"world"` for a launch's world, `"<parent>/<n>:<color>"` for the `n`-th split.
    pub key: Arc<str>,
    /// The world rank of the owning thread.
    pub owner: usize,
}

impl CommPlace {
    /// The world communicator of world rank `owner`.
    pub fn world(owner: usize) -> CommPlace {
        CommPlace {
            key: Arc::from("world"),
            owner,
        }
    }
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
    match ffi::recommended_granularity(ordinal) {
        Some(g) if g > 0 && g.is_power_of_two() => g.max(4096),
        _ => DEFAULT_GRANULARITY,
    }
}

impl NcclComm {
    /// Wrap a freshly initialised communicator of this rank's GPU. Takes ownership of `comm`
    /// (destroyed on drop, or on failure here).
    ///
    /// `place` says which group of the launch it belongs to and which rank thread owns it (for
    /// departures: [`AbortRegistry::depart`]).
    pub(crate) fn from_raw(
        comm: nccl::ncclComm_t,
        ctx: Arc<CudaContext>,
        stream: Arc<CudaRankStream>,
        registry: Arc<AbortRegistry>,
        settings: CommSettings,
        place: CommPlace,
    ) -> Result<NcclComm> {
        Self::from_raw_with(
            comm,
            ctx,
            stream,
            registry,
            settings,
            place,
            CommOwnership::Owned,
        )
    }

    /// [`NcclComm::from_raw`]; on failure `comm` is destroyed only when `ownership` is `Owned`.
    fn from_raw_with(
        comm: nccl::ncclComm_t,
        ctx: Arc<CudaContext>,
        stream: Arc<CudaRankStream>,
        registry: Arc<AbortRegistry>,
        settings: CommSettings,
        place: CommPlace,
        ownership: CommOwnership,
    ) -> Result<NcclComm> {
        let destroy = |e: Error| {
            if ownership == CommOwnership::Owned {
                // SAFETY: ours, unused elsewhere.
                unsafe { ffi::comm_destroy(comm) };
            }
            e
        };
        // SAFETY: `comm` is live.
        let rank = unsafe { ffi::comm_user_rank(comm, HINT_COLL) }.map_err(destroy)?;
        // SAFETY: as above.
        let size = unsafe { ffi::comm_count(comm, HINT_COLL) }.map_err(destroy)?;
        let fns = NcclFns::resolve().map_err(destroy)?;
        ctx.bind_to_thread()
            .map_err(|e| destroy(cuda_err("cuCtxSetCurrent", e, HINT_MEM)))?;
        let side = ctx
            .new_stream()
            .map_err(|e| destroy(cuda_err("cuStreamCreate", e, HINT_MEM)))?;
        let size = size.max(1) as usize;
        let scratch = Scratch::new(size).map_err(destroy)?;
        // SAFETY: `comm` is live, of `size` ranks. On failure the scratch is dropped (freed:
        // nothing used it) and the communicator destroyed.
        let avg_ops = unsafe { AvgOps::create(comm, size) }.map_err(destroy)?;
        let core = Arc::new(CommLaunchLine {
            raw: OwnerLock::new(RawComm::new(comm)),
            cu_stream: stream.cu_stream(),
            fns,
            avg_ops,
            name: Mutex::new(Arc::from("world")),
            key: place.key,
            owner: place.owner,
            departure: Mutex::new(None),
            abort_cause: Mutex::new(None),
            aborts: stream.aborts().clone(),
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
            scratch: Mutex::new(ManuallyDrop::new(scratch)),
            symmetric: AtomicBool::new(settings.windows),
            settings,
            next_window: AtomicU64::new(0),
            splits: AtomicU64::new(0),
            registry,
            owned: AtomicBool::new(ownership == CommOwnership::Owned),
        })
    }

    fn name(&self) -> Arc<str> {
        self.core.name()
    }

    /// Wrap a communicator the caller created for this rank's GPU (see
    /// [`crate::cuda::adopt_nccl_comm`]).
    ///
    /// # Safety
    /// `comm` is a live communicator of the context's GPU that nobody else destroys while this
    /// wrapper lives when `ownership` is `Owned`, and that outlives every user of the wrapper
    /// when it is `Borrowed`; no other thread makes NCCL calls on it while symmem does.
    /// The wrapper starts as `Borrowed` (a failure later in the adoption leaves `comm` to the
    /// caller); [`NcclComm::take_ownership`] makes it `Owned`.
    pub(crate) unsafe fn adopt(
        comm: nccl::ncclComm_t,
        ctx: Arc<CudaContext>,
        stream: Arc<CudaRankStream>,
        registry: Arc<AbortRegistry>,
        settings: CommSettings,
        place: CommPlace,
    ) -> Result<NcclComm> {
        NcclComm::from_raw_with(
            comm,
            ctx,
            stream,
            registry,
            settings,
            place,
            CommOwnership::Borrowed,
        )
    }

    /// From now on symmem finalizes and destroys the communicator when it drops.
    pub(crate) fn take_ownership(&self) {
        self.owned.store(true, Ordering::Release);
    }

    /// The launch's abort registry (adopted communicators join it).
    pub(crate) fn registry(&self) -> &Arc<AbortRegistry> {
        &self.registry
    }

    /// The settings every communicator of the launch shares.
    pub(crate) fn settings(&self) -> CommSettings {
        self.settings
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
        f: impl FnOnce(nccl::ncclComm_t) -> crate::backend::cuda::nccl_api::NcclResult,
    ) -> Result<()> {
        self.core.with_comm(call, f)
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
            if !raw.is_dead() && !self.owned.load(Ordering::Acquire) {
                // Borrowed: only what symmem created on it goes (the `Avg` operations).
                // SAFETY: live communicator; the operations are symmem's, destroyed once.
                unsafe { self.core.avg_ops.destroy(raw.comm) };
                self.core
                    .mark_dead(&mut raw, "the group of a borrowed communicator was dropped");
            }
            if !raw.is_dead() {
                // SAFETY: live communicator, used by nobody else any more (we hold the only
                // strong reference to the core besides transient ones in the registry, which
                // take this same lock and then see the cleared handle).
                // The `Avg` operations are the communicator's, destroyed once here, and no
                // call follows.
                unsafe {
                    self.core.avg_ops.destroy(raw.comm);
                    ffi::comm_finalize(raw.comm);
                    ffi::comm_destroy(raw.comm);
                }
                self.core
                    .mark_dead(&mut raw, "the communicator was destroyed");
            }
        }
        // SAFETY: the side stream is live; it is idle after finalize.
        let _ = unsafe { ffi::stream_synchronize(self.side.cu_stream(), HINT_COLL) };
        let s = self.scratch.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: no queued work uses the scratch any more, and it is never used again.
        unsafe { ManuallyDrop::drop(s) };
    }
}
