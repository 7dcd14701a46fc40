//! What the Merkle tree costs a write, what a root costs after writes, and
//! how long a refresh holds shard locks against writers.
//!
//! Write paths over the same records (16-byte keys, 32-byte values, one
//! uncontended lock, the store's thin `Record`s in a hashbrown table):
//!
//! * `raw`: the table alone — what a write would cost without a tree;
//! * `raw_buckets`: the store's layout without the tree: 64 shard
//!   mutexes over 2^16 per-bucket tables (what makes "the records of a
//!   bucket" a lookup for anti-entropy), the same placement hashes,
//!   table-header prefetch and clock read as `Store::set`;
//! * `store`: the real `Store::set` (placement hash, HLC tick, record
//!   flagged stale, bucket bit set: lazy leaf digests, no SHA-256);
//! * `eager`: a model of the store before lazy leaves: on overwrite the
//!   *old* leaf's SHA-256 recomputed (no digest stored), the new leaf's
//!   hashed, bucket XOR and dirty bits;
//! * `cached_leaf`: a model that keeps each record's leaf digest and
//!   hashes only the new leaf on a write (eager, one SHA-256).
//!
//! Plus `leaf_digest` alone; `root` after one write, and after 10,000
//! distinct writes, into a store of 1,000,000 keys (the deferred hashing a
//! reader pays). Run: `cargo bench --bench merkle`. With
//! `MERKLE_INTERLEAVED=1` it instead measures the overwrite variants in
//! interleaved rounds (robust to load changes on a shared machine) and
//! prints a table. With `MERKLE_REFRESH=1` it overwrites all 1,000,000
//! keys (all stale) and measures a writer thread's per-write latency while
//! another thread reads the root (which refreshes every record in
//! chunks), against the same writer with no refresh running.

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BatchSize, Criterion, criterion_group};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use merklekv::store::merkle::{self, Subtree, bucket_of, key_hash, leaf_digest};
use merklekv::store::{Record, Store, StoreOptions, Version};

const PREFILL: usize = 100_000;
const INSERTS: usize = 10_000;

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

const VALUE: &[u8; 32] = b"value-0123456789abcdef0123456789";

/// The table without a tree.
struct Raw {
    table: Mutex<HashTable<Record>>,
    hasher: ahash::RandomState,
}

impl Raw {
    fn new() -> Raw {
        Raw {
            table: Mutex::new(HashTable::new()),
            hasher: ahash::RandomState::new(),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], v: Version) {
        let h = self.hasher.hash_one(key);
        let mut t = self.table.lock().unwrap();
        match t.entry(h, |r| r.key() == key, |r| self.hasher.hash_one(r.key())) {
            Entry::Occupied(mut o) => o.get_mut().replace(Some(value), v),
            Entry::Vacant(e) => {
                e.insert(Record::new(key, Some(value), v));
            }
        }
    }
}

/// The store's sharded per-bucket layout without any Merkle work.
struct RawBuckets {
    shards: Vec<Mutex<Box<[HashTable<Record>]>>>,
    /// Each shard's table array (prefetch hints only, as in `Store`).
    hints: Vec<*const HashTable<Record>>,
    hasher: ahash::RandomState,
}

impl RawBuckets {
    fn new() -> RawBuckets {
        let tables: Vec<Box<[HashTable<Record>]>> = (0..64)
            .map(|_| (0..1024).map(|_| HashTable::new()).collect())
            .collect();
        RawBuckets {
            hints: tables.iter().map(|t| t.as_ptr()).collect(),
            shards: tables.into_iter().map(Mutex::new).collect(),
            hasher: ahash::RandomState::new(),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], v: Version) {
        let bucket = bucket_of(key_hash(key), 16);
        let h = self.hasher.hash_one(key);
        merkle::prefetch(self.hints[bucket >> 10].wrapping_add(bucket & 1023));
        let v = Version::new(merklekv::store::now_millis() << 16, v.node);
        let mut g = self.shards[bucket >> 10].lock().unwrap();
        let t = &mut g[bucket & 1023];
        match t.entry(h, |r| r.key() == key, |r| self.hasher.hash_one(r.key())) {
            Entry::Occupied(mut o) => o.get_mut().replace(Some(value), v),
            Entry::Vacant(e) => {
                e.insert(Record::new(key, Some(value), v));
            }
        }
    }
}

