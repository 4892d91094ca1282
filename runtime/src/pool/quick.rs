//! The exact-size reuse cache in front of a pool's arena.
//!
//! Most model code frees and re-allocates the same sizes layer after layer. Returning such a
//! block to the [`Arena`](super::arena::Arena) coalesces it with its neighbours (and, for the
//! remainder of a large reserved segment, updates the arena's ordered index of large blocks),
//! only for the next request to split it off again. The quick cache keeps freed blocks by exact
//! size instead, and hands them back to a request of the same rounded size in O(1).
//!
//! **Determinism.** The cache is a pure function of the sequence of pool calls, like the arena:
//! the slot of a size is a fixed hash of the size, a slot holds one size at a time, blocks are
//! reused last-in first-out, and a slot that is full or holds another size sends the block to
//! the arena. Reading statistics never changes it. Everything that could create a segment
//! (a request the cache and the arena cannot serve, `reserve`, `empty_cache`, the
//! out-of-memory retry) first *flushes* the cache into the arena, in slot order, so cached
//! blocks are coalesced before the pool grows: the cache never makes a pool create a segment
//! that coalescing could have avoided. The same requests on every rank therefore still give the
//! same segments and the same offsets.

use crate::pool::allocation::Allocation;
use crate::pool::arena::Arena;

/// Number of slots (distinct sizes cached at once). A power of two.
const SLOTS: usize = 32;
/// Blocks kept per slot; more of one size go to the arena.
const PER_SLOT: usize = 16;

#[derive(Default)]
struct Slot {
    /// Size of the blocks the slot holds (meaningful while `blocks` is non-empty).
    size: usize,
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

impl QuickCache {
    /// A cached block of exactly `size` bytes, if any.
    #[inline]
    pub(crate) fn take(&mut self, size: usize) -> Option<Allocation> {
        let s = &mut self.slots[slot_of(size)];
        if s.size != size {
            return None;
        }
        let b = s.blocks.pop()?;
        self.bytes -= size;
        self.blocks -= 1;
        Some(b)
    }

    /// Keep `block` for reuse; gives it back when its slot is full or holds another size.
    #[inline]
    pub(crate) fn put(&mut self, a: Allocation) -> Result<(), Allocation> {
        let size = a.block.size;
        let s = &mut self.slots[slot_of(size)];
        if s.blocks.is_empty() {
            if s.blocks.capacity() == 0 {
                s.blocks.reserve_exact(PER_SLOT);
            }
            s.size = size;
        } else if s.size != size || s.blocks.len() >= PER_SLOT {
            return Err(a);
        }
        s.blocks.push(a);
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
            .filter(|s| !s.blocks.is_empty())
            .map(|s| s.size)
            .max()
            .unwrap_or(0)
    }

    /// Return every cached block to `arena` (coalescing them), in slot order. Blocks the arena
    /// refuses cannot exist (each was allocated once and cached once); they are reported.
    pub(crate) fn flush(&mut self, arena: &mut Arena, label: &str) {
        if self.blocks == 0 {
            return;
        }
        for s in &mut self.slots {
            while let Some(a) = s.blocks.pop() {
                if let Err(e) = arena.free(a.block) {
                    eprintln!(
                        "symmem: internal error flushing a cached block of pool `{label}`: {e}"
                    );
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
    fn exact_size_reuse_is_lifo_and_flush_coalesces() {
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
            (y.block, y.ptr),
            "whole allocation comes back"
        );
        assert_eq!(blocks(q.take(8192)), Some(x.block));
        assert!(q.take(8192).is_none());
        q.put(x).unwrap();
        q.put(y).unwrap();
        assert_eq!(a.largest_free_block(), (2 << 20) - 16384);
        q.flush(&mut a, "t");
        assert!(q.is_empty());
        assert_eq!(a.largest_free_block(), 2 << 20, "flushed blocks coalesce");
        assert_eq!(a.stats().allocated_blocks, 0);
    }

    #[test]
    fn full_or_foreign_slot_refuses() {
        let mut a = arena();
        let mut q = QuickCache::default();
        let all: Vec<Allocation> = (0..=PER_SLOT).map(|_| alloc(&mut a, 512)).collect();
        for x in &all[..PER_SLOT] {
            q.put(*x).unwrap();
        }
        assert_eq!(q.put(all[PER_SLOT]).unwrap_err().block, all[PER_SLOT].block);
        // A size that hashes to the same slot as 512 but differs is refused while the slot is
        // occupied.
        let other = (2..4096usize)
            .map(|u| u * 512)
            .find(|&s| slot_of(s) == slot_of(512))
            .expect("some size shares the slot");
        let o = alloc(&mut a, other);
        assert_eq!(q.put(o).unwrap_err().block, o.block);
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
