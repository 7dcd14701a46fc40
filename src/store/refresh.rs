//! Lazy leaf digests: the refresh that brings stale bucket digests up to
//! date before any digest is read.
//!
//! # Design (measurements: `perf/antientropy.md`)
//!
//! Writes never hash. A write replaces or inserts its record (flagged
//! stale, its stored digest kept, also when reallocated) and sets its
//! bucket's stale bit; a removal (tombstone GC, `remove_if`, clear) XORs
//! the record's stored digest out of its bucket at once (one XOR).
//! Hashing eagerly cost two SHA-256 per overwrite under the shard lock,
//! about +1.1 µs per write on the shared VM; lazily a write costs a flag
//! and a bit, and the deferred work is one SHA-256 per distinct key
//! written between two reads of the tree.
//!
//! Every digest read ([`Store::root`], [`Store::node_digest`], and hence
//! HASH and the anti-entropy `MKV.*` replies) first **refreshes** the
//! stale buckets below the node, per shard, in chunks:
//!
//! 1. under the shard lock, copy up to [`REFRESH_CHUNK`] stale records
//!    (≤ [`REFRESH_CHUNK_BYTES`] of keys and values) with their table
//!    slots, clearing the stale bit of each bucket fully copied;
//! 2. without the lock, compute their leaf digests (the SHA-256 work);
//! 3. under the lock again, store each digest into the record at its slot
//!    if that record still has exactly the copied contents (otherwise it
//!    was rewritten, moved or removed meanwhile, and any rewrite or insert
//!    set the bucket's bit again): `bucket ^= stored ^ new`, flag cleared.
//!    If no stale bucket remains below the node, the node is computed
//!    under this same lock acquisition (a consistent digest); otherwise
//!    the lock is released and the next chunk starts.
//!
//! So a shard lock is held for at most one chunk's copying or
//! bookkeeping, never for the hashing, and writers get the lock between
//! chunks however many records are stale. (Hashing a chunk under the lock
//! would bound each hold, but not a writer's wait: a thread that unlocks
//! and re-locks at once gets the lock back before the waiter it woke has
//! run, so the waiter could wait for the whole refresh.) Refreshes of one shard are
//! serialized by a second, per-shard mutex (taken before the shard lock,
//! never while holding one), which makes the in-flight copies of step 1
//! invisible to other readers; a reader whose range has no stale bit
//! while no refresh of the shard is in flight (a flag in the shard) skips
//! that mutex. A resume cursor `(bucket, slot)` lets a
//! huge bucket be refreshed across chunks without rescanning; any write
//! into that bucket resets it. A background thread calls
//! [`Store::refresh_digests_paced`] every 100 ms so stale sets stay small,
//! pausing briefly between chunks (with no lock held) so that it never
//! competes with the workers for CPU for long at a stretch.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{MutexGuard, PoisonError};

use super::merkle::{self, Digest, ZERO, inner_digest, leaf_digest};
use super::shard::{NO_CURSOR, Shard};
use super::{Record, Store, Version};

/// Most stale records rehashed per shard-lock acquisition by a refresh.
pub const REFRESH_CHUNK: usize = 256;
/// Most key + value bytes copied per refresh chunk (at least one record).
pub const REFRESH_CHUNK_BYTES: usize = 256 << 10;

/// One stale record copied by a refresh (offsets into `Refresh::bytes`).
struct Pending {
    bucket: usize,
    slot: usize,
    version: Version,
    tombstone: bool,
    key_end: usize,
    value_end: usize,
}

/// The copies and digests of one refresh chunk.
#[derive(Default)]
struct Refresh {
    pending: Vec<Pending>,
    /// Key then value bytes of each pending record, back to back.
    bytes: Vec<u8>,
    digests: Vec<Digest>,
}

impl Refresh {
    fn parts(&self, i: usize) -> (&[u8], Option<&[u8]>) {
        let p = &self.pending[i];
        let start = if i == 0 {
            0
        } else {
            self.pending[i - 1].value_end
        };
        let key = &self.bytes[start..p.key_end];
        let value = &self.bytes[p.key_end..p.value_end];
        (key, (!p.tombstone).then_some(value))
    }

    /// Step 2: the leaf digests of the copies (no lock held).
    fn hash(&mut self) {
        self.digests.clear();
        for i in 0..self.pending.len() {
            let (key, value) = self.parts(i);
            self.digests
                .push(leaf_digest(key, value, self.pending[i].version));
        }
    }
}

