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
//!   flight, see `refresh.rs`);
//! * `live`/`tombstones`/`bytes` count exactly the records in the tables
//!   (an expired record not yet converted counts as live);
//! * the expiry index holds exactly one entry per live record with an
//!   expiry, at the record's indexed-at time, which is at or before its
//!   expiry (`expiry.rs`);
//! * the clock is ≥ every version stored in the shard.
//!
//! # Module map
//!
//! * `mod.rs` (here): [`Store`], its options, errors and placement of a
//!   key (`slot`: shard, local bucket, table hash);
//! * `shard.rs`: one [`Shard`] — bucket tables, subtree, clock, counters
//!   — and the record-level insert/replace/remove that keep them in step;
//! * `lock.rs`: shard locking: single shards, [`Store::lock_keys`]
//!   ([`MultiLock`]) and [`Store::exclusive`];
//! * `ops.rs`: reads and writes of single keys (local and
//!   last-writer-wins);
//! * `scan.rs`: whole-store and per-bucket visits, counts and clearing;
//! * `expiry.rs`: key expiry (TTL): the per-shard expiry index, the
//!   conversion of expired records into tombstones of their own version,
//!   the active expiry cycle; `expiry_index.rs`: the per-shard index of
//!   expiring records;
//! * `gc.rs`: tombstone expiry and the oldest-tombstone estimate;
//! * `refresh.rs`: lazy leaf digests and every Merkle digest read;
//! * `bound.rs`: the bound on received versions
//!   ([`Store::accept_remote`]) and the count of refusals;
//! * `durable.rs`: what persistence needs (stamps, versioned clear,
//!   snapshot copies).
//!
//! Writes never hash: they flag records stale and the digests are brought
//! up to date lazily, before any digest is read (`refresh.rs`).
//!
//! No lock is held across I/O; multi-key operations lock the shards they
//! touch in ascending order, so they cannot deadlock.

mod bound;
mod durable;
pub mod expiry;
pub mod expiry_index;
mod gc;
mod lock;
pub mod merkle;
mod ops;
pub mod record;
mod refresh;
mod scan;
mod shard;
#[cfg(test)]
mod tests;
pub mod version;

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use hashbrown::HashTable;

use merkle::{Shape, bucket_of, key_hash};
use shard::{Padded, Shard, Slot};

pub use bound::SourceRefusals;
pub use lock::{Db, Exclusive, MultiLock};
pub use ops::{ExpireFlags, Expired};
pub use record::{Encoding, Record};
pub use refresh::{REFRESH_CHUNK, REFRESH_CHUNK_BYTES};
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
    /// `None` for a tombstone (or an expired record).
    pub value: Option<Vec<u8>>,
    pub version: Version,
    /// Absolute expiry (Unix ms), 0 if none.
    pub expires: u64,
}

/// A local write's outcome: its version and the record's expiry (Unix ms,
/// 0 = none), both of which the event and the log carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub version: Version,
    pub expires: u64,
}

impl From<Version> for Written {
    fn from(version: Version) -> Written {
        Written {
            version,
            expires: 0,
        }
    }
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
    /// The bound on received versions and its refusals (`bound.rs`).
    bound: bound::Bound,
    /// Records expired so far (actively or lazily; INFO `expired_keys`).
    expired: AtomicU64,
    /// Shard lock acquisitions that found the lock held and had to wait
    /// (INFO `store_lock_contended`; see `lock::lock`).
    lock_contended: AtomicU64,
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
            bound: bound::Bound::default(),
            expired: AtomicU64::new(0),
            lock_contended: AtomicU64::new(0),
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
}
