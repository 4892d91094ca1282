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
//! currently allocated: a double free, a block of a released segment, or a
//! block of another arena that does not match this arena's live block of the
//! same slot and serial. It never corrupts the arena.
//!
//! # Data structures
//!
//! * A slab (`Vec`) of block nodes with `prev`/`next` address links inside
//!   their segment (O(1) coalescing) and an intrusive list of vacant slots.
//! * Free blocks of fewer than 8192 alignment units (4 MiB at the default
//!   alignment of 512) live in exact size classes, one per unit count. Each
//!   class is a binary min-heap keyed by `(segment, offset)` (so ties go to
//!   the lowest address) with back-pointers for O(log n) removal (O(1) in the
//!   common case of one block per class). A two-level bitmap finds the
//!   smallest non-empty class at least as large as a request in O(1).
//! * Larger free blocks live in a `BTreeMap` keyed by `(size, segment,
//!   offset)`.

use std::collections::BTreeMap;
use std::fmt;

/// Identifier of a segment of an [`Arena`]. Ids are assigned 0, 1, 2, ... in
/// the order of [`Arena::add_segment`] calls and are never reused.
pub(crate) type SegmentId = u32;

/// Sentinel slot index: "no node".
const NIL: u32 = u32::MAX;
/// Number of exact size classes (class `u` holds free blocks of `u`
/// alignment units, `1 <= u < EXACT_CLASSES`).
const EXACT_CLASSES: usize = 8192;
/// Words of the class bitmap.
const BITMAP_WORDS: usize = EXACT_CLASSES / 64;
/// Words of the summary bitmap (one bit per non-zero bitmap word).
const SUMMARY_WORDS: usize = BITMAP_WORDS / 64;

/// An allocated range `[offset, offset + size)` of segment `segment`.
///
/// Blocks are only created by [`Arena::try_alloc`]; the private fields
/// identify the allocation so that [`Arena::free`] can detect double and
/// foreign frees. Two blocks compare equal only if they are the same
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Block {
    /// Segment holding the block.
    pub segment: SegmentId,
    /// Byte offset of the block inside its segment (a multiple of the
    /// alignment).
    pub offset: usize,
    /// Size of the block in bytes: the request rounded up to the alignment.
    pub size: usize,
    /// Slab slot of the node that describes this block.
    slot: u32,
    /// Serial number of the allocation, unique within the arena, never 0.
    serial: u64,
}

/// Configuration of an [`Arena`]. See [`ArenaConfig::validate`] for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArenaConfig {
    /// Alignment of every block offset and size, in bytes: a power of two.
    pub alignment: usize,
    /// Requests (after rounding) up to this many bytes are "small" and share
    /// segments of `small_segment` bytes.
    pub small_request_max: usize,
    /// Size of the segments created for small requests, in bytes.
    pub small_segment: usize,
    /// Segments for large requests are rounded up to a multiple of this.
    pub large_segment_rounding: usize,
}

impl Default for ArenaConfig {
    /// Alignment 512 B, small requests up to 1 MiB in 2 MiB segments, large
    /// segments rounded up to 2 MiB.
    fn default() -> Self {
        ArenaConfig {
            alignment: 512,
            small_request_max: 1 << 20,
            small_segment: 2 << 20,
            large_segment_rounding: 2 << 20,
        }
    }
}

impl ArenaConfig {
    /// Checks the configuration: `alignment` is a power of two;
    /// `small_segment` and `large_segment_rounding` are non-zero multiples of
    /// `alignment`; `small_segment` can hold the largest small request
    /// (`small_request_max` rounded up to the alignment).
    pub fn validate(&self) -> Result<(), ArenaError> {
        let bad = |reason: &'static str| Err(ArenaError::InvalidConfig { reason });
        if !self.alignment.is_power_of_two() {
            return bad("alignment must be a power of two");
        }
        let mask = self.alignment - 1;
        if self.small_segment == 0 || self.small_segment & mask != 0 {
            return bad("small_segment must be a non-zero multiple of alignment");
        }
        if self.large_segment_rounding == 0 || self.large_segment_rounding & mask != 0 {
            return bad("large_segment_rounding must be a non-zero multiple of alignment");
        }
        match self.small_request_max.checked_add(mask) {
            Some(v) if v & !mask <= self.small_segment => Ok(()),
            _ => bad("small_segment must hold small_request_max rounded up to alignment"),
        }
    }
}

/// Exact statistics of an [`Arena`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ArenaStats {
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

/// Errors reported by an [`Arena`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ArenaError {
    /// [`Arena::free`] was given a block that is not currently allocated in
    /// this arena (double free, stale block of a released segment, or a
    /// block of another arena). The arena is unchanged.
    NotAllocated {
        /// Segment of the offending block.
        segment: SegmentId,
        /// Offset of the offending block.
        offset: usize,
        /// Size of the offending block.
        size: usize,
    },
    /// A segment size that is zero or not a multiple of the alignment.
    InvalidSegmentSize {
        /// The size given.
        size: usize,
        /// The arena's alignment.
        alignment: usize,
    },
    /// An invalid [`ArenaConfig`].
    InvalidConfig {
        /// Which rule is broken.
        reason: &'static str,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::NotAllocated { segment, offset, size } => write!(
                f,
                "block (segment {segment}, offset {offset}, size {size}) is not allocated in \
                 this pool (double free, or a block of another pool)"
            ),
            ArenaError::InvalidSegmentSize { size, alignment } => write!(
                f,
                "invalid segment size {size}: must be a non-zero multiple of the alignment \
                 {alignment}"
            ),
            ArenaError::InvalidConfig { reason } => write!(f, "invalid arena configuration: {reason}"),
        }
    }
}

impl std::error::Error for ArenaError {}

/// A node of the slab: a free or allocated block, or a vacant slot.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Offset inside the segment.
    offset: usize,
    /// Size in bytes.
    size: usize,
    /// Serial of the allocation while allocated; 0 when free or vacant.
    serial: u64,
    /// Segment of the block.
    segment: SegmentId,
    /// Address-previous node of the same segment, or `NIL`.
    prev: u32,
    /// Address-next node of the same segment, or `NIL`; for a vacant slot,
    /// the next vacant slot.
    next: u32,
    /// Position in its class heap while free and in an exact class.
    heap_pos: u32,
    /// Whether the node is a free block.
    free: bool,
}

