//! The pool's reference to itself: who keeps a pool alive while its blocks are out.
//!
//! A pool is owned by its group (symmetric pool) or rank (default pool), and every buffer carved
//! from it points at it. Instead of one reference count per buffer (two atomics per
//! allocation and free), the pool holds an `Arc` to itself while its owner lives *or* any block
//! is out, and buffers point at it with an uncounted `PoolRef` (`crate::pool::handle`). This
//! file holds the counting that makes that sound; it is generic so it has no knowledge of the
//! pool it keeps alive.
//!
//! What must stay true: every block handed out is counted once by [`KeepAlive::on_alloc`] and
//! uncounted once by [`KeepAlive::on_free`]; the self-reference is dropped only when the owner
//! has detached *and* the count is zero, and the caller drops it after its borrow of the pool
//! ends (the returned `Arc` may be the last one).

use std::sync::Arc;

/// The live-block count and self-reference of a shared object (a pool).
pub(crate) struct KeepAlive<T> {
    /// Blocks handed out and not yet given back.
    live: usize,
    /// The object's reference to itself, held while its owner lives or any block is out.
    me: Option<Arc<T>>,
    /// The owner is gone: drop `me` when the last block comes back.
    detached: bool,
}

impl<T> KeepAlive<T> {
    /// No self-reference yet: [`KeepAlive::hold`] sets it once the `Arc` exists.
    pub(crate) const fn new() -> Self {
        KeepAlive {
            live: 0,
            me: None,
            detached: false,
        }
    }

    /// Store the object's reference to itself (once, right after creation).
    pub(crate) fn hold(&mut self, me: Arc<T>) {
        debug_assert!(self.me.is_none() && !self.detached);
        self.me = Some(me);
    }

    /// A block was handed out.
    #[inline(always)]
    pub(crate) fn on_alloc(&mut self) {
        self.live += 1;
    }

    /// A block came back. Returns the self-reference when it was the last block of a detached
    /// object: drop it after the borrow of the object ends.
    #[inline(always)]
    #[must_use = "drop the returned reference after the borrow of the pool ends"]
    pub(crate) fn on_free(&mut self) -> Option<Arc<T>> {
        debug_assert!(self.live > 0, "a block was returned twice");
        self.live -= 1;
        if self.detached && self.live == 0 {
            return self.me.take();
        }
        None
    }

    /// The owner is gone: the object lives on only while blocks are out.
    #[must_use = "drop the returned reference after the borrow of the pool ends"]
    pub(crate) fn detach(&mut self) -> Option<Arc<T>> {
        self.detached = true;
        if self.live == 0 {
            return self.me.take();
        }
        None
    }

    /// A counted reference to the object while it is kept alive (`None` once it is not).
    pub(crate) fn counted(&self) -> Option<Arc<T>> {
        self.me.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_reference_goes_with_the_last_block_after_detach() {
        let obj = Arc::new(5u32);
        let mut k = KeepAlive::new();
        k.hold(obj.clone());
        k.on_alloc();
        k.on_alloc();
        assert!(k.detach().is_none(), "blocks are out: stays alive");
        assert!(k.on_free().is_none());
        let last = k
            .on_free()
            .expect("the last block releases the self-reference");
        assert!(Arc::ptr_eq(&last, &obj));
        assert!(k.counted().is_none());
    }

    #[test]
    fn detach_with_nothing_out_releases_at_once() {
        let mut k = KeepAlive::new();
        k.hold(Arc::new(()));
        k.on_alloc();
        assert!(k.on_free().is_none(), "owner still there");
        assert!(k.detach().is_some());
    }
}
