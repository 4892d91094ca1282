//! Tests of the arena: unit tests of the policy, and property tests of best fit,
//! coalescing and cross-arena determinism against a model, with the invariant walk run after
//! every step.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

impl Arena {
    /// Walks every structure and panics on any inconsistency.
    fn check_invariants(&self) {
        self.check(true);
    }

    /// Like `check_invariants`; `full == false` skips the scan of all the
    /// class roots (only the classes whose bit is set are walked).
    fn check(&self, full: bool) {
        let mask = self.cfg.alignment - 1;
        // The size index: heaps, bitmaps and large map, and which slots it holds.
        let indexed = self.index.check(&self.nodes, full);
        // Segments: contiguous, linked, aligned, coalesced, indexed.
        let mut live_nodes = 0usize;
        let mut free_nodes = 0usize;
        let mut alloc_nodes = 0usize;
        let mut in_use = 0usize;
        let mut reserved = 0usize;
        let mut prev_id = None;
        for &id in &self.live_segments {
            assert!(
                prev_id.is_none_or(|p| p < id),
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
                    assert!(indexed[slot as usize], "free block not indexed");
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
            assert!(n.serial == 0 && !indexed[v as usize]);
            vacant += 1;
            v = n.next;
        }
        assert_eq!(vacant + live_nodes, self.nodes.len(), "slab leak");
        let indexed = indexed.iter().filter(|&&i| i).count();
        assert_eq!(indexed, free_nodes, "size index holds stale entries");
        assert_eq!(self.free_blocks, free_nodes);
        assert_eq!(self.allocated_blocks, alloc_nodes);
        assert_eq!(self.in_use, in_use);
        assert_eq!(self.reserved, reserved);
    }

    /// Number of free blocks in exact class `class`.
    fn class_len(&self, class: usize) -> usize {
        self.index.class_len(&self.nodes, class)
    }
}

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
                    assert!(size >= a.round_request(bytes) && size.is_multiple_of(cfg.alignment));
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
