//! Tombstone expiry: collection of tombstones older than the TTL and the
//! estimate of the oldest tombstone kept (INFO).

use std::sync::atomic::Ordering::Relaxed;

use super::shard::{NO_CURSOR, Shard, shrink_sparse};
use super::{Store, Version};

/// Records (plus one per bucket) a tombstone-collection batch visits under
/// one shard-lock acquisition, in whole buckets.
pub const GC_BATCH_RECORDS: usize = 1024;

impl Store {
    pub(super) fn tombstone_expired(&self, v: Version, now_ms: u64) -> bool {
        v.millis().saturating_add(self.tombstone_ttl_ms) < now_ms
    }

    /// Drops tombstones whose version is older than the TTL at `now_ms`.
    /// Returns how many were collected and the version time of the oldest
    /// tombstone kept (if any).
    ///
    /// A shard is scanned in batches of whole buckets of about
    /// [`GC_BATCH_RECORDS`] records, its lock released between batches: a
    /// pass over a large shard never holds a worker off for longer than one
    /// batch (the scan visits every record of a bucket, tombstone or not).
    pub fn collect_tombstones(&self, now_ms: u64) -> (usize, Option<u64>) {
        // Tombstones written during the pass lower the value again below.
        self.oldest_tombstone_ms.store(u64::MAX, Relaxed);
        let mut collected = 0;
        let mut oldest: Option<u64> = None;
        for i in 0..self.shards.len() {
            let mut next = 0;
            loop {
                let mut guard = self.shard(i);
                let shard = &mut *guard;
                if shard.tombstones == 0 || next >= shard.tables.len() {
                    break;
                }
                let tree = &mut shard.tree;
                let mut removed = 0;
                let mut visited = 0;
                let mut shrunk = Vec::new();
                while next < shard.tables.len() && visited < GC_BATCH_RECORDS {
                    let b = next;
                    next += 1;
                    let table = &mut shard.tables[b];
                    visited += table.len() + 1;
                    let before = removed;
                    table.retain(|r| {
                        if !r.is_tombstone() {
                            return true;
                        }
                        let v = r.version();
                        if self.tombstone_expired(v, now_ms) {
                            Shard::unlink(tree, b, r);
                            removed += 1;
                            false
                        } else {
                            oldest = Some(oldest.map_or(v.millis(), |o| o.min(v.millis())));
                            true
                        }
                    });
                    if removed > before && shrink_sparse(table, &self.hasher) {
                        shrunk.push(b);
                    }
                }
                // Rehashed tables: flagged like any write that moves records.
                for b in shrunk {
                    shard.tree.mark_stale(b);
                    if shard.cursor.0 == b {
                        shard.cursor = NO_CURSOR;
                    }
                }
                shard.tombstones -= removed;
                collected += removed;
            }
        }
        if let Some(t) = oldest {
            self.note_tombstone(t);
        }
        (collected, oldest)
    }

    /// Records a tombstone's version time for [`Store::oldest_tombstone_ms`].
    /// A plain load first: new tombstones are almost never the oldest, so
    /// deletes do not contend on this cache line.
    #[inline]
    pub(super) fn note_tombstone(&self, millis: u64) {
        if millis < self.oldest_tombstone_ms.load(Relaxed) {
            self.oldest_tombstone_ms.fetch_min(millis, Relaxed);
        }
    }

    /// Version time (Unix ms) of the oldest tombstone, if any is known
    /// (see the field's invariant; exact after each collection pass).
    pub fn oldest_tombstone_ms(&self) -> Option<u64> {
        Some(self.oldest_tombstone_ms.load(Relaxed)).filter(|&t| t != u64::MAX)
    }
}
