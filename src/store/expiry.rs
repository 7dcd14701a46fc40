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
//! [`ExpiryIndex`](super::expiry_index::ExpiryIndex), keyed by `(expiry, bucket, table hash)`: the entry is
//! added and removed by the same shard-level writes that add and remove
//! the record's expiry, so the index is exact and bounded by the number of
//! records. The active cycle pops due entries in expiry order, so it finds
//! every expiring key without sampling; a lookup of an entry goes to its
//! bucket and compares hash and expiry (a full-hash collision in one
//! bucket with the same expiry is counted, not lost).
//!
//! # Active cycle
//!
//! The housekeeping thread calls [`Store::expire_due`] about every 100 ms:
//! it visits each shard, converting at most [`EXPIRE_BATCH`] due records
//! per lock acquisition, so a shard lock is never held for more than a
//! small bounded batch. Readers also treat an expired record as absent at
//! once (lazy expiry), so the cycle only decides when memory comes back.

use super::lock::Db;
use super::shard::{Shard, Slot};
use super::{Record, Store, now_millis};

/// Most records converted per shard lock acquisition by the active cycle.
pub const EXPIRE_BATCH: usize = 64;

impl Shard {
    /// Converts the due record of index entry `(expires, bucket, hash)`
    /// into the tombstone of its version (or removes it when that
    /// tombstone is already past `tombstone_ttl`), keeping tree, counters
    /// and index in step. Returns the version time of a tombstone kept.
    fn expire_entry(
        &mut self,
        (expires, bucket, hash): (u64, usize, u64),
        store: &Store,
        now_ms: u64,
    ) -> Option<u64> {
        self.expiry.remove(expires, bucket, hash);
        let hasher = &store.hasher;
        let table = &mut self.tables[bucket];
        let matches = |r: &Record| r.expires() == expires && hasher.hash_one(r.key()) == hash;
        let rec = table.find_mut(hash, matches)?;
        store
            .expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = rec.version();
        let freed = rec.key().len() + rec.value().map_or(0, <[u8]>::len);
        self.live -= 1;
        self.bytes -= freed;
        if store.tombstone_expired(version, now_ms) {
            let Ok(o) = table.find_entry(hash, matches) else {
                return None;
            };
            let (rec, _) = o.remove();
            Shard::unlink(&mut self.tree, bucket, &rec);
            return None;
        }
        // Same version, no value, no expiry: the digest stays the same
        // (record.rs), but the record is flagged stale like any rewrite.
        rec.replace(None, version);
        self.tombstones += 1;
        self.tree.mark_stale(bucket);
        if self.cursor.0 == bucket {
            self.cursor = super::shard::NO_CURSOR;
        }
        Some(version.millis())
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
        let e = r.expires();
        if let Some(t) = self.expire_entry((e, s.bucket, s.hash), store, now_ms) {
            store.note_tombstone(t);
        }
        true
    }

    /// Live records minus those already due at `now_ms` (what readers see).
    pub(super) fn visible(&self, now_ms: u64) -> usize {
        if self.expiry.is_empty() {
            self.live
        } else {
            self.live - self.expiry.due(now_ms)
        }
    }

    /// Live records with an expiry not yet due at `now_ms`.
    pub(super) fn visible_expiring(&self, now_ms: u64) -> usize {
        if self.expiry.is_empty() {
            0
        } else {
            self.expiry.len() - self.expiry.due(now_ms)
        }
    }
}

impl Store {
    /// One active expiry pass at `now_ms`: converts every due record of
    /// every shard, at most [`EXPIRE_BATCH`] per shard lock acquisition,
    /// calling `pause` between batches (false stops the pass). Returns how
    /// many records expired.
    pub fn expire_due(&self, now_ms: u64, mut pause: impl FnMut() -> bool) -> usize {
        let mut expired = 0;
        for i in 0..self.shards.len() {
            loop {
                let mut oldest = u64::MAX;
                let mut n = 0;
                let more = {
                    let mut shard = self.shard(i);
                    while n < EXPIRE_BATCH {
                        let Some(entry) = shard.expiry.first_due(now_ms) else {
                            break;
                        };
                        if let Some(t) = shard.expire_entry(entry, self, now_ms) {
                            oldest = oldest.min(t);
                        }
                        n += 1;
                    }
                    shard.expiry.first_due(now_ms).is_some()
                };
                if oldest != u64::MAX {
                    self.note_tombstone(oldest);
                }
                expired += n;
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
            .map(|i| self.shard(i).visible_expiring(now))
            .sum()
    }
}
