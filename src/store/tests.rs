//! Unit tests of the store as a whole (the parts test their own pieces).

use std::sync::atomic::Ordering::Relaxed;

use super::expiry_index::{COMPACT_SLACK, SLOT_MS};
use super::merkle::{self, ZERO};
use super::refresh::REFRESH_CHUNK;
use super::*;

fn store(shards: usize) -> Store {
    Store::new(StoreOptions {
        shards,
        // Under Miri (docs/fuzzing.md) a 2^16-bucket tree costs minutes
        // per store; the tests that run there do not depend on its size.
        tree_bits: if cfg!(miri) { 8 } else { 16 },
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
        // A TTL far longer than the test: with `store()`'s 1 s, a loaded
        // machine collected some tombstones in one store and not another.
        let s = Store::new(StoreOptions {
            shards,
            tree_bits: 16,
            node_id: "n1".into(),
            tombstone_ttl_ms: 3_600_000,
        })
        .unwrap();
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
fn exclusive_runs_db_calls_on_held_shards_and_excludes_others() {
    let s = std::sync::Arc::new(store(8));
    s.set(b"a", b"1");
    let (tx, rx) = std::sync::mpsc::channel();
    let other = s.clone();
    s.exclusive(|held| {
        // Every keyspace call works on the held shards, including
        // multi-shard and whole-store ones.
        let db = held.db();
        assert!(db.is_exclusive() && !s.db().is_exclusive());
        db.set(b"b", b"2");
        let keys: [&[u8]; 3] = [b"a", b"b", b"zz"];
        let mut m = db.lock_keys(keys.iter().copied());
        assert!(m.set(b"zz", b"3").is_some());
        assert!(m.delete(b"b").is_some());
        drop(m);
        assert_eq!((db.len(), db.tombstones(), db.usage()), (2, 1, (2, 5)));
        assert_eq!(db.scan(b""), vec![b"a".to_vec(), b"zz".to_vec()]);
        assert!(db.version(b"b").is_some() && !db.contains(b"b"));
        let (mut n, mut cursor) = (0, 0);
        loop {
            cursor = db.scan_step(cursor, 10, |_| n += 1);
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(n, 2);
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
    assert_eq!(s.len(), 3);
    // The versioned clear runs on the held shards (MULTI/FLUSHDB/EXEC):
    // stamps before it are at most its floor, writes after it above.
    let before = s.set(b"x", b"1").hlc;
    let floor = s.exclusive(|held| {
        let db = held.db();
        let floor = db.clear_versioned();
        assert!(db.is_empty());
        db.set(b"after", b"1");
        floor
    });
    assert!(floor >= before);
    assert_eq!(s.len(), 1);
    assert!(s.version(b"after").unwrap().hlc > floor);
    assert_same_tree(&s, "after a clear inside a hold");
    // A second store on the same thread is not affected by the first's
    // hold.
    let t = store(4);
    s.exclusive(|_| t.set(b"k", b"v"));
    assert!(t.contains(b"k"));
}

/// Inside a hold, every path that would lock a shard of the held store
/// again (a self-deadlock) panics instead, and the hold is released.
#[test]
fn locking_inside_exclusive_panics_instead_of_deadlocking() {
    type Call = fn(&Store);
    let calls: [(&str, Call); 6] = [
        ("set", |s| {
            s.set(b"k", b"v");
        }),
        ("len", |s| {
            s.len();
        }),
        ("root", |s| {
            s.root();
        }),
        ("clear_versioned", |s| {
            s.clear_versioned();
        }),
        ("apply", |s| {
            s.apply(b"k", None, Version::new(1, 1));
        }),
        ("nested exclusive", |s| s.exclusive(|_| ())),
    ];
    let s = store(4);
    for (what, call) in calls {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.exclusive(|_| call(&s));
        }));
        assert!(r.is_err(), "{what} inside a hold did not panic");
        // The hold was released on unwind: the store works again.
        s.set(b"after", what.as_bytes());
        assert!(s.contains(b"after"));
    }
}

/// A second borrow of one held shard (a `MultiLock` alive while another
/// call on the same shard runs) panics: it can never alias.
#[test]
fn a_held_shard_is_never_borrowed_twice() {
    let s = store(1);
    s.exclusive(|held| {
        let db = held.db();
        let m = db.lock_keys(std::iter::once(&b"a"[..]));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.contains(b"a")));
        assert!(r.is_err());
        drop(m);
        assert!(!db.contains(b"a"));
    });
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
        s.with_entry(b"c", |e| e.map(|(v, ..)| v.map(<[u8]>::to_vec))),
        Some(Some(b"local".to_vec()))
    );
    assert!(s.with_entry(b"zz", |e| e.is_none()));
}

