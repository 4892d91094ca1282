//! A segment of the arena: its id, and what the arena keeps about it.

/// Identifier of a segment of an [`Arena`](super::Arena). Ids are assigned 0, 1, 2, ...
/// in the order of [`Arena::add_segment`](super::Arena::add_segment) calls and are never reused.
pub type SegmentId = u32;

/// Bookkeeping of one segment.
#[derive(Clone, Copy, Debug)]
pub struct SegmentInfo {
    /// Size in bytes.
    pub size: usize,
    /// Slot of the node at offset 0 (stable: coalescing keeps the lower
    /// node).
    pub head: u32,
    /// False once released.
    pub live: bool,
}
