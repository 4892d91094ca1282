//! The two handles of a pool: its owner's ([`PoolOwner`]) and a buffer's ([`PoolRef`]).
//!
//! See `crate::pool::lifetime` for why a buffer's handle is uncounted.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::pool::allocation::Allocation;
use crate::pool::Pool;

/// The owning handle of a pool, held by its group (symmetric pool) or rank (default pool).
///
/// A pool holds a reference to itself until its owner is gone *and* every block it handed out
/// is back, so buffers need no reference count of their own (one atomic increment and one
/// decrement fewer per allocation): they point at the pool with a [`PoolRef`].
pub(crate) struct PoolOwner(Arc<Pool>);

impl PoolOwner {
    /// Take ownership of a pool made by [`Pool::new_self_held`].
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        PoolOwner(pool)
    }
}

impl std::ops::Deref for PoolOwner {
    type Target = Arc<Pool>;
    #[inline]
    fn deref(&self) -> &Arc<Pool> {
        &self.0
    }
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        let keepalive = self.0.detach();
        drop(keepalive);
    }
}

/// An uncounted pointer to a pool, held by a buffer together with one of the pool's blocks;
/// the block keeps the pool alive (see [`PoolOwner`]).
#[derive(Clone, Copy)]
pub(crate) struct PoolRef(NonNull<Pool>);

// SAFETY: `Pool` is `Send + Sync`; a `PoolRef` is only a shared reference whose lifetime is
// guaranteed by the block it travels with.
unsafe impl Send for PoolRef {}
// SAFETY: as above.
unsafe impl Sync for PoolRef {}

impl PoolRef {
    /// The one constructor.
    ///
    /// # Safety
    /// `pool` is live and the caller holds a block it handed out (counted by the pool's
    /// `KeepAlive`), which it gives back only through [`PoolRef::free`].
    #[inline]
    pub(crate) unsafe fn new(pool: *const Pool) -> Self {
        // SAFETY: a live pool's address is not null (the caller's contract).
        PoolRef(unsafe { NonNull::new_unchecked(pool as *mut Pool) })
    }

    #[inline]
    pub(crate) fn get(&self) -> &Pool {
        // SAFETY: the block held with this reference keeps the pool alive (`new`'s contract).
        unsafe { self.0.as_ref() }
    }

    /// Give the block back. Consumes the reference: the pool may be freed by this call.
    #[inline]
    pub(crate) fn free(self, a: Allocation) {
        let last = self.get().free(a);
        // The borrow of the pool has ended; dropping the self-reference may free it.
        drop(last);
    }
}
