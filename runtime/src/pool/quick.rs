//! The exact-size reuse cache in front of a pool's arena.
//!
//! Most model code frees and re-allocates the same sizes layer after layer. Returning such a
//! block to the [`Arena`](super::arena::Arena) coalesces it with its neighbours (and, for the
//! remainder of a large reserved segment, updates the arena's ordered index of large blocks),
//! only for the next request to split it off again. The quick cache keeps freed blocks by exact
//! size instead, and hands them back to a request of the same rounded size in O(1).
//!
//! **Determinism.** The cache's state is a function of the *set* of blocks it was given and
//! asked for, not of the order of the calls: the slot of a size is a fixed hash of the size; a
//! slot keeps its blocks sorted by `(segment, offset)` (each block's position is unique, so this
//! is a total order) and holds at most [`PER_SLOT`] of them, the lowest: a block put into a full
//! slot either goes to the arena itself or pushes the slot's highest block there. A request of a
//! size gets the lowest cached block of exactly that size. Ranks that free the same buffers in
//! different orders therefore cache the same blocks, send the same blocks to the arena (whose
//! state depends only on which blocks are free) and hand out the same offsets next; ranks that
//! free in the same order trivially do too. Reading statistics never changes it. Everything
//! that could create a segment (a request the cache and the arena cannot serve, `reserve`,
//! `empty_cache`, the out-of-memory retry) first *flushes* the cache into the arena, in slot
//! order and by position within a slot, so cached blocks are coalesced before the pool grows:
//! the cache never makes a pool create a segment that coalescing could have avoided.

use crate::pool::allocation::Allocation;
use crate::pool::arena::Arena;

/// Number of slots (distinct sizes cached at once). A power of two.
const SLOTS: usize = 32;
/// Blocks kept per slot; more of one size go to the arena.
const PER_SLOT: usize = 16;

#[derive(Default)]
struct Slot {
    /// The cached blocks whose size hashes to this slot (sizes may differ), sorted by
    /// decreasing `(segment, offset)`: the lowest is last.
    blocks: Vec<Allocation>,
}

/// Freed blocks kept by exact size, with their address and window position. The blocks are
/// still *allocated* in the arena.
#[derive(Default)]
pub(crate) struct QuickCache {
    slots: [Slot; SLOTS],
    bytes: usize,
    blocks: usize,
}

#[inline]
fn slot_of(size: usize) -> usize {
    // Fibonacci hashing of the size in 512-byte units (sizes are multiples of the alignment).
    ((size as u64 >> 9).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros()))
        as usize
}

/// The order of cached blocks: by position, which no two live blocks share.
#[inline(always)]
fn key(a: &Allocation) -> (u32, usize) {
    (a.block.segment, a.block.offset)
}

impl Slot {
    /// The lowest block of `size` when the slot's lowest block has another size.
    #[cold]
    #[inline(never)]
    fn take_shared(&mut self, size: usize) -> Option<Allocation> {
        let i = self.blocks.iter().rposition(|b| b.block.size == size)?;
        Some(self.blocks.remove(i))
    }

    /// Insert `a` in order; a full slot gives back its highest block (possibly `a`).
    #[cold]
    #[inline(never)]
    fn insert(&mut self, a: Allocation) -> Option<Allocation> {
        let k = key(&a);
        let full = self.blocks.len() >= PER_SLOT;
        if full && key(&self.blocks[0]) < k {
            return Some(a);
        }
        let i = self.blocks.partition_point(|b| key(b) > k);
        self.blocks.insert(i, a);
        full.then(|| self.blocks.remove(0))
    }
}

impl QuickCache {
    /// The cached block of exactly `size` bytes with the lowest `(segment, offset)`, if any.
    #[inline]
    pub(crate) fn take(&mut self, size: usize) -> Option<Allocation> {
        let slot = slot_of(size);
        let s = &mut self.slots[slot];
        let b = match s.blocks.last() {
            // The common case: the slot's lowest block has the size.
            Some(l) if l.block.size == size => s.blocks.pop()?,
            Some(_) => s.take_shared(size)?,
            None => return None,
        };
        self.bytes -= size;
        self.blocks -= 1;
        Some(b)
    }

