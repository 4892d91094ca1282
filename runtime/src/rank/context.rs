//! The rank installed on a thread: its device, stream, default pool and groups.
//!
//! A thread that acts as a rank installs a [`RankContext`]. Nothing is a process-wide
//! singleton: with threads as ranks (the host backend, or one GPU per thread), each rank thread
//! sees only its own groups.

use symmem_rules::refusals;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::traits::{BackendKind, CommBackend, DeviceBackend, StreamBackend};
use crate::config::RankConfig;
use crate::error::{Error, Result};
use crate::names::validate_group_name;
use crate::pool::handle::PoolOwner;
use crate::pool::{Pool, PoolStats, Source};
use crate::rank::group::{make_group, Group};
use crate::rank::stream::Stream;
use crate::thread::{rank_ptr, refuse_if_capturing, THREAD};
use crate::window::reset_routing;

static NEXT_RANK_ID: AtomicU64 = AtomicU64::new(1);

/// Entries of [`RankInner`]'s by-name lookup cache.
const NAMED_CACHE: usize = 4;

pub(crate) struct RankInner {
    id: u64,
    device: Arc<dyn DeviceBackend>,
    stream: Arc<dyn StreamBackend>,
    pub(crate) default_pool: PoolOwner,
    groups: RefCell<Vec<Group>>,
    /// Recent by-name lookups of `&'static str` names (the macro's): `(address, length, pool)`.
    /// Groups are only ever added, and a name maps to one group for the rank's lifetime, so an
    /// entry never goes stale; it saves a string comparison per window.
    named: Cell<[(usize, usize, *const Pool); NAMED_CACHE]>,
    named_next: Cell<usize>,
    world: Group,
    config: RankConfig,
}

impl RankInner {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
    pub(crate) fn stream(&self) -> &Arc<dyn StreamBackend> {
        &self.stream
    }
    pub(crate) fn default_pool(&self) -> &Arc<Pool> {
        &self.default_pool
    }
    /// [`RankInner::pool_of`] for a `'static` name, through a small cache keyed by the name's
    /// address (a literal has one address for the program's lifetime).
    #[inline]
    pub(crate) fn find_static(&self, name: &'static str) -> Option<*const Pool> {
        let key = (name.as_ptr() as usize, name.len());
        for (a, l, p) in self.named.get() {
            if (a, l) == key {
                return Some(p);
            }
        }
        self.find_static_slow(name, key)
    }

    #[cold]
    fn find_static_slow(&self, name: &'static str, key: (usize, usize)) -> Option<*const Pool> {
        let pool = self.pool_of(name)?;
        let mut entries = self.named.get();
        let i = self.named_next.get();
        entries[i] = (key.0, key.1, pool);
        self.named.set(entries);
        self.named_next.set((i + 1) % NAMED_CACHE);
        Some(pool)
    }

    /// The one lookup of a group by name: `f` of the group named `name`, if this rank has one.
    fn with_group<R>(&self, name: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.groups
            .borrow()
            .iter()
            .find(|g| g.name() == name)
            .map(f)
    }

    /// The group named `name`, or [`Error::GroupNotFound`] naming the groups this rank has.
    pub(crate) fn group(&self, name: &str) -> Result<Group> {
        self.with_group(name, Group::clone)
            .ok_or_else(|| self.not_found(name))
    }

    /// The symmetric pool of the group named `name`.
    pub(crate) fn pool_of(&self, name: &str) -> Option<*const Pool> {
        self.with_group(name, Group::pool_ptr)
    }

    /// [`Error::GroupNotFound`] for `name`.
    #[cold]
    pub(crate) fn not_found(&self, name: &str) -> Error {
        Error::GroupNotFound {
            name: name.to_string(),
            known: self.known(),
        }
    }

    fn known(&self) -> String {
        self.groups
            .borrow()
            .iter()
            .map(|g| g.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The rank installed on the current thread: device, stream, default pool and groups.
///
/// `!Send`: a thread is one rank. Dropping it uninstalls the rank from the thread.
pub struct RankContext {
    inner: Rc<RankInner>,
}

impl std::fmt::Debug for RankContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RankContext")
            .field("rank", &self.rank())
            .field("world_size", &self.world_size())
            .field("device", &self.inner.device.describe())
            .finish()
    }
}

impl RankContext {
    /// Install a rank on the current thread, with `world` as its group named `"world"`.
    pub fn install(
        device: Arc<dyn DeviceBackend>,
        world: Arc<dyn CommBackend>,
        config: RankConfig,
    ) -> Result<RankContext> {
        refuse_if_capturing(&refusals::RANK_INSTALL)?;
        if let Some(existing) = current_rank_opt() {
            return Err(Error::RankContextAlreadyInstalled {
                rank: existing.world.rank(),
            });
        }
        device.bind_to_thread()?;
        let id = NEXT_RANK_ID.fetch_add(1, Ordering::Relaxed);
        let stream = device.stream();
        let default_pool = PoolOwner::new(Pool::new_self_held(
            Arc::from("default"),
            id,
            Source::Device(device.clone()),
            stream.clone(),
            config.default_pool_limit,
        ));
        let world = make_group(Arc::from("world"), world, id, stream.clone(), &config);
        let inner = Rc::new(RankInner {
            id,
            device,
            stream,
            default_pool,
            groups: RefCell::new(vec![world.clone()]),
            named: Cell::new([(0, 0, std::ptr::null()); NAMED_CACHE]),
            named_next: Cell::new(0),
            world,
            config,
        });
        THREAD.with(|t| {
            t.rank.set(Rc::as_ptr(&inner) as *const ());
            t.rank_id.set(id);
        });
        Ok(RankContext { inner })
    }

