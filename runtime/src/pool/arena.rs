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

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;

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
/// identify the allocation so that [`Arena::free`] can detect double, stale
/// and foreign frees. Two blocks compare equal only if they are the same
/// allocation.
///
/// `repr(C)` keeps the two 32-bit fields in one 8-byte word, so that copies of a
/// block (on the allocation hot path) read back whole words as they were
/// written instead of stalling on a load that spans two narrower stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub(crate) struct Block {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            ArenaError::NotAllocated {
                segment,
                offset,
                size,
            } => write!(
                f,
                "block (segment {segment}, offset {offset}, size {size}) is not allocated in \
                 this pool (double free, or a block of another pool)"
            ),
            ArenaError::InvalidSegmentSize { size, alignment } => write!(
                f,
                "invalid segment size {size}: must be a non-zero multiple of the alignment \
                 {alignment}"
            ),
            ArenaError::InvalidConfig { reason } => {
                write!(f, "invalid arena configuration: {reason}")
            }
        }
    }
}

impl std::error::Error for ArenaError {}

/// A node of the slab: a free or allocated block, or a vacant slot.
///
/// A live node is free iff `serial == 0`. Vacant slots also have serial 0
/// but are never reachable from a live node's links.
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
    /// Pairing heap of the size class (free nodes of exact classes only):
    /// first child.
    child: u32,
    /// Pairing heap: next sibling.
    sibling: u32,
    /// Pairing heap: previous sibling, or the parent for a first child;
    /// `NIL` exactly for the root.
    left: u32,
}

