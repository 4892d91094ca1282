//! Caching pools: per-group symmetric pools and per-device default pools.
//!
//! A pool obtains *segments* from its source (on CUDA: `ncclMemAlloc` + window registration for
//! a symmetric pool, a collective; device memory for a default pool) and carves *blocks* from
//! them best-fit, splitting and coalescing (`arena`). Blocks are aligned to 512 bytes: NCCL's
//! symmetric kernels move data in vectorised chunks and want aligned buffers, and 512 also keeps
//! every block on its own 128-byte cache lines and 16-byte vector boundaries.
//!
//! **Determinism across ranks.** When a segment is created and how large it is depends only on
//! the sequence of requests (the arena's policy), never on timing or addresses. The same requests
//! on every rank therefore give the same segments and the same offsets; validation mode checks it.

pub(crate) mod allocation;
pub(crate) mod arena;
pub(crate) mod graph;
pub(crate) mod graph_arena;
pub(crate) mod handle;
pub(crate) mod lifetime;
pub(crate) mod owner;
mod quick;

use std::sync::Arc;

use crate::backend::operand::{SymRef, SymSegment};
use crate::backend::traits::{CommBackend, DeviceBackend, StreamBackend};
use crate::error::{Error, Result};
use crate::pool::allocation::Allocation;
use crate::pool::arena::{Arena, ArenaConfig, Block};
use crate::pool::lifetime::KeepAlive;
use crate::pool::quick::QuickCache;
use crate::sync::owner_lock::{OwnerGuard, OwnerLock};
use crate::validation::DivergenceCheck;

/// Statistics of a pool.
///
/// Read its fields; more counters may be added in any release (`#[non_exhaustive]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Bytes of all segments the pool holds.
    pub reserved_bytes: usize,
    /// Bytes of blocks handed out and not yet returned.
    pub in_use_bytes: usize,
    /// Number of segments.
    pub segments: usize,
    /// Number of blocks handed out and not yet returned.
    pub allocated_blocks: usize,
    /// Largest free block, in bytes.
    pub largest_free_block: usize,
    /// Allocations served from cached segments.
    pub cache_hits: u64,
    /// Allocations that needed a new segment.
    pub cache_misses: u64,
}

/// Where a pool's segments come from.
pub(crate) enum Source {
    /// Device memory of one rank (default pools).
    Device(Arc<dyn DeviceBackend>),
    /// Symmetric segments of a group's communicator.
    Symmetric {
        comm: Arc<dyn CommBackend>,
        validator: DivergenceCheck,
    },
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    base: u64,
    size: usize,
    /// Index of the segment's NCCL window on the communicator (0 for default pools).
    nccl_window: u64,
    handle: u64,
    /// [`SymRef::window_tag`] of the segment's window when it is registered as a symmetric
    /// window; 0 for default pools, and for symmetric pools whose communicator returned no
    /// window (those blocks take the plain path).
    sym_tag: u64,
}

struct PoolState {
    arena: Arena,
    /// Freed blocks kept by exact size for reuse (see [`quick`]); allocated in `arena`.
    quick: QuickCache,
    segs: Vec<Option<Segment>>,
    hits: u64,
    misses: u64,
    /// Blocks recorded by live graphs: (pin count, freed by its buffer meanwhile). A pinned
    /// block whose buffer drops is returned to the arena only when the last pin goes.
    pins: std::collections::HashMap<Block, (u32, Option<Allocation>)>,
    /// Blocks handed out by `alloc`/`alloc_cached` and not yet given back to `free`, and the
    /// pool's reference to itself (see [`lifetime`]): buffers point at the pool without a
    /// reference count of their own.
    keepalive: KeepAlive<Pool>,
}

