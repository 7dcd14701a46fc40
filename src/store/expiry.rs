//! Key expiry: the per-shard expiry index, the conversion of expired
//! records into tombstones, and the active expiry cycle.
//!
//! # Deterministic expiry
//!
//! A record's expiry is an absolute time (Unix ms) that is part of the
//! versioned record: it travels with the write (replication, log,
//! snapshot, anti-entropy) and is only ever changed by a new write with a
//! new version. From that time on the record reads as absent on every
//! node (up to clock skew). Expiry itself writes nothing: the record
//! turns into the tombstone **of its own version**, which every node
//! derives alone from the same record, so no new version and no
//! replication traffic arise. The leaf digest of a record with an expiry
//! already is that tombstone's digest (`record.rs`), so the Merkle tree is
//! the same before and after the conversion and nodes holding the same
//! records keep equal roots whether or not they converted yet. The
//! tombstone is collected after `tombstone_ttl` (by its version time)
//! like any delete; when that time has already passed at conversion, the
//! record is removed outright (the collection pass would drop it anyway).
//!
//! # Index
//!
//! Every live record with an expiry has exactly one entry in its shard's
//! [`ExpiryIndex`](super::expiry_index::ExpiryIndex), keyed by
//! `(indexed-at, bucket, table hash)`, and the record stores that
//! *indexed-at* time next to its expiry (`record.rs`). Invariants:
//!
//! * indexed-at ≤ expiry, so every record that is due (expiry ≤ now) has
//!   its entry among the entries at or before now;
//! * the entry is added and removed by the same shard-level writes that
//!   give the record an expiry and take it away, so the index is bounded
//!   by the number of records.
//!
//! A write that moves the expiry **later** — the common overwrite,
//! `SET k v EX 3600` again, or `EXPIRE` with a longer time — leaves the
//! entry where it is: the write costs no index update at all. Only a write
//! that moves it earlier than the indexed-at time moves the entry (a
//! removal and an insertion). When the active cycle reaches an entry whose
//! record is not due yet, it re-indexes the record at its expiry
//! (deferral), so a key rewritten with a TTL of T is visited about once
//! per T, not once per write.
//!
//! The active cycle pops entries in indexed-at order, so it finds every
//! expiring key without sampling. An entry finds its record by bucket,
//! table hash and indexed-at time (a full-hash collision in one bucket is
//! told apart by the indexed-at time, or handled one record per entry).
//! Counting the records due at `now` (for `DBSIZE`) looks at the records
//! of the entries at or before now: the cycle keeps those few, since it
//! converts or defers them every ~100 ms.
//!
//! # Active cycle
//!
//! The `expiry` thread (`expirer.rs`) calls [`Store::expire_due`] as soon
//! as [`Store::next_expiry_due`] says a slot is due, at least every 100 ms:
//! it visits each shard, handling at most [`EXPIRE_BATCH`] entries per lock
//! acquisition, so a shard lock is never held for more than a small
//! bounded batch. Readers also treat an expired record as absent at once
//! (lazy expiry), so the cycle only decides when memory comes back.

use super::expiry_index::{Entry, slot_for};
use super::lock::Db;
use super::shard::{Shard, Slot};
use super::{Record, Store, now_millis};

/// Most index entries handled per shard lock acquisition by the active
/// cycle.
pub const EXPIRE_BATCH: usize = 64;

/// What converting a due record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Converted {
    /// Turned into the tombstone of its version, collected after
    /// `tombstone_ttl` from this version time.
    Tombstone(u64),
    /// Removed outright (its tombstone would already be collected).
    Removed,
}

/// What one pass did in one shard.
#[derive(Debug, Default)]
struct Pass {
    expired: usize,
    /// Version time of the oldest tombstone made.
    oldest: Option<u64>,
}

