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
//!   u32le(len value) ‖ value` (a tombstone has an empty value).
//! * Bucket: XOR of its leaf digests, so a write updates it in O(1) and an
//!   empty bucket is all zeros. XOR is order independent: the same entries
//!   give the same digest whatever order they were written in.
//! * Inner node ([`inner_digest`]): SHA-256 of the 16 child digests
//!   concatenated, except that a node whose children are all zero is zero.
//!
//! # Per-shard subtrees
//!
//! A store with 2^s shards gives shard `j` the buckets
//! `[j * 2^(B-s), (j+1) * 2^(B-s))`: whole subtrees. A [`Subtree`] keeps the
//! bucket digests of its shard and every inner node that lies entirely
//! inside it; a write XORs its bucket and marks the path above it dirty
//! (a few bit sets), and dirty nodes are recomputed only when asked for.
//! The few nodes above the shards are combined by the store on demand.

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

/// Digest of one entry (see the module docs for the exact encoding).
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
    h.finalize().into()
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
        Subtree {
            levels,
            dirty,
            any_dirty: false,
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

    /// Starts loading a bucket's digest into the cache: [`Subtree::toggle`]
    /// of that bucket follows shortly (see `Shard::put`).
    #[inline]
    pub fn prefetch_bucket(&self, bucket: usize) {
        prefetch(self.levels[0].as_ptr().wrapping_add(bucket));
    }

    /// Address of the bucket digests (for prefetch hints only; the array
    /// is allocated once and never moves).
    pub fn bucket_digests_ptr(&self) -> *const Digest {
        self.levels[0].as_ptr()
    }

    /// Digest of a bucket.
    pub fn bucket(&self, bucket: usize) -> Digest {
        self.levels[0][bucket]
    }

    /// Digest of local node `index` at local level `k` (0 = buckets),
    /// recomputing dirty nodes first.
    pub fn node(&mut self, k: u32, index: usize) -> Digest {
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
