//! The per-thread state of symmem: one `const`, cache-line-aligned thread-local.
//!
//! Everything symmem keeps per thread lives in [`ThreadState`]: the routing word and the
//! bookkeeping of routing-window guards ([`crate::window`] gives them meaning), the rank
//! installed on the thread and the capture in progress. The rank and the capture are stored as
//! *erased* pointers: this module sits below the modules that define them
//! ([`crate::rank::current`] and [`crate::pool::graph`] cast them back), so that it imports
//! nothing of the layers above it. The capture refusals live here because every layer needs
//! them and they need only "is this thread capturing?".
//!
//! All fields are `Cell`s of `Copy` data, so the thread-local has no destructor and access
//! compiles to a plain TLS offset (no lazy-initialisation check).

use std::cell::Cell;

use symmem_rules::refusals::Refusal;

use crate::error::{Error, Result};

/// How many guard ids [`ThreadState::guard_ids`] records in line; deeper ones go to
/// [`DEEP_GUARD_IDS`] (off the hot path: only windows nested more than this deep touch it).
pub(crate) const GUARD_ID_SLOTS: usize = 64;

/// The per-thread state.
///
/// Aligned to a cache line, with the fields a window reads and writes first: otherwise its place
/// in the thread-local block depends on the other thread-locals of the program, and a guard's
/// 16-byte save and restore of `route` and `top_guard` can straddle two lines (measured: 0.8 ns
/// more per window on the development CPU when it did). The layout is asserted below.
#[repr(C, align(64))]
pub(crate) struct ThreadState {
    /// Where allocations go, as one word (see `crate::window::Route`): 0 is the base route.
    pub(crate) route: Cell<usize>,
    /// Id of the innermost live guard (0: none).
    pub(crate) top_guard: Cell<u64>,
    /// Number of live (or forgotten) guards.
    pub(crate) depth: Cell<usize>,
    /// The id the next guard gets (ids only grow).
    pub(crate) next_guard: Cell<u64>,
    /// The rank installed on this thread, erased (`*const rank::context::RankInner`; null: none).
    pub(crate) rank: Cell<*const ()>,
    /// The capture in progress on this thread, erased (`*const pool::graph::CaptureBlocks`;
    /// null: none).
    pub(crate) capture: Cell<*const ()>,
    /// Id of the rank installed on this thread (0: none); what a group's window and collectives
    /// compare with their group's rank, so that only the rank's own thread acts as the rank.
    pub(crate) rank_id: Cell<u64>,
    /// Ids of the live guards by nesting position (the first [`GUARD_ID_SLOTS`] levels), used
    /// only on the slow path to tell a forgotten inner guard from a guard dropped out of order.
    /// Every window writes its slot: the first one shares the first cache line (a window at
    /// depth 0 then writes one line; measured on the H200 host, 2026-12-04: 11.6 ns per window
    /// with slot 0 in the second line, 8.8 ns before).
    pub(crate) guard_ids: [Cell<u64>; GUARD_ID_SLOTS],
    /// Set by `reset_routing` to the next guard id: guards with a smaller id were created
    /// before the reset and leave routing alone. (Guard ids only grow, so this replaces a
    /// per-guard epoch and keeps it off the fast path; read only on the slow path.)
    pub(crate) reset_floor: Cell<u64>,
}

// The hot fields a window touches (route, top guard, depth, next id) share the first cache line,
// and so do the rank and capture pointers that `alloc` reads with the route.
const _: () = {
    assert!(std::mem::align_of::<ThreadState>() == 64);
    assert!(std::mem::offset_of!(ThreadState, route) == 0);
    assert!(std::mem::offset_of!(ThreadState, top_guard) == 8);
    assert!(std::mem::offset_of!(ThreadState, capture) + 8 <= 64);
    assert!(std::mem::offset_of!(ThreadState, rank_id) + 8 <= 64);
    assert!(std::mem::offset_of!(ThreadState, guard_ids) + 8 <= 64);
};

thread_local! {
    /// The one thread-local of symmem.
    pub(crate) static THREAD: ThreadState = const {
        ThreadState {
            route: Cell::new(0),
            top_guard: Cell::new(0),
            depth: Cell::new(0),
            next_guard: Cell::new(1),
            rank: Cell::new(std::ptr::null()),
            capture: Cell::new(std::ptr::null()),
            rank_id: Cell::new(0),
            guard_ids: [const { Cell::new(0) }; GUARD_ID_SLOTS],
            reset_floor: Cell::new(0),
        }
    };
}

thread_local! {
    /// Ids of the live guards nested deeper than [`GUARD_ID_SLOTS`] (position - slots).
    static DEEP_GUARD_IDS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Record the id of the guard at nesting position `pos` (>= [`GUARD_ID_SLOTS`]).
#[cold]
#[inline(never)]
pub(crate) fn record_deep_guard(pos: usize, id: u64) {
    DEEP_GUARD_IDS.with(|d| {
        let mut d = d.borrow_mut();
        let i = pos - GUARD_ID_SLOTS;
        if d.len() <= i {
            d.resize(i + 1, 0);
        }
        d[i] = id;
    })
}

/// The id recorded for the guard at nesting position `pos` (>= [`GUARD_ID_SLOTS`]).
#[cold]
pub(crate) fn deep_guard(pos: usize) -> Option<u64> {
    DEEP_GUARD_IDS.with(|d| d.borrow().get(pos - GUARD_ID_SLOTS).copied())
}

/// Whether the calling thread is capturing a graph.
#[inline]
pub fn is_capturing() -> bool {
    THREAD.with(|t| !t.capture.get().is_null())
}

/// The erased pointer of the rank installed on this thread (null: none).
#[inline(always)]
pub(crate) fn rank_ptr() -> *const () {
    THREAD.with(|t| t.rank.get())
}

/// Id of the rank installed on this thread (0: none).
#[inline(always)]
pub(crate) fn rank_id() -> u64 {
    THREAD.with(|t| t.rank_id.get())
}

/// The error of a rank's operation called from a thread that is not the rank's.
#[cold]
#[inline(never)]
pub(crate) fn wrong_thread(op: &'static str, group: &str, rank: usize) -> Error {
    if rank_id() == 0 {
        return Error::NoRankContext;
    }
    let thread = std::thread::current();
    Error::WrongDevice {
        op,
        detail: format!(
            "called on thread `{}`, which is not the thread of rank {rank} of group `{group}` (a rank is the one thread that installed it); call it from that rank's thread, or use the groups of this thread's rank (`symmem::group(name)`)",
            thread.name().unwrap_or("unnamed")
        ),
    }
}

/// The erased pointer of the capture in progress on this thread (null: none).
#[inline(always)]
pub(crate) fn capture_ptr() -> *const () {
    THREAD.with(|t| t.capture.get())
}

/// Refuse `refusal` (an operation of the refusal table `symmem_rules::refusals`) while this
/// thread captures a graph.
///
/// Every capture refusal of the runtime names its table entry, so the drift test
/// (`rules/tests/drift.rs`) can pair each with the compile-time rule that rejects the same call.
#[inline]
pub(crate) fn refuse_if_capturing(refusal: &'static Refusal) -> Result<()> {
    if is_capturing() {
        Err(capture_refusal(refusal))
    } else {
        Ok(())
    }
}

/// The error of a refused operation (also for backends whose stream knows it is capturing).
#[cold]
#[inline(never)]
pub(crate) fn capture_refusal(refusal: &'static Refusal) -> Error {
    Error::NotAllowedDuringCapture {
        op: refusal.op,
        why: refusal.why(),
        fix: refusal.fix(),
    }
}
