//! Pool-routing window semantics: nesting, re-entry, opt-out, every way out of a scope,
//! threads, misuse (out-of-order drops, `mem::forget`), `reset_routing`, disabled and
//! missing-group windows, and the async `Routed` wrapper.

mod common;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Barrier;

use symmem::macro_support::{enter, enter_no_capture, enter_unless, routed};
use symmem::{Buffer, Error, Group, ReduceOp, Result};
use symmem_runtime as symmem;

use common::panic_text;

/// Where the current thread routes, as `(group, depth)`.
fn route() -> (Option<String>, usize) {
    (symmem::routed_group(), symmem::window_depth())
}

/// The pool an allocation made now comes from.
fn pool_of_next_alloc() -> String {
    let b = symmem::alloc::<f32>(16).expect("alloc");
    match b.group_name() {
        Some(g) => {
            assert!(b.is_symmetric());
            g.to_string()
        }
        None => {
            assert!(!b.is_symmetric());
            assert!(b.symmetric().is_none());
            b.pool_label().to_string()
        }
    }
}

/// One rank with groups `world` and `tp` (a one-rank split).
fn one_rank(f: impl Fn(&symmem::RankContext, &Group, &Group) + Send + Sync) {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        let tp = ctx.split_group("tp", &world, 0, 0).unwrap();
        f(ctx, &world, &tp);
        assert_eq!(
            route(),
            (None, 0),
            "routing not restored at the end of the test body"
        );
        assert_eq!(world.stats().in_use_bytes, 0, "world pool leaked");
        assert_eq!(tp.stats().in_use_bytes, 0, "tp pool leaked");
        assert_eq!(
            ctx.default_pool_stats().in_use_bytes,
            0,
            "default pool leaked"
        );
    })
    .unwrap();
}

#[test]
fn outside_windows_allocations_come_from_the_default_pool() {
    one_rank(|ctx, _, _| {
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
        let b = symmem::alloc::<u8>(1000).unwrap();
        assert_eq!(ctx.default_pool_stats().in_use_bytes, 1024);
        drop(b);
    });
}

#[test]
fn windows_nest_and_restore_in_reverse_order() {
    one_rank(|_, world, tp| {
        let w = world.window();
        assert!(w.is_active());
        assert_eq!(route(), (Some("world".into()), 1));
        assert_eq!(pool_of_next_alloc(), "world");
        {
            let _t = tp.window();
            assert_eq!(route(), (Some("tp".into()), 2));
            assert_eq!(pool_of_next_alloc(), "tp");
            {
                let _o = symmem::opt_out();
                assert_eq!(route(), (None, 3));
                assert_eq!(pool_of_next_alloc(), "default");
                let _w2 = world.window();
                assert_eq!(route(), (Some("world".into()), 4));
                assert_eq!(pool_of_next_alloc(), "world");
            }
            assert_eq!(route(), (Some("tp".into()), 2));
            assert_eq!(pool_of_next_alloc(), "tp");
        }
        assert_eq!(route(), (Some("world".into()), 1));
        assert_eq!(pool_of_next_alloc(), "world");
        drop(w);
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
    });
}

#[test]
fn re_entering_the_same_group_is_fine() {
    one_rank(|_, world, _| {
        let _a = world.window();
        let keep = symmem::alloc::<f32>(100).unwrap();
        {
            let _b = world.window();
            let _c = world.window();
            assert_eq!(route(), (Some("world".into()), 3));
            let inner = symmem::alloc::<f32>(100).unwrap();
            assert_eq!(inner.group_name(), Some("world"));
            // Both blocks are live in the same pool and do not overlap.
            assert_ne!(inner.device_ptr(), keep.device_ptr());
        }
        assert_eq!(route(), (Some("world".into()), 1));
        assert_eq!(pool_of_next_alloc(), "world");
        assert_eq!(world.stats().allocated_blocks, 1);
        drop(keep);
    });
}

#[test]
fn by_name_windows_route_like_group_windows() {
    one_rank(|_, world, _| {
        {
            let _w = symmem::window("tp").unwrap();
            assert_eq!(route(), (Some("tp".into()), 1));
            assert_eq!(pool_of_next_alloc(), "tp");
        }
        {
            let _w = enter("tp");
            assert_eq!(pool_of_next_alloc(), "tp");
        }
        let v = world.with_window(|| {
            assert_eq!(route(), (Some("world".into()), 1));
            pool_of_next_alloc()
        });
        assert_eq!(v, "world");
        assert_eq!(route(), (None, 0));
        assert!(
            matches!(symmem::window("nope"), Err(Error::GroupNotFound { ref name, .. }) if name == "nope")
        );
        assert_eq!(
            route(),
            (None, 0),
            "a failed by-name window must not change routing"
        );
    });
}

