//! The rank and groups of the calling thread, found through the thread state: the free
//! functions `symmem::group`, `symmem::window`, `symmem::current_stream`, `symmem::synchronize`
//! and what the macro's expansion and `alloc` call.

use symmem_rules::refusals;

use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::rank::context::{current_rank_opt, RankInner};
use crate::rank::group::Group;
use crate::rank::stream::Stream;
use crate::thread::{rank_ptr, refuse_if_capturing};
use crate::window::{Target, WindowGuard};

pub(crate) fn current_rank() -> Result<Rc<RankInner>> {
    current_rank_opt().ok_or(Error::NoRankContext)
}

pub(crate) fn current_rank_id() -> Option<u64> {
    let p = rank_ptr() as *const RankInner;
    // SAFETY: see `current_rank_opt`.
    (!p.is_null()).then(|| unsafe { &*p }.id())
}

/// The current thread's group named `name`.
pub fn group(name: &str) -> Result<Group> {
    current_rank()?.group(name)
}

/// Enter the window of the current thread's group named `name`.
///
/// The guard does not borrow a [`Group`]: the rank context keeps the pool alive.
pub fn window(name: &str) -> Result<WindowGuard<'static>> {
    let rank = current_rank()?;
    match rank.pool_of(name) {
        Some(p) => Ok(WindowGuard::enter(Target::Group(p))),
        None => Err(rank.not_found(name)),
    }
}

/// Enter the window of `name` without failing: if the group is missing, allocations inside
/// the window fail with [`Error::GroupNotFound`] ([`Error::NoRankContext`] on a thread without a
/// rank). Used by `#[symmetric_memory]`.
#[inline]
pub(crate) fn enter_named(name: &'static str) -> WindowGuard<'static> {
    let p = rank_ptr() as *const RankInner;
    let target = if p.is_null() {
        Target::Missing(name)
    } else {
        // SAFETY: see `current_rank_opt`; the borrow ends in this block, before anything can
        // uninstall the rank.
        match unsafe { &*p }.find_static(name) {
            Some(pool) => Target::Group(pool),
            None => Target::Missing(name),
        }
    };
    WindowGuard::enter(target)
}

/// The current rank's stream.
pub fn current_stream() -> Result<Stream> {
    Ok(Stream {
        inner: current_rank()?.stream().clone(),
    })
}

/// Wait until the current rank's stream is idle. Refused during capture.
pub fn synchronize() -> Result<()> {
    refuse_if_capturing(&refusals::SYNCHRONIZE)?;
    current_rank()?.stream().synchronize()
}

/// Error for a missing group at allocation time: [`Error::NoRankContext`] on a thread without a
/// rank (a by-name window entered there has no group table to look in).
pub(crate) fn missing_group(name: &str) -> Error {
    match current_rank_opt() {
        Some(r) => r.not_found(name),
        None => Error::NoRankContext,
    }
}

/// The default pool of the current rank, as a raw pointer (null: no rank).
#[inline]
pub(crate) fn default_pool_ptr() -> *const Pool {
    let p = rank_ptr() as *const RankInner;
    if p.is_null() {
        std::ptr::null()
    } else {
        // SAFETY: see `current_rank_opt`.
        Arc::as_ptr(&unsafe { &*p }.default_pool)
    }
}
