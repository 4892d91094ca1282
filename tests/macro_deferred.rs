//! Deferred work and the window (issue 13, run-time side): what a synchronous annotated function
//! returns that runs later (a future, `#[async_trait]`'s boxed future, a lazy iterator) is routed
//! when it runs, after the function has returned; the window outlives every temporary of the body
//! (edition 2021, this package's edition: `tests/edition2024` checks 2024); `macro_rules!`
//! fragments are accepted as arguments; the `capture = "never"` refusal names `Type::method` and
//! the call site.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use symmem::{symmetric_memory, Buffer, Error};

/// Pending once, then ready: an `.await` point.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn noop_waker() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions do nothing and ignore the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// Poll `fut` to completion, checking that the thread is not routed between polls.
fn drive<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => {
                assert_eq!(symmem::routed_group(), None, "routed between polls");
                assert_eq!(symmem::window_depth(), 0);
            }
        }
    }
}

/// Allocates after an `.await`: only routed if each poll is.
async fn alloc_later(n: usize) -> Result<Buffer<f32>, Error> {
    YieldOnce(false).await;
    symmem::alloc::<f32>(n)
}

#[symmetric_memory(group = "world")]
fn returns_impl_future(
    n: usize,
) -> impl Future<Output = Result<(Buffer<f32>, Buffer<f32>), Error>> {
    let now = symmem::alloc::<f32>(n); // in the function: routed by the window
    async move {
        YieldOnce(false).await;
        let later = symmem::alloc::<f32>(n)?;
        Ok((now?, later))
    }
}

#[symmetric_memory(group = "world")]
fn returns_async_fn_call(n: usize) -> impl Future<Output = Result<Buffer<f32>, Error>> + Send {
    alloc_later(n)
}

#[symmetric_memory(group = "world")]
fn returns_early(early: bool) -> impl Future<Output = Result<Buffer<f32>, Error>> {
    if early {
        return alloc_later(4);
    }
    alloc_later(8)
}

#[symmetric_memory(group = "world", disabled = !route)]
fn maybe_routed_future(route: bool) -> impl Future<Output = Result<Buffer<f32>, Error>> {
    alloc_later(4)
}

#[test]
fn returned_futures_are_routed_when_polled_after_the_function_returned() {
    let out = symmem::host::run(2, |_ctx| -> Result<(), Error> {
        let fut = returns_impl_future(16);
        assert_eq!(symmem::routed_group(), None);
        let (now, later) = drive(fut)?;
        assert_eq!(now.group_name(), Some("world"));
        assert_eq!(later.group_name(), Some("world"));

        let b = drive(returns_async_fn_call(16))?;
        assert!(b.is_symmetric());
        // Not routed without the macro (the test would pass vacuously otherwise).
        assert!(!drive(alloc_later(16))?.is_symmetric());

        assert!(drive(returns_early(true))?.is_symmetric());
        assert!(drive(returns_early(false))?.is_symmetric());

        assert!(drive(maybe_routed_future(true))?.is_symmetric());
        assert!(!drive(maybe_routed_future(false))?.is_symmetric());
        assert_eq!(symmem::window_depth(), 0);
        Ok(())
    })
    .unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
}

/// The shape `#[async_trait]` gives an `async fn` in a trait impl (written by hand: the crate is
/// not a dependency): a boxed, `Send` future with the `'async_trait` lifetime.
trait Layer {
    fn forward<'life0, 'async_trait>(
        &'life0 self,
        n: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Buffer<f32>, Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait;
}

struct Mlp {
    scale: usize,
}

impl Layer for Mlp {
    #[symmetric_memory(group = "world")]
    fn forward<'life0, 'async_trait>(
        &'life0 self,
        n: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Buffer<f32>, Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let __self = self;
            let __ret: Result<Buffer<f32>, Error> = {
                YieldOnce(false).await;
                symmem::alloc::<f32>(n * __self.scale)
            };
            #[allow(unreachable_code)]
            __ret
        })
    }
}

/// `futures::future::BoxFuture`'s definition.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[symmetric_memory(group = "world")]
fn returns_box_future(n: usize) -> BoxFuture<'static, Result<Buffer<f32>, Error>> {
    Box::pin(alloc_later(n))
}

#[test]
fn async_trait_shape_and_box_future_are_routed() {
    let out = symmem::host::run(2, |_ctx| -> Result<(), Error> {
        let layer: &dyn Layer = &Mlp { scale: 2 };
        let fut = layer.forward(8);
        let b = drive(fut)?;
        assert_eq!(b.group_name(), Some("world"));
        assert_eq!(b.len(), 16);
        let b = drive(returns_box_future(4))?;
        assert!(b.is_symmetric());
        Ok(())
    })
    .unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
}

#[symmetric_memory(group = "world")]
fn lazy_buffers(sizes: &[usize]) -> impl Iterator<Item = Result<Buffer<f32>, Error>> + '_ {
    sizes.iter().map(|&n| symmem::alloc(n))
}

#[symmetric_memory(group = "world")]
fn lazy_both_ends(n: usize) -> impl DoubleEndedIterator<Item = usize> + ExactSizeIterator {
    (0..n).map(|_| symmem::window_depth())
}

