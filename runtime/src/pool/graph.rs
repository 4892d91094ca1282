//! The blocks of the capture in progress on a thread: which graph arenas it allocates from, and
//! which eager blocks its recorded work uses (pins).
//!
//! `crate::capture` creates a [`CaptureBlocks`] on its stack frame and points the thread state
//! at it for the length of the capture; allocation ([`capture_alloc`]) and every operation that
//! records work on a buffer ([`record_use`]) find it there. When the capture ends the arenas and
//! pins move into the `Graph`, which keeps them until it drops.

use std::cell::RefCell;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pool::allocation::Allocation;
use crate::pool::arena::Block;
use crate::pool::graph_arena::GraphArena;
use crate::pool::owner::Owner;
use crate::pool::Pool;
use crate::thread::capture_ptr;

/// The blocks of one capture in progress (pointed to by the thread state while it runs).
pub(crate) struct CaptureBlocks {
    /// The rank's default pool: where allocations outside windows go during capture.
    default_pool: Arc<Pool>,
    arenas: RefCell<Vec<Arc<GraphArena>>>,
    pins: RefCell<Vec<KeptBlock>>,
    /// The first symmetric pool whose reserve a request of this capture exceeded, and what the
    /// capture asked of it beyond the reserve (see [`capture_alloc`]).
    shortfall: RefCell<Option<Shortfall>>,
}

/// Symmetric requests of a capture that the reserve could not serve.
struct Shortfall {
    pool: *const Pool,
    group: Arc<str>,
    /// The first request that did not fit, and the largest free block then.
    requested: usize,
    available: usize,
    /// Bytes of the requests served by stand-ins.
    beyond: usize,
}

