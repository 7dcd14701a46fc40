//! The sharded, versioned store with per-shard Merkle subtrees.
//!
//! # Layout
//!
//! A [`Store`] has 2^s shards, each a `Mutex<Shard>`. A key's placement is
//! fixed by the cluster-wide tree shape (see [`merkle`]): its stable hash
//! picks one of 2^B buckets, and shard `j` owns the contiguous bucket range
//! `[j * 2^(B-s), (j+1) * 2^(B-s))`. Inside a shard every bucket is its own
//! small hash table (keyed by a per-process random `ahash`, so clients
//! cannot provoke collisions), which makes "the entries of a bucket" — what
//! anti-entropy asks for — a direct lookup, never a scan.
//!
//! # Versions and conflicts
//!
//! Every record carries a [`Version`]; tombstones are records without a
//! value. Local writes take a fresh version from the shard's hybrid logical
//! clock; remote writes go through [`Store::apply`], which keeps the larger
//! version (last-writer-wins) and advances the clock. The result of applying
//! any set of writes is independent of their order.
//!
//! # Invariants (per shard, under its lock)
//!
//! * every bucket digest is the XOR of the *stored* digests of the records
//!   in that bucket's table (tombstones included; a record never hashed
//!   stores ZERO, see `record.rs`);
//! * a record that is not stale stores its true leaf digest; a bucket that
//!   holds a stale record has its stale bit set in the subtree (except
//!   while the shard's serialized refresh has copies of those records in
//!   flight, see below);
//! * `live`/`tombstones`/`bytes` count exactly the records in the tables;
//! * the clock is ≥ every version stored in the shard.
//!
//! # Lazy leaf digests (why: `perf/antientropy.md`)
//!
//! Writes never hash. A write replaces or inserts its record (flagged
//! stale, its stored digest kept, also when reallocated) and sets its
//! bucket's stale bit; a removal (tombstone GC, `remove_if`, clear) XORs
//! the record's stored digest out of its bucket at once (32-byte XOR).
//! Hashing eagerly cost two SHA-256 per overwrite under the shard lock,
//! about +1.1 µs per write on the shared VM; lazily a write costs a flag
//! and a bit, and the deferred work is one SHA-256 per distinct key
//! written between two reads of the tree.
//!
//! Every digest read ([`Store::root`], [`Store::node_digest`], and hence
//! HASH and the anti-entropy `MKV.*` replies) first **refreshes** the
//! stale buckets below the node, per shard, in chunks:
//!
//! 1. under the shard lock, copy up to [`REFRESH_CHUNK`] stale records
//!    (≤ [`REFRESH_CHUNK_BYTES`] of keys and values) with their table
//!    slots, clearing the stale bit of each bucket fully copied;
//! 2. without the lock, compute their leaf digests (the SHA-256 work);
//! 3. under the lock again, store each digest into the record at its slot
//!    if that record still has exactly the copied contents (otherwise it
//!    was rewritten, moved or removed meanwhile, and any rewrite or insert
//!    set the bucket's bit again): `bucket ^= stored ^ new`, flag cleared.
//!    If no stale bucket remains below the node, the node is computed
//!    under this same lock acquisition (a consistent digest); otherwise
//!    the lock is released and the next chunk starts.
//!
//! So a shard lock is held for at most one chunk's copying or
//! bookkeeping, never for the hashing, and writers get the lock between
//! chunks however many records are stale. (Hashing a chunk under the lock
//! would bound each hold, but not a writer's wait: a thread that unlocks
//! and re-locks at once gets the lock back before the waiter it woke has
//! run, so the waiter could wait for the whole refresh.) Refreshes of one shard are
//! serialized by a second, per-shard mutex (taken before the shard lock,
//! never while holding one), which makes the in-flight copies of step 1
//! invisible to other readers; a reader whose range has no stale bit
//! while no refresh of the shard is in flight (a flag in the shard) skips
//! that mutex. A resume cursor `(bucket, slot)` lets a
//! huge bucket be refreshed across chunks without rescanning; any write
//! into that bucket resets it. A background thread calls
//! [`Store::refresh_digests_paced`] every 100 ms so stale sets stay small,
//! pausing briefly between chunks (with no lock held) so that it never
//! competes with the workers for CPU for long at a stretch.
//!
//! No lock is held across I/O; multi-key operations lock the shards they
//! touch in ascending order, so they cannot deadlock.

mod durable;
pub mod merkle;
pub mod record;
pub mod version;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use merkle::{Digest, Shape, Subtree, ZERO, bucket_of, inner_digest, key_hash, leaf_digest};

/// Most stale records rehashed per shard-lock acquisition by a refresh.
pub const REFRESH_CHUNK: usize = 256;
/// Most key + value bytes copied per refresh chunk (at least one record).
pub const REFRESH_CHUNK_BYTES: usize = 256 << 10;
/// No resume cursor.
const NO_CURSOR: (usize, usize) = (usize::MAX, 0);
pub use record::Record;
pub use version::{Hlc, Version, node_hash, now_millis};

/// Largest value the store accepts (APPEND/PREPEND cannot grow past it).
pub const MAX_VALUE_LEN: usize = 8 << 20;

/// Store construction parameters.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Number of shards; rounded up to a power of two and capped at the
    /// number of buckets and at 2^[`MAX_SHARD_BITS`].
    pub shards: usize,
    /// Tree shape: log2 of the number of buckets (multiple of 4, ≤ 24).
    pub tree_bits: u32,
    /// This node's id (origin of local versions).
    pub node_id: String,
    /// Tombstones older than this (by version time) are collected.
    pub tombstone_ttl_ms: u64,
}

/// Errors building a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `tree_bits` is not a multiple of 4 in 4..=24.
    BadTreeBits(u32),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::BadTreeBits(b) => {
                write!(f, "tree_bits must be a multiple of 4 in 4..=24, got {b}")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Outcome of a last-writer-wins apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The write was newer and is now stored.
    Stored,
    /// The store already had this version or a newer one.
    Stale,
}

/// A snapshot of one record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    pub key: Vec<u8>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    pub version: Version,
}

#[repr(align(128))]
struct Padded<T>(T);

/// One shard: bucket tables, their Merkle subtree, a clock and counters.
pub struct Shard {
    tables: Box<[HashTable<Record>]>,
    tree: Subtree,
    clock: Hlc,
    live: usize,
    tombstones: usize,
    bytes: usize,
    /// Where the refresh stopped inside a bucket: `(bucket, slot)`; every
    /// stale record of that bucket at a lower slot is in flight (see the
    /// module docs). Reset by any write into the bucket.
    cursor: (usize, usize),
    /// A refresh has copies of this shard's stale records in flight (steps
    /// 1 to 3): stale bits may be clear for records still stale, so a
    /// reader must wait for the refresh (its per-shard mutex).
    in_flight: bool,
}

