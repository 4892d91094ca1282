//! Validation mode and failure propagation: injected rank divergence is reported on every
//! rank within the timeout, a rank that never arrives times the others out, a panicking rank
//! aborts the others' pending collectives and its panic is resumed by `host::run`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use symmem::{Error, ReduceOp};
use symmem_runtime as symmem;

use common::{config, panic_text};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for failures that must be quick (divergence and aborts are detected at the
/// next exchange, not at the timeout).
const QUICK: Duration = Duration::from_secs(3);

fn expect_divergence(r: &Result<(), Error>, what: &str, needles: &[&str]) {
    match r {
        Err(e @ Error::RankDivergence { .. }) => {
            let Error::RankDivergence {
                group,
                what: w,
                details,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(group, "world");
            assert_eq!(w, what, "{e}");
            for n in needles {
                assert!(details.contains(n), "missing {n:?} in: {e}");
            }
            assert!(
                e.to_string()
                    .contains("Every rank must make the same allocations and collectives"),
                "{e}"
            );
        }
        other => panic!("expected RankDivergence at {what}, got {other:?}"),
    }
}

#[test]
fn different_allocation_size_before_all_reduce() {
    let start = Instant::now();
    let out = symmem::host::run_with(config(2, true, TIMEOUT), |ctx| {
        let world = ctx.world();
        let n = if ctx.rank() == 1 { 2000 } else { 1000 };
        let mut b = {
            let _w = world.window();
            symmem::alloc::<f32>(n).unwrap() // same 2 MiB segment on both: no divergence yet
        };
        let r = world.all_reduce(&mut b, ReduceOp::Sum);
        (r, start.elapsed())
    })
    .unwrap();
    for (rank, (r, t)) in out.iter().enumerate() {
        expect_divergence(
            r,
            "all_reduce",
            &[
                "rank 0: all_reduce: f32 Sum count 1000 in place window 0 offset 0",
                "rank 1: all_reduce: f32 Sum count 2000",
            ],
        );
        assert!(*t < QUICK, "rank {rank} took {t:?}");
    }
}

#[test]
fn different_segment_size_is_caught_at_segment_creation() {
    let start = Instant::now();
    let out = symmem::host::run_with(config(3, true, TIMEOUT), |ctx| {
        let world = ctx.world();
        let bytes = if ctx.rank() == 2 { 3 << 20 } else { 4096 };
        let _w = world.window();
        let r = symmem::alloc::<u8>(bytes).map(drop);
        let stats = world.stats();
        (r, start.elapsed(), stats.segments)
    })
    .unwrap();
    for (r, t, segments) in &out {
        expect_divergence(
            r,
            "symmetric segment creation",
            &[
                "rank 0: symmetric segment creation: create segment of 2097152 bytes",
                "rank 2: symmetric segment creation: create segment of 4194304 bytes",
            ],
        );
        assert!(*t < QUICK, "{t:?}");
        assert_eq!(*segments, 0, "no segment may be created after a divergence");
    }
}

#[test]
fn different_collective() {
    let start = Instant::now();
    let out = symmem::host::run_with(config(4, true, TIMEOUT), |ctx| {
        let world = ctx.world();
        let mut b = symmem::alloc::<i64>(16).unwrap();
        let r = if ctx.rank() == 3 {
            world.broadcast(&mut b, 0)
        } else {
            world.all_reduce(&mut b, ReduceOp::Max)
        };
        (r, start.elapsed())
    })
    .unwrap();
    for (r, t) in &out {
        // Each rank reports the step it was about to run; all name both sides.
        assert!(matches!(r, Err(Error::RankDivergence { .. })), "{r:?}");
        let msg = r.as_ref().unwrap_err().to_string();
        assert!(
            msg.contains("rank 0: all_reduce: i64 Max count 16 in place plain"),
            "{msg}"
        );
        assert!(
            msg.contains("rank 3: broadcast: i64 count 16 root 0 plain"),
            "{msg}"
        );
        assert!(*t < QUICK, "{t:?}");
    }
}

/// A rank that returns from its closure without calling a collective its peers wait in: the
/// peers fail at once with `Aborted` naming it, not after the timeout (here 300 s).
#[test]
fn a_rank_that_returns_releases_its_peers_at_once() {
    for validate in [true, false] {
        let start = Instant::now();
        let out = symmem::host::run_with(config(3, validate, Duration::from_secs(300)), |ctx| {
            if ctx.rank() == 2 {
                return None;
            }
            let world = ctx.world();
            let mut b = symmem::alloc_from_host(&[1.0f32; 8]).unwrap();
            Some(world.all_reduce(&mut b, ReduceOp::Sum))
        })
        .unwrap();
        for r in out.into_iter().flatten() {
            match r {
                Err(Error::Aborted { cause, .. }) => assert!(
                    cause.contains("rank 2") && cause.contains("returned from its closure"),
                    "{cause}"
                ),
                other => panic!("validate={validate}: expected Aborted, got {other:?}"),
            }
        }
        assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    }
    // A group without the departed rank is unaffected.
    let out = symmem::host::run(3, |ctx| {
        let world = ctx.world();
        let pair = ctx
            .split_group("pair", &world, (ctx.rank() == 2) as u32, 0)
            .unwrap();
        if ctx.rank() == 2 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut b = symmem::alloc_from_host(&[1.0f32; 8]).unwrap();
        pair.all_reduce(&mut b, ReduceOp::Sum).is_ok() && b.to_host_vec().unwrap() == [2.0; 8]
    })
    .unwrap();
    assert_eq!(out, vec![true; 3]);
}

#[test]
fn a_rank_that_never_arrives_times_the_others_out() {
    for validate in [true, false] {
        let timeout = Duration::from_millis(400);
        let start = Instant::now();
        let out = symmem::host::run_with(config(3, validate, timeout), |ctx| {
            if ctx.rank() == 2 {
                // Busy on another code path past the timeout (returning instead would be a
                // departure: see `a_rank_that_returns_releases_its_peers_at_once`).
                std::thread::sleep(timeout * 3);
                return None;
            }
            let world = ctx.world();
            let mut b = symmem::alloc_from_host(&[1.0f32; 8]).unwrap();
            let r = world.all_reduce(&mut b, ReduceOp::Sum);
            Some((r, start.elapsed()))
        })
        .unwrap();
        let mut timeouts = 0;
        for (r, t) in out.into_iter().flatten() {
            match r {
                Err(e @ Error::Timeout { .. }) => {
                    timeouts += 1;
                    let Error::Timeout { arrived, size, .. } = &e else {
                        unreachable!()
                    };
                    assert_eq!(*size, 3);
                    assert!(*arrived <= 2);
                    assert!(e.to_string().contains("timed out after 0.4s"), "{e}");
                }
                Err(Error::Aborted { cause, .. }) => {
                    assert!(cause.contains("timed out"), "{cause}")
                }
                other => panic!("validate={validate}: expected Timeout or Aborted, got {other:?}"),
            }
            assert!(
                t >= timeout.mul_f32(0.9),
                "failed before the timeout: {t:?}"
            );
            assert!(t < timeout + QUICK, "validate={validate}: took {t:?}");
        }
        assert!(
            timeouts >= 1,
            "at least one rank must report the timeout itself"
        );
    }
}

#[test]
fn validation_on_a_correct_program_changes_nothing() {
    let run = |validate: bool| {
        symmem::host::run_with(config(4, validate, TIMEOUT), |ctx| {
            let world = ctx.world();
            let tp = ctx
                .split_group(
                    "tp",
                    &world,
                    (ctx.rank() / 2) as u32,
                    (ctx.rank() % 2) as u32,
                )
                .unwrap();
            tp.reserve_symmetric(1 << 20).unwrap();
            let mut out = Vec::new();
            for i in 0..20usize {
                let n = 1 + (i * 37) % 300;
                let mut a = {
                    let _w = world.window();
                    symmem::alloc_from_host(&vec![(ctx.rank() + i) as f32; n]).unwrap()
                };
                world.all_reduce(&mut a, ReduceOp::Sum).unwrap();
                let mut g = {
                    let _w = tp.window();
                    symmem::alloc::<f32>(n * 2).unwrap()
                };
                tp.all_gather(&a, &mut g).unwrap();
                let mut r = symmem::alloc::<f32>(n).unwrap();
                tp.reduce_scatter(&g, &mut r, ReduceOp::Max).unwrap();
                world.broadcast(&mut r, i % 4).unwrap();
                world.barrier().unwrap();
                out.extend(r.to_host_vec().unwrap());
            }
            let (mut graph, mut y) = symmem::capture(|| {
                let _w = tp.window();
                let mut y = symmem::alloc::<i32>(10)?;
                tp.all_reduce(&mut y, ReduceOp::Sum)?; // validated at capture time
                Ok(y)
            })
            .unwrap();
            y.copy_from_host(&[ctx.rank() as i32; 10]).unwrap();
            graph.replay().unwrap();
            out.extend(y.to_host_vec().unwrap().iter().map(|&v| v as f32));
            out
        })
        .unwrap()
    };
    let checked = run(true);
    let unchecked = run(false);
    assert_eq!(checked, unchecked);
    assert_eq!(&checked[0][checked[0].len() - 10..], &[1.0; 10]); // ranks 0 + 1 of tp 0
}

#[test]
fn a_panicking_rank_aborts_the_others_and_its_panic_is_resumed() {
    let reports = Mutex::new(Vec::new());
    let start = Instant::now();
    let p = catch_unwind(AssertUnwindSafe(|| {
        // A long timeout: the others must fail because of the abort, not the timeout.
        symmem::host::run_with(config(3, false, Duration::from_secs(60)), |ctx| {
            let world = ctx.world();
            let mut b = symmem::alloc_from_host(&[1u32; 4]).unwrap();
            if ctx.rank() == 1 {
                std::thread::sleep(Duration::from_millis(50));
                panic!("rank 1 fails on purpose");
            }
            let r = world.all_reduce(&mut b, ReduceOp::Sum);
            let r2 = world.barrier();
            reports
                .lock()
                .unwrap()
                .push((ctx.rank(), r, r2, start.elapsed()));
        })
    }))
    .unwrap_err();
    assert_eq!(panic_text(&*p), "rank 1 fails on purpose");
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.len(), 2);
    for (rank, r, r2, t) in reports {
        for r in [r, r2] {
            match r {
                Err(e @ Error::Aborted { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("rank 1 panicked"), "rank {rank}: {msg}");
                    assert!(
                        msg.contains("group `world` is unusable"),
                        "rank {rank}: {msg}"
                    );
                }
                other => panic!("rank {rank}: expected Aborted, got {other:?}"),
            }
        }
        assert!(t < QUICK, "rank {rank} took {t:?}");
    }
}

#[test]
fn a_rank_error_does_not_abort_the_launch() {
    // Returning an error (not panicking) is an ordinary value: other ranks finish normally.
    let out = symmem::host::run(2, |ctx| -> Result<usize, Error> {
        if ctx.rank() == 0 {
            return Err(Error::InvalidArgument {
                op: "test",
                detail: "rank 0 gives up".into(),
            });
        }
        Ok(ctx.rank())
    })
    .unwrap();
    assert!(out[0].is_err());
    assert_eq!(out[1].as_ref().unwrap(), &1);
}