    /// Keep `a` for reuse. A full slot keeps its [`PER_SLOT`] lowest blocks and gives back the
    /// highest (`a` or one of the slot's) for the arena.
    #[inline]
    pub(crate) fn put(&mut self, a: Allocation) -> Result<(), Allocation> {
        let size = a.block.size;
        let s = &mut self.slots[slot_of(size)];
        match s.blocks.last() {
            // `a` is the new lowest of a slot with room: the usual case (the block just taken
            // comes back).
            Some(l) if key(l) > key(&a) && s.blocks.len() < PER_SLOT => s.blocks.push(a),
            Some(_) => {
                if let Some(back) = s.insert(a) {
                    self.bytes = self.bytes + size - back.block.size;
                    return Err(back);
                }
            }
            None => {
                if s.blocks.capacity() == 0 {
                    // One more than the slot keeps: a full slot inserts before it evicts.
                    s.blocks.reserve_exact(PER_SLOT + 1);
                }
                s.blocks.push(a);
            }
        }
        self.bytes += size;
        self.blocks += 1;
        Ok(())
    }

    /// Whether the cache holds no block.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Bytes of the cached blocks.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of cached blocks.
    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Size of the largest cached block, 0 when empty.
    pub(crate) fn largest(&self) -> usize {
        self.slots
            .iter()
            .flat_map(|s| s.blocks.iter().map(|b| b.block.size))
            .max()
            .unwrap_or(0)
    }

