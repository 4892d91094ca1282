//! Operands of collectives: a buffer's address and, for a symmetric buffer, its place in a
//! window packed in one word ([`SymRef`]); and the symmetric segments windows are made of.

/// A symmetric segment: memory every rank of a group allocated together and registered as one
/// window, so that the same offset names corresponding memory on every rank.
#[derive(Clone, Debug)]
pub struct SymSegment {
    /// Device address of this rank's part.
    pub base: u64,
    /// Size in bytes (the same on every rank).
    pub size: usize,
    /// Window index: the n-th window created on this communicator (the same on every rank).
    pub window: u64,
    /// Backend handle of the window (`ncclWindow_t` on CUDA; 0 when the communicator could not
    /// register a symmetric window, in which case collectives take the plain path).
    pub handle: u64,
}

/// A buffer operand of a collective: its address and, when it is symmetric, where it lies.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    /// Device address of the first element.
    pub ptr: u64,
    /// Window index and offset when the buffer lies in a symmetric window of this communicator.
    pub sym: Option<SymRef>,
}

/// Where a symmetric operand lies: a window index ([`SymSegment::window`]) and a byte offset
/// inside that window.
///
/// Packed into one non-zero 64-bit word (`(window + 1) << 44 | offset`) so that an [`Operand`]
/// is two machine words and travels in registers through every collective call: windows up to
/// [`SymRef::MAX_WINDOW`], offsets up to [`SymRef::MAX_OFFSET`] (16 TiB). A pool whose segment
/// would exceed either uses it as a plain segment (its buffers take the plain path).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymRef(std::num::NonZeroU64);

const SYM_OFFSET_BITS: u32 = 44;

impl SymRef {
    /// Largest window index a `SymRef` can name.
    pub const MAX_WINDOW: u64 = (1 << (64 - SYM_OFFSET_BITS)) - 2;
    /// Largest byte offset a `SymRef` can name.
    pub const MAX_OFFSET: usize = (1 << SYM_OFFSET_BITS) - 1;

    /// The reference to `offset` in window `window`; `None` when either is out of range.
    #[inline]
    pub fn new(window: u64, offset: usize) -> Option<SymRef> {
        if window > Self::MAX_WINDOW || offset > Self::MAX_OFFSET {
            return None;
        }
        std::num::NonZeroU64::new(((window + 1) << SYM_OFFSET_BITS) | offset as u64).map(SymRef)
    }

    /// The tag of window `window` (the word of its offset 0), if the window can be named.
    #[inline]
    pub(crate) fn window_tag(window: u64) -> Option<u64> {
        Self::new(window, 0).map(|s| s.0.get())
    }

    /// The reference at `offset` of a window with tag `tag` (from [`SymRef::window_tag`]);
    /// `offset` lies inside a segment no larger than [`SymRef::MAX_OFFSET`] + 1 bytes.
    #[inline]
    pub(crate) fn at(tag: u64, offset: usize) -> Option<SymRef> {
        debug_assert!(offset <= Self::MAX_OFFSET);
        std::num::NonZeroU64::new(tag | offset as u64).map(SymRef)
    }

    /// Window index.
    #[inline]
    pub fn window(self) -> u64 {
        (self.0.get() >> SYM_OFFSET_BITS) - 1
    }

    /// Byte offset inside the window.
    #[inline]
    pub fn offset(self) -> usize {
        (self.0.get() & Self::MAX_OFFSET as u64) as usize
    }
}

// The packing's promises, relied on by the pool (`Pool::sym_tag` refuses segments beyond them)
// and by the launch path (an `Option<SymRef>` is one word, an `Operand` two).
const _: () = {
    assert!(
        SymRef::MAX_OFFSET == (16usize << 40) - 1,
        "offsets up to 16 TiB"
    );
    assert!(SymRef::MAX_WINDOW == (1 << 20) - 2, "window ids below 2^20");
    assert!(std::mem::size_of::<Option<SymRef>>() == 8);
    assert!(std::mem::size_of::<Operand>() == 16);
};

impl std::fmt::Debug for SymRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymRef")
            .field("window", &self.window())
            .field("offset", &self.offset())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{Operand, SymRef};

    #[test]
    fn symref_packs_window_and_offset_losslessly_and_refuses_out_of_range() {
        for (w, o) in [
            (0, 0),
            (0, 512),
            (1, 4096),
            (77, (2 << 20) - 512),
            (SymRef::MAX_WINDOW, SymRef::MAX_OFFSET),
        ] {
            let s = SymRef::new(w, o).unwrap();
            assert_eq!((s.window(), s.offset()), (w, o));
            assert_eq!(SymRef::at(SymRef::window_tag(w).unwrap(), o), Some(s));
        }
        assert_eq!(SymRef::new(SymRef::MAX_WINDOW + 1, 0), None);
        assert_eq!(SymRef::new(0, SymRef::MAX_OFFSET + 1), None);
        assert_ne!(SymRef::new(1, 0), SymRef::new(0, 0));
        // Two machine words: passed in registers through the collective calls.
        assert_eq!(std::mem::size_of::<Option<SymRef>>(), 8);
        assert_eq!(std::mem::size_of::<Operand>(), 16);
    }
}
