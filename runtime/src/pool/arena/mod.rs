//! The offset allocator behind symmem's caching pools.
//!
//! [`Arena`] is pure bookkeeping: it performs no I/O and never touches device
//! memory. It manages *offsets inside segments*. The caller (a pool) owns the
//! memory, maps each [`SegmentId`] to a base address, creates a segment when
//! [`Arena::try_alloc`] returns `None` (asking [`Arena::segment_size_for`] how
//! big it should be, then calling [`Arena::add_segment`]), and frees the memory
//! of the segments that [`Arena::release_free_segments`] hands back.
//!
//! # Policy
//!
//! * Every request is rounded up to [`ArenaConfig::alignment`] (0 bytes counts
//!   as one alignment unit), so every block offset and size is a multiple of the
//!   alignment.
//! * Allocation is **exact best fit**: the smallest free block that is large
//!   enough; among equally small ones, the lowest `(segment, offset)`. The
//!   requested size is carved from the start of that block and the remainder
//!   stays free.
//! * Freeing coalesces eagerly with free address-neighbours of the same
//!   segment, so a segment is entirely free exactly when it is one free block.
//! * Segment sizing is PyTorch-like: requests up to
//!   [`ArenaConfig::small_request_max`] share segments of
//!   [`ArenaConfig::small_segment`] bytes; larger requests get a segment of
//!   their own, rounded up to [`ArenaConfig::large_segment_rounding`].
//!
//! # Determinism
//!
//! Every result depends only on the sequence of calls: there is no hashing,
//! no address, no clock and no global state. Two arenas given the same calls
//! return identical [`Block`]s, segment ids and statistics (the pools of all
//! ranks of a group rely on this to keep symmetric offsets equal).
//!
//! # Invalid frees
//!
//! Every [`Block`] carries a private serial number, unique within its arena,
//! and the slot of its bookkeeping node. [`Arena::free`] returns
//! [`ArenaError::NotAllocated`] (and changes nothing) for a block that is not
//! currently allocated: a double free, a stale block (even when its slot,
//! offset and size have been handed out again since), a block of a released
//! segment, or a block of another arena unless it describes exactly a live
//! block of this one. It never corrupts the arena and never panics.
//!
//! # Data structures
//!
//! * A slab (`Vec`) of block nodes with `prev`/`next` address links inside
//!   their segment (O(1) coalescing) and an intrusive list of vacant slots.
//! * Free blocks of fewer than 8192 alignment units (4 MiB at the default
//!   alignment of 512) live in exact size classes, one per unit count. Each
//!   class is an intrusive pairing heap keyed by `(segment, offset)` (ties go
//!   to the lowest address) whose links live in the nodes: inserting is O(1),
//!   removing O(log n) amortized and O(1) for the common lone block of its
//!   class. A two-level bitmap finds the smallest non-empty class at least as
//!   large as a request in O(1).
//! * Larger free blocks live in a `BTreeMap` keyed by `(size, segment,
//!   offset)`.
//!
//! The hot paths keep the slab as a local slice and never build a node on
//! the stack; steady-state `try_alloc` + `free` does no heap allocation.
//! Footprint: about 33 KiB per arena (class roots and bitmaps) plus 48 bytes
//! per block node.

mod config;
mod error;
mod node;
mod segment;
mod size_index;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU64;

pub use config::ArenaConfig;
pub use error::ArenaError;
pub use segment::SegmentId;

use node::{Node, NIL};
use segment::SegmentInfo;
use size_index::SizeIndex;

/// An allocated range `[offset, offset + size)` of segment `segment`.
///
/// Blocks are only created by [`Arena::try_alloc`]; the private fields
/// identify the allocation so that [`Arena::free`] can detect double, stale
/// and foreign frees. Two blocks compare equal only if they are the same
/// allocation.
///
/// `repr(C)` keeps the two 32-bit fields in one 8-byte word, so that copies of a
/// block (on the allocation hot path) read back whole words as they were
/// written instead of stalling on a load that spans two narrower stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Block {
    /// Byte offset of the block inside its segment (a multiple of the
    /// alignment).
    pub offset: usize,
    /// Size of the block in bytes: the request rounded up to the alignment.
    pub size: usize,
    /// Segment holding the block.
    pub segment: SegmentId,
    /// Slab slot of the node that describes this block.
    slot: u32,
    /// Serial number of the allocation, unique within the arena.
    serial: NonZeroU64,
}

