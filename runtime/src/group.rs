//! Ranks and groups.
//!
//! A thread that acts as a rank installs a [`RankContext`]: its device, its stream, its default
//! pool and its groups. A [`Group`] is a named communicator (`"tp"`, `"dp"`, ...) with this
//! rank's index, the group size and the group's own symmetric pool. Nothing is a process-wide
//! singleton: with threads as ranks (the host backend, or one GPU per thread), each rank thread
//! sees only its own groups.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{
    BackendKind, CommBackend, DeviceBackend, DirectAllReduce, HostOp, StreamBackend,
};
use crate::pool::{Pool, PoolOwner, PoolStats, Source};
use crate::validate::{env_validate, Validator};
use crate::window::{Target, WindowGuard, ROUTE};
use crate::{Error, Result};

static NEXT_RANK_ID: AtomicU64 = AtomicU64::new(1);

/// Settings of a rank context.
#[derive(Clone, Debug)]
pub struct RankConfig {
    /// Validation mode: ranks compare segment creations and collectives before running them
    /// (default: `SYMMEM_VALIDATE=1` in the environment, else off).
    pub validate: bool,
    /// How long collectives' host-side waits (validation exchanges, host-backend barriers) wait
    /// for peers before failing (default: `SYMMEM_TIMEOUT_SECS`, else 300 s).
    pub timeout: Duration,
    /// Upper bound on the bytes each symmetric pool may reserve (default: none).
    pub symmetric_pool_limit: Option<usize>,
    /// Upper bound on the bytes the default pool may reserve (default: none).
    pub default_pool_limit: Option<usize>,
}

impl Default for RankConfig {
    fn default() -> Self {
        let timeout = std::env::var("SYMMEM_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(300));
        RankConfig {
            validate: env_validate(),
            timeout,
            symmetric_pool_limit: None,
            default_pool_limit: None,
        }
    }
}

/// Check that a group name is a non-empty identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes).
pub fn validate_group_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 bytes")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("it contains a character other than ASCII letters, digits and `_`")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidGroupName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

pub(crate) struct GroupShared {
    name: Arc<str>,
    comm: Arc<dyn CommBackend>,
    pool: PoolOwner,
    stream: Arc<dyn StreamBackend>,
    rank_id: u64,
    validator: Validator,
}

/// A named group of ranks: a communicator plus the group's symmetric pool.
///
/// Cheap to clone. Collectives are methods of the group (see [`crate::collective`]).
#[derive(Clone)]
pub struct Group {
    /// What a collective launch reads, copied out of `shared` into the handle itself, so that
    /// a launch follows no pointer before the communicator's (`docs/design.md`, "The launch
    /// path").
    hot: GroupHot,
    pub(crate) shared: Arc<GroupShared>,
}

/// The launch path's view of a group (immutable; see [`Group`]).
#[derive(Clone, Copy)]
struct GroupHot {
    /// The communicator's direct all-reduce entry on the group's stream (points into the
    /// communicator, which `shared` keeps alive and never replaces).
    direct_all_reduce: Option<DirectAllReduce>,
    /// Address of the group's symmetric pool (owned by `shared`).
    pool: usize,
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

    /// Enter this group's pool-routing window on the current thread: allocations through
    /// symmem go to the group's symmetric pool until the guard drops.
    #[inline]
    pub fn window(&self) -> WindowGuard<'_> {
        WindowGuard::enter(Target::Group(self.pool_ptr()))
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
        crate::capture::refuse_if_capturing_setup("Group::reserve_symmetric")?;
        self.shared.pool.reserve(bytes)
    }

    /// Release the symmetric pool's entirely free segments. Returns the bytes released.
    /// Refused during capture.
    pub fn empty_cache(&self) -> Result<usize> {
        crate::capture::refuse_if_capturing_setup("Group::empty_cache")?;
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
        self.hot.direct_all_reduce
    }

    /// Whether validation mode is on for this group.
    #[inline(always)]
    pub(crate) fn validating(&self) -> bool {
        self.hot.validate
    }

    pub(crate) fn validator(&self) -> &Validator {
        &self.shared.validator
    }

    #[inline(always)]
    pub(crate) fn pool_ptr(&self) -> *const Pool {
        self.hot.pool as *const Pool
    }
}

/// A rank's stream handle.
#[derive(Clone)]
pub struct Stream {
    inner: Arc<dyn StreamBackend>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

impl Stream {
    /// Wait until all work queued on the stream has finished. Refused during capture.
    pub fn synchronize(&self) -> Result<()> {
        crate::capture::refuse_if_capturing_blocking("Stream::synchronize")?;
        self.inner.synchronize()
    }