/// One stale record copied by a refresh (offsets into `Refresh::bytes`).
struct Pending {
    bucket: usize,
    slot: usize,
    version: Version,
    tombstone: bool,
    key_end: usize,
    value_end: usize,
}

/// The copies and digests of one refresh chunk.
#[derive(Default)]
struct Refresh {
    pending: Vec<Pending>,
    /// Key then value bytes of each pending record, back to back.
    bytes: Vec<u8>,
    digests: Vec<Digest>,
}

impl Refresh {
    fn parts(&self, i: usize) -> (&[u8], Option<&[u8]>) {
        let p = &self.pending[i];
        let start = if i == 0 {
            0
        } else {
            self.pending[i - 1].value_end
        };
        let key = &self.bytes[start..p.key_end];
        let value = &self.bytes[p.key_end..p.value_end];
        (key, (!p.tombstone).then_some(value))
    }

    /// Step 2: the leaf digests of the copies (no lock held).
    fn hash(&mut self) {
        self.digests.clear();
        for i in 0..self.pending.len() {
            let (key, value) = self.parts(i);
            self.digests
                .push(leaf_digest(key, value, self.pending[i].version));
        }
    }
}

/// Where a key lives.
#[derive(Debug, Clone, Copy)]
struct Slot {
    shard: usize,
    bucket: usize,
    hash: u64,
}

/// Where a shard's bucket tables live, captured at construction for
/// [`Store::prefetch`]. Used only as a cache prefetch hint, never
/// dereferenced: the array is allocated once per shard and never moves
/// (clearing resets it in place); a stale address would only make a hint
/// useless, since a prefetch cannot fault. (Writes no longer touch the
/// bucket digests, so those are not prefetched.)
#[derive(Clone, Copy)]
struct Hint {
    tables: *const HashTable<Record>,
}

// SAFETY: the pointer is never dereferenced (prefetch hint only).
unsafe impl Send for Hint {}
// SAFETY: as above.
unsafe impl Sync for Hint {}

/// The sharded store. Cheap to share behind an `Arc`.
pub struct Store {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Per shard: serializes refreshes of its digests (module docs).
    /// Always taken before the shard lock, never while holding one.
    refreshing: Box<[Mutex<()>]>,
    hints: Box<[Hint]>,
    shard_bits: u32,
    shape: Shape,
    node: u64,
    node_id: String,
    hasher: ahash::RandomState,
    tombstone_ttl_ms: u64,
    /// Version time (ms) of the oldest tombstone: the oldest kept by the
    /// last [`Store::collect_tombstones`] pass, lowered by every tombstone
    /// written since (`u64::MAX` = none known). A tombstone overwritten or
    /// removed outside a pass leaves it lower than the truth until the
    /// next pass.
    oldest_tombstone_ms: AtomicU64,
    /// Leaf digests computed by refreshes so far (INFO).
    leaves_hashed: AtomicU64,
}

impl Shard {
    fn new(span_bits: u32) -> Shard {
        Shard {
            tables: (0..1usize << span_bits).map(|_| HashTable::new()).collect(),
            tree: Subtree::new(span_bits),
            clock: Hlc::new(),
            live: 0,
            tombstones: 0,
            bytes: 0,
            cursor: NO_CURSOR,
            in_flight: false,
        }
    }

    #[inline]
    fn find(&self, s: Slot, key: &[u8]) -> Option<&Record> {
        self.tables[s.bucket].find(s.hash, |r| r.key() == key)
    }

    /// Stores `value` (None = tombstone) at `version` unconditionally,
    /// keeping the tree and counters in step. Hashes nothing: the record
    /// becomes stale and its bucket is marked (module docs).
    fn put(
        &mut self,
        s: Slot,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        hasher: &ahash::RandomState,
    ) {
        // (No prefetch here any more: with no SHA-256 to overlap with, the
        // table header is used at once; the worker prefetches the next
        // pipelined request's bucket instead, see `Store::prefetch`.)
        let table = &mut self.tables[s.bucket];
        match table.entry(s.hash, |r| r.key() == key, |r| hasher.hash_one(r.key())) {
            Entry::Occupied(mut o) => {
                let rec = o.get_mut();
                let (was_tomb, old_bytes) =
                    (rec.is_tombstone(), rec.value().map_or(0, |v| v.len()));
                rec.replace(value, version);
                match (was_tomb, value) {
                    (true, Some(v)) => {
                        self.tombstones -= 1;
                        self.live += 1;
                        self.bytes += key.len() + v.len();
                    }
                    (false, None) => {
                        self.live -= 1;
                        self.tombstones += 1;
                        self.bytes -= key.len() + old_bytes;
                    }
                    (false, Some(v)) => self.bytes = self.bytes - old_bytes + v.len(),
                    (true, None) => {}
                }
            }
            Entry::Vacant(v) => {
                v.insert(Record::new(key, value, version));
                match value {
                    None => self.tombstones += 1,
                    Some(val) => {
                        self.live += 1;
                        self.bytes += key.len() + val.len();
                    }
                }
            }
        }
        self.tree.mark_stale(s.bucket);
        if self.cursor.0 == s.bucket {
            self.cursor = NO_CURSOR;
        }
    }

    /// XORs a record's stored digest out of its bucket (it is removed).
    #[inline]
    fn unlink(tree: &mut Subtree, bucket: usize, rec: &Record) {
        if *rec.digest() != ZERO {
            tree.toggle(bucket, rec.digest());
        }
    }

    /// Refresh step 1: copies up to one chunk of stale records of local
    /// buckets `lo..hi` into `work` (see the module docs), clearing the
    /// stale bit of every bucket copied whole. Empty `work.pending` with
    /// no stale bit left in the range means the range is clean.
    fn collect_stale(&mut self, lo: usize, hi: usize, work: &mut Refresh) {
        work.pending.clear();
        work.bytes.clear();
        let mut from = lo;
        let mut prefetched = lo;
        while let Some(bucket) = self.tree.next_stale(from, hi) {
            if bucket >= prefetched {
                prefetched = self.prefetch_stale(bucket, hi);
            }
            let table = &self.tables[bucket];
            let mut slot = if self.cursor.0 == bucket {
                self.cursor.1
            } else {
                0
            };
            while slot < table.num_buckets() {
                if let Some(r) = table.get_bucket(slot).filter(|r| r.is_stale()) {
                    let value = r.value().unwrap_or(&[]);
                    let full = work.pending.len() >= REFRESH_CHUNK
                        || (!work.pending.is_empty()
                            && work.bytes.len() + r.key().len() + value.len()
                                > REFRESH_CHUNK_BYTES);
                    if full {
                        self.cursor = (bucket, slot);
                        return;
                    }
                    work.bytes.extend_from_slice(r.key());
                    let key_end = work.bytes.len();
                    work.bytes.extend_from_slice(value);
                    work.pending.push(Pending {
                        bucket,
                        slot,
                        version: r.version(),
                        tombstone: r.is_tombstone(),
                        key_end,
                        value_end: work.bytes.len(),
                    });
                }
                slot += 1;
            }
            self.tree.clear_stale(bucket);
            if self.cursor.0 == bucket {
                self.cursor = NO_CURSOR;
            }
            from = bucket + 1;
        }
    }

