//! Store operations that persistence needs: stamped applies, a versioned
//! clear, per-shard snapshot copies and clock advancement.
//!
//! # Stamps
//!
//! The persistence log has no global order across its per-thread files, so
//! replay must decide from each record alone whether it came before or
//! after a `FLUSHDB`/`TRUNCATE`. Every applied write therefore gets a
//! *stamp*: the value of its shard's hybrid clock right after the write,
//! read under the shard lock. For a local write the stamp is its version's
//! `hlc`; for a remote write it is `max(clock, version.hlc)`.
//!
//! [`Store::clear_versioned`] locks every shard, computes the floor
//! `F = max(shard clocks)`, clears, and advances every clock to `F + 1`.
//! Hence, for every write W and clear C: `stamp(W) <= F(C)` iff W was
//! applied before C. Replay drops exactly the records whose stamp is at
//! most the largest floor it has seen, in any order.

use hashbrown::HashTable;

use super::lock::{Db, ShardGuard};
use super::merkle::{bucket_of, key_hash};
use super::{Applied, Record, Store, Version, now_millis};

impl Store {
    /// Like [`Store::apply`], also returning the write's stamp (the
    /// shard's clock after the write, read under the shard lock; see the
    /// module docs). The stamp is meaningful only for `Applied::Stored`.
    pub fn apply_stamped(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
    ) -> (Applied, u64) {
        self.apply_stamped_expiring(key, value, version, 0)
    }