impl Block {
    /// A block of no arena: what a buffer over memory symmem did not allocate (a caller's
    /// `CudaSlice`) carries. No arena ever receives it: such a buffer's owner gives nothing
    /// back to a pool, and capture keeps its owner alive instead of pinning the block.
    // Only the CUDA backend wraps foreign memory.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn detached() -> Block {
        Block {
            offset: 0,
            size: 0,
            segment: SegmentId::MAX,
            slot: u32::MAX,
            serial: NonZeroU64::MAX,
        }
    }
}

/// Exact statistics of an [`Arena`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Total size of all segments.
    pub reserved_bytes: usize,
    /// Total size of all allocated blocks (rounded sizes).
    pub in_use_bytes: usize,
    /// Number of segments.
    pub segments: usize,
    /// Number of free blocks (maximal free ranges, as free blocks are always
    /// coalesced).
    pub free_blocks: usize,
    /// Size of the largest free block (0 when there is none).
    pub largest_free_block: usize,
    /// Number of allocated blocks.
    pub allocated_blocks: usize,
}

/// Deterministic best-fit offset allocator over caller-owned segments.
/// See the [module documentation](self).
#[derive(Clone)]
pub struct Arena {
    cfg: ArenaConfig,
    nodes: Vec<Node>,
    /// Head of the intrusive list of vacant slots.
    vacant: u32,
    index: SizeIndex,
    /// Indexed by `SegmentId`; released segments stay as tombstones.
    segments: Vec<SegmentInfo>,
    /// Ids of live segments, ascending.
    live_segments: Vec<SegmentId>,
    /// Serial of the next allocation.
    next_serial: NonZeroU64,
    reserved: usize,
    in_use: usize,
    allocated_blocks: usize,
    /// Number of free blocks (maintained here rather than in the index:
    /// most unlink/link pairs cancel out).
    free_blocks: usize,
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("config", &self.cfg)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Arena {
    /// An arena with [`ArenaConfig::default`].
    fn default() -> Self {
        Arena::new(ArenaConfig::default())
    }
}

impl Arena {
    /// Creates an empty arena (no segments).
    ///
    /// # Panics
    ///
    /// If `cfg` is invalid (see [`ArenaConfig::validate`]).
    pub fn new(cfg: ArenaConfig) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("{e}");
        }
        Arena {
            index: SizeIndex::new(cfg.alignment.trailing_zeros()),
            cfg,
            nodes: Vec::new(),
            vacant: NIL,
            segments: Vec::new(),
            live_segments: Vec::new(),
            next_serial: NonZeroU64::MIN,
            reserved: 0,
            in_use: 0,
            allocated_blocks: 0,
            free_blocks: 0,
        }
    }

    /// The configuration.
    #[allow(dead_code)] // API for the pool and debug checks; not every build calls it
    pub fn config(&self) -> &ArenaConfig {
        &self.cfg
    }

    /// `bytes` rounded up to the alignment, `None` if that overflows.
    /// 0 bytes round to one alignment unit.
    #[inline]
    pub fn checked_round_request(&self, bytes: usize) -> Option<usize> {
        let mask = self.cfg.alignment - 1;
        Some((bytes.max(1).checked_add(mask)?) & !mask)
    }

    /// `bytes` rounded up to the alignment; 0 rounds to the alignment.
    /// Saturates at the largest multiple of the alignment (such a request can
    /// never be satisfied; [`Arena::try_alloc`] returns `None` for it).
    #[inline]
    pub fn round_request(&self, bytes: usize) -> usize {
        self.checked_round_request(bytes)
            .unwrap_or(usize::MAX & !(self.cfg.alignment - 1))
    }

    /// Size of the segment to create when `try_alloc(bytes)` fails, `None` if
    /// it overflows `usize`. Rounded requests up to `small_request_max` get a
    /// `small_segment`; larger ones a segment of their own, rounded up to
    /// `large_segment_rounding`. Always a non-zero multiple of the alignment.
    pub fn checked_segment_size_for(&self, bytes: usize) -> Option<usize> {
        let rounded = self.checked_round_request(bytes)?;
        if rounded <= self.cfg.small_request_max {
            Some(self.cfg.small_segment)
        } else {
            rounded.checked_next_multiple_of(self.cfg.large_segment_rounding)
        }
    }

    /// Like [`Arena::checked_segment_size_for`], saturating at the largest
    /// multiple of `large_segment_rounding` on overflow (no device can
    /// allocate that, so the caller's segment creation fails cleanly).
    pub fn segment_size_for(&self, bytes: usize) -> usize {
        self.checked_segment_size_for(bytes).unwrap_or_else(|| {
            let r = self.cfg.large_segment_rounding;
            usize::MAX - usize::MAX % r
        })
    }

    /// Adds a segment of `size` bytes, entirely free, and returns its id.
    ///
    /// # Panics
    ///
    /// If `size` is zero or not a multiple of the alignment (sizes from
    /// [`Arena::segment_size_for`] always qualify; see
    /// [`Arena::try_add_segment`] for a non-panicking version), or after
    /// 2^32 - 1 segments.
    pub fn add_segment(&mut self, size: usize) -> SegmentId {
        match self.try_add_segment(size) {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Adds a segment of `size` bytes, entirely free, and returns its id; an
    /// error if `size` is zero or not a multiple of the alignment.
    ///
    /// # Panics
    ///
    /// After 2^32 - 1 segments.
    pub fn try_add_segment(&mut self, size: usize) -> Result<SegmentId, ArenaError> {
        if size == 0 || size & (self.cfg.alignment - 1) != 0 {
            return Err(ArenaError::InvalidSegmentSize {
                size,
                alignment: self.cfg.alignment,
            });
        }
        let id = SegmentId::try_from(self.segments.len())
            .ok()
            .filter(|&id| id != SegmentId::MAX)
            .expect("symmem arena: segment ids exhausted");
        let head = self.take_vacant();
        let h = &mut self.nodes[head as usize];
        h.offset = 0;
        h.size = size;
        h.segment = id;
        h.prev = NIL;
        h.next = NIL;
        self.index.link(&mut self.nodes, head, size);
        self.segments.push(SegmentInfo {
            size,
            head,
            live: true,
        });
        self.live_segments.push(id);
        self.reserved += size;
        self.free_blocks += 1;
        Ok(id)
    }

    /// Size of segment `id`, `None` if it does not exist (any more).
    #[allow(dead_code)] // API for the pool and debug checks; not every build calls it
    pub fn segment_size(&self, id: SegmentId) -> Option<usize> {
        self.segments
            .get(id as usize)
            .filter(|s| s.live)
            .map(|s| s.size)
    }

    /// Allocates `bytes` (rounded with [`Arena::round_request`]) from the
    /// smallest free block that fits (ties: lowest `(segment, offset)`),
    /// splitting off the remainder as a free block. Never adds segments:
    /// `None` when no free block fits.
    #[inline]
    pub fn try_alloc(&mut self, bytes: usize) -> Option<Block> {
        let size = self.checked_round_request(bytes)?;
        let slot = self.index.find_best(size)?;
        if self.vacant == NIL {
            // A spare slot for the remainder, so that the slab is not
            // reallocated below.
            self.grow_slab();
        }
        let serial = self.next_serial;
        self.next_serial = serial.saturating_add(1);
        self.in_use += size;
        self.allocated_blocks += 1;
        let nodes = &mut self.nodes[..];
        self.index.unlink(nodes, slot);
        let n = &mut nodes[slot as usize];
        let (offset, total, segment, next) = (n.offset, n.size, n.segment, n.next);
        n.serial = serial.get();
        if total > size {
            n.size = size;
            let rest = self.vacant;
            n.next = rest;
            let r = &mut nodes[rest as usize];
            self.vacant = r.next;
            r.offset = offset + size;
            r.size = total - size;
            r.segment = segment;
            r.prev = slot;
            r.next = next;
            if next != NIL {
                nodes[next as usize].prev = rest;
            }
            self.index.link(nodes, rest, total - size);
        } else {
            self.free_blocks -= 1;
        }
        Some(Block {
            segment,
            offset,
            size,
            slot,
            serial,
        })
    }

    /// Returns `block` to the arena, coalescing it with free neighbours of
    /// its segment.
    ///
    /// # Errors
    ///
    /// [`ArenaError::NotAllocated`] if `block` is not currently allocated in
    /// this arena (double free, stale or foreign block); the arena is then
    /// unchanged.
    #[inline]
    pub fn free(&mut self, block: Block) -> Result<(), ArenaError> {
        let nodes = &mut self.nodes[..];
        let slot = block.slot;
        let Some(n) = nodes.get_mut(slot as usize) else {
            return Err(not_allocated(&block));
        };
        if n.serial != block.serial.get()
            || n.segment != block.segment
            || n.offset != block.offset
            || n.size != block.size
        {
            return Err(not_allocated(&block));
        }
        n.serial = 0;
        let (prev, next) = (n.prev, n.next);
        self.in_use -= block.size;
        self.allocated_blocks -= 1;
        let mut size = block.size;
        let mut start = slot;
        let mut after = next;
        // Free blocks after this call: one more, minus each merge.
        let mut free_blocks = self.free_blocks + 1;
        if next != NIL {
            let nn = &mut nodes[next as usize];
            if nn.serial == 0 {
                size += nn.size;
                after = nn.next;
                self.index.unlink(nodes, next);
                free_blocks -= 1;
                // Vacate `next`.
                let nn = &mut nodes[next as usize];
                nn.next = self.vacant;
                self.vacant = next;
            }
        }
        if prev != NIL {
            let p = &nodes[prev as usize];
            if p.serial == 0 {
                size += p.size;
                self.index.unlink(nodes, prev);
                free_blocks -= 1;
                // Vacate `slot`.
                nodes[slot as usize].next = self.vacant;
                self.vacant = slot;
                start = prev;
            }
        }
        let n = &mut nodes[start as usize];
        n.size = size;
        n.next = after;
        if after != NIL {
            nodes[after as usize].prev = start;
        }
        self.index.link(nodes, start, size);
        self.free_blocks = free_blocks;
        Ok(())
    }

    /// Removes every segment that is entirely free and returns `(id, size)`
    /// of each, ascending by id, so that the caller can free their memory.
    pub fn release_free_segments(&mut self) -> Vec<(SegmentId, usize)> {
        let mut released = Vec::new();
        let mut kept = 0;
        for i in 0..self.live_segments.len() {
            let id = self.live_segments[i];
            let SegmentInfo { size, head, .. } = self.segments[id as usize];
            let h = &self.nodes[head as usize];
            if h.serial == 0 && h.next == NIL {
                debug_assert_eq!(h.size, size);
                self.index.unlink(&mut self.nodes, head);
                self.nodes[head as usize] = Node::vacant(self.vacant);
                self.vacant = head;
                self.segments[id as usize].live = false;
                self.reserved -= size;
                self.free_blocks -= 1;
                released.push((id, size));
            } else {
                self.live_segments[kept] = id;
                kept += 1;
            }
        }
        self.live_segments.truncate(kept);
        released
    }

    /// Exact statistics.
    pub fn stats(&self) -> ArenaStats {
        ArenaStats {
            reserved_bytes: self.reserved,
            in_use_bytes: self.in_use,
            segments: self.live_segments.len(),
            free_blocks: self.free_blocks,
            largest_free_block: self.largest_free_block(),
            allocated_blocks: self.allocated_blocks,
        }
    }

    /// Total size of the free blocks.
    #[allow(dead_code)] // API for the pool and debug checks; not every build calls it
    pub fn free_bytes(&self) -> usize {
        self.reserved - self.in_use
    }

    /// Size of the largest free block, 0 when there is none.
    pub fn largest_free_block(&self) -> usize {
        self.index.largest()
    }

    /// Whether `block` is currently allocated in this arena (it was returned
    /// by [`Arena::try_alloc`] and not freed since).
    #[allow(dead_code)] // API for the pool and debug checks; not every build calls it
    pub fn is_allocated(&self, block: &Block) -> bool {
        match self.nodes.get(block.slot as usize) {
            Some(n) => {
                n.serial == block.serial.get()
                    && n.segment == block.segment
                    && n.offset == block.offset
                    && n.size == block.size
            }
            None => false,
        }
    }

    // ----- internals -------------------------------------------------------

    /// Takes a vacant slot (growing the slab if there is none).
    fn take_vacant(&mut self) -> u32 {
        if self.vacant == NIL {
            self.grow_slab();
        }
        let slot = self.vacant;
        self.vacant = self.nodes[slot as usize].next;
        slot
    }

    /// Adds a vacant slot to the slab.
    #[cold]
    #[inline(never)]
    fn grow_slab(&mut self) {
        let slot = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&s| s != NIL)
            .expect("symmem arena: more than 2^32 - 2 blocks");
        self.nodes.push(Node::vacant(self.vacant));
        self.vacant = slot;
    }
}

/// The error for freeing `block` when it is not allocated.
#[cold]
#[inline(never)]
fn not_allocated(block: &Block) -> ArenaError {
    ArenaError::NotAllocated {
        segment: block.segment,
        offset: block.offset,
        size: block.size,
    }
}
