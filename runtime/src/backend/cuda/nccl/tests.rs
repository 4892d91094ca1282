//! Departures on the CUDA backend, without a GPU: the launch lines of several ranks' communicators
//! in one registry, with stand-in NCCL entry points (no NCCL call is made: no line here reaches
//! the abort branch, which calls `ncclCommAbort`).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::cuda::nccl_api::sys as nccl;

use super::abort::AbortRegistry;
use super::core::{departure_step, AvgOps, CommLaunchLine, DepartureStep, NcclFns, RawComm};
use crate::backend::cuda::device::AbortNote;
use crate::error::Error;
use crate::sync::owner_lock::OwnerLock;

/// A stand-in NCCL entry point: returns `ncclSuccess` and touches nothing.
///
/// # Safety
/// None needed: it ignores its arguments (the type is `unsafe` to match NCCL's table).
unsafe extern "C" fn no_reduce(
    _: *const c_void,
    _: *mut c_void,
    _: usize,
    _: c_int,
    _: c_int,
    _: nccl::ncclComm_t,
    _: nccl::cudaStream_t,
) -> c_int {
    0
}
/// A stand-in NCCL entry point: returns `ncclSuccess` and touches nothing.
///
/// # Safety
/// None needed: it ignores its arguments (the type is `unsafe` to match NCCL's table).
unsafe extern "C" fn no_gather(
    _: *const c_void,
    _: *mut c_void,
    _: usize,
    _: c_int,
    _: nccl::ncclComm_t,
    _: nccl::cudaStream_t,
) -> c_int {
    0
}
/// A stand-in NCCL entry point: returns `ncclSuccess` and touches nothing.
///
/// # Safety
/// None needed: it ignores its arguments (the type is `unsafe` to match NCCL's table).
unsafe extern "C" fn no_broadcast(
    _: *const c_void,
    _: *mut c_void,
    _: usize,
    _: c_int,
    _: c_int,
    _: nccl::ncclComm_t,
    _: nccl::cudaStream_t,
) -> c_int {
    0
}

/// One rank's line of group `key`, owned by world rank `owner`, registered in `reg`. Its handle
/// is a dangling stand-in: the calls below never pass it to NCCL.
fn line(reg: &AbortRegistry, key: &str, owner: usize) -> Arc<CommLaunchLine> {
    let l = Arc::new(CommLaunchLine {
        raw: OwnerLock::new(RawComm::new(
            std::ptr::NonNull::<nccl::ncclComm>::dangling().as_ptr(),
        )),
        cu_stream: std::ptr::null_mut(),
        fns: NcclFns {
            all_reduce: no_reduce,
            reduce_scatter: no_reduce,
            all_gather: no_gather,
            broadcast: no_broadcast,
        },
        avg_ops: AvgOps([5, 6, 7, 8]),
        name: Mutex::new(Arc::from(key)),
        key: Arc::from(key),
        owner,
        departure: Mutex::new(None),
        abort_cause: Mutex::new(None),
        aborts: Arc::new(AbortNote::default()),
    });
    reg.register(&l);
    l
}

/// `n` collective calls on `l`; how many reached NCCL, and the first error.
fn calls(l: &CommLaunchLine, n: usize) -> (usize, Option<Error>) {
    let made = AtomicUsize::new(0);
    for _ in 0..n {
        if let Err(e) = l.with_comm("ncclAllReduce", |_| {
            made.fetch_add(1, Ordering::Relaxed);
            0
        }) {
            return (made.load(Ordering::Relaxed), Some(e));
        }
    }
    (made.load(Ordering::Relaxed), None)
}

/// All `n` calls went through.
fn assert_ok(got: (usize, Option<Error>), n: usize) {
    assert!(got.1.is_none(), "{:?}", got.1);
    assert_eq!(got.0, n);
}