#[test]
fn collection_in_batches_covers_every_bucket_of_a_large_shard() {
    // One shard of 2^16 buckets: a pass takes many batches of
    // GC_BATCH_RECORDS, each under its own lock acquisition.
    let s = store(1);
    let twin = store(1);
    let n = 3 * super::gc::GC_BATCH_RECORDS;
    for i in 0..n {
        let k = format!("k{i}");
        let v = s.set(k.as_bytes(), b"v");
        if i % 3 == 0 {
            twin.apply(k.as_bytes(), Some(b"v"), v);
        }
    }
    for i in (0..n).filter(|i| i % 3 != 0) {
        s.delete(format!("k{i}").as_bytes());
    }
    let (collected, oldest) = s.collect_tombstones(now_millis() + 10_000);
    assert_eq!(collected, n - n / 3);
    assert_eq!(oldest, None);
    assert_eq!(s.oldest_tombstone_ms(), None);
    assert_eq!(s.root(), twin.root());
    // Nothing left to collect, and every live key still reads.
    assert_eq!(s.collect_tombstones(now_millis() + 10_000).0, 0);
    for i in (0..n).step_by(3) {
        assert!(s.get(format!("k{i}").as_bytes(), |v| v == Some(&b"v"[..])));
    }
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
/// them) and must never change for the same data within one
/// `WIRE_VERSION`. These are wire version 2 (128-bit leaves). The
/// prefix digest is a XOR of leaves, so it is exactly the first half of
/// the wire-version-1 value (`7a8ec91ef271c9fe715e48cca0ff85c8fdfc…`,
/// full SHA-256 leaves): truncation commutes with XOR.
#[test]
fn root_values_are_pinned() {
    const ROOT_16: &str = "2a016e0baceb6a0f941e009ba1984fc2b2d4fa5c420f7f173804ffc44f9e213b";
    const NODE_16: &str = "2c1a0b57736929c4eecd1845a877152e49152a7062f259930d326300d9634244";
    const PREFIX: &str = "7a8ec91ef271c9fe715e48cca0ff85c800000000000000000000000000000000";
    const ROOT_8: &str = "82c3f733b9cf5756e4bbee39bb7b2cdb4d6b183970ecac52950d7102f08e4639";
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
#[cfg_attr(miri, ignore = "tens of thousands of writes: hours under Miri")]
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

// ---- expiry ----------------------------------------------------------------

fn store_ttl(tombstone_ttl_ms: u64) -> Store {
    Store::new(StoreOptions {
        shards: 4,
        tree_bits: 16,
        node_id: "n1".into(),
        tombstone_ttl_ms,
    })
    .unwrap()
}

const HOUR: u64 = 3_600_000;

#[test]
fn expired_records_are_invisible_before_conversion() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    let db = s.db();
    db.set_expiring(b"gone", b"v", now - 1);
    let w = db.set_expiring(b"later", b"v", now + HOUR);
    assert_eq!(w.expires, now + HOUR);
    s.set(b"plain", b"v");
    assert!(!s.contains(b"gone"));
    assert_eq!(s.len(), 2);
    assert_eq!(s.scan(b""), vec![b"later".to_vec(), b"plain".to_vec()]);
    let (mut seen, mut cursor) = (Vec::new(), 0);
    loop {
        cursor = s.scan_step(cursor, 1_000_000, |k| seen.push(k.to_vec()));
        if cursor == 0 {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, vec![b"later".to_vec(), b"plain".to_vec()]);
    assert_eq!(db.expiry(b"gone"), None);
    assert_eq!(db.expiry(b"later"), Some(now + HOUR));
    assert_eq!(db.expiry(b"plain"), Some(0));
    assert_eq!(db.expiring(), 1);
    assert!(
        s.delete(b"gone").is_none(),
        "an expired key cannot be deleted"
    );
    // Anti-entropy and snapshots see it as the tombstone of its version.
    let e = s.entry(b"gone").unwrap();
    assert_eq!((e.value, e.expires), (None, 0));
    s.with_entry(b"later", |e| assert_eq!(e.unwrap().2, now + HOUR));
}

#[test]
fn expiry_keeps_the_version_and_the_root() {
    let a = store_ttl(HOUR);
    let b = store_ttl(HOUR);
    let now = now_millis();
    let v = a.db().set_expiring(b"k", b"value", now + 50).version;
    a.set(b"other", b"x");
    let other = a.version(b"other").unwrap();
    // b holds the same records, applied as a peer would.
    assert_eq!(
        b.apply_expiring(b"k", Some(b"value"), v, now + 50),
        Applied::Stored
    );
    b.apply(b"other", Some(b"x"), other);
    let before = a.root();
    assert_eq!(before, b.root());
    // a converts (as if 100 ms later); b does not yet: roots stay equal.
    assert_eq!(a.expire_due(now + 50 + SLOT_MS, || true), 1);
    assert_eq!((a.len(), a.tombstones()), (1, 1));
    assert_eq!(a.version(b"k"), Some(v), "expiry creates no version");
    assert_eq!(a.root(), before);
    assert_eq!(b.root(), before);
    // And the same as a store that received the tombstone of version v.
    let c = store_ttl(HOUR);
    c.apply(b"k", None, v);
    c.apply(b"other", Some(b"x"), other);
    assert_eq!(c.root(), before);
    assert_eq!(a.expired_keys(), 1);
    assert_eq!(a.expire_due(now + 50 + SLOT_MS, || true), 0);
}

#[test]
fn expire_due_converts_every_due_record_in_batches() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    let db = s.db();
    let n = 10 * expiry::EXPIRE_BATCH * s.shard_count();
    for i in 0..n {
        db.set_expiring(format!("k{i}").as_bytes(), b"v", now + 10 + (i as u64 % 7));
    }
    db.set_expiring(b"late", b"v", now + HOUR);
    let mut pauses = 0;
    assert_eq!(s.expire_due(now + 5, || true), 0);
    assert_eq!(
        s.expire_due(now + 16 + SLOT_MS, || {
            pauses += 1;
            true
        }),
        n
    );
    assert!(pauses >= 9 * s.shard_count(), "{pauses} pauses");
    assert_eq!((s.db().expiring(), s.tombstones()), (1, n));
    // Stopping early leaves the rest for the next pass.
    let t = store_ttl(HOUR);
    let n = 3 * expiry::EXPIRE_BATCH * t.shard_count();
    for i in 0..n {
        t.db()
            .set_expiring(format!("k{i}").as_bytes(), b"v", now + 10);
    }
    // Every shard holds more than a batch: the first pause stops the pass.
    assert_eq!(
        t.expire_due(now + 10 + SLOT_MS, || false),
        expiry::EXPIRE_BATCH
    );
    assert_eq!(
        t.expire_due(now + 10 + SLOT_MS, || true),
        n - expiry::EXPIRE_BATCH
    );
}

#[test]
fn an_old_expired_record_is_removed_not_kept_as_tombstone() {
    // Its version is already past tombstone_ttl: collection would drop it.
    // It expires an hour from now, so that it has not expired yet when
    // applied however slow the machine (or Miri) is.
    let s = store_ttl(1000);
    let now = now_millis();
    s.apply_expiring(
        b"k",
        Some(b"v"),
        Version::new((now - 5000) << 16, 9),
        now + HOUR,
    );
    assert_eq!(s.expire_due(now + HOUR + SLOT_MS, || true), 1);
    assert_eq!((s.len(), s.tombstones(), s.root()), (0, 0, ZERO));
    assert!(s.entry(b"k").is_none());
}

#[test]
fn writes_set_keep_and_clear_the_expiry() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    let db = s.db();
    db.set_expiring(b"k", b"1", now + HOUR);
    let mut out = Vec::new();
    // Read-modify-write keeps it (INCR, APPEND).
    let ((), w) = db
        .update(b"k", &mut out, |old, new| {
            new.extend_from_slice(old.unwrap());
            new.push(b'2');
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(w.expires, now + HOUR);
    assert_eq!(db.expiry(b"k"), Some(now + HOUR));
    // EXPIRE with conditions.
    let mut value = Vec::new();
    let nx = ExpireFlags {
        nx: true,
        ..Default::default()
    };
    let gt = ExpireFlags {
        gt: true,
        ..Default::default()
    };
    let lt = ExpireFlags {
        lt: true,
        ..Default::default()
    };
    let t = (now + 2 * HOUR) as i64;
    assert_eq!(db.expire(b"k", t, nx, &mut value), Expired::Unchanged);
    assert_eq!(
        db.expire(b"k", t - 3 * HOUR as i64, gt, &mut value),
        Expired::Unchanged
    );
    let Expired::Set(w2) = db.expire(b"k", t, gt, &mut value) else {
        panic!("GT with a later time sets")
    };
    assert!(w2.version > w.version);
    assert_eq!(
        (value.as_slice(), db.expiry(b"k")),
        (&b"12"[..], Some(t as u64))
    );
    assert_eq!(db.persist(b"k", &mut value).map(|w| w.expires), Some(0));
    assert_eq!(db.expiry(b"k"), Some(0));
    assert_eq!(db.persist(b"k", &mut value), None);
    // LT on a key without expiry: infinite counts as later, so it sets.
    assert!(matches!(
        db.expire(b"k", t, lt, &mut value),
        Expired::Set(_)
    ));
    // A plain SET clears it.
    s.set(b"k", b"3");
    assert_eq!(db.expiry(b"k"), Some(0));
    assert_eq!(s.db().expiring(), 0);
    // A time in the past deletes.
    assert!(matches!(
        db.expire(b"k", now as i64 - 1, ExpireFlags::default(), &mut value),
        Expired::Deleted(_)
    ));
    assert!(!s.contains(b"k"));
    assert_eq!(
        db.expire(b"k", t, ExpireFlags::default(), &mut value),
        Expired::Missing
    );
}

#[test]
fn remote_records_that_already_expired_arrive_as_tombstones() {
    let s = store_ttl(1000);
    let now = now_millis();
    let fresh = Version::new(now << 16, 2);
    assert_eq!(
        s.apply_expiring(b"a", Some(b"v"), fresh, now - 1),
        Applied::Stored
    );
    let e = s.entry(b"a").unwrap();
    assert_eq!((e.value, e.version, e.expires), (None, fresh, 0));
    // Too old to keep as a tombstone, for a key the store lacks: dropped.
    let old = Version::new((now - 10_000) << 16, 2);
    assert_eq!(
        s.apply_expiring(b"b", Some(b"v"), old, now - 1),
        Applied::Stale
    );
    assert!(s.entry(b"b").is_none());
    // A newer write with an expiry replaces one without and vice versa.
    s.set(b"c", b"1");
    let later = Version::new((now + 5) << 16, 2);
    s.apply_expiring(b"c", Some(b"2"), later, now + HOUR);
    assert_eq!(s.db().expiry(b"c"), Some(now + HOUR));
    s.apply(b"c", Some(b"3"), Version::new((now + 6) << 16, 2));
    assert_eq!((s.db().expiry(b"c"), s.db().expiring()), (Some(0), 0));
}

#[test]
fn clearing_empties_the_expiry_index() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    s.db().set_expiring(b"a", b"v", now + 10);
    s.clear_versioned();
    s.db().set_expiring(b"b", b"v", now + HOUR);
    s.clear();
    assert_eq!(s.db().expiring(), 0);
    assert_eq!(s.expire_due(now + 2 * HOUR, || true), 0);
}

#[test]
fn scan_bounded_gives_up_past_its_budget() {
    let s = store(4);
    for k in [&b"a1"[..], b"a2", b"b1"] {
        s.set(k, b"v");
    }
    let per_key = 2 + super::scan::SCAN_KEY_OVERHEAD;
    assert_eq!(
        s.scan_bounded(b"a", 2 * per_key),
        Some(vec![b"a1".to_vec(), b"a2".to_vec()])
    );
    assert_eq!(s.scan_bounded(b"a", 2 * per_key - 1), None);
    assert_eq!(s.scan_bounded(b"", 3 * per_key).map(|k| k.len()), Some(3));
    assert_eq!(s.scan_bounded(b"c", 0), Some(vec![]));
}

#[test]
fn a_lock_that_waits_is_counted_and_one_that_does_not_is_not() {
    let s = std::sync::Arc::new(store(8));
    // Uncontended acquisitions, single and all-shard, count nothing.
    s.set(b"a", b"1");
    assert_eq!(s.get(b"a", |v| v.map(<[u8]>::to_vec)), Some(b"1".to_vec()));
    s.exclusive(|held| held.db().set(b"b", b"2"));
    assert_eq!(s.lock_contended(), 0);
    let other = s.clone();
    let t = s.exclusive(|_| {
        // Every shard is held: the other thread's write must wait, and is
        // counted before it blocks.
        let t = std::thread::spawn(move || other.set(b"c", b"3"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.lock_contended() == 0 {
            assert!(std::time::Instant::now() < deadline, "wait not counted");
            std::thread::yield_now();
        }
        t
    });
    t.join().unwrap();
    assert_eq!(s.lock_contended(), 1);
    assert_eq!(s.get(b"c", |v| v.map(<[u8]>::to_vec)), Some(b"3".to_vec()));
}

/// Checks the expiry index invariants (`expiry.rs`): every live record
/// with an expiry has an entry at its indexed-at time, which is ≤ its
/// expiry; the index counts exactly those records.
fn check_expiry_index(s: &Store) {
    for i in 0..s.shards.len() {
        let shard = s.shard(i);
        let entries: std::collections::HashSet<_> = shard.expiry.upto(u64::MAX).collect();
        let mut records = 0;
        for (b, t) in shard.tables.iter().enumerate() {
            for r in t.iter() {
                if r.expires() != 0 {
                    assert!(r.value().is_some(), "a tombstone with an expiry");
                    assert!(
                        r.indexed_at() <= r.expires() && r.indexed_at() != 0,
                        "{r:?}"
                    );
                    let e = (r.indexed_at(), b, s.hasher.hash_one(r.key()));
                    assert!(entries.contains(&e), "no entry for {r:?}");
                    records += 1;
                } else {
                    assert_eq!(r.indexed_at(), 0);
                }
            }
        }
        assert_eq!(shard.expiry.len(), records, "shard {i}");
        assert_eq!(shard.expiry.upto(u64::MAX).count(), shard.expiry.entries());
    }
}

/// Records with an expiry, by the index's count.
fn index_len(s: &Store) -> usize {
    (0..s.shards.len()).map(|i| s.shard(i).expiry.len()).sum()
}

/// Index entries, stale ones included.
fn index_entries(s: &Store) -> usize {
    (0..s.shards.len())
        .map(|i| s.shard(i).expiry.entries())
        .sum()
}

#[test]
fn a_later_expiry_leaves_the_index_entry_and_the_cycle_defers_it() {
    let s = store_ttl(2 * HOUR);
    let now = now_millis();
    let db = s.db();
    db.set_expiring(b"k", b"1", now + 10);
    // Moved later: the entry stays at now + 10 (no index update).
    db.set_expiring(b"k", b"2", now + HOUR);
    check_expiry_index(&s);
    assert_eq!(index_len(&s), 1);
    let first = s
        .shard(s.slot(b"k").shard)
        .tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|r| (r.indexed_at(), r.expires()))
        .collect::<Vec<_>>();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].0 <= now + 10 && first[0].1 == now + HOUR,
        "{first:?}"
    );
    // The cycle reaches the entry first: not due, re-indexed near its
    // expiry, in a slot that is not due yet.
    let soon = now + 10 + SLOT_MS;
    assert_eq!(s.expire_due(soon, || true), 0);
    check_expiry_index(&s);
    assert_eq!(s.expire_due(soon, || true), 0);
    assert_eq!(index_entries(&s), 1);
    assert_eq!(
        (s.len(), db.expiring(), db.expiry(b"k")),
        (1, 1, Some(now + HOUR))
    );
    // Not expired early, however many deferrals; found at most a slot
    // after its expiry.
    let mut t = soon;
    while t < now + HOUR {
        assert_eq!(s.expire_due(t, || true), 0);
        assert_eq!(index_entries(&s), 1);
        t += 60_000;
    }
    assert_eq!(s.expire_due(now + HOUR - 1, || true), 0);
    assert_eq!(s.expire_due(now + HOUR + SLOT_MS, || true), 1);
    assert_eq!((s.len(), s.tombstones(), index_len(&s)), (0, 1, 0));
    check_expiry_index(&s);
}