    /// Return every cached block to `arena` (coalescing them), in slot order and by increasing
    /// `(segment, offset)` within a slot (a function of the cached set). Blocks the arena
    /// refuses cannot exist (each was allocated once and cached once); they are reported.
    pub(crate) fn flush(&mut self, arena: &mut Arena, label: &str) {
        if self.blocks == 0 {
            return;
        }
        for s in &mut self.slots {
            while let Some(a) = s.blocks.pop() {
                if let Err(e) = arena.free(a.block) {
                    crate::diag::error(format_args!(
                        "internal error flushing a cached block of pool `{label}`: {e}"
                    ));
                }
            }
        }
        self.bytes = 0;
        self.blocks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::arena::{ArenaConfig, Block};

    fn arena() -> Arena {
        let mut a = Arena::new(ArenaConfig::default());
        a.add_segment(2 << 20);
        a
    }

    fn alloc(a: &mut Arena, bytes: usize) -> Allocation {
        let block: Block = a.try_alloc(bytes).unwrap();
        Allocation {
            block,
            ptr: 0x1000_0000 + block.offset as u64,
            sym: None,
        }
    }

    fn blocks(r: Option<Allocation>) -> Option<Block> {
        r.map(|a| a.block)
    }

    #[test]
    fn exact_size_reuse_takes_the_lowest_and_flush_coalesces() {
        let mut a = arena();
        let mut q = QuickCache::default();
        let x = alloc(&mut a, 8192);
        let y = alloc(&mut a, 8192);
        q.put(x).unwrap();
        q.put(y).unwrap();
        assert_eq!((q.bytes(), q.blocks(), q.largest()), (16384, 2, 8192));
        assert!(q.take(4096).is_none(), "only the exact size is served");
        let got = q.take(8192).unwrap();
        assert_eq!(
            (got.block, got.ptr),
            (x.block, x.ptr),
            "whole allocation comes back, the lowest first"
        );
        assert_eq!(blocks(q.take(8192)), Some(y.block));
        assert!(q.take(8192).is_none());
        q.put(y).unwrap();
        q.put(x).unwrap();
        assert_eq!(
            blocks(q.take(8192)),
            Some(x.block),
            "whatever the free order"
        );
        q.put(x).unwrap();
        assert_eq!(a.largest_free_block(), (2 << 20) - 16384);
        q.flush(&mut a, "t");
        assert!(q.is_empty());
        assert_eq!(a.largest_free_block(), 2 << 20, "flushed blocks coalesce");
        assert_eq!(a.stats().allocated_blocks, 0);
    }

    /// A size other than 512 that hashes to 512's slot.
    fn sharing_512() -> usize {
        (2..4096usize)
            .map(|u| u * 512)
            .find(|&s| slot_of(s) == slot_of(512))
            .expect("some size shares the slot")
    }

    #[test]
    fn full_slot_keeps_its_lowest_blocks() {
        let mut a = arena();
        let mut q = QuickCache::default();
        let all: Vec<Allocation> = (0..=PER_SLOT).map(|_| alloc(&mut a, 512)).collect();
        for x in &all[1..] {
            q.put(*x).unwrap();
        }
        // Full: a higher block is refused, a lower one pushes out the highest.
        let o = alloc(&mut a, 512);
        assert_eq!(q.put(o).unwrap_err().block, o.block);
        assert_eq!(q.put(all[0]).unwrap_err().block, all[PER_SLOT].block);
        assert_eq!((q.blocks(), q.bytes()), (PER_SLOT, PER_SLOT * 512));
        for x in &all[..PER_SLOT] {
            assert_eq!(blocks(q.take(512)), Some(x.block));
        }
        // A size sharing the slot is cached beside 512 and served by its exact size.
        let other = sharing_512();
        let big = alloc(&mut a, other);
        q.put(all[1]).unwrap();
        q.put(big).unwrap();
        assert_eq!(q.largest(), other);
        assert_eq!(blocks(q.take(other)), Some(big.block));
        assert_eq!(blocks(q.take(512)), Some(all[1].block));
        assert!(q.is_empty());
    }

    /// Positions a sequence of takes returned, cached bytes and blocks, the arena's largest free
    /// block after a flush.
    type Outcome = (Vec<Option<(u32, usize)>>, usize, usize, usize);

    /// The cache after putting 40 blocks in `order` into an empty one (refused blocks go to the
    /// arena), then what a sequence of takes returns and the arena's free state after a flush.
    fn after(order: &[usize]) -> Outcome {
        let other = sharing_512();
        let sizes: Vec<usize> = (0..40)
            .map(|i| match i % 4 {
                0 | 1 => 512,
                2 => other,
                _ => 8192,
            })
            .collect();
        let mut a = arena();
        let mut q = QuickCache::default();
        let all: Vec<Allocation> = sizes.iter().map(|&s| alloc(&mut a, s)).collect();
        for &i in order {
            if let Err(back) = q.put(all[i]) {
                a.free(back.block).unwrap();
            }
        }
        let (bytes, n) = (q.bytes(), q.blocks());
        let takes = [512, 512, other, 8192, 512, other, 8192, 8192]
            .iter()
            .map(|&s| q.take(s).map(|b| (b.block.segment, b.block.offset)))
            .collect();
        q.flush(&mut a, "t");
        (takes, bytes, n, a.largest_free_block())
    }

    #[test]
    fn the_cached_set_does_not_depend_on_the_free_order() {
        let forward: Vec<usize> = (0..40).collect();
        let backward: Vec<usize> = (0..40).rev().collect();
        let mut shuffled = forward.clone();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let want = after(&forward);
        assert_eq!(want.0[0], Some((0, 0)), "the lowest 512-byte block first");
        assert_eq!(after(&backward), want);
        assert_eq!(after(&shuffled), want);
    }

    #[test]
    fn slots_spread_common_sizes() {
        let sizes = [
            512usize,
            1024,
            2048,
            4096,
            8192,
            16384,
            32768,
            65536,
            1 << 20,
            4 << 20,
        ];
        let mut seen = std::collections::HashSet::new();
        for s in sizes {
            seen.insert(slot_of(s));
        }
        assert!(seen.len() >= 8, "power-of-two sizes collide: {seen:?}");
    }
}