/// A caching pool. Shared (`Arc`) by the group or rank that owns it and by every buffer carved
/// from it, so it lives while any of them does.
pub struct Pool {
    label: Arc<str>,
    rank_id: u64,
    source: Source,
    stream: Arc<dyn StreamBackend>,
    limit: Option<usize>,
    state: OwnerLock<PoolState>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("label", &self.label)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    /// Create a pool that holds a reference to itself; wrap it in its owner's handle
    /// (`handle::PoolOwner`), which detaches it when dropped.
    pub(crate) fn new_self_held(
        label: Arc<str>,
        rank_id: u64,
        source: Source,
        stream: Arc<dyn StreamBackend>,
        limit: Option<usize>,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            label,
            rank_id,
            source,
            stream,
            limit,
            state: OwnerLock::new(PoolState {
                arena: Arena::new(ArenaConfig::default()),
                quick: QuickCache::default(),
                segs: Vec::new(),
                hits: 0,
                misses: 0,
                pins: std::collections::HashMap::new(),
                keepalive: KeepAlive::new(),
            }),
        });
        pool.lock().keepalive.hold(pool.clone());
        pool
    }

    /// The pool's name: the group's name for a symmetric pool, `default` otherwise.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn label_arc(&self) -> &Arc<str> {
        &self.label
    }

    /// Whether blocks of this pool lie in symmetric windows.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.source, Source::Symmetric { .. })
    }

    pub(crate) fn rank_id(&self) -> u64 {
        self.rank_id
    }

    pub(crate) fn stream(&self) -> &Arc<dyn StreamBackend> {
        &self.stream
    }

    #[inline]
    fn lock(&self) -> OwnerGuard<'_, PoolState> {
        self.state.lock()
    }

    /// Statistics, exact at the time of the call.
    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        let a = st.arena.stats();
        // Cached blocks are free for the user (allocated only in the arena's bookkeeping).
        PoolStats {
            reserved_bytes: a.reserved_bytes,
            in_use_bytes: a.in_use_bytes - st.quick.bytes(),
            segments: a.segments,
            allocated_blocks: a.allocated_blocks - st.quick.blocks(),
            largest_free_block: a.largest_free_block.max(st.quick.largest()),
            cache_hits: st.hits,
            cache_misses: st.misses,
        }
    }

    /// Bytes a request of `bytes` occupies after rounding to the pool's alignment.
    pub fn round_request(&self, bytes: usize) -> usize {
        self.lock().arena.round_request(bytes)
    }

    #[inline]
    fn make(seg: &Segment, block: Block) -> Allocation {
        Allocation {
            block,
            ptr: seg.base + block.offset as u64,
            sym: if seg.sym_tag != 0 {
                SymRef::at(seg.sym_tag, block.offset)
            } else {
                None
            },
        }
    }

    #[inline]
    fn seg_of(st: &PoolState, block: &Block) -> Segment {
        st.segs[block.segment as usize].expect("arena returned a block of a released segment")
    }

    /// Allocate `bytes`, creating a segment if no cached block fits (eager path).
    #[inline(always)]
    pub(crate) fn alloc(&self, bytes: usize) -> Result<Allocation> {
        let mut st = self.lock();
        if let Some(a) = Self::take_cached(&mut st, bytes) {
            st.hits += 1;
            st.keepalive.on_alloc();
            return Ok(a);
        }
        self.alloc_slow(st, bytes)
    }

    /// A block from the quick cache or the arena, without flushing or growing.
    #[inline(always)]
    fn take_cached(st: &mut PoolState, bytes: usize) -> Option<Allocation> {
        let size = st.arena.checked_round_request(bytes)?;
        if let Some(a) = st.quick.take(size) {
            // Cached whole (address and window position included): no segment lookup.
            return Some(a);
        }
        let block = st.arena.try_alloc(size)?;
        let seg = Self::seg_of(st, &block);
        Some(Self::make(&seg, block))
    }

    /// Flush the quick cache into the arena and try again (no segment is created).
    fn take_after_flush(&self, st: &mut PoolState, bytes: usize) -> Option<Block> {
        if st.quick.is_empty() {
            return None;
        }
        st.quick.flush(&mut st.arena, &self.label);
        st.arena.try_alloc(bytes)
    }

    #[cold]
    fn alloc_slow<'a>(
        &'a self,
        mut st: OwnerGuard<'a, PoolState>,
        bytes: usize,
    ) -> Result<Allocation> {
        if let Some(block) = self.take_after_flush(&mut st, bytes) {
            st.hits += 1;
            st.keepalive.on_alloc();
            let seg = Self::seg_of(&st, &block);
            return Ok(Self::make(&seg, block));
        }
        st.misses += 1;
        let size = st.arena.segment_size_for(bytes);
        let (mut st, grown) = self.grow(st, size, bytes);
        grown?;
        let block = st
            .arena
            .try_alloc(bytes)
            .ok_or_else(|| Error::InvalidArgument {
                op: "alloc",
                detail: format!(
                    "internal: a fresh segment of {size} bytes could not serve {bytes} bytes"
                ),
            })?;
        st.keepalive.on_alloc();
        let seg = Self::seg_of(&st, &block);
        Ok(Self::make(&seg, block))
    }

    /// Allocate without creating segments (capture path). `Ok(None)` when nothing fits.
    pub(crate) fn alloc_cached(&self, bytes: usize) -> Option<Allocation> {
        let mut st = self.lock();
        let a = match Self::take_cached(&mut st, bytes) {
            Some(a) => a,
            None => {
                let block = self.take_after_flush(&mut st, bytes)?;
                let seg = Self::seg_of(&st, &block);
                Self::make(&seg, block)
            }
        };
        st.hits += 1;
        st.keepalive.on_alloc();
        Some(a)
    }

    /// Largest free block (what a capture can still get without a new segment).
    pub(crate) fn largest_free_block(&self) -> usize {
        let st = self.lock();
        st.arena.largest_free_block().max(st.quick.largest())
    }

    /// Create a segment of `size` bytes (`request` is the allocation that needs it, for errors).
    ///
    /// Takes the pool's lock and gives it back: a symmetric segment is a collective (every rank
    /// of the group creates it together, bounded by the timeout), and the lock is released
    /// while this rank waits for its peers, so that another thread returning one of this pool's
    /// blocks (a buffer dropped there) or reading its statistics does not wait for the whole
    /// creation, nor deadlock with a peer that waits for that thread.
    fn grow<'a>(
        &'a self,
        mut st: OwnerGuard<'a, PoolState>,
        size: usize,
        request: usize,
    ) -> (OwnerGuard<'a, PoolState>, Result<()>) {
        let r = self.grow_locked(&mut st, size, request);
        match r {
            Ok(Some(seg)) => {
                Self::add_segment(&mut st, seg);
                (st, Ok(()))
            }
            Ok(None) => {
                // Symmetric: create it without the lock, then add it.
                drop(st);
                let created = self.create_symmetric(size);
                let mut st = self.lock();
                match created {
                    Ok(seg) => {
                        Self::add_segment(&mut st, seg);
                        (st, Ok(()))
                    }
                    Err(e) => {
                        let e = self.oom(&st, request, e);
                        (st, Err(e))
                    }
                }
            }
            Err(e) => (st, Err(e)),
        }
    }

    /// The limit check and, for a device pool, the segment (`Ok(None)`: a symmetric pool, whose
    /// segment [`Pool::create_symmetric`] makes without the lock).
    fn grow_locked(
        &self,
        st: &mut PoolState,
        size: usize,
        request: usize,
    ) -> Result<Option<Segment>> {
        let reserved = st.arena.stats().reserved_bytes;
        if let Some(limit) = self.limit {
            // A sum beyond `usize` is beyond any limit (huge requests saturate their size).
            if !matches!(reserved.checked_add(size), Some(total) if total <= limit) {
                return Err(Error::PoolLimit {
                    pool: self.label.to_string(),
                    requested: request,
                    reserved,
                    limit,
                });
            }
        }
        let seg = match &self.source {
            Source::Device(dev) => {
                let mut r = dev.alloc_segment(size);
                if r.is_err() {
                    // Like PyTorch: give cached free segments back and try once more.
                    self.release_free(st);
                    r = dev.alloc_segment(size);
                }
                let base = r.map_err(|e| self.oom(st, request, e))?;
                crate::diag::segment("segment created", &self.label, size, None);
                Segment {
                    base,
                    size,
                    nccl_window: 0,
                    handle: 0,
                    sym_tag: 0,
                }
            }
            Source::Symmetric { .. } => return Ok(None),
        };
        Ok(Some(seg))
    }

    /// A new symmetric segment of `size` bytes (a collective; called without the pool's lock).
    ///
    /// The ranks always compare the creation first (bounded by the timeout), validation mode
    /// or not: ranks whose pools grow at different moments would otherwise deadlock in NCCL's
    /// registration (or, on the host backend, pair it with another collective).
    fn create_symmetric(&self, size: usize) -> Result<Segment> {
        let Source::Symmetric { comm, validator } = &self.source else {
            return Err(Error::InvalidArgument {
                op: "alloc",
                detail: "internal: a symmetric segment for a device pool".into(),
            });
        };
        validator.check_always(
            comm.as_ref(),
            "symmetric segment creation",
            &format!("create segment of {size} bytes"),
        )?;
        let s = comm.create_symmetric_segment(size)?;
        crate::diag::segment(
            if s.handle == 0 {
                "symmetric segment created (no window: plain path)"
            } else {
                "symmetric segment created and registered"
            },
            &self.label,
            s.size,
            Some(s.window),
        );
        Ok(Segment {
            base: s.base,
            size: s.size,
            nccl_window: s.window,
            handle: s.handle,
            sym_tag: self.sym_tag(&s),
        })
    }

    fn add_segment(st: &mut PoolState, seg: Segment) {
        let id = st.arena.add_segment(seg.size) as usize;
        if st.segs.len() <= id {
            st.segs.resize(id + 1, None);
        }
        st.segs[id] = Some(seg);
    }

    /// The tag of a new symmetric segment, 0 when its blocks must take the plain path.
    fn sym_tag(&self, s: &SymSegment) -> u64 {
        if s.handle == 0 {
            return 0;
        }
        match SymRef::window_tag(s.window) {
            Some(tag) if s.size <= SymRef::MAX_OFFSET + 1 => tag,
            _ => {
                crate::diag::warn(format_args!(
                    "pool `{}`: window {} of {} bytes is beyond what a symmetric reference can name (window <= {}, size <= 16 TiB); its buffers take the plain collective path",
                    self.label,
                    s.window,
                    s.size,
                    SymRef::MAX_WINDOW
                ));
                0
            }
        }
    }

    fn oom(&self, st: &PoolState, requested: usize, e: Error) -> Error {
        match e {
            e @ (Error::RankDivergence { .. } | Error::Timeout { .. } | Error::Aborted { .. }) => e,
            e => {
                let a = st.arena.stats();
                Error::OutOfMemory {
                    pool: self.label.to_string(),
                    requested,
                    reserved: a.reserved_bytes,
                    in_use: a.in_use_bytes,
                    source: Box::new(e),
                }
            }
        }
    }

    /// Make sure a free block of at least `bytes` exists, creating a segment if needed.
    pub(crate) fn reserve(&self, bytes: usize) -> Result<()> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let need = st.arena.round_request(bytes);
        if st.arena.largest_free_block().max(st.quick.largest()) >= need {
            return Ok(());
        }
        // Coalesced cached blocks may be enough (a capture's request flushes the same way).
        st.quick.flush(&mut st.arena, &self.label);
        if st.arena.largest_free_block() >= need {
            return Ok(());
        }
        let size = st.arena.segment_size_for(need).max(need);
        self.grow(guard, size, need).1
    }

    /// Return a block handed out by `alloc`/`alloc_cached`.
    ///
    /// Returns the pool's self-reference when this was the last block of a detached pool: the
    /// caller drops it *after* its borrow of the pool ends (that may free the pool).
    #[inline]
    #[must_use = "drop the returned reference after the borrow of the pool ends"]
    pub(crate) fn free(&self, a: Allocation) -> Option<Arc<Pool>> {
        let mut st = self.lock();
        let last = st.keepalive.on_free();
        let pinned = !st.pins.is_empty() && {
            match st.pins.get_mut(&a.block) {
                Some(p) => {
                    p.1 = Some(a);
                    true
                }
                None => false,
            }
        };
        if !pinned {
            Self::free_locked(&mut st, &self.label, a);
        }
        last
    }

    /// The owner (group or rank) is gone: the pool lives on only while blocks are out.
    #[must_use = "drop the returned reference after the borrow of the pool ends"]
    pub(crate) fn detach(&self) -> Option<Arc<Pool>> {
        self.lock().keepalive.detach()
    }

    /// Keep `block` out of the free list while a graph that recorded it lives.
    ///
    /// Returns a counted reference for the pin to hold (`None` cannot happen while the caller
    /// holds the block: a block out keeps the pool's self-reference).
    pub(crate) fn pin(&self, block: Block) -> Option<Arc<Pool>> {
        let mut st = self.lock();
        let me = st.keepalive.counted()?;
        st.pins.entry(block).or_insert((0, None)).0 += 1;
        Some(me)
    }

    /// Drop one pin of `block`; free it if its buffer is already gone.
    pub(crate) fn unpin(&self, block: Block) {
        let mut st = self.lock();
        let Some(p) = st.pins.get_mut(&block) else {
            return;
        };
        p.0 -= 1;
        if p.0 == 0 {
            let freed = p.1;
            st.pins.remove(&block);
            if let Some(a) = freed {
                Self::free_locked(&mut st, &self.label, a);
            }
        }
    }

    #[inline]
    fn free_locked(st: &mut PoolState, label: &str, a: Allocation) {
        let Err(a) = st.quick.put(a) else {
            return;
        };
        if let Err(e) = st.arena.free(a.block) {
            // Unreachable through the safe API (a buffer owns its block exactly once); report
            // instead of corrupting the arena.
            crate::diag::error(format_args!(
                "internal error returning a block to pool `{label}`: {e}"
            ));
        }
    }

    /// Release every segment that is entirely free. Returns the bytes released.
    pub(crate) fn empty_cache(&self) -> Result<usize> {
        let mut st = self.lock();
        // Freed blocks may still be in use by queued device work: wait for it first.
        self.stream.synchronize()?;
        Ok(self.release_free(&mut st))
    }

    fn release_free(&self, st: &mut PoolState) -> usize {
        st.quick.flush(&mut st.arena, &self.label);
        let mut released = 0;
        for (id, size) in st.arena.release_free_segments() {
            if let Some(seg) = st.segs.get_mut(id as usize).and_then(Option::take) {
                released += size;
                // SAFETY: the arena says no block of the segment is handed out, and callers
                // synchronised the stream.
                unsafe { self.destroy(&seg) };
            }
        }
        released
    }

    /// Give a segment back to its source.
    ///
    /// # Safety
    /// `seg` is one of this pool's segments, removed from `segs` (so destroyed once), with no
    /// block of it handed out and the stream synchronised (no queued work uses it).
    unsafe fn destroy(&self, seg: &Segment) {
        // SAFETY (both arms): the segment came from this source, and the caller's contract is
        // the source's: destroyed once, unused.
        crate::diag::segment(
            "segment released",
            &self.label,
            seg.size,
            matches!(self.source, Source::Symmetric { .. }).then_some(seg.nccl_window),
        );
        match &self.source {
            Source::Device(dev) => unsafe { dev.free_segment(seg.base, seg.size) },
            Source::Symmetric { comm, .. } => unsafe {
                comm.destroy_symmetric_segment(&SymSegment {
                    base: seg.base,
                    size: seg.size,
                    window: seg.nccl_window,
                    handle: seg.handle,
                })
            },
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        let st = self.state.get_mut();
        let segs: Vec<Segment> = st.segs.drain(..).flatten().collect();
        for seg in &segs {
            // SAFETY: every buffer holds the pool alive, so none is left; the stream is idle.
            unsafe { self.destroy(seg) };
        }
    }
}