#[test]
fn an_earlier_expiry_moves_the_entry_and_persist_removes_a_deferred_one() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    let db = s.db();
    db.set_expiring(b"k", b"v", now + HOUR);
    db.set_expiring(b"k", b"v", now + 10);
    check_expiry_index(&s);
    assert_eq!(index_entries(&s), 2);
    assert_eq!(s.expire_due(now + 10 + SLOT_MS, || true), 1);
    // A deferred entry (at now + 10, expiry in an hour) goes with PERSIST.
    db.set_expiring(b"p", b"v", now + 10);
    db.set_expiring(b"p", b"v", now + HOUR);
    let mut value = Vec::new();
    assert!(db.persist(b"p", &mut value).is_some());
    assert_eq!(index_len(&s), 0);
    check_expiry_index(&s);
    assert_eq!(s.expire_due(now + 2 * HOUR, || true), 0);
    assert_eq!(s.get(b"p", |v| v.map(<[u8]>::to_vec)), Some(b"v".to_vec()));
    // The stale entries were dropped when their slots came up.
    assert_eq!(index_entries(&s), 0);
}

#[test]
fn dbsize_counts_due_records_of_deferred_entries_exactly() {
    let s = store_ttl(HOUR);
    let now = now_millis();
    let db = s.db();
    // Entry at now + 1, expiry in an hour: its entry comes up, it is not due.
    db.set_expiring(b"later", b"v", now + 1);
    db.set_expiring(b"later", b"v", now + HOUR);
    // Entry at now + 2, expiry now + 5: due once now + 5 has passed.
    db.set_expiring(b"due", b"v", now + 2);
    db.set_expiring(b"due", b"v", now + 5);
    s.set(b"plain", b"v");
    // Deleted and set again into the same slot: two entries, one record.
    db.set_expiring(b"dup", b"v", now + 5);
    s.delete(b"dup");
    db.set_expiring(b"dup", b"v", now + 5);
    // Many keys due at the same millisecond, sharing buckets with others.
    for i in 0..200 {
        db.set_expiring(format!("same{i}").as_bytes(), b"v", now + 5);
    }
    check_expiry_index(&s);
    assert!(wait_for(|| now_millis() > now + 5));
    assert_eq!((s.len(), db.expiring()), (2, 1));
    assert!(!s.contains(b"due"));
    check_expiry_index(&s);
    assert_eq!(s.expire_due(now + 5 + SLOT_MS, || true), 201);
    assert_eq!((s.len(), db.expiring(), s.tombstones()), (2, 1, 202));
    check_expiry_index(&s);
}