impl Shard {
    /// Refresh step 1: copies up to one chunk of stale records of local
    /// buckets `lo..hi` into `work` (see the module docs), clearing the
    /// stale bit of every bucket copied whole. Empty `work.pending` with
    /// no stale bit left in the range means the range is clean.
    fn collect_stale(&mut self, lo: usize, hi: usize, work: &mut Refresh) {
        work.pending.clear();
        work.bytes.clear();
        let mut from = lo;
        let mut prefetched = lo;
        while let Some(bucket) = self.tree.next_stale(from, hi) {
            if bucket >= prefetched {
                prefetched = self.prefetch_stale(bucket, hi);
            }
            let table = &self.tables[bucket];
            let mut slot = if self.cursor.0 == bucket {
                self.cursor.1
            } else {
                0
            };
            while slot < table.num_buckets() {
                if let Some(r) = table.get_bucket(slot).filter(|r| r.is_stale()) {
                    let value = r.digest_value().unwrap_or(&[]);
                    let full = work.pending.len() >= REFRESH_CHUNK
                        || (!work.pending.is_empty()
                            && work.bytes.len() + r.key().len() + value.len()
                                > REFRESH_CHUNK_BYTES);
                    if full {
                        self.cursor = (bucket, slot);
                        return;
                    }
                    work.bytes.extend_from_slice(r.key());
                    let key_end = work.bytes.len();
                    work.bytes.extend_from_slice(value);
                    work.pending.push(Pending {
                        bucket,
                        slot,
                        version: r.version(),
                        tombstone: r.digest_value().is_none(),
                        key_end,
                        value_end: work.bytes.len(),
                    });
                }
                slot += 1;
            }
            self.tree.clear_stale(bucket);
            if self.cursor.0 == bucket {
                self.cursor = NO_CURSOR;
            }
            from = bucket + 1;
        }
    }

    /// Starts loading the table headers and records of the next few stale
    /// buckets from `from` (cache hints only) and returns the bucket after
    /// the last one. Measured (perf, redis-benchmark SET -P 16): without
    /// it the refresh spent most of its time waiting, one dependent miss
    /// after another, on control bytes and record headers read only to
    /// test the stale flag; issued together the misses overlap.
    fn prefetch_stale(&self, from: usize, hi: usize) -> usize {
        /// Buckets looked ahead.
        const AHEAD: usize = 16;
        /// Records prefetched per bucket (big buckets: the first few only).
        const PER_BUCKET: usize = 32;
        let mut ahead = [0usize; AHEAD];
        let (mut n, mut next) = (0, from);
        while n < AHEAD {
            let Some(b) = self.tree.next_stale(next, hi) else {
                break;
            };
            merkle::prefetch(&self.tables[b]);
            ahead[n] = b;
            n += 1;
            next = b + 1;
        }
        for &b in &ahead[..n] {
            self.tables[b]
                .iter()
                .take(PER_BUCKET)
                .for_each(Record::prefetch);
        }
        next
    }

    /// Refresh step 3: stores each computed digest into the record at its
    /// slot if that record still has exactly the copied contents.
    /// Returns how many records were updated.
    fn store_digests(&mut self, work: &Refresh) -> usize {
        let mut done = 0;
        for (i, (p, d)) in work.pending.iter().zip(&work.digests).enumerate() {
            let Some(r) = self.tables[p.bucket].get_bucket_mut(p.slot) else {
                continue;
            };
            let (key, value) = work.parts(i);
            if !r.is_stale()
                || r.version() != p.version
                || r.key() != key
                || r.digest_value() != value
            {
                continue;
            }
            let mut delta = r.digest();
            merkle::xor_into(&mut delta, d);
            r.set_digest(d);
            self.tree.toggle(p.bucket, &delta);
            done += 1;
        }
        done
    }
}

impl Store {
    /// The Merkle root.
    pub fn root(&self) -> Digest {
        self.node_digest(0, 0).unwrap_or(ZERO)
    }

    /// Digest of tree node `index` at `level` (0 = root, depth = buckets);
    /// `None` if out of range.
    pub fn node_digest(&self, level: u32, index: usize) -> Option<Digest> {
        let depth = self.shape.depth();
        if level > depth || index >= self.shape.nodes_at(level) {
            return None;
        }
        let span_bits = self.shape.bits - self.shard_bits;
        let k = depth - level;
        if k <= span_bits / merkle::FANOUT_BITS {
            let first = index << (merkle::FANOUT_BITS * k);
            let lo = first & ((1 << span_bits) - 1);
            let hi = lo + (1 << (merkle::FANOUT_BITS * k));
            let local = lo >> (merkle::FANOUT_BITS * k);
            Some(self.with_clean(first >> span_bits, lo, hi, |shard| {
                shard.tree.node(k, local)
            }))
        } else {
            let mut children = [ZERO; merkle::FANOUT];
            for (c, d) in children.iter_mut().enumerate() {
                *d = self.node_digest(level + 1, index * merkle::FANOUT + c)?;
            }
            Some(inner_digest(&children))
        }
    }

