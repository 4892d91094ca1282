//! Allocation entry points: routed by the thread's current window.

use symmem_rules::refusals;

use crate::buffer::Buffer;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::pool::graph::capture_alloc;
use crate::pool::handle::PoolRef;
use crate::pool::owner::Owner;
use crate::pool::Pool;
use crate::rank::current::{default_pool_ptr, missing_group};
use crate::thread::{refuse_if_capturing, THREAD};
use crate::window::{Route, Target};

#[inline]
fn bytes_for<T: Element>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or_else(|| Error::InvalidArgument {
            op: "alloc",
            detail: format!("{len} elements of {} overflow the address space", T::DTYPE),
        })
}

/// Allocate `len` elements of `T` (contents unspecified).
///
/// Inside a window the buffer comes from the window's group symmetric pool; outside it comes
/// from the rank's default pool, or from the graph's private pool while capturing. Errors:
/// no rank context on this thread, a window for a missing group, pool exhaustion, or (during
/// capture) a symmetric request beyond the reserved capacity.
#[inline]
pub fn alloc<T: Element>(len: usize) -> Result<Buffer<T>> {
    let bytes = bytes_for::<T>(len)?;
    // Read the routing state in one small TLS access, then work outside the `with` closure
    // (a large closure kept `LocalKey::with` out of line and moved the result through it).
    let (route, cap) = THREAD.with(|t| (t.route.get(), t.capture.get()));
    let pool: *const Pool = match Route::from_word(route).decode() {
        Target::Group(p) => p,
        Target::Base => std::ptr::null(),
        Target::Missing(name) => return Err(missing_group(name)),
    };
    if !cap.is_null() {
        return alloc_captured(cap, pool, bytes, len);
    }
    let pool = if pool.is_null() {
        default_pool_ptr()
    } else {
        pool
    };
    if pool.is_null() {
        return Err(Error::NoRankContext);
    }
    // SAFETY: routing targets and the default pool are kept alive by the rank context (or
    // the group handle a live guard borrows).
    let a = unsafe { &*pool }.alloc(bytes)?;
    // SAFETY: the pool is live and handed out the block `a`, which keeps it alive.
    let owner = Owner::Pool(unsafe { PoolRef::new(pool) });
    Ok(Buffer::from_parts(a, len, owner))
}

/// The capture path of [`alloc`] (kept out of the eager fast path).
#[cold]
#[inline(never)]
fn alloc_captured<T: Element>(
    cap: *const (),
    pool: *const Pool,
    bytes: usize,
    len: usize,
) -> Result<Buffer<T>> {
    // SAFETY: `cap` is this thread's (non-null) capture pointer and `pool` a live routing
    // target or null (`capture_alloc`'s contract).
    let (a, owner) = unsafe { capture_alloc(cap, pool, bytes) }?;
    Ok(Buffer::from_parts(a, len, owner))
}

/// Allocate `len` zeroed elements (the zeroing is ordered on the rank's stream; capturable).
pub fn alloc_zeroed<T: Element>(len: usize) -> Result<Buffer<T>> {
    let mut b = alloc::<T>(len)?;
    b.fill_zero()?;
    Ok(b)
}

/// Allocate a buffer holding a copy of `src` (blocking copy; refused during capture).
pub fn alloc_from_host<T: Element>(src: &[T]) -> Result<Buffer<T>> {
    refuse_if_capturing(&refusals::ALLOC_FROM_HOST)?;
    let mut b = alloc::<T>(src.len())?;
    b.copy_from_host(src)?;
    Ok(b)
}