/// Keeps a block that recorded work uses out of the free list while the graph lives.
pub(crate) enum KeptBlock {
    /// An eager block: pinned in its pool.
    Pinned(Arc<Pool>, Block),
    /// A block of another graph: keep that graph's arena alive (held only for its lifetime).
    OtherGraph(#[allow(dead_code)] Arc<GraphArena>),
    /// Foreign memory (a caller's `CudaSlice`): keep it alive (held only for its lifetime).
    Foreign(#[allow(dead_code)] Arc<crate::pool::owner::Foreign>),
}

impl Drop for KeptBlock {
    fn drop(&mut self) {
        if let KeptBlock::Pinned(pool, block) = self {
            pool.unpin(*block);
        }
    }
}

impl CaptureBlocks {
    /// The blocks of a new capture on a rank whose default pool is `default_pool`.
    pub(crate) fn new(default_pool: Arc<Pool>) -> Self {
        CaptureBlocks {
            default_pool,
            arenas: RefCell::new(Vec::new()),
            pins: RefCell::new(Vec::new()),
            shortfall: RefCell::new(None),
        }
    }

    /// `Error::CaptureReserveExceeded` for the whole capture, if a symmetric request did not
    /// fit its reserve: its `reserve` is what this capture claimed from the pool plus every
    /// request served by a stand-in, so reserving it makes the same capture succeed on the next
    /// try (it may exceed the peak when blocks are freed and reused inside the capture).
    pub(crate) fn shortfall(&self) -> Option<Error> {
        let s = self.shortfall.borrow();
        let s = s.as_ref()?;
        let claimed = self
            .arenas
            .borrow()
            .iter()
            .find(|a| a.is_for(s.pool))
            .map_or(0, |a| a.claimed_bytes());
        Some(Error::CaptureReserveExceeded {
            group: s.group.clone(),
            requested: s.requested,
            available: s.available,
            reserve: claimed.saturating_add(s.beyond),
        })
    }

    /// The arenas and pins, for the graph (or to drop when the capture fails).
    pub(crate) fn into_parts(self) -> (Vec<Arc<GraphArena>>, Vec<KeptBlock>) {
        (self.arenas.into_inner(), self.pins.into_inner())
    }

    fn arena_for(&self, pool: *const Pool, make: impl FnOnce() -> Arc<Pool>) -> Arc<GraphArena> {
        let mut arenas = self.arenas.borrow_mut();
        if let Some(a) = arenas.iter().find(|a| a.is_for(pool)) {
            return a.clone();
        }
        let a = Arc::new(GraphArena::new(make()));
        arenas.push(a.clone());
        a
    }
}

/// Record that work being captured on this thread uses the buffer `(owner, block)`, so the
/// graph keeps it reserved even if the buffer is dropped before the graph. Takes the block by
/// reference so that the launch path reads nothing of it unless capturing.
#[inline(always)]
pub(crate) fn record_use(owner: &Owner, block: &Block) {
    let cap = capture_ptr();
    if !cap.is_null() {
        record_use_capturing(cap as *const CaptureBlocks, owner, block);
    }
}

#[cold]
#[inline(never)]
fn record_use_capturing(cap: *const CaptureBlocks, owner: &Owner, block: &Block) {
    // SAFETY: the thread's capture pointer is only ever set (by `crate::capture::capture`) to a
    // `CaptureBlocks` on its stack frame, and cleared before that frame ends (a scope guard, so
    // also on panic). This thread is inside that frame.
    let state = unsafe { &*cap };
    let block = *block;
    let pin = match owner {
        Owner::Pool(p) => match p.get().pin(block) {
            Some(pool) => KeptBlock::Pinned(pool, block),
            // Unreachable: the buffer's block keeps the pool's self-reference.
            None => return,
        },
        Owner::Graph(a) => {
            if state.arenas.borrow().iter().any(|x| Arc::ptr_eq(x, a)) {
                return; // this graph's own block: its arena already holds it
            }
            KeptBlock::OtherGraph(a.clone())
        }
        Owner::Foreign(f) => KeptBlock::Foreign(f.clone()),
    };
    state.pins.borrow_mut().push(pin);
}

/// Allocate during capture from `pool` (null: the capture-private default pool).
///
/// # Safety
/// `cap` is this thread's capture pointer (non-null), and `pool` is null or a pool kept alive
/// by a live routing target (the rank context's group table, or the group a live guard borrows).
pub(crate) unsafe fn capture_alloc(
    cap: *const (),
    pool: *const Pool,
    bytes: usize,
) -> Result<(Allocation, Owner)> {
    // SAFETY: see `record_use_capturing`; the caller read `cap` from this thread's state.
    let state = unsafe { &*(cap as *const CaptureBlocks) };
    let arena = if pool.is_null() {
        let default = Arc::as_ptr(&state.default_pool);
        state.arena_for(default, || state.default_pool.clone())
    } else {
        // SAFETY: the caller's contract keeps `pool` alive; we take a new strong reference for
        // the arena (every pool lives in an `Arc`).
        state.arena_for(pool, || unsafe {
            Arc::increment_strong_count(pool);
            Arc::from_raw(pool)
        })
    };
    match arena.alloc(bytes) {
        Ok(a) => Ok((a, Owner::Graph(arena))),
        Err(Error::CaptureReserveExceeded {
            group,
            requested,
            available,
            ..
        }) => {
            // The reserve is too small. Rather than fail now, knowing only this request, note
            // it and serve it from the capture's private (plain) pool, so that the capture runs
            // to its end and `capture` reports what the whole capture needs (the graph is not
            // kept: a capture with a shortfall always fails).
            {
                let mut s = state.shortfall.borrow_mut();
                match s.as_mut() {
                    Some(s) if std::ptr::eq(s.pool, pool) => {
                        s.beyond = s.beyond.saturating_add(requested)
                    }
                    Some(_) => {}
                    None => {
                        *s = Some(Shortfall {
                            pool,
                            group,
                            requested,
                            available,
                            beyond: requested,
                        })
                    }
                }
            }
            let default = Arc::as_ptr(&state.default_pool);
            let stand_in = state.arena_for(default, || state.default_pool.clone());
            let a = stand_in.alloc(bytes)?;
            Ok((a, Owner::Graph(stand_in)))
        }
        Err(e) => Err(e),
    }
}
