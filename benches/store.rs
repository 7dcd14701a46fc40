//! Store operations on a 100,000-key store (16-byte keys, 32-byte values):
//! GET hit, overwrite with a same-size value (the in-place path), insert of
//! fresh keys, LWW apply, and the executor path for a text GET; and the
//! same writes with an expiry (`SET … EX`: the record carries it and the
//! shard's expiry index moves its entry on every overwrite).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use merklekv::store::{Store, Version, now_millis};

const KEYS: usize = 100_000;

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

fn loaded() -> Store {
    let s = Store::with_defaults("bench");
    for i in 0..KEYS {
        s.set(&key(i), &[b'v'; 32]);
    }
    s
}

fn bench(c: &mut Criterion) {
    let store = loaded();
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let mut g = c.benchmark_group("store");

    let mut i = 0;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.get(&keys[i], |v| black_box(v.map(<[u8]>::len)))
        })
    });

    let mut i = 0;
    g.bench_function("set_overwrite_same_size", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.set(&keys[i], black_box(&[b'w'; 32]))
        })
    });

    g.bench_function("set_insert_fresh", |b| {
        b.iter_batched(
            || Store::with_defaults("bench"),
            |s| {
                for k in &keys[..1000] {
                    s.set(k, &[b'v'; 32]);
                }
                s
            },
            BatchSize::LargeInput,
        )
    });

    // SET … EX 3600 on a store whose keys all have an expiry: every write
    // stores a new, later expiry (a new index position).
    let expiring = Store::with_defaults("bench");
    let hour = now_millis() + 3_600_000;
    for (i, k) in keys.iter().enumerate() {
        expiring.db().set_expiring(k, &[b'v'; 32], hour + i as u64);
    }
    let (mut i, mut t) = (0, hour + KEYS as u64);
    g.bench_function("set_ex_overwrite_same_size", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            t += 1;
            expiring
                .db()
                .set_expiring(&keys[i], black_box(&[b'w'; 32]), t)
        })
    });

    g.bench_function("set_ex_insert_fresh", |b| {
        b.iter_batched(
            || Store::with_defaults("bench"),
            |s| {
                for (j, k) in keys[..1000].iter().enumerate() {
                    s.db().set_expiring(k, &[b'v'; 32], hour + j as u64);
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    drop(expiring);

    let mut hlc = u64::MAX / 2;
    let mut i = 0;
    g.bench_function("apply_newer", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            hlc += 1;
            store.apply(&keys[i], Some(&[b'r'; 32]), Version::new(hlc, 42))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
