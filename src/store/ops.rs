//! Reads and writes of single keys: local writes (fresh versions from the
//! shard clock), last-writer-wins applies and the conditional
//! replacements of `SYNC --full`.

use super::lock::Db;
use super::shard::Shard;
use super::{Applied, OwnedEntry, Record, Store, Version, now_millis};

impl Store {
    #[inline]
    pub(super) fn local_version(&self, shard: &mut Shard, now_ms: u64) -> Version {
        Version::new(shard.clock.tick(now_ms), self.node)
    }
    /// [`Db::get`] on a locking view.
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.db().get(key, f)
    }
    /// [`Db::contains`] on a locking view.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.db().contains(key)
    }
    /// [`Db::set`] on a locking view.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Version {
        self.db().set(key, value)
    }
    /// [`Db::delete`] on a locking view.
    pub fn delete(&self, key: &[u8]) -> Option<Version> {
        self.db().delete(key)
    }
    /// [`Db::update`] on a locking view.
    pub fn update<T, E>(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<T, E>,
    ) -> Result<(T, Version), E> {
        self.db().update(key, out, f)
    }

    /// Applies a write received from elsewhere (replication, anti-entropy,
    /// recovery) with last-writer-wins, advancing the shard's clock.
    /// A tombstone older than the tombstone TTL for a key this store does
    /// not have is dropped: it would be collected at once.
    pub fn apply(&self, key: &[u8], value: Option<&[u8]>, version: Version) -> Applied {
        self.apply_stamped(key, value, version).0
    }

    /// Unconditional replacement for a copy (`SYNC --full`): if the record
    /// of `key` still has version `expected` (`None`: no record), store
    /// `value` (None = tombstone) at `version`, even if `version` is older,
    /// and advance the clock. Returns false (and changes nothing) if the
    /// record changed meanwhile, so a write made during the copy is kept.
    pub fn replace_if(
        &self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
    ) -> bool {
        let s = self.slot(key);
        let mut shard = self.shard(s.shard);
        if shard.find(s, key).map(Record::version) != expected {
            return false;
        }
        shard.clock.observe(version.hlc);
        shard.put(s, key, value, version, &self.hasher);
        drop(shard);
        if value.is_none() {
            self.note_tombstone(version.millis());
        }
        true
    }

    /// `SYNC --full` deleting a local-only record: if the record of `key` is
    /// still a live value at version `expected`, replaces it with a
    /// tombstone at a fresh local version (a delete like any other) and
    /// returns that version. A tombstone, or a record changed meanwhile, is
    /// left alone.
    pub fn delete_if(&self, key: &[u8], expected: Version) -> Option<Version> {
        let s = self.slot(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        match shard.find(s, key) {
            Some(r) if r.version() == expected && !r.is_tombstone() => {}
            _ => return None,
        }
        let v = self.local_version(&mut shard, now);
        shard.put(s, key, None, v, &self.hasher);
        drop(shard);
        self.note_tombstone(v.millis());
        Some(v)
    }

    /// Removes the record of `key` outright (no tombstone; `SYNC --full`
    /// dropping a local-only entry) if its version is still `expected`.
    pub fn remove_if(&self, key: &[u8], expected: Version) -> bool {
        let s = self.slot(key);
        let mut shard = self.shard(s.shard);
        shard.remove_if(s, key, expected, &self.hasher)
    }

    /// Calls `f` with the record of `key` (tombstones included) as
    /// `(value, version)`, under the shard lock: copy what you need, do no
    /// I/O.
    pub fn with_entry<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<(Option<&[u8]>, Version)>) -> R,
    ) -> R {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        f(shard.find(s, key).map(|r| (r.value(), r.version())))
    }
    /// [`Db::version`] on a locking view.
    pub fn version(&self, key: &[u8]) -> Option<Version> {
        self.db().version(key)
    }

    /// The entry of `key` (live or tombstone), copied out.
    pub fn entry(&self, key: &[u8]) -> Option<OwnedEntry> {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        shard.find(s, key).map(|r| OwnedEntry {
            key: key.to_vec(),
            value: r.value().map(<[u8]>::to_vec),
            version: r.version(),
        })
    }
}

impl Db<'_> {
    /// Calls `f` with the live value of `key` (None if missing or deleted),
    /// under the shard lock: copy what you need, do no I/O.
    #[inline]
    pub fn get<R>(self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let s = self.store.slot(key);
        let shard = self.shard(s.shard);
        f(shard.find(s, key).and_then(Record::value))
    }

    /// True if `key` has a live value.
    pub fn contains(self, key: &[u8]) -> bool {
        self.get(key, |v| v.is_some())
    }

    /// Local write: stores `value` under a fresh version and returns it.
    pub fn set(self, key: &[u8], value: &[u8]) -> Version {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        let v = self.store.local_version(&mut shard, now);
        shard.put(s, key, Some(value), v, &self.store.hasher);
        v
    }

    /// Local delete: replaces a live value with a tombstone and returns its
    /// version; `None` (and no change) if the key was not live.
    pub fn delete(self, key: &[u8]) -> Option<Version> {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        if shard.find(s, key).is_none_or(Record::is_tombstone) {
            return None;
        }
        let v = self.store.local_version(&mut shard, now);
        shard.put(s, key, None, v, &self.store.hasher);
        drop(shard);
        self.store.note_tombstone(v.millis());
        Some(v)
    }

    /// Local read-modify-write, atomic per key. `f` gets the live value (if
    /// any) and writes the new value into `out` (cleared first); on `Ok`
    /// the new value is stored under a fresh version.
    pub fn update<T, E>(
        self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<T, E>,
    ) -> Result<(T, Version), E> {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        out.clear();
        let t = f(shard.find(s, key).and_then(Record::value), out)?;
        let v = self.store.local_version(&mut shard, now);
        shard.put(s, key, Some(out), v, &self.store.hasher);
        Ok((t, v))
    }

    /// The version of `key`'s record (live or tombstone), if any.
    pub fn version(self, key: &[u8]) -> Option<Version> {
        let s = self.store.slot(key);
        let shard = self.shard(s.shard);
        shard.find(s, key).map(Record::version)
    }
}
