//! Graph capture: record a closure's device work once, replay it many times.
//!
//! [`capture()`] records the work the closure puts on the current rank's stream (CUDA:
//! `cuStreamBeginCapture` in thread-local mode; host backend: the stream records closures)
//! and returns a [`Graph`]. While it runs:
//!
//! * allocations outside any window come from a **capture-private pool owned by the graph**
//!   (no "graph pool id" to manage by hand);
//! * entering a window for a group suspends that and routes to the group's symmetric pool in
//!   *capture mode*: blocks come only from capacity reserved before capture (no segment is
//!   created and no window registered during capture: that is a collective). A request the
//!   reserve cannot serve fails with [`Error::CaptureReserveExceeded`], which names the bytes to
//!   pass to [`crate::Group::reserve_symmetric`];
//! * the window's end resumes the capture-private routing.
//!
//! Every block allocated during capture belongs to the graph: freed inside the capture it is
//! reused only by later allocations of the same capture (stream order makes that safe, as in
//! PyTorch's private pools), and it returns to its pool only when the graph and every buffer
//! from it are gone. Because blocks are claimed by the pools' deterministic policy from the same
//! request sequence, a captured symmetric buffer sits at the same window offset on every rank.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::backend::GraphBackend;
use crate::buffer::Owner;
use crate::group::RankInner;
use crate::pool::arena::Block;
use crate::pool::{Allocation, Pool};
use crate::window::ROUTE;
use crate::{Error, Result};

/// The blocks a graph owns in one pool.
pub struct GraphArena {
    pool: Arc<Pool>,
    state: Mutex<ArenaState>,
}

struct ArenaState {
    owned: Vec<Allocation>,
    free: Vec<Allocation>,
    claimed_bytes: usize,
}

impl std::fmt::Debug for GraphArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphArena")
            .field("pool", &self.pool.label())
            .finish_non_exhaustive()
    }
}

impl GraphArena {
    fn new(pool: Arc<Pool>) -> Self {
        GraphArena {
            pool,
            state: Mutex::new(ArenaState {
                owned: Vec::new(),
                free: Vec::new(),
                claimed_bytes: 0,
            }),
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    fn alloc(&self, bytes: usize) -> Result<Allocation> {
        let need = self.pool.round_request(bytes);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Reuse a block freed earlier in this capture: smallest that fits, first on ties
        // (deterministic).
        let best = st
            .free
            .iter()
            .enumerate()
            .filter(|(_, a)| a.block.size >= need)
            .min_by_key(|(i, a)| (a.block.size, *i))
            .map(|(i, _)| i);
        if let Some(i) = best {
            return Ok(st.free.remove(i));
        }
        let a = if self.pool.is_symmetric() {
            self.pool
                .alloc_cached(need)
                .ok_or_else(|| Error::CaptureReserveExceeded {
                    group: self.pool.label_arc().clone(),
                    requested: need,
                    available: self.pool.largest_free_block(),
                    reserve: st.claimed_bytes + need,
                })?
        } else {
            self.pool.alloc(need)?
        };
        st.claimed_bytes += a.block.size;
        st.owned.push(a);
        Ok(a)
    }

    pub(crate) fn release(&self, block: Block) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = st.owned.iter().find(|a| a.block == block).copied() {
            st.free.push(a);
        }
    }

    /// Bytes this graph holds in the pool.
    pub fn claimed_bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .claimed_bytes
    }
}

impl Drop for GraphArena {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for a in st.owned.drain(..) {
            // The arena holds a counted reference: the pool outlives this call.
            drop(self.pool.free(a));
        }
    }
}

/// The state of the capture running on this thread (pointed to by the routing state).
pub(crate) struct CaptureState {
    rank: Rc<RankInner>,
    arenas: RefCell<Vec<Arc<GraphArena>>>,
    pins: RefCell<Vec<Pin>>,
}

/// Keeps a block that recorded work uses out of the free list while the graph lives.
pub(crate) enum Pin {
    /// An eager block: pinned in its pool.
    Block(Arc<Pool>, Block),
    /// A block of another graph: keep that graph's arena alive (held only for its lifetime).
    Arena(#[allow(dead_code)] Arc<GraphArena>),
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Pin::Block(pool, block) = self {
            pool.unpin(*block);
        }
    }
}

/// Record that work being captured on this thread uses the buffer `(owner, block)`, so the
/// graph keeps it reserved even if the buffer is dropped before the graph. Takes the block by
/// reference so that the launch path reads nothing of it unless capturing.
#[inline(always)]
pub(crate) fn record_use(owner: &Owner, block: &Block) {
    let cap = ROUTE.with(|r| r.capture.get());
    if !cap.is_null() {
        record_use_capturing(cap, owner, block);
    }
}

#[cold]
#[inline(never)]
fn record_use_capturing(cap: *const CaptureState, owner: &Owner, block: &Block) {
    // SAFETY: the capture state lives on `capture`'s stack frame while the pointer is set.
    let state = unsafe { &*cap };
    let block = *block;
    let pin = match owner {
        Owner::Pool(p) => match p.get().pin(block) {
            Some(pool) => Pin::Block(pool, block),
            // Unreachable: the buffer's block keeps the pool's self-reference.
            None => return,
        },
        Owner::Graph(a) => {
            if state.arenas.borrow().iter().any(|x| Arc::ptr_eq(x, a)) {
                return; // this graph's own block: its arena already holds it
            }
            Pin::Arena(a.clone())
        }
    };
    state.pins.borrow_mut().push(pin);
}

