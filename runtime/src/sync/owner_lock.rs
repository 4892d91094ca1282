//! The owner lock ([`OwnerLock`]): no read-modify-write at all for the thread that owns the data.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sync::barrier::{asymmetric, heavy_barrier, thread_token};
use crate::sync::spin::{FastGuard, FastLock};

/// A lock whose *owner* thread (the rank thread that created the data) enters and leaves with
/// plain stores, and every other thread with a lock, a system call and a wait.
///
/// A pool or a communicator is used by its rank's thread on every allocation and launch; other
/// threads reach it only when a buffer or handle was sent to them (a buffer dropped elsewhere)
/// or to abort a communicator after a timeout. Even the one compare-and-swap of [`FastLock`]
/// costs 10 ns on the lent GPU hosts, twice per allocation, so the owner takes none:
///
/// * owner: `busy = true`; compiler barrier; if `foreign` is set, step back and queue like any
///   other thread; else enter. Leave: `busy = false` (release).
/// * other threads: take [`FastLock`] among themselves; `foreign = true`;
///   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`; wait until `busy` is false; enter. Leave:
///   `foreign = false` (release), release the lock.
///
/// This is Dekker's mutual exclusion with an asymmetric barrier: `membarrier` runs a full
/// barrier on every thread of the process, which pairs with the owner's compiler barrier the way
/// two full fences would, so the two threads cannot both miss each other's flag (the scheme of
/// Linux's `membarrier(2)` documentation, userspace RCU and Folly's asymmetric barriers). When
/// `membarrier` is unavailable (not Linux, or refused by a sandbox), both sides use
/// `fence(SeqCst)` instead: still correct, as costly as a compare-and-swap.
pub(crate) struct OwnerLock<T> {
    owner: usize,
    /// [`asymmetric`], read once at creation (kept next to `owner`, so the owner's path reads
    /// one cache line and no global).
    asym: bool,
    busy: AtomicBool,
    foreign: AtomicBool,
    others: FastLock<()>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, and the protocol above admits one guard at a
// time, with release/acquire edges between consecutive holders (owner: `busy`; others: `foreign`
// and `others`).
unsafe impl<T: Send> Send for OwnerLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for OwnerLock<T> {}

/// Exclusive access to an [`OwnerLock`]'s data; released on drop.
pub(crate) struct OwnerGuard<'a, T> {
    lock: &'a OwnerLock<T>,
    /// `Some` on the path of other threads (holds their lock).
    others: Option<FastGuard<'a, ()>>,
}

impl<T> OwnerLock<T> {
    /// A lock owned by the calling thread.
    pub(crate) fn new(data: T) -> Self {
        OwnerLock {
            owner: thread_token(),
            asym: asymmetric(),
            busy: AtomicBool::new(false),
            foreign: AtomicBool::new(false),
            others: FastLock::new(()),
            data: UnsafeCell::new(data),
        }
    }

    /// The owner's way in: `busy`, barrier, and no other thread inside or entering. False for
    /// other threads, and for the owner when another thread holds the lock or is about to.
    #[inline(always)]
    fn owner_enter(&self) -> bool {
        if self.owner != thread_token() {
            return false;
        }
        self.busy.store(true, Ordering::Relaxed);
        if self.asym {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        if !self.foreign.load(Ordering::Acquire) {
            return true;
        }
        // Another thread holds the data or is about to: step back and queue.
        self.busy.store(false, Ordering::Release);
        false
    }

    #[inline]
    pub(crate) fn lock(&self) -> OwnerGuard<'_, T> {
        if self.owner_enter() {
            return OwnerGuard {
                lock: self,
                others: None,
            };
        }
        self.lock_other()
    }

    /// A lock owned by the calling thread that uses full fences on both sides, as when
    /// `membarrier` is unavailable (to test that path everywhere).
    #[cfg(test)]
    pub(crate) fn new_with_fences(data: T) -> Self {
        OwnerLock {
            asym: false,
            ..OwnerLock::new(data)
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_other(&self) -> OwnerGuard<'_, T> {
        let others = self.others.lock();
        self.foreign.store(true, Ordering::Relaxed);
        if self.asym {
            // The owner relies on this barrier (it has only a compiler barrier): it must run.
            // `membarrier` is retried a bounded number of times, then replaced by the
            // `mprotect` barrier; only if both fail (no known system) is it reported, and
            // retried, since entering without it could race the owner.
            let mut reported = false;
            while !heavy_barrier() {
                if !reported {
                    reported = true;
                    crate::diag::warn(format_args!("neither membarrier(2) nor the mprotect fallback works in this process any more; a thread other than a pool's owner waits for one of them to succeed (check for a seccomp filter installed after start-up)"));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        let mut spins = 0u32;
        while self.busy.load(Ordering::Acquire) {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        OwnerGuard {
            lock: self,
            others: Some(others),
        }
    }

    /// The data, through exclusive access to the lock itself (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T> Deref for OwnerGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for OwnerGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for OwnerGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.others.is_none() {
            self.lock.busy.store(false, Ordering::Release);
        } else {
            self.lock.foreign.store(false, Ordering::Release);
            // `others` (the lock among other threads) is released after this.
        }
    }
}