    /// [`Store::apply_stamped`] of a record with an expiry (Unix ms, 0 =
    /// none). A record already expired at arrival is applied as the
    /// tombstone of its version (`expiry.rs`), so an expired value is
    /// never stored, whatever delivered it.
    pub fn apply_stamped_expiring(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> (Applied, u64) {
        let (value, expires) = if expires != 0 && expires <= now_millis() {
            (None, 0)
        } else {
            (value, expires)
        };
        let s = self.slot(key);
        let mut shard = self.shard(s.shard);
        shard.clock.observe(version.hlc);
        let stamp = shard.clock.last();
        match shard.find(s, key) {
            Some(r) if r.version() >= version => return (Applied::Stale, stamp),
            None if value.is_none() && self.tombstone_expired(version, now_millis()) => {
                return (Applied::Stale, stamp);
            }
            _ => {}
        }
        shard.put_expiring(s, key, value, version, expires, &self.hasher);
        drop(shard);
        if value.is_none() {
            self.note_tombstone(version.millis());
        }
        (Applied::Stored, stamp)
    }
    /// [`Db::clear_versioned`] on a locking view.
    pub fn clear_versioned(&self) -> u64 {
        self.db().clear_versioned()
    }

    /// Calls `f(clock, record)` for every record of shard `i` (tombstones
    /// included) under that shard's lock only; `clock` is the shard's clock
    /// read under the same lock, an upper bound of the stamps of the records
    /// visited. Returns the clock.
    pub fn snapshot_shard(&self, i: usize, mut f: impl FnMut(u64, &Record)) -> u64 {
        let shard = self.shard(i);
        let clock = shard.clock.last();
        for t in shard.tables.iter() {
            t.iter().for_each(|r| f(clock, r));
        }
        clock
    }

    /// Index of the shard that holds `key` (recovery partitions its replay
    /// by shard across threads).
    pub fn shard_of(&self, key: &[u8]) -> usize {
        bucket_of(key_hash(key), self.shape.bits) >> (self.shape.bits - self.shard_bits)
    }

    /// Advances every shard's clock to at least `hlc` (after recovery, so
    /// that new writes are stamped above every replayed clear floor).
    pub fn advance_clocks(&self, hlc: u64) {
        for i in 0..self.shards.len() {
            self.shard(i).clock.observe(hlc);
        }
    }
}

impl Db<'_> {
    /// Removes every record atomically (all shard locks held at once, or
    /// the shards of the exclusive hold this view runs on) and returns
    /// the clear's floor: every write applied before it has a stamp
    /// `<= floor`, every write applied after it a stamp `> floor`. The
    /// records are freed after the shards are released (inside an
    /// exclusive hold: at the end of this call).
    pub fn clear_versioned(self) -> u64 {
        let mut guards: Vec<ShardGuard<'_>> = (0..self.store.shards.len())
            .map(|i| self.shard(i))
            .collect();
        let floor = guards.iter().map(|g| g.clock.last()).max().unwrap_or(0);
        let mut old: Vec<Box<[HashTable<Record>]>> = Vec::with_capacity(guards.len());
        for g in guards.iter_mut() {
            let span = g.tables.len();
            old.push(std::mem::replace(
                &mut g.tables,
                (0..span).map(|_| HashTable::new()).collect(),
            ));
            g.reset_counts();
            g.clock.observe(floor + 1);
        }
        self.store
            .oldest_tombstone_ms
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        drop(guards);
        drop(old);
        floor
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreOptions;
    use super::*;

    fn store() -> Store {
        Store::new(StoreOptions {
            shards: 8,
            tree_bits: 16,
            node_id: "n1".into(),
            tombstone_ttl_ms: 60_000,
        })
        .unwrap()
    }

    #[test]
    fn stamps_separate_writes_before_and_after_a_clear() {
        let s = store();
        let now = now_millis() << 16;
        let mut before = Vec::new();
        for i in 0..100u64 {
            before.push(s.set(format!("a{i}").as_bytes(), b"x").hlc);
            let (r, st) = s.apply_stamped(
                format!("r{i}").as_bytes(),
                Some(b"y"),
                Version::new(now + i, 9),
            );
            assert_eq!(r, Applied::Stored);
            before.push(st);
        }
        let floor = s.clear_versioned();
        assert!(before.iter().all(|&st| st <= floor));
        assert_eq!((s.len(), s.tombstones()), (0, 0));
        assert_eq!(s.root(), super::super::merkle::ZERO);
        // A remote write with an old version after the clear is stored and
        // stamped above the floor; so is every local write.
        let (r, st) = s.apply_stamped(b"late", Some(b"z"), Version::new(1, 3));
        assert_eq!(r, Applied::Stored);
        assert!(st > floor);
        for i in 0..100 {
            assert!(s.set(format!("b{i}").as_bytes(), b"x").hlc > floor);
        }
    }

    #[test]
    fn apply_stamped_matches_apply_semantics() {
        let s = store();
        let v = Version::new(100 << 16, 1);
        assert_eq!(s.apply_stamped(b"k", Some(b"1"), v).0, Applied::Stored);
        assert_eq!(
            s.apply_stamped(b"k", Some(b"0"), Version::new(5, 1)).0,
            Applied::Stale
        );
        assert_eq!(s.apply(b"k", Some(b"2"), v), Applied::Stale);
        // Expired tombstone for a missing key is dropped.
        assert_eq!(
            s.apply_stamped(b"gone", None, Version::new(1 << 16, 1)).0,
            Applied::Stale
        );
    }

    #[test]
    fn snapshot_shard_visits_all_records_and_bounds_stamps() {
        let s = store();
        let mut max_stamp = 0;
        for i in 0..500 {
            max_stamp = max_stamp.max(s.set(format!("k{i}").as_bytes(), b"v").hlc);
        }
        s.delete(b"k7");
        let mut n = 0;
        let mut clocks = 0;
        for i in 0..s.shard_count() {
            clocks = clocks.max(s.snapshot_shard(i, |_, _| n += 1));
        }
        assert_eq!(n, 500);
        assert!(clocks >= max_stamp);
        for i in 0..100 {
            let k = format!("k{i}");
            assert_eq!(s.shard_of(k.as_bytes()), s.slot(k.as_bytes()).shard);
        }
        s.advance_clocks(clocks + 1000);
        assert!(s.set(b"k1", b"w").hlc > clocks + 1000);
    }
}
