//! The blocks a captured graph owns in one pool (PyTorch's "private pool" of a graph).
//!
//! Every block allocated while a graph is captured belongs to the graph: freed inside the
//! capture it is reused only by later allocations of the same capture (stream order makes that
//! safe), and it returns to its pool only when the graph and every buffer from it are gone.
//! Because blocks are claimed by the pools' deterministic policy from the same request sequence,
//! a captured symmetric buffer sits at the same window offset on every rank.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pool::allocation::Allocation;
use crate::pool::arena::Block;
use crate::pool::Pool;

/// The blocks a graph owns in one pool.
pub struct GraphArena {
    pool: Arc<Pool>,
    state: Mutex<ArenaState>,
}

struct ArenaState {
    /// Every block the graph claimed from the pool (returned when the arena drops).
    owned: Vec<Allocation>,
    /// Owned blocks whose buffers dropped during the capture: reusable by later requests of it.
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
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
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

    /// Whether this arena's blocks come from `pool`.
    pub(crate) fn is_for(&self, pool: *const Pool) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.pool), pool)
    }

    /// A block of at least `bytes` for the capture: one freed earlier in it, or a new one from
    /// the pool (for a symmetric pool only from capacity reserved before capture).
    pub(crate) fn alloc(&self, bytes: usize) -> Result<Allocation> {
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
                    // What is known when the capture fails: its claims from this pool and
                    // this request. One free block of that size gets the same capture past
                    // this request (its earlier claims repeat, in order, and fit beside it);
                    // later requests are unknown. Saturating: a request of nearly `usize::MAX`
                    // is reported, not an overflow.
                    reserve: st.claimed_bytes.saturating_add(need),
                })?
        } else {
            self.pool.alloc(need)?
        };
        st.claimed_bytes += a.block.size;
        st.owned.push(a);
        Ok(a)
    }

    /// A buffer of the graph dropped: its block may serve later requests of the capture.
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

    /// The pool's label (for `Graph::memory`).
    pub(crate) fn pool_label(&self) -> &str {
        self.pool.label()
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
