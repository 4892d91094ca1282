//! `async fn`: every poll of the body runs in the window; `?`, early `return` and the inferred
//! return type work as without the attribute.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
async fn two_steps(n: usize, fail: bool) -> Result<(Buffer<f32>, Buffer<f32>), Error> {
    let a = symmem::alloc::<f32>(n)?;
    YieldOnce(false).await;
    if n == 0 {
        return Err(Error::GroupNotFound {
            name: "none".into(),
            known: String::new(),
        });
    }
    let r: Result<usize, Error> = if fail {
        symmem::group("nope").map(|g| g.size())
    } else {
        Ok(n)
    };
    let b = symmem::alloc::<f32>(r?)?;
    Ok((a, b))
}

#[symmetric_memory(group = "world")]
async fn returns_impl_trait(n: usize) -> impl std::fmt::Debug {
    YieldOnce(false).await;
    symmem::routed_group().map(|g| (g, n))
}

#[symmetric_memory(group = "world")]
async fn coerces() -> Box<dyn std::fmt::Debug> {
    if symmem::window_depth() > 100 {
        return Box::new(1u8);
    }
    Box::new("window")
}

#[symmetric_memory(group = "world")]
async unsafe fn read_async(p: *const u32) -> u32 {
    YieldOnce(false).await;
    *p // an unsafe operation of the `unsafe fn` body, now inside the routed block
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let (a, b) = block_on(two_steps(4, false)).unwrap();
        assert!(a.group_name() == Some("world") && b.group_name() == Some("world"));
        assert!(block_on(two_steps(4, true)).is_err());
        assert!(block_on(two_steps(0, false)).is_err());
        assert_eq!(
            format!("{:?}", block_on(returns_impl_trait(3))),
            r#"Some(("world", 3))"#
        );
        assert_eq!(format!("{:?}", block_on(coerces())), r#""window""#);
        let x = 5u32;
        // SAFETY: `&x` is valid for the whole call.
        assert_eq!(block_on(unsafe { read_async(&x) }), 5);
        assert_eq!(symmem::window_depth(), 0);
    })
    .unwrap();
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions do nothing.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Pending once: an `.await` point.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}
