//! Who gets a buffer's block back when it drops: its pool, or the graph that owns it.

use std::sync::Arc;

use crate::pool::allocation::Allocation;
use crate::pool::graph_arena::GraphArena;
use crate::pool::handle::PoolRef;
use crate::pool::Pool;

/// Who gets a buffer's block back when it drops.
pub(crate) enum Owner {
    /// An eager block: back to its pool's free list. The block keeps the pool alive.
    Pool(PoolRef),
    /// A block allocated while capturing: it belongs to the graph, which keeps it reserved for
    /// its whole lifetime.
    Graph(Arc<GraphArena>),
    /// Memory symmem did not allocate (a caller's `CudaSlice`), held until the buffer and every
    /// graph that recorded it are gone; the pool is the rank's default pool (for its stream
    /// and rank), to which nothing is given back.
    // Only the CUDA backend wraps foreign memory.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Foreign(Arc<Foreign>),
}

/// What a buffer over foreign memory holds: the memory's owner (dropped, and so freed by its
/// own rules, when the last holder goes) and the rank's default pool.
pub(crate) struct Foreign {
    pub(crate) pool: Arc<Pool>,
    /// Held only to be dropped (which frees the memory by its owner's rules); `None` once
    /// handed to the stream in `drop`.
    pub(crate) memory: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Drop for Foreign {
    /// The memory's drop queues stream work (cudarc: `cuMemFreeAsync` on the rank's stream).
    /// If the last holder goes while that stream captures (a buffer dropped inside the
    /// capture, or on another thread meanwhile), that work would be recorded into the graph
    /// and run at every replay: the stream drops it once the capture has ended instead.
    fn drop(&mut self) {
        if let Some(m) = self.memory.take() {
            self.pool.stream().drop_outside_capture(m);
        }
    }
}

impl Owner {
    /// The pool the block comes from.
    #[inline]
    pub(crate) fn pool(&self) -> &Pool {
        match self {
            Owner::Pool(p) => p.get(),
            Owner::Graph(a) => a.pool(),
            Owner::Foreign(f) => &f.pool,
        }
    }

    /// Give the block back (the buffer drops).
    #[inline]
    pub(crate) fn give_back(&self, a: Allocation) {
        match self {
            Owner::Pool(p) => p.free(a),
            Owner::Graph(g) => g.release(a.block),
            // The memory goes with the last `Arc` (the buffer's, or a graph's that recorded it).
            Owner::Foreign(_) => {}
        }
    }
}