/// An entry of a class heap: a free block, keyed by `(segment, offset)`.
#[derive(Clone, Copy, Debug)]
struct HeapEntry {
    offset: usize,
    segment: SegmentId,
    slot: u32,
}

impl HeapEntry {
    #[inline(always)]
    fn less(&self, other: &HeapEntry) -> bool {
        (self.segment, self.offset) < (other.segment, other.offset)
    }
}

/// Bookkeeping of one segment.
#[derive(Clone, Copy, Debug)]
struct SegmentInfo {
    /// Size in bytes.
    size: usize,
    /// Slot of the node at offset 0 (stable: coalescing keeps the lower
    /// node).
    head: u32,
    /// False once released.
    live: bool,
}

/// Deterministic best-fit offset allocator over caller-owned segments.
/// See the [module documentation](self).
#[derive(Clone)]
pub(crate) struct Arena {
    cfg: ArenaConfig,
    /// log2(alignment).
    shift: u32,
    nodes: Vec<Node>,
    /// Head of the intrusive list of vacant slots.
    vacant: u32,
    /// Exact classes: min-heaps of free blocks by `(segment, offset)`.
    classes: Box<[Vec<HeapEntry>]>,
    /// Bit `u` set iff class `u` is non-empty.
    bits: Box<[u64; BITMAP_WORDS]>,
    /// Bit `w` set iff `bits[w] != 0`.
    summary: [u64; SUMMARY_WORDS],
    /// Free blocks of at least `EXACT_CLASSES` units: `(size, segment,
    /// offset) -> slot`.
    large: BTreeMap<(usize, SegmentId, usize), u32>,
    /// Indexed by `SegmentId`; released segments stay as tombstones.
    segments: Vec<SegmentInfo>,
    /// Ids of live segments, ascending.
    live_segments: Vec<SegmentId>,
    next_serial: u64,
    reserved: usize,
    in_use: usize,
    free_blocks: usize,
    allocated_blocks: usize,
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
            shift: cfg.alignment.trailing_zeros(),
            cfg,
            nodes: Vec::new(),
            vacant: NIL,
            classes: (0..EXACT_CLASSES).map(|_| Vec::new()).collect(),
            bits: Box::new([0; BITMAP_WORDS]),
            summary: [0; SUMMARY_WORDS],
            large: BTreeMap::new(),
            segments: Vec::new(),
            live_segments: Vec::new(),
            next_serial: 1,
            reserved: 0,
            in_use: 0,
            free_blocks: 0,
            allocated_blocks: 0,
        }
    }

    /// The configuration.
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
            return Err(ArenaError::InvalidSegmentSize { size, alignment: self.cfg.alignment });
        }
        let id = SegmentId::try_from(self.segments.len())
            .ok()
            .filter(|&id| id != SegmentId::MAX)
            .expect("symmem arena: segment ids exhausted");
        let head = self.new_node(Node {
            offset: 0,
            size,
            serial: 0,
            segment: id,
            prev: NIL,
            next: NIL,
            heap_pos: 0,
            free: true,
        });
        self.segments.push(SegmentInfo { size, head, live: true });
        self.live_segments.push(id);
        self.reserved += size;
        self.link_free(head);
        Ok(id)
    }

    /// Size of segment `id`, `None` if it does not exist (any more).
    pub fn segment_size(&self, id: SegmentId) -> Option<usize> {
        self.segments.get(id as usize).filter(|s| s.live).map(|s| s.size)
    }

    /// Allocates `bytes` (rounded with [`Arena::round_request`]) from the
    /// smallest free block that fits (ties: lowest `(segment, offset)`),
    /// splitting off the remainder as a free block. Never adds segments:
    /// `None` when no free block fits.
    pub fn try_alloc(&mut self, bytes: usize) -> Option<Block> {
        let size = self.checked_round_request(bytes)?;
        let slot = self.find_best(size)?;
        self.unlink_free(slot);
        let s = slot as usize;
        let Node { offset, size: total, segment, next, .. } = self.nodes[s];
        if total > size {
            let rest = self.new_node(Node {
                offset: offset + size,
                size: total - size,
                serial: 0,
                segment,
                prev: slot,
                next,
                heap_pos: 0,
                free: true,
            });
            if next != NIL {
                self.nodes[next as usize].prev = rest;
            }
            let n = &mut self.nodes[s];
            n.next = rest;
            n.size = size;
            self.link_free(rest);
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let n = &mut self.nodes[s];
        n.free = false;
        n.serial = serial;
        self.in_use += size;
        self.allocated_blocks += 1;
        Some(Block { segment, offset, size, slot, serial })
    }

    /// Returns `block` to the arena, coalescing it with free neighbours of
    /// its segment.
    ///
    /// # Errors
    ///
    /// [`ArenaError::NotAllocated`] if `block` is not currently allocated in
    /// this arena (double free, stale or foreign block); the arena is then
    /// unchanged.
    pub fn free(&mut self, block: Block) -> Result<(), ArenaError> {
        if !self.is_allocated(&block) {
            return Err(ArenaError::NotAllocated {
                segment: block.segment,
                offset: block.offset,
                size: block.size,
            });
        }
        let slot = block.slot;
        let s = slot as usize;
        self.in_use -= block.size;
        self.allocated_blocks -= 1;
        let Node { prev, next, .. } = self.nodes[s];
        {
            let n = &mut self.nodes[s];
            n.serial = 0;
            n.free = true;
        }
        if next != NIL && self.nodes[next as usize].free {
            self.unlink_free(next);
            let Node { size, next: nn, .. } = self.nodes[next as usize];
            let n = &mut self.nodes[s];
            n.size += size;
            n.next = nn;
            if nn != NIL {
                self.nodes[nn as usize].prev = slot;
            }
            self.vacate(next);
        }
        if prev != NIL && self.nodes[prev as usize].free {
            self.unlink_free(prev);
            let Node { size, next: nn, .. } = self.nodes[s];
            let p = &mut self.nodes[prev as usize];
            p.size += size;
            p.next = nn;
            if nn != NIL {
                self.nodes[nn as usize].prev = prev;
            }
            self.vacate(slot);
            self.link_free(prev);
        } else {
            self.link_free(slot);
        }
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
            let h = self.nodes[head as usize];
            if h.free && h.next == NIL {
                debug_assert_eq!(h.size, size);
                self.unlink_free(head);
                self.vacate(head);
                self.segments[id as usize].live = false;
                self.reserved -= size;
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
    pub fn free_bytes(&self) -> usize {
        self.reserved - self.in_use
    }

    /// Size of the largest free block, 0 when there is none.
    pub fn largest_free_block(&self) -> usize {
        if let Some((&(size, _, _), _)) = self.large.last_key_value() {
            return size;
        }
        for s in (0..SUMMARY_WORDS).rev() {
            let sm = self.summary[s];
            if sm != 0 {
                let w = s * 64 + 63 - sm.leading_zeros() as usize;
                let class = w * 64 + 63 - self.bits[w].leading_zeros() as usize;
                return class << self.shift;
            }
        }
        0
    }

    /// Whether `block` is currently allocated in this arena (it was returned
    /// by [`Arena::try_alloc`] and not freed since).
    #[inline]
    pub fn is_allocated(&self, block: &Block) -> bool {
        match self.nodes.get(block.slot as usize) {
            Some(n) => {
                n.serial != 0
                    && n.serial == block.serial
                    && n.segment == block.segment
                    && n.offset == block.offset
                    && n.size == block.size
            }
            None => false,
        }
    }

    // ----- internals -------------------------------------------------------

    /// Takes a vacant slot (or grows the slab) and stores `node` in it.
    #[inline]
    fn new_node(&mut self, node: Node) -> u32 {
        let slot = self.vacant;
        if slot != NIL {
            let n = &mut self.nodes[slot as usize];
            self.vacant = n.next;
            *n = node;
            slot
        } else {
            let slot = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&s| s != NIL)
                .expect("symmem arena: more than 2^32 - 2 blocks");
            self.nodes.push(node);
            slot
        }
    }

    /// Puts `slot` on the vacant list.
    #[inline]
    fn vacate(&mut self, slot: u32) {
        let n = &mut self.nodes[slot as usize];
        n.free = false;
        n.serial = 0;
        n.prev = NIL;
        n.next = self.vacant;
        self.vacant = slot;
    }

    /// Slot of the best free block for a rounded `size`, without removing it.
    #[inline]
    fn find_best(&self, size: usize) -> Option<u32> {
        let units = size >> self.shift;
        if units < EXACT_CLASSES {
            if let Some(c) = self.first_class_at_least(units) {
                return Some(self.classes[c][0].slot);
            }
            // Every large free block is bigger than any exact class.
            return self.large.first_key_value().map(|(_, &slot)| slot);
        }
        self.large.range((size, 0, 0)..).next().map(|(_, &slot)| slot)
    }

    /// Smallest non-empty exact class `>= class`.
    #[inline]
    fn first_class_at_least(&self, class: usize) -> Option<usize> {
        let w = class >> 6;
        let m = self.bits[w] & (u64::MAX << (class & 63));
        if m != 0 {
            return Some((w << 6) | m.trailing_zeros() as usize);
        }
        let w1 = w + 1;
        let mut s = w1 >> 6;
        if s >= SUMMARY_WORDS {
            return None;
        }
        let mut sm = self.summary[s] & (u64::MAX << (w1 & 63));
        loop {
            if sm != 0 {
                let wi = (s << 6) | sm.trailing_zeros() as usize;
                return Some((wi << 6) | self.bits[wi].trailing_zeros() as usize);
            }
            s += 1;
            if s >= SUMMARY_WORDS {
                return None;
            }
            sm = self.summary[s];
        }
    }

    /// Indexes the free node `slot` by size.
    #[inline]
    fn link_free(&mut self, slot: u32) {
        self.free_blocks += 1;
        let n = self.nodes[slot as usize];
        let class = n.size >> self.shift;
        if class < EXACT_CLASSES {
            let heap = &mut self.classes[class];
            let pos = heap.len();
            heap.push(HeapEntry { offset: n.offset, segment: n.segment, slot });
            if pos == 0 {
                self.nodes[slot as usize].heap_pos = 0;
                let w = class >> 6;
                if self.bits[w] == 0 {
                    self.summary[w >> 6] |= 1 << (w & 63);
                }
                self.bits[w] |= 1 << (class & 63);
            } else {
                self.sift_up(class, pos);
            }
        } else {
            self.large.insert((n.size, n.segment, n.offset), slot);
        }
    }

    /// Removes the free node `slot` from the size index.
    #[inline]
    fn unlink_free(&mut self, slot: u32) {
        self.free_blocks -= 1;
        let n = self.nodes[slot as usize];
        let class = n.size >> self.shift;
        if class < EXACT_CLASSES {
            let heap = &mut self.classes[class];
            let pos = n.heap_pos as usize;
            let last = heap.pop().expect("symmem arena: class heap out of sync");
            if pos < heap.len() {
                heap[pos] = last;
                self.nodes[last.slot as usize].heap_pos = pos as u32;
                if pos > 0 && last.less(&heap[(pos - 1) / 2]) {
                    self.sift_up(class, pos);
                } else {
                    self.sift_down(class, pos);
                }
            } else if heap.is_empty() {
                let w = class >> 6;
                self.bits[w] &= !(1 << (class & 63));
                if self.bits[w] == 0 {
                    self.summary[w >> 6] &= !(1 << (w & 63));
                }
            }
        } else {
            let removed = self.large.remove(&(n.size, n.segment, n.offset));
            debug_assert_eq!(removed, Some(slot));
        }
    }

    fn sift_up(&mut self, class: usize, mut pos: usize) {
        let heap = &mut self.classes[class];
        let e = heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = heap[parent];
            if !e.less(&p) {
                break;
            }
            heap[pos] = p;
            self.nodes[p.slot as usize].heap_pos = pos as u32;
            pos = parent;
        }
        heap[pos] = e;
        self.nodes[e.slot as usize].heap_pos = pos as u32;
    }

    fn sift_down(&mut self, class: usize, mut pos: usize) {
        let heap = &mut self.classes[class];
        let len = heap.len();
        let e = heap[pos];
        loop {
            let mut child = 2 * pos + 1;
            if child >= len {
                break;
            }
            if child + 1 < len && heap[child + 1].less(&heap[child]) {
                child += 1;
            }
            let c = heap[child];
            if !c.less(&e) {
                break;
            }
            heap[pos] = c;
            self.nodes[c.slot as usize].heap_pos = pos as u32;
            pos = child;
        }
        heap[pos] = e;
        self.nodes[e.slot as usize].heap_pos = pos as u32;
    }
}

