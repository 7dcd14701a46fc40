//! Entry points for fuzzing: each takes arbitrary bytes, runs one of the
//! input-facing decoders over them and checks its invariants.
//!
//! The `cargo fuzz` targets in `fuzz/` and the proptest smoke run in
//! `tests/fuzz_smoke.rs` call exactly these functions, so what the fuzzer
//! explores is what `cargo test` replays. A panic here is a bug: either the
//! decoder panicked on input, or an invariant below does not hold.
//!
//! | Entry | Decoder | Checks beyond "no panic" |
//! |---|---|---|
//! | [`text`] | `protocol::text::parse` and `parse_resume` | every request consumes 1..=len bytes up to its LF; `Incomplete` only without an LF; reads split anywhere give the same requests |
//! | [`resp`] | `protocol::resp::parse` and `Partial` (resumed framing) | consumption in bounds; argument spans inside the frame; reads split anywhere give the same requests |
//! | [`internal`] | `protocol::internal::parse` + the `MKV.*` server, or a whole anti-entropy round against a peer whose replies are the input | a served reply reads back as one RESP reply; a round against a hostile peer plants no version past the clock bound and (without `--force`) deletes at most half of the records |
//! | [`cbor`] | `replication::wire::decode_ref` and `decode` | the in-place decoder agrees with serde |
//! | [`log_segment`] | recovery's two passes over a log segment | pass 2 reads everything pass 1 validated; any replay window gives the same state; a torn tail loses only records in it |
//! | [`snapshot`] | recovery's snapshot reader | a clean read ends exactly at the end record; a torn copy reads no more entries |
//!
//! Inputs whose first byte is odd build *structured* files for the two
//! persistence entries (records with valid checksums, then a mutation), so
//! the fuzzer reaches past the checksum of the first record.

use std::io::BufReader;

use crate::antientropy::round::{self, RespPeer, RoundOptions, Transport};
use crate::antientropy::serve::{self, Identity};
use crate::client::{ClientError, Limits, Reply, read_reply};
use crate::persist::log::LOG_MAGIC;
use crate::persist::record::{self, FORMAT, Kind};
use crate::persist::recovery;
use crate::persist::snapshot::SNAP_MAGIC;
use crate::protocol::{Args, MAX_LINE, Parsed, internal, resp, text};
use crate::replication::wire;
use crate::store::{Store, StoreOptions, Version, now_millis, version};

/// A small store for one input (tree of 256 buckets).
fn small_store() -> Store {
    Store::new(StoreOptions {
        shards: 2,
        tree_bits: 8,
        node_id: "fuzz".into(),
        tombstone_ttl_ms: 3_600_000,
    })
    .expect("valid store options")
}

/// The text parser over a stream of requests, read at once and in pieces.
///
/// The first byte seeds the sizes of the reads a simulated connection
/// gets ([`Reads`]); the rest is the stream. Every request must come out
/// the same through [`text::parse_resume`] on the bytes received so far as
/// through [`text::parse`] on the whole stream.
pub fn text(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let mut reads = Reads::new(seed, data.len());
    let mut scanned = 0;
    let mut buf = data;
    loop {
        let whole = text::parse(buf);
        let got = loop {
            let have = &buf[..reads.have(data.len() - buf.len())];
            let got = text::parse_resume(have, &mut scanned);
            assert_eq!(got, text::parse(have), "resumed and stateless differ");
            if got != Parsed::Incomplete || have.len() == buf.len() {
                break got;
            }
            assert_eq!(scanned, have.len());
            reads.more();
        };
        assert_eq!(got, whole, "a split read changed the outcome");
        match whole {
            Parsed::Request(_, n) | Parsed::Invalid(_, n) | Parsed::Skip(n) => {
                assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
                assert_eq!(buf[n - 1], b'\n', "a request ends at its LF");
                assert!(
                    !buf[..n - 1].contains(&b'\n'),
                    "a request ends at the first LF"
                );
                buf = &buf[n..];
            }
            Parsed::Incomplete => {
                let window = &buf[..buf.len().min(MAX_LINE)];
                assert!(!window.contains(&b'\n'), "incomplete with an LF");
                assert!(buf.len() < MAX_LINE, "incomplete past the line limit");
                // The connection closes here: the unterminated last line.
                if let Parsed::Request(_, n) | Parsed::Invalid(_, n) = text::parse_eof(buf) {
                    assert!(n <= buf.len());
                }
                return;
            }
            Parsed::Fatal(_) => return,
        }
    }
}

/// The sizes of the reads that deliver a stream to a simulated connection:
/// 1 to 32 bytes each, from a small generator seeded by one input byte.
struct Reads {
    state: u32,
    received: usize,
    total: usize,
}

impl Reads {
    fn new(seed: u8, total: usize) -> Reads {
        let mut r = Reads {
            state: u32::from(seed) | 0x100,
            received: 0,
            total,
        };
        r.more();
        r
    }

    /// Receives the next read.
    fn more(&mut self) {
        // xorshift32: any non-zero state.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = (self.state % 32) as usize + 1;
        self.received = (self.received + size).min(self.total);
    }

