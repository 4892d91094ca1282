//! The host backend's launcher: `N` rank threads of this process, each with a host device and
//! a communicator over shared host memory, through the one rank runner (`crate::launch::threads`).

use std::sync::Arc;

use crate::backend::host::comm::HostComm;
use crate::backend::host::device::HostDevice;
use crate::backend::host::shared::{AbortFlag, HostShared};
use crate::config::RankConfig;
use crate::error::Result;
use crate::launch::threads::{check_world_size, run_ranks, RankStarter};
use crate::rank::context::RankContext;

/// Settings of a host-backend launch.
///
/// New settings may be added in any release (`#[non_exhaustive]`): build it with
/// [`HostConfig::new`] and [`HostConfig::with_rank`].
///
/// ```
/// use symmem_runtime::host::HostConfig;
///
/// let cfg = HostConfig::new(4).with_rank(symmem_runtime::RankConfig::new().with_validate(true));
/// assert_eq!(cfg.world_size, 4);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HostConfig {
    /// Number of ranks (threads), at least 1.
    pub world_size: usize,
    /// Settings of every rank.
    pub rank: RankConfig,
}

impl HostConfig {
    /// `world_size` ranks with default settings.
    pub fn new(world_size: usize) -> Self {
        HostConfig {
            world_size,
            rank: RankConfig::default(),
        }
    }

    /// With these settings for every rank.
    #[must_use]
    pub fn with_rank(mut self, rank: RankConfig) -> Self {
        self.rank = rank;
        self
    }
}

/// Run `f` on `world_size` rank threads (host backend) and collect what each returns.
///
/// Each thread gets a [`RankContext`] with a group `"world"` of all ranks. If a rank panics,
/// the others' pending collectives fail instead of waiting, and the panic is resumed here after
/// every thread has finished.
pub fn run<R, F>(world_size: usize, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(&RankContext) -> R + Send + Sync,
{
    run_with(HostConfig::new(world_size), f)
}

/// [`run`] with explicit settings.
pub fn run_with<R, F>(config: HostConfig, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(&RankContext) -> R + Send + Sync,
{
    check_world_size("host::run", config.world_size)?;
    let abort = Arc::new(AbortFlag::default());
    let starter = HostStarter {
        shared: Arc::new(HostShared::new(config.world_size, abort.clone())),
        abort,
    };
    run_ranks("host::run", config.world_size, &config.rank, &starter, f)
}

/// Starts host ranks: a host device and a communicator over the launch's shared state.
struct HostStarter {
    shared: Arc<HostShared>,
    abort: Arc<AbortFlag>,
}

impl RankStarter for HostStarter {
    fn thread_name(&self, rank: usize) -> String {
        format!("symmem-rank-{rank}")
    }

    fn start(&self, rank: usize, cfg: RankConfig) -> Result<RankContext> {
        let device = Arc::new(HostDevice::new(rank));
        let comm = Arc::new(HostComm::new(self.shared.clone(), rank, cfg.timeout));
        RankContext::install(device, comm, cfg)
    }

    fn abort_all(&self, why: &str) {
        self.abort.set(why.to_string());
    }

    fn depart(&self, rank: usize, why: &str) {
        self.abort.depart(rank, why.to_string());
    }
}
