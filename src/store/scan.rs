//! Whole-store and per-bucket visits (scans, counts) and clearing.
//! Each visit holds one shard lock at a time.

use std::sync::atomic::Ordering::Relaxed;

use super::lock::Db;
use super::merkle::{bucket_of, key_hash};
use super::{Record, Store, Version, now_millis};

/// Bytes counted per key by [`Db::scan_bounded`] besides the key: the
/// `Vec` holding it.
pub const SCAN_KEY_OVERHEAD: usize = std::mem::size_of::<Vec<u8>>();

impl Store {
    /// Calls `f` for every record (tombstones included) of global bucket
    /// `bucket`, in no particular order, under that bucket's shard lock.
    /// Returns false if `bucket` is out of range.
    pub fn for_each_in_bucket(&self, bucket: usize, mut f: impl FnMut(&Record)) -> bool {
        if bucket >= self.shape.buckets() {
            return false;
        }
        let span_bits = self.shape.bits - self.shard_bits;
        let shard = self.shard(bucket >> span_bits);
        shard.tables[bucket & ((1 << span_bits) - 1)]
            .iter()
            .for_each(&mut f);
        true
    }
    /// [`Db::scan`] on a locking view.
    pub fn scan(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.db().scan(prefix)
    }
    /// [`Db::scan_bounded`] on a locking view.
    pub fn scan_bounded(&self, prefix: &[u8], max_bytes: usize) -> Option<Vec<Vec<u8>>> {
        self.db().scan_bounded(prefix, max_bytes)
    }
    /// [`Db::scan_step`] on a locking view.
    pub fn scan_step(&self, cursor: u64, count: usize, f: impl FnMut(&[u8])) -> u64 {
        self.db().scan_step(cursor, count, f)
    }
    /// [`Db::for_each_in_shard`] on a locking view.
    pub fn for_each_in_shard(&self, i: usize, f: impl FnMut(&Record)) {
        self.db().for_each_in_shard(i, f)
    }
    /// [`Db::len`] on a locking view.
    pub fn len(&self) -> usize {
        self.db().len()
    }
    /// [`Db::is_empty`] on a locking view.
    pub fn is_empty(&self) -> bool {
        self.db().is_empty()
    }
    /// [`Db::tombstones`] on a locking view.
    pub fn tombstones(&self) -> usize {
        self.db().tombstones()
    }
    /// [`Db::usage`] on a locking view.
    pub fn usage(&self) -> (usize, usize) {
        self.db().usage()
    }

    /// Removes every record (local only; not a replicated delete).
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            self.shard(i).clear();
        }
        self.oldest_tombstone_ms.store(u64::MAX, Relaxed);
    }

    /// `(key, version)` of every record (tombstones included) in global
    /// bucket `bucket`, sorted by key; `None` if out of range.
    pub fn bucket_versions(&self, bucket: usize) -> Option<Vec<(Vec<u8>, Version)>> {
        if bucket >= self.shape.buckets() {
            return None;
        }
        let span_bits = self.shape.bits - self.shard_bits;
        let shard = self.shard(bucket >> span_bits);
        let mut out: Vec<_> = shard.tables[bucket & ((1 << span_bits) - 1)]
            .iter()
            .map(|r| (r.key().to_vec(), r.version()))
            .collect();
        out.sort_unstable();
        Some(out)
    }

    /// Global bucket of a key.
    pub fn bucket_of_key(&self, key: &[u8]) -> usize {
        bucket_of(key_hash(key), self.shape.bits)
    }
}

impl Db<'_> {
    /// Live keys starting with `prefix`, in ascending byte order.
    pub fn scan(self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.scan_bounded(prefix, usize::MAX).unwrap_or_default()
    }

    /// [`Db::scan`] within a budget: `None` as soon as the keys found
    /// (counted as their bytes plus [`SCAN_KEY_OVERHEAD`] each) pass
    /// `max_bytes`, so a scan never copies more than that (the text `SCAN`
    /// reply is bounded by the client's output limit).
    pub fn scan_bounded(self, prefix: &[u8], max_bytes: usize) -> Option<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut bytes = 0usize;
        let now = now_millis();
        for i in 0..self.store.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                for r in t.iter() {
                    if r.is_live(now) && r.key().starts_with(prefix) {
                        bytes += r.key().len() + SCAN_KEY_OVERHEAD;
                        if bytes > max_bytes {
                            return None;
                        }
                        keys.push(r.key().to_vec());
                    }
                }
            }
        }
        keys.sort_unstable();
        Some(keys)
    }

    /// One step of a cursor scan (RESP `SCAN`): visits whole global buckets
    /// from `cursor` upward, calling `f` with every live key, and stops
    /// once at least `count` records were examined (or a bounded number of
    /// buckets was visited). Returns the next cursor, 0 when the scan is
    /// complete; a cursor past the last bucket completes at once.
    ///
    /// Guarantees, because the bucket of a key is fixed by the tree shape
    /// and never changes: a full scan (cursor 0 back to 0) returns every
    /// key that was live for the whole scan exactly once; a key written or
    /// deleted during the scan may or may not be returned. Each call holds
    /// one shard lock at a time and does bounded work.
    pub fn scan_step(self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        /// Most buckets visited per call (bounds the work on sparse stores).
        const MAX_BUCKETS: usize = 4096;
        let buckets = self.store.shape.buckets();
        let span_bits = self.store.shape.bits - self.store.shard_bits;
        let Ok(mut b) = usize::try_from(cursor) else {
            return 0;
        };
        let (mut examined, mut visited) = (0usize, 0usize);
        let now = now_millis();
        while b < buckets {
            let shard_end = ((b >> span_bits) + 1) << span_bits;
            let shard = self.shard(b >> span_bits);
            if shard.live == 0 {
                // Nothing to return in this shard: skip it whole.
                b = shard_end;
                continue;
            }
            while b < shard_end {
                let table = &shard.tables[b & ((1 << span_bits) - 1)];
                for r in table.iter() {
                    if r.is_live(now) {
                        f(r.key());
                    }
                }
                examined += table.len();
                visited += 1;
                b += 1;
                if examined >= count.max(1) || visited >= MAX_BUCKETS {
                    return if b >= buckets { 0 } else { b as u64 };
                }
            }
        }
        0
    }

    /// Calls `f` for every record (tombstones included) of shard `i`, under
    /// that shard's lock only.
    pub fn for_each_in_shard(self, i: usize, mut f: impl FnMut(&Record)) {
        let shard = self.shard(i);
        for t in shard.tables.iter() {
            t.iter().for_each(&mut f);
        }
    }

    /// Number of live keys (expired ones not included, even before the
    /// active cycle converted them).
    pub fn len(self) -> usize {
        let now = now_millis();
        (0..self.store.shards.len())
            .map(|i| self.shard(i).visible(now, &self.store.hasher))
            .sum()
    }

    /// True when there is no live key.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Number of tombstones currently kept.
    pub fn tombstones(self) -> usize {
        (0..self.store.shards.len())
            .map(|i| self.shard(i).tombstones)
            .sum()
    }

    /// `(live keys, Σ key + value bytes of live keys)`; records expired
    /// but not yet converted still count here (memory they hold).
    pub fn usage(self) -> (usize, usize) {
        (0..self.store.shards.len()).fold((0, 0), |(n, b), i| {
            let s = self.shard(i);
            (n + s.live, b + s.bytes)
        })
    }
}