#[test]
fn opt_out_suspends_any_window() {
    one_rank(|_, world, tp| {
        let _w = world.window();
        let _t = tp.window();
        let o = symmem::opt_out();
        assert!(o.is_active());
        assert_eq!(symmem::routed_group(), None);
        let b = symmem::alloc::<f64>(10).unwrap();
        assert!(!b.is_symmetric());
        assert_eq!(b.pool_label(), "default");
        drop(o);
        assert_eq!(symmem::routed_group().as_deref(), Some("tp"));
        drop(b);
    });
}

/// Allocates inside a window and leaves by an early `return`.
fn early_return(g: &Group, leave: bool) -> Option<Buffer<f32>> {
    let _w = g.window();
    let b = symmem::alloc::<f32>(64).unwrap();
    if leave {
        return None;
    }
    Some(b)
}

/// Fails with `?` inside a window (a length mismatch from a collective).
fn question_mark(g: &Group) -> Result<Buffer<f32>> {
    let _w = g.window();
    let a = symmem::alloc::<f32>(8)?;
    let mut b = symmem::alloc::<f32>(9)?;
    g.all_reduce_into(&a, &mut b, ReduceOp::Sum)?;
    Ok(b)
}

#[test]
fn early_return_and_question_mark_restore_routing() {
    one_rank(|_, world, tp| {
        let _outer = tp.window();
        assert!(early_return(world, true).is_none());
        assert_eq!(route(), (Some("tp".into()), 1));
        let kept = early_return(world, false).unwrap();
        assert_eq!(kept.group_name(), Some("world"));
        assert_eq!(route(), (Some("tp".into()), 1));
        let e = question_mark(world).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "all_reduce_into",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(route(), (Some("tp".into()), 1));
        drop(kept);
        assert_eq!(world.stats().in_use_bytes, 0, "the `?` path leaked a block");
    });
}

#[test]
fn panic_inside_a_window_restores_routing_and_leaks_nothing() {
    one_rank(|_, world, tp| {
        let _outer = world.window();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _t = tp.window();
            let _a = symmem::alloc::<f32>(1000).unwrap();
            let _o = symmem::opt_out();
            let _b = symmem::alloc::<f32>(1000).unwrap();
            let _w2 = world.window();
            let _c = symmem::alloc::<i64>(3).unwrap();
            assert_eq!(route(), (Some("world".into()), 4));
            panic!("boom inside the window");
        }));
        let p = r.unwrap_err();
        assert_eq!(panic_text(&*p), "boom inside the window");
        assert_eq!(route(), (Some("world".into()), 1));
        assert_eq!(tp.stats().in_use_bytes, 0);
        assert_eq!(tp.stats().allocated_blocks, 0);
        assert_eq!(world.stats().in_use_bytes, 0);
        assert_eq!(pool_of_next_alloc(), "world");
    });
}

#[test]
fn windows_are_per_thread() {
    // Rank 0 holds a window while rank 1 allocates: rank 1's allocations are not routed.
    let barrier = Barrier::new(2);
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        // Creating a symmetric segment is a collective: do it on both ranks first.
        world.reserve_symmetric(4096).unwrap();
        if ctx.rank() == 0 {
            let _w = world.window();
            barrier.wait(); // window open on rank 0
            barrier.wait(); // rank 1 has checked
            assert_eq!(pool_of_next_alloc(), "world");
        } else {
            barrier.wait();
            assert_eq!(route(), (None, 0));
            assert_eq!(pool_of_next_alloc(), "default");
            barrier.wait();
        }
        // A plain thread spawned inside a window does not inherit it.
        let _w = world.window();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(route(), (None, 0));
                assert!(matches!(symmem::alloc::<f32>(4), Err(Error::NoRankContext)));
            });
        });
        assert_eq!(route(), (Some("world".into()), 1));
    })
    .unwrap();
}

