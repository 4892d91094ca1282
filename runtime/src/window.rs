//! Pool-routing windows: the per-thread routing state and its guards.
//!
//! A *window* routes every allocation that the current thread makes through symmem
//! ([`crate::alloc`]) to one group's symmetric pool until the window's guard drops. Windows
//! nest: the innermost live window wins, and when it ends routing is what it was before. The
//! state is per thread (like PyTorch's `_cuda_beginAllocateCurrentThreadToPool`), so guards are
//! `!Send` and `!Sync`.
//!
//! ## The routing state machine
//!
//! Each thread has a *base* route and a stack of windows. The base route is the rank's default
//! pool when eager and the graph's capture-private pool while the thread captures a graph
//! ([`crate::capture()`]). A window pushes a group's symmetric pool; an [`OptOutGuard`] pushes the
//! base route; dropping a guard pops back to exactly what was current when it was created.
//!
//! ```text
//!   eager:   base = default pool      --window(tp)-->  tp pool  --drop--> default pool
//!   capture: base = capture pool      --window(tp)-->  tp pool (capture mode: no new segments)
//!                                                       --drop--> capture pool
//! ```
//!
//! Enter and exit touch only `Cell`s of a `const`-initialised thread local: no heap allocation,
//! no atomic, no system or driver call, no environment variable. (The one exception is the
//! error path of a window for a group the rank does not have: the first such window for a name
//! interns the name once, see `Route`.)
//!
//! ## Misuse
//!
//! * Guards dropped out of order (an outer guard before an inner one, possible only by moving
//!   guards into containers) are detected: the late inner guard panics with a message naming the
//!   misuse (unless the thread is already panicking), and routing stays what the outer guard
//!   restored.
//! * `mem::forget` of a guard leaves its window routing until its *enclosing* window ends, which
//!   restores the enclosing window's predecessor and so heals the state. A forgotten outermost
//!   window keeps routing the thread to its group until [`reset_routing`] is called or the rank
//!   context is dropped. Nothing is unsound: the pools a window routes to are kept alive by the
//!   rank context (see [`crate::RankContext`]).

use std::marker::PhantomData;

use crate::pool::Pool;
use crate::thread::{deep_guard, record_deep_guard, ThreadState, THREAD};

/// Where allocations of the current thread go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The base route: the rank's default pool, or the capture-private pool while capturing.
    Base,
    /// A group's symmetric pool (kept alive by the rank context's group table or the group
    /// handle the guard borrows).
    Group(*const Pool),
    /// A window for a group this rank does not have: allocations fail with `GroupNotFound`.
    Missing(&'static str),
}

/// A [`Target`] encoded in one machine word, as the routing state stores it: `0` is the base
/// route, an (8-aligned) pool address is a group, and the address of an interned name with the
/// low bit set is a missing group.
///
/// One word (instead of the 24-byte enum) keeps enter and exit to plain word loads and stores:
/// with the enum, exit stored the target as 16 + 8 bytes and the next enter loaded it as 8 + 16
/// bytes at other offsets, which defeats store-to-load forwarding and cost ~10 ns per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route(usize);

impl Route {
    pub(crate) const BASE: Route = Route(0);