    /// Queue a host closure as stream work (host backend): it runs now, or is recorded while
    /// capturing and runs at every replay. Device addresses from [`crate::Buffer::device_ptr`] are
    /// host addresses there.
    pub fn launch_host(&self, op: impl FnMut() -> Result<()> + Send + 'static) -> Result<()> {
        self.inner.launch_host(Box::new(op) as HostOp)
    }

    /// The backend stream (for backend-specific extensions, such as the raw `CUstream`).
    pub fn backend(&self) -> &Arc<dyn StreamBackend> {
        &self.inner
    }
}

/// Entries of [`RankInner`]'s by-name lookup cache.
const NAMED_CACHE: usize = 4;

pub(crate) struct RankInner {
    id: u64,
    device: Arc<dyn DeviceBackend>,
    stream: Arc<dyn StreamBackend>,
    default_pool: PoolOwner,
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
    /// [`RankInner::find`] for a `'static` name, through a small cache keyed by the name's
    /// address (a literal has one address for the program's lifetime).
    #[inline]
    fn find_static(&self, name: &'static str) -> Option<*const Pool> {
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
        let pool = self.find(name)?;
        let mut entries = self.named.get();
        let i = self.named_next.get();
        entries[i] = (key.0, key.1, pool);
        self.named.set(entries);
        self.named_next.set((i + 1) % NAMED_CACHE);
        Some(pool)
    }

    fn find(&self, name: &str) -> Option<*const Pool> {
        self.groups
            .borrow()
            .iter()
            .find(|g| g.name() == name)
            .map(|g| g.pool_ptr())
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
        crate::capture::refuse_if_capturing_setup("RankContext::install")?;
        if let Some(existing) = current_rank_opt() {
            return Err(Error::RankContextAlreadyInstalled {
                rank: existing.world.rank(),
            });
        }
        device.bind_to_thread()?;
        let id = NEXT_RANK_ID.fetch_add(1, Ordering::Relaxed);
        let stream = device.stream();
        let default_pool = Pool::create(
            Arc::from("default"),
            id,
            Source::Device(device.clone()),
            stream.clone(),
            config.default_pool_limit,
        );
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
        ROUTE.with(|r| r.rank.set(Rc::as_ptr(&inner)));
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
        self.inner
            .groups
            .borrow()
            .iter()
            .find(|g| g.name() == name)
            .cloned()
            .ok_or_else(|| Error::GroupNotFound {
                name: name.to_string(),
                known: self.inner.known(),
            })
    }

    /// Every group of this rank.
    pub fn groups(&self) -> Vec<Group> {
        self.inner.groups.borrow().clone()
    }