    /// Bytes received and not yet consumed, given `consumed` bytes are.
    fn have(&self, consumed: usize) -> usize {
        self.received.max(consumed) - consumed
    }
}

/// What a RESP parse outcome says, without the buffers it borrows: the
/// outcome, the bytes consumed and (when consumed) the argument spans.
type Outcome = (String, Option<usize>, Vec<(u32, u32)>);

/// Parses the front of `buf`, resuming `partial` if given, and describes
/// the outcome.
fn resp_step(
    buf: &[u8],
    spans: &mut Vec<(u32, u32)>,
    partial: Option<&mut resp::Partial>,
) -> Outcome {
    let parsed = match partial {
        Some(p) => p.parse(buf, spans),
        None => resp::parse(buf, spans),
    };
    let (what, n) = match parsed {
        Parsed::Request(_, n) => ("request".to_string(), Some(n)),
        Parsed::Skip(n) => ("skip".to_string(), Some(n)),
        Parsed::Invalid(e, n) => (format!("invalid: {e}"), Some(n)),
        Parsed::Incomplete => ("incomplete".to_string(), None),
        Parsed::Fatal(f) => (format!("fatal: {f:?}"), None),
    };
    let spans = if n.is_some() {
        spans.clone()
    } else {
        Vec::new()
    };
    (what, n, spans)
}

/// The RESP parser over a stream of requests, read at once and in pieces.
///
/// As for [`text`], the first byte seeds the read sizes: every request
/// must come out the same through a connection's resumable
/// [`resp::Partial`] on the bytes received so far as through the
/// stateless [`resp::parse`] on the same bytes and on the whole stream.
pub fn resp(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let mut reads = Reads::new(seed, data.len());
    let mut partial = resp::Partial::default();
    let mut spans = Vec::new();
    let mut buf = data;
    loop {
        let len = buf.len();
        let whole = resp_step(buf, &mut spans, None);
        let got = loop {
            let have = &buf[..reads.have(data.len() - len)];
            let got = resp_step(have, &mut spans, Some(&mut partial));
            let same = resp_step(have, &mut spans, None);
            assert_eq!(got, same, "resumed and stateless differ");
            if got.0 != "incomplete" || have.len() == len {
                break got;
            }
            reads.more();
        };
        assert_eq!(got, whole, "a split read changed the outcome");
        let Some(n) = whole.1 else { return };
        assert!(n > 0 && n <= len, "consumed {n} of {len}");
        for &(s, e) in &whole.2 {
            assert!(s <= e && e as usize <= n, "span {s}..{e} outside {n}");
        }
        buf = &buf[n..];
    }
}

/// The internal `MKV.*` commands, from both ends.
///
/// First byte `0..=4`: a request (`MKV.ROOT`, `NODES`, `BUCKETS`, `FETCH`,
/// `ENTRIES`) whose arguments are the rest split at spaces, parsed and
/// served from a small store; the reply must read back as one RESP reply.
/// Otherwise the rest is a stream of replies from a peer, and a round
/// (plain, then `--full` when the first byte is odd) runs against it.
pub fn internal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let store = small_store();
    for i in 0..40u32 {
        let key = format!("k{i}");
        if i % 7 == 3 {
            store.set(key.as_bytes(), b"x");
            store.delete(key.as_bytes());
        } else {
            store.set(key.as_bytes(), key.as_bytes());
        }
    }
    const NAMES: [&[u8]; 5] = [
        b"MKV.ROOT",
        b"MKV.NODES",
        b"MKV.BUCKETS",
        b"MKV.FETCH",
        b"MKV.ENTRIES",
    ];
    if let Some(name) = NAMES.get(mode as usize) {
        let args: Vec<&[u8]> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(|&b| b == b' ').collect()
        };
        for a in &args {
            let _ = internal::decode_version(a);
        }
        if let Ok(cmd) = internal::parse(name, Args::List(&args)) {
            let mut out = Vec::new();
            let id = Identity {
                node_id: "fuzz",
                instance: 1,
            };
            serve::execute(&cmd, &store, id, &mut out);
            let mut r = &out[..];
            read_reply(&mut r, &Limits::default()).expect("a served reply is valid RESP");
            assert!(r.is_empty(), "one reply, nothing after it");
        }
        return;
    }
    let mut peer = RespPeer::new(Replies {
        r: BufReader::new(rest),
    });
    let opts = RoundOptions {
        full: mode % 2 == 1,
        force: mode % 4 == 3,
        verify: false,
        instance: 1,
    };
    let records = store.len() + store.tombstones();
    let res = round::run(&mut peer, &store, &mut &store, &opts);
    // Whatever the peer says, no version past the clock bound gets in, and
    // without --force at most half of the records are deleted.
    let ceiling = version::ceiling(now_millis(), store.max_clock_skew());
    for b in 0..store.shape().buckets() {
        for (key, v) in store.bucket_versions(b).unwrap_or_default() {
            assert!(v.hlc <= ceiling, "version {v} of {key:?} is past the bound");
        }
    }
    if let Ok(r) = res
        && !opts.force
    {
        assert!(r.keys_removed <= records / 2, "{r:?}");
    }
}