#[test]
fn returned_lazy_iterators_are_routed_on_each_next() {
    let out = symmem::host::run(2, |_ctx| -> Result<(), Error> {
        let mut it = lazy_buffers(&[4, 8, 16]);
        assert_eq!(symmem::routed_group(), None);
        let first = it.next().unwrap()?;
        assert_eq!(first.group_name(), Some("world"));
        // Between two `next` calls the thread is not routed.
        assert_eq!(symmem::routed_group(), None);
        assert!(!symmem::alloc::<f32>(4)?.is_symmetric());
        let rest: Vec<_> = it.collect::<Result<_, _>>()?;
        assert!(rest.iter().all(Buffer::is_symmetric));
        assert_eq!(rest.len(), 2);

        let it = lazy_both_ends(3);
        assert_eq!(it.len(), 3);
        assert_eq!(it.rev().collect::<Vec<_>>(), vec![1, 1, 1]);
        Ok(())
    })
    .unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
}

// Edition 2021 (this package's): temporaries of the tail expression outlive the body's locals.
// Guards created there must still drop inside the window.

#[symmetric_memory(group = "world")]
fn opt_out_in_tail() -> bool {
    symmem::opt_out().is_active()
}

#[symmetric_memory(group = "world")]
fn window_in_tail() -> Option<usize> {
    if let Ok(ref _w) = symmem::window("world") {
        Some(symmem::window_depth())
    } else {
        None
    }
}

#[symmetric_memory(group = "world")]
fn items_first() -> usize {
    fn helper() -> usize {
        symmem::window_depth()
    }
    helper()
}

#[test]
fn guards_in_the_tail_expression_drop_inside_the_window() {
    symmem::host::run(1, |_ctx| {
        assert!(opt_out_in_tail());
        assert_eq!(window_in_tail(), Some(2));
        assert_eq!(items_first(), 1);
        assert_eq!(symmem::window_depth(), 0);
    })
    .unwrap();
}

// `macro_rules!` fragments: they reach the attribute in invisible groups.
macro_rules! routed_fn {
    ($name:ident, $g:literal, $d:expr, $c:literal, $k:literal) => {
        #[symmetric_memory(group = $g, disabled = $d, capture = $c, crate = $k)]
        fn $name() -> Result<Buffer<f32>, Error> {
            symmem::alloc::<f32>(4)
        }
    };
    ($name:ident, expr $g:expr) => {
        #[symmetric_memory(group = $g)]
        fn $name() -> Result<Buffer<f32>, Error> {
            symmem::alloc::<f32>(4)
        }
    };
}

routed_fn!(from_literals, "world", false, "never", "::symmem");
routed_fn!(
    from_literals_disabled,
    "world",
    std::hint::black_box(true),
    "checked",
    "symmem"
);
routed_fn!(from_expr, expr "world");

#[test]
fn macro_rules_fragments_are_accepted() {
    let out = symmem::host::run(2, |_ctx| -> Result<(), Error> {
        assert!(from_literals()?.is_symmetric());
        assert!(!from_literals_disabled()?.is_symmetric());
        assert!(from_expr()?.is_symmetric());
        Ok(())
    })
    .unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
}

struct Dumper;

impl Dumper {
    #[symmetric_memory(group = "world", capture = "never")]
    fn dump(&self, b: &Buffer<f32>) -> Result<Vec<f32>, Error> {
        b.to_host_vec()
    }
}

#[symmetric_memory(group = "world", capture = "never")]
fn dump_free(b: &Buffer<f32>) -> Result<Vec<f32>, Error> {
    b.to_host_vec()
}

/// Where the last `capture = "never"` refusal panicked.
static REFUSED_AT: Mutex<Option<(String, u32)>> = Mutex::new(None);

fn refusal(f: impl FnOnce()) -> (String, (String, u32)) {
    let panic = catch_unwind(AssertUnwindSafe(f)).expect_err("must refuse under capture");
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let at = REFUSED_AT
        .lock()
        .unwrap()
        .take()
        .expect("hook saw the panic");
    (msg, at)
}

#[test]
fn capture_never_refusal_names_the_method_and_the_call_site() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info.to_string();
        if text.contains("capture = \"never\"") {
            if let Some(l) = info.location() {
                *REFUSED_AT.lock().unwrap() = Some((l.file().to_string(), l.line()));
            }
        } else {
            default_hook(info);
        }
    }));
    let out = symmem::host::run(1, |_ctx| -> Result<(), Error> {
        let b = symmem::alloc_zeroed::<f32>(4)?;
        let d = Dumper;
        assert_eq!(d.dump(&b)?, vec![0.0; 4]);

        let line = line!() + 1;
        let (msg, at) = refusal(|| drop(symmem::capture(|| d.dump(&b))));
        assert!(msg.contains("`Dumper::dump`"), "{msg}");
        assert_eq!(at, (file!().to_string(), line), "{msg}");

        let line = line!() + 1;
        let (msg, at) = refusal(|| drop(symmem::capture(|| dump_free(&b))));
        assert!(msg.contains("`dump_free`"), "{msg}");
        assert_eq!(at, (file!().to_string(), line), "{msg}");
        Ok(())
    })
    .unwrap();
    let _ = std::panic::take_hook();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
}
