//! What the Merkle tree costs a write, and what a root costs after one.
//!
//! Three write paths over the same records (16-byte keys, 32-byte values,
//! one uncontended lock, the store's thin `Record`s in a hashbrown table):
//!
//! * `raw`: the table alone — what a write would cost without a tree;
//! * `store`: the real `Store::set` (placement hash, new leaf SHA-256, and
//!   on overwrite the *old* leaf's SHA-256 recomputed, bucket XOR, dirty
//!   bits);
//! * `cached_leaf`: the alternative design that keeps each record's
//!   32-byte leaf digest next to it, so an overwrite hashes only the new
//!   leaf (at the price of 32 bytes plus slot padding per key);
//! * `lazy_leaf`: the write path of a design that also keeps the leaf
//!   digest but hashes nothing on a write: it marks the record stale and
//!   its bucket dirty, and the leaf is rehashed (once per key, however
//!   often it was written) when a digest is next asked for. The deferred
//!   work is one `leaf_digest` per distinct key written between two reads.
//!
//! Plus `leaf_digest` alone, and `root` after one write into a store of
//! 1,000,000 keys. Run: `cargo bench --bench merkle`. With
//! `MERKLE_INTERLEAVED=1` it instead measures the overwrite variants in
//! interleaved rounds (robust to load changes on a shared machine) and
//! prints a table.

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BatchSize, Criterion, criterion_group};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use merklekv::store::merkle::{Digest, Subtree, bucket_of, key_hash, leaf_digest};
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

/// The table plus a tree, keeping each record's leaf digest.
struct Cached {
    inner: Mutex<(HashTable<(Record, Digest)>, Subtree)>,
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

/// Record, leaf digest as XORed into its bucket, stale flag.
type LazySlot = (Record, Digest, bool);

/// The write path of lazy leaf hashing (see the module docs).
struct Lazy {
    inner: Mutex<(HashTable<LazySlot>, Vec<u64>)>,
    hasher: ahash::RandomState,
}

impl Lazy {
    fn new() -> Lazy {
        Lazy {
            inner: Mutex::new((HashTable::new(), vec![0; (1 << 16) / 64])),
            hasher: ahash::RandomState::new(),
        }
    }

    fn set(&self, key: &[u8], value: &[u8], v: Version) {
        let bucket = bucket_of(key_hash(key), 16);
        let h = self.hasher.hash_one(key);
        let mut g = self.inner.lock().unwrap();
        let (t, dirty) = &mut *g;
        match t.entry(h, |r| r.0.key() == key, |r| self.hasher.hash_one(r.0.key())) {
            Entry::Occupied(mut o) => {
                let (rec, _, stale) = o.get_mut();
                rec.replace(Some(value), v);
                *stale = true;
            }
            Entry::Vacant(e) => {
                e.insert((Record::new(key, Some(value), v), [0; 32], true));
            }
        }
        dirty[bucket / 64] |= 1 << (bucket % 64);
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
    let s = store();
    let cached = Cached::new();
    let lazy = Lazy::new();
    for k in &keys {
        raw.set(k, VALUE, v);
        s.set(k, VALUE);
        cached.set(k, VALUE, v);
        lazy.set(k, VALUE, v);
    }
    let mut i = 0;
    g.bench_function("raw", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            raw.set(black_box(&keys[i]), VALUE, v)
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
    g.bench_function("lazy_leaf", |b| {
        b.iter(|| {
            i = (i + 7919) % PREFILL;
            lazy.set(black_box(&keys[i]), VALUE, v)
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
    g.bench_function("lazy_leaf", |b| {
        b.iter_batched(
            Lazy::new,
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
    let (raw, s, cached, lazy) = (Raw::new(), store(), Cached::new(), Lazy::new());
    for k in &keys {
        raw.set(k, VALUE, v);
        s.set(k, VALUE);
        cached.set(k, VALUE, v);
        lazy.set(k, VALUE, v);
    }
    let names = ["raw", "store", "cached_leaf", "lazy_leaf", "leaf_digest"];
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
                    1 => {
                        s.set(k, VALUE);
                    }
                    2 => cached.set(k, VALUE, v),
                    3 => lazy.set(k, VALUE, v),
                    _ => {
                        black_box(leaf_digest(k, Some(VALUE), v));
                    }
                }
            }
            out.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        }
    }
    println!("| overwrite, 100k keys | min ns/op | median ns/op | median - raw |");
    println!("|---|---:|---:|---:|");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw_median = median(&mut samples[0].clone());
    for (name, v) in names.iter().zip(samples.iter_mut()) {
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        let med = median(v);
        let extra = if *name == "leaf_digest" {
            "—".to_string()
        } else {
            format!("{:+.0}", med - raw_median)
        };
        println!("| {name} | {min:.0} | {med:.0} | {extra} |");
    }
}

criterion_group!(benches, writes, root);

fn main() {
    if std::env::var_os("MERKLE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
