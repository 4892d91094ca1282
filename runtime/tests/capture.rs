//! Graph capture: replay equals eager bit for bit, capture-time symmetric allocations and the
//! reserve, operations refused during capture, graph-owned blocks, failing and panicking
//! capture closures, nested capture and replay on another rank.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};

use symmem::{Buffer, Error, Graph, Group, ReduceOp, Result};
use symmem_runtime as symmem;

use common::{bits, panic_text};

/// A program mixing default and window allocations, a temporary freed mid-way, opt-outs,
/// copies and every collective on symmetric and plain operands. Its output depends only on
/// `src` (so every replay recomputes it).
fn program(world: &Group, tp: &Group, src: &Buffer<f32>) -> Result<Buffer<f32>> {
    let (n, ws) = (src.len(), world.size());
    let mut x = symmem::alloc::<f32>(n)?; // default pool (the graph's pool when capturing)
    x.copy_from(src)?;
    let _w = world.window();
    let mut y = symmem::alloc::<f32>(n)?;
    assert!(y.is_symmetric());
    y.copy_from(&x)?;
    world.all_reduce(&mut y, ReduceOp::Sum)?; // symmetric path
    let mut g = symmem::alloc::<f32>(n * ws)?;
    world.all_gather(&y, &mut g)?; // symmetric in and out
    let mut rs = {
        let _o = symmem::opt_out();
        symmem::alloc::<f32>(n)?
    };
    assert!(!rs.is_symmetric());
    world.reduce_scatter(&g, &mut rs, ReduceOp::Max)?; // symmetric in, plain out
    {
        // A temporary freed inside the program: its block is reused by the next allocation.
        let mut tmp = symmem::alloc_zeroed::<f32>(n)?;
        world.all_reduce_into(&x, &mut tmp, ReduceOp::Prod)?;
        tp.all_reduce(&mut tmp, ReduceOp::Avg)?; // symmetric of another group: plain path in tp
        world.all_reduce_into(&tmp, &mut rs, ReduceOp::Sum)?;
    }
    let mut z = {
        let _t = tp.window();
        symmem::alloc::<f32>(n * ws)?
    };
    world.all_gather(&rs, &mut z)?;
    world.broadcast(&mut z, ws - 1)?;
    tp.all_reduce(&mut z, ReduceOp::Min)?; // tp symmetric path
    world.barrier()?;
    Ok(z)
}

fn source(rank: usize, n: usize, round: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 31 + rank * 17 + round * 7) % 101) as f32 * 0.37 - 11.0)
        .collect()
}

fn replay_equals_eager(ws: usize) {
    const N: usize = 100;
    const REPLAYS: usize = 1000;
    symmem::host::run(ws, |ctx| {
        let world = ctx.world();
        let tp = ctx
            .split_group("tp", &world, (ctx.rank() / 2) as u32, 0)
            .unwrap();
        // The reserve the capture needs (checked below to be enough).
        world.reserve_symmetric(1 << 20).unwrap();
        tp.reserve_symmetric(1 << 20).unwrap();
        let mut src = symmem::alloc_from_host(&source(ctx.rank(), N, 0)).unwrap();

        let eager0 = program(&world, &tp, &src).unwrap().to_host_vec().unwrap();
        let (mut graph, mut out) = symmem::capture(|| program(&world, &tp, &src)).unwrap();
        assert!(out.is_graph_owned());
        assert_eq!(out.group_name(), Some("tp"));
        // Poison the output so that only a replay can produce the expected values.
        out.copy_from_host(&vec![f32::NAN; out.len()]).unwrap();
        for i in 0..REPLAYS {
            graph.replay().unwrap();
            let got = out.to_host_vec().unwrap();
            assert_eq!(bits(&got), bits(&eager0), "replay {i} differs from eager");
        }
        assert_eq!(graph.replays(), REPLAYS as u64);

        // New input: replay follows it and still equals eager.
        src.copy_from_host(&source(ctx.rank(), N, 1)).unwrap();
        let eager1 = program(&world, &tp, &src).unwrap().to_host_vec().unwrap();
        assert_ne!(bits(&eager1), bits(&eager0));
        graph.replay().unwrap();
        assert_eq!(bits(&out.to_host_vec().unwrap()), bits(&eager1));
        eager1
    })
    .unwrap()
    .windows(2)
    .for_each(|w| assert_eq!(bits(&w[0]), bits(&w[1]), "ranks disagree"));
}