#[test]
fn set_ex_and_del_churn_keeps_the_index_bounded() {
    let s = store_ttl(HOUR);
    let db = s.db();
    let now = now_millis();
    let mut value = Vec::new();
    let bounded = |s: &Store| {
        (0..s.shards.len()).all(|i| {
            let ix = &s.shard(i).expiry;
            ix.entries() <= 2 * ix.len() + COMPACT_SLACK
        })
    };
    for i in 0..30_000u64 {
        let k = format!("k{}", i % 10);
        let k = k.as_bytes();
        // Every second round leaves a stale entry by DEL, PERSIST or a
        // plain SET; others by an earlier expiry.
        db.set_expiring(k, b"v", now + HOUR + i);
        match i % 4 {
            0 => {
                s.delete(k);
            }
            1 => {
                db.persist(k, &mut value);
            }
            2 => {
                s.set(k, b"w");
            }
            _ => {
                db.set_expiring(k, b"v", now + 1 + i % 1000);
            }
        }
        if i % 97 == 0 {
            assert!(bounded(&s), "round {i}: {} entries", index_entries(&s));
        }
    }
    assert!(bounded(&s));
    check_expiry_index(&s);
    // 10 keys, 30,000 entries made: compaction kept them near the keys.
    assert!(
        index_entries(&s) <= 10 * (2 + COMPACT_SLACK),
        "{}",
        index_entries(&s)
    );
}

