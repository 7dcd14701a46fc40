//! Shard locking: one shard ([`Store::shard`]), the shards of a set of
//! keys ([`Store::lock_keys`], ascending order) and every shard at once
//! ([`Store::exclusive`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::shard::{Shard, Slot};
use super::{MAX_SHARD_BITS, Record, Store, Version, merkle, now_millis};

pub(super) fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard lock cannot leave the shard half
    // updated in a way later operations would misread more than a lost
    // write; keep serving rather than cascading the panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A locked shard: its own mutex guard, or a shard this thread already
/// holds inside [`Store::exclusive`].
pub(super) enum ShardGuard<'a> {
    Own(MutexGuard<'a, Shard>),
    Held(&'a mut Shard),
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

/// The shards a thread holds inside [`Store::exclusive`].
struct Held {
    store: *const Store,
    shards: Box<[*mut Shard]>,
}

thread_local! {
    /// Set only for the duration of a [`Store::exclusive`] call on this
    /// thread (null otherwise).
    static HELD: std::cell::Cell<*const Held> = const { std::cell::Cell::new(std::ptr::null()) };
}

impl Store {
    #[inline]
    pub(super) fn shard(&self, i: usize) -> ShardGuard<'_> {
        let held = HELD.with(std::cell::Cell::get);
        if !held.is_null() {
            // SAFETY: HELD is non-null only inside `exclusive` on this
            // thread, whose frame owns the `Held` and the guards behind its
            // pointers until it resets HELD. No store code holds two
            // guards of one shard at once (with mutexes that would
            // deadlock), so this is the only live reference to the shard.
            let held = unsafe { &*held };
            if std::ptr::eq(held.store, self) {
                return ShardGuard::Held(unsafe { &mut *held.shards[i] });
            }
        }
        ShardGuard::Own(lock(&self.shards[i].0))
    }

    /// Runs `f` holding every shard lock (in ascending order, like every
    /// multi-shard lock), so that the store operations `f` makes on this
    /// thread are isolated from every other thread: RESP `MULTI`/`EXEC`.
    /// Store calls inside `f` use the held shards instead of locking.
    ///
    /// `f` must not wait for another thread that needs a shard lock, and
    /// must not compute Merkle digests ([`Store::root`], the internal
    /// anti-entropy reads): a refresh in progress on another thread would
    /// wait for this one. Nested calls run `f` directly.
    pub fn exclusive<R: 'static>(&self, f: impl FnOnce() -> R) -> R {
        let nested = HELD.with(|h| {
            let p = h.get();
            // SAFETY: see `shard`.
            !p.is_null() && std::ptr::eq(unsafe { &*p }.store, self)
        });
        if nested {
            return f();
        }
        let mut guards: Vec<MutexGuard<'_, Shard>> =
            self.shards.iter().map(|m| lock(&m.0)).collect();
        let held = Held {
            store: self,
            shards: guards.iter_mut().map(|g| &mut **g as *mut Shard).collect(),
        };
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                HELD.with(|h| h.set(std::ptr::null()));
            }
        }
        HELD.with(|h| h.set(&held));
        // Dropped first (reverse declaration order): HELD is cleared before
        // `held` and the guards go, also when `f` panics.
        let _reset = Reset;
        f()
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
    pub fn lock_keys<'a, 'k>(
        &'a self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
    ) -> MultiLock<'a> {
        // One bit per shard, on the stack.
        let mut wanted = [0u64; (1 << MAX_SHARD_BITS) / 64];
        let mut distinct = 0;
        for k in keys.clone() {
            let s = self.slot(k);
            let i = s.shard;
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            if wanted[w] & bit == 0 {
                wanted[w] |= bit;
                distinct += 1;
            }
            // Start every key's bucket loads now, in parallel.
            if let Some(h) = self.hints.get(i) {
                merkle::prefetch(h.tables.wrapping_add(s.bucket));
            }
        }
        if distinct > 1 {
            for k in keys {
                let s = self.slot(k);
                let shard = self.shard(s.shard);
                std::hint::black_box(shard.find(s, k).is_some());
            }
        }
        let mut guards = Vec::with_capacity(distinct);
        for (w, word) in wanted
            .iter()
            .enumerate()
            .take(self.shards.len().div_ceil(64))
        {
            let mut word = *word;
            while word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                guards.push((i, self.shard(i)));
            }
        }
        MultiLock {
            store: self,
            guards,
            now: now_millis(),
        }
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
        match self.shard_for(key) {
            Some((s, shard)) => f(shard.find(s, key).and_then(Record::value)),
            None => f(None),
        }
    }

    /// Like [`Store::set`]; `key` must have been passed to `lock_keys`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Option<Version> {
        let (store, now) = (self.store, self.now);
        let (s, shard) = self.shard_for(key)?;
        let v = store.local_version(shard, now);
        shard.put(s, key, Some(value), v, &store.hasher);
        Some(v)
    }

    /// Like [`Store::delete`]; `key` must have been passed to `lock_keys`.
    pub fn delete(&mut self, key: &[u8]) -> Option<Version> {
        let (store, now) = (self.store, self.now);
        let (s, shard) = self.shard_for(key)?;
        if shard.find(s, key).is_none_or(Record::is_tombstone) {
            return None;
        }
        let v = store.local_version(shard, now);
        shard.put(s, key, None, v, &store.hasher);
        store.note_tombstone(v.millis());
        Some(v)
    }
}
