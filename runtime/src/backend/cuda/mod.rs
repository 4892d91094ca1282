//! The CUDA/NCCL backend (feature `cuda`): one GPU per rank, NCCL communicators, symmetric
//! windows, CUDA graph capture.
//!
//! Everything is loaded at run time (cudarc with dynamic loading), so building needs no CUDA
//! installation, and every entry point probes the libraries first: a machine without libcuda,
//! libnccl or GPUs gets [`Error::BackendUnavailable`], never a panic from a loader.
//!
//! # Launching
//!
//! * [`run_threads`]: one process, one thread per GPU (rank `r` uses GPU `r`). The NCCL unique
//!   id is shared in memory and every thread calls `ncclCommInitRank`.
//! * [`init_from_env`]: one process per rank, started by `torchrun`, `mpirun` or `srun`; rank 0
//!   serves the NCCL unique id over TCP (`MASTER_ADDR`/`MASTER_PORT`).
//! * [`crate::launch::run`] picks this backend or the host backend at run time.
//!
//! Before the first communicator is created, `NCCL_NVLS_ENABLE=0` is put in the process
//! environment unless it is already set: symmem never uses NVLink SHARP multicast, and leaving
//! it off keeps NCCL from creating multicast objects (`cuMulticastCreate`) on shared machines.
//! Set `NCCL_NVLS_ENABLE` yourself before starting to decide otherwise.
//!
//! # Memory
//!
//! * Symmetric pools: segments from `ncclMemAlloc`, rounded up to the device's recommended
//!   allocation granularity (usually 2 MiB), each registered as one window with
//!   `ncclCommWindowRegister(comm, ptr, size, &win, NCCL_WIN_COLL_SYMMETRIC)` (one registration per
//!   whole segment, so registered offsets from the cuMem base are 0, as NCCL 2.28+ requires
//!   multiples of 4096). NCCL chooses its symmetric kernels by itself for pointers inside
//!   registered windows. If the registration succeeds but returns no window, the communicator
//!   has no symmetric support: it is recorded ([`crate::Group::symmetric_supported`] is false),
//!   logged once, and buffers take the plain path. Teardown synchronises the stream, then calls
//!   `ncclCommWindowDeregister` and `ncclMemFree`.
//! * Default pools: `cuMemAlloc`, wrapped in a *relaxed* stream-capture mode
//!   (`cuThreadExchangeStreamCaptureMode`) so the pool may grow during thread-local capture.
//!
//! # Streams and stream-ordered reuse
//!
//! Each rank has one non-blocking CUDA stream (created through cudarc: [`cuda_stream`] returns
//! it for cuBLAS handles and kernel launches). All of a rank's symmem work (collectives, copies,
//! fills, captured graphs) runs on it. When a [`crate::Buffer`] drops, its block returns to its
//! pool at once, although queued work may still use it: this is safe because the next user of
//! the block is queued on the same stream, after that work. **Buffers used on other streams
//! are not supported in this version**: work you put on another stream must be ordered with the
//! rank's stream by you (events), and a buffer must outlive it.
//!
//! cudarc's per-buffer event tracking is turned off on the rank's context (it would record
//! events outside graph captures); all ordering comes from the single stream.
//!
//! # Capture
//!
//! `cuStreamBeginCapture` in thread-local mode, `cuStreamEndCapture` + `cuGraphInstantiate`,
//! `cuGraphLaunch` on the rank's stream; a failed capture is ended and its partial graph
//! destroyed. Synchronising or blocking copies on a capturing stream are refused (they would
//! invalidate the capture). The validation exchange runs on a separate internal stream, so it
//! works while the rank's stream captures.
//!
//! # NCCL versions
//!
//! The version is read once (`ncclGetVersion`) and a policy line is logged once on stderr:
//! below 2.27.3 there are no symmetric windows (segments stay plain, `symmetric_supported()` is
//! false); 2.28.0 to 2.30.6 work, with a known symmetric-kernel race and a registration-during-
//! capture caveat (symmem never registers during capture); 2.30.7 and later are fine.

pub mod bootstrap {
    #![doc = include_str!("../../bootstrap/overview.md")]
    pub use crate::bootstrap::*;
}
mod comm;
mod device;
mod ffi;
mod interop;
pub mod probe;
mod util;
pub mod version;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

pub use cudarc;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::sys as nccl;