/// Polls `f` for up to ten seconds.
fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

#[test]
fn random_writes_keep_the_expiry_index_exact() {
    let s = store_ttl(HOUR);
    let db = s.db();
    let base = now_millis() + HOUR;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut value = Vec::new();
    let mut clock = base;
    for step in 0..20_000 {
        let key = format!("k{}", next(300));
        let k = key.as_bytes();
        let at = base + next(1000);
        match next(9) {
            0 => {
                s.set(k, b"v");
            }
            1 | 2 => {
                db.set_expiring(k, b"v", at);
            }
            3 => {
                db.persist(k, &mut value);
            }
            4 => {
                s.delete(k);
            }
            5 => {
                let _ = db.update(k, &mut value, |_, out| {
                    out.extend_from_slice(b"longer value");
                    Ok::<_, ()>(())
                });
            }
            6 => {
                let _ = db.expire(k, at as i64, ExpireFlags::default(), &mut value);
            }
            7 => {
                let v = Version::new((base + next(1000)) << 16, 3);
                s.apply_expiring(k, Some(b"r"), v, if next(2) == 0 { 0 } else { at });
            }
            _ => {
                clock += next(20);
                s.expire_due(clock, || true);
            }
        }
        if step % 500 == 0 {
            check_expiry_index(&s);
        }
    }
    check_expiry_index(&s);
    s.expire_due(u64::MAX - 1, || true);
    check_expiry_index(&s);
    assert_eq!((index_len(&s), db.expiring()), (0, 0));
}

