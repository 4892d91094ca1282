//! What careless or hostile safe code does to the runtime, and what it must see instead of a
//! crash, a hang or a wrong result (issue 12, sections 1 and 2).
//!
//! Every case that could crash (a use after free, an out-of-bounds read) or hang runs in a child
//! process (this test binary, re-run with `SYMMEM_MISUSE_CHILD=<case>`) under a time limit: a
//! regression is a failing test with the child's output, never a stuck CI run.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use symmem::{Error, ReduceOp};
use symmem_runtime as symmem;

use common::config;

/// The environment variable that names the case a child process runs.
const CHILD: &str = "SYMMEM_MISUSE_CHILD";

/// Run `case` in a child process; fail the test if it crashes, hangs past `limit` or does not
/// print `case ok`.
fn in_child(case: &str, limit: Duration) {
    let exe = std::env::current_exe().expect("test executable");
    let mut child = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    match status {
        None => panic!("case `{case}` hung (killed after {limit:?}):\n{out}\n{err}"),
        Some(s) => assert!(
            s.success() && out.contains(&format!("{case} ok")),
            "case `{case}` failed ({s}):\n{out}\n{err}"
        ),
    }
}

/// The child's side: runs the case named in the environment, if any.
#[test]
fn child_entry() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    match case.as_str() {
        "timeout_during_large_broadcast" => timeout_during_large_broadcast(),
        "panic_during_reduction" => panic_during_reduction(),
        "divergent_collectives" => divergent_collectives(),
        "divergent_counts" => divergent_counts(),
        "segment_creation_on_one_rank" => segment_creation_on_one_rank(),
        "two_threads_one_rank" => two_threads_one_rank(),
        "forgotten_window_on_a_dead_rank" => forgotten_window_on_a_dead_rank(),
        other => panic!("unknown case {other}"),
    }
    println!("{case} ok");
}

/// Rank 1 copies a large broadcast from rank 0 while rank 0's wait times out: rank 0 must not
/// return (and, by ending its closure, free its pools and unmap the buffer) while rank 1 still
/// reads it.
fn timeout_during_large_broadcast() {
    let n = 64 << 20; // 256 MiB of f32: the copy takes far longer than the timeout
                      // Both ranks enter the broadcast at the same moment, so its opening barrier passes and
                      // rank 0 (the root, which copies nothing) times out while rank 1 copies.
    let go = Instant::now() + Duration::from_secs(2);
    let out = symmem::host::run_with(config(2, false, Duration::from_millis(5)), |ctx| {
        let world = ctx.world();
        let mut b = symmem::alloc_zeroed::<f32>(n).unwrap();
        std::thread::sleep(go.saturating_duration_since(Instant::now()));
        world.broadcast(&mut b, 0)
        // Returning drops the buffer and the rank context: its segments are unmapped.
    })
    .unwrap();
    // Either rank may finish in time; a failure is a timeout or an abort, never a crash.
    for r in out {
        assert!(
            matches!(
                r,
                Ok(()) | Err(Error::Timeout { .. }) | Err(Error::Aborted { .. })
            ),
            "{r:?}"
        );
    }
}

/// A rank panics while its peers wait in a collective: the others get `Aborted`, the panic is
/// resumed by the launch, the process survives.
fn panic_during_reduction() {
    let r = std::panic::catch_unwind(|| {
        symmem::host::run_with(config(3, false, Duration::from_secs(30)), |ctx| {
            let world = ctx.world();
            let mut b = symmem::alloc_zeroed::<f32>(8 << 20).unwrap();
            if ctx.rank() == 1 {
                // Arrive late, so the others are already inside the collective, then fail.
                std::thread::sleep(Duration::from_millis(50));
                panic!("rank 1 fails");
            }
            let r = world.all_reduce(&mut b, ReduceOp::Sum);
            drop(b);
            assert!(matches!(r, Err(Error::Aborted { .. })), "{r:?}");
        })
    });
    assert!(r.is_err(), "the panic of rank 1 is resumed");
}