#[test]
fn calls_a_departed_member_never_joins_fail_at_once() {
    let reg = AbortRegistry::default();
    let w0 = line(&reg, "world", 0);
    let w1 = line(&reg, "world", 1);
    let w2 = line(&reg, "world", 2);
    // A split of ranks 1 and 2 (rank 0 is not in it).
    let s1 = line(&reg, "world/0:1", 1);
    let s2 = line(&reg, "world/0:1", 2);
    for l in [&w0, &w1, &w2, &s1, &s2] {
        assert_ok(calls(l, 2), 2);
    }
    reg.depart(0, "rank 0 returned from its closure");
    // The world's next call would wait for rank 0 forever: refused, never sent to NCCL.
    for l in [&w1, &w2] {
        let (made, err) = calls(l, 1);
        assert_eq!(made, 0);
        let msg = err.expect("refused").to_string();
        assert!(
            msg.contains("rank 0 returned from its closure")
                && msg.contains("after 2 collective call(s)")
                && msg.contains("number 3")
                && msg.contains("never join"),
            "{msg}"
        );
    }
    // The group without rank 0 is unaffected.
    assert_ok(calls(&s1, 3), 3);
    assert_ok(calls(&s2, 3), 3);
    // Deregistration in a teardown is matched by the departed rank's own teardown: never refused.
    assert!(w1
        .with_comm_uncounted("ncclCommWindowDeregister", |_| 0)
        .is_ok());
    // The departed rank's own line is not limited by its own departure.
    assert_eq!(w0.lock().limit, u64::MAX);
}

#[test]
fn a_member_that_left_before_any_call_refuses_the_first() {
    let reg = AbortRegistry::default();
    let _a = line(&reg, "world", 0);
    let b = line(&reg, "world", 1);
    reg.depart(0, "rank 0 returned from its closure");
    let (made, err) = calls(&b, 1);
    assert_eq!(made, 0);
    assert!(matches!(err, Some(Error::Aborted { .. })), "{err:?}");
}

#[test]
fn the_earliest_departure_sets_the_limit() {
    let reg = AbortRegistry::default();
    let a = line(&reg, "world", 0);
    let b = line(&reg, "world", 1);
    let c = line(&reg, "world", 2);
    calls(&a, 1);
    calls(&b, 1);
    calls(&c, 1);
    reg.depart(0, "rank 0 returned from its closure");
    calls(&b, 0);
    // Rank 1 cannot make more calls than rank 0 did; a later departure of rank 1 (after its 1
    // call) leaves rank 2's limit at 1 and its first cause in place.
    reg.depart(1, "rank 1 returned from its closure");
    let msg = calls(&c, 1).1.expect("refused").to_string();
    assert!(msg.contains("rank 0 returned"), "{msg}");
    assert_eq!(c.lock().limit, 1);
}

#[test]
fn split_keys_of_two_splits_with_one_color_differ() {
    // Two splits of the world with the same color are two groups: a departure from the first
    // must not limit the second (the keys carry the split's number on the parent).
    let reg = AbortRegistry::default();
    let first0 = line(&reg, "world/0:0", 0);
    let first1 = line(&reg, "world/0:0", 1);
    let second1 = line(&reg, "world/1:0", 1);
    calls(&first0, 1);
    calls(&first1, 1);
    // Rank 0 is in `first` only (say its color for the second split was another one).
    reg.depart(0, "rank 0 returned from its closure");
    assert!(calls(&first1, 1).1.is_some());
    assert_ok(calls(&second1, 4), 4);
}

#[test]
fn departure_steps() {
    // A queued call the member never made: abort.
    assert_eq!(departure_step(3, u64::MAX, 2), DepartureStep::Abort);
    // Every queued call was matched: limit.
    assert_eq!(departure_step(2, u64::MAX, 2), DepartureStep::Limit);
    assert_eq!(departure_step(0, u64::MAX, 0), DepartureStep::Limit);
    // A lower limit from an earlier departure stays.
    assert_eq!(departure_step(1, 1, 5), DepartureStep::Nothing);
    assert_eq!(departure_step(1, 5, 1), DepartureStep::Limit);
}

#[test]
fn an_abort_note_is_reported_once() {
    let note = AbortNote::default();
    assert!(note.take().is_ok());
    note.note("tp", "rank 1 panicked");
    note.note("world", "a second cause");
    let msg = note.take().unwrap_err().to_string();
    assert!(
        msg.contains("tp") && msg.contains("rank 1 panicked") && msg.contains("not valid"),
        "{msg}"
    );
    assert!(note.take().is_ok());
}
