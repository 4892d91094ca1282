//! Typed device buffers that know where they come from.

use symmem_rules::refusals;

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::backend::operand::SymRef;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::pool::allocation::Allocation;
use crate::pool::graph::record_use;
use crate::pool::owner::Owner;
use crate::pool::Pool;
use crate::thread::refuse_if_capturing;

/// `range` of a buffer or view of `len` elements as `(start, end)`, or an error naming `op`.
pub(crate) fn sub_range(
    op: &'static str,
    len: usize,
    range: impl RangeBounds<usize>,
) -> Result<(usize, usize)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => Some(len),
    };
    match (start, end) {
        (Some(s), Some(e)) if s <= e && e <= len => Ok((s, e)),
        _ => Err(Error::InvalidArgument {
            op,
            detail: format!(
                "the range {:?}..{:?} is not inside the {len} elements",
                range.start_bound(),
                range.end_bound()
            ),
        }),
    }
}

/// Where a symmetric buffer lies: which group's window, and at which offset. The same
/// allocation sequence gives the same window and offset on every rank.
///
/// Read its fields; more may be added in any release (`#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SymmetricInfo {
    /// Name of the group whose symmetric pool the buffer came from.
    pub group: Arc<str>,
    /// Window index within the group (the n-th symmetric segment the group created).
    pub window: u64,
    /// Byte offset of the buffer's first element inside the window.
    pub offset: usize,
}

/// A typed buffer of device memory (host memory on the host backend), carved from a pool.
///
/// It knows in O(1) whether it is symmetric, for which group, and at which window and offset
/// ([`Buffer::symmetric`]). Its block returns to its pool when it drops (or, for blocks
/// allocated during graph capture, when both the buffer and the graph are gone).
pub struct Buffer<T: Element> {
    /// Address, block and window position, kept whole: it goes back to the pool as is.
    alloc: Allocation,
    len: usize,
    owner: Owner,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("dtype", &T::DTYPE)
            .field("len", &self.len)
            .field("pool", &self.owner.pool().label())
            .field("symmetric", &self.symmetric())
            .finish()
    }
}

impl<T: Element> Buffer<T> {
    #[inline]
    pub(crate) fn from_parts(a: Allocation, len: usize, owner: Owner) -> Self {
        Buffer {
            alloc: a,
            len,
            owner,
            _t: PhantomData,
        }
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no element.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size in bytes of the elements (the block may be larger: it is rounded to 512 bytes).
    #[inline]
    pub fn size_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// Device address of the first element (`CUdeviceptr` on CUDA; a host address on the host
    /// backend). Valid while the buffer lives.
    #[inline]
    pub fn device_ptr(&self) -> u64 {
        self.alloc.ptr
    }

    /// Whether the buffer lies in a registered symmetric window.
    #[inline]
    pub fn is_symmetric(&self) -> bool {
        self.alloc.sym.is_some()
    }

    /// The group, window and offset of a symmetric buffer; `None` for other buffers.
    pub fn symmetric(&self) -> Option<SymmetricInfo> {
        self.alloc.sym.map(|s| SymmetricInfo {
            group: self.owner.pool().label_arc().clone(),
            window: s.window(),
            offset: s.offset(),
        })
    }

    /// Name of the group whose symmetric pool this buffer came from, if it is symmetric.
    pub fn group_name(&self) -> Option<&str> {
        self.alloc.sym.map(|_| self.owner.pool().label())
    }

    /// Name of the pool the buffer came from (`default`, or the group's name).
    pub fn pool_label(&self) -> &str {
        self.owner.pool().label()
    }

    /// Whether the block belongs to a captured graph (it was allocated during capture).
    pub fn is_graph_owned(&self) -> bool {
        matches!(self.owner, Owner::Graph(_))
    }

    pub(crate) fn rank_id(&self) -> u64 {
        self.owner.pool().rank_id()
    }

    pub(crate) fn pool(&self) -> &Pool {
        self.owner.pool()
    }

    /// Record the use of the buffer by work being captured on this thread, if any.
    #[inline(always)]
    pub(crate) fn record_use(&self) {
        record_use(&self.owner, &self.alloc.block);
    }

    /// Window and offset, for a symmetric buffer.
    #[inline(always)]
    pub(crate) fn sym_ref(&self) -> Option<SymRef> {
        self.alloc.sym
    }

    fn check_len(&self, op: &'static str, other: usize) -> Result<()> {
        if other != self.len {
            return Err(Error::LengthMismatch {
                op,
                detail: format!("the buffer holds {} elements but the host slice has {other}; pass a slice of the same length", self.len),
            });
        }
        Ok(())
    }

    /// Copy `src` into the buffer and wait for completion (blocking; refused during capture).
    pub fn copy_from_host(&mut self, src: &[T]) -> Result<()> {
        refuse_if_capturing(&refusals::BUFFER_COPY_FROM_HOST)?;
        self.check_len("copy_from_host", src.len())?;
        // SAFETY: `T: Element` is plain old data; the byte view covers exactly `src`.
        let bytes = unsafe {
            std::slice::from_raw_parts(src.as_ptr() as *const u8, std::mem::size_of_val(src))
        };
        self.pool().stream().copy_htod(self.alloc.ptr, bytes)
    }

    /// Copy the buffer into `dst` and wait for completion (blocking; refused during capture).
    pub fn copy_to_host(&self, dst: &mut [T]) -> Result<()> {
        refuse_if_capturing(&refusals::BUFFER_COPY_TO_HOST)?;
        self.check_len("copy_to_host", dst.len())?;
        // SAFETY: as above; every bit pattern is a valid `T` for the element types.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, std::mem::size_of_val(dst))
        };
        self.pool().stream().copy_dtoh(bytes, self.alloc.ptr)
    }

    /// Read the buffer into a new vector (blocking; refused during capture).
    pub fn to_host_vec(&self) -> Result<Vec<T>> {
        let mut v = vec![T::ZERO; self.len];
        self.copy_to_host(&mut v)?;
        Ok(v)
    }

    /// Set every byte to zero, ordered on the rank's stream (capturable).
    pub fn fill_zero(&mut self) -> Result<()> {
        record_use(&self.owner, &self.alloc.block);
        self.pool()
            .stream()
            .memset(self.alloc.ptr, 0, self.size_bytes())
    }

    /// Copy another buffer of the same length into this one, ordered on the stream (capturable).
    pub fn copy_from(&mut self, src: &Buffer<T>) -> Result<()> {
        if src.len != self.len {
            return Err(Error::LengthMismatch {
                op: "copy_from",
                detail: format!("source has {} elements, destination {}", src.len, self.len),
            });
        }
        if src.rank_id() != self.rank_id() {
            return Err(Error::WrongDevice {
                op: "copy_from",
                detail: "the buffers belong to different ranks".into(),
            });
        }
        record_use(&self.owner, &self.alloc.block);
        record_use(&src.owner, &src.alloc.block);
        self.pool()
            .stream()
            .copy_dtod(self.alloc.ptr, src.alloc.ptr, self.size_bytes())
    }
}

impl<T: Element> Drop for Buffer<T> {
    #[inline]
    fn drop(&mut self) {
        self.owner.give_back(self.alloc);
    }
}