#[test]
fn replay_equals_eager_world_2() {
    replay_equals_eager(2);
}

#[test]
fn replay_equals_eager_world_4() {
    replay_equals_eager(4);
}

#[test]
fn capture_routes_like_eager_but_into_graph_owned_blocks() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(4096).unwrap();
        assert!(!symmem::is_capturing());
        let (graph, (a, b, c)) = symmem::capture(|| {
            assert!(symmem::is_capturing());
            assert_eq!(symmem::routed_group(), None);
            let a = symmem::alloc::<f32>(1000)?; // capture-private default pool
            let _w = world.window();
            assert_eq!(symmem::routed_group().as_deref(), Some("world"));
            let b = symmem::alloc::<f32>(1000)?;
            let _o = symmem::opt_out();
            let c = symmem::alloc::<u8>(10)?;
            Ok((a, b, c))
        })
        .unwrap();
        assert!(!symmem::is_capturing());
        assert_eq!(symmem::window_depth(), 0);
        for (buf_graph_owned, sym, label) in [
            (a.is_graph_owned(), a.is_symmetric(), a.pool_label()),
            (b.is_graph_owned(), b.is_symmetric(), b.pool_label()),
            (c.is_graph_owned(), c.is_symmetric(), c.pool_label()),
        ] {
            assert!(buf_graph_owned);
            assert_eq!(sym, label == "world");
        }
        assert_eq!(
            (a.pool_label(), b.pool_label(), c.pool_label()),
            ("default", "world", "default")
        );
        let mut mem = graph.memory();
        mem.sort();
        assert_eq!(
            mem,
            vec![
                ("default".to_string(), 4096 + 512),
                ("world".to_string(), 4096)
            ]
        );
        // Eager allocations are not graph owned.
        assert!(!symmem::alloc::<f32>(1).unwrap().is_graph_owned());
    })
    .unwrap();
}

#[test]
fn capture_time_symmetric_allocation_beyond_the_reserve() {
    const MIB: usize = 1 << 20;
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let body = || -> Result<(Buffer<u8>, Buffer<u8>)> {
            let _w = world.window();
            let a = symmem::alloc::<u8>(3 * MIB)?;
            let b = symmem::alloc::<u8>(3 * MIB)?;
            Ok((a, b))
        };
        // Nothing reserved: the capture runs to its end on stand-ins and asks for what it
        // needs as a whole (both buffers).
        match symmem::capture(body) {
            Err(e @ Error::CaptureReserveExceeded { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("reserve_symmetric({})", 6 * MIB)),
                    "{msg}"
                );
                assert!(msg.contains("group `world`"), "{msg}");
            }
            other => panic!("expected CaptureReserveExceeded, got {other:?}"),
        }
        // Reserve 4 MiB: the second allocation fails and asks for the total.
        world.reserve_symmetric(4 * MIB).unwrap();
        let reserved = world.stats().reserved_bytes;
        let n = match symmem::capture(body) {
            Err(e @ Error::CaptureReserveExceeded { .. }) => {
                let Error::CaptureReserveExceeded {
                    ref group,
                    requested,
                    available,
                    reserve,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(&**group, "world");
                assert_eq!(requested, 3 * MIB);
                assert_eq!(available, MIB);
                assert_eq!(reserve, 6 * MIB);
                let msg = e.to_string();
                assert!(msg.contains("reserve_symmetric(6291456)"), "{msg}");
                assert!(
                    msg.contains("cannot allocate 3.00 MiB (3145728 bytes)"),
                    "{msg}"
                );
                reserve
            }
            other => panic!("expected CaptureReserveExceeded, got {other:?}"),
        };
        // The failed captures created no segment and leaked no block.
        assert_eq!(world.stats().reserved_bytes, reserved);
        assert_eq!(world.stats().in_use_bytes, 0);
        assert_eq!(symmem::window_depth(), 0);
        // Following the advice makes the same capture succeed.
        world.reserve_symmetric(n).unwrap();
        let (mut g, (a, b)) = symmem::capture(body).unwrap();
        assert!(a.is_symmetric() && b.is_symmetric());
        g.replay().unwrap();
        drop((g, a, b));
        assert_eq!(world.stats().in_use_bytes, 0);
    })
    .unwrap();
}

