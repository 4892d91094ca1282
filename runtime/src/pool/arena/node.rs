//! The slab node: one block of a segment (free or allocated) or a vacant slot, with the
//! address links of its segment and the pairing-heap links of its size class.

use super::segment::SegmentId;

/// Sentinel slot index: "no node".
pub const NIL: u32 = u32::MAX;

/// A node of the slab: a free or allocated block, or a vacant slot.
///
/// A live node is free iff `serial == 0`. Vacant slots also have serial 0
/// but are never reachable from a live node's links.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// Offset inside the segment.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Serial of the allocation while allocated; 0 when free or vacant.
    pub serial: u64,
    /// Segment of the block.
    pub segment: SegmentId,
    /// Address-previous node of the same segment, or `NIL`.
    pub prev: u32,
    /// Address-next node of the same segment, or `NIL`; for a vacant slot,
    /// the next vacant slot.
    pub next: u32,
    /// Pairing heap of the size class (free nodes of exact classes only):
    /// first child.
    pub child: u32,
    /// Pairing heap: next sibling.
    pub sibling: u32,
    /// Pairing heap: previous sibling, or the parent for a first child;
    /// `NIL` exactly for the root.
    pub left: u32,
}

impl Node {
    /// A vacant slot whose vacant-list successor is `next`.
    pub const fn vacant(next: u32) -> Node {
        Node {
            offset: 0,
            size: 0,
            serial: 0,
            segment: 0,
            prev: NIL,
            next,
            child: NIL,
            sibling: NIL,
            left: NIL,
        }
    }
}