#[cfg(test)]
impl Arena {
    /// Walks every structure and panics on any inconsistency.
    fn check_invariants(&self) {
        let mask = self.cfg.alignment - 1;
        let mut live_nodes = 0usize;
        let mut free_nodes = 0usize;
        let mut alloc_nodes = 0usize;
        let mut in_use = 0usize;
        let mut reserved = 0usize;
        let mut prev_id = None;
        for &id in &self.live_segments {
            assert!(prev_id.map_or(true, |p| p < id), "live segments not ascending");
            prev_id = Some(id);
            let seg = self.segments[id as usize];
            assert!(seg.live);
            reserved += seg.size;
            let mut slot = seg.head;
            let mut prev = NIL;
            let mut expect_off = 0;
            let mut prev_free = false;
            while slot != NIL {
                let n = self.nodes[slot as usize];
                live_nodes += 1;
                assert_eq!(n.segment, id);
                assert_eq!(n.prev, prev, "prev link");
                assert_eq!(n.offset, expect_off, "blocks not contiguous");
                assert!(n.size > 0 && n.size & mask == 0 && n.offset & mask == 0, "alignment");
                if n.free {
                    assert!(!prev_free, "two adjacent free blocks");
                    assert_eq!(n.serial, 0);
                    free_nodes += 1;
                    let class = n.size >> self.shift;
                    if class < EXACT_CLASSES {
                        assert_eq!(self.classes[class][n.heap_pos as usize].slot, slot);
                    } else {
                        assert_eq!(self.large.get(&(n.size, n.segment, n.offset)), Some(&slot));
                    }
                } else {
                    assert!(n.serial != 0 && n.serial < self.next_serial);
                    alloc_nodes += 1;
                    in_use += n.size;
                }
                prev_free = n.free;
                expect_off += n.size;
                prev = slot;
                slot = n.next;
            }
            assert_eq!(expect_off, seg.size, "blocks do not cover the segment");
        }
        for (i, s) in self.segments.iter().enumerate() {
            assert_eq!(s.live, self.live_segments.contains(&(i as SegmentId)));
        }
        let mut vacant = 0usize;
        let mut v = self.vacant;
        while v != NIL {
            let n = self.nodes[v as usize];
            assert!(!n.free && n.serial == 0);
            vacant += 1;
            v = n.next;
        }
        assert_eq!(vacant + live_nodes, self.nodes.len(), "slab leak");
        let mut indexed = self.large.len();
        for (class, heap) in self.classes.iter().enumerate() {
            indexed += heap.len();
            let bit = self.bits[class >> 6] >> (class & 63) & 1 == 1;
            assert_eq!(bit, !heap.is_empty(), "bitmap out of sync at class {class}");
            for (pos, e) in heap.iter().enumerate() {
                let n = self.nodes[e.slot as usize];
                assert!(n.free && n.heap_pos as usize == pos);
                assert_eq!((n.offset, n.segment, n.size >> self.shift), (e.offset, e.segment, class));
                if pos > 0 {
                    assert!(!e.less(&heap[(pos - 1) / 2]), "heap order");
                }
            }
        }
        for w in 0..BITMAP_WORDS {
            assert_eq!(self.summary[w >> 6] >> (w & 63) & 1 == 1, self.bits[w] != 0, "summary");
        }
        for (&(size, seg, off), &slot) in &self.large {
            let n = self.nodes[slot as usize];
            assert!(n.free && (n.size, n.segment, n.offset) == (size, seg, off));
            assert!(size >> self.shift >= EXACT_CLASSES);
        }
        assert_eq!(indexed, free_nodes, "size index holds stale entries");
        assert_eq!(self.free_blocks, free_nodes);
        assert_eq!(self.allocated_blocks, alloc_nodes);
        assert_eq!(self.in_use, in_use);
        assert_eq!(self.reserved, reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;

    fn arena() -> Arena {
        Arena::new(ArenaConfig::default())
    }

    fn alloc(a: &mut Arena, bytes: usize) -> Block {
        let b = a.try_alloc(bytes).expect("allocation failed");
        a.check_invariants();
        b
    }

    fn free(a: &mut Arena, b: Block) {
        a.free(b).expect("free failed");
        a.check_invariants();
    }

    #[test]
    fn default_config() {
        let c = ArenaConfig::default();
        assert_eq!((c.alignment, c.small_request_max, c.small_segment, c.large_segment_rounding),
                   (512, MIB, 2 * MIB, 2 * MIB));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let ok = ArenaConfig::default();
        for bad in [
            ArenaConfig { alignment: 0, ..ok.clone() },
            ArenaConfig { alignment: 384, ..ok.clone() },
            ArenaConfig { small_segment: 0, ..ok.clone() },
            ArenaConfig { small_segment: 2 * MIB + 1, ..ok.clone() },
            ArenaConfig { large_segment_rounding: 1000, ..ok.clone() },
            ArenaConfig { small_request_max: 2 * MIB + 1, ..ok.clone() },
            ArenaConfig { small_request_max: usize::MAX, ..ok.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(ArenaError::InvalidConfig { .. })), "{bad:?}");
        }
        assert!(std::panic::catch_unwind(|| Arena::new(ArenaConfig { alignment: 3, ..ok.clone() })).is_err());
    }

    #[test]
    fn rounding() {
        let a = arena();
        assert_eq!(a.round_request(0), 512);
        assert_eq!(a.round_request(1), 512);
        assert_eq!(a.round_request(512), 512);
        assert_eq!(a.round_request(513), 1024);
        assert_eq!(a.checked_round_request(usize::MAX), None);
        assert_eq!(a.round_request(usize::MAX), usize::MAX & !511);
        let a1 = Arena::new(ArenaConfig { alignment: 1, ..ArenaConfig::default() });
        assert_eq!(a1.round_request(0), 1);
        assert_eq!(a1.round_request(7), 7);
    }

    #[test]
    fn segment_sizing_policy() {
        let a = arena();
        assert_eq!(a.segment_size_for(0), 2 * MIB);
        assert_eq!(a.segment_size_for(8 * KIB), 2 * MIB);
        assert_eq!(a.segment_size_for(MIB), 2 * MIB);
        assert_eq!(a.segment_size_for(MIB + 1), 2 * MIB);
        assert_eq!(a.segment_size_for(2 * MIB), 2 * MIB);
        assert_eq!(a.segment_size_for(2 * MIB + 1), 4 * MIB);
        assert_eq!(a.segment_size_for(3 * MIB), 4 * MIB);
        assert_eq!(a.segment_size_for(100 * MIB + 512), 102 * MIB);
        assert_eq!(a.checked_segment_size_for(usize::MAX - 10), None);
        assert_eq!(a.segment_size_for(usize::MAX) % (2 * MIB), 0);
        let c = ArenaConfig { alignment: 64, small_request_max: 100, small_segment: 256, large_segment_rounding: 192 };
        let a = Arena::new(c);
        assert_eq!(a.segment_size_for(100), 192); // rounds to 128 > 100: large
        assert_eq!(a.segment_size_for(64), 256);
        assert_eq!(a.segment_size_for(65), 192);
        assert_eq!(a.segment_size_for(193), 384);
    }

    #[test]
    fn empty_arena() {
        let mut a = arena();
        assert_eq!(a.try_alloc(1), None);
        assert_eq!(a.stats(), ArenaStats::default());
        assert_eq!(a.release_free_segments(), vec![]);
        a.check_invariants();
    }

    #[test]
    fn add_segment_ids_and_sizes() {
        let mut a = arena();
        assert_eq!(a.add_segment(2 * MIB), 0);
        assert_eq!(a.add_segment(512), 1);
        assert_eq!(a.try_add_segment(0), Err(ArenaError::InvalidSegmentSize { size: 0, alignment: 512 }));
        assert!(a.try_add_segment(1000).is_err());
        assert_eq!(a.segment_size(0), Some(2 * MIB));
        assert_eq!(a.segment_size(2), None);
        let s = a.stats();
        assert_eq!((s.reserved_bytes, s.segments, s.free_blocks, s.largest_free_block), (2 * MIB + 512, 2, 2, 2 * MIB));
        a.check_invariants();
    }

    #[test]
    fn split() {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let b = alloc(&mut a, 8000);
        assert_eq!((b.segment, b.offset, b.size), (0, 0, 8192));
        let s = a.stats();
        assert_eq!(s, ArenaStats {
            reserved_bytes: 2 * MIB,
            in_use_bytes: 8192,
            segments: 1,
            free_blocks: 1,
            largest_free_block: 2 * MIB - 8192,
            allocated_blocks: 1,
        });
        let c = alloc(&mut a, 0);
        assert_eq!((c.offset, c.size), (8192, 512));
        assert_eq!(a.free_bytes(), 2 * MIB - 8704);
        // Exact fit of the remainder: no split, no free block left.
        let d = alloc(&mut a, 2 * MIB - 8704);
        assert_eq!((d.offset, d.size), (8704, 2 * MIB - 8704));
        assert_eq!(a.stats().free_blocks, 0);
        assert_eq!(a.largest_free_block(), 0);
        assert_eq!(a.try_alloc(1), None);
    }

    #[test]
    fn coalesce_left_right_both() {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let x = alloc(&mut a, 4 * KIB);
        let y = alloc(&mut a, 4 * KIB);
        let z = alloc(&mut a, 4 * KIB);
        let w = alloc(&mut a, 4 * KIB); // keeps z away from the tail
        assert_eq!(a.stats().free_blocks, 1);
        // left: x free, then y merges into x
        free(&mut a, x);
        assert_eq!(a.stats().free_blocks, 2);
        free(&mut a, y);
        assert_eq!(a.stats().free_blocks, 2);
        assert!(a.classes[16].len() == 1, "x+y must be one 8 KiB block");
        // right: w merges with the free tail
        free(&mut a, w);
        assert_eq!(a.stats().free_blocks, 2);
        assert_eq!(a.largest_free_block(), 2 * MIB - 12 * KIB);
        // both: z merges with x+y on the left and the tail on the right
        free(&mut a, z);
        assert_eq!(a.stats().free_blocks, 1);
        assert_eq!(a.largest_free_block(), 2 * MIB);
        assert_eq!(a.stats().in_use_bytes, 0);
        // only the lowest node survives: the whole segment is allocatable again
        let all = alloc(&mut a, 2 * MIB);
        assert_eq!(all.offset, 0);
    }

    #[test]
    fn coalesce_does_not_cross_segments() {
        let mut a = arena();
        a.add_segment(4 * KIB);
        a.add_segment(4 * KIB);
        let p = alloc(&mut a, 4 * KIB);
        let q = alloc(&mut a, 4 * KIB);
        assert_eq!((p.segment, q.segment), (0, 1));
        free(&mut a, p);
        free(&mut a, q);
        assert_eq!(a.stats().free_blocks, 2);
        assert_eq!(a.try_alloc(8 * KIB), None);
    }

    /// Carves `sizes` consecutively from one segment, then frees those at
    /// the indices of `holes`.
    fn with_holes(sizes: &[usize], holes: &[usize]) -> (Arena, Vec<Block>) {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let blocks: Vec<Block> = sizes.iter().map(|&s| alloc(&mut a, s)).collect();
        for &h in holes {
            free(&mut a, blocks[h]);
        }
        (a, blocks)
    }

    #[test]
    fn best_fit_smallest_then_lowest_address() {
        // holes (by index): 0 = 3 units, 2 = 1 unit, 4 = 2 units, 6 = 2 units, tail large
        let u = 512;
        let (mut a, blocks) =
            with_holes(&[3 * u, u, u, u, 2 * u, u, 2 * u, u], &[0, 2, 4, 6]);
        let b = alloc(&mut a, 2 * u - 100);
        assert_eq!(b.offset, blocks[4].offset, "smallest adequate hole, lowest address");
        let b = alloc(&mut a, 2 * u);
        assert_eq!(b.offset, blocks[6].offset);
        let b = alloc(&mut a, 1);
        assert_eq!(b.offset, blocks[2].offset, "exact 1-unit hole beats the 3-unit one");
        let b = alloc(&mut a, u + 1);
        assert_eq!((b.offset, b.size), (0, 2 * u), "3-unit hole split");
        let b = alloc(&mut a, u);
        assert_eq!(b.offset, 2 * u, "1-unit remainder of the split");
        let b = alloc(&mut a, u);
        assert_eq!(b.offset, blocks[7].offset + u, "the tail");
    }

    #[test]
    fn best_fit_ties_go_to_lowest_address_many() {
        // 64 equal holes freed in a scrambled order exercise the class heap.
        let u = 512;
        let sizes = vec![u; 129];
        let mut order: Vec<usize> = (0..64).map(|i| 2 * i).collect();
        let mut x = 12345u32;
        for i in (1..order.len()).rev() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            order.swap(i, (x >> 8) as usize % (i + 1));
        }
        let (mut a, blocks) = with_holes(&sizes, &order);
        for i in 0..64 {
            let b = alloc(&mut a, u);
            assert_eq!(b.offset, blocks[2 * i].offset);
            if i % 3 == 0 {
                // free one back: it must be found again next
                free(&mut a, b);
                let b2 = alloc(&mut a, u);
                assert_eq!(b2.offset, b.offset);
            }
        }
        assert_eq!(alloc(&mut a, u).offset, 129 * u, "then the tail");
    }

