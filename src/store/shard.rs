//! One shard: its bucket tables, their Merkle subtree, its clock and
//! counters, and the record-level changes that keep them in step (the
//! invariants of the module docs of [`super`] hold between any two calls).

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::expiry_index::{ExpiryIndex, slot_for};
use super::merkle::{Subtree, ZERO};
use super::record::Encoding;
use super::{Hlc, Record, Version};

/// No resume cursor.
pub(super) const NO_CURSOR: (usize, usize) = (usize::MAX, 0);

/// Bucket tables with at most this capacity (hashbrown's smallest
/// allocation, 4 slots) are never shrunk: a bucket of a record or two
/// neither shrinks nor regrows.
const SHRINK_MIN_CAPACITY: usize = 3;

/// Shrinks `table` when removals left it sparse: fewer records than a
/// quarter of its capacity (and more capacity than
/// [`SHRINK_MIN_CAPACITY`]). hashbrown tables never shrink by themselves,
/// so after a mass expiry or tombstone collection the tables sized for
/// the peak would keep their memory (and pin the heap pages they sit on).
/// The new capacity is at least twice the records left, so a table
/// shrinks again only after losing half of them and grows only after
/// doubling: no shrink/grow thrash, and the O(len) rehash is paid for by
/// the ≥ 3/4·capacity removals before it. True if it shrank; the records
/// then sit at other slots.
pub(super) fn shrink_sparse(table: &mut HashTable<Record>, hasher: &ahash::RandomState) -> bool {
    let cap = table.capacity();
    if cap <= SHRINK_MIN_CAPACITY || table.len() >= cap / 4 {
        return false;
    }
    table.shrink_to(table.len() * 2, |r| hasher.hash_one(r.key()));
    table.capacity() < cap
}

#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

/// One shard: bucket tables, their Merkle subtree, a clock and counters.
pub struct Shard {
    pub(super) tables: Box<[HashTable<Record>]>,
    pub(super) tree: Subtree,
    pub(super) clock: Hlc,
    pub(super) live: usize,
    pub(super) tombstones: usize,
    pub(super) bytes: usize,
    /// Every live record with an expiry, by indexed-at time (`expiry.rs`).
    pub(super) expiry: ExpiryIndex,
    /// Where the refresh stopped inside a bucket: `(bucket, slot)`; every
    /// stale record of that bucket at a lower slot is in flight (see the
    /// module docs). Reset by any write into the bucket.
    pub(super) cursor: (usize, usize),
    /// A refresh has copies of this shard's stale records in flight (steps
    /// 1 to 3): stale bits may be clear for records still stale, so a
    /// reader must wait for the refresh (its per-shard mutex).
    pub(super) in_flight: bool,
}

/// Where a key lives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) shard: usize,
    pub(super) bucket: usize,
    pub(super) hash: u64,
}

impl Shard {
    pub(super) fn new(span_bits: u32) -> Shard {
        Shard {
            tables: (0..1usize << span_bits).map(|_| HashTable::new()).collect(),
            tree: Subtree::new(span_bits),
            clock: Hlc::new(),
            live: 0,
            tombstones: 0,
            bytes: 0,
            expiry: ExpiryIndex::default(),
            cursor: NO_CURSOR,
            in_flight: false,
        }
    }

    #[inline]
    pub(super) fn find(&self, s: Slot, key: &[u8]) -> Option<&Record> {
        self.tables[s.bucket].find(s.hash, |r| r.key() == key)
    }

    /// Stores `value` (None = tombstone) at `version` unconditionally,
    /// keeping the tree and counters in step. Hashes nothing: the record
    /// becomes stale and its bucket is marked (module docs).
    pub(super) fn put(
        &mut self,
        s: Slot,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        hasher: &ahash::RandomState,
    ) {
        self.put_expiring(s, key, value, version, 0, hasher);
    }

    /// [`Shard::put`] with an absolute expiry (Unix ms, 0 = none; ignored
    /// for a tombstone), keeping the expiry index in step: the record's
    /// entry stays where it is when the expiry moves later, and an entry
    /// the record no longer needs is left stale (`expiry.rs`).
    #[inline]
    pub(super) fn put_expiring(
        &mut self,
        s: Slot,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
        hasher: &ahash::RandomState,
    ) {
        self.put_encoded(s, key, value, version, expires, Encoding::Auto, hasher);
    }