/// Total capacity of every bucket table.
fn table_capacity(s: &Store) -> usize {
    (0..s.shard_count())
        .map(|i| {
            s.shard(i)
                .tables
                .iter()
                .map(|t| t.capacity())
                .sum::<usize>()
        })
        .sum()
}

/// A store of one shard and 16 buckets.
pub(super) fn small() -> Store {
    Store::new(StoreOptions {
        shards: 1,
        tree_bits: 4,
        node_id: "n1".into(),
        tombstone_ttl_ms: 1,
    })
    .unwrap()
}

/// One shard of 16 buckets holding 1,024 records, ~64 per bucket: every
/// 16th without expiry (copied into the second store returned, as a
/// replica would hold it), the others expiring at `now + 10` ms. Once
/// they expire the tables are left sparse (the shrink tests here and in
/// `refresh.rs`).
pub(super) fn mostly_expiring(now: u64) -> (Store, Store) {
    let (s, kept) = (small(), small());
    for i in 0..1024 {
        let k = format!("k{i}");
        if i % 16 == 0 {
            let v = s.set(k.as_bytes(), b"v");
            kept.apply(k.as_bytes(), Some(b"v"), v);
        } else {
            s.db().set_expiring(k.as_bytes(), b"v", now + 10);
        }
    }
    (s, kept)
}