#[test]
fn setup_and_blocking_operations_are_refused_during_capture() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let mut eager = symmem::alloc_from_host(&[1.0f32; 4]).unwrap();
        let (mut other, ()) = symmem::capture(|| Ok(())).unwrap();
        let (_g, ()) = symmem::capture(|| {
            let refused: Vec<(&str, Result<()>)> = vec![
                ("Group::reserve_symmetric", world.reserve_symmetric(1 << 20)),
                ("Group::empty_cache", world.empty_cache().map(drop)),
                ("RankContext::empty_cache", ctx.empty_cache().map(drop)),
                (
                    "RankContext::split_group",
                    ctx.split_group("tp", &world, 0, 0).map(drop),
                ),
                (
                    "RankContext::add_group",
                    ctx.add_group("tp2", world.comm().clone()).map(drop),
                ),
                ("Buffer::copy_from_host", eager.copy_from_host(&[2.0; 4])),
                ("Buffer::copy_to_host", eager.copy_to_host(&mut [0.0; 4])),
                ("Buffer::copy_to_host", eager.to_host_vec().map(drop)),
                (
                    "symmem::alloc_from_host",
                    symmem::alloc_from_host(&[1.0f32]).map(drop),
                ),
                ("symmem::synchronize", symmem::synchronize()),
                ("Stream::synchronize", ctx.stream().synchronize()),
                ("capture", symmem::capture(|| Ok(())).map(drop)),
                ("Graph::replay", other.replay()),
            ];
            for (op, r) in refused {
                match r {
                    Err(e @ Error::NotAllowedDuringCapture { .. }) => {
                        let Error::NotAllowedDuringCapture { op: o, fix, .. } = &e else {
                            unreachable!()
                        };
                        assert_eq!(*o, op);
                        assert!(!fix.is_empty());
                        assert!(
                            e.to_string()
                                .contains("is not allowed during graph capture"),
                            "{e}"
                        );
                    }
                    other => panic!("{op}: expected NotAllowedDuringCapture, got {other:?}"),
                }
            }
            Ok(())
        })
        .unwrap();
        // Nothing above ran: no group was created, the buffer is unchanged.
        assert_eq!(ctx.groups().len(), 1);
        assert_eq!(eager.to_host_vec().unwrap(), vec![1.0; 4]);
        other.replay().unwrap();
    })
    .unwrap();
}

#[test]
fn graph_owned_blocks_return_when_graph_and_buffers_are_gone() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let capture = || {
            symmem::capture(|| {
                let d = symmem::alloc::<f32>(1000)?;
                let _w = world.window();
                let s = symmem::alloc::<f32>(1000)?;
                Ok((d, s))
            })
            .unwrap()
        };
        let in_use = || {
            (
                ctx.default_pool_stats().in_use_bytes,
                world.stats().in_use_bytes,
            )
        };

        // Graph dropped first, then the buffers.
        let (g, (d, s)) = capture();
        assert!(d.is_graph_owned() && s.is_graph_owned());
        assert_eq!(in_use(), (4096, 4096));
        drop(g);
        assert_eq!(in_use(), (4096, 4096), "buffers still alive: blocks stay");
        drop(d);
        assert_eq!(in_use(), (0, 4096), "graph and d gone: d's block is back");
        drop(s);
        assert_eq!(in_use(), (0, 0));

        // Buffers dropped first, then the graph.
        let (g, (d, s)) = capture();
        drop((d, s));
        assert_eq!(in_use(), (4096, 4096), "the graph still owns the blocks");
        // Eager allocations while the graph lives never get the graph's blocks.
        let e = symmem::alloc::<f32>(1000).unwrap();
        assert_eq!(in_use(), (8192, 4096));
        drop(e);
        drop(g);
        assert_eq!(in_use(), (0, 0));
    })
    .unwrap();
}