/// True if `r` is a record that index entry `(at, _, hash)` stands for.
#[inline]
fn stands_for(r: &Record, at: u64, hash: u64, hasher: &ahash::RandomState) -> bool {
    r.indexed_at() == at && hasher.hash_one(r.key()) == hash
}

impl Shard {
    /// Converts the record of `bucket` that `matches` (it is due at
    /// `now_ms`) into the tombstone of its version, or removes it when
    /// that tombstone is already past `tombstone_ttl`; keeps tree,
    /// counters and index in step (its index entry is left stale). None
    /// if no record matches.
    fn convert(
        &mut self,
        bucket: usize,
        hash: u64,
        matches: impl Fn(&Record) -> bool,
        store: &Store,
        now_ms: u64,
    ) -> Option<Converted> {
        let Ok(mut o) = self.tables[bucket].find_entry(hash, matches) else {
            return None;
        };
        store
            .expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rec = o.get();
        let version = rec.version();
        let freed = rec.key().len() + rec.value().map_or(0, <[u8]>::len);
        self.live -= 1;
        self.bytes -= freed;
        self.expiry.forget();
        if store.tombstone_expired(version, now_ms) {
            let (rec, _) = o.remove();
            Shard::unlink(&mut self.tree, bucket, &rec);
            self.shrink_if_sparse(bucket, &store.hasher);
            return Some(Converted::Removed);
        }
        let rec = o.get_mut();
        // Same version, no value, no expiry: the digest stays the same
        // (record.rs), but the record is flagged stale like any rewrite.
        rec.replace(None, version);
        self.tombstones += 1;
        self.tree.mark_stale(bucket);
        if self.cursor.0 == bucket {
            self.cursor = super::shard::NO_CURSOR;
        }
        Some(Converted::Tombstone(version.millis()))
    }

    /// Handles a due index entry `(at, bucket, hash)` at `now_ms`: every
    /// record it stands for is converted if it is due, else re-indexed at
    /// [`slot_for`] its expiry (a later slot, not due at `now_ms`). A
    /// stale entry matches nothing and is simply gone.
    fn handle_entry(
        &mut self,
        (at, bucket, hash): Entry,
        store: &Store,
        now_ms: u64,
        pass: &mut Pass,
    ) {
        let hasher = &store.hasher;
        loop {
            let Some(rec) = self.tables[bucket].find_mut(hash, |r| stands_for(r, at, hash, hasher))
            else {
                return;
            };
            if !rec.is_expired(now_ms) {
                let next = slot_for(rec.expires(), now_ms);
                rec.set_indexed_at(next);
                self.expiry.reinsert(next, bucket, hash);
                if next == at {
                    // Only if the clock went back since the slot was
                    // taken: the entry just made stands for the record.
                    return;
                }
                continue;
            }
            match self.convert(
                bucket,
                hash,
                |r| stands_for(r, at, hash, hasher),
                store,
                now_ms,
            ) {
                Some(Converted::Tombstone(t)) => {
                    pass.expired += 1;
                    pass.oldest = Some(pass.oldest.map_or(t, |o| o.min(t)));
                }
                Some(Converted::Removed) => pass.expired += 1,
                None => return,
            }
        }
    }

    /// Lazy expiry: converts the record at `s` if it has expired at
    /// `now_ms`. Returns true if it did.
    pub(super) fn expire_if_due(
        &mut self,
        s: Slot,
        key: &[u8],
        store: &Store,
        now_ms: u64,
    ) -> bool {
        let Some(r) = self.find(s, key) else {
            return false;
        };
        if !r.is_expired(now_ms) {
            return false;
        }
        let done = match self.convert(s.bucket, s.hash, |r| r.key() == key, store, now_ms) {
            Some(Converted::Tombstone(t)) => {
                store.note_tombstone(t);
                true
            }
            Some(Converted::Removed) => true,
            None => false,
        };
        if self.expiry.needs_compaction() {
            self.compact_expiry(&store.hasher);
        }
        done
    }