    #[test]
    fn best_fit_across_segments_and_large_blocks() {
        let mut a = arena();
        a.add_segment(10 * MIB); // large index
        a.add_segment(6 * MIB); // large index
        a.add_segment(6 * MIB); // tie with 1: loses on segment id
        a.add_segment(2 * MIB); // exact class
        a.check_invariants();
        let b = alloc(&mut a, MIB);
        assert_eq!(b.segment, 3, "exact-class block beats larger ones");
        let b = alloc(&mut a, 5 * MIB);
        assert_eq!(b.segment, 1);
        let b = alloc(&mut a, 5 * MIB);
        assert_eq!(b.segment, 2);
        let b = alloc(&mut a, 5 * MIB);
        assert_eq!(b.segment, 0);
        // remainders: seg0 5 MiB (large), seg1/seg2 1 MiB, seg3 1 MiB
        let b = alloc(&mut a, MIB);
        assert_eq!((b.segment, b.offset), (1, 5 * MIB));
        assert_eq!(a.largest_free_block(), 5 * MIB);
        assert_eq!(a.try_alloc(5 * MIB + 1), None);
        let b = alloc(&mut a, 4 * MIB - 512); // just below the exact limit
        assert_eq!((b.segment, b.offset), (0, 5 * MIB));
        assert_eq!(a.largest_free_block(), MIB + 512);
    }