/// `if rank == 0 { all_reduce } else { broadcast }` without validation mode: both ranks get
/// `RankDivergence`, nobody reads a peer's memory.
fn divergent_collectives() {
    let start = Instant::now();
    let out = symmem::host::run_with(config(2, false, Duration::from_secs(30)), |ctx| {
        let world = ctx.world();
        let mut b = symmem::alloc_zeroed::<f32>(1024).unwrap();
        if ctx.rank() == 0 {
            world.all_reduce(&mut b, ReduceOp::Sum)
        } else {
            world.broadcast(&mut b, 0)
        }
    })
    .unwrap();
    for r in out {
        match r {
            Err(Error::RankDivergence { details, .. }) => {
                assert!(
                    details.contains("all_reduce") && details.contains("broadcast"),
                    "{details}"
                )
            }
            other => panic!("expected RankDivergence, got {other:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// The same collective with a count that differs on one rank (a plain buffer smaller on rank
/// 1): `RankDivergence`, not an out-of-bounds read of rank 1's buffer.
fn divergent_counts() {
    let out = symmem::host::run_with(config(2, false, Duration::from_secs(30)), |ctx| {
        let world = ctx.world();
        let n = if ctx.rank() == 0 { 1 << 20 } else { 16 };
        let mut b = symmem::alloc_zeroed::<f32>(n).unwrap();
        world.all_reduce(&mut b, ReduceOp::Sum)
    })
    .unwrap();
    for r in out {
        assert!(matches!(r, Err(Error::RankDivergence { .. })), "{r:?}");
    }
    // Symmetric and plain operands on different ranks diverge too.
    let out = symmem::host::run_with(config(2, false, Duration::from_secs(30)), |ctx| {
        let world = ctx.world();
        // Both ranks create the segment together; then only rank 0 allocates from it.
        world.reserve_symmetric(1 << 20).unwrap();
        let mut b = if ctx.rank() == 0 {
            let _w = world.window();
            symmem::alloc_zeroed::<f32>(64).unwrap()
        } else {
            symmem::alloc_zeroed::<f32>(64).unwrap()
        };
        world.all_reduce(&mut b, ReduceOp::Sum)
    })
    .unwrap();
    for r in out {
        assert!(matches!(r, Err(Error::RankDivergence { .. })), "{r:?}");
    }
}

/// Only rank 0 creates a symmetric segment while rank 1 runs a collective: a divergence on both,
/// not a segment built from a stale exchange entry.
fn segment_creation_on_one_rank() {
    let out = symmem::host::run_with(config(2, false, Duration::from_secs(30)), |ctx| {
        let world = ctx.world();
        if ctx.rank() == 0 {
            world.reserve_symmetric(1 << 20)
        } else {
            let mut b = symmem::alloc_zeroed::<f32>(16).unwrap();
            world.all_reduce(&mut b, ReduceOp::Sum)
        }
    })
    .unwrap();
    for r in out {
        assert!(matches!(r, Err(Error::RankDivergence { .. })), "{r:?}");
    }
}

/// A helper thread of rank 0 uses rank 0's group handle: its collectives are refused (it is not
/// the rank), never counted as rank 0's arrival, and its window routes nowhere.
fn two_threads_one_rank() {
    let out = symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let helper = {
            let world = world.clone();
            std::thread::spawn(move || {
                let barrier = world.barrier();
                let window_alloc = {
                    let _w = world.window();
                    symmem::alloc::<f32>(4).map(|b| b.is_symmetric())
                };
                (barrier, window_alloc)
            })
        };
        let (barrier, window_alloc) = helper.join().unwrap();
        assert!(matches!(barrier, Err(Error::NoRankContext)), "{barrier:?}");
        assert!(window_alloc.is_err(), "{window_alloc:?}");
        // The rank itself still works.
        let mut b = symmem::alloc_from_host(&[1.0f32; 4]).unwrap();
        world.all_reduce(&mut b, ReduceOp::Sum).unwrap();
        b.to_host_vec().unwrap()
    })
    .unwrap();
    assert_eq!(out, vec![vec![2.0; 4]; 2]);
    // The handle of rank 0 on rank 1's thread: refused with an error naming the group.
    let (tx, rx) = mpsc::channel();
    let (tx, rx) = (std::sync::Mutex::new(tx), std::sync::Mutex::new(rx));
    let out = symmem::host::run(2, |ctx| {
        if ctx.rank() == 0 {
            tx.lock().unwrap().send(ctx.world()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            return None;
        }
        let foreign = rx.lock().unwrap().recv().unwrap();
        let mut b = symmem::alloc_zeroed::<f32>(4).unwrap();
        Some(foreign.all_reduce(&mut b, ReduceOp::Sum))
    })
    .unwrap();
    match &out[1] {
        Some(Err(Error::WrongDevice { detail, .. })) => {
            assert!(
                detail.contains("rank 0") && detail.contains("world"),
                "{detail}"
            )
        }
        other => panic!("expected WrongDevice, got {other:?}"),
    }
}

/// `mem::forget(group.window())` on a handle that outlives its rank context, then dropping the
/// handle: the next allocation on the thread must fail cleanly, not use the freed pool.
fn forgotten_window_on_a_dead_rank() {
    let handle = std::thread::spawn(|| {
        let device = std::sync::Arc::new(symmem::host::HostDevice::new(0));
        let shared = symmem::host::run(1, |ctx| ctx.world()).unwrap().remove(0);
        // `shared` is a group handle whose launch (and rank context) is gone.
        std::mem::forget(shared.window());
        drop(shared);
        let after = symmem::alloc::<f32>(1024);
        assert!(after.is_err(), "no rank on this thread: {after:?}");
        // A fresh rank on the same thread allocates normally.
        let _ = device;
        symmem::reset_routing();
        symmem::host::run(1, |_ctx| {
            let b = symmem::alloc::<f32>(1024).unwrap();
            assert!(!b.is_symmetric());
        })
        .unwrap();
    });
    handle.join().unwrap();
}

#[test]
fn a_timeout_during_a_large_broadcast_does_not_free_what_a_peer_reads() {
    in_child("timeout_during_large_broadcast", Duration::from_secs(60));
}

#[test]
fn a_panic_during_a_reduction_does_not_free_what_a_peer_reads() {
    in_child("panic_during_reduction", Duration::from_secs(60));
}

#[test]
fn different_collectives_on_different_ranks_are_a_divergence() {
    in_child("divergent_collectives", Duration::from_secs(30));
}

#[test]
fn different_counts_or_placements_are_a_divergence() {
    in_child("divergent_counts", Duration::from_secs(30));
}

#[test]
fn a_segment_created_on_one_rank_only_is_a_divergence() {
    in_child("segment_creation_on_one_rank", Duration::from_secs(30));
}

#[test]
fn a_thread_that_is_not_the_rank_cannot_act_as_it() {
    in_child("two_threads_one_rank", Duration::from_secs(30));
}

#[test]
fn a_forgotten_window_never_routes_to_a_freed_pool() {
    in_child("forgotten_window_on_a_dead_rank", Duration::from_secs(30));
}

/// A thread returning one of a pool's blocks while the rank creates a symmetric segment (a
/// collective that waits for a slow peer) does not wait for the creation: the pool's lock is not
/// held across the wait for peers.
#[test]
fn a_drop_on_another_thread_does_not_wait_for_a_segment_creation() {
    let out = symmem::host::run_with(config(2, false, Duration::from_secs(30)), |ctx| {
        let world = ctx.world();
        let small = {
            let _w = world.window();
            symmem::alloc_zeroed::<f32>(1024).unwrap()
        };
        let mut dropped_after = None;
        if ctx.rank() == 0 {
            let helper = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let t = Instant::now();
                drop(small);
                t.elapsed()
            });
            // A request no cached block serves: a new segment, which waits for rank 1.
            let big = {
                let _w = world.window();
                symmem::alloc::<f32>(16 << 20).unwrap()
            };
            dropped_after = Some(helper.join().unwrap());
            drop(big);
        } else {
            std::thread::sleep(Duration::from_millis(1500));
            let _big = {
                let _w = world.window();
                symmem::alloc::<f32>(16 << 20).unwrap()
            };
            drop(small);
        }
        dropped_after
    })
    .unwrap();
    let waited = out[0].expect("rank 0 measured the drop");
    assert!(
        waited < Duration::from_millis(500),
        "the drop waited {waited:?} for the segment creation"
    );
}