#[test]
fn tables_left_sparse_by_expiry_or_collection_shrink() {
    // 16 buckets: ~64 records each, of which ~4 stay.
    let now = now_millis();
    let (s, kept) = mostly_expiring(now);
    let full = table_capacity(&s);
    assert!(full >= 1024, "{full}");
    s.root(); // every digest computed: only the shrink can mark stale
    // The records expire long after their version: removed outright.
    assert_eq!(s.expire_due(now + 10 + SLOT_MS, || true), 960);
    let sparse = table_capacity(&s);
    assert!(sparse * 4 <= full, "{full} -> {sparse}");
    // Records moved slots: the tree and lookups still agree.
    assert_eq!(s.root(), kept.root());
    for i in (0..1024).step_by(16) {
        assert!(s.contains(format!("k{i}").as_bytes()));
    }
    // Another pass finds nothing to remove and shrinks nothing.
    assert_eq!(s.expire_due(now + HOUR, || true), 0);
    assert_eq!(table_capacity(&s), sparse);

    // Collection: a thousand deletes leave tombstones, collected later.
    let t = small();
    let u = small();
    for i in 0..1024 {
        let k = format!("k{i}");
        let v = t.set(k.as_bytes(), b"v");
        if i % 16 == 0 {
            u.apply(k.as_bytes(), Some(b"v"), v);
        }
    }
    for i in (0..1024).filter(|i| i % 16 != 0) {
        t.delete(format!("k{i}").as_bytes());
    }
    let full = table_capacity(&t);
    t.root();
    let (n, _) = t.collect_tombstones(now_millis() + HOUR);
    assert_eq!(n, 960);
    let sparse = table_capacity(&t);
    assert!(sparse * 4 <= full, "{full} -> {sparse}");
    assert_eq!(t.root(), u.root());
    // Growing back and emptying again: sizes follow, no thrash in between.
    for i in 0..1024 {
        t.set(format!("k{i}").as_bytes(), b"v");
    }
    assert!(table_capacity(&t) >= 1024);
    for i in 0..1024 {
        t.delete(format!("k{i}").as_bytes());
    }
    t.collect_tombstones(now_millis() + HOUR);
    assert_eq!(table_capacity(&t), 0);
}

/// The encoding of `key`'s live value, if any.
fn encoding(s: &Store, key: &[u8]) -> Option<Encoding> {
    s.db().get_encoded(key, |v| v.map(|(_, e)| e))
}