    /// This rank's index in the world.
    pub fn rank(&self) -> usize {
        self.inner.world.rank()
    }

    /// Number of ranks in the world.
    pub fn world_size(&self) -> usize {
        self.inner.world.size()
    }

    /// The group of all ranks (named `"world"`).
    pub fn world(&self) -> Group {
        self.inner.world.clone()
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Result<Group> {
        self.inner.group(name)
    }

    /// Every group of this rank.
    pub fn groups(&self) -> Vec<Group> {
        self.inner.groups.borrow().clone()
    }

    /// Add a group from an existing communicator.
    pub fn add_group(&self, name: &str, comm: Arc<dyn CommBackend>) -> Result<Group> {
        refuse_if_capturing(&refusals::RANK_ADD_GROUP)?;
        validate_group_name(name)?;
        if self.inner.pool_of(name).is_some() {
            return Err(Error::DuplicateGroup {
                name: name.to_string(),
            });
        }
        let g = make_group(
            Arc::from(name),
            comm,
            self.inner.id,
            self.inner.stream.clone(),
            &self.inner.config,
        );
        self.inner.groups.borrow_mut().push(g.clone());
        Ok(g)
    }

    /// Split `parent` into sub-groups (a collective on `parent`): ranks passing the same `color`
    /// form one group named `name`, ordered by `key`, then by parent rank. For example tensor
    /// parallel groups of size `tp` inside the world: `color = rank / tp`, `key = rank % tp`.
    pub fn split_group(&self, name: &str, parent: &Group, color: u32, key: u32) -> Result<Group> {
        refuse_if_capturing(&refusals::RANK_SPLIT_GROUP)?;
        validate_group_name(name)?;
        if self.inner.pool_of(name).is_some() {
            return Err(Error::DuplicateGroup {
                name: name.to_string(),
            });
        }
        let comm = parent.comm().split(color, key)?;
        self.add_group(name, comm)
    }

    /// The rank's stream.
    pub fn stream(&self) -> Stream {
        Stream {
            inner: self.inner.stream.clone(),
        }
    }

    /// The rank's device.
    pub fn device(&self) -> &Arc<dyn DeviceBackend> {
        &self.inner.device
    }

    /// Which backend this rank runs on.
    pub fn backend_kind(&self) -> BackendKind {
        self.inner.device.kind()
    }

    /// The rank's settings.
    pub fn config(&self) -> &RankConfig {
        &self.inner.config
    }

    /// The rank's default pool (for buffers over foreign memory).
    // Only the CUDA backend wraps foreign memory.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn inner_default_pool(&self) -> &Arc<Pool> {
        self.inner.default_pool()
    }

    /// Statistics of the rank's default pool (allocations outside windows).
    pub fn default_pool_stats(&self) -> PoolStats {
        self.inner.default_pool.stats()
    }

    /// Release the default pool's entirely free segments. Refused during capture.
    pub fn empty_cache(&self) -> Result<usize> {
        refuse_if_capturing(&refusals::RANK_EMPTY_CACHE)?;
        self.inner.default_pool.empty_cache()
    }
}

impl Drop for RankContext {
    fn drop(&mut self) {
        THREAD.with(|r| {
            if r.rank.get() == Rc::as_ptr(&self.inner) as *const () {
                r.rank.set(std::ptr::null());
                r.rank_id.set(0);
            }
            if r.depth.get() > 0 {
                // Windows (forgotten guards) still point at this rank's pools: keep them alive
                // rather than leave dangling routes, and reset the routing.
                crate::diag::warn(format_args!(
                    "RankContext dropped while {} window(s) are open on this thread (a guard was leaked with mem::forget?); its pools are leaked to keep routing sound",
                    r.depth.get()
                ));
                std::mem::forget(self.inner.clone());
                reset_routing();
            }
        });
    }
}

/// The rank installed on this thread, as a new counted reference.
pub(crate) fn current_rank_opt() -> Option<Rc<RankInner>> {
    {
        let p = rank_ptr() as *const RankInner;
        if p.is_null() {
            None
        } else {
            // SAFETY: the thread's rank pointer is only set by `RankContext::install`, to a
            // live `Rc<RankInner>`, and cleared by that context's drop (or the Rc is leaked to
            // keep forgotten windows sound); we take a new strong count.
            unsafe {
                Rc::increment_strong_count(p);
                Some(Rc::from_raw(p))
            }
        }
    }
}
