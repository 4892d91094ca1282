//! The direct all-reduce entry: a communicator's all-reduce as an erased pointer and a plain
//! function, resolved once per group, so that a launch skips the trait object's dispatch and
//! downcast (the hot path of every row-parallel layer).
//!
//! Build one with [`DirectAllReduce::new`] from any [`AllReduceEntry`]: the trampoline that
//! casts the pointer back is generic and written once here, so no backend writes raw-pointer
//! code. What must stay true: the communicator outlives every `Group` holding its entry (a group
//! keeps its communicator's `Arc`, and the communicator never moves: it is behind that `Arc`).

use crate::backend::operand::Operand;
use crate::dtype::{DType, ReduceOp};
use crate::error::Result;

/// A backend's direct entry for all-reduce launches on one stream: the communicator as an
/// erased pointer and a plain function, resolved once when a group is created
/// ([`CommBackend::direct_all_reduce`](crate::backend::CommBackend::direct_all_reduce)), so that a launch skips the trait object's dispatch.
#[derive(Clone, Copy, Debug)]
pub struct DirectAllReduce {
    /// The communicator the function takes.
    pub ctx: *const (),
    /// Exactly [`CommBackend::all_reduce`](crate::backend::CommBackend::all_reduce) of the communicator at `ctx`, on the stream it was
    /// resolved for.
    ///
    /// # Safety
    /// `ctx` must be the `ctx` of the same `DirectAllReduce`, and the communicator it points to
    /// must be alive.
    pub launch: unsafe fn(
        ctx: *const (),
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>,
}

// SAFETY: `ctx` points to a communicator that is `Send + Sync` (a `CommBackend`, or the
// `AllReduceEntry` of `DirectAllReduce::new`, which requires `Sync`); the function is a plain
// function pointer.
unsafe impl Send for DirectAllReduce {}
// SAFETY: as above.
unsafe impl Sync for DirectAllReduce {}

/// A communicator whose all-reduce can be launched through a [`DirectAllReduce`] entry, on the
/// stream it was resolved for.
pub trait AllReduceEntry: Sync + 'static {
    /// Queue `recv[i] = op over ranks of send[i]` for `count` elements on the entry's stream:
    /// exactly what the communicator's `CommBackend::all_reduce` does on that stream.
    fn all_reduce_entry(
        &self,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()>;
}

impl DirectAllReduce {
    /// The entry of `comm`'s all-reduce. Safe: using it is what needs care ([`Self::launch`]'s
    /// contract: `comm` must still be alive and not moved, which holds when `comm` lives in the
    /// `Arc` of a `CommBackend` that the group holding the entry keeps).
    #[inline]
    pub fn new<C: AllReduceEntry>(comm: &C) -> DirectAllReduce {
        DirectAllReduce {
            ctx: comm as *const C as *const (),
            launch: trampoline::<C>,
        }
    }
}

/// Casts the erased pointer back to the communicator type it was made from and launches.
///
/// # Safety
/// `ctx` is the `ctx` of a `DirectAllReduce` made by [`DirectAllReduce::new::<C>`], and the
/// communicator it points to is alive.
#[inline(always)]
unsafe fn trampoline<C: AllReduceEntry>(
    ctx: *const (),
    send: Operand,
    recv: Operand,
    count: usize,
    dtype: DType,
    op: ReduceOp,
) -> Result<()> {
    // SAFETY: the function's contract: `ctx` came from a live `&C`.
    let comm = unsafe { &*(ctx as *const C) };
    comm.all_reduce_entry(send, recv, count, dtype, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter(AtomicUsize);
    impl AllReduceEntry for Counter {
        fn all_reduce_entry(
            &self,
            send: Operand,
            _recv: Operand,
            count: usize,
            _dtype: DType,
            _op: ReduceOp,
        ) -> Result<()> {
            self.0
                .fetch_add(count + send.ptr as usize, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn entry_calls_the_communicator_it_was_made_from() {
        let c = Counter(AtomicUsize::new(0));
        let e = DirectAllReduce::new(&c);
        let o = Operand { ptr: 7, sym: None };
        // SAFETY: `c` is alive.
        unsafe { (e.launch)(e.ctx, o, o, 3, DType::F32, ReduceOp::Sum) }.unwrap();
        assert_eq!(c.0.load(Ordering::Relaxed), 10);
    }
}
