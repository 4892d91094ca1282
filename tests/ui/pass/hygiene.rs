//! The generated locals are hygienic: user variables with the same names neither see nor
//! shadow them.
#![deny(unused_variables)]
use symmem::symmetric_memory;

#[symmetric_memory(group = "world")]
fn user_names(__symmem_window: u32) -> (u32, Option<String>) {
    let __symmem_window = __symmem_window + 1;
    drop(__symmem_window); // drops the user's `u32`, not the window guard
    (__symmem_window, symmem::routed_group())
}

#[symmetric_memory(group = "world")]
async fn async_names(__symmem_disabled: bool, __symmem_return: u8) -> (bool, u8, Option<String>) {
    (__symmem_disabled, __symmem_return, symmem::routed_group())
}

fn main() {
    assert_eq!(user_names(1), (2, Some("world".into())));
    assert_eq!(
        block_on(async_names(true, 3)),
        (true, 3, Some("world".into()))
    );
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