#[test]
fn encoding_follows_the_write_and_stays_out_of_versions_and_digests() {
    let s = store(4);
    let mut out = Vec::new();
    let append = |s: &Store, out: &mut Vec<u8>, key: &[u8], tail: &[u8]| {
        s.db()
            .update_encoded(key, out, |old, new| {
                let e = if old.is_some() {
                    Encoding::Raw
                } else {
                    Encoding::Auto
                };
                new.extend_from_slice(old.unwrap_or_default());
                new.extend_from_slice(tail);
                Ok::<_, ()>(((), e))
            })
            .unwrap()
            .1
    };
    s.set(b"k", b"1");
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Auto));
    let w = append(&s, &mut out, b"k", b"2");
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Raw));
    assert_eq!(s.version(b"k"), Some(w.version));
    // Any other write stores the value as given again: local, update,
    // replicated (LWW apply) and copied (replace_if).
    s.db()
        .update(b"k", &mut out, |_, new| {
            new.extend_from_slice(b"13");
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Auto));
    append(&s, &mut out, b"k", b"4");
    s.set(b"k", b"x");
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Auto));
    append(&s, &mut out, b"k", b"y");
    assert_eq!(
        s.apply(b"k", Some(b"z"), Version::new(u64::MAX >> 2, 9)),
        Applied::Stored
    );
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Auto));
    append(&s, &mut out, b"r", b"1");
    append(&s, &mut out, b"r", b"2");
    let v = s.version(b"r");
    assert!(s.replace_if(b"r", v, Some(b"12"), Version::new(5, 9)));
    assert_eq!(encoding(&s, b"r"), Some(Encoding::Auto));
    // Creating a key by append stores it as given.
    append(&s, &mut out, b"fresh", b"7");
    assert_eq!(encoding(&s, b"fresh"), Some(Encoding::Auto));
    assert_eq!(encoding(&s, b"missing"), None);

    // EXPIRE and PERSIST write a new version but keep the value and so its
    // encoding, as in Redis.
    append(&s, &mut out, b"e", b"12");
    append(&s, &mut out, b"e", b"3");
    let when = (now_millis() + 3_600_000) as i64;
    let r = s.db().expire(b"e", when, ExpireFlags::default(), &mut out);
    assert!(matches!(r, Expired::Set(_)));
    assert_eq!(encoding(&s, b"e"), Some(Encoding::Raw));
    assert!(s.db().persist(b"e", &mut out).is_some());
    assert_eq!(
        (encoding(&s, b"e"), s.db().expiry(b"e")),
        (Some(Encoding::Raw), Some(0))
    );
    // A delete leaves a tombstone without one; a new value starts over.
    s.delete(b"e");
    s.set(b"e", b"1");
    assert_eq!(encoding(&s, b"e"), Some(Encoding::Auto));
    assert_same_tree(&s, "encodings");
}

#[test]
fn an_edit_that_changes_nothing_marks_the_value_raw_without_writing() {
    let s = store(4);
    let mut out = Vec::new();
    let v = s.set(b"k", b"1");
    let root = s.root();
    // Err: nothing written, but the existing value counts as edited.
    assert_eq!(s.db().edit(b"k", &mut out, |_, _| Err::<(), _>(7)), Err(7));
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Raw));
    assert_eq!((s.version(b"k"), s.stale_records()), (Some(v), 0));
    assert_eq!(s.root(), root, "the encoding is not part of the digest");
    assert_eq!(s.get(b"k", |v| v.map(<[u8]>::to_vec)), Some(b"1".to_vec()));
    // A failed edit of a missing key or a tombstone creates nothing.
    assert_eq!(s.db().edit(b"m", &mut out, |_, _| Err::<(), _>(0)), Err(0));
    s.set(b"t", b"1");
    s.delete(b"t");
    assert_eq!(s.db().edit(b"t", &mut out, |_, _| Err::<(), _>(0)), Err(0));
    assert_eq!((encoding(&s, b"m"), encoding(&s, b"t")), (None, None));
    assert_eq!((s.len(), s.tombstones()), (1, 1));
    // A failed plain update leaves the encoding alone.
    s.set(b"k", b"2");
    assert!(
        s.db()
            .update(b"k", &mut out, |_, _| Err::<(), _>(()))
            .is_err()
    );
    assert_eq!(encoding(&s, b"k"), Some(Encoding::Auto));
    // Ok: written, raw, also when it creates the key.
    let (_, w) = s
        .db()
        .edit(b"n", &mut out, |old, new| {
            assert!(old.is_none());
            new.extend_from_slice(b"\0\x01");
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(
        (encoding(&s, b"n"), s.version(b"n")),
        (Some(Encoding::Raw), Some(w.version))
    );
    assert_same_tree(&s, "edits");
}