/// A record and its leaf digest.
type CachedSlot = (Record, [u8; 32]);

/// The table plus a tree, keeping each record's leaf digest (eager).
struct Cached {
    inner: Mutex<(HashTable<CachedSlot>, Subtree)>,
    hasher: ahash::RandomState,
}

impl Cached {
    fn new() -> Cached {
        Cached {
            inner: Mutex::new((HashTable::new(), Subtree::new(16))),
            hasher: ahash::RandomState::new(),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], v: Version) {
        let bucket = bucket_of(key_hash(key), 16);
        let h = self.hasher.hash_one(key);
        let leaf = leaf_digest(key, Some(value), v);
        let mut g = self.inner.lock().unwrap();
        let (t, tree) = &mut *g;
        match t.entry(h, |r| r.0.key() == key, |r| self.hasher.hash_one(r.0.key())) {
            Entry::Occupied(mut o) => {
                let (rec, d) = o.get_mut();
                tree.toggle(bucket, d);
                rec.replace(Some(value), v);
                *d = leaf;
            }
            Entry::Vacant(e) => {
                e.insert((Record::new(key, Some(value), v), leaf));
            }
        }
        tree.toggle(bucket, &leaf);
    }
}

/// The store's write path before lazy leaves: no digest kept, so an
/// overwrite rehashes the old leaf and hashes the new one.
struct Eager {
    inner: Mutex<(HashTable<Record>, Subtree)>,
    hasher: ahash::RandomState,
}

impl Eager {
    fn new() -> Eager {
        Eager {
            inner: Mutex::new((HashTable::new(), Subtree::new(16))),
            hasher: ahash::RandomState::new(),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], v: Version) {
        let bucket = bucket_of(key_hash(key), 16);
        let h = self.hasher.hash_one(key);
        let mut g = self.inner.lock().unwrap();
        let (t, tree) = &mut *g;
        let new_leaf = leaf_digest(key, Some(value), v);
        match t.entry(h, |r| r.key() == key, |r| self.hasher.hash_one(r.key())) {
            Entry::Occupied(mut o) => {
                let rec = o.get_mut();
                let old_leaf = leaf_digest(key, rec.value(), rec.version());
                rec.replace(Some(value), v);
                tree.toggle(bucket, &old_leaf);
            }
            Entry::Vacant(e) => {
                e.insert(Record::new(key, Some(value), v));
            }
        }
        tree.toggle(bucket, &new_leaf);
    }
}

fn store() -> Store {
    Store::new(StoreOptions {
        shards: 64,
        tree_bits: 16,
        node_id: "bench".into(),
        tombstone_ttl_ms: 3_600_000,
    })
    .unwrap()
}