pub use comm::NcclComm;
use comm::{AbortRegistry, CommSettings};
pub use device::{CudaDevice, CudaGraph, CudaRankStream};
use ffi::nccl_check;
pub use ffi::NCCL_WIN_COLL_SYMMETRIC;
pub use interop::{view, view_mut, BufferCudaExt, BufferView, BufferViewMut};
pub use version::{NcclVersion, SymmetricPolicy};

use crate::launch::BackendReport;
use crate::{Error, Group, RankConfig, RankContext, Result};

// ---------------------------------------------------------------------------------------------
// Probing and version policy
// ---------------------------------------------------------------------------------------------

/// `Error::BackendUnavailable` from another module's error (without a doubled `symmem:`).
fn unavailable(e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    Error::BackendUnavailable(text.strip_prefix("symmem: ").unwrap_or(&text).to_string())
}

/// What probing found, once per process.
struct Found {
    /// Why the CUDA backend cannot be used.
    unavailable: Option<String>,
    driver: Option<probe::LibInfo>,
    gpus: usize,
    nccl: Option<probe::LibInfo>,
    nccl_version: Option<NcclVersion>,
    policy: Option<SymmetricPolicy>,
    /// Whether windows are registered: the policy allows them and the library has the symbol.
    windows: bool,
}

fn found() -> &'static Found {
    static FOUND: OnceLock<Found> = OnceLock::new();
    FOUND.get_or_init(probe_all)
}

/// Probe libcuda, the GPUs and NCCL without calling into cudarc (which would panic on a missing
/// library), then read the NCCL version and apply the symmetric-window policy.
fn probe_all() -> Found {
    let mut f = Found {
        unavailable: None,
        driver: None,
        gpus: 0,
        nccl: None,
        nccl_version: None,
        policy: None,
        windows: false,
    };
    let strip = |e: &dyn std::fmt::Display| {
        let t = e.to_string();
        t.strip_prefix("symmem: ").unwrap_or(&t).to_string()
    };
    match probe::probe_cuda() {
        Ok(info) => f.driver = Some(info),
        Err(e) => {
            f.unavailable = Some(strip(&e));
            return f;
        }
    }
    match probe::gpu_count() {
        Ok(0) => {
            f.unavailable = Some(
                "the CUDA driver sees no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into(),
            )
        }
        Ok(n) => f.gpus = n,
        Err(e) => f.unavailable = Some(strip(&e)),
    }
    match probe::probe_nccl() {
        Ok(info) => f.nccl = Some(info),
        Err(e) => {
            f.unavailable.get_or_insert(strip(&e));
            return f;
        }
    }
    match probe::nccl_version() {
        Ok(v) => {
            let policy = version::symmetric_policy(v);
            f.nccl_version = Some(v);
            f.policy = Some(policy);
            f.windows = policy.allows_symmetric()
                && probe::nccl_has_symbol("ncclCommWindowRegister")
                && probe::nccl_has_symbol("ncclCommWindowDeregister");
            for sym in [
                "ncclMemAlloc",
                "ncclMemFree",
                "ncclCommSplit",
                "ncclCommGetAsyncError",
                "ncclCommFinalize",
            ] {
                if !probe::nccl_has_symbol(sym) {
                    f.unavailable.get_or_insert(format!(
                        "NCCL {v} has no `{sym}`; symmem needs NCCL 2.19 or later ({} or later recommended)",
                        version::FULL_SYMMETRIC
                    ));
                }
            }
        }
        Err(e) => {
            f.unavailable.get_or_insert(strip(&e));
        }
    }
    f
}

/// The policy line, logged once per process when the first communicator is created.
fn log_policy_once() {
    static LOGGED: OnceLock<()> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let f = found();
        if let (Some(v), Some(p)) = (f.nccl_version, f.policy) {
            let line = p.log_line(v);
            if f.windows || !p.allows_symmetric() {
                eprintln!("{line}");
            } else {
                eprintln!("{line} (this library lacks ncclCommWindowRegister: symmetric pools use plain memory)");
            }
        }
    });
}

/// Put `NCCL_NVLS_ENABLE=0` in the environment unless it is set (once, before any
/// communicator exists; see the module docs).
fn nvls_off() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            std::env::set_var("NCCL_NVLS_ENABLE", "0");
        }
    });
}

