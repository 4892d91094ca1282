//! Tests of the two locks.
use crate::sync::owner_lock::OwnerLock;
use crate::sync::spin::FastLock;
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

/// A failing `membarrier` is retried a bounded number of times, then the fallback runs.
#[test]
fn heavy_barrier_falls_back_after_bounded_retries() {
    use crate::sync::barrier::{heavy_barrier_with, HEAVY_RETRIES};
    use std::cell::Cell;
    let tries = Cell::new(0u32);
    let fell_back = Cell::new(false);
    assert!(heavy_barrier_with(
        || {
            tries.set(tries.get() + 1);
            false
        },
        || {
            fell_back.set(true);
            true
        }
    ));
    assert_eq!(tries.get(), HEAVY_RETRIES);
    assert!(fell_back.get());
    // The real fallback works here (Linux).
    #[cfg(target_os = "linux")]
    assert!(crate::sync::barrier::membarrier::heavy_by_mprotect());
}
