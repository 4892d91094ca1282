//! The free blocks indexed by size: exact size classes (a two-level bitmap over intrusive
//! pairing heaps ordered by address) and a `BTreeMap` for large blocks; the best-fit search.

use std::collections::BTreeMap;

use super::node::{Node, NIL};
use super::segment::SegmentId;

/// Number of exact size classes (class `u` holds free blocks of `u`
/// alignment units, `1 <= u < EXACT_CLASSES`).
const EXACT_CLASSES: usize = 8192;
/// Words of the class bitmap.
const BITMAP_WORDS: usize = EXACT_CLASSES / 64;
/// Words of the summary bitmap (one bit per non-zero bitmap word).
const SUMMARY_WORDS: usize = BITMAP_WORDS / 64;

/// The free blocks, indexed by size.
#[derive(Clone)]
pub struct SizeIndex {
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

impl SizeIndex {
    /// An empty index for blocks aligned to `1 << shift` bytes.
    pub fn new(shift: u32) -> SizeIndex {
        let roots: Box<[u32]> = vec![NIL; EXACT_CLASSES].into_boxed_slice();
        SizeIndex {
            shift,
            bits: [0; BITMAP_WORDS],
            summary: [0; SUMMARY_WORDS],
            roots: roots.try_into().expect("EXACT_CLASSES roots"),
            large: BTreeMap::new(),
        }
    }

    /// Slot of the best free block for a rounded `size`, without removing it.
    #[inline(always)]
    pub fn find_best(&self, size: usize) -> Option<u32> {
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
    pub fn largest(&self) -> usize {
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
    pub fn link(&mut self, nodes: &mut [Node], slot: u32, size: usize) {
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
    pub fn unlink(&mut self, nodes: &mut [Node], slot: u32) {
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

#[cfg(test)]
impl SizeIndex {
    /// Walks every pairing heap, both bitmaps and the large map against `nodes` and panics on
    /// any inconsistency; `full == false` skips the scan of all the class roots (only the
    /// classes whose bit is set are walked). Returns, per slot, whether the index holds it.
    pub fn check(&self, nodes: &[Node], full: bool) -> Vec<bool> {
        // Exact classes: every pairing heap, with the class of each member.
        let mut in_heap: Vec<Option<usize>> = vec![None; nodes.len()];
        let classes: Vec<usize> = if full {
            (0..EXACT_CLASSES).collect()
        } else {
            (0..EXACT_CLASSES)
                .step_by(64)
                .filter(|&c| self.bits[c >> 6] != 0)
                .flat_map(|c| c..c + 64)
                .collect()
        };
        for class in classes {
            let root = self.roots[class];
            let bit = self.bits[class >> 6] >> (class & 63) & 1 == 1;
            assert_eq!(bit, root != NIL, "bitmap out of sync at class {class}");
            if root == NIL {
                continue;
            }
            assert_ne!(class, 0, "class 0 is never used");
            let r = nodes[root as usize];
            assert_eq!((r.left, r.sibling), (NIL, NIL), "root links");
            let mut stack = vec![root];
            while let Some(x) = stack.pop() {
                assert!(in_heap[x as usize].is_none(), "node twice in the heaps");
                in_heap[x as usize] = Some(class);
                let n = nodes[x as usize];
                assert_eq!(n.serial, 0, "allocated node in a heap");
                assert_eq!(n.size >> self.shift, class, "node in the wrong class");
                let mut left = x;
                let mut c = n.child;
                while c != NIL {
                    let cn = nodes[c as usize];
                    assert_eq!(cn.left, left, "left link");
                    assert!(before(nodes, x, c), "heap order");
                    stack.push(c);
                    left = c;
                    c = cn.sibling;
                }
            }
        }
        for w in 0..BITMAP_WORDS {
            assert_eq!(
                self.summary[w >> 6] >> (w & 63) & 1 == 1,
                self.bits[w] != 0,
                "summary"
            );
        }
        let mut indexed: Vec<bool> = in_heap.iter().map(Option::is_some).collect();
        for (&(size, seg, off), &slot) in &self.large {
            let n = nodes[slot as usize];
            assert!(n.serial == 0 && (n.size, n.segment, n.offset) == (size, seg, off));
            assert!(size >> self.shift >= EXACT_CLASSES);
            assert!(!indexed[slot as usize], "node twice in the index");
            indexed[slot as usize] = true;
        }
        indexed
    }

    /// Number of free blocks in exact class `class`.
    pub fn class_len(&self, nodes: &[Node], class: usize) -> usize {
        let mut count = 0;
        let mut stack = vec![self.roots[class]];
        while let Some(x) = stack.pop() {
            if x != NIL {
                count += 1;
                stack.push(nodes[x as usize].child);
                stack.push(nodes[x as usize].sibling);
            }
        }
        count
    }
}
