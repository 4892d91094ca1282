//! Async methods (inherent and in a trait) with `self` and moved arguments; the future is `Send`
//! when its captures are (the window guard is never part of it).
use symmem::{symmetric_memory, Buffer, Error};

struct Layer {
    rows: usize,
}

impl Layer {
    #[symmetric_memory(group = "world")]
    async fn forward(&self, input: Vec<f32>) -> Result<Buffer<f32>, Error> {
        YieldOnce(false).await;
        symmem::alloc::<f32>(self.rows * input.len())
    }

    #[symmetric_memory(group = "world")]
    async fn consume(self, extra: String) -> Result<(usize, String), Error> {
        YieldOnce(false).await;
        Ok((self.rows, extra))
    }
}

trait AsyncForward {
    #[symmetric_memory(group = "world")]
    async fn run(&self) -> Option<String> {
        YieldOnce(false).await;
        symmem::routed_group()
    }
}

impl AsyncForward for Layer {}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let l = Layer { rows: 2 };
        let b = block_on(assert_send(l.forward(vec![0.0; 3]))).unwrap();
        assert_eq!((b.len(), b.group_name()), (6, Some("world")));
        assert_eq!(block_on(l.run()).as_deref(), Some("world"));
        assert_eq!(
            block_on(l.consume("x".into())).unwrap(),
            (2, "x".to_string())
        );
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
