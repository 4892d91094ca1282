//! `disabled = <expr>` is evaluated at each call, inside the function (it may use `self` and
//! the arguments); when true the window is inert.
use symmem::{symmetric_memory, Buffer, Error};

struct Layer {
    symmetric: bool,
}

impl Layer {
    #[symmetric_memory(group = "world", disabled = !self.symmetric)]
    fn forward(&self, n: usize) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(n)
    }
}

#[symmetric_memory(group = "world", disabled = n < 4)]
fn only_large(n: usize) -> Result<Buffer<f32>, Error> {
    symmem::alloc::<f32>(n)
}

#[symmetric_memory(group = "world", disabled = true)]
fn never_routed() -> Option<String> {
    symmem::routed_group()
}

#[symmetric_memory(group = "world", disabled = std::env::var_os("SYMMEM_UI_NEVER_SET").is_some())]
async fn async_enabled() -> Option<String> {
    symmem::routed_group()
}

fn main() {
    symmem::host::run(2, |_ctx| {
        assert!(Layer { symmetric: true }.forward(4).unwrap().is_symmetric());
        assert!(!Layer { symmetric: false }
            .forward(4)
            .unwrap()
            .is_symmetric());
        assert!(!only_large(2).unwrap().is_symmetric());
        assert!(only_large(8).unwrap().is_symmetric());
        assert_eq!(never_routed(), None);
        assert_eq!(block_on(async_enabled()).as_deref(), Some("world"));
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

#[allow(dead_code)]
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