    /// XOR of the leaf digests of live records whose key starts with
    /// `prefix` (zero when none match). Linear in the number of records;
    /// uses the stored digest of records that are not stale and hashes
    /// the others (without storing: this is a read of one shard at a time).
    pub fn prefix_digest(&self, prefix: &[u8]) -> Digest {
        let mut acc = ZERO;
        let now = super::now_millis();
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                for r in t.iter() {
                    if r.is_live(now) && r.key().starts_with(prefix) {
                        if r.is_stale() {
                            let d = leaf_digest(r.key(), r.digest_value(), r.version());
                            merkle::xor_into(&mut acc, &d);
                        } else {
                            merkle::xor_into(&mut acc, &r.digest());
                        }
                    }
                }
            }
        }
        acc
    }

    /// Refreshes the stale records of local buckets `lo..hi` of shard `i`
    /// in chunks (see the module docs) until the range is clean or
    /// `max_chunks` chunks ran. Returns the shard's guard if the range is
    /// clean — the lock acquisition that found it clean, so a node read
    /// under it is consistent — and the number of records rehashed.
    ///
    /// Between chunks nothing is in flight, so the per-shard refresh
    /// mutex is held only for the duration of this call: a budgeted
    /// caller can pause between calls without blocking readers.
    pub(super) fn refresh_range(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        max_chunks: usize,
    ) -> (Option<MutexGuard<'_, Shard>>, usize) {
        // Fast path, no refresh mutex: nothing stale and nothing in flight
        // (a root read visits every shard; most are clean).
        let guard = self.shard(i);
        if !guard.in_flight && guard.tree.next_stale(lo, hi).is_none() {
            return (Some(guard), 0);
        }
        drop(guard);
        let _serial = self.refreshing[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut hashed, mut chunks) = (0, 0);
        let mut work: Option<Refresh> = None;
        let mut guard = self.shard(i);
        let clean = loop {
            if guard.tree.next_stale(lo, hi).is_none() {
                break true;
            }
            if chunks == max_chunks {
                break false;
            }
            chunks += 1;
            let w = work.get_or_insert_with(Refresh::default);
            guard.collect_stale(lo, hi, w);
            if w.pending.is_empty() {
                // Only marks of buckets without stale records were left.
                continue;
            }
            guard.in_flight = true;
            drop(guard);
            w.hash();
            guard = self.shard(i);
            hashed += guard.store_digests(w);
            guard.in_flight = false;
        };
        if hashed > 0 {
            self.leaves_hashed.fetch_add(hashed as u64, Relaxed);
        }
        (clean.then_some(guard), hashed)
    }

    /// Refreshes local buckets `lo..hi` of shard `i`, then calls `f` on
    /// the shard under the lock acquisition that found them clean.
    pub(super) fn with_clean<R>(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        f: impl FnOnce(&mut Shard) -> R,
    ) -> R {
        loop {
            // Without a chunk budget the range is always clean on return.
            if let (Some(mut guard), _) = self.refresh_range(i, lo, hi, usize::MAX) {
                return f(&mut guard);
            }
        }
    }

    /// Rehashes every stale record (all shards, in chunks; see the module
    /// docs) and returns how many were rehashed.
    pub fn refresh_digests(&self) -> usize {
        self.refresh_digests_paced(|| true)
    }

    /// Like [`Store::refresh_digests`], calling `pause` between chunks
    /// with no lock held; `pause` returns false to stop early. The
    /// background refresher sleeps briefly there, so that on a busy
    /// machine it never runs long enough at a stretch to delay a worker.
    pub fn refresh_digests_paced(&self, mut pause: impl FnMut() -> bool) -> usize {
        let span = 1usize << (self.shape.bits - self.shard_bits);
        let mut total = 0;
        for i in 0..self.shards.len() {
            loop {
                let (clean, n) = self.refresh_range(i, 0, span, 1);
                total += n;
                if clean.is_some() {
                    break;
                }
                if !pause() {
                    return total;
                }
            }
        }
        total
    }

    /// Leaf digests computed by refreshes since the store was built: one
    /// per record written (or rewritten) since the previous refresh.
    pub fn leaves_hashed(&self) -> u64 {
        self.leaves_hashed.load(Relaxed)
    }

    /// Number of records whose stored digest is stale (a full scan; for
    /// tests and diagnostics).
    pub fn stale_records(&self) -> usize {
        let mut n = 0;
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                n += t.iter().filter(|r| r.is_stale()).count();
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::expiry_index::SLOT_MS;
    use super::super::now_millis;
    use super::*;

    #[test]
    fn a_table_shrunk_while_copies_are_in_flight_is_refreshed_again() {
        // ~64 records per bucket, 60 of which expire and are removed
        // outright, which shrinks the tables: records move to other slots.
        let now = now_millis();
        let (s, kept) = crate::store::tests::mostly_expiring(now);
        // Step 1 of a refresh: a chunk of copies of the first buckets,
        // whose stale bits are cleared.
        let mut w = Refresh::default();
        let mut g = s.shard(0);
        g.collect_stale(0, 16, &mut w);
        assert_eq!(w.pending.len(), REFRESH_CHUNK);
        g.in_flight = true;
        drop(g);
        // Meanwhile the expiry cycle removes records and shrinks tables.
        assert_eq!(s.expire_due(now + 10 + SLOT_MS, || true), 960);
        // Steps 2 and 3: a moved record is not at its copied slot.
        w.hash();
        let mut g = s.shard(0);
        g.store_digests(&w);
        g.in_flight = false;
        drop(g);
        // Every record still stale is found and hashed by the next read.
        assert_eq!(s.root(), kept.root());
    }
}