    #[test]
    fn release_free_segments_only_entirely_free() {
        let mut a = arena();
        for _ in 0..4 {
            a.add_segment(2 * MIB);
        }
        let b0 = alloc(&mut a, 2 * MIB); // fills segment 0
        let b1 = alloc(&mut a, 4 * KIB); // segment 1
        let b2 = alloc(&mut a, 2 * MIB); // segment 2
        assert_eq!((b0.segment, b1.segment, b2.segment), (0, 1, 2));
        free(&mut a, b2);
        assert_eq!(a.release_free_segments(), vec![(2, 2 * MIB), (3, 2 * MIB)]);
        a.check_invariants();
        assert_eq!(a.stats().segments, 2);
        assert_eq!(a.stats().reserved_bytes, 4 * MIB);
        assert_eq!(a.segment_size(2), None);
        assert!(a.free(b2).is_err(), "block of a released segment");
        assert_eq!(a.release_free_segments(), vec![]);
        assert_eq!(a.add_segment(MIB), 4, "ids are never reused");
        free(&mut a, b0);
        free(&mut a, b1);
        assert_eq!(a.release_free_segments(), vec![(0, 2 * MIB), (1, 2 * MIB), (4, MIB)]);
        assert_eq!(a.stats(), ArenaStats::default());
        a.check_invariants();
    }