    /// Starts loading the table headers and records of the next few stale
    /// buckets from `from` (cache hints only) and returns the bucket after
    /// the last one. Measured (perf, redis-benchmark SET -P 16): without
    /// it the refresh spent most of its time waiting, one dependent miss
    /// after another, on control bytes and record headers read only to
    /// test the stale flag; issued together the misses overlap.
    fn prefetch_stale(&self, from: usize, hi: usize) -> usize {
        /// Buckets looked ahead.
        const AHEAD: usize = 16;
        /// Records prefetched per bucket (big buckets: the first few only).
        const PER_BUCKET: usize = 32;
        let mut ahead = [0usize; AHEAD];
        let (mut n, mut next) = (0, from);
        while n < AHEAD {
            let Some(b) = self.tree.next_stale(next, hi) else {
                break;
            };
            merkle::prefetch(&self.tables[b]);
            ahead[n] = b;
            n += 1;
            next = b + 1;
        }
        for &b in &ahead[..n] {
            self.tables[b]
                .iter()
                .take(PER_BUCKET)
                .for_each(Record::prefetch);
        }
        next
    }

    /// Refresh step 3: stores each computed digest into the record at its
    /// slot if that record still has exactly the copied contents.
    /// Returns how many records were updated.
    fn store_digests(&mut self, work: &Refresh) -> usize {
        let mut done = 0;
        for (i, (p, d)) in work.pending.iter().zip(&work.digests).enumerate() {
            let Some(r) = self.tables[p.bucket].get_bucket_mut(p.slot) else {
                continue;
            };
            let (key, value) = work.parts(i);
            if !r.is_stale() || r.version() != p.version || r.key() != key || r.value() != value {
                continue;
            }
            let mut delta = *r.digest();
            merkle::xor_into(&mut delta, d);
            r.set_digest(d);
            self.tree.toggle(p.bucket, &delta);
            done += 1;
        }
        done
    }

    /// Removes the record of `key` entirely (no tombstone) if its version
    /// is `expected`, keeping the tree and counters in step.
    fn remove_if(
        &mut self,
        s: Slot,
        key: &[u8],
        expected: Version,
        hasher: &ahash::RandomState,
    ) -> bool {
        let table = &mut self.tables[s.bucket];
        let Entry::Occupied(o) =
            table.entry(s.hash, |r| r.key() == key, |r| hasher.hash_one(r.key()))
        else {
            return false;
        };
        if o.get().version() != expected {
            return false;
        }
        let (rec, _) = o.remove();
        Shard::unlink(&mut self.tree, s.bucket, &rec);
        match rec.value() {
            None => self.tombstones -= 1,
            Some(v) => {
                self.live -= 1;
                self.bytes -= key.len() + v.len();
            }
        }
        true
    }

    fn clear(&mut self) {
        for t in self.tables.iter_mut() {
            *t = HashTable::new();
        }
        self.reset_counts();
    }

    /// Resets the tree, counters and cursor after the tables were emptied.
    fn reset_counts(&mut self) {
        self.tree.clear();
        self.cursor = NO_CURSOR;
        self.live = 0;
        self.tombstones = 0;
        self.bytes = 0;
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard lock cannot leave the shard half
    // updated in a way later operations would misread more than a lost
    // write; keep serving rather than cascading the panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A locked shard: its own mutex guard, or a shard this thread already
/// holds inside [`Store::exclusive`].
enum ShardGuard<'a> {
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

/// log2 of the largest shard count a store uses (more are capped).
pub const MAX_SHARD_BITS: u32 = 12;

impl Store {
    /// Builds an empty store.
    pub fn new(opts: StoreOptions) -> Result<Store, StoreError> {
        let shape = match Shape::new(opts.tree_bits) {
            Some(s) if (4..=24).contains(&opts.tree_bits) => s,
            _ => return Err(StoreError::BadTreeBits(opts.tree_bits)),
        };
        let shard_bits = opts
            .shards
            .max(1)
            .next_power_of_two()
            .trailing_zeros()
            .min(shape.bits)
            .min(MAX_SHARD_BITS);
        let span_bits = shape.bits - shard_bits;
        let shards: Vec<Shard> = (0..1usize << shard_bits)
            .map(|_| Shard::new(span_bits))
            .collect();
        let hints = shards
            .iter()
            .map(|s| Hint {
                tables: s.tables.as_ptr(),
            })
            .collect();
        let refreshing = shards.iter().map(|_| Mutex::new(())).collect();
        let shards = shards.into_iter().map(|s| Padded(Mutex::new(s))).collect();
        Ok(Store {
            shards,
            refreshing,
            hints,
            shard_bits,
            shape,
            node: node_hash(&opts.node_id),
            node_id: opts.node_id,
            hasher: ahash::RandomState::new(),
            tombstone_ttl_ms: opts.tombstone_ttl_ms,
            oldest_tombstone_ms: AtomicU64::new(u64::MAX),
            leaves_hashed: AtomicU64::new(0),
        })
    }

    /// A small in-memory store for tests and benches.
    pub fn with_defaults(node_id: &str) -> Store {
        Store::new(StoreOptions {
            shards: 64,
            tree_bits: 16,
            node_id: node_id.to_string(),
            tombstone_ttl_ms: 24 * 3600 * 1000,
        })
        .expect("default store options are valid")
    }

    /// The tree shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This node's version tie-breaker ([`node_hash`] of its id).
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Tombstone time to live in milliseconds.
    pub fn tombstone_ttl_ms(&self) -> u64 {
        self.tombstone_ttl_ms
    }

    #[inline]
    fn slot(&self, key: &[u8]) -> Slot {
        let bucket = bucket_of(key_hash(key), self.shape.bits);
        let span = self.shape.bits - self.shard_bits;
        Slot {
            shard: bucket >> span,
            bucket: bucket & ((1 << span) - 1),
            hash: self.hasher.hash_one(key),
        }
    }

    /// [`Store::slot`], and starts loading the bucket's table header (a
    /// likely cache miss, then needed at once by the write): the clock
    /// read and the lock that come first overlap with it. Measured with
    /// `benches/merkle.rs`: once writes stopped hashing, the misses of
    /// the table header, its control bytes and the record are most of a
    /// write's cost.
    #[inline]
    fn slot_prefetched(&self, key: &[u8]) -> Slot {
        let s = self.slot(key);
        merkle::prefetch(self.hints[s.shard].tables.wrapping_add(s.bucket));
        s
    }

    /// Starts loading the cache line that an operation on `key` touches
    /// first (its bucket's table header), without locking. The
    /// worker calls it for the next pipelined request while it executes
    /// the current one, so those misses overlap with useful work.
    #[inline]
    pub fn prefetch(&self, key: &[u8]) {
        let bucket = bucket_of(key_hash(key), self.shape.bits);
        let span = self.shape.bits - self.shard_bits;
        let (shard, local) = (bucket >> span, bucket & ((1 << span) - 1));
        if let Some(h) = self.hints.get(shard) {
            merkle::prefetch(h.tables.wrapping_add(local));
        }
    }

    #[inline]
    fn shard(&self, i: usize) -> ShardGuard<'_> {
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

    #[inline]
    fn local_version(&self, shard: &mut Shard, now_ms: u64) -> Version {
        Version::new(shard.clock.tick(now_ms), self.node)
    }

    /// Calls `f` with the live value of `key` (None if missing or deleted),
    /// under the shard lock: copy what you need, do no I/O.
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        f(shard.find(s, key).and_then(Record::value))
    }

    /// True if `key` has a live value.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key, |v| v.is_some())
    }