#[test]
fn out_of_order_drop_is_detected() {
    one_rank(|_, world, tp| {
        let outer = world.window();
        let inner = tp.window();
        // Dropping the outer guard first restores what was current before it (no window).
        drop(outer);
        assert_eq!(route(), (None, 0));
        // The inner guard, dropped late, panics and leaves routing alone.
        let p = catch_unwind(AssertUnwindSafe(move || drop(inner))).unwrap_err();
        let msg = panic_text(&*p);
        assert!(
            msg.contains("window guard was dropped after the window enclosing it had ended"),
            "{msg}"
        );
        assert!(msg.contains("drop guards in reverse order"), "{msg}");
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
    });
}

#[test]
fn out_of_order_drop_is_detected_after_a_new_sibling_window() {
    one_rank(|_, world, tp| {
        let outer = world.window();
        let inner = tp.window();
        drop(outer);
        let sibling = world.window(); // reuses the outer guard's nesting level
        let p = catch_unwind(AssertUnwindSafe(move || drop(inner))).unwrap_err();
        assert!(panic_text(&*p).contains("dropped after the window enclosing it had ended"));
        assert_eq!(
            route(),
            (Some("world".into()), 1),
            "the sibling window must stay in force"
        );
        drop(sibling);
    });
}

#[test]
fn forgotten_inner_guard_is_healed_by_the_outer_guard() {
    one_rank(|_, world, tp| {
        let outer = world.window();
        std::mem::forget(tp.window());
        std::mem::forget(symmem::opt_out());
        std::mem::forget(tp.window());
        assert_eq!(route(), (Some("tp".into()), 4));
        drop(outer);
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
        // The same in the middle of a stack.
        let a = tp.window();
        let b = world.window();
        std::mem::forget(symmem::opt_out());
        drop(b);
        assert_eq!(route(), (Some("tp".into()), 1));
        drop(a);
    });
}

#[test]
fn deep_nesting_beyond_the_recorded_levels() {
    one_rank(|_, world, tp| {
        let mut guards = Vec::new();
        for i in 0..100 {
            guards.push(if i % 2 == 0 {
                world.window()
            } else {
                tp.window()
            });
        }
        assert_eq!(route(), (Some("tp".into()), 100));
        // Forget the 30 innermost, then drop the rest in reverse order: the first drop heals.
        for _ in 0..30 {
            std::mem::forget(guards.pop().unwrap());
        }
        assert_eq!(symmem::window_depth(), 100);
        while let Some(g) = guards.pop() {
            drop(g);
            let d = guards.len();
            assert_eq!(symmem::window_depth(), d);
            let expect = match d {
                0 => None,
                d if (d - 1) % 2 == 0 => Some("world".to_string()),
                _ => Some("tp".to_string()),
            };
            assert_eq!(symmem::routed_group(), expect);
        }
    });
}

/// Out-of-order drops are detected at any depth, also beyond the levels the thread state
/// records in line (the ids of deeper guards are kept off the hot path).
#[test]
fn out_of_order_drop_is_detected_beyond_the_recorded_levels() {
    one_rank(|_, world, tp| {
        let mut base = Vec::new();
        for _ in 0..70 {
            base.push(world.window());
        }
        let outer = world.window();
        let inner = tp.window();
        drop(outer);
        // Two new windows take the levels of `outer` and `inner`.
        let s1 = world.window();
        let s2 = tp.window();
        assert_eq!(route(), (Some("tp".into()), 72));
        let p = catch_unwind(AssertUnwindSafe(move || drop(inner))).unwrap_err();
        assert!(panic_text(&*p).contains("dropped after the window enclosing it had ended"));
        // The live windows are untouched.
        assert_eq!(route(), (Some("tp".into()), 72));
        drop(s2);
        drop(s1);
        while let Some(g) = base.pop() {
            drop(g);
        }
        assert_eq!(route(), (None, 0));
    });
}

#[test]
fn reset_routing_forgets_every_window() {
    one_rank(|_, world, tp| {
        std::mem::forget(world.window());
        std::mem::forget(tp.window());
        assert_eq!(route(), (Some("tp".into()), 2));
        symmem::reset_routing();
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
        // A guard from before the reset leaves routing alone when it drops after it.
        let old = world.window();
        symmem::reset_routing();
        let new = tp.window();
        drop(old);
        assert_eq!(route(), (Some("tp".into()), 1));
        drop(new);
        assert_eq!(route(), (None, 0));
    });
}