fn writes(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..PREFILL).map(key).collect();
    let v = Version::new(1 << 40, 1);

    let mut g = c.benchmark_group("overwrite");
    let raw = Raw::new();
    let buckets = RawBuckets::new();
    let s = store();
    let cached = Cached::new();
    let eager = Eager::new();
    for k in &keys {
        raw.set(k, VALUE, v);
        buckets.set(k, VALUE, v);
        s.set(k, VALUE);
        cached.set(k, VALUE, v);
        eager.set(k, VALUE, v);
    }
    let mut i = 0;
    g.bench_function("raw", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            raw.set(black_box(&keys[i]), VALUE, v)
        })
    });
    g.bench_function("raw_buckets", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            buckets.set(black_box(&keys[i]), VALUE, v)
        })
    });
    g.bench_function("store", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            s.set(black_box(&keys[i]), VALUE)
        })
    });
    g.bench_function("cached_leaf", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            cached.set(black_box(&keys[i]), VALUE, v)
        })
    });
    g.bench_function("eager", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            eager.set(black_box(&keys[i]), VALUE, v)
        })
    });
    g.finish();

    // Inserts of new keys, INSERTS per iteration into an empty structure.
    let mut g = c.benchmark_group("insert_10k");
    g.sample_size(20);
    g.bench_function("raw", |b| {
        b.iter_batched(
            Raw::new,
            |r| {
                for k in &keys[..INSERTS] {
                    r.set(k, VALUE, v);
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("store", |b| {
        b.iter_batched(
            store,
            |s| {
                for k in &keys[..INSERTS] {
                    s.set(k, VALUE);
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("cached_leaf", |b| {
        b.iter_batched(
            Cached::new,
            |c| {
                for k in &keys[..INSERTS] {
                    c.set(k, VALUE, v);
                }
                c
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("eager", |b| {
        b.iter_batched(
            Eager::new,
            |c| {
                for k in &keys[..INSERTS] {
                    c.set(k, VALUE, v);
                }
                c
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("parts");
    g.bench_function("clock_now_millis", |b| b.iter(merklekv::store::now_millis));
    g.bench_function("placement_key_hash", |b| {
        b.iter(|| key_hash(black_box(&keys[1])))
    });
    g.finish();

    let mut g = c.benchmark_group("leaf_digest");
    for len in [32usize, 256, 1024] {
        let val = vec![b'v'; len];
        g.bench_function(format!("value_{len}"), |b| {
            b.iter(|| leaf_digest(black_box(&keys[1]), Some(black_box(&val)), v))
        });
    }
    g.finish();
}

fn root(c: &mut Criterion) {
    let s = store();
    for i in 0..1_000_000 {
        s.set(&key(i), VALUE);
    }
    black_box(s.root());
    let keys: Vec<Vec<u8>> = (0..1024).map(|i| key(i * 977)).collect();
    let mut i = 0;
    let mut g = c.benchmark_group("root_1M_keys");
    g.bench_function("after_one_write", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            s.set(&keys[i], VALUE);
            black_box(s.root())
        })
    });
    g.bench_function("unchanged", |b| b.iter(|| black_box(s.root())));
    // The deferred work: 10,000 distinct keys overwritten (not timed),
    // then one root (timed), which hashes each of them once.
    let mut round = 0usize;
    g.sample_size(20);
    g.bench_function("after_10k_distinct_writes", |b| {
        b.iter_batched(
            || {
                round += 1;
                for j in 0..10_000 {
                    s.set(&key((j * 97 + round) % 1_000_000), VALUE);
                }
            },
            |()| black_box(s.root()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Overwrite cost of each variant, measured in interleaved rounds so that
/// load changes on a shared machine hit every variant alike; prints the
/// minimum and median ns per write over the rounds.
fn interleaved() {
    const ROUNDS: usize = 15;
    const OPS: usize = 200_000;
    let keys: Vec<Vec<u8>> = (0..PREFILL).map(key).collect();
    let v = Version::new(1 << 40, 1);
    let (raw, s, cached, eager) = (Raw::new(), store(), Cached::new(), Eager::new());
    let buckets = RawBuckets::new();
    for k in &keys {
        raw.set(k, VALUE, v);
        buckets.set(k, VALUE, v);
        s.set(k, VALUE);
        cached.set(k, VALUE, v);
        eager.set(k, VALUE, v);
    }
    let names = [
        "raw",
        "raw_buckets",
        "store",
        "cached_leaf",
        "eager",
        "leaf_digest",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut i = 0;
    for _ in 0..ROUNDS {
        for (n, out) in samples.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            for _ in 0..OPS {
                i = (i + 7919) % PREFILL;
                let k = black_box(&keys[i]);
                match n {
                    0 => raw.set(k, VALUE, v),
                    1 => buckets.set(k, VALUE, v),
                    2 => {
                        s.set(k, VALUE);
                    }
                    3 => cached.set(k, VALUE, v),
                    4 => eager.set(k, VALUE, v),
                    _ => {
                        black_box(leaf_digest(k, Some(VALUE), v));
                    }
                }
            }
            out.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        }
    }
    println!(
        "| overwrite, 100k keys | min ns/op | median ns/op | median - raw | median - raw_buckets |"
    );
    println!("|---|---:|---:|---:|---:|");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw_median = median(&mut samples[0].clone());
    let buckets_median = median(&mut samples[1].clone());
    for (name, v) in names.iter().zip(samples.iter_mut()) {
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        let med = median(v);
        let (a, b) = if *name == "leaf_digest" {
            ("—".to_string(), "—".to_string())
        } else {
            (
                format!("{:+.0}", med - raw_median),
                format!("{:+.0}", med - buckets_median),
            )
        };
        println!("| {name} | {min:.0} | {med:.0} | {a} | {b} |");
    }
}

/// Per-write latency of one writer thread for `dur`, optionally while
/// `reader` runs on another thread; returns the histogram (ns) and what
/// the reader returned.
fn writer_latency<R: Send>(
    s: &Store,
    keys: &[Vec<u8>],
    dur: std::time::Duration,
    reader: Option<&(dyn Fn() -> R + Sync)>,
) -> (hdrhistogram::Histogram<u64>, Option<R>) {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|t| {
        let r = reader.map(|f| {
            let done = &done;
            t.spawn(move || {
                let r = f();
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                r
            })
        });
        let start = std::time::Instant::now();
        let mut i = 0;
        while start.elapsed() < dur
            || (r.is_some() && !done.load(std::sync::atomic::Ordering::Relaxed))
        {
            i = (i + 7919) % keys.len();
            let t0 = std::time::Instant::now();
            s.set(&keys[i], VALUE);
            hist.record(t0.elapsed().as_nanos().max(1) as u64).unwrap();
        }
        r.map(|h| h.join().unwrap())
    });
    (hist, out)
}

/// Writer latency while a root read refreshes 1,000,000 stale records.
fn refresh_under_writers() {
    const N: usize = 1_000_000;
    let s = store();
    let keys: Vec<Vec<u8>> = (0..N).map(key).collect();
    for k in &keys {
        s.set(k, VALUE);
    }
    let row = |name: &str, h: &hdrhistogram::Histogram<u64>, extra: &str| {
        let over = |ns: u64| h.count_between(ns, h.max().max(ns));
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {extra} |",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.999),
            h.max(),
            over(100_000),
            over(1_000_000),
            over(5_000_000),
        );
    };
    println!(
        "| writer (1 thread, 64 shards) | writes | p50 ns | p99.9 ns | max ns \
         | > 0.1 ms | > 1 ms | > 5 ms | other thread |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for round in 0..3 {
        // Everything stale: the root read must rehash 1,000,000 records.
        black_box(s.root());
        for k in &keys {
            s.set(k, VALUE);
        }
        let stale = s.stale_records();
        let read = || {
            let t = std::time::Instant::now();
            black_box(s.root());
            t.elapsed()
        };
        let (h, took) = writer_latency(&s, &keys, std::time::Duration::ZERO, Some(&read));
        let took = took.unwrap();
        row(
            &format!("root() over {stale} stale, round {round}"),
            &h,
            &format!("root() took {:.0} ms", took.as_secs_f64() * 1e3),
        );
        let (h, _) = writer_latency::<()>(&s, &keys, took, None);
        row("alone, same duration", &h, "none");
        // Control: the same CPU competition without any lock in common.
        let hog = || {
            let t = std::time::Instant::now();
            while t.elapsed() < took {
                for _ in 0..256 {
                    black_box(leaf_digest(&keys[1], Some(VALUE), Version::new(1, 1)));
                }
            }
        };
        let (h, _) = writer_latency(&s, &keys, took, Some(&hog));
        row("with a SHA-256 loop, same duration", &h, "hashing, no lock");
    }
}

criterion_group!(benches, writes, root);

fn main() {
    if std::env::var_os("MERKLE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    if std::env::var_os("MERKLE_REFRESH").is_some() {
        refresh_under_writers();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