    #[test]
    fn double_free_is_reported_and_harmless() {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let b = alloc(&mut a, 8 * KIB);
        let keep = alloc(&mut a, 8 * KIB);
        free(&mut a, b);
        let before = a.stats();
        let err = a.free(b).unwrap_err();
        assert_eq!(err, ArenaError::NotAllocated { segment: 0, offset: 0, size: 8 * KIB });
        assert!(err.to_string().contains("not allocated"));
        assert_eq!(a.stats(), before);
        a.check_invariants();
        // The same slot, offset and size are handed out again: the stale
        // block is still rejected thanks to its serial.
        let again = alloc(&mut a, 8 * KIB);
        assert_eq!((again.slot, again.offset, again.size), (b.slot, b.offset, b.size));
        assert_ne!(again, b);
        assert!(!a.is_allocated(&b));
        assert!(a.is_allocated(&again));
        assert!(a.free(b).is_err());
        assert!(a.is_allocated(&again));
        free(&mut a, again);
        free(&mut a, keep);
        assert!(a.free(keep).is_err());
        assert_eq!(a.stats().in_use_bytes, 0);
    }

    #[test]
    fn foreign_and_forged_blocks_are_rejected() {
        let mut a = arena();
        let mut other = arena();
        a.add_segment(2 * MIB);
        other.add_segment(2 * MIB);
        other.add_segment(2 * MIB);
        let _x = alloc(&mut other, 4 * KIB);
        let foreign = alloc(&mut other, 4 * KIB);
        let mine = alloc(&mut a, 8 * KIB);
        assert!(a.free(foreign).is_err());
        let forged = [
            Block { slot: mine.slot, serial: 0, ..mine },
            Block { slot: NIL, ..mine },
            Block { slot: 1, serial: 0, ..mine }, // the free remainder's slot
            Block { size: 4 * KIB, ..mine },
            Block { offset: 512, ..mine },
            Block { segment: 1, ..mine },
            Block { serial: mine.serial + 1, ..mine },
        ];
        for f in forged {
            assert!(!a.is_allocated(&f));
            assert!(a.free(f).is_err(), "{f:?}");
        }
        a.check_invariants();
        free(&mut a, mine);
    }