    #[inline]
    fn encode(t: Target) -> Route {
        match t {
            Target::Base => Route::BASE,
            Target::Group(p) => {
                // The encoding needs pools at even, non-zero addresses (asserted below).
                debug_assert!(!p.is_null() && (p as usize) & 1 == 0);
                Route(p as usize)
            }
            Target::Missing(name) => {
                Route(intern_missing(name) as *const &'static str as usize | 1)
            }
        }
    }

    /// The route word as the thread state stores it.
    #[inline(always)]
    fn word(self) -> usize {
        self.0
    }

    /// The route of a word the thread state holds (made by [`Route::encode`]).
    #[inline(always)]
    pub(crate) fn from_word(word: usize) -> Route {
        Route(word)
    }

    #[inline]
    pub(crate) fn decode(self) -> Target {
        if self.0 == 0 {
            Target::Base
        } else if self.0 & 1 == 0 {
            Target::Group(self.0 as *const Pool)
        } else {
            // SAFETY: odd routes are made by `encode` from a leaked, never freed `&'static str`.
            Target::Missing(unsafe { *((self.0 & !1) as *const &'static str) })
        }
    }
}

// A pool address is even (its alignment is at least 2), so the low bit can mark missing names;
// an interned name slot (`&'static str`, word-aligned) is even too before the bit is set.
const _: () = assert!(std::mem::align_of::<Pool>() >= 2 && std::mem::align_of::<&str>() >= 2);

/// A stable address holding `name` (one leaked slot, and one leaked copy of a name that is not
/// `'static`, per distinct name; only windows for groups that are missing or not this thread's
/// get here, which is a cold error path).
#[cold]
#[inline(never)]
fn intern_missing(name: &str) -> &'static &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static &'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| ***n == name) {
        return n;
    }
    let copy: &'static str = Box::leak(name.to_string().into_boxed_str());
    let n: &'static &'static str = Box::leak(Box::new(copy));
    names.push(n);
    n
}

/// The routing a guard restores when it drops.
#[derive(Clone, Copy)]
struct Saved {
    target: Route,
    top: u64,
    depth: usize,
}

#[inline]
fn push(target: Route) -> (u64, Saved) {
    THREAD.with(|r| push_in(r, target))
}

#[inline(always)]
fn push_in(r: &ThreadState, target: Route) -> (u64, Saved) {
    {
        let id = r.next_guard.get();
        r.next_guard.set(id.wrapping_add(1));
        let saved = Saved {
            target: Route(r.route.get()),
            top: r.top_guard.get(),
            depth: r.depth.get(),
        };
        if let Some(slot) = r.guard_ids.get(saved.depth) {
            slot.set(id);
        } else {
            record_deep_guard(saved.depth, id);
        }
        r.route.set(target.word());
        r.top_guard.set(id);
        r.depth.set(saved.depth + 1);
        (id, saved)
    }
}

/// The route of a window on a group of another rank (or of a rank that is gone): a missing
/// target named after the group, so allocations fail instead of using a pool this thread's rank
/// does not keep alive.
#[cold]
#[inline(never)]
fn foreign_route(name: &str) -> Route {
    Route(intern_missing(name) as *const &'static str as usize | 1)
}

#[inline]
fn pop(id: u64, saved: Saved) {
    THREAD.with(|r| {
        if r.top_guard.get() == id {
            r.route.set(saved.target.word());
            r.top_guard.set(saved.top);
            r.depth.set(saved.depth);
        } else {
            pop_slow(r, id, saved)
        }
    })
}

#[cold]
#[inline(never)]
fn pop_slow(r: &ThreadState, id: u64, saved: Saved) {
    if id < r.reset_floor.get() {
        // `reset_routing` ran after this guard was created: routing was reset on purpose.
        return;
    }
    let pos = saved.depth;
    let in_chain = r.depth.get() > saved.depth
        && match r.guard_ids.get(pos) {
            Some(slot) => slot.get() == id,
            None => deep_guard(pos) == Some(id),
        };
    if in_chain {
        // Inner guards were forgotten (`mem::forget`) or are still alive and will be dropped
        // out of order: restore our predecessor, which heals the forgotten ones.
        r.route.set(saved.target.word());
        r.top_guard.set(saved.top);
        r.depth.set(saved.depth);
    } else if !std::thread::panicking() {
        panic!(
            "symmem: a window guard was dropped after the window enclosing it had ended \
             (guards dropped out of order, e.g. kept in a container that outlived the outer \
             guard); drop guards in reverse order of creation, or use scoped windows \
             (`#[symmetric_memory]`, `Group::with_window`)"
        );
    }
}

/// An open pool-routing window. Routing returns to what it was when this guard drops, on every
/// path (return, `?`, panic unwinding).
///
/// Created by [`crate::Group::window`], [`crate::window()`] or the `#[symmetric_memory]`
/// attribute. `!Send` and `!Sync`: routing is per thread.
#[must_use = "the window ends when the guard is dropped; bind it to a named variable (`let _w = ...`)"]
pub struct WindowGuard<'a> {
    id: u64,
    saved: Saved,
    active: bool,
    _not_send: PhantomData<*const ()>,
    _borrow: PhantomData<&'a ()>,
}

impl WindowGuard<'_> {
    #[inline]
    pub(crate) fn enter(target: Target) -> Self {
        let (id, saved) = push(Route::encode(target));
        WindowGuard {
            id,
            saved,
            active: true,
            _not_send: PhantomData,
            _borrow: PhantomData,
        }
    }

    /// A window routing to `pool` if the calling thread is rank `owner_rank`, else to a
    /// missing target named `name` (allocations fail). Reads the thread state once.
    #[inline]
    pub(crate) fn enter_for_rank<'n>(
        owner_rank: u64,
        pool: *const Pool,
        name: impl FnOnce() -> &'n str,
    ) -> Self {
        // Two small thread-local accesses rather than one closure holding both: a closure of
        // that size is not inlined into `LocalKey::with`, and the call then costs about 3 ns on
        // some hosts (seen on the H200 host, 2026-12-04: 12.1 ns instead of 9.2 ns per window).
        let target = if crate::thread::rank_id() == owner_rank {
            Route::encode(Target::Group(pool))
        } else {
            foreign_route(name())
        };
        let (id, saved) = push(target);
        WindowGuard {
            id,
            saved,
            active: true,
            _not_send: PhantomData,
            _borrow: PhantomData,
        }
    }