    /// [`Shard::put_expiring`] with the value's [`Encoding`] (ignored for
    /// a tombstone; node-local metadata, see `record.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_encoded(
        &mut self,
        s: Slot,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
        encoding: Encoding,
        hasher: &ahash::RandomState,
    ) {
        let expires = if value.is_some() { expires } else { 0 };
        // (No prefetch here any more: with no SHA-256 to overlap with, the
        // table header is used at once; the worker prefetches the next
        // pipelined request's bucket instead, see `Store::prefetch`.)
        let table = &mut self.tables[s.bucket];
        let mut compact = false;
        match table.entry(s.hash, |r| r.key() == key, |r| hasher.hash_one(r.key())) {
            Entry::Occupied(mut o) => {
                let rec = o.get_mut();
                let (was_tomb, old_bytes) =
                    (rec.is_tombstone(), rec.value().map_or(0, |v| v.len()));
                let old_at = rec.indexed_at();
                let at = if expires == 0 {
                    0
                } else if old_at != 0 && old_at <= expires {
                    old_at
                } else {
                    slot_for(expires, version.millis())
                };
                rec.replace_encoded(value, version, (expires, at), encoding);
                if at != old_at {
                    match (old_at, at) {
                        (0, _) => self.expiry.insert(at, s.bucket, s.hash),
                        (_, 0) => self.expiry.forget(),
                        _ => self.expiry.reinsert(at, s.bucket, s.hash),
                    }
                    compact = self.expiry.needs_compaction();
                }
                match (was_tomb, value) {
                    (true, Some(v)) => {
                        self.tombstones -= 1;
                        self.live += 1;
                        self.bytes += key.len() + v.len();
                    }
                    (false, None) => {
                        self.live -= 1;
                        self.tombstones += 1;
                        self.bytes -= key.len() + old_bytes;
                    }
                    (false, Some(v)) => self.bytes = self.bytes - old_bytes + v.len(),
                    (true, None) => {}
                }
            }
            Entry::Vacant(v) => {
                if expires == 0 {
                    v.insert(Record::new_encoded(key, value, version, (0, 0), encoding));
                } else {
                    let at = slot_for(expires, version.millis());
                    let r = Record::new_encoded(key, value, version, (expires, at), encoding);
                    v.insert(r);
                    self.expiry.insert(at, s.bucket, s.hash);
                }
                match value {
                    None => self.tombstones += 1,
                    Some(val) => {
                        self.live += 1;
                        self.bytes += key.len() + val.len();
                    }
                }
            }
        }
        self.tree.mark_stale(s.bucket);
        if self.cursor.0 == s.bucket {
            self.cursor = NO_CURSOR;
        }
        if compact {
            self.compact_expiry(hasher);
        }
    }

    /// Sets the [`Encoding`] of the live value of `key` in place (no new
    /// version, nothing hashed: node-local metadata). False if `key` has
    /// no record or a tombstone.
    pub(super) fn set_encoding(&mut self, s: Slot, key: &[u8], encoding: Encoding) -> bool {
        match self.tables[s.bucket].find_mut(s.hash, |r| r.key() == key) {
            Some(r) if !r.is_tombstone() => {
                r.set_encoding(encoding);
                true
            }
            _ => false,
        }
    }

    /// XORs a record's stored digest out of its bucket (it is removed).
    #[inline]
    pub(super) fn unlink(tree: &mut Subtree, bucket: usize, rec: &Record) {
        let d = rec.digest();
        if d != ZERO {
            tree.toggle(bucket, &d);
        }
    }

    /// Removes the record of `key` entirely (no tombstone) if its version
    /// is `expected`, keeping the tree and counters in step.
    pub(super) fn remove_if(
        &mut self,
        s: Slot,
        key: &[u8],
        expected: Version,
        hasher: &ahash::RandomState,
    ) -> bool {
        let table = &mut self.tables[s.bucket];
        let Entry::Occupied(o) =
            table.entry(s.hash, |r| r.key() == key, |r| hasher.hash_one(r.key()))
        else {
            return false;
        };
        if o.get().version() != expected {
            return false;
        }
        let (rec, _) = o.remove();
        Shard::unlink(&mut self.tree, s.bucket, &rec);
        self.shrink_if_sparse(s.bucket, hasher);
        if rec.indexed_at() != 0 {
            self.expiry.forget();
            if self.expiry.needs_compaction() {
                self.compact_expiry(hasher);
            }
        }
        match rec.value() {
            None => self.tombstones -= 1,
            Some(v) => {
                self.live -= 1;
                self.bytes -= key.len() + v.len();
            }
        }
        true
    }

    /// [`shrink_sparse`] for bucket `bucket` after a removal. A shrink
    /// rehashes, so records move between slots: the bucket is flagged
    /// stale and the refresh cursor reset, as for an insert (a refresh's
    /// in-flight copy of a moved record finds another record or none at
    /// its slot and leaves it stale for the next refresh).
    pub(super) fn shrink_if_sparse(&mut self, bucket: usize, hasher: &ahash::RandomState) {
        if shrink_sparse(&mut self.tables[bucket], hasher) {
            self.tree.mark_stale(bucket);
            if self.cursor.0 == bucket {
                self.cursor = NO_CURSOR;
            }
        }
    }

    pub(super) fn clear(&mut self) {
        for t in self.tables.iter_mut() {
            *t = HashTable::new();
        }
        self.reset_counts();
    }

    /// Resets the tree, counters and cursor after the tables were emptied.
    pub(super) fn reset_counts(&mut self) {
        self.tree.clear();
        self.expiry.clear();
        self.cursor = NO_CURSOR;
        self.live = 0;
        self.tombstones = 0;
        self.bytes = 0;
    }
}
