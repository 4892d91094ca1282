//! A group: a named communicator of ranks with its own symmetric pool.

use symmem_rules::refusals;

use std::sync::Arc;

use crate::backend::direct::DirectAllReduce;
use crate::backend::traits::{CommBackend, StreamBackend};
use crate::config::RankConfig;
use crate::dtype::{DType, ReduceOp};
use crate::error::Result;
use crate::kernels::Collective;
use crate::pool::handle::PoolOwner;
use crate::pool::{Pool, PoolStats, Source};
use crate::thread::{rank_id, refuse_if_capturing, wrong_thread};
use crate::validation::DivergenceCheck;
use crate::window::WindowGuard;

pub(crate) struct GroupShared {
    name: Arc<str>,
    comm: Arc<dyn CommBackend>,
    pool: PoolOwner,
    stream: Arc<dyn StreamBackend>,
    rank_id: u64,
    validator: DivergenceCheck,
}

/// A named group of ranks: a communicator plus the group's symmetric pool.
///
/// Cheap to clone. Collectives are methods of the group (see `crate::rank::collectives`).
#[derive(Clone)]
pub struct Group {
    /// What a collective launch reads, copied out of `shared` into the handle itself, so that
    /// a launch follows no pointer before the communicator's (`docs/design.md`, "The launch
    /// path").
    fast: CollectivePath,
    pub(crate) shared: Arc<GroupShared>,
}

/// The launch path's view of a group (immutable; see [`Group`]).
#[derive(Clone, Copy)]
struct CollectivePath {
    /// The communicator's direct all-reduce entry on the group's stream (points into the
    /// communicator, which `shared` keeps alive and never replaces).
    direct_all_reduce: Option<DirectAllReduce>,
    /// Address of the group's symmetric pool (owned by `shared`).
    pool: usize,
    /// Id of the rank the group belongs to: only that rank's thread routes to its pool or
    /// launches its collectives.
    rank_id: u64,
    /// Whether validation mode is on.
    validate: bool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name())
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl Group {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This rank's index in the group.
    pub fn rank(&self) -> usize {
        self.shared.comm.rank()
    }

    /// Number of ranks in the group.
    pub fn size(&self) -> usize {
        self.shared.comm.size()
    }

    /// Whether the communicator registers symmetric windows (false on CUDA when NCCL returned
    /// no window, for example for an unsupported topology; buffers then take the plain path).
    pub fn symmetric_supported(&self) -> bool {
        self.shared.comm.symmetric_supported()
    }

    /// Whether `collective` with `op` on `dtype` takes the backend's fast symmetric path when its
    /// operands come from this group's symmetric pool. On CUDA that is NCCL's symmetric-kernel
    /// table (all-reduce `Sum`, reduce-scatter `Sum`/`Avg`, all-gather; `f32`, `f16`, `bf16`;
    /// see `symmem::kernels`) and whether the communicator registers windows; NCCL further
    /// needs every rank NVLink-connected, which it decides by itself. Anything else on a
    /// symmetric buffer is correct but runs the regular kernels. The host backend's symmetric
    /// path serves every collective.
    pub fn symmetric_kernels(&self, collective: Collective, op: ReduceOp, dtype: DType) -> bool {
        self.shared.comm.symmetric_kernels(collective, op, dtype)
    }

    /// Enter this group's pool-routing window on the current thread: allocations through
    /// symmem go to the group's symmetric pool until the guard drops.
    ///
    /// Only on the thread of the group's rank: on another thread (a handle sent elsewhere, or
    /// one that outlived its rank context) the window routes to nothing, and allocations inside
    /// it fail with an error naming the group, so no thread is ever routed to a pool its rank
    /// does not keep alive.
    #[inline]
    pub fn window(&self) -> WindowGuard<'_> {
        // The name is read only on the cold path (a window on another rank's handle): the
        // hot path touches the handle's own fields and the thread state, nothing behind `shared`.
        WindowGuard::enter_for_rank(self.fast.rank_id, self.pool_ptr(), || self.name())
    }

    /// Run `f` inside this group's window.
    #[inline]
    pub fn with_window<R>(&self, f: impl FnOnce() -> R) -> R {
        let _w = self.window();
        f()
    }

    /// Make sure the group's symmetric pool has a free block of at least `bytes`, creating a
    /// segment if needed (a collective: every rank calls it with the same value). Call it
    /// before capturing graphs that allocate symmetric memory. Refused during capture.
    pub fn reserve_symmetric(&self, bytes: usize) -> Result<()> {
        refuse_if_capturing(&refusals::GROUP_RESERVE_SYMMETRIC)?;
        self.on_rank_thread("Group::reserve_symmetric")?;
        self.shared.pool.reserve(bytes)
    }

    /// Release the symmetric pool's entirely free segments. Returns the bytes released.
    /// Refused during capture.
    pub fn empty_cache(&self) -> Result<usize> {
        refuse_if_capturing(&refusals::GROUP_EMPTY_CACHE)?;
        self.on_rank_thread("Group::empty_cache")?;
        self.shared.pool.empty_cache()
    }

    /// Statistics of the group's symmetric pool.
    pub fn stats(&self) -> PoolStats {
        self.shared.pool.stats()
    }

    /// The backend communicator (for backend-specific extensions).
    pub fn comm(&self) -> &Arc<dyn CommBackend> {
        &self.shared.comm
    }

    pub(crate) fn stream(&self) -> &Arc<dyn StreamBackend> {
        &self.shared.stream
    }

    pub(crate) fn rank_id(&self) -> u64 {
        self.shared.rank_id
    }

    #[inline(always)]
    pub(crate) fn direct_all_reduce(&self) -> Option<DirectAllReduce> {
        self.fast.direct_all_reduce
    }

    /// Whether validation mode is on for this group.
    #[inline(always)]
    pub(crate) fn validating(&self) -> bool {
        self.fast.validate
    }

    pub(crate) fn validator(&self) -> &DivergenceCheck {
        &self.shared.validator
    }

    /// `Ok` on the thread of the group's rank; otherwise the error naming the thread and the
    /// rank (or `NoRankContext` on a thread without a rank).
    #[inline(always)]
    pub(crate) fn on_rank_thread(&self, op: &'static str) -> Result<()> {
        if rank_id() != self.fast.rank_id {
            return Err(wrong_thread(op, self.name(), self.rank()));
        }
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn pool_ptr(&self) -> *const Pool {
        self.fast.pool as *const Pool
    }
}

/// A group over `comm` named `name`, with its symmetric pool, on rank `rank_id`'s stream.
pub(crate) fn make_group(
    name: Arc<str>,
    comm: Arc<dyn CommBackend>,
    rank_id: u64,
    stream: Arc<dyn StreamBackend>,
    config: &RankConfig,
) -> Group {
    comm.set_name(&name);
    let validator = DivergenceCheck {
        enabled: config.validate,
        timeout: config.timeout,
        group: name.clone(),
    };
    let pool = PoolOwner::new(Pool::new_self_held(
        name.clone(),
        rank_id,
        Source::Symmetric {
            comm: comm.clone(),
            validator: validator.clone(),
        },
        stream.clone(),
        config.symmetric_pool_limit,
    ));
    let fast = CollectivePath {
        direct_all_reduce: comm.direct_all_reduce(stream.as_ref()),
        pool: Arc::as_ptr(&pool) as usize,
        rank_id,
        validate: validator.enabled,
    };
    Group {
        fast,
        shared: Arc::new(GroupShared {
            name,
            comm,
            pool,
            stream,
            rank_id,
            validator,
        }),
    }
}
