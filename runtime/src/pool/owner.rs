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
}

impl Owner {
    /// The pool the block comes from.
    #[inline]
    pub(crate) fn pool(&self) -> &Pool {
        match self {
            Owner::Pool(p) => p.get(),
            Owner::Graph(a) => a.pool(),
        }
    }

    /// Give the block back (the buffer drops).
    #[inline]
    pub(crate) fn give_back(&self, a: Allocation) {
        match self {
            Owner::Pool(p) => p.free(a),
            Owner::Graph(g) => g.release(a.block),
        }
    }
}
