//! The Merkle tree: fixed hash buckets, XOR bucket digests, lazily
//! recomputed inner nodes, split into per-shard subtrees.
//!
//! # Shape (identical on every node of a cluster)
//!
//! * `bits` = B (a multiple of 4): there are 2^B leaf **buckets**. A key's
//!   bucket is the top B bits of [`key_hash`] (XXH3-64, seed 0, over the
//!   key bytes): stable across processes, builds and platforms.
//! * The tree has fan-out 16 and depth `B / 4`. Level 0 is the root, level
//!   `d` has 16^d nodes, level `B / 4` is the buckets. Node `(d, i)` has
//!   children `(d + 1, 16 i .. 16 i + 15)`.
//!
//! # Digests
//!
//! * Leaf ([`leaf_digest`]): SHA-256 over
//!   `u32le(len key) ‖ key ‖ u64le(hlc) ‖ u64le(node) ‖ u8(tombstone) ‖
//!   u32le(len value) ‖ value` (a tombstone has an empty value), truncated
//!   to its first 128 bits ([`LEAF_BYTES`]) and zero-padded to 32 bytes.
//!   Records store only those 16 bytes (`record.rs`).
//! * Bucket: XOR of its leaf digests, so one record changes it in O(1) and
//!   an empty bucket is all zeros. Its upper 16 bytes are always zero. XOR is order independent: the same
//!   entries give the same digest whatever order they were written in.
//! * Inner node ([`inner_digest`]): SHA-256 of the 16 child digests
//!   concatenated, except that a node whose children are all zero is zero.
//!
//! # Per-shard subtrees and lazy leaves
//!
//! A store with 2^s shards gives shard `j` the buckets
//! `[j * 2^(B-s), (j+1) * 2^(B-s))`: whole subtrees. A [`Subtree`] keeps the
//! bucket digests of its shard, every inner node that lies entirely inside
//! it, and two kinds of dirty marks:
//!
//! * **stale buckets** (one bit per bucket, [`Subtree::mark_stale`]): the
//!   bucket may hold records whose leaf digest was not computed yet. Each
//!   record stores the leaf digest that is XORed into its bucket (ZERO if
//!   none yet) and a stale flag (`record.rs`), so the invariant is: *a
//!   bucket digest is the XOR of the stored digests of its records*, and
//!   it is the XOR of their true leaf digests once no record is stale.
//!   A write only flags its record and sets its bucket's bit: no SHA-256
//!   on the write path. Before a digest is read the store rehashes the
//!   stale records of the buckets below it (`bucket ^= stored ^ new`,
//!   [`Subtree::toggle`]) and clears their bits (`store/mod.rs`).
//! * **dirty inner nodes** (one bit per node per level): set by
//!   [`Subtree::toggle`] along the path above a changed bucket digest, and
//!   recomputed bottom up only when a node is read ([`Subtree::node`]).
//!
//! Why lazy leaves: hashing on the write path cost two SHA-256 per
//! overwrite (the old leaf had to be recomputed, as it was not stored),
//! +1.15 µs per write against the raw table, 12% of SET's server CPU at
//! pipeline depth 16 (`perf/antientropy.md`). Lazily, a write costs a flag
//! and a bit, and the deferred work is one SHA-256 per distinct key
//! written between two reads of the tree.
//!
//! The few nodes above the shards are combined by the store on demand.
//!
//! Overview and rationale: docs/architecture.md, "Merkle tree".

use sha2::{Digest as _, Sha256};

/// A 32-byte SHA-256 based digest.
pub type Digest = [u8; 32];

/// The digest of an empty subtree.
pub const ZERO: Digest = [0; 32];

/// Fan-out of inner nodes, as a power of two.
pub const FANOUT_BITS: u32 = 4;
/// Fan-out of inner nodes.
pub const FANOUT: usize = 1 << FANOUT_BITS;