impl CaptureState {
    fn arena_for(&self, pool: *const Pool, make: impl FnOnce() -> Arc<Pool>) -> Arc<GraphArena> {
        let mut arenas = self.arenas.borrow_mut();
        if let Some(a) = arenas.iter().find(|a| Arc::as_ptr(&a.pool) == pool) {
            return a.clone();
        }
        let a = Arc::new(GraphArena::new(make()));
        arenas.push(a.clone());
        a
    }
}

/// Allocate during capture from `pool` (null: the capture-private default pool).
pub(crate) fn capture_alloc(
    state: &CaptureState,
    pool: *const Pool,
    bytes: usize,
) -> Result<(Allocation, Owner)> {
    let arena = if pool.is_null() {
        let default = Arc::as_ptr(state.rank.default_pool());
        state.arena_for(default, || state.rank.default_pool().clone())
    } else {
        // SAFETY: `pool` comes from a live routing target (kept alive by the rank context or the
        // borrowed group); we take a new strong reference for the arena.
        state.arena_for(pool, || unsafe {
            Arc::increment_strong_count(pool);
            Arc::from_raw(pool)
        })
    };
    let a = arena.alloc(bytes)?;
    Ok((a, Owner::Graph(arena)))
}

/// Whether the calling thread is capturing a graph.
#[inline]
pub fn is_capturing() -> bool {
    ROUTE.with(|r| !r.capture.get().is_null())
}

/// Refuse a host-blocking operation while capturing.
#[inline]
pub(crate) fn refuse_if_capturing_blocking(op: &'static str) -> Result<()> {
    if is_capturing() {
        Err(Error::blocking_in_capture(op))
    } else {
        Ok(())
    }
}

/// Refuse a collective set-up operation while capturing.
#[inline]
pub(crate) fn refuse_if_capturing_setup(op: &'static str) -> Result<()> {
    if is_capturing() {
        Err(Error::setup_in_capture(op))
    } else {
        Ok(())
    }
}

/// A captured graph: replay it with [`Graph::replay`]. It owns the blocks allocated during
/// capture, so buffers used by the recorded work stay valid while the graph lives.
pub struct Graph {
    exec: Box<dyn GraphBackend>,
    arenas: Vec<Arc<GraphArena>>,
    /// Eager blocks the recorded work uses (released after `exec` is dropped: field order).
    /// Held only for its `Drop`.
    #[allow(dead_code)]
    pins: Vec<Pin>,
    rank_id: u64,
    replays: u64,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("arenas", &self.arenas)
            .field("replays", &self.replays)
            .finish()
    }
}

impl Graph {
    /// Launch the recorded work once, on the stream it was captured on.
    ///
    /// Every rank of the groups used in the graph must replay it too (the recorded collectives
    /// wait for their peers).
    pub fn replay(&mut self) -> Result<()> {
        if is_capturing() {
            return Err(Error::NotAllowedDuringCapture {
                op: "Graph::replay",
                why: "replaying a graph inside another capture is not supported",
                fix: "replay the graph outside the capture closure",
            });
        }
        if let Some(rank) = crate::group::current_rank_id() {
            if rank != self.rank_id {
                return Err(Error::Graph(
                    "this graph was captured on another rank's stream; replay it on the rank (thread) that captured it".into(),
                ));
            }
        }
        self.exec.launch()?;
        self.replays += 1;
        Ok(())
    }

    /// How many times the graph was replayed.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Bytes the graph holds in each pool it allocated from, as `(pool label, bytes)`.
    pub fn memory(&self) -> Vec<(String, usize)> {
        self.arenas
            .iter()
            .map(|a| (a.pool.label().to_string(), a.claimed_bytes()))
            .collect()
    }
}

/// Clears the thread's capture pointer however the closure ends.
struct CaptureScope<'a>(&'a CaptureState);

impl Drop for CaptureScope<'_> {
    fn drop(&mut self) {
        ROUTE.with(|r| {
            if std::ptr::eq(r.capture.get(), self.0) {
                r.capture.set(std::ptr::null());
            }
        });
    }
}

/// Capture the device work of `f` on the current rank's stream into a [`Graph`].
///
/// Returns the graph and the closure's value (for example output buffers, which stay valid:
/// their blocks belong to the graph). If `f` fails or panics, the capture is aborted and
/// nothing is leaked: the blocks it allocated return to their pools.
///
/// Operations that block the host or set up collectives are refused inside `f` with
/// [`Error::NotAllowedDuringCapture`]. Call [`crate::Group::reserve_symmetric`] before capture for the
/// symmetric memory the closure will allocate.
pub fn capture<R>(f: impl FnOnce() -> Result<R>) -> Result<(Graph, R)> {
    if is_capturing() {
        return Err(Error::NotAllowedDuringCapture {
            op: "capture",
            why: "a capture is already running on this thread",
            fix: "finish the outer capture first; captures do not nest",
        });
    }
    let rank = crate::group::current_rank()?;
    let stream = rank.stream().clone();
    stream.synchronize()?;
    stream.begin_capture()?;
    let state = CaptureState {
        rank: rank.clone(),
        arenas: RefCell::new(Vec::new()),
        pins: RefCell::new(Vec::new()),
    };
    let result = {
        ROUTE.with(|r| r.capture.set(&state as *const CaptureState));
        let _scope = CaptureScope(&state);
        catch_unwind(AssertUnwindSafe(f))
    };
    let arenas = state.arenas.into_inner();
    let pins = state.pins.into_inner();
    match result {
        Err(panic) => {
            stream.abort_capture();
            drop(arenas);
            resume_unwind(panic)
        }
        Ok(Err(e)) => {
            stream.abort_capture();
            Err(e)
        }
        Ok(Ok(value)) => {
            let exec = stream.end_capture()?;
            Ok((
                Graph {
                    exec,
                    arenas,
                    pins,
                    rank_id: rank.id(),
                    replays: 0,
                },
                value,
            ))
        }
    }
}
