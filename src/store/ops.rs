//! Reads and writes of single keys: local writes (fresh versions from the
//! shard clock), last-writer-wins applies and the conditional
//! replacements of `SYNC --full`.

use super::lock::Db;
use super::record::Encoding;
use super::shard::Shard;
use super::{Applied, OwnedEntry, Record, Store, Version, Written, now_millis};

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
    ) -> Result<(T, Written), E> {
        self.db().update(key, out, f)
    }

    /// [`Store::apply`] of a record with an expiry (Unix ms, 0 = none);
    /// see [`Store::apply_stamped_expiring`].
    pub fn apply_expiring(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> Applied {
        self.apply_stamped_expiring(key, value, version, expires).0
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
        self.replace_if_expiring(key, expected, value, version, 0)
    }

    /// [`Store::replace_if`] with an expiry (an expired record is stored as
    /// the tombstone of its version).
    pub fn replace_if_expiring(
        &self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> bool {
        let (value, expires) = if expires != 0 && expires <= now_millis() {
            (None, 0)
        } else {
            (value, expires)
        };
        let s = self.slot(key);
        let mut shard = self.shard(s.shard);
        if shard.find(s, key).map(Record::version) != expected {
            return false;
        }
        shard.clock.observe(version.hlc);
        shard.put_expiring(s, key, value, version, expires, &self.hasher);
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
    /// `(value, version, expires)`, under the shard lock: copy what you
    /// need, do no I/O. An expired record shows as the tombstone of its
    /// version (no value, no expiry).
    pub fn with_entry<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<(Option<&[u8]>, Version, u64)>) -> R,
    ) -> R {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        let now = now_millis();
        f(shard.find(s, key).map(|r| match r.value_at(now) {
            Some(v) => (Some(v), r.version(), r.expires()),
            None => (None, r.version(), 0),
        }))
    }
    /// [`Db::version`] on a locking view.
    pub fn version(&self, key: &[u8]) -> Option<Version> {
        self.db().version(key)
    }

    /// The entry of `key` (live or tombstone), copied out.
    pub fn entry(&self, key: &[u8]) -> Option<OwnedEntry> {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        let now = now_millis();
        shard.find(s, key).map(|r| OwnedEntry {
            key: key.to_vec(),
            value: r.value_at(now).map(<[u8]>::to_vec),
            version: r.version(),
            expires: if r.is_live(now) { r.expires() } else { 0 },
        })
    }
}

/// Conditions of an `EXPIRE`-family command (Redis `NX|XX|GT|LT`; all
/// given must hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireFlags {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later (no expiry counts as infinite).
    pub gt: bool,
    /// Only if the new expiry is earlier (no expiry counts as infinite).
    pub lt: bool,
}

/// What [`Db::expire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No live key: nothing changed.
    Missing,
    /// The condition did not hold: nothing changed.
    Unchanged,
    /// The expiry is set (a new version of the whole record).
    Set(Written),
    /// The time was not in the future: the key is deleted (tombstone).
    Deleted(Version),
}

