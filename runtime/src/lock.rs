//! The lock on the hot paths: a pool's state, and a communicator's handle.
//!
//! A pool or communicator is used by its rank's thread almost always; other threads touch it
//! only when a buffer or a group handle was sent to them, or to abort a communicator after a
//! timeout. The lock is therefore built for the uncontended case:
//! taking it is one compare-and-swap and releasing it is one store (`std::sync::Mutex` also
//! swaps on release, to learn whether to wake a waiter). Measured on the window + allocation +
//! free path, the two read-modify-write operations this saves per allocation are a large part of
//! its cost (`docs/benchmarks.md`).
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

// ---------------------------------------------------------------------------------------------
// The owner lock: no read-modify-write at all for the thread that owns the data.
// ---------------------------------------------------------------------------------------------

/// A token unique among the live threads of the process: the address of a thread-local.
#[inline]
pub(crate) fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Whether `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` works in this process (registered
/// once). Without it, both sides of the owner lock use full fences.
fn asymmetric() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(membarrier::register)
}

#[cfg(target_os = "linux")]
mod membarrier {
    const QUERY: libc::c_long = 0;
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn call(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier(cmd, flags = 0) has no pointer arguments.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
    }

    pub(super) fn register() -> bool {
        let supported = call(QUERY);
        supported >= 0
            && supported & PRIVATE_EXPEDITED != 0
            && call(REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// A full memory barrier on every running thread of this process.
    pub(super) fn heavy() -> bool {
        call(PRIVATE_EXPEDITED) == 0
    }
}

#[cfg(not(target_os = "linux"))]
mod membarrier {
    pub(super) fn register() -> bool {
        false
    }
    pub(super) fn heavy() -> bool {
        false
    }
}

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
    fn new_with_fences(data: T) -> Self {
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
            // A registered process cannot be refused it; a transient failure is retried.
            while !membarrier::heavy() {
                std::thread::yield_now();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_under_contention() {
        let l = Arc::new(FastLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        // A non-atomic read-modify-write: lost updates if exclusion failed.
                        let mut g = l.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), 80_000);
    }

    #[test]
    fn a_panic_releases_the_lock() {
        let l = FastLock::new(1u32);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = l.lock();
            panic!("inside");
        }));
        assert!(r.is_err());
        assert_eq!(*l.lock(), 1);
    }

    #[test]
    fn owner_and_other_threads_exclude_each_other() {
        owner_and_others_exclude(OwnerLock::new(0u64));
    }

    #[test]
    fn owner_and_other_threads_exclude_each_other_with_fences_only() {
        owner_and_others_exclude(OwnerLock::new_with_fences(0u64));
    }

    fn owner_and_others_exclude(l: OwnerLock<u64>) {
        // The owner (this thread) and three other threads do non-atomic read-modify-writes:
        // any lost update means two guards overlapped.
        let l = Arc::new(l);
        let others: Vec<_> = (0..3)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let mut g = l.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for _ in 0..200_000 {
            let mut g = l.lock();
            let v = *g;
            std::hint::black_box(&v);
            *g = v + 1;
        }
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), 206_000);
    }

    #[test]
    fn a_lock_made_elsewhere_is_foreign_here_and_a_panic_releases_it() {
        let l = std::thread::spawn(|| OwnerLock::new(5u32)).join().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = l.lock();
            panic!("inside");
        }));
        assert!(r.is_err());
        assert_eq!(*l.lock(), 5);
        let me = OwnerLock::new(1u8);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = me.lock();
            panic!("inside");
        }));
        assert!(r.is_err());
        assert_eq!(
            *me.lock(),
            1,
            "the owner's fast path is released by a panic too"
        );
    }
}