    #[test]
    fn same_sequence_same_blocks() {
        let run = || {
            let mut a = arena();
            let mut out = Vec::new();
            a.add_segment(2 * MIB);
            let mut live = Vec::new();
            for i in 0..200usize {
                let bytes = (i * 7919) % (300 * KIB);
                match a.try_alloc(bytes) {
                    Some(b) => live.push(b),
                    None => {
                        a.add_segment(a.segment_size_for(bytes));
                        live.push(a.try_alloc(bytes).unwrap());
                    }
                }
                out.push(*live.last().unwrap());
                if i % 3 == 0 {
                    let victim = live.remove((i * 31) % live.len());
                    a.free(victim).unwrap();
                }
            }
            (out, a.stats(), a.release_free_segments())
        };
        assert_eq!(run(), run());
    }

    // ----- property tests ----------------------------------------------------

    /// A straightforward model: segments and live blocks; free space is
    /// whatever is not covered by a live block.
    #[derive(Default)]
    struct Model {
        segments: BTreeMap<SegmentId, usize>,
        live: Vec<Block>,
    }

    impl Model {
        /// Maximal free ranges as `(size, segment, offset)`.
        fn gaps(&self) -> Vec<(usize, SegmentId, usize)> {
            let mut gaps = Vec::new();
            for (&id, &size) in &self.segments {
                let mut blocks: Vec<&Block> = self.live.iter().filter(|b| b.segment == id).collect();
                blocks.sort_by_key(|b| b.offset);
                let mut at = 0;
                for b in blocks {
                    assert!(b.offset >= at, "overlap in segment {id}: {b:?}");
                    if b.offset > at {
                        gaps.push((b.offset - at, id, at));
                    }
                    at = b.offset + b.size;
                }
                assert!(at <= size, "block beyond the end of segment {id}");
                if at < size {
                    gaps.push((size - at, id, at));
                }
            }
            gaps
        }

        fn expected_stats(&self) -> ArenaStats {
            let gaps = self.gaps();
            ArenaStats {
                reserved_bytes: self.segments.values().sum(),
                in_use_bytes: self.live.iter().map(|b| b.size).sum(),
                segments: self.segments.len(),
                free_blocks: gaps.len(),
                largest_free_block: gaps.iter().map(|g| g.0).max().unwrap_or(0),
                allocated_blocks: self.live.len(),
            }
        }

