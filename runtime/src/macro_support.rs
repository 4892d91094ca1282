//! What `#[symmetric_memory]` expands to. Not a stable API: reached through
//! `symmem::__private`, whose version is kept in step with the macro's.

use std::future::Future;
use std::iter::FusedIterator;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::rank::current::enter_named;
use crate::thread::is_capturing;

pub use crate::window::WindowGuard;

/// Enter the window of the current thread's group `group` (infallible: a missing group makes
/// allocations inside fail with `GroupNotFound`).
#[inline]
pub fn enter(group: &'static str) -> WindowGuard<'static> {
    enter_named(group)
}

/// [`enter`], or an inert guard when `disabled`.
#[inline]
pub fn enter_unless(disabled: bool, group: &'static str) -> WindowGuard<'static> {
    if disabled {
        WindowGuard::inert()
    } else {
        enter_named(group)
    }
}

/// [`enter_unless`] for functions marked `capture = "never"`: panics when the thread captures,
/// at the caller's location (the macro marks the function `#[track_caller]` where Rust allows
/// it, so the panic names the call of the annotated function).
#[inline]
#[track_caller]
pub fn enter_no_capture(
    disabled: bool,
    group: &'static str,
    function: &'static str,
) -> WindowGuard<'static> {
    if is_capturing() {
        never_in_capture(group, function, None)
    }
    enter_unless(disabled, group)
}

/// [`enter_no_capture`] for a method of `S` (a function with a `self` receiver): the panic
/// names it `Type::method`.
#[inline]
#[track_caller]
pub fn enter_no_capture_method<S: ?Sized>(
    disabled: bool,
    group: &'static str,
    function: &'static str,
) -> WindowGuard<'static> {
    if is_capturing() {
        never_in_capture(group, function, Some(std::any::type_name::<S>()))
    }
    enter_unless(disabled, group)
}

/// `a::b::Type<c::D>` without the module paths: `Type<D>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or(""));
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or(""));
    out
}

#[cold]
#[inline(never)]
#[track_caller]
fn never_in_capture(group: &str, function: &str, owner: Option<&str>) -> ! {
    let function = match owner {
        Some(owner) => format!("{}::{function}", short_type_name(owner)),
        None => function.to_string(),
    };
    panic!(
        "symmem: `{function}` is marked `#[symmetric_memory(group = \"{group}\", capture = \"never\")]` and was called during CUDA graph capture; call it outside `symmem::capture(...)`, or remove `capture = \"never\"` and fix what the compile-time capture checks report"
    )
}

/// Deferred work that runs inside the window each time it runs: as a [`Future`], every `poll`
/// of the inner future; as an [`Iterator`], every `next` (and `next_back`) of the inner
/// iterator. The guard is never held across `.await` or between two `next` calls: routing is
/// per thread, and a task may move between threads.
#[must_use = "futures and iterators do nothing unless polled or iterated"]
#[derive(Clone)]
pub struct Routed<F> {
    inner: F,
    group: &'static str,
    disabled: bool,
}

impl<F> std::fmt::Debug for Routed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("group", &self.group)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Wrap `inner` (a future or an iterator) so that it runs inside `group`'s window.
#[inline]
pub fn routed<F>(disabled: bool, group: &'static str, inner: F) -> Routed<F> {
    Routed {
        inner,
        group,
        disabled,
    }
}

/// [`routed`] for a future whose output type is written in the function's return type
/// (`impl Future<Output = T>`): the bound gives the future's body its type, as the return type
/// did before the macro wrapped it.
#[inline]
pub fn routed_future<T, F: Future<Output = T>>(
    disabled: bool,
    group: &'static str,
    fut: F,
) -> Routed<F> {
    routed(disabled, group, fut)
}

/// [`routed`] for an iterator whose item type is written in the function's return type
/// (`impl Iterator<Item = T>`).
#[inline]
pub fn routed_iter<T, I: Iterator<Item = T>>(
    disabled: bool,
    group: &'static str,
    iter: I,
) -> Routed<I> {
    routed(disabled, group, iter)
}

/// A returned boxed future (`Pin<Box<dyn Future + ..>>`, `BoxFuture`, `#[async_trait]`'s
/// shape), routed and boxed again: the result coerces to the function's return type.
#[inline]
pub fn routed_boxed<F: Future>(disabled: bool, group: &'static str, fut: F) -> Pin<Box<Routed<F>>> {
    Box::pin(routed(disabled, group, fut))
}

/// The future `x` of a returned `Box::pin(x)` (`Pin<Box<dyn Future<Output = T> + ..>>`,
/// `BoxFuture<'_, T>`, `#[async_trait]`'s shape), routed and boxed once: the result coerces to
/// the function's return type; `T` gives `x` its output type, as the return type did.
#[inline]
pub fn routed_boxed_future<T, F: Future<Output = T>>(
    disabled: bool,
    group: &'static str,
    fut: F,
) -> Pin<Box<Routed<F>>> {
    Box::pin(routed(disabled, group, fut))
}

impl<F: Future> Future for Routed<F> {
    type Output = F::Output;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of `self` (no method
        // takes it by value, `Routed` has no Drop impl) and only reached through this pin here.
        // `Iterator::next` takes `&mut self`, reachable from a pin only when `Routed: Unpin`,
        // that is when `F: Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        let _w = enter_unless(this.disabled, this.group);
        // SAFETY: see above.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

impl<I: Iterator> Iterator for Routed<I> {
    type Item = I::Item;
    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let _w = enter_unless(self.disabled, self.group);
        self.inner.next()
    }
    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<I: DoubleEndedIterator> DoubleEndedIterator for Routed<I> {
    #[inline]
    fn next_back(&mut self) -> Option<I::Item> {
        let _w = enter_unless(self.disabled, self.group);
        self.inner.next_back()
    }
}

impl<I: ExactSizeIterator> ExactSizeIterator for Routed<I> {}

impl<I: FusedIterator> FusedIterator for Routed<I> {}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name("a::b::Stepper"), "Stepper");
        assert_eq!(short_type_name("a::Wrap<b::c::D, u8>"), "Wrap<D, u8>");
        assert_eq!(short_type_name("&[a::B]"), "&[B]");
    }
}