impl Node {
    /// A vacant slot whose vacant-list successor is `next`.
    const fn vacant(next: u32) -> Node {
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

/// The free blocks, indexed by size.
#[derive(Clone)]
struct SizeIndex {
    /// log2(alignment): the unit of the exact classes.
    shift: u32,
    /// Bit `u` set iff exact class `u` is non-empty.
    bits: [u64; BITMAP_WORDS],
    /// Bit `w` set iff `bits[w] != 0`.
    summary: [u64; SUMMARY_WORDS],
    /// Root of the pairing heap (by `(segment, offset)`) of each exact
    /// class, `NIL` when empty.
    roots: Box<[u32; EXACT_CLASSES]>,
    /// Free blocks of at least `EXACT_CLASSES` units: `(size, segment,
    /// offset) -> slot`.
    large: BTreeMap<(usize, SegmentId, usize), u32>,
}

/// Deterministic best-fit offset allocator over caller-owned segments.
/// See the [module documentation](self).
#[derive(Clone)]
pub(crate) struct Arena {
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
        let roots: Box<[u32]> = vec![NIL; EXACT_CLASSES].into_boxed_slice();
        Arena {
            index: SizeIndex {
                shift: cfg.alignment.trailing_zeros(),
                bits: [0; BITMAP_WORDS],
                summary: [0; SUMMARY_WORDS],
                roots: roots.try_into().expect("EXACT_CLASSES roots"),
                large: BTreeMap::new(),
            },
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

impl SizeIndex {
    /// Slot of the best free block for a rounded `size`, without removing it.
    #[inline(always)]
    fn find_best(&self, size: usize) -> Option<u32> {
        let units = size >> self.shift;
        if units < EXACT_CLASSES {
            if let Some(c) = self.first_class_at_least(units) {
                return Some(self.roots[c]);
            }
            // Every large free block is bigger than any exact class.
            return self.large.first_key_value().map(|(_, &slot)| slot);
        }
        self.find_large(size)
    }

    /// Best large free block for `size` bytes.
    #[inline(never)]
    fn find_large(&self, size: usize) -> Option<u32> {
        self.large
            .range((size, 0, 0)..)
            .next()
            .map(|(_, &slot)| slot)
    }

    /// Smallest non-empty exact class `>= class` (`class < EXACT_CLASSES`).
    #[inline(always)]
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

    /// Size of the largest free block, 0 when there is none.
    fn largest(&self) -> usize {
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

    /// Indexes the free node `slot` of `size` bytes (its offset and segment
    /// are already stored).
    #[inline(always)]
    fn link(&mut self, nodes: &mut [Node], slot: u32, size: usize) {
        let class = size >> self.shift;
        if class < EXACT_CLASSES {
            let n = &mut nodes[slot as usize];
            n.child = NIL;
            n.sibling = NIL;
            n.left = NIL;
            let root = self.roots[class];
            if root == NIL {
                self.roots[class] = slot;
                let w = class >> 6;
                let word = self.bits[w];
                if word == 0 {
                    self.summary[w >> 6] |= 1 << (w & 63);
                }
                self.bits[w] = word | (1 << (class & 63));
            } else {
                self.roots[class] = meld(nodes, root, slot);
            }
        } else {
            self.link_large(nodes, slot, size);
        }
    }

    /// Removes the free node `slot` from the index.
    #[inline(always)]
    fn unlink(&mut self, nodes: &mut [Node], slot: u32) {
        let n = &nodes[slot as usize];
        let class = n.size >> self.shift;
        if class < EXACT_CLASSES {
            // Only the root has no `left`: a childless root is alone.
            if n.left == NIL && n.child == NIL {
                self.roots[class] = NIL;
                let w = class >> 6;
                let word = self.bits[w] & !(1 << (class & 63));
                self.bits[w] = word;
                if word == 0 {
                    self.summary[w >> 6] &= !(1 << (w & 63));
                }
            } else {
                self.heap_remove(nodes, class, slot);
            }
        } else {
            self.unlink_large(nodes, slot);
        }
    }

    /// Adds a large free block.
    #[inline(never)]
    fn link_large(&mut self, nodes: &[Node], slot: u32, size: usize) {
        let n = &nodes[slot as usize];
        let old = self.large.insert((size, n.segment, n.offset), slot);
        debug_assert_eq!(old, None);
    }

    /// Removes a large free block.
    #[inline(never)]
    fn unlink_large(&mut self, nodes: &[Node], slot: u32) {
        let n = &nodes[slot as usize];
        let removed = self.large.remove(&(n.size, n.segment, n.offset));
        debug_assert_eq!(removed, Some(slot));
    }

    /// Removes `slot` from the pairing heap of `class`, which holds at
    /// least two nodes.
    #[inline(never)]
    fn heap_remove(&mut self, nodes: &mut [Node], class: usize, slot: u32) {
        let Node {
            child,
            sibling,
            left,
            ..
        } = nodes[slot as usize];
        if left == NIL {
            // The root: its children form the new heap.
            debug_assert_eq!(self.roots[class], slot);
            self.roots[class] = merge_pairs(nodes, child);
            return;
        }
        // Cut `slot` (with its subtree) out of its sibling list.
        let l = &mut nodes[left as usize];
        if l.child == slot {
            l.child = sibling;
        } else {
            l.sibling = sibling;
        }
        if sibling != NIL {
            nodes[sibling as usize].left = left;
        }
        if child != NIL {
            let sub = merge_pairs(nodes, child);
            self.roots[class] = meld(nodes, self.roots[class], sub);
        }
    }
}

/// Whether free node `a` orders before free node `b` (lower address).
#[inline(always)]
fn before(nodes: &[Node], a: u32, b: u32) -> bool {
    let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
    (a.segment, a.offset) < (b.segment, b.offset)
}

/// Melds two pairing-heap roots and returns the new root, whose `left` and
/// `sibling` are left as they were.
#[inline(never)]
fn meld(nodes: &mut [Node], a: u32, b: u32) -> u32 {
    let (p, c) = if before(nodes, b, a) { (b, a) } else { (a, b) };
    let first = nodes[p as usize].child;
    let cn = &mut nodes[c as usize];
    cn.sibling = first;
    cn.left = p;
    if first != NIL {
        nodes[first as usize].left = c;
    }
    nodes[p as usize].child = c;
    p
}

/// Two-pass pairing of the sibling list starting at `first` (not `NIL`);
/// returns the resulting root, with `left` and `sibling` cleared.
fn merge_pairs(nodes: &mut [Node], first: u32) -> u32 {
    // First pass, left to right: meld pairs, stacking the results (linked
    // through `sibling`).
    let mut stack = NIL;
    let mut a = first;
    while a != NIL {
        let b = nodes[a as usize].sibling;
        if b == NIL {
            nodes[a as usize].sibling = stack;
            stack = a;
            break;
        }
        let next = nodes[b as usize].sibling;
        let m = meld(nodes, a, b);
        nodes[m as usize].sibling = stack;
        stack = m;
        a = next;
    }
    // Second pass, right to left: meld everything into one root.
    let mut root = stack;
    let mut rest = nodes[root as usize].sibling;
    while rest != NIL {
        let n = rest;
        rest = nodes[n as usize].sibling;
        root = meld(nodes, root, n);
    }
    let r = &mut nodes[root as usize];
    r.sibling = NIL;
    r.left = NIL;
    root
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

#[cfg(test)]
impl Arena {
    /// Walks every structure and panics on any inconsistency.
    fn check_invariants(&self) {
        self.check(true);
    }

    /// Like `check_invariants`; `full == false` skips the scan of all the
    /// class roots (only the classes whose bit is set are walked).
    fn check(&self, full: bool) {
        let mask = self.cfg.alignment - 1;
        // Exact classes: every pairing heap, with the class of each member.
        let mut in_heap: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut indexed = self.index.large.len();
        let classes: Vec<usize> = if full {
            (0..EXACT_CLASSES).collect()
        } else {
            (0..EXACT_CLASSES)
                .step_by(64)
                .filter(|&c| self.index.bits[c >> 6] != 0)
                .flat_map(|c| c..c + 64)
                .collect()
        };
        for class in classes {
            let root = self.index.roots[class];
            let bit = self.index.bits[class >> 6] >> (class & 63) & 1 == 1;
            assert_eq!(bit, root != NIL, "bitmap out of sync at class {class}");
            if root == NIL {
                continue;
            }
            assert_ne!(class, 0, "class 0 is never used");
            let r = self.nodes[root as usize];
            assert_eq!((r.left, r.sibling), (NIL, NIL), "root links");
            let mut stack = vec![root];
            while let Some(x) = stack.pop() {
                assert!(in_heap[x as usize].is_none(), "node twice in the heaps");
                in_heap[x as usize] = Some(class);
                indexed += 1;
                let n = self.nodes[x as usize];
                assert_eq!(n.serial, 0, "allocated node in a heap");
                assert_eq!(n.size >> self.index.shift, class, "node in the wrong class");
                let mut left = x;
                let mut c = n.child;
                while c != NIL {
                    let cn = self.nodes[c as usize];
                    assert_eq!(cn.left, left, "left link");
                    assert!(before(&self.nodes, x, c), "heap order");
                    stack.push(c);
                    left = c;
                    c = cn.sibling;
                }
            }
        }
        for w in 0..BITMAP_WORDS {
            assert_eq!(
                self.index.summary[w >> 6] >> (w & 63) & 1 == 1,
                self.index.bits[w] != 0,
                "summary"
            );
        }
        for (&(size, seg, off), &slot) in &self.index.large {
            let n = self.nodes[slot as usize];
            assert!(n.serial == 0 && (n.size, n.segment, n.offset) == (size, seg, off));
            assert!(size >> self.index.shift >= EXACT_CLASSES);
        }
        // Segments: contiguous, linked, aligned, coalesced, indexed.
        let mut live_nodes = 0usize;
        let mut free_nodes = 0usize;
        let mut alloc_nodes = 0usize;
        let mut in_use = 0usize;
        let mut reserved = 0usize;
        let mut prev_id = None;
        for &id in &self.live_segments {
            assert!(
                prev_id.map_or(true, |p| p < id),
                "live segments not ascending"
            );
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
                assert!(
                    n.size > 0 && n.size & mask == 0 && n.offset & mask == 0,
                    "alignment"
                );
                let free = n.serial == 0;
                if free {
                    assert!(!prev_free, "two adjacent free blocks");
                    free_nodes += 1;
                    let class = n.size >> self.index.shift;
                    if class < EXACT_CLASSES {
                        assert_eq!(
                            in_heap[slot as usize],
                            Some(class),
                            "free block not indexed"
                        );
                    } else {
                        assert_eq!(
                            self.index.large.get(&(n.size, n.segment, n.offset)),
                            Some(&slot)
                        );
                    }
                } else {
                    assert!(n.serial < self.next_serial.get());
                    alloc_nodes += 1;
                    in_use += n.size;
                }
                prev_free = free;
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
            assert!(n.serial == 0 && in_heap[v as usize].is_none());
            vacant += 1;
            v = n.next;
        }
        assert_eq!(vacant + live_nodes, self.nodes.len(), "slab leak");
        assert_eq!(indexed, free_nodes, "size index holds stale entries");
        assert_eq!(self.free_blocks, free_nodes);
        assert_eq!(self.allocated_blocks, alloc_nodes);
        assert_eq!(self.in_use, in_use);
        assert_eq!(self.reserved, reserved);
    }

    /// Number of free blocks in exact class `class`.
    fn class_len(&self, class: usize) -> usize {
        let mut count = 0;
        let mut stack = vec![self.index.roots[class]];
        while let Some(x) = stack.pop() {
            if x != NIL {
                count += 1;
                stack.push(self.nodes[x as usize].child);
                stack.push(self.nodes[x as usize].sibling);
            }
        }
        count
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
        assert_eq!(
            (
                c.alignment,
                c.small_request_max,
                c.small_segment,
                c.large_segment_rounding
            ),
            (512, MIB, 2 * MIB, 2 * MIB)
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let ok = ArenaConfig::default();
        for bad in [
            ArenaConfig {
                alignment: 0,
                ..ok.clone()
            },
            ArenaConfig {
                alignment: 384,
                ..ok.clone()
            },
            ArenaConfig {
                small_segment: 0,
                ..ok.clone()
            },
            ArenaConfig {
                small_segment: 2 * MIB + 1,
                ..ok.clone()
            },
            ArenaConfig {
                large_segment_rounding: 1000,
                ..ok.clone()
            },
            ArenaConfig {
                small_request_max: 2 * MIB + 1,
                ..ok.clone()
            },
            ArenaConfig {
                small_request_max: usize::MAX,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(ArenaError::InvalidConfig { .. })),
                "{bad:?}"
            );
        }
        assert!(std::panic::catch_unwind(|| Arena::new(ArenaConfig {
            alignment: 3,
            ..ok.clone()
        }))
        .is_err());
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
        let a1 = Arena::new(ArenaConfig {
            alignment: 1,
            ..ArenaConfig::default()
        });
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
        let c = ArenaConfig {
            alignment: 64,
            small_request_max: 100,
            small_segment: 256,
            large_segment_rounding: 192,
        };
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
        assert_eq!(
            a.try_add_segment(0),
            Err(ArenaError::InvalidSegmentSize {
                size: 0,
                alignment: 512
            })
        );
        assert!(a.try_add_segment(1000).is_err());
        assert_eq!(a.segment_size(0), Some(2 * MIB));
        assert_eq!(a.segment_size(2), None);
        let s = a.stats();
        assert_eq!(
            (
                s.reserved_bytes,
                s.segments,
                s.free_blocks,
                s.largest_free_block
            ),
            (2 * MIB + 512, 2, 2, 2 * MIB)
        );
        a.check_invariants();
    }

    #[test]
    fn split() {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let b = alloc(&mut a, 8000);
        assert_eq!((b.segment, b.offset, b.size), (0, 0, 8192));
        let s = a.stats();
        assert_eq!(
            s,
            ArenaStats {
                reserved_bytes: 2 * MIB,
                in_use_bytes: 8192,
                segments: 1,
                free_blocks: 1,
                largest_free_block: 2 * MIB - 8192,
                allocated_blocks: 1,
            }
        );
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
        assert_eq!(a.class_len(16), 1, "x+y must be one 8 KiB block");
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
        let (mut a, blocks) = with_holes(&[3 * u, u, u, u, 2 * u, u, 2 * u, u], &[0, 2, 4, 6]);
        let b = alloc(&mut a, 2 * u - 100);
        assert_eq!(
            b.offset, blocks[4].offset,
            "smallest adequate hole, lowest address"
        );
        let b = alloc(&mut a, 2 * u);
        assert_eq!(b.offset, blocks[6].offset);
        let b = alloc(&mut a, 1);
        assert_eq!(
            b.offset, blocks[2].offset,
            "exact 1-unit hole beats the 3-unit one"
        );
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
    fn coalescing_removes_blocks_from_inside_a_class() {
        // 40 one-unit holes separated by one-unit blocks: all holes share
        // class 1. Freeing a separator merges two holes that are (mostly) not
        // the heap root, so they are cut out of the middle of the heap.
        let u = 512;
        let holes: Vec<usize> = (0..40).map(|i| 2 * i).collect();
        let (mut a, blocks) = with_holes(&[u; 80], &holes);
        assert_eq!(a.class_len(1), 40);
        for i in [37usize, 5, 21, 13, 29] {
            free(&mut a, blocks[2 * i + 1]);
        }
        assert_eq!(a.class_len(1), 30);
        assert_eq!(a.class_len(3), 5);
        // The remaining one-unit holes still come out in address order.
        let mut want: Vec<usize> = (0..40)
            .filter(|i| ![37usize, 38, 5, 6, 21, 22, 13, 14, 29, 30].contains(i))
            .map(|i| blocks[2 * i].offset)
            .collect();
        want.sort_unstable();
        for off in want {
            assert_eq!(alloc(&mut a, u).offset, off);
        }
        assert_eq!(
            alloc(&mut a, 3 * u).offset,
            blocks[10].offset,
            "lowest 3-unit hole"
        );
    }

    #[test]
    fn is_allocated_tracks_lifetime() {
        let mut a = arena();
        a.add_segment(2 * MIB);
        let b = alloc(&mut a, 100);
        assert!(a.is_allocated(&b));
        free(&mut a, b);
        assert!(!a.is_allocated(&b));
        let c = alloc(&mut a, 100);
        assert!(a.is_allocated(&c) && !a.is_allocated(&b));
    }

    #[test]
    fn pool_like_growth_loop() {
        // What a pool does: try, else grow by segment_size_for and retry.
        let mut a = arena();
        let mut live = Vec::new();
        for (i, bytes) in [10, MIB, MIB + 1, 3 * MIB, 512, 0, 5 * MIB, MIB]
            .into_iter()
            .enumerate()
        {
            let b = match a.try_alloc(bytes) {
                Some(b) => b,
                None => {
                    let id = a.add_segment(a.segment_size_for(bytes));
                    let b = alloc(&mut a, bytes);
                    assert_eq!(b.segment, id, "request {i} must land in its new segment");
                    b
                }
            };
            live.push(b);
        }
        let segs: Vec<usize> = (0..a.stats().segments as u32)
            .map(|id| a.segment_size(id).unwrap())
            .collect();
        assert_eq!(segs, vec![2 * MIB, 2 * MIB, 4 * MIB, 6 * MIB]);
        for b in live {
            free(&mut a, b);
        }
        assert_eq!(a.release_free_segments().len(), 4);
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
        assert_eq!(
            a.release_free_segments(),
            vec![(0, 2 * MIB), (1, 2 * MIB), (4, MIB)]
        );
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
        assert_eq!(
            err,
            ArenaError::NotAllocated {
                segment: 0,
                offset: 0,
                size: 8 * KIB
            }
        );
        assert!(err.to_string().contains("not allocated"));
        assert_eq!(a.stats(), before);
        a.check_invariants();
        // The same slot, offset and size are handed out again: the stale
        // block is still rejected thanks to its serial.
        let again = alloc(&mut a, 8 * KIB);
        assert_eq!(
            (again.slot, again.offset, again.size),
            (b.slot, b.offset, b.size)
        );
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
            Block { slot: NIL, ..mine },
            Block { slot: 1, ..mine }, // the free remainder's slot
            Block {
                size: 4 * KIB,
                ..mine
            },
            Block {
                offset: 512,
                ..mine
            },
            Block { segment: 1, ..mine },
            Block {
                serial: mine.serial.saturating_add(1),
                ..mine
            },
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
                let mut blocks: Vec<&Block> =
                    self.live.iter().filter(|b| b.segment == id).collect();
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
            self.gaps()
                .into_iter()
                .filter(|g| g.0 >= size)
                .min()
                .map(|g| (g.1, g.2))
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// `try_alloc`; `kind` picks the size range.
        Alloc {
            kind: u8,
            raw: usize,
        },
        /// What the pool does: `try_alloc`, else add a segment and retry.
        AllocGrow {
            kind: u8,
            raw: usize,
        },
        /// Free the live block at `idx % live`.
        Free {
            idx: usize,
        },
        /// Free an already freed block again.
        FreeAgain {
            idx: usize,
        },
        /// Add a segment; `kind` picks the size.
        AddSegment {
            kind: u8,
            raw: usize,
        },
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
            ArenaConfig {
                alignment: 1,
                small_request_max: 1000,
                small_segment: 4000,
                large_segment_rounding: 3000,
            },
            ArenaConfig {
                alignment: 64,
                small_request_max: 4096,
                small_segment: 16384,
                large_segment_rounding: 8192,
            },
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
            assert_eq!(
                got.map(|b| (b.segment, b.offset)),
                want,
                "best fit for {bytes} bytes"
            );
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
                assert!(
                    matches!(r, Err(ArenaError::NotAllocated { .. })),
                    "double free accepted"
                );
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
        a.check(false);
        assert_eq!(a.stats(), m.expected_stats());
        assert_eq!(
            a.free_bytes(),
            a.stats().reserved_bytes - a.stats().in_use_bytes
        );
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
            for (i, op) in ops.iter().enumerate() {
                let ra = step(&mut a, &mut ma, &mut fa, op);
                let rb = step(&mut b, &mut mb, &mut fb, op);
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(a.stats(), b.stats());
                if i % 32 == 0 {
                    a.check_invariants();
                }
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

    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

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