#[test]
fn disabled_window_is_inert() {
    one_rank(|_, world, _| {
        let g = enter_unless(true, "world");
        assert!(!g.is_active());
        assert_eq!(route(), (None, 0));
        assert_eq!(pool_of_next_alloc(), "default");
        {
            let _w = world.window();
            let d = enter_unless(true, "tp");
            assert_eq!(route(), (Some("world".into()), 1));
            drop(d);
            assert_eq!(route(), (Some("world".into()), 1));
        }
        drop(g);
        assert_eq!(route(), (None, 0));
        let e = enter_unless(false, "world");
        assert!(e.is_active());
        assert_eq!(route(), (Some("world".into()), 1));
        drop(e);
        // An inert guard made from scratch is inert too.
        let i = symmem::WindowGuard::inert();
        assert!(!i.is_active());
        assert_eq!(route(), (None, 0));
    });
}

#[test]
fn window_for_a_missing_group_fails_at_allocation() {
    one_rank(|_, world, _| {
        {
            let _w = enter("nope");
            assert_eq!(route(), (Some("nope".into()), 1));
            match symmem::alloc::<f32>(10) {
                Err(Error::GroupNotFound { name, known }) => {
                    assert_eq!(name, "nope");
                    assert_eq!(known, "world, tp");
                }
                other => panic!("expected GroupNotFound, got {other:?}"),
            }
            assert!(matches!(
                symmem::alloc_zeroed::<f32>(10),
                Err(Error::GroupNotFound { .. })
            ));
            // Nested windows inside still work, and the missing route comes back after them.
            {
                let _x = world.window();
                assert_eq!(pool_of_next_alloc(), "world");
            }
            assert!(symmem::alloc::<u8>(1).is_err());
        }
        assert_eq!(pool_of_next_alloc(), "default");
    });
    // Without a rank context the window opens too, and allocation reports the missing rank.
    let w = enter("tp");
    assert_eq!(route(), (Some("tp".into()), 1));
    assert!(matches!(symmem::alloc::<f32>(1), Err(Error::NoRankContext)));
    drop(w);
    assert!(matches!(symmem::alloc::<f32>(1), Err(Error::NoRankContext)));
}

#[test]
fn no_capture_window_panics_only_during_capture() {
    one_rank(|_, _, _| {
        {
            let _w = enter_no_capture(false, "world", "eager_only");
            assert_eq!(route(), (Some("world".into()), 1));
        }
        let r = symmem::capture(|| {
            let p = catch_unwind(|| {
                let _w = enter_no_capture(false, "world", "eager_only");
            })
            .unwrap_err();
            Ok(panic_text(&*p))
        });
        let (_graph, msg) = r.unwrap();
        assert!(msg.contains("`eager_only` is marked"), "{msg}");
        assert!(msg.contains("capture = \"never\""), "{msg}");
        assert_eq!(route(), (None, 0));
    });
}

fn noop_waker() -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable functions do nothing and ignore the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// A future that is pending once, recording the route at each poll.
struct TwoPolls {
    seen: Vec<(Option<String>, usize)>,
}

impl Future for TwoPolls {
    type Output = Vec<(Option<String>, usize)>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.seen.push(route());
        if self.seen.len() < 2 {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(std::mem::take(&mut self.seen))
        }
    }
}

#[test]
fn routed_future_enters_the_window_around_each_poll_only() {
    one_rank(|_, _, _| {
        let waker = noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = Box::pin(routed(false, "tp", TwoPolls { seen: Vec::new() }));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            route(),
            (None, 0),
            "the window must not stay open between polls"
        );
        let seen = match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("second poll must finish"),
        };
        assert_eq!(seen, vec![(Some("tp".into()), 1), (Some("tp".into()), 1)]);
        let mut off = Box::pin(routed(true, "tp", TwoPolls { seen: Vec::new() }));
        assert!(off.as_mut().poll(&mut cx).is_pending());
        match off.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => assert_eq!(v, vec![(None, 0), (None, 0)]),
            std::task::Poll::Pending => panic!("second poll must finish"),
        }
    });
}

#[test]
fn guards_are_cheap_plain_values() {
    // The guard stays small: it is created and dropped on every annotated call.
    assert!(std::mem::size_of::<symmem::WindowGuard<'static>>() <= 64);
}