    /// Drops the index entries that stand for no record, and duplicates
    /// (`expiry_index.rs`, "Lazy removal").
    pub(super) fn compact_expiry(&mut self, hasher: &ahash::RandomState) {
        let tables = &self.tables;
        self.expiry.compact(|at, bucket, hash| {
            tables[bucket]
                .iter_hash(hash)
                .any(|r| r.expires() != 0 && stands_for(r, at, hash, hasher))
        });
    }

    /// Live records due at `now_ms` (expiry ≤ now) but not converted yet.
    /// Each has an entry at its indexed-at time, at or before its expiry,
    /// so the records of the distinct `(bucket, hash)` of the entries at
    /// or before now hold them all; the cycle keeps those entries few,
    /// since it converts or defers them every ~100 ms.
    fn due(&self, now_ms: u64, hasher: &ahash::RandomState) -> usize {
        let mut near: Vec<(usize, u64)> =
            self.expiry.upto(now_ms).map(|(_, b, h)| (b, h)).collect();
        if near.is_empty() {
            return 0;
        }
        near.sort_unstable();
        near.dedup();
        near.iter()
            .map(|&(b, h)| {
                self.tables[b]
                    .iter_hash(h)
                    .filter(|r| r.is_expired(now_ms) && hasher.hash_one(r.key()) == h)
                    .count()
            })
            .sum()
    }

    /// Live records minus those already due at `now_ms` (what readers see).
    pub(super) fn visible(&self, now_ms: u64, hasher: &ahash::RandomState) -> usize {
        if self.expiry.is_empty() {
            self.live
        } else {
            self.live - self.due(now_ms, hasher)
        }
    }

    /// Live records with an expiry not yet due at `now_ms`.
    pub(super) fn visible_expiring(&self, now_ms: u64, hasher: &ahash::RandomState) -> usize {
        if self.expiry.is_empty() {
            0
        } else {
            self.expiry.len() - self.due(now_ms, hasher)
        }
    }
}

impl Store {
    /// One active expiry pass at `now_ms`: converts every due record of
    /// every shard (and re-indexes records whose entry came up before
    /// their expiry), at most [`EXPIRE_BATCH`] index entries per shard
    /// lock acquisition, calling `pause` between batches (false stops the
    /// pass). Returns how many records expired.
    pub fn expire_due(&self, now_ms: u64, mut pause: impl FnMut() -> bool) -> usize {
        let mut expired = 0;
        for i in 0..self.shards.len() {
            loop {
                let mut pass = Pass::default();
                let more = {
                    let mut shard = self.shard(i);
                    for _ in 0..EXPIRE_BATCH {
                        let Some(entry) = shard.expiry.pop_due(now_ms) else {
                            break;
                        };
                        shard.handle_entry(entry, self, now_ms, &mut pass);
                    }
                    shard.expiry.has_due(now_ms)
                };
                expired += pass.expired;
                if let Some(t) = pass.oldest {
                    self.note_tombstone(t);
                }
                if !more {
                    break;
                }
                if !pause() {
                    return expired;
                }
            }
        }
        expired
    }
}

impl Store {
    /// When the active cycle next has work (Unix ms; at or before now if
    /// it has some already), None when no shard's index holds an entry.
    /// Locks each shard briefly.
    pub fn next_expiry_due(&self) -> Option<u64> {
        (0..self.shards.len())
            .filter_map(|i| self.shard(i).expiry.due_at())
            .min()
    }

    /// Records expired so far, actively or lazily (INFO `expired_keys`).
    pub fn expired_keys(&self) -> u64 {
        self.expired.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Db<'_> {
    /// Number of live keys with an expiry (INFO keyspace `expires=`).
    pub fn expiring(self) -> usize {
        let now = now_millis();
        (0..self.store.shards.len())
            .map(|i| self.shard(i).visible_expiring(now, &self.store.hasher))
            .sum()
    }
}