/// Stable placement hash of a key (XXH3-64, seed 0).
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Bucket of a key hash in a tree of `2^bits` buckets.
#[inline]
pub fn bucket_of(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

/// Significant bytes of a leaf digest: SHA-256 truncated to 128 bits
/// (why: docs/architecture.md, "Merkle tree").
pub const LEAF_BYTES: usize = 16;

/// Digest of one entry (see the module docs for the exact encoding): the
/// first [`LEAF_BYTES`] bytes of the SHA-256, then zeros.
pub fn leaf_digest(key: &[u8], value: Option<&[u8]>, version: super::Version) -> Digest {
    let mut h = Sha256::new();
    h.update((key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(version.hlc.to_le_bytes());
    h.update(version.node.to_le_bytes());
    h.update([value.is_none() as u8]);
    let v = value.unwrap_or(&[]);
    h.update((v.len() as u32).to_le_bytes());
    h.update(v);
    let mut d = ZERO;
    d[..LEAF_BYTES].copy_from_slice(&h.finalize()[..LEAF_BYTES]);
    d
}

/// Digest of an inner node from its 16 children.
pub fn inner_digest(children: &[Digest]) -> Digest {
    debug_assert_eq!(children.len(), FANOUT);
    if children.iter().all(|c| *c == ZERO) {
        return ZERO;
    }
    let mut h = Sha256::new();
    for c in children {
        h.update(c);
    }
    h.finalize().into()
}

/// A cache prefetch hint for the line holding `p` (no-op off x86-64).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no
    // observable effect, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// XORs `b` into `a`.
#[inline]
pub fn xor_into(a: &mut Digest, b: &Digest) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Lower-case hex of a digest.
pub fn hex(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Tree parameters; nodes with different shapes refuse to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// log2 of the number of buckets; a multiple of [`FANOUT_BITS`].
    pub bits: u32,
}

impl Shape {
    /// A shape with 2^bits buckets. `bits` must be a multiple of 4, ≤ 32.
    pub fn new(bits: u32) -> Option<Shape> {
        (bits.is_multiple_of(FANOUT_BITS) && bits <= 32).then_some(Shape { bits })
    }

    /// Level of the buckets (= depth of the tree).
    pub fn depth(&self) -> u32 {
        self.bits / FANOUT_BITS
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        1 << self.bits
    }

    /// Number of nodes at `level` (0 = root).
    pub fn nodes_at(&self, level: u32) -> usize {
        1 << (FANOUT_BITS * level)
    }
}

/// The part of the tree owned by one shard (see the module docs).
#[derive(Debug, Clone)]
pub struct Subtree {
    /// `levels[0]` are the buckets; `levels[k]` nodes span 16^k buckets.
    levels: Vec<Vec<Digest>>,
    /// Dirty bits for `levels[k]`, k ≥ 1 (`dirty[k - 1]`).
    dirty: Vec<Vec<u64>>,
    /// True if any dirty bit is set.
    any_dirty: bool,
    /// One bit per bucket: it may hold stale records (see the module docs).
    stale: Vec<u64>,
}

impl Subtree {
    /// A subtree over `2^span_bits` buckets, all empty.
    pub fn new(span_bits: u32) -> Subtree {
        let top = span_bits / FANOUT_BITS;
        let mut levels = Vec::with_capacity(top as usize + 1);
        let mut dirty = Vec::with_capacity(top as usize);
        for k in 0..=top {
            let n = 1usize << (span_bits - FANOUT_BITS * k);
            levels.push(vec![ZERO; n]);
            if k > 0 {
                dirty.push(vec![0u64; n.div_ceil(64)]);
            }
        }
        let stale = vec![0u64; (1usize << span_bits).div_ceil(64)];
        Subtree {
            levels,
            dirty,
            any_dirty: false,
            stale,
        }
    }

    /// Number of local levels above the buckets.
    pub fn top_level(&self) -> u32 {
        (self.levels.len() - 1) as u32
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.levels[0].len()
    }

    /// XORs a leaf digest into (or out of) a bucket and marks its path dirty.
    #[inline]
    pub fn toggle(&mut self, bucket: usize, leaf: &Digest) {
        xor_into(&mut self.levels[0][bucket], leaf);
        for (k, bits) in self.dirty.iter_mut().enumerate() {
            let i = bucket >> (FANOUT_BITS * (k as u32 + 1));
            bits[i / 64] |= 1 << (i % 64);
        }
        self.any_dirty = !self.dirty.is_empty();
    }

    /// Marks a bucket as possibly holding stale records (a write).
    #[inline]
    pub fn mark_stale(&mut self, bucket: usize) {
        self.stale[bucket / 64] |= 1 << (bucket % 64);
    }

    /// Clears a bucket's stale mark (its records were all rehashed).
    #[inline]
    pub fn clear_stale(&mut self, bucket: usize) {
        self.stale[bucket / 64] &= !(1 << (bucket % 64));
    }

    /// The first bucket in `from..to` marked stale, if any.
    pub fn next_stale(&self, from: usize, to: usize) -> Option<usize> {
        let to = to.min(self.buckets());
        let mut w = from / 64;
        while w * 64 < to {
            let mut word = self.stale[w];
            if w == from / 64 {
                word &= u64::MAX << (from % 64);
            }
            if word != 0 {
                let b = w * 64 + word.trailing_zeros() as usize;
                return (b < to).then_some(b);
            }
            w += 1;
        }
        None
    }

    /// Digest of a bucket.
    pub fn bucket(&self, bucket: usize) -> Digest {
        self.levels[0][bucket]
    }

    /// Digest of local node `index` at local level `k` (0 = buckets),
    /// recomputing dirty inner nodes first. Exact only if no bucket below
    /// the node is stale: the caller refreshes those leaves first.
    pub fn node(&mut self, k: u32, index: usize) -> Digest {
        debug_assert!(
            self.next_stale(index << (FANOUT_BITS * k), (index + 1) << (FANOUT_BITS * k))
                .is_none(),
            "node read over stale buckets"
        );
        self.refresh();
        self.levels[k as usize][index]
    }

    /// The digests of a whole local level (after a refresh).
    pub fn level(&mut self, k: u32) -> &[Digest] {
        self.refresh();
        &self.levels[k as usize]
    }

    /// Recomputes every dirty inner node, bottom up.
    pub fn refresh(&mut self) {
        if !self.any_dirty {
            return;
        }
        for k in 1..self.levels.len() {
            let (lower, upper) = self.levels.split_at_mut(k);
            let children = &lower[k - 1];
            let nodes = &mut upper[0];
            for (w, word) in self.dirty[k - 1].iter_mut().enumerate() {
                while *word != 0 {
                    let bit = word.trailing_zeros() as usize;
                    *word &= *word - 1;
                    let i = w * 64 + bit;
                    nodes[i] = inner_digest(&children[i * FANOUT..(i + 1) * FANOUT]);
                }
            }
        }
        self.any_dirty = false;
    }

    /// Resets every digest to zero.
    pub fn clear(&mut self) {
        for l in &mut self.levels {
            l.fill(ZERO);
        }
        for d in &mut self.dirty {
            d.fill(0);
        }
        self.stale.fill(0);
        self.any_dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;

    fn leaf(n: u8) -> Digest {
        leaf_digest(&[n], Some(&[n]), Version::new(n as u64, 1))
    }

    #[test]
    fn empty_subtree_is_zero() {
        let mut t = Subtree::new(8);
        assert_eq!(t.top_level(), 2);
        assert_eq!(t.node(2, 0), ZERO);
        assert_eq!(inner_digest(&[ZERO; 16]), ZERO);
    }

    #[test]
    fn toggle_twice_restores_zero_and_order_is_irrelevant() {
        let mut a = Subtree::new(8);
        let mut b = Subtree::new(8);
        a.toggle(3, &leaf(1));
        a.toggle(3, &leaf(2));
        a.toggle(200, &leaf(3));
        b.toggle(200, &leaf(3));
        b.toggle(3, &leaf(2));
        b.toggle(3, &leaf(1));
        assert_ne!(a.node(2, 0), ZERO);
        assert_eq!(a.node(2, 0), b.node(2, 0));
        a.toggle(3, &leaf(1));
        a.toggle(3, &leaf(2));
        a.toggle(200, &leaf(3));
        assert_eq!(a.node(2, 0), ZERO);
    }

    #[test]
    fn one_change_dirties_exactly_one_path() {
        let mut t = Subtree::new(8);
        for i in 0..256 {
            t.toggle(i, &leaf(i as u8));
        }
        let before: Vec<Digest> = t.level(1).to_vec();
        let root_before = t.node(2, 0);
        t.toggle(37, &leaf(99));
        let after = t.level(1).to_vec();
        let changed: Vec<usize> = (0..16).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(changed, vec![37 / 16]);
        assert_ne!(t.node(2, 0), root_before);
    }

    #[test]
    fn odd_span_has_partial_top_level() {
        // 2^6 buckets: one full level of 4 nodes of 16 buckets each.
        let mut t = Subtree::new(6);
        assert_eq!(t.top_level(), 1);
        t.toggle(63, &leaf(5));
        assert_eq!(t.level(1).len(), 4);
        assert_ne!(t.node(1, 3), ZERO);
        assert_eq!(t.node(1, 0), ZERO);
    }

    #[test]
    fn stale_marks_are_found_in_range_and_cleared() {
        let mut t = Subtree::new(8);
        assert_eq!(t.next_stale(0, 256), None);
        for b in [0, 63, 64, 130, 255] {
            t.mark_stale(b);
        }
        assert_eq!(t.next_stale(0, 256), Some(0));
        assert_eq!(t.next_stale(1, 256), Some(63));
        assert_eq!(t.next_stale(64, 65), Some(64));
        assert_eq!(t.next_stale(65, 130), None);
        assert_eq!(t.next_stale(65, 131), Some(130));
        assert_eq!(t.next_stale(131, 1000), Some(255));
        t.clear_stale(63);
        assert_eq!(t.next_stale(1, 64), None);
        // Marking touches no digest and no inner node.
        assert_eq!(t.node(0, 1), ZERO);
        t.clear();
        assert_eq!(t.next_stale(0, 256), None);
    }

    #[test]
    fn bucket_uses_top_bits() {
        assert_eq!(bucket_of(u64::MAX, 16), 0xffff);
        assert_eq!(bucket_of(1 << 48, 16), 1);
        assert_eq!(bucket_of(123, 0), 0);
        assert_eq!(hex(&ZERO), "0".repeat(64));
    }

    #[test]
    fn leaf_digest_distinguishes_tombstone_and_versions() {
        let v = Version::new(1, 2);
        assert_ne!(leaf_digest(b"k", None, v), leaf_digest(b"k", Some(b""), v));
        assert_ne!(
            leaf_digest(b"k", Some(b"x"), v),
            leaf_digest(b"k", Some(b"x"), Version::new(1, 3))
        );
        // Length prefixes keep key/value boundaries unambiguous.
        assert_ne!(
            leaf_digest(b"ab", Some(b"c"), v),
            leaf_digest(b"a", Some(b"bc"), v)
        );
    }
}
