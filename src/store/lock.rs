//! Shard locking: one shard (`Store::shard`), the shards of a set of
//! keys ([`Db::lock_keys`], ascending order) and every shard at once
//! ([`Store::exclusive`]), and the [`Db`] view that runs the keyspace
//! operations either by locking or on the shards of an exclusive hold.
//!
//! # Why the exclusive hold is sound
//!
//! A thread inside [`Store::exclusive`] owns every shard's guard. Store
//! code reaches those shards only through the [`Exclusive`] it is given
//! (its [`Db`]), which borrows one shard per call from a `RefCell`; the
//! locking paths of the store (`Store::shard`, and everything built on
//! it: digest reads, anti-entropy and persistence operations, a nested
//! `exclusive`) check a thread-local mark and panic rather than wait for
//! a lock this thread holds. So no code inside a hold can lock a shard
//! again (the freeze of `MULTI`/`FLUSHDB`/`EXEC` was exactly that), and no
//! shard is ever reachable through two `&mut` at once.

use std::cell::{Cell, RefCell, RefMut};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use super::record::Encoding;
use super::shard::{Shard, Slot};
use super::{MAX_SHARD_BITS, Store, Version, Written, merkle, now_millis};

/// Locks one shard, counting in `contended` an acquisition that found the
/// lock held. The uncontended path is one `try_lock` (the same atomic
/// compare-exchange `lock` starts with) and touches no shared counter;
/// only a waiting acquisition, which already bounces the lock's cache
/// line, adds one relaxed increment.
pub(super) fn lock<'a>(m: &'a Mutex<Shard>, contended: &AtomicU64) -> MutexGuard<'a, Shard> {
    // A panic while holding a shard lock cannot leave the shard half
    // updated in a way later operations would misread more than a lost
    // write; keep serving rather than cascading the panic.
    match m.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => {
            contended.fetch_add(1, Relaxed);
            m.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}

/// A locked shard: its own mutex guard, or a shard of an
/// [`Exclusive`] hold, borrowed from it.
pub(super) enum ShardGuard<'a> {
    Own(MutexGuard<'a, Shard>),
    Held(RefMut<'a, Shard>),
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = Shard;
    #[inline]
    fn deref(&self) -> &Shard {
        match self {
            ShardGuard::Own(g) => g,
            ShardGuard::Held(s) => s,
        }
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Shard {
        match self {
            ShardGuard::Own(g) => g,
            ShardGuard::Held(s) => s,
        }
    }
}

thread_local! {
    /// Address of the store this thread holds inside [`Store::exclusive`]
    /// (0: none). Compared, never dereferenced: it turns a lock of a shard
    /// this thread already holds (a self-deadlock) into a panic that names
    /// the bug.
    static EXCLUSIVE: Cell<usize> = const { Cell::new(0) };
}

/// Every shard of one store, locked by this thread ([`Store::exclusive`]).
///
/// The only way to reach the held shards is [`Exclusive::db`], whose
/// operations borrow a shard from here for the duration of one call
/// (a `RefCell` per shard: a second borrow of one shard would be a bug and
/// panics, it cannot alias). Neither this type nor a [`Db`] made from it can
/// leave the thread (`MutexGuard` is not `Send`, `RefCell` not `Sync`).
pub struct Exclusive<'a> {
    store: &'a Store,
    shards: Box<[RefCell<MutexGuard<'a, Shard>>]>,
}

/// The held shards, behind a trait object so that [`Db`] needs one
/// lifetime (a `RefCell` makes the guards' lifetime invariant).
pub(super) trait HeldShards {
    fn borrow(&self, i: usize) -> RefMut<'_, Shard>;
}

impl HeldShards for Exclusive<'_> {
    fn borrow(&self, i: usize) -> RefMut<'_, Shard> {
        match self.shards[i].try_borrow_mut() {
            Ok(g) => RefMut::map(g, |g| &mut **g),
            Err(_) => panic!("store bug: shard {i} borrowed twice inside Store::exclusive"),
        }
    }
}

impl Exclusive<'_> {
    /// The keyspace operations, on the held shards (no locking).
    pub fn db(&self) -> Db<'_> {
        Db {
            store: self.store,
            held: Some(self),
        }
    }
}