/// Fail with [`Error::BackendUnavailable`] unless CUDA and NCCL can run `ranks` ranks with
/// `first_gpu + ranks` GPUs.
fn require(ranks: usize, gpus_needed: usize) -> Result<&'static Found> {
    let f = found();
    if let Some(u) = &f.unavailable {
        return Err(Error::BackendUnavailable(u.clone()));
    }
    if f.gpus < gpus_needed {
        return Err(Error::BackendUnavailable(format!(
            "{ranks} rank(s) need {gpus_needed} GPU(s) (one per rank: NCCL refuses two ranks on one GPU) but {} {} visible",
            f.gpus,
            if f.gpus == 1 { "is" } else { "are" }
        )));
    }
    Ok(f)
}

/// What this machine offers the CUDA backend (used by [`crate::launch::detect`]).
pub(crate) fn detect_report() -> BackendReport {
    let f = found();
    let mut notes = Vec::new();
    for info in [&f.driver, &f.nccl].into_iter().flatten() {
        let path = info
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        notes.push(format!("{}: {}{}", info.library, info.name, path));
    }
    if let (Some(v), Some(p)) = (f.nccl_version, f.policy) {
        let line = p.log_line(v);
        notes.push(line.strip_prefix("symmem: ").unwrap_or(&line).to_string());
    }
    BackendReport {
        cuda_built: true,
        cuda_driver: f.driver.is_some(),
        driver_version: f.driver.as_ref().and_then(|d| d.version.clone()),
        gpus: f.gpus,
        nccl: f.nccl.is_some(),
        nccl_version: f.nccl_version.map(|v| v.to_string()),
        symmetric_windows: f.windows,
        notes,
        unavailable: f.unavailable.clone(),
    }
}

/// Number of visible GPUs (probed without cudarc, so it never panics).
/// [`Error::BackendUnavailable`] when the CUDA driver is missing or fails to initialise.
pub fn gpu_count() -> Result<usize> {
    let f = found();
    if f.driver.is_none() {
        return Err(Error::BackendUnavailable(
            f.unavailable
                .clone()
                .unwrap_or_else(|| "CUDA driver not found".into()),
        ));
    }
    probe::gpu_count().map_err(unavailable)
}

