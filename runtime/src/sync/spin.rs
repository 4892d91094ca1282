//! The small spin lock ([`FastLock`]): one compare-and-swap to take, one store to release.
//!
//! (What follows is the rationale shared with the owner lock of `crate::sync::owner_lock`.)
//!
//! A pool or communicator is used by its rank's thread almost always; other threads touch it
//! only when a buffer or a group handle was sent to them, or to abort a communicator after a
//! timeout. The lock is therefore built for the uncontended case:
//! taking it is one compare-and-swap and releasing it is one store (`std::sync::Mutex` also
//! swaps on release, to learn whether to wake a waiter). Measured on the window + allocation +
//! free path, the two read-modify-write operations this saves per allocation are a large part of
//! its cost (`docs/history/benchmarks-log.md`, "From 68 ns to 37 ns: the allocator path").
//!
//! Under contention a waiter spins briefly, then yields its time slice until the lock is free:
//! critical sections are short (pool bookkeeping, or one NCCL enqueue; the rare long ones,
//! creating or releasing a segment and aborting a communicator, are already slow). A panic while the lock is held releases it
//! (the guard's drop runs during unwinding); every mutation of the state completes before any
//! code that can panic, so the state stays consistent.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A mutual-exclusion lock with a one-store release.
pub(crate) struct FastLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, and at most one guard exists at a time
// (acquire/release ordering on `locked` orders the accesses), exactly like `Mutex<T>`.
unsafe impl<T: Send> Send for FastLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for FastLock<T> {}

/// Exclusive access to a [`FastLock`]'s data; released on drop.
pub(crate) struct FastGuard<'a, T> {
    lock: &'a FastLock<T>,
}

impl<T> FastLock<T> {
    pub(crate) const fn new(data: T) -> Self {
        FastLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> FastGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        FastGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            // Wait for the lock to look free before trying again (no cache-line ping-pong).
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> Deref for FastGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for FastGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for FastGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
