//! What `#[symmetric_memory]` expands to. Not a stable API: reached through
//! `symmem::__private`, whose version is kept in step with the macro's.

use std::future::Future;
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

/// [`enter_unless`] for functions marked `capture = "never"`: panics when the thread captures.
#[inline]
pub fn enter_no_capture(
    disabled: bool,
    group: &'static str,
    function: &'static str,
) -> WindowGuard<'static> {
    if is_capturing() {
        never_in_capture(group, function)
    }
    enter_unless(disabled, group)
}

#[cold]
#[inline(never)]
#[track_caller]
fn never_in_capture(group: &str, function: &str) -> ! {
    panic!(
        "symmem: `{function}` is marked `#[symmetric_memory(group = \"{group}\", capture = \"never\")]` and was called during CUDA graph capture; call it outside `symmem::capture(...)`, or remove `capture = \"never\"` and fix what the compile-time capture checks report"
    )
}

/// A future that runs each `poll` of the inner future inside the window (the guard is never
/// held across `.await`: routing is per thread and a task may move between threads).
#[must_use = "futures do nothing unless polled"]
pub struct Routed<F> {
    fut: F,
    group: &'static str,
    disabled: bool,
}

impl<F: std::fmt::Debug> std::fmt::Debug for Routed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("group", &self.group)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// Wrap `fut` so that every poll runs inside `group`'s window.
#[inline]
pub fn routed<F: Future>(disabled: bool, group: &'static str, fut: F) -> Routed<F> {
    Routed {
        fut,
        group,
        disabled,
    }
}

impl<F: Future> Future for Routed<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`, and `Routed`
        // has no Drop impl and is not Unpin-dependent in another way.
        let this = unsafe { self.get_unchecked_mut() };
        let _w = enter_unless(this.disabled, this.group);
        unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}