    /// Local write: stores `value` under a fresh version and returns it.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Version {
        let s = self.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        let v = self.local_version(&mut shard, now);
        shard.put(s, key, Some(value), v, &self.hasher);
        v
    }

    /// Local delete: replaces a live value with a tombstone and returns its
    /// version; `None` (and no change) if the key was not live.
    pub fn delete(&self, key: &[u8]) -> Option<Version> {
        let s = self.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        if shard.find(s, key).is_none_or(Record::is_tombstone) {
            return None;
        }
        let v = self.local_version(&mut shard, now);
        shard.put(s, key, None, v, &self.hasher);
        drop(shard);
        self.note_tombstone(v.millis());
        Some(v)
    }

    /// Local read-modify-write, atomic per key. `f` gets the live value (if
    /// any) and writes the new value into `out` (cleared first); on `Ok`
    /// the new value is stored under a fresh version.
    pub fn update<T, E>(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<T, E>,
    ) -> Result<(T, Version), E> {
        let s = self.slot_prefetched(key);
        let now = now_millis();
        let mut shard = self.shard(s.shard);
        out.clear();
        let t = f(shard.find(s, key).and_then(Record::value), out)?;
        let v = self.local_version(&mut shard, now);
        shard.put(s, key, Some(out), v, &self.hasher);
        Ok((t, v))
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

    fn tombstone_expired(&self, v: Version, now_ms: u64) -> bool {
        v.millis().saturating_add(self.tombstone_ttl_ms) < now_ms
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

    /// Live keys starting with `prefix`, in ascending byte order.
    pub fn scan(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                keys.extend(
                    t.iter()
                        .filter(|r| !r.is_tombstone() && r.key().starts_with(prefix))
                        .map(|r| r.key().to_vec()),
                );
            }
        }
        keys.sort_unstable();
        keys
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
    pub fn scan_step(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        /// Most buckets visited per call (bounds the work on sparse stores).
        const MAX_BUCKETS: usize = 4096;
        let buckets = self.shape.buckets();
        let span_bits = self.shape.bits - self.shard_bits;
        let Ok(mut b) = usize::try_from(cursor) else {
            return 0;
        };
        let (mut examined, mut visited) = (0usize, 0usize);
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
                    if !r.is_tombstone() {
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
    pub fn for_each_in_shard(&self, i: usize, mut f: impl FnMut(&Record)) {
        let shard = self.shard(i);
        for t in shard.tables.iter() {
            t.iter().for_each(&mut f);
        }
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.shard(i).live).sum()
    }

    /// True when there is no live key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tombstones currently kept.
    pub fn tombstones(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.shard(i).tombstones)
            .sum()
    }

    /// `(live keys, Σ key + value bytes of live keys)`.
    pub fn usage(&self) -> (usize, usize) {
        (0..self.shards.len()).fold((0, 0), |(n, b), i| {
            let s = self.shard(i);
            (n + s.live, b + s.bytes)
        })
    }

    /// Removes every record (local only; not a replicated delete).
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            self.shard(i).clear();
        }
        self.oldest_tombstone_ms.store(u64::MAX, Relaxed);
    }

    /// Drops tombstones whose version is older than the TTL at `now_ms`.
    /// Returns how many were collected and the version time of the oldest
    /// tombstone kept (if any).
    pub fn collect_tombstones(&self, now_ms: u64) -> (usize, Option<u64>) {
        // Tombstones written during the pass lower the value again below.
        self.oldest_tombstone_ms.store(u64::MAX, Relaxed);
        let mut collected = 0;
        let mut oldest: Option<u64> = None;
        for i in 0..self.shards.len() {
            let mut guard = self.shard(i);
            let shard = &mut *guard;
            if shard.tombstones == 0 {
                continue;
            }
            let tree = &mut shard.tree;
            let mut removed = 0;
            for (b, table) in shard.tables.iter_mut().enumerate() {
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
            }
            shard.tombstones -= removed;
            collected += removed;
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
    fn note_tombstone(&self, millis: u64) {
        if millis < self.oldest_tombstone_ms.load(Relaxed) {
            self.oldest_tombstone_ms.fetch_min(millis, Relaxed);
        }
    }

    /// Version time (Unix ms) of the oldest tombstone, if any is known
    /// (see the field's invariant; exact after each collection pass).
    pub fn oldest_tombstone_ms(&self) -> Option<u64> {
        Some(self.oldest_tombstone_ms.load(Relaxed)).filter(|&t| t != u64::MAX)
    }

    /// The Merkle root.
    pub fn root(&self) -> Digest {
        self.node_digest(0, 0).unwrap_or(ZERO)
    }

    /// Digest of tree node `index` at `level` (0 = root, depth = buckets);
    /// `None` if out of range.
    pub fn node_digest(&self, level: u32, index: usize) -> Option<Digest> {
        let depth = self.shape.depth();
        if level > depth || index >= self.shape.nodes_at(level) {
            return None;
        }
        let span_bits = self.shape.bits - self.shard_bits;
        let k = depth - level;
        if k <= span_bits / merkle::FANOUT_BITS {
            let first = index << (merkle::FANOUT_BITS * k);
            let lo = first & ((1 << span_bits) - 1);
            let hi = lo + (1 << (merkle::FANOUT_BITS * k));
            let local = lo >> (merkle::FANOUT_BITS * k);
            Some(self.with_clean(first >> span_bits, lo, hi, |shard| {
                shard.tree.node(k, local)
            }))
        } else {
            let mut children = [ZERO; merkle::FANOUT];
            for (c, d) in children.iter_mut().enumerate() {
                *d = self.node_digest(level + 1, index * merkle::FANOUT + c)?;
            }
            Some(inner_digest(&children))
        }
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

    /// The version of `key`'s record (live or tombstone), if any.
    pub fn version(&self, key: &[u8]) -> Option<Version> {
        let s = self.slot(key);
        let shard = self.shard(s.shard);
        shard.find(s, key).map(Record::version)
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

    /// XOR of the leaf digests of live records whose key starts with
    /// `prefix` (zero when none match). Linear in the number of records;
    /// uses the stored digest of records that are not stale and hashes
    /// the others (without storing: this is a read of one shard at a time).
    pub fn prefix_digest(&self, prefix: &[u8]) -> Digest {
        let mut acc = ZERO;
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                for r in t.iter() {
                    if !r.is_tombstone() && r.key().starts_with(prefix) {
                        if r.is_stale() {
                            let d = leaf_digest(r.key(), r.value(), r.version());
                            merkle::xor_into(&mut acc, &d);
                        } else {
                            merkle::xor_into(&mut acc, r.digest());
                        }
                    }
                }
            }
        }
        acc
    }

    /// Refreshes the stale records of local buckets `lo..hi` of shard `i`
    /// in chunks (see the module docs) until the range is clean or
    /// `max_chunks` chunks ran. Returns the shard's guard if the range is
    /// clean — the lock acquisition that found it clean, so a node read
    /// under it is consistent — and the number of records rehashed.
    ///
    /// Between chunks nothing is in flight, so the per-shard refresh
    /// mutex is held only for the duration of this call: a budgeted
    /// caller can pause between calls without blocking readers.
    fn refresh_range(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        max_chunks: usize,
    ) -> (Option<ShardGuard<'_>>, usize) {
        // Fast path, no refresh mutex: nothing stale and nothing in flight
        // (a root read visits every shard; most are clean).
        let guard = self.shard(i);
        if !guard.in_flight && guard.tree.next_stale(lo, hi).is_none() {
            return (Some(guard), 0);
        }
        drop(guard);
        let _serial = self.refreshing[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut hashed, mut chunks) = (0, 0);
        let mut work: Option<Refresh> = None;
        let mut guard = self.shard(i);
        let clean = loop {
            if guard.tree.next_stale(lo, hi).is_none() {
                break true;
            }
            if chunks == max_chunks {
                break false;
            }
            chunks += 1;
            let w = work.get_or_insert_with(Refresh::default);
            guard.collect_stale(lo, hi, w);
            if w.pending.is_empty() {
                // Only marks of buckets without stale records were left.
                continue;
            }
            guard.in_flight = true;
            drop(guard);
            w.hash();
            guard = self.shard(i);
            hashed += guard.store_digests(w);
            guard.in_flight = false;
        };
        if hashed > 0 {
            self.leaves_hashed.fetch_add(hashed as u64, Relaxed);
        }
        (clean.then_some(guard), hashed)
    }

    /// Refreshes local buckets `lo..hi` of shard `i`, then calls `f` on
    /// the shard under the lock acquisition that found them clean.
    fn with_clean<R>(&self, i: usize, lo: usize, hi: usize, f: impl FnOnce(&mut Shard) -> R) -> R {
        loop {
            // Without a chunk budget the range is always clean on return.
            if let (Some(mut guard), _) = self.refresh_range(i, lo, hi, usize::MAX) {
                return f(&mut guard);
            }
        }
    }

    /// Rehashes every stale record (all shards, in chunks; see the module
    /// docs) and returns how many were rehashed.
    pub fn refresh_digests(&self) -> usize {
        self.refresh_digests_paced(|| true)
    }

    /// Like [`Store::refresh_digests`], calling `pause` between chunks
    /// with no lock held; `pause` returns false to stop early. The
    /// background refresher sleeps briefly there, so that on a busy
    /// machine it never runs long enough at a stretch to delay a worker.
    pub fn refresh_digests_paced(&self, mut pause: impl FnMut() -> bool) -> usize {
        let span = 1usize << (self.shape.bits - self.shard_bits);
        let mut total = 0;
        for i in 0..self.shards.len() {
            loop {
                let (clean, n) = self.refresh_range(i, 0, span, 1);
                total += n;
                if clean.is_some() {
                    break;
                }
                if !pause() {
                    return total;
                }
            }
        }
        total
    }

    /// Leaf digests computed by refreshes since the store was built: one
    /// per record written (or rewritten) since the previous refresh.
    pub fn leaves_hashed(&self) -> u64 {
        self.leaves_hashed.load(Relaxed)
    }

    /// Number of records whose stored digest is stale (a full scan; for
    /// tests and diagnostics).
    pub fn stale_records(&self) -> usize {
        let mut n = 0;
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for t in shard.tables.iter() {
                n += t.iter().filter(|r| r.is_stale()).count();
            }
        }
        n
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(shards: usize) -> Store {
        Store::new(StoreOptions {
            shards,
            tree_bits: 16,
            node_id: "n1".into(),
            tombstone_ttl_ms: 1000,
        })
        .unwrap()
    }

    #[test]
    fn set_get_delete_with_tombstones() {
        let s = store(4);
        assert!(s.get(b"a", |v| v.is_none()));
        s.set(b"a", b"1");
        assert_eq!(s.get(b"a", |v| v.map(<[u8]>::to_vec)), Some(b"1".to_vec()));
        assert_eq!(s.len(), 1);
        assert!(s.delete(b"a").is_some());
        assert!(s.delete(b"a").is_none());
        assert_eq!(s.len(), 0);
        assert_eq!(s.tombstones(), 1);
        assert!(!s.contains(b"a"));
        assert!(s.entry(b"a").unwrap().value.is_none());
        assert!(s.scan(b"").is_empty());
        s.set(b"a", b"2");
        assert_eq!((s.len(), s.tombstones()), (1, 0));
        assert_eq!(s.usage(), (1, 2));
    }

    #[test]
    fn lww_apply_keeps_the_larger_version() {
        let s = store(4);
        let hi = Version::new(100 << 16, 1);
        let lo = Version::new(50 << 16, 2);
        assert_eq!(s.apply(b"k", Some(b"new"), hi), Applied::Stored);
        assert_eq!(s.apply(b"k", Some(b"old"), lo), Applied::Stale);
        assert_eq!(s.apply(b"k", Some(b"dup"), hi), Applied::Stale);
        assert_eq!(
            s.get(b"k", |v| v.map(<[u8]>::to_vec)),
            Some(b"new".to_vec())
        );
        // A local write after observing `hi` must win over it.
        let v = s.set(b"k", b"local");
        assert!(v > hi);
    }

    #[test]
    fn same_writes_any_order_and_shard_count_same_root() {
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>, Version)> = (0..2000u64)
            .map(|i| {
                let key = format!("key{}", i % 700).into_bytes();
                let val = (i % 5 != 0).then(|| format!("v{i}").into_bytes());
                (key, val, Version::new((i * 7919 % 3001) << 16 | i, i % 3))
            })
            .collect();
        let now = now_millis() << 16;
        let mut roots = Vec::new();
        for (shards, rev) in [(1, false), (64, true), (4096, false), (16, true)] {
            let s = store(shards);
            let it: Box<dyn Iterator<Item = _>> = if rev {
                Box::new(writes.iter().rev())
            } else {
                Box::new(writes.iter())
            };
            for (k, v, ver) in it {
                // Keep tombstones unexpired: shift versions to "now".
                s.apply(k, v.as_deref(), Version::new(now + ver.hlc, ver.node));
            }
            roots.push((s.root(), s.len()));
        }
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "{roots:?}");
        assert_ne!(roots[0].0, ZERO);
    }

    #[test]
    fn one_change_changes_exactly_one_bucket_path() {
        let a = store(16);
        let b = store(16);
        for i in 0..1000 {
            let k = format!("k{i}");
            let v = Version::new((now_millis() << 16) + i, 1);
            a.apply(k.as_bytes(), Some(b"x"), v);
            b.apply(k.as_bytes(), Some(b"x"), v);
        }
        assert_eq!(a.root(), b.root());
        b.set(b"k500", b"changed");
        let depth = a.shape().depth();
        let bucket = a.bucket_of_key(b"k500");
        for level in 0..=depth {
            let n = a.shape().nodes_at(level);
            let diff: Vec<usize> = (0..n)
                .filter(|&i| a.node_digest(level, i) != b.node_digest(level, i))
                .collect();
            assert_eq!(diff, vec![bucket >> (4 * (depth - level))], "level {level}");
        }
    }

    #[test]
    fn empty_root_is_zero_and_delete_all_restores_it_after_gc() {
        let s = store(8);
        assert_eq!(s.root(), ZERO);
        s.set(b"a", b"1");
        s.delete(b"a");
        assert_ne!(s.root(), ZERO, "tombstone is a leaf");
        let (n, _) = s.collect_tombstones(now_millis() + 10_000);
        assert_eq!(n, 1);
        assert_eq!(s.root(), ZERO);
        assert_eq!(s.tombstones(), 0);
    }

    #[test]
    fn expired_tombstone_for_missing_key_is_not_inserted() {
        let s = store(8);
        let old = Version::new(1 << 16, 5);
        assert_eq!(s.apply(b"gone", None, old), Applied::Stale);
        assert_eq!(s.tombstones(), 0);
        // But it still deletes an older live value.
        s.apply(b"x", Some(b"1"), Version::new(1, 5));
        assert_eq!(s.apply(b"x", None, old), Applied::Stored);
        assert!(!s.contains(b"x"));
    }

    #[test]
    fn update_and_multilock() {
        let s = store(8);
        let mut buf = Vec::new();
        let r: Result<_, ()> = s.update(b"c", &mut buf, |old, out| {
            assert!(old.is_none());
            out.extend_from_slice(b"1");
            Ok(7)
        });
        assert_eq!(r.unwrap().0, 7);
        let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
        let mut m = s.lock_keys(keys.iter().copied());
        m.set(b"a", b"x").unwrap();
        m.set(b"b", b"y").unwrap();
        assert_eq!(m.get(b"c", |v| v.map(<[u8]>::to_vec)), Some(b"1".to_vec()));
        drop(m);
        assert_eq!(
            s.scan(b""),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(s.scan(b"b"), vec![b"b".to_vec()]);
        s.clear();
        assert_eq!((s.len(), s.root()), (0, ZERO));
    }

    #[test]
    fn exclusive_runs_store_calls_on_held_shards_and_excludes_others() {
        let s = std::sync::Arc::new(store(8));
        s.set(b"a", b"1");
        let (tx, rx) = std::sync::mpsc::channel();
        let other = s.clone();
        s.exclusive(|| {
            // Every store call works inside, including multi-shard and
            // whole-store ones, and a nested call.
            s.set(b"b", b"2");
            let keys: [&[u8]; 3] = [b"a", b"b", b"zz"];
            let mut m = s.lock_keys(keys.iter().copied());
            assert!(m.set(b"zz", b"3").is_some());
            drop(m);
            s.exclusive(|| assert_eq!(s.len(), 3));
            assert_eq!(s.scan(b"").len(), 3);
            // Another thread cannot get in meanwhile.
            let t = std::thread::spawn(move || {
                other.set(b"late", b"x");
                tx.send(()).unwrap();
            });
            assert!(
                rx.recv_timeout(std::time::Duration::from_millis(100))
                    .is_err()
            );
            t
        })
        .join()
        .unwrap();
        assert!(rx.try_recv().is_ok());
        assert_eq!(s.len(), 4);
        // A second store on the same thread is not affected by the first's
        // hold.
        let t = store(4);
        s.exclusive(|| t.set(b"k", b"v"));
        assert!(t.contains(b"k"));
    }

    #[test]
    fn bucket_versions_lists_the_bucket() {
        let s = store(4);
        s.set(b"k1", b"v");
        let b = s.bucket_of_key(b"k1");
        let list = s.bucket_versions(b).unwrap();
        assert!(list.iter().any(|(k, _)| k == b"k1"));
        assert!(s.bucket_versions(1 << 16).is_none());
        assert!(s.node_digest(5, 0).is_none());
    }

    #[test]
    fn remove_if_and_replace_if_keep_tree_and_counters_exact() {
        let s = store(4);
        let v1 = s.set(b"a", b"12");
        let vb = s.set(b"b", b"x");
        s.delete(b"b");
        let vt = s.entry(b"b").unwrap().version;
        assert_ne!(vb, vt);
        let only_b = s.root();
        let other = Version::new(v1.hlc + 1, v1.node);
        assert!(!s.remove_if(b"a", other), "wrong version: unchanged");
        assert!(s.remove_if(b"a", v1));
        assert!(!s.remove_if(b"a", v1), "already gone");
        assert_eq!((s.len(), s.tombstones(), s.usage()), (0, 1, (0, 0)));
        assert_ne!(s.root(), only_b);
        assert!(s.remove_if(b"b", vt));
        assert_eq!((s.tombstones(), s.root()), (0, ZERO));
        // replace_if may go back to an older version, and advances the clock.
        let hi = Version::new(u64::MAX >> 1, 9);
        assert!(s.replace_if(b"c", None, Some(b"new"), hi));
        assert!(s.replace_if(b"c", Some(hi), Some(b"old"), Version::new(5, 9)));
        assert_eq!(
            s.get(b"c", |v| v.map(<[u8]>::to_vec)),
            Some(b"old".to_vec())
        );
        assert!(s.set(b"c", b"local") > hi);
        let mut seen = Vec::new();
        assert!(s.for_each_in_bucket(s.bucket_of_key(b"c"), |r| seen.push(r.key().to_vec())));
        assert!(seen.contains(&b"c".to_vec()));
        assert!(!s.for_each_in_bucket(1 << 16, |_| {}));
        assert_eq!(
            s.with_entry(b"c", |e| e.map(|(v, _)| v.map(<[u8]>::to_vec))),
            Some(Some(b"local".to_vec()))
        );
        assert!(s.with_entry(b"zz", |e| e.is_none()));
    }

    #[test]
    fn oldest_tombstone_is_tracked_and_exact_after_collection() {
        let s = store(4);
        assert_eq!(s.oldest_tombstone_ms(), None);
        let old = now_millis() - 500;
        s.apply(b"t", None, Version::new(old << 16, 1));
        assert_eq!(s.oldest_tombstone_ms(), Some(old));
        s.set(b"u", b"1");
        let newer = s.delete(b"u").unwrap().millis();
        assert_eq!(s.oldest_tombstone_ms(), Some(old));
        // The old tombstone is overwritten: exact again after a pass.
        s.apply(b"t", Some(b"back"), Version::new((old + 1) << 16, 1));
        s.collect_tombstones(now_millis());
        assert_eq!(s.oldest_tombstone_ms(), Some(newer));
        s.clear();
        assert_eq!(s.oldest_tombstone_ms(), None);
        s.collect_tombstones(now_millis());
        assert_eq!(s.oldest_tombstone_ms(), None);
    }

    #[test]
    fn scan_step_returns_each_live_key_once_and_terminates() {
        for shards in [1, 16] {
            let s = store(shards);
            let mut cursor = 0;
            let mut calls = 0;
            // Empty store: completes quickly.
            loop {
                cursor = s.scan_step(cursor, 10, |_| panic!("no keys"));
                calls += 1;
                if cursor == 0 {
                    break;
                }
            }
            assert!(calls <= 1 + (1 << 16) / 4096, "{calls}");
            for i in 0..5000 {
                s.set(format!("k{i}").as_bytes(), b"v");
            }
            s.delete(b"k7");
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                let mut batch = 0;
                cursor = s.scan_step(cursor, 100, |k| {
                    batch += 1;
                    seen.push(k.to_vec());
                });
                assert!(batch < 100 + 64, "a step does bounded work: {batch}");
                if cursor == 0 {
                    break;
                }
            }
            let n = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!((n, seen.len()), (4999, 4999));
            assert!(!seen.contains(&b"k7".to_vec()));
            assert_eq!(s.scan_step(u64::MAX, 10, |_| panic!()), 0);
            assert_eq!(s.scan_step(1 << 16, 10, |_| panic!()), 0);
        }
    }

    /// Deterministic data for [`root_values_are_pinned`]: values of many
    /// lengths (empty included), tombstones, and overwrites that change
    /// the value size.
    fn pinned_store(shards: usize, tree_bits: u32) -> Store {
        let s = Store::new(StoreOptions {
            shards,
            tree_bits,
            node_id: "pin".into(),
            // Never expire: tombstones with old versions stay leaves.
            tombstone_ttl_ms: u64::MAX,
        })
        .unwrap();
        for i in 0..3000u64 {
            let key = format!("pin:{i}");
            let value = match i % 7 {
                0 => None,
                1 => Some(Vec::new()),
                n => Some(vec![b'a' + n as u8; (i % 300) as usize]),
            };
            let v = Version::new(1_000_000 + i * 13, i % 5);
            s.apply(key.as_bytes(), value.as_deref(), v);
        }
        for i in (0..3000u64).step_by(11) {
            let key = format!("pin:{i}");
            let value = (i % 3 != 0).then_some(&b"overwritten"[..]);
            s.apply(key.as_bytes(), value, Version::new(2_000_000 + i, 7));
        }
        s
    }

    /// The tree's values are part of the wire protocol (peers compare
    /// them): these were computed by the store before leaf digests were
    /// stored in records and hashed lazily (commit df02bef), and must
    /// never change for the same data.
    #[test]
    fn root_values_are_pinned() {
        const ROOT_16: &str = "c56b8cacac2eae36ee8abc13049c539ad3ae507a9eef55d984871e2634311892";
        const NODE_16: &str = "cbf9c1f439f6f7feb5d91981eed2bf0e723244b6027d19cbd4a78df594327ade";
        const PREFIX: &str = "7a8ec91ef271c9fe715e48cca0ff85c8fdfc65a29313a6a064b95339cfa46eef";
        const ROOT_8: &str = "e14e5d7bb21130c9d7a4e2412dcb2e5618b404a160496c5abb57dc4b1d55cb9c";
        for shards in [1, 64] {
            let s = pinned_store(shards, 16);
            assert_eq!(merkle::hex(&s.root()), ROOT_16, "{shards} shards");
            assert_eq!(merkle::hex(&s.node_digest(2, 77).unwrap()), NODE_16);
            assert_eq!(merkle::hex(&s.prefix_digest(b"pin:1")), PREFIX);
        }
        assert_eq!(merkle::hex(&pinned_store(4, 8).root()), ROOT_8);
    }

    /// A fresh store holding exactly the records of `s` (tombstones
    /// included, same versions), written in one pass.
    fn rebuilt(s: &Store) -> Store {
        let fresh = Store::new(StoreOptions {
            shards: 16,
            tree_bits: s.shape().bits,
            node_id: "fresh".into(),
            tombstone_ttl_ms: u64::MAX,
        })
        .unwrap();
        for i in 0..s.shard_count() {
            s.for_each_in_shard(i, |r| {
                fresh.apply(r.key(), r.value(), r.version());
            });
        }
        assert_eq!(fresh.stale_records(), fresh.len() + fresh.tombstones());
        fresh
    }

    fn assert_same_tree(s: &Store, why: &str) {
        let fresh = rebuilt(s);
        assert_eq!(s.root(), fresh.root(), "{why}");
        assert_eq!(s.stale_records(), 0, "{why}: a root read refreshes all");
        let level = s.shape().depth().min(2);
        for i in 0..s.shape().nodes_at(level) {
            assert_eq!(
                s.node_digest(level, i),
                fresh.node_digest(level, i),
                "{why}"
            );
        }
    }

    #[test]
    fn writes_hash_nothing_and_reads_hash_each_stale_record_once() {
        let s = store(4);
        for i in 0..100 {
            s.set(format!("k{i}").as_bytes(), b"v");
        }
        assert_eq!(s.stale_records(), 100);
        // Rewrites of a stale record add no work.
        for i in 0..10 {
            s.set(format!("k{i}").as_bytes(), b"longer value");
        }
        assert_eq!(s.refresh_digests(), 100);
        assert_eq!((s.stale_records(), s.refresh_digests()), (0, 0));
        assert_eq!(s.leaves_hashed(), 100);
        for _ in 0..3 {
            for i in 0..7 {
                s.set(format!("k{i}").as_bytes(), b"w");
            }
        }
        s.delete(b"k50");
        assert_eq!(s.stale_records(), 8);
        // Reading one bucket refreshes only the buckets below that node.
        let b = s.bucket_of_key(b"k3");
        let in_bucket = (0..7).filter(|i| s.bucket_of_key(format!("k{i}").as_bytes()) == b);
        let expect = 8 - in_bucket.count();
        let _ = s.node_digest(s.shape().depth(), b);
        assert_eq!(s.stale_records(), expect);
        assert_same_tree(&s, "after partial refresh");
    }

    #[test]
    fn paced_refresh_pauses_between_chunks_and_can_stop() {
        let s = store(1);
        for i in 0..(3 * REFRESH_CHUNK + 10) {
            s.set(format!("k{i}").as_bytes(), b"v");
        }
        assert_eq!(s.refresh_digests_paced(|| false), REFRESH_CHUNK);
        assert_eq!(s.stale_records(), 2 * REFRESH_CHUNK + 10);
        let mut pauses = 0;
        let n = s.refresh_digests_paced(|| {
            pauses += 1;
            true
        });
        assert_eq!(
            (n, pauses, s.stale_records()),
            (2 * REFRESH_CHUNK + 10, 2, 0)
        );
        assert_same_tree(&s, "paced");
    }

    #[test]
    fn stale_records_give_the_root_of_a_freshly_built_store() {
        let s = Store::new(StoreOptions {
            shards: 8,
            tree_bits: 8,
            node_id: "n1".into(),
            tombstone_ttl_ms: 1000,
        })
        .unwrap();
        let now = now_millis();
        let key = |i: u64| format!("key{i}").into_bytes();
        for i in 0..600u64 {
            s.set(&key(i), &vec![b'x'; (i % 40) as usize]);
        }
        assert_same_tree(&s, "inserts");
        // Half the records hashed, half stale, then each kind of change.
        for i in (0..600u64).step_by(2) {
            s.set(&key(i), &vec![b'y'; (i % 40) as usize]); // in place
        }
        assert_same_tree(&s, "overwrite in place");
        for i in (0..600u64).step_by(3) {
            s.set(&key(i), &vec![b'z'; 50 + (i % 7) as usize]); // reallocated
        }
        let _ = s.node_digest(2, 5); // some records hashed, most stale
        for i in (0..600u64).step_by(5) {
            s.delete(&key(i)); // value -> tombstone, reallocated
        }
        assert_same_tree(&s, "realloc + delete");
        // Expired tombstones, stale and hashed ones, collected.
        let expire = |i: u64| {
            let expected = s.entry(&key(i)).map(|e| e.version);
            let old = Version::new((now - 5000) << 16, 3);
            assert!(s.replace_if(&key(i), expected, None, old));
        };
        for i in (1..600u64).step_by(7) {
            expire(i);
        }
        let _ = s.root();
        assert_eq!(s.collect_tombstones(now_millis()).0, 86);
        assert_same_tree(&s, "tombstone GC (hashed)");
        for i in (2..600u64).step_by(7) {
            expire(i);
        }
        assert_eq!(s.collect_tombstones(now_millis()).0, 86);
        assert_same_tree(&s, "tombstone GC (stale)");
        // remove_if of stale and hashed records, replace_if (older versions
        // allowed, with reallocation).
        for i in (3..600u64).step_by(11) {
            if let Some(e) = s.entry(&key(i)) {
                assert!(s.remove_if(&key(i), e.version));
            }
            if i % 2 == 0 {
                let _ = s.root();
            }
        }
        for i in (4..600u64).step_by(13) {
            let expected = s.entry(&key(i)).map(|e| e.version);
            let value = (i % 2 == 0).then(|| vec![b'r'; (i % 90) as usize]);
            assert!(s.replace_if(&key(i), expected, value.as_deref(), Version::new(5, 9)));
        }
        assert_same_tree(&s, "remove_if + replace_if");
        // Clearing drops stale records and marks.
        s.set(b"before clear", b"1");
        s.clear();
        assert_eq!((s.root(), s.stale_records()), (ZERO, 0));
        s.set(b"after clear", b"2");
        assert_same_tree(&s, "clear");
        s.set(b"more", b"3");
        s.clear_versioned();
        s.set(b"after versioned clear", b"4");
        assert_same_tree(&s, "clear_versioned");
        assert_eq!(s.prefix_digest(b""), rebuilt(&s).prefix_digest(b""));
    }

    /// Big buckets (16 buckets, 2 shards): refreshes take several chunks
    /// per bucket and resume through the cursor while writers keep
    /// changing, inserting into and removing from the same buckets.
    #[test]
    fn chunked_refresh_under_concurrent_writers_ends_exact() {
        let s = Store::new(StoreOptions {
            shards: 2,
            tree_bits: 4,
            node_id: "n1".into(),
            tombstone_ttl_ms: 60_000,
        })
        .unwrap();
        for i in 0..6000 {
            s.set(format!("k{i}").as_bytes(), b"initial");
        }
        assert!(s.stale_records() > 8 * REFRESH_CHUNK);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let roots = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|t| {
            let writers: Vec<_> = (0..3u64)
                .map(|w| {
                    let (s, roots) = (&s, &roots);
                    t.spawn(move || {
                        // At least 3000 writes each, and on until a root has
                        // been read meanwhile (a busy machine may not run
                        // the reader at once).
                        for n in 0..3_000_000u64 {
                            if n >= 3000 && roots.load(Relaxed) > 0 {
                                break;
                            }
                            let i = (n * 7919 + w * 1013) % 8000;
                            let k = format!("k{i}");
                            match n % 5 {
                                0 => {
                                    s.delete(k.as_bytes());
                                }
                                1 => {
                                    if let Some(e) = s.entry(k.as_bytes()) {
                                        s.remove_if(k.as_bytes(), e.version);
                                    }
                                }
                                2 => {
                                    s.set(k.as_bytes(), &vec![b'a'; (n % 64) as usize]);
                                }
                                _ => {
                                    s.set(k.as_bytes(), b"fixed-size");
                                }
                            }
                        }
                    })
                })
                .collect();
            t.spawn(|| {
                while !stop.load(Relaxed) {
                    let _ = s.root();
                    roots.fetch_add(1, Relaxed);
                }
            });
            t.spawn(|| {
                while !stop.load(Relaxed) {
                    s.refresh_digests();
                    let _ = s.node_digest(1, 3);
                }
            });
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Relaxed);
        });
        assert!(roots.load(Relaxed) > 0);
        assert_same_tree(&s, "after concurrent writers");
    }

    #[test]
    fn prefix_digest_tracks_matching_live_entries() {
        let s = store(4);
        assert_eq!(s.prefix_digest(b"user:"), ZERO);
        s.set(b"user:1", b"a");
        let d1 = s.prefix_digest(b"user:");
        s.set(b"other", b"b");
        assert_eq!(s.prefix_digest(b"user:"), d1);
        s.set(b"user:2", b"c");
        assert_ne!(s.prefix_digest(b"user:"), d1);
    }
}