#[test]
fn blocks_freed_during_capture_are_reused_only_by_the_same_capture() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let (g, (p1, p2, q)) = symmem::capture(|| {
            let _w = world.window();
            let t = symmem::alloc::<f32>(256)?;
            let p1 = t.device_ptr();
            drop(t);
            let u = symmem::alloc::<f32>(100)?; // fits in the freed block: reused
            let p2 = u.device_ptr();
            Ok((p1, p2, u))
        })
        .unwrap();
        assert_eq!(p1, p2);
        assert_eq!(
            world.stats().in_use_bytes,
            1024,
            "one block claimed by the graph"
        );
        // An eager allocation of the same size gets another block while the graph lives.
        let e = {
            let _w = world.window();
            symmem::alloc::<f32>(256).unwrap()
        };
        assert_ne!(e.device_ptr(), p1);
        drop((g, q, e));
        assert_eq!(world.stats().in_use_bytes, 0);
    })
    .unwrap();
}

#[test]
fn failing_or_panicking_capture_leaks_nothing() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let clean = || {
            assert!(!symmem::is_capturing());
            assert_eq!(symmem::window_depth(), 0);
            assert_eq!(world.stats().in_use_bytes, 0);
            assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
        };

        // An error from the closure.
        let r: Result<(Graph, ())> = symmem::capture(|| {
            let _a = symmem::alloc::<f32>(1000)?;
            let _w = world.window();
            let mut b = symmem::alloc::<f32>(1000)?;
            world.all_reduce(&mut b, ReduceOp::Sum)?; // recorded, never run
            Err(Error::InvalidArgument {
                op: "test",
                detail: "failing on purpose".into(),
            })
        });
        assert!(matches!(r, Err(Error::InvalidArgument { op: "test", .. })));
        clean();

        // A panic in the closure: resumed, nothing leaked.
        let p = catch_unwind(AssertUnwindSafe(|| {
            symmem::capture(|| {
                let _a = symmem::alloc::<f32>(1000)?;
                let _w = world.window();
                let _b = symmem::alloc::<f32>(1000)?;
                panic!("boom in capture");
                #[allow(unreachable_code)]
                Ok(())
            })
        }))
        .unwrap_err();
        assert_eq!(panic_text(&*p), "boom in capture");
        clean();

        // A buffer that escapes a failing capture keeps its block until it drops.
        let mut escaped = None;
        let r = symmem::capture(|| {
            let _w = world.window();
            escaped = Some(symmem::alloc::<f32>(1000)?);
            Err::<(), _>(Error::InvalidArgument {
                op: "test",
                detail: "again".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(world.stats().in_use_bytes, 4096);
        drop(escaped);
        clean();

        // The stream records nothing stale: a later capture and eager work are right.
        let mut x = {
            let _w = world.window();
            symmem::alloc_from_host(&[1.0f32; 8]).unwrap()
        };
        let (mut g, ()) = symmem::capture(|| world.all_reduce(&mut x, ReduceOp::Sum)).unwrap();
        g.replay().unwrap();
        assert_eq!(x.to_host_vec().unwrap(), vec![2.0; 8]);
    })
    .unwrap();
}

#[test]
fn nested_capture_is_refused() {
    symmem::host::run(1, |_| {
        let (_g, inner) = symmem::capture(|| Ok(symmem::capture(|| Ok(())).map(drop))).unwrap();
        match inner {
            Err(e @ Error::NotAllowedDuringCapture { op: "capture", .. }) => {
                assert!(e.to_string().contains("captures do not nest"), "{e}");
            }
            other => panic!("expected NotAllowedDuringCapture, got {other:?}"),
        }
        // The outer capture is still fine afterwards and a new one starts.
        assert!(!symmem::is_capturing());
        symmem::capture(|| Ok(())).unwrap();
    })
    .unwrap();
}

#[test]
fn replay_on_another_rank_is_refused() {
    let (tx, rx) = mpsc::channel::<Graph>();
    let (tx, rx) = (Mutex::new(tx), Mutex::new(rx));
    symmem::host::run(2, |ctx| {
        if ctx.rank() == 0 {
            let mut b = symmem::alloc_from_host(&[5u32; 4]).unwrap();
            let (g, ()) = symmem::capture(|| b.fill_zero()).unwrap();
            tx.lock().unwrap().send(g).unwrap();
            // b must outlive any replay: the graph was refused on rank 1, so it is still 5.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(b.to_host_vec().unwrap(), vec![5; 4]);
        } else {
            let mut g = rx.lock().unwrap().recv().unwrap();
            match g.replay() {
                Err(e @ Error::Graph(_)) => {
                    assert!(e.to_string().contains("captured on another rank"), "{e}")
                }
                other => panic!("expected Error::Graph, got {other:?}"),
            }
            assert_eq!(g.replays(), 0);
        }
    })
    .unwrap();
}

#[test]
fn captured_work_runs_only_at_replay() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let mut x = {
            let _w = world.window();
            symmem::alloc_from_host(&[ctx.rank() as i32 + 1; 3]).unwrap()
        };
        let (mut g, ()) = symmem::capture(|| world.all_reduce(&mut x, ReduceOp::Sum)).unwrap();
        assert_eq!(
            x.to_host_vec().unwrap(),
            vec![ctx.rank() as i32 + 1; 3],
            "capture must not run the work"
        );
        g.replay().unwrap();
        assert_eq!(x.to_host_vec().unwrap(), vec![3; 3]);
        g.replay().unwrap();
        assert_eq!(x.to_host_vec().unwrap(), vec![6; 3]);
    })
    .unwrap();
}