/// The keyspace operations a command runs: reads, local writes, scans,
/// counts and the versioned clear. Made by [`Store::db`] (each call locks
/// the shards it needs) or by [`Exclusive::db`] (each call uses the shards
/// already held, and cannot lock). The executor runs every command
/// through a `Db`, so the same command code runs inside and outside
/// `MULTI`/`EXEC`. Digest reads and anti-entropy/persistence operations
/// are not here: they stay on [`Store`] and so cannot be reached from an
/// exclusive section.
#[derive(Clone, Copy)]
pub struct Db<'a> {
    pub(super) store: &'a Store,
    held: Option<&'a dyn HeldShards>,
}

impl<'a> Db<'a> {
    /// Shard `i`: borrowed from the hold, or locked.
    #[inline]
    pub(super) fn shard(self, i: usize) -> ShardGuard<'a> {
        match self.held {
            Some(h) => ShardGuard::Held(h.borrow(i)),
            None => ShardGuard::Own(self.store.shard(i)),
        }
    }

    /// True when this view runs on the shards of an [`Exclusive`] hold.
    pub fn is_exclusive(self) -> bool {
        self.held.is_some()
    }

    /// Number of shards.
    pub fn shard_count(self) -> usize {
        self.store.shard_count()
    }

    /// The tree shape.
    pub fn shape(self) -> super::merkle::Shape {
        self.store.shape()
    }

    /// See [`Store::leaves_hashed`] (a counter, no lock).
    pub fn leaves_hashed(self) -> u64 {
        self.store.leaves_hashed()
    }

    /// See [`Store::oldest_tombstone_ms`] (no lock).
    pub fn oldest_tombstone_ms(self) -> Option<u64> {
        self.store.oldest_tombstone_ms()
    }

    /// Locks the shards of `keys` (ascending order, each once) for an
    /// atomic multi-key operation.
    ///
    /// When the keys span several shards, each key is first probed under
    /// its own shard's lock alone (a read; nothing is decided on it). That
    /// pass takes the cache misses of the table header, control bytes and
    /// record, so that the shards are then held together only for the
    /// cached work. Measured with `redis-benchmark -t mset -P 16` (10
    /// random keys of 100,000, two workers): without it the workers
    /// collided on nearly every MSET and ~20% of the CPU went to futex
    /// waits and wakes (perf/README.md).
    pub fn lock_keys<'k>(self, keys: impl Iterator<Item = &'k [u8]> + Clone) -> MultiLock<'a> {
        // One bit per shard, on the stack.
        let mut wanted = [0u64; (1 << MAX_SHARD_BITS) / 64];
        let mut distinct = 0;
        for k in keys.clone() {
            let s = self.store.slot(k);
            let i = s.shard;
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            if wanted[w] & bit == 0 {
                wanted[w] |= bit;
                distinct += 1;
            }
            // Start every key's bucket loads now, in parallel.
            if let Some(h) = self.store.hints.get(i) {
                merkle::prefetch(h.tables.wrapping_add(s.bucket));
            }
        }
        // (Inside an exclusive hold the shards are not contended.)
        if distinct > 1 && self.held.is_none() {
            for k in keys {
                let s = self.store.slot(k);
                let shard = self.shard(s.shard);
                std::hint::black_box(shard.find(s, k).is_some());
            }
        }
        let mut guards = Vec::with_capacity(distinct);
        for (w, word) in wanted
            .iter()
            .enumerate()
            .take(self.store.shards.len().div_ceil(64))
        {
            let mut word = *word;
            while word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                guards.push((i, self.shard(i)));
            }
        }
        MultiLock {
            store: self.store,
            guards,
            now: now_millis(),
        }
    }
}