/// A peer that answers every request with the next reply of a byte stream.
struct Replies<'a> {
    r: BufReader<&'a [u8]>,
}

impl Transport for Replies<'_> {
    fn call(&mut self, _args: &[&[u8]]) -> Result<Reply, ClientError> {
        read_reply(&mut self.r, &Limits::default())
    }
}

/// The CBOR change-event decoders: the in-place fast path must agree with
/// the general (serde) decoder on every input.
pub fn cbor(data: &[u8]) {
    let slow = wire::decode(data);
    match wire::decode_ref(data) {
        Ok(fast) => {
            let slow = slow.expect("the fast path accepted what decode refuses");
            assert_eq!(fast.origin(), slow.origin);
            assert_eq!(fast.len(), slow.events.len());
            for (a, b) in fast.events().zip(&slow.events) {
                assert_eq!(a.key, &b.key[..]);
                assert_eq!(a.value, b.value.as_deref());
                assert_eq!(a.version, b.version);
            }
        }
        Err(e) => assert_eq!(Err(e), slow.map(|_| ())),
    }
}

/// Reads little-endian numbers and byte strings off the front of a slice
/// (missing bytes read as zero).
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        let n = self.0.len().min(8);
        a[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(a)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Builds a file from a structured input: a header, then records with
/// valid checksums, then (maybe) an end record, then one mutation.
fn build_file(data: &[u8], magic: &[u8], end: bool) -> Vec<u8> {
    let mut b = Bytes(data);
    let mut out = Vec::new();
    let epoch = u64::from(b.u8());
    record::encode(
        &mut out,
        Kind::Header,
        Version::new(epoch, FORMAT),
        0,
        magic,
        b"w0",
    );
    let count = b.u8() % 16;
    let now = now_millis() << 16;
    for _ in 0..count {
        let sel = b.u8();
        let kind = match sel % 8 {
            0..=3 => Kind::Put,
            4 | 5 => Kind::Tombstone,
            6 => Kind::Clear,
            _ => Kind::End,
        };
        // Mostly versions near now (live), sometimes raw ones (stale,
        // expired or far in the future).
        let hlc = if sel & 0x80 == 0 {
            now.wrapping_add(u64::from(b.u8()) << 8)
        } else {
            b.u64()
        };
        let node = u64::from(b.u8() % 4);
        let stamp = if sel & 0x40 == 0 { hlc } else { b.u64() };
        let klen = usize::from(b.u8() % 8);
        let key = b.take(klen);
        let vlen = usize::from(b.u8() % 32);
        let value = b.take(vlen);
        record::encode(&mut out, kind, Version::new(hlc, node), stamp, key, value);
    }
    if end {
        let n = u64::from(count) + u64::from(b.u8() % 2);
        record::encode(&mut out, Kind::End, Version::new(n, 0), 0, &[], &[]);
    }
    match b.u8() % 4 {
        0 => {}
        1 if !out.is_empty() => {
            let at = b.u64() as usize % out.len();
            out[at] ^= b.u8() | 1;
        }
        2 => out.truncate(b.u64() as usize % (out.len() + 1)),
        _ => out.extend_from_slice(b.0),
    }
    out
}

/// Recovery's two passes over `data` as a log segment.
pub fn log_segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 1 {
        build_file(rest, LOG_MAGIC, false)
    } else {
        rest.to_vec()
    };
    let (a, b) = (small_store(), small_store());
    let Some(n) = recovery::replay_segment_bytes(&file, &a, 7) else {
        return;
    };
    assert_eq!(recovery::replay_segment_bytes(&file, &b, 1 << 20), Some(n));
    assert_eq!(a.root(), b.root(), "the replay window changed the outcome");
    assert_eq!((a.len(), a.tombstones()), (b.len(), b.tombstones()));
    // A torn tail (the last 0..=127 bytes never reached the disk) loses at
    // most the records in it.
    let torn = file.len().saturating_sub(usize::from(mode >> 1));
    if let Some(m) = recovery::replay_segment_bytes(&file[..torn], &small_store(), 7) {
        assert!(m <= n, "{m} records from a torn copy, {n} from the whole");
    }
}

/// Recovery's snapshot reader over `data`.
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 1 {
        build_file(rest, SNAP_MAGIC, true)
    } else {
        rest.to_vec()
    };
    let store = small_store();
    let Some(loaded) = recovery::load_snapshot_bytes(&file, &store) else {
        return;
    };
    assert!(loaded >= (store.len() + store.tombstones()) as u64);
    // A torn copy (the last 0..=127 bytes missing) reads at most as much.
    let torn = file.len().saturating_sub(usize::from(mode >> 1));
    if let Some(m) = recovery::load_snapshot_bytes(&file[..torn], &small_store()) {
        assert!(
            m <= loaded,
            "{m} entries from a torn copy, {loaded} from the whole"
        );
    }
}