/// A graph pins the eager blocks its recorded work uses: dropping such a buffer while the
/// graph lives does not hand its block to another buffer, replays never touch other buffers,
/// and the block returns to the pool when the graph drops.
#[test]
fn replay_after_a_recorded_buffer_is_dropped_must_not_touch_other_buffers() {
    symmem::host::run(1, |ctx| {
        let mut x = symmem::alloc_from_host(&[1.0f32; 256]).unwrap();
        let (mut g, ()) = symmem::capture(|| x.fill_zero()).unwrap();
        let px = x.device_ptr();
        drop(x);
        let y = symmem::alloc_from_host(&[7.0f32; 256]).unwrap();
        assert_ne!(
            y.device_ptr(),
            px,
            "a block pinned by a live graph was reused"
        );
        g.replay().unwrap();
        let v = y.to_host_vec().unwrap();
        assert!(
            v.iter().all(|&e| e == 7.0),
            "the replay overwrote a buffer it never saw: {:?}",
            &v[..4]
        );
        let in_use = ctx.default_pool_stats().in_use_bytes;
        drop(g);
        assert!(
            ctx.default_pool_stats().in_use_bytes < in_use,
            "dropping the graph must release the pinned block"
        );
        drop(y);
        assert_eq!(ctx.default_pool_stats().in_use_bytes, 0, "nothing leaked");
    })
    .unwrap();
}

/// The closure's own error type: symmem's errors convert into it.
#[derive(Debug)]
enum Theirs {
    Mine(&'static str),
    Symmem(String),
}

impl From<symmem::Error> for Theirs {
    fn from(e: symmem::Error) -> Theirs {
        Theirs::Symmem(e.to_string())
    }
}

#[test]
fn capture_with_error_returns_the_closures_error_and_converts_symmems() {
    symmem::host::run(1, |ctx| {
        let stats = || ctx.default_pool_stats();
        let before = stats();
        // The closure's own error comes back as it is, and the aborted capture leaks nothing.
        let r = symmem::capture_with_error(|| -> Result<(), Theirs> {
            let _b = symmem::alloc::<f32>(1024)?;
            Err(Theirs::Mine("the model failed"))
        });
        assert!(matches!(r, Err(Theirs::Mine("the model failed"))), "{r:?}");
        assert_eq!(stats().in_use_bytes, before.in_use_bytes);
        // symmem's own refusal inside converts with From.
        let r = symmem::capture_with_error(|| -> Result<(), Theirs> {
            symmem::capture(|| Ok(()))?;
            Ok(())
        });
        match r {
            Err(Theirs::Symmem(m)) => assert!(m.contains("already running"), "{m}"),
            other => panic!("{other:?}"),
        }
        // And a capture that succeeds gives its graph, which replays.
        let (mut g, v) = symmem::capture_with_error(|| Ok::<u8, Theirs>(7)).unwrap();
        assert_eq!(v, 7);
        g.replay().unwrap();
    })
    .unwrap();
}
