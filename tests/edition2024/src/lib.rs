//! `#[symmetric_memory]` in edition 2024 (the workspace is edition 2021: `tests/macro_deferred.rs`
//! covers it), through a dependency renamed `sm`: the attribute finds the facade as `::sm`
//! without `crate = "::sm"`.

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use sm::{Buffer, Error, symmetric_memory};

    #[symmetric_memory(group = "world")]
    fn opt_out_in_tail() -> bool {
        sm::opt_out().is_active()
    }

    #[symmetric_memory(group = "world")]
    fn window_in_tail() -> Option<usize> {
        if let Ok(ref _w) = sm::window("world") {
            Some(sm::window_depth())
        } else {
            None
        }
    }

    #[symmetric_memory(group = "world")]
    fn alloc_here(n: usize) -> Result<Buffer<f32>, Error> {
        sm::alloc::<f32>(n)
    }

    #[symmetric_memory(group = "world")]
    fn alloc_later(n: usize) -> impl Future<Output = Result<Buffer<f32>, Error>> {
        async move { sm::alloc::<f32>(n) }
    }

    #[symmetric_memory(group = "world")]
    async fn alloc_async(n: usize) -> Result<Buffer<f32>, Error> {
        sm::alloc::<f32>(n)
    }

    fn ready<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn guards_in_the_tail_drop_inside_the_window() {
        sm::host::run(1, |_ctx| {
            assert!(opt_out_in_tail());
            assert_eq!(window_in_tail(), Some(2));
            assert_eq!(sm::window_depth(), 0);
        })
        .unwrap();
    }

    #[test]
    fn renamed_facade_routes() {
        let out = sm::host::run(2, |_ctx| -> Result<(), Error> {
            assert!(alloc_here(4)?.is_symmetric());
            assert!(ready(alloc_later(4))?.is_symmetric());
            assert!(ready(alloc_async(4))?.is_symmetric());
            Ok(())
        })
        .unwrap();
        assert!(out.iter().all(Result::is_ok), "{out:?}");
    }
}
