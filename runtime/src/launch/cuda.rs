//! The CUDA backend's launchers: one thread per GPU in this process ([`run_threads`], through
//! the one rank runner), one rank joining a world with a shared id ([`init_rank`]), and one
//! process per rank started by a launcher ([`init_from_env`], over the TCP bootstrap).

use std::sync::{Arc, Condvar, Mutex};

use crate::backend::cuda::nccl_api::sys as nccl;

use crate::backend::cuda::availability::{log_policy_once, nvls_off, require, unavailable};
use crate::backend::cuda::device::CudaDevice;
use crate::backend::cuda::ffi;
use crate::backend::cuda::nccl::{AbortRegistry, CommPlace, CommSettings, NcclComm};
use crate::bootstrap;
use crate::config::RankConfig;
use crate::error::{Error, Result};
use crate::launch::threads::{check_world_size, run_ranks, RankStarter};
use crate::rank::context::RankContext;

/// A start-up gate: every rank reports whether it opened its GPU; all proceed only if all did.
/// A failure releases the waiters at once.
struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    /// How many ranks must arrive.
    ranks: usize,
}

impl Gate {
    fn new(n: usize) -> Self {
        Gate {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            ranks: n,
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
        while st.0 < self.ranks && !st.1 {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.1
    }
}

fn unique_id() -> Result<nccl::ncclUniqueId> {
    ffi::get_unique_id(
        "NCCL could not create its bootstrap id (no usable network interface?); set NCCL_SOCKET_IFNAME, e.g. NCCL_SOCKET_IFNAME=lo for one machine",
    )
}

/// Which GPU a rank uses: one it opens (with its own stream), or the caller's stream.
enum RankGpu {
    Open(usize),
    Adopt(Arc<cudarc::driver::CudaStream>),
}

/// Where a rank starts: its GPU, its place in the world, and what its communicators share.
struct RankStart<'a> {
    gpu: RankGpu,
    rank: usize,
    world_size: usize,
    id: nccl::ncclUniqueId,
    registry: &'a Arc<AbortRegistry>,
    settings: CommSettings,
}

/// Open the GPU, create the world communicator and install the rank on this thread.
/// `before_init` is told whether the GPU opened and says whether to go on (a start-up gate).
fn start_rank(
    start: RankStart<'_>,
    cfg: RankConfig,
    before_init: impl FnOnce(bool) -> bool,
) -> Result<RankContext> {
    let device = match start.gpu {
        RankGpu::Open(ordinal) => CudaDevice::open(ordinal),
        RankGpu::Adopt(stream) => CudaDevice::adopt(stream),
    };
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
    let n = i32::try_from(start.world_size).map_err(|_| too_large("world_size"))?;
    let r = i32::try_from(start.rank).map_err(|_| too_large("rank"))?;
    // SAFETY: `CudaDevice::open` made the GPU's context current on this thread, and `require`
    // (called by every entry point before this) loaded NCCL.
    let comm = unsafe {
        ffi::comm_init_rank(
            n,
            start.id,
            r,
            "the ranks could not connect; check that every rank uses its own GPU, and set NCCL_DEBUG=WARN (and NCCL_SOCKET_IFNAME) to see why",
        )
    }?;
    let comm = NcclComm::from_raw(
        comm,
        device.context().clone(),
        device.rank_stream().clone(),
        start.registry.clone(),
        start.settings,
        CommPlace::world(start.rank),
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
    check_world_size("cuda::run_threads", world_size)?;
    let found = require(world_size, world_size)?;
    nvls_off();
    log_policy_once();
    let starter = CudaStarter {
        world_size,
        id: unique_id()?,
        registry: Arc::new(AbortRegistry::default()),
        settings: CommSettings {
            windows: found.windows,
        },
        // Every rank opens its GPU before any enters ncclCommInitRank, so that one failing GPU
        // (or thread) cannot leave the others blocked in NCCL's bootstrap.
        gate: Gate::new(world_size),
    };
    run_ranks("cuda::run_threads", world_size, &cfg, &starter, f)
}

/// Starts the GPU ranks of one process: rank `r` on GPU `r`, all joining one NCCL world.
struct CudaStarter {
    world_size: usize,
    id: nccl::ncclUniqueId,
    registry: Arc<AbortRegistry>,
    settings: CommSettings,
    gate: Gate,
}

// SAFETY: `ncclUniqueId` is 128 plain bytes (no pointer); the other fields are `Sync`.
unsafe impl Sync for CudaStarter {}

impl RankStarter for CudaStarter {
    fn thread_name(&self, rank: usize) -> String {
        format!("symmem-gpu-{rank}")
    }

    fn start(&self, rank: usize, cfg: RankConfig) -> Result<RankContext> {
        let start = RankStart {
            gpu: RankGpu::Open(rank),
            rank,
            world_size: self.world_size,
            id: self.id,
            registry: &self.registry,
            settings: self.settings,
        };
        start_rank(start, cfg, |ok| self.gate.arrive(ok))
    }

    fn abort_all(&self, why: &str) {
        self.registry.abort_all(why);
    }

    fn spawn_failed(&self) {
        self.gate.arrive(false);
    }

    fn depart(&self, rank: usize, why: &str) {
        self.registry.depart(rank, why);
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
        gpu: RankGpu::Open(device),
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

/// [`init_rank`] on the caller's cudarc `stream` (and its context, and so its GPU) instead of
/// a GPU symmem opens: the rank's stream *is* `stream`, so symmem's allocations, copies,
/// collectives and graph captures are ordered with the caller's kernels on it (candle's,
/// cuBLAS's) without events. Installs the rank on the calling thread; blocks until every rank
/// joined.
///
/// Who owns what: the caller keeps its `Arc<CudaStream>` (symmem holds another reference, so
/// the stream outlives the rank context); symmem creates and destroys the NCCL communicators,
/// pools and graphs; the context's cudarc event tracking is left as the caller set it. Graph
/// capture needs a created stream: an adopted legacy default stream (`ctx.default_stream()`)
/// works for everything else and refuses `symmem::capture` with a message.
///
/// Errors: as [`init_rank`]; [`Error::InvalidArgument`] for a rank outside the world.
pub fn init_rank_on_stream(
    stream: Arc<cudarc::driver::CudaStream>,
    rank: usize,
    world_size: usize,
    id: &UniqueId,
    cfg: RankConfig,
) -> Result<RankContext> {
    if world_size == 0 || rank >= world_size {
        return Err(Error::InvalidArgument {
            op: "cuda::init_rank_on_stream",
            detail: format!("rank {rank} is not in a world of {world_size}"),
        });
    }
    let found = require(1, stream.context().ordinal() + 1)?;
    nvls_off();
    log_policy_once();
    let registry = Arc::new(AbortRegistry::default());
    let start = RankStart {
        gpu: RankGpu::Adopt(stream),
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