impl Store {
    /// Locks shard `i`.
    ///
    /// Panics if this thread holds this store inside [`Store::exclusive`]:
    /// that lock would wait for itself forever. Code inside an exclusive
    /// section reaches the shards only through [`Exclusive::db`].
    #[inline]
    pub(super) fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.assert_not_held();
        lock(&self.shards[i].0, &self.lock_contended)
    }

    /// Shard lock acquisitions so far that found the lock held and
    /// waited (INFO `store_lock_contended`).
    pub fn lock_contended(&self) -> u64 {
        self.lock_contended.load(Relaxed)
    }

    #[inline]
    fn assert_not_held(&self) {
        let me = std::ptr::from_ref(self) as usize;
        if EXCLUSIVE.with(Cell::get) == me {
            panic!("store bug: a shard locked again inside Store::exclusive (use its Db)");
        }
    }

    /// The keyspace operations, each call locking the shards it needs.
    #[inline]
    pub fn db(&self) -> Db<'_> {
        Db {
            store: self,
            held: None,
        }
    }

    /// Runs `f` holding every shard lock (taken in ascending order, like
    /// every multi-shard lock), so that what `f` does through
    /// [`Exclusive::db`] is isolated from every other thread: RESP
    /// `MULTI`/`EXEC`.
    ///
    /// Sound by construction: the held shards are reachable only through
    /// the [`Exclusive`] (no thread-local pointers, no `unsafe`), and any
    /// locking path of this store taken on this thread meanwhile panics
    /// instead of deadlocking (see `Store::shard`); so does a nested
    /// call. `f` must not wait for another thread that needs a shard lock
    /// (digest reads are not offered by [`Db`] for that reason: a refresh
    /// in progress on another thread would wait for this one).
    pub fn exclusive<R>(&self, f: impl FnOnce(&Exclusive<'_>) -> R) -> R {
        self.assert_not_held();
        let held = Exclusive {
            store: self,
            shards: self
                .shards
                .iter()
                .map(|m| RefCell::new(lock(&m.0, &self.lock_contended)))
                .collect(),
        };
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                EXCLUSIVE.with(|h| h.set(0));
            }
        }
        EXCLUSIVE.with(|h| h.set(std::ptr::from_ref(self) as usize));
        // Dropped first (reverse declaration order): the mark is cleared
        // before the guards go, also when `f` panics.
        let _reset = Reset;
        f(&held)
    }

    /// [`Db::lock_keys`] on a locking view.
    pub fn lock_keys<'a, 'k>(
        &'a self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
    ) -> MultiLock<'a> {
        self.db().lock_keys(keys)
    }
}

/// Shards locked for one multi-key operation ([`Store::lock_keys`]).
pub struct MultiLock<'a> {
    store: &'a Store,
    guards: Vec<(usize, ShardGuard<'a>)>,
    now: u64,
}

impl MultiLock<'_> {
    fn shard_for(&mut self, key: &[u8]) -> Option<(Slot, &mut Shard)> {
        let s = self.store.slot(key);
        let i = self.guards.binary_search_by_key(&s.shard, |g| g.0).ok()?;
        Some((s, &mut *self.guards[i].1))
    }

    /// Like [`Store::get`]; `key` must have been passed to `lock_keys`.
    pub fn get<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.get_with_expiry(key, |v| f(v.map(|(v, _)| v)))
    }

    /// Like [`Db::get_with_expiry`]; `key` must have been passed to
    /// `lock_keys`.
    pub fn get_with_expiry<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<(&[u8], u64)>) -> R,
    ) -> R {
        self.get_encoded(key, |v| f(v.map(|(v, e, _)| (v, e))))
    }

    /// [`MultiLock::get_with_expiry`] with the value's [`Encoding`] (what
    /// `RENAME` and `COPY` carry over, as Redis keeps the object).
    pub fn get_encoded<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<(&[u8], u64, Encoding)>) -> R,
    ) -> R {
        let now = self.now;
        match self.shard_for(key) {
            Some((s, shard)) => f(shard
                .find(s, key)
                .and_then(|r| r.value_at(now).map(|v| (v, r.expires(), r.encoding())))),
            None => f(None),
        }
    }

    /// Like [`Store::set`]; `key` must have been passed to `lock_keys`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Option<Version> {
        self.set_expiring(key, value, 0).map(|w| w.version)
    }

    /// Like [`Db::set_expiring`]; `key` must have been passed to
    /// `lock_keys`.
    pub fn set_expiring(&mut self, key: &[u8], value: &[u8], expires: u64) -> Option<Written> {
        self.set_encoded(key, value, expires, Encoding::Auto)
    }

    /// [`MultiLock::set_expiring`] of a value produced as `encoding`;
    /// `key` must have been passed to `lock_keys`.
    pub fn set_encoded(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires: u64,
        encoding: Encoding,
    ) -> Option<Written> {
        let (store, now) = (self.store, self.now);
        let (s, shard) = self.shard_for(key)?;
        let version = store.local_version(shard, now);
        shard.put_encoded(
            s,
            key,
            Some(value),
            version,
            expires,
            encoding,
            &store.hasher,
        );
        Some(Written { version, expires })
    }

    /// Like [`Store::delete`]; `key` must have been passed to `lock_keys`.
    pub fn delete(&mut self, key: &[u8]) -> Option<Version> {
        let (store, now) = (self.store, self.now);
        let (s, shard) = self.shard_for(key)?;
        if !shard.find(s, key).is_some_and(|r| r.is_live(now)) {
            return None;
        }
        let v = store.local_version(shard, now);
        shard.put(s, key, None, v, &store.hasher);
        store.note_tombstone(v.millis());
        Some(v)
    }
}