impl Db<'_> {
    /// Calls `f` with the live value of `key` (None if missing, deleted
    /// or expired), under the shard lock: copy what you need, do no I/O.
    /// An expired record found here is converted at once (lazy expiry).
    #[inline]
    pub fn get<R>(self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.find_live(key, |r| f(r.and_then(Record::value)))
    }

    /// [`Db::get`] with the value's [`Encoding`] (how it was produced;
    /// `OBJECT ENCODING`).
    pub fn get_encoded<R>(self, key: &[u8], f: impl FnOnce(Option<(&[u8], Encoding)>) -> R) -> R {
        self.find_live(key, |r| f(r.and_then(|r| Some((r.value()?, r.encoding())))))
    }

    /// Calls `f` with the record of `key` after converting it if it has
    /// expired (then a tombstone), under the shard lock.
    #[inline]
    fn find_live<R>(self, key: &[u8], f: impl FnOnce(Option<&Record>) -> R) -> R {
        let s = self.store.slot(key);
        let mut shard = self.shard(s.shard);
        let expired = match shard.find(s, key) {
            Some(r) if r.expires() != 0 => r.is_expired(now_millis()),
            _ => false,
        };
        if expired {
            shard.expire_if_due(s, key, self.store, now_millis());
        }
        f(shard.find(s, key))
    }

    /// True if `key` has a live value.
    pub fn contains(self, key: &[u8]) -> bool {
        self.get(key, |v| v.is_some())
    }

    /// Local write: stores `value` under a fresh version and returns it.
    /// The record has no expiry afterwards (a plain `SET` clears a TTL).
    pub fn set(self, key: &[u8], value: &[u8]) -> Version {
        self.set_expiring(key, value, 0).version
    }

    /// Local write with an absolute expiry (Unix ms, 0 = none).
    pub fn set_expiring(self, key: &[u8], value: &[u8], expires: u64) -> Written {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        let version = self.store.local_version(&mut shard, now);
        shard.put_expiring(s, key, Some(value), version, expires, &self.store.hasher);
        Written { version, expires }
    }

    /// Sets the expiry of a live key to `when` (Unix ms): a new version
    /// of the whole record, whose value is copied into `value`. `when`
    /// at or before now deletes the key (a tombstone). The flags follow
    /// Redis (no expiry counts as infinite for GT/LT).
    pub fn expire(self, key: &[u8], when: i64, flags: ExpireFlags, value: &mut Vec<u8>) -> Expired {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        let Some(r) = shard.find(s, key).filter(|r| r.is_live(now)) else {
            return Expired::Missing;
        };
        let current = r.expires();
        let cur = i64::try_from(current).unwrap_or(i64::MAX);
        if (flags.nx && current != 0)
            || (flags.xx && current == 0)
            || (flags.gt && (current == 0 || when <= cur))
            || (flags.lt && current != 0 && when >= cur)
        {
            return Expired::Unchanged;
        }
        value.clear();
        value.extend_from_slice(r.value().unwrap_or_default());
        let encoding = r.encoding();
        let version = self.store.local_version(&mut shard, now);
        if when <= now as i64 {
            shard.put(s, key, None, version, &self.store.hasher);
            drop(shard);
            self.store.note_tombstone(version.millis());
            return Expired::Deleted(version);
        }
        let expires = when as u64;
        let hasher = &self.store.hasher;
        shard.put_encoded(s, key, Some(value), version, expires, encoding, hasher);
        Expired::Set(Written { version, expires })
    }

    /// Removes the expiry of a live key that has one: a new version of
    /// the whole record, whose value is copied into `value`. `None` (and
    /// no change) if the key is missing or has no expiry.
    pub fn persist(self, key: &[u8], value: &mut Vec<u8>) -> Option<Written> {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        let r = shard
            .find(s, key)
            .filter(|r| r.is_live(now) && r.expires() != 0)?;
        value.clear();
        value.extend_from_slice(r.value().unwrap_or_default());
        let encoding = r.encoding();
        let version = self.store.local_version(&mut shard, now);
        let hasher = &self.store.hasher;
        shard.put_encoded(s, key, Some(value), version, 0, encoding, hasher);
        Some(version.into())
    }

    /// The expiry of a live key: `None` if missing or expired, `Some(0)`
    /// if it has none.
    pub fn expiry(self, key: &[u8]) -> Option<u64> {
        let s = self.store.slot(key);
        let shard = self.shard(s.shard);
        let r = shard.find(s, key)?;
        r.is_live(now_millis()).then(|| r.expires())
    }

    /// Calls `f` with the live value and expiry of `key` (see [`Db::get`]).
    pub fn get_with_expiry<R>(self, key: &[u8], f: impl FnOnce(Option<(&[u8], u64)>) -> R) -> R {
        let s = self.store.slot(key);
        let shard = self.shard(s.shard);
        let now = now_millis();
        f(shard
            .find(s, key)
            .and_then(|r| r.value_at(now).map(|v| (v, r.expires()))))
    }

    /// Local delete: replaces a live value with a tombstone and returns its
    /// version; `None` (and no change) if the key was not live.
    pub fn delete(self, key: &[u8]) -> Option<Version> {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        if !shard.find(s, key).is_some_and(|r| r.is_live(now)) {
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
    /// the new value is stored under a fresh version, keeping the key's
    /// expiry (as `INCR`/`APPEND` do in Redis), as [`Encoding::Auto`].
    pub fn update<T, E>(
        self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<T, E>,
    ) -> Result<(T, Written), E> {
        self.update_encoded(key, out, |old, new| Ok((f(old, new)?, Encoding::Auto)))
    }

    /// [`Db::update`] where `f` also says how the new value was produced
    /// (its [`Encoding`]: `APPEND` to an existing value edits it in place).
    pub fn update_encoded<T, E>(
        self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<(T, Encoding), E>,
    ) -> Result<(T, Written), E> {
        self.modify(key, out, false, f)
    }

    /// An edit in place (`SETRANGE`, `SETBIT`): [`Db::update`] storing the
    /// new value as [`Encoding::Raw`]. When `f` fails (the edit would
    /// change no byte, so nothing is written), an existing live value is
    /// still marked [`Encoding::Raw`] under the same lock, as Redis's edits
    /// leave it: no new version, nothing hashed, replicated or logged.
    pub fn edit<T, E>(
        self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<T, E>,
    ) -> Result<(T, Written), E> {
        self.modify(key, out, true, |old, new| Ok((f(old, new)?, Encoding::Raw)))
    }

    /// The read-modify-write of [`Db::update_encoded`] and [`Db::edit`]
    /// (`mark`: on failure, mark an existing live value [`Encoding::Raw`]).
    fn modify<T, E>(
        self,
        key: &[u8],
        out: &mut Vec<u8>,
        mark: bool,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<(T, Encoding), E>,
    ) -> Result<(T, Written), E> {
        let s = self.store.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        out.clear();
        let (old, expires) = match shard.find(s, key) {
            Some(r) => match r.value_at(now) {
                Some(v) => (Some(v), r.expires()),
                None => (None, 0),
            },
            None => (None, 0),
        };
        let existed = old.is_some();
        let (t, encoding) = match f(old, out) {
            Ok(r) => r,
            Err(e) => {
                if mark && existed {
                    shard.set_encoding(s, key, Encoding::Raw);
                }
                return Err(e);
            }
        };
        let version = self.store.local_version(&mut shard, now);
        let hasher = &self.store.hasher;
        shard.put_encoded(s, key, Some(out), version, expires, encoding, hasher);
        Ok((t, Written { version, expires }))
    }

    /// The version of `key`'s record (live or tombstone), if any.
    pub fn version(self, key: &[u8]) -> Option<Version> {
        let s = self.store.slot(key);
        let shard = self.shard(s.shard);
        shard.find(s, key).map(Record::version)
    }
}
