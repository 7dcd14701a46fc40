//! Store operations on a 100,000-key store (16-byte keys, 32-byte values):
//! GET hit, overwrite with a same-size value (the in-place path), insert of
//! fresh keys, LWW apply, and the executor path for a text GET; and the
//! same operations on keys with an expiry, side by side with the plain
//! ones (`SET … EX` vs `SET`, issue 14): a GET of a key with an expiry, an
//! overwrite that stores a new, later expiry (`SET k v EX 3600` again), an
//! overwrite that stores an earlier one, and inserts with an expiry.
//!
//! Instruction counts (repeatable on a loaded machine): with
//! `STORE_BENCH_OPS=<n>` the binary skips criterion and runs each case
//! `n` times in its own `ops_<case>` function, for
//! `valgrind --tool=callgrind` and `callgrind_annotate --inclusive=yes`
//! (perf/expiry.md).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group};
use merklekv::store::{Store, Version, now_millis};

const KEYS: usize = 100_000;
/// Keys per `*_insert_fresh` iteration.
const FRESH: usize = 1000;

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

/// The stores and keys every case runs on.
struct Fixture {
    keys: Vec<Vec<u8>>,
    /// Every key, no expiry.
    plain: Store,
    /// Every key, with an expiry an hour from now (all different).
    expiring: Store,
    /// The latest expiry stored so far in `expiring`.
    t: u64,
    /// Stride cursor over the keys.
    i: usize,
    hlc: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        let plain = Store::with_defaults("bench");
        let expiring = Store::with_defaults("bench");
        let hour = now_millis() + 3_600_000;
        for (i, k) in keys.iter().enumerate() {
            plain.set(k, &[b'v'; 32]);
            expiring.db().set_expiring(k, &[b'v'; 32], hour + i as u64);
        }
        Fixture {
            keys,
            plain,
            expiring,
            t: hour + KEYS as u64,
            i: 0,
            hlc: u64::MAX / 2,
        }
    }

    #[inline]
    fn next(&mut self) -> usize {
        self.i = (self.i + 7919) % KEYS;
        self.i
    }

    fn get_hit(&mut self) -> Option<usize> {
        let i = self.next();
        self.plain
            .get(&self.keys[i], |v| black_box(v.map(<[u8]>::len)))
    }

    fn get_hit_ex(&mut self) -> Option<usize> {
        let i = self.next();
        self.expiring
            .get(&self.keys[i], |v| black_box(v.map(<[u8]>::len)))
    }

    fn set_overwrite(&mut self) -> Version {
        let i = self.next();
        self.plain.set(&self.keys[i], black_box(&[b'w'; 32]))
    }

    /// `SET k v EX …` on a key that has an expiry: a new, later one.
    fn set_ex_overwrite(&mut self) -> Version {
        let i = self.next();
        self.t += 1;
        self.expiring
            .db()
            .set_expiring(&self.keys[i], black_box(&[b'w'; 32]), self.t)
            .version
    }

    /// `SET k v PX …` on a key that has an expiry: an earlier one (and
    /// back, so the store stays the same size and within an hour).
    fn set_ex_overwrite_earlier(&mut self) -> Version {
        let i = self.next();
        let e = self.expiring.db().expiry(&self.keys[i]).unwrap_or(self.t);
        self.expiring
            .db()
            .set_expiring(&self.keys[i], black_box(&[b'w'; 32]), e - 1)
            .version
    }

    fn apply_newer(&mut self) -> merklekv::store::Applied {
        let i = self.next();
        self.hlc += 1;
        self.plain
            .apply(&self.keys[i], Some(&[b'r'; 32]), Version::new(self.hlc, 42))
    }

    fn insert_fresh(&self, s: &Store, ttl: bool) {
        let base = now_millis() + 3_600_000;
        for (j, k) in self.keys[..FRESH].iter().enumerate() {
            if ttl {
                s.db().set_expiring(k, &[b'v'; 32], base + j as u64);
            } else {
                s.set(k, &[b'v'; 32]);
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut f = Fixture::new();
    let mut g = c.benchmark_group("store");
    g.bench_function("get_hit", |b| b.iter(|| f.get_hit()));
    g.bench_function("get_hit_ex", |b| b.iter(|| f.get_hit_ex()));
    g.bench_function("set_overwrite_same_size", |b| b.iter(|| f.set_overwrite()));
    g.bench_function("set_ex_overwrite_same_size", |b| {
        b.iter(|| f.set_ex_overwrite())
    });
    g.bench_function("set_ex_overwrite_earlier", |b| {
        b.iter(|| f.set_ex_overwrite_earlier())
    });
    for (name, ttl) in [("set_insert_fresh", false), ("set_ex_insert_fresh", true)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || Store::with_defaults("bench"),
                |s| {
                    f.insert_fresh(&s, ttl);
                    s
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("apply_newer", |b| b.iter(|| f.apply_newer()));
    g.finish();
}

criterion_group!(benches, bench);

macro_rules! ops {
    ($($name:ident => $step:expr),* $(,)?) => {
        $(
            #[inline(never)]
            fn $name(f: &mut Fixture, n: usize) {
                let step: fn(&mut Fixture) = $step;
                for _ in 0..n {
                    step(f);
                }
            }
        )*
        /// Instruction-count mode (module docs): each case `n` times.
        fn run_ops(n: usize) {
            let mut f = Fixture::new();
            $( $name(&mut f, n); )*
            let rounds = (n / FRESH).max(1);
            for ttl in [false, true] {
                let stores: Vec<Store> =
                    (0..rounds).map(|_| Store::with_defaults("bench")).collect();
                if ttl {
                    ops_insert_fresh_ex(&f, &stores);
                } else {
                    ops_insert_fresh(&f, &stores);
                }
            }
        }
    };
}

ops! {
    ops_get_hit => |f| { f.get_hit(); },
    ops_get_hit_ex => |f| { f.get_hit_ex(); },
    ops_set_overwrite => |f| { f.set_overwrite(); },
    ops_set_ex_overwrite => |f| { f.set_ex_overwrite(); },
    ops_set_ex_overwrite_earlier => |f| { f.set_ex_overwrite_earlier(); },
    ops_apply_newer => |f| { f.apply_newer(); },
}

/// [`FRESH`] inserts without an expiry into each of `stores` (empty).
#[inline(never)]
fn ops_insert_fresh(f: &Fixture, stores: &[Store]) {
    for s in stores {
        f.insert_fresh(s, false);
    }
}

/// As [`ops_insert_fresh`], with an expiry.
#[inline(never)]
fn ops_insert_fresh_ex(f: &Fixture, stores: &[Store]) {
    for s in stores {
        f.insert_fresh(s, true);
    }
}

fn main() {
    if let Some(n) = std::env::var("STORE_BENCH_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        run_ops(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