/// The NCCL version ([`Error::BackendUnavailable`] when NCCL cannot be loaded).
pub fn nccl_version() -> Result<NcclVersion> {
    let f = found();
    f.nccl_version.ok_or_else(|| {
        Error::BackendUnavailable(
            f.unavailable
                .clone()
                .unwrap_or_else(|| "NCCL could not be loaded".into()),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Access from a rank
// ---------------------------------------------------------------------------------------------

/// The cudarc stream of the rank's stream, for `CudaBlas::new(stream)` and kernel launches
/// that must be ordered with symmem's work (and captured with it). `None` on other backends.
pub fn cuda_stream(ctx: &RankContext) -> Option<Arc<CudaStream>> {
    ctx.stream()
        .backend()
        .as_any()
        .downcast_ref::<CudaRankStream>()
        .map(|s| s.cudarc_stream().clone())
}

/// The cudarc context of the rank's GPU (for loading modules, NVRTC, and so on). `None` on
/// other backends.
pub fn cuda_context(ctx: &RankContext) -> Option<Arc<CudaContext>> {
    ctx.device()
        .as_any()
        .downcast_ref::<CudaDevice>()
        .map(|d| d.context().clone())
}

/// The NCCL communicator of a group, `None` on other backends.
pub fn nccl_comm(group: &Group) -> Option<&NcclComm> {
    group.comm().as_any().downcast_ref::<NcclComm>()
}

// ---------------------------------------------------------------------------------------------
// Launching
// ---------------------------------------------------------------------------------------------

/// A start-up gate: every rank reports whether it opened its GPU; all proceed only if all did.
/// A failure releases the waiters at once.
struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    n: usize,
}

impl Gate {
    fn new(n: usize) -> Self {
        Gate {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            n,
        }
    }

    /// Report `ok` and wait for the others; true when every rank is ready.
    fn arrive(&self, ok: bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 += 1;
        if !ok {
            st.1 = true;
        }
        self.cv.notify_all();
        while st.0 < self.n && !st.1 {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.1
    }
}

fn unique_id() -> Result<nccl::ncclUniqueId> {
    let mut id = std::mem::MaybeUninit::<nccl::ncclUniqueId>::zeroed();
    // SAFETY: out-parameter.
    let r = unsafe { nccl::ncclGetUniqueId(id.as_mut_ptr()) };
    nccl_check(
        "ncclGetUniqueId",
        r,
        std::ptr::null_mut(),
        "NCCL could not create its bootstrap id (no usable network interface?); set NCCL_SOCKET_IFNAME, e.g. NCCL_SOCKET_IFNAME=lo for one machine",
    )?;
    // SAFETY: initialised by NCCL on success.
    Ok(unsafe { id.assume_init() })
}

/// Where a rank starts: its GPU, its place in the world, and what its communicators share.
struct RankStart<'a> {
    ordinal: usize,
    rank: usize,
    world_size: usize,
    id: nccl::ncclUniqueId,
    registry: &'a Arc<AbortRegistry>,
    settings: CommSettings,
}

/// Open the GPU, create the world communicator and install the rank on this thread.
/// `before_init` is told whether the GPU opened and says whether to go on (a start-up gate).
fn start_rank(
    s: RankStart<'_>,
    cfg: RankConfig,
    before_init: impl FnOnce(bool) -> bool,
) -> Result<RankContext> {
    let device = CudaDevice::open(s.ordinal);
    if !before_init(device.is_ok()) {
        return Err(match device {
            Err(e) => e,
            Ok(_) => Error::Aborted {
                group: "world".into(),
                cause: "another rank failed to start".into(),
            },
        });
    }
    let device = device?;
    let too_large = |what: &str| Error::InvalidArgument {
        op: "cuda::start",
        detail: format!("{what} does not fit an int"),
    };
    let n = i32::try_from(s.world_size).map_err(|_| too_large("world_size"))?;
    let r = i32::try_from(s.rank).map_err(|_| too_large("rank"))?;
    let mut comm: nccl::ncclComm_t = std::ptr::null_mut();
    // SAFETY: out-parameter; the GPU's context is current on this thread.
    let res = unsafe { nccl::ncclCommInitRank(&mut comm, n, s.id, r) };
    nccl_check(
        "ncclCommInitRank",
        res,
        std::ptr::null_mut(),
        "the ranks could not connect; check that every rank uses its own GPU, and set NCCL_DEBUG=WARN (and NCCL_SOCKET_IFNAME) to see why",
    )?;
    let comm = NcclComm::from_raw(
        comm,
        device.context().clone(),
        device.rank_stream().clone(),
        s.registry.clone(),
        s.settings,
    )?;
    RankContext::install(Arc::new(device), Arc::new(comm), cfg)
}

/// Run `f` on `world_size` threads, rank `r` on GPU `r`, each with a [`RankContext`] whose group
/// `"world"` is an NCCL communicator of all ranks; collect what each returns.
///
/// A panic in a rank aborts every communicator of the launch (so peers blocked in collectives
/// return errors instead of hanging) and is resumed here after all threads finished.
///
/// Errors: [`Error::BackendUnavailable`] when CUDA/NCCL are missing or fewer than `world_size`
/// GPUs are visible; NCCL or CUDA start-up failures.
pub fn run_threads<R, F>(world_size: usize, cfg: RankConfig, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(&RankContext) -> R + Send + Sync,
{
    if world_size == 0 {
        return Err(Error::InvalidArgument {
            op: "cuda::run_threads",
            detail: "world_size must be at least 1".into(),
        });
    }
    let found = require(world_size, world_size)?;
    nvls_off();
    log_policy_once();
    let settings = CommSettings {
        windows: found.windows,
    };
    let id = unique_id()?;
    let registry = Arc::new(AbortRegistry::default());
    // Every rank opens its GPU before any enters ncclCommInitRank, so that one failing GPU (or
    // thread) cannot leave the others blocked in NCCL's bootstrap.
    let gate = Gate::new(world_size);
    let f = &f;
    let outcomes: Vec<std::thread::Result<Result<R>>> = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(world_size);
        let mut spawn_err = None;
        for r in 0..world_size {
            let registry = registry.clone();
            let cfg = cfg.clone();
            let gate = &gate;
            let h = std::thread::Builder::new()
                .name(format!("symmem-gpu-{r}"))
                .spawn_scoped(s, move || {
                    let start = RankStart {
                        ordinal: r,
                        rank: r,
                        world_size,
                        id,
                        registry: &registry,
                        settings,
                    };
                    let ctx = match start_rank(start, cfg, |ok| gate.arrive(ok)) {
                        Ok(c) => c,
                        Err(e) => {
                            registry.abort_all(&format!("rank {r} failed to start: {e}"));
                            return Ok(Err(e));
                        }
                    };
                    let out = catch_unwind(AssertUnwindSafe(|| f(&ctx)));
                    if out.is_err() {
                        registry.abort_all(&format!("rank {r} panicked"));
                    }
                    drop(ctx);
                    out.map(Ok)
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    gate.arrive(false);
                    spawn_err = Some(Error::BackendUnavailable(format!(
                        "could not spawn the thread of rank {r}: {e}"
                    )));
                    break;
                }
            }
        }
        let mut out: Vec<std::thread::Result<Result<R>>> = handles
            .into_iter()
            .map(|h| h.join().and_then(|r| r))
            .collect();
        if let Some(e) = spawn_err {
            out.insert(0, Ok(Err(e)));
        }
        out
    });
    let mut results = Vec::with_capacity(world_size);
    let mut first_err = None;
    for o in outcomes {
        match o {
            Err(panic) => resume_unwind(panic),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Ok(Ok(v)) => results.push(v),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// An NCCL unique id: the 128 bytes every rank of a new world must share (rank 0 creates it
/// with [`UniqueId::new`] and sends it to the others by any means).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UniqueId(pub [u8; 128]);

impl std::fmt::Debug for UniqueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UniqueId(..)")
    }
}

impl UniqueId {
    /// Create a new id (`ncclGetUniqueId`). [`Error::BackendUnavailable`] without NCCL.
    pub fn new() -> Result<UniqueId> {
        require(1, 0)?;
        let raw = unique_id()?;
        Ok(UniqueId(raw.internal.map(|c| c as u8)))
    }

    fn raw(&self) -> nccl::ncclUniqueId {
        nccl::ncclUniqueId {
            internal: self.0.map(|b| b as std::ffi::c_char),
        }
    }
}

/// Join a world of `world_size` ranks as rank `rank`, on GPU `device` of this process, with an
/// id shared by all ranks: the building block of one-process-per-rank launches when you
/// distribute the id yourself ([`init_from_env`] does it over TCP). Installs the rank on the
/// calling thread and returns its context; blocks until every rank joined.
pub fn init_rank(
    rank: usize,
    world_size: usize,
    device: usize,
    id: &UniqueId,
    cfg: RankConfig,
) -> Result<RankContext> {
    if world_size == 0 || rank >= world_size {
        return Err(Error::InvalidArgument {
            op: "cuda::init_rank",
            detail: format!("rank {rank} is not in a world of {world_size}"),
        });
    }
    let found = require(1, device + 1)?;
    nvls_off();
    log_policy_once();
    let registry = Arc::new(AbortRegistry::default());
    let start = RankStart {
        ordinal: device,
        rank,
        world_size,
        id: id.raw(),
        registry: &registry,
        settings: CommSettings {
            windows: found.windows,
        },
    };
    start_rank(start, cfg, |_| true)
}

/// Join a job of one process per rank (started by `torchrun`, `mpirun`/OpenMPI or `srun`):
/// read rank, world size and local rank from the environment ([`bootstrap::LaunchEnv`]: `RANK`/
/// `WORLD_SIZE`/`LOCAL_RANK`, `OMPI_COMM_WORLD_*` or `SLURM_*`, plus `MASTER_ADDR` and
/// `MASTER_PORT`), open GPU `local_rank`, get the NCCL unique id from rank 0 over TCP (rank 0
/// listens; every wait bounded by `cfg.timeout`), create the world communicator and install the
/// rank on the calling thread.
///
/// Errors: [`Error::BackendUnavailable`] for a missing or malformed environment, a failed
/// rendezvous (the message names the missing ranks or the unreachable address), or missing
/// CUDA/NCCL/GPUs; NCCL errors of the communicator creation.
pub fn init_from_env(cfg: RankConfig) -> Result<RankContext> {
    let env = bootstrap::LaunchEnv::from_env().map_err(unavailable)?;
    require(1, env.local_rank + 1)?;
    // Rank 0 makes the id before serving it (making it cannot fail inside the exchange).
    let mine = if env.rank == 0 {
        Some(UniqueId::new()?)
    } else {
        None
    };
    let bytes = bootstrap::exchange_unique_id(
        &env,
        || mine.map(|id| id.0).unwrap_or([0; 128]),
        cfg.timeout,
    )
    .map_err(unavailable)?;
    init_rank(
        env.rank,
        env.world_size,
        env.local_rank,
        &UniqueId(bytes),
        cfg,
    )
}
