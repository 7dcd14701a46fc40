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
//! The housekeeping thread calls [`Store::expire_due`] about every 100 ms:
//! it visits each shard, handling at most [`EXPIRE_BATCH`] entries per lock
//! acquisition, so a shard lock is never held for more than a small
//! bounded batch. Readers also treat an expired record as absent at once
//! (lazy expiry), so the cycle only decides when memory comes back.

use super::expiry_index::Entry;
use super::lock::Db;
use super::shard::{Shard, Slot};
use super::{Record, Store, now_millis};

/// Most index entries handled per shard lock acquisition by the active
/// cycle.
pub const EXPIRE_BATCH: usize = 64;

/// What handling one index entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// No record had that entry (cannot happen while the invariants hold).
    Missing,
    /// The record was not due: re-indexed at its expiry.
    Deferred,
    /// Converted into the tombstone of its version, collected after
    /// `tombstone_ttl` from this version time.
    Tombstone(u64),
    /// Removed outright (its tombstone would already be collected).
    Removed,
}

impl Shard {
    /// Handles index entry `(at, bucket, hash)` at `now_ms`: converts its
    /// record into the tombstone of its version if it is due (or removes
    /// it when that tombstone is already past `tombstone_ttl`), else
    /// re-indexes it at its expiry; keeps tree, counters and index in
    /// step. With `key`, the record is that key's (lazy expiry).
    fn handle_entry(
        &mut self,
        (at, bucket, hash): Entry,
        key: Option<&[u8]>,
        store: &Store,
        now_ms: u64,
    ) -> Handled {
        let hasher = &store.hasher;
        let table = &mut self.tables[bucket];
        let matches = |r: &Record| match key {
            Some(k) => r.key() == k,
            None => r.indexed_at() == at && hasher.hash_one(r.key()) == hash,
        };
        let Some(rec) = table.find_mut(hash, matches) else {
            return Handled::Missing;
        };
        self.expiry.remove(at, bucket, hash);
        if !rec.is_expired(now_ms) {
            let e = rec.expires();
            rec.set_indexed_at(e);
            self.expiry.insert(e, bucket, hash);
            return Handled::Deferred;
        }
        store
            .expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let version = rec.version();
        let freed = rec.key().len() + rec.value().map_or(0, <[u8]>::len);
        self.live -= 1;
        self.bytes -= freed;
        if store.tombstone_expired(version, now_ms) {
            let Ok(o) = table.find_entry(hash, |r| r.version() == version && matches(r)) else {
                return Handled::Missing;
            };
            let (rec, _) = o.remove();
            Shard::unlink(&mut self.tree, bucket, &rec);
            return Handled::Removed;
        }
        // Same version, no value, no expiry: the digest stays the same
        // (record.rs), but the record is flagged stale like any rewrite.
        rec.replace(None, version);
        self.tombstones += 1;
        self.tree.mark_stale(bucket);
        if self.cursor.0 == bucket {
            self.cursor = super::shard::NO_CURSOR;
        }
        Handled::Tombstone(version.millis())
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
        let at = r.indexed_at();
        match self.handle_entry((at, s.bucket, s.hash), Some(key), store, now_ms) {
            Handled::Tombstone(t) => {
                store.note_tombstone(t);
                true
            }
            Handled::Removed => true,
            Handled::Missing | Handled::Deferred => false,
        }
    }

    /// Live records due at `now_ms` (expiry ≤ now) but not converted yet:
    /// the records of the index entries at or before now whose expiry has
    /// passed (module docs).
    fn due(&self, now_ms: u64, hasher: &ahash::RandomState) -> usize {
        let mut due = 0;
        for ((at, bucket, hash), n) in self.expiry.due(now_ms) {
            due += self.tables[bucket]
                .iter_hash(hash)
                .filter(|r| {
                    r.indexed_at() == at && r.is_expired(now_ms) && hasher.hash_one(r.key()) == hash
                })
                .take(n as usize)
                .count();
        }
        due
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
    /// their expiry), at most [`EXPIRE_BATCH`] entries per shard lock
    /// acquisition, calling `pause` between batches (false stops the
    /// pass). Returns how many records expired.
    pub fn expire_due(&self, now_ms: u64, mut pause: impl FnMut() -> bool) -> usize {
        let mut expired = 0;
        for i in 0..self.shards.len() {
            loop {
                let mut oldest = u64::MAX;
                let more = {
                    let mut shard = self.shard(i);
                    for _ in 0..EXPIRE_BATCH {
                        let Some(entry) = shard.expiry.first_due(now_ms) else {
                            break;
                        };
                        match shard.handle_entry(entry, None, self, now_ms) {
                            Handled::Tombstone(t) => {
                                oldest = oldest.min(t);
                                expired += 1;
                            }
                            Handled::Removed => expired += 1,
                            Handled::Deferred => {}
                            Handled::Missing => {
                                // Only with a broken invariant: drop the
                                // entry rather than meet it on every pass.
                                shard.expiry.remove(entry.0, entry.1, entry.2);
                            }
                        }
                    }
                    shard.expiry.first_due(now_ms).is_some()
                };
                if oldest != u64::MAX {
                    self.note_tombstone(oldest);
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