    /// Add a group from an existing communicator.
    pub fn add_group(&self, name: &str, comm: Arc<dyn CommBackend>) -> Result<Group> {
        crate::capture::refuse_if_capturing_setup("RankContext::add_group")?;
        validate_group_name(name)?;
        if self.inner.find(name).is_some() {
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
        crate::capture::refuse_if_capturing_setup("RankContext::split_group")?;
        validate_group_name(name)?;
        if self.inner.find(name).is_some() {
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

    /// Statistics of the rank's default pool (allocations outside windows).
    pub fn default_pool_stats(&self) -> PoolStats {
        self.inner.default_pool.stats()
    }

    /// Release the default pool's entirely free segments. Refused during capture.
    pub fn empty_cache(&self) -> Result<usize> {
        crate::capture::refuse_if_capturing_setup("RankContext::empty_cache")?;
        self.inner.default_pool.empty_cache()
    }
}

impl Drop for RankContext {
    fn drop(&mut self) {
        ROUTE.with(|r| {
            if r.rank.get() == Rc::as_ptr(&self.inner) {
                r.rank.set(std::ptr::null());
            }
            if r.depth.get() > 0 {
                // Windows (forgotten guards) still point at this rank's pools: keep them alive
                // rather than leave dangling routes, and reset the routing.
                eprintln!(
                    "symmem: RankContext dropped while {} window(s) are open on this thread (a guard was leaked with mem::forget?); its pools are leaked to keep routing sound",
                    r.depth.get()
                );
                std::mem::forget(self.inner.clone());
                crate::window::reset_routing();
            }
        });
    }
}

fn make_group(
    name: Arc<str>,
    comm: Arc<dyn CommBackend>,
    rank_id: u64,
    stream: Arc<dyn StreamBackend>,
    config: &RankConfig,
) -> Group {
    comm.set_name(&name);
    let validator = Validator {
        enabled: config.validate,
        timeout: config.timeout,
        group: name.clone(),
    };
    let pool = Pool::create(
        name.clone(),
        rank_id,
        Source::Symmetric {
            comm: comm.clone(),
            validator: validator.clone(),
        },
        stream.clone(),
        config.symmetric_pool_limit,
    );
    let hot = GroupHot {
        direct_all_reduce: comm.direct_all_reduce(stream.as_ref()),
        pool: Arc::as_ptr(&pool) as usize,
        validate: validator.enabled,
    };
    Group {
        hot,
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

fn current_rank_opt() -> Option<Rc<RankInner>> {
    ROUTE.with(|r| {
        let p = r.rank.get();
        if p.is_null() {
            None
        } else {
            // SAFETY: the pointer is set from a live `Rc` by `install` and cleared by the
            // context's drop (or the Rc is leaked); we take a new strong count.
            unsafe {
                Rc::increment_strong_count(p);
                Some(Rc::from_raw(p))
            }
        }
    })
}

pub(crate) fn current_rank() -> Result<Rc<RankInner>> {
    current_rank_opt().ok_or(Error::NoRankContext)
}

pub(crate) fn current_rank_id() -> Option<u64> {
    ROUTE.with(|r| {
        let p = r.rank.get();
        // SAFETY: see `current_rank_opt`.
        (!p.is_null()).then(|| unsafe { &*p }.id)
    })
}

/// The current thread's group named `name`.
pub fn group(name: &str) -> Result<Group> {
    let rank = current_rank()?;
    let g = rank
        .groups
        .borrow()
        .iter()
        .find(|g| g.name() == name)
        .cloned();
    g.ok_or_else(|| Error::GroupNotFound {
        name: name.to_string(),
        known: rank.known(),
    })
}

/// Enter the window of the current thread's group named `name`.
///
/// The guard does not borrow a [`Group`]: the rank context keeps the pool alive.
pub fn window(name: &str) -> Result<WindowGuard<'static>> {
    let rank = current_rank()?;
    match rank.find(name) {
        Some(p) => Ok(WindowGuard::enter(Target::Group(p))),
        None => Err(Error::GroupNotFound {
            name: name.to_string(),
            known: rank.known(),
        }),
    }
}

/// Enter the window of `name` without failing: if the group is missing, allocations inside
/// the window fail with [`Error::GroupNotFound`]. Used by `#[symmetric_memory]`.
#[inline]
pub(crate) fn enter_named(name: &'static str) -> WindowGuard<'static> {
    let target = ROUTE.with(|r| {
        let p = r.rank.get();
        if p.is_null() {
            return Target::Missing(name);
        }
        // SAFETY: see `current_rank_opt`; the borrow ends inside this closure.
        let rank = unsafe { &*p };
        match rank.find_static(name) {
            Some(pool) => Target::Group(pool),
            None => Target::Missing(name),
        }
    });
    WindowGuard::enter(target)
}

/// The current rank's stream.
pub fn current_stream() -> Result<Stream> {
    Ok(Stream {
        inner: current_rank()?.stream.clone(),
    })
}

/// Wait until the current rank's stream is idle. Refused during capture.
pub fn synchronize() -> Result<()> {
    crate::capture::refuse_if_capturing_blocking("symmem::synchronize")?;
    current_rank()?.stream.synchronize()
}

/// Error for a missing group at allocation time.
pub(crate) fn missing_group(name: &str) -> Error {
    let known = current_rank_opt().map(|r| r.known()).unwrap_or_default();
    Error::GroupNotFound {
        name: name.to_string(),
        known,
    }
}

/// The default pool of the current rank, as a raw pointer (null: no rank).
#[inline]
pub(crate) fn default_pool_ptr() -> *const Pool {
    ROUTE.with(|r| {
        let p = r.rank.get();
        if p.is_null() {
            std::ptr::null()
        } else {
            // SAFETY: see `current_rank_opt`.
            Arc::as_ptr(&unsafe { &*p }.default_pool)
        }
    })
}

#[cfg(test)]
mod direct_entry_tests {
    //! The launch path through a communicator's direct entry (`CommBackend::direct_all_reduce`):
    //! NCCL communicators offer one, the host backend does not, so this wraps the host
    //! communicator in one that does, to check the group's dispatch on every CI run.
    use super::*;
    use crate::backend::{Operand, SymSegment};
    use crate::{DType, ReduceOp};
    use std::any::Any;
    use std::sync::atomic::AtomicUsize;

    /// The host communicator, plus a direct all-reduce entry that counts its calls.
    struct Counting {
        inner: Arc<dyn CommBackend>,
        stream: Arc<dyn StreamBackend>,
        direct_calls: AtomicUsize,
    }

    /// # Safety
    /// `ctx` is a live `Counting`.
    unsafe fn counting_launch(
        ctx: *const (),
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        // SAFETY: the contract of `DirectAllReduce`.
        let c = unsafe { &*(ctx as *const Counting) };
        c.direct_calls.fetch_add(1, Ordering::Relaxed);
        c.inner
            .all_reduce(c.stream.as_ref(), send, recv, count, dtype, op)
    }

    impl CommBackend for Counting {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn size(&self) -> usize {
            self.inner.size()
        }
        fn symmetric_supported(&self) -> bool {
            self.inner.symmetric_supported()
        }
        fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment> {
            self.inner.create_symmetric_segment(bytes)
        }
        unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment) {
            // SAFETY: forwarded with the caller's guarantee.
            unsafe { self.inner.destroy_symmetric_segment(seg) }
        }
        fn all_reduce(
            &self,
            stream: &dyn StreamBackend,
            send: Operand,
            recv: Operand,
            count: usize,
            dtype: DType,
            op: ReduceOp,
        ) -> Result<()> {
            self.inner.all_reduce(stream, send, recv, count, dtype, op)
        }
        fn all_gather(
            &self,
            stream: &dyn StreamBackend,
            send: Operand,
            recv: Operand,
            count: usize,
            dtype: DType,
        ) -> Result<()> {
            self.inner.all_gather(stream, send, recv, count, dtype)
        }
        fn reduce_scatter(
            &self,
            stream: &dyn StreamBackend,
            send: Operand,
            recv: Operand,
            count: usize,
            dtype: DType,
            op: ReduceOp,
        ) -> Result<()> {
            self.inner
                .reduce_scatter(stream, send, recv, count, dtype, op)
        }
        fn broadcast(
            &self,
            stream: &dyn StreamBackend,
            send: Operand,
            recv: Operand,
            count: usize,
            dtype: DType,
            root: usize,
        ) -> Result<()> {
            self.inner.broadcast(stream, send, recv, count, dtype, root)
        }
        fn direct_all_reduce(&self, stream: &dyn StreamBackend) -> Option<DirectAllReduce> {
            std::ptr::addr_eq(
                stream as *const dyn StreamBackend,
                Arc::as_ptr(&self.stream),
            )
            .then_some(DirectAllReduce {
                ctx: self as *const Counting as *const (),
                launch: counting_launch,
            })
        }
        fn barrier(&self, stream: &dyn StreamBackend) -> Result<()> {
            self.inner.barrier(stream)
        }
        fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>> {
            self.inner.exchange(mine, timeout)
        }
        fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>> {
            self.inner.split(color, key)
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn all_reduce_takes_the_direct_entry_with_the_right_operands() {
        let out = crate::backend::host::run(3, |ctx| {
            let world = ctx.world();
            let stream = world.stream().clone();
            let counting = Arc::new(Counting {
                inner: world.comm().clone(),
                stream: stream.clone(),
                direct_calls: AtomicUsize::new(0),
            });
            let cfg = RankConfig {
                validate: true,
                ..RankConfig::default()
            };
            let g = make_group(
                Arc::from("direct"),
                counting.clone(),
                world.rank_id(),
                stream,
                &cfg,
            );
            assert!(g.direct_all_reduce().is_some());
            let r = ctx.rank() as f32;
            let n = 1000;
            let mine: Vec<f32> = (0..n).map(|i| r * 1000.0 + i as f32).collect();
            let (mut a, src, mut dst) = {
                let _w = g.window();
                let a = crate::alloc_from_host(&mine).unwrap();
                let src = crate::alloc_from_host(&mine).unwrap();
                let dst = crate::alloc_zeroed::<f32>(n).unwrap();
                (a, src, dst)
            };
            assert!(a.is_symmetric() && src.is_symmetric());
            g.all_reduce(&mut a, ReduceOp::Sum).unwrap();
            g.all_reduce_into(&src, &mut dst, ReduceOp::Max).unwrap();
            // A buffer of the default pool takes the plain path, through the entry too.
            let mut p = crate::alloc_from_host(&mine).unwrap();
            assert!(!p.is_symmetric());
            g.all_reduce(&mut p, ReduceOp::Min).unwrap();
            // Other collectives keep the trait path.
            let mut b = crate::alloc_from_host(&mine).unwrap();
            g.broadcast(&mut b, 0).unwrap();
            crate::synchronize().unwrap();
            (
                a.to_host_vec().unwrap(),
                dst.to_host_vec().unwrap(),
                p.to_host_vec().unwrap(),
                counting.direct_calls.load(Ordering::Relaxed),
            )
        })
        .unwrap();
        for (sum, max, min, calls) in out {
            for i in 0..1000 {
                let i_f = i as f32;
                assert_eq!(sum[i], (0.0 + 1000.0 + 2000.0) + 3.0 * i_f);
                assert_eq!(max[i], 2000.0 + i_f);
                assert_eq!(min[i], i_f);
            }
            assert_eq!(
                calls, 3,
                "all_reduce x2 and all_reduce_into went through the entry"
            );
        }
    }
}