        /// `(segment, offset)` that exact best fit must choose.
        fn best_fit(&self, size: usize) -> Option<(SegmentId, usize)> {
            self.gaps().into_iter().filter(|g| g.0 >= size).min().map(|g| (g.1, g.2))
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// try_alloc; `kind` picks the size range.
        Alloc { kind: u8, raw: usize },
        /// What the pool does: try_alloc, else add a segment and retry.
        AllocGrow { kind: u8, raw: usize },
        /// Free the live block at `idx % live`.
        Free { idx: usize },
        /// Free an already freed block again.
        FreeAgain { idx: usize },
        /// Add a segment; `kind` picks the size.
        AddSegment { kind: u8, raw: usize },
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u8>(), any::<usize>()).prop_map(|(kind, raw)| Op::Alloc { kind, raw }),
            6 => (any::<u8>(), any::<usize>()).prop_map(|(kind, raw)| Op::AllocGrow { kind, raw }),
            8 => any::<usize>().prop_map(|idx| Op::Free { idx }),
            1 => any::<usize>().prop_map(|idx| Op::FreeAgain { idx }),
            2 => (any::<u8>(), any::<usize>()).prop_map(|(kind, raw)| Op::AddSegment { kind, raw }),
            1 => Just(Op::Release),
        ]
    }

    fn configs() -> Vec<ArenaConfig> {
        vec![
            ArenaConfig::default(),
            // alignment 1: the exact classes end at 8192 bytes, so both indexes
            // are exercised with small numbers.
            ArenaConfig { alignment: 1, small_request_max: 1000, small_segment: 4000, large_segment_rounding: 3000 },
            ArenaConfig { alignment: 64, small_request_max: 4096, small_segment: 16384, large_segment_rounding: 8192 },
        ]
    }

    fn request_bytes(cfg: &ArenaConfig, kind: u8, raw: usize) -> usize {
        match kind % 8 {
            0..=2 => raw % (4 * cfg.alignment + 1),
            3..=5 => raw % (cfg.small_request_max + 1),
            6 => raw % (3 * cfg.small_segment + 1),
            _ => cfg.small_segment * 2 + cfg.alignment * (raw % 9000),
        }
    }

    fn segment_bytes(cfg: &ArenaConfig, kind: u8, raw: usize) -> usize {
        match kind % 4 {
            0 | 1 => cfg.small_segment,
            2 => cfg.alignment * (1 + raw % 64),
            _ => cfg.large_segment_rounding * (1 + raw % 5),
        }
    }

    /// The observable result of one operation, compared across arenas.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Alloc(Option<Block>),
        Added(Option<SegmentId>, Option<Block>),
        Freed(Result<(), ArenaError>),
        Released(Vec<(SegmentId, usize)>),
        Nothing,
    }

    /// Applies `op` to `a`, checking it against `m`. `freed` collects freed
    /// blocks for double-free attempts.
    fn step(a: &mut Arena, m: &mut Model, freed: &mut Vec<Block>, op: &Op) -> Outcome {
        let cfg = a.config().clone();
        let check_alloc = |a: &Arena, m: &Model, bytes: usize, got: Option<Block>| {
            let size = a.round_request(bytes);
            let want = m.best_fit(size);
            assert_eq!(got.map(|b| (b.segment, b.offset)), want, "best fit for {bytes} bytes");
            if let Some(b) = got {
                assert_eq!(b.size, size);
                assert_eq!(b.offset % cfg.alignment, 0);
                assert_eq!(b.size % cfg.alignment, 0);
                assert!(b.offset + b.size <= m.segments[&b.segment]);
                assert!(a.is_allocated(&b));
            }
        };
        let out = match *op {
            Op::Alloc { kind, raw } => {
                let bytes = request_bytes(&cfg, kind, raw);
                let got = a.try_alloc(bytes);
                check_alloc(a, m, bytes, got);
                m.live.extend(got);
                Outcome::Alloc(got)
            }
            Op::AllocGrow { kind, raw } => {
                let bytes = request_bytes(&cfg, kind, raw);
                match a.try_alloc(bytes) {
                    Some(b) => {
                        check_alloc(a, m, bytes, Some(b));
                        m.live.push(b);
                        Outcome::Alloc(Some(b))
                    }
                    None => {
                        check_alloc(a, m, bytes, None);
                        let size = a.segment_size_for(bytes);
                        assert!(size >= a.round_request(bytes) && size % cfg.alignment == 0);
                        let id = a.add_segment(size);
                        assert!(m.segments.keys().all(|&k| k < id));
                        m.segments.insert(id, size);
                        let got = a.try_alloc(bytes);
                        check_alloc(a, m, bytes, got);
                        let b = got.expect("fresh segment must fit the request");
                        m.live.push(b);
                        Outcome::Added(Some(id), got)
                    }
                }
            }
            Op::Free { idx } => {
                if m.live.is_empty() {
                    return Outcome::Nothing;
                }
                let b = m.live.swap_remove(idx % m.live.len());
                let r = a.free(b);
                assert_eq!(r, Ok(()));
                assert!(!a.is_allocated(&b));
                freed.push(b);
                Outcome::Freed(r)
            }
            Op::FreeAgain { idx } => {
                if freed.is_empty() {
                    return Outcome::Nothing;
                }
                let b = freed[idx % freed.len()];
                let before = a.stats();
                let r = a.free(b);
                assert!(matches!(r, Err(ArenaError::NotAllocated { .. })), "double free accepted");
                assert_eq!(a.stats(), before);
                Outcome::Freed(r)
            }
            Op::AddSegment { kind, raw } => {
                let size = segment_bytes(&cfg, kind, raw);
                let id = a.add_segment(size);
                assert!(m.segments.keys().all(|&k| k < id));
                m.segments.insert(id, size);
                Outcome::Added(Some(id), None)
            }
            Op::Release => {
                let got = a.release_free_segments();
                let want: Vec<(SegmentId, usize)> = m
                    .segments
                    .iter()
                    .filter(|(&id, _)| m.live.iter().all(|b| b.segment != id))
                    .map(|(&id, &size)| (id, size))
                    .collect();
                assert_eq!(got, want);
                for (id, _) in &got {
                    m.segments.remove(id);
                }
                Outcome::Released(got)
            }
        };
        a.check_invariants();
        assert_eq!(a.stats(), m.expected_stats());
        assert_eq!(a.free_bytes(), a.stats().reserved_bytes - a.stats().in_use_bytes);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// No overlap, alignment, blocks inside their segment, exact best
        /// fit, exact stats, double frees reported, and determinism (two
        /// arenas fed the same calls agree on every result).
        #[test]
        fn random_sequences_match_model(cfg_idx in 0usize..3, ops in prop::collection::vec(op(), 1..300)) {
            let cfg = configs()[cfg_idx].clone();
            let mut a = Arena::new(cfg.clone());
            let mut b = Arena::new(cfg);
            let (mut ma, mut mb) = (Model::default(), Model::default());
            let (mut fa, mut fb) = (Vec::new(), Vec::new());
            for op in &ops {
                let ra = step(&mut a, &mut ma, &mut fa, op);
                let rb = step(&mut b, &mut mb, &mut fb, op);
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(a.stats(), b.stats());
            }
            // Free everything: a single free block per segment, all released.
            for blk in std::mem::take(&mut ma.live) {
                prop_assert_eq!(a.free(blk), Ok(()));
            }
            a.check_invariants();
            let s = a.stats();
            prop_assert_eq!(s.free_blocks, s.segments);
            prop_assert_eq!(s.in_use_bytes, 0);
            let released = a.release_free_segments();
            prop_assert_eq!(released.len(), s.segments);
            prop_assert_eq!(a.stats(), ArenaStats::default());
            a.check_invariants();
        }

        /// Many same-size blocks in few segments: stresses the class heaps.
        #[test]
        fn equal_sizes_fragmentation(units in prop::collection::vec(1usize..4, 1..400), frees in prop::collection::vec(any::<usize>(), 0..400)) {
            let mut a = arena();
            let mut m = Model::default();
            let mut freed = Vec::new();
            for (i, u) in units.iter().enumerate() {
                step(&mut a, &mut m, &mut freed, &Op::AllocGrow { kind: 0, raw: u * 512 });
                if let Some(&f) = frees.get(i) {
                    if f % 3 != 0 {
                        step(&mut a, &mut m, &mut freed, &Op::Free { idx: f });
                    }
                }
            }
            for f in frees {
                step(&mut a, &mut m, &mut freed, &Op::Free { idx: f });
                step(&mut a, &mut m, &mut freed, &Op::Alloc { kind: 0, raw: f / 7 });
            }
        }
    }
}