    /// A guard that routes nothing (a disabled window).
    #[inline]
    pub fn inert() -> Self {
        WindowGuard {
            id: 0,
            saved: Saved {
                target: Route::BASE,
                top: 0,
                depth: 0,
            },
            active: false,
            _not_send: PhantomData,
            _borrow: PhantomData,
        }
    }

    /// Whether this guard routes allocations (false for a disabled window).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active
    }
}

impl Drop for WindowGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.active {
            pop(self.id, self.saved);
        }
    }
}

impl std::fmt::Debug for WindowGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowGuard")
            .field("active", &self.active)
            .finish()
    }
}

/// A scoped opt-out: allocations go to the base route (the default pool, or the capture pool
/// while capturing) until this guard drops, even inside windows. Like SGLang's
/// disable/restore, for intermediates that must stay out of the symmetric pool.
#[must_use = "the opt-out ends when the guard is dropped; bind it to a named variable"]
pub struct OptOutGuard {
    inner: WindowGuard<'static>,
}

impl std::fmt::Debug for OptOutGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptOutGuard").finish_non_exhaustive()
    }
}

/// Opt out of any window on this thread until the returned guard drops.
#[inline]
pub fn opt_out() -> OptOutGuard {
    OptOutGuard {
        inner: WindowGuard::enter(Target::Base),
    }
}

impl OptOutGuard {
    /// Whether the guard is active (always true; for symmetry with [`WindowGuard`]).
    pub fn is_active(&self) -> bool {
        self.inner.is_active()
    }
}

/// Number of windows (and opt-outs) currently open on this thread.
pub fn window_depth() -> usize {
    THREAD.with(|r| r.depth.get())
}

/// Reset this thread's routing to the base route, forgetting every open window.
///
/// Only needed after `mem::forget` of an outermost guard. Guards still alive when this is called
/// will detect the reset when they drop and leave routing alone (or panic if they are dropped in
/// an order that cannot be explained by the reset).
pub fn reset_routing() {
    THREAD.with(|r| {
        r.reset_floor.set(r.next_guard.get());
        r.route.set(Route::BASE.word());
        r.top_guard.set(0);
        r.depth.set(0);
    })
}

#[inline]
pub(crate) fn current_target() -> Target {
    Route(THREAD.with(|r| r.route.get())).decode()
}

/// The name of the group the current thread routes allocations to, or `None` when it routes
/// to the default (or capture) pool.
pub fn routed_group() -> Option<String> {
    match current_target() {
        Target::Base => None,
        // SAFETY: a Group target points to a pool kept alive by the rank context or by the
        // group handle the live guard borrows.
        Target::Group(p) => Some(unsafe { &*p }.label().to_string()),
        Target::Missing(name) => Some(name.to_string()),
    }
}
