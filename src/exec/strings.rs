//! Execution of the string and keyspace commands of
//! [`crate::protocol::strings`] (RESP only).
//!
//! Every write goes through [`Ctx::wrote`] with the *resulting value*
//! (as APPEND does): `INCRBYFLOAT`, `SETRANGE` and `SETBIT` replicate and
//! log the new string, never the operation, so replicas cannot diverge on
//! float formatting or ordering. `RENAME` is a set of the destination plus
//! a delete of the source and `COPY` a set of the destination, each under
//! one multi-shard lock and each with its own version, so the Merkle tree,
//! the log and every replica see ordinary versioned writes.
//! A write that changes nothing (`SETBIT` of a bit already set,
//! `SETRANGE` with an empty value) is not written.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ctx, Flow};
use crate::protocol::reply::{Proto, array, bulk, error, header, integer, null, ok};
use crate::protocol::strings::StrCmd;
use crate::protocol::{Args, parse_int};
use crate::stats::Counter;
use crate::store::{Encoding, MAX_VALUE_LEN, now_millis};
use crate::strings::longdouble::LongDouble;
use crate::strings::{bits, lcs, range};

/// Largest string a command may build (Redis's `proto-max-bulk-len` plays
/// this role there): the store's value limit.
pub const MAX_STRING: usize = MAX_VALUE_LEN;

const NOT_INTEGER: &str = "value is not an integer or out of range";
const NOT_FLOAT: &str = "value is not a valid float";
const SYNTAX: &str = "syntax error";

fn err(out: &mut Vec<u8>, msg: &str) -> Flow {
    error(out, Proto::Resp, msg);
    Flow::Continue
}

fn int(arg: &[u8]) -> Option<i64> {
    parse_int(arg)
}

/// Executes one string/keyspace command, appending its reply to `out`.
pub(super) fn execute(cmd: StrCmd<'_>, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) -> Flow {
    let stats = ctx.stats;
    let store = ctx.db;
    match cmd {
        StrCmd::IncrByFloat { key, incr } => {
            stats.incr(Counter::Numeric);
            let Some(incr) = LongDouble::parse(incr) else {
                return err(out, NOT_FLOAT);
            };
            // A fresh string, as Redis builds it: never `int`-encoded.
            let res = store.update_encoded(key, ctx.scratch, |old, new| {
                let cur = match old {
                    None => LongDouble::parse(b"0").ok_or(NOT_FLOAT)?,
                    Some(v) => LongDouble::parse(v).ok_or(NOT_FLOAT)?,
                };
                let sum = cur
                    .checked_add(incr)
                    .filter(|s| !s.is_inf())
                    .ok_or("increment would produce NaN or Infinity")?;
                new.extend_from_slice(sum.to_human().as_bytes());
                Ok(((), Encoding::Str))
            });
            match res {
                Ok(((), v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    bulk(out, &new);
                    *ctx.scratch = new;
                }
                Err(e) => return err(out, e),
            }
        }
        StrCmd::SetRange { key, offset, value } => {
            stats.incr(Counter::String);
            let Some(offset) = int(offset) else {
                return err(out, NOT_INTEGER);
            };
            let offset = match range::check_setrange(offset, value.len(), MAX_STRING) {
                Ok(o) => o,
                Err(e @ range::RangeError::NegativeOffset) => return err(out, &e.to_string()),
                // Checked below, after the key lookup, as Redis does.
                Err(range::RangeError::TooLong) => usize::MAX,
            };
            if value.is_empty() {
                let n = store.get(key, |v| v.map_or(0, <[u8]>::len));
                integer(out, n as i64);
                return Flow::Continue;
            }
            if offset == usize::MAX {
                return err(out, &range::RangeError::TooLong.to_string());
            }
            let res = store.edit(key, ctx.scratch, |old, new| {
                range::setrange(old.unwrap_or_default(), offset, value, new);
                Ok::<_, ()>(())
            });
            if let Ok(((), v)) = res {
                let new = std::mem::take(ctx.scratch);
                ctx.wrote(key, Some(&new), v);
                integer(out, new.len() as i64);
                *ctx.scratch = new;
            }
        }
        StrCmd::GetRange { key, start, end } => {
            stats.incr(Counter::Get);
            let (Some(start), Some(end)) = (int(start), int(end)) else {
                return err(out, NOT_INTEGER);
            };
            store.get(key, |v| {
                bulk(out, range::getrange(v.unwrap_or_default(), start, end))
            });
        }
        StrCmd::SetBit { key, offset, value } => {
            stats.incr(Counter::String);
            let offset = match bits::parse_offset(offset, MAX_STRING) {
                Ok(o) => o,
                Err(e) => return err(out, &e.to_string()),
            };
            let on = match bits::parse_value(value) {
                Ok(b) => b,
                Err(e) => return err(out, &e.to_string()),
            };
            // Err carries the previous bit when nothing changes (no write;
            // the value still counts as edited in place, as in Redis).
            let res = store.edit(key, ctx.scratch, |old, new| {
                match bits::setbit(old, offset, on, new) {
                    (prev, true) => Ok(prev),
                    (prev, false) => Err(prev),
                }
            });
            let prev = match res {
                Ok((prev, v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    *ctx.scratch = new;
                    prev
                }
                Err(prev) => prev,
            };
            integer(out, i64::from(prev));
        }
        StrCmd::GetBit { key, offset } => {
            stats.incr(Counter::Get);
            let offset = match bits::parse_offset(offset, MAX_STRING) {
                Ok(o) => o,
                Err(e) => return err(out, &e.to_string()),
            };
            let bit = store.get(key, |v| bits::getbit(v.unwrap_or_default(), offset));
            integer(out, i64::from(bit));
        }
        StrCmd::BitCount { key, range } => {
            stats.incr(Counter::Get);
            let parsed = match bitcount_range(range) {
                Ok(r) => r,
                // Redis answers 0 for a missing key before looking at the range.
                Err(e) if store.contains(key) => return err(out, e),
                Err(_) => None,
            };
            let n = store.get(key, |v| v.map_or(0, |v| bits::bitcount(v, parsed)));
            integer(out, n as i64);
        }
        StrCmd::Lcs { a, b, opts } => {
            stats.incr(Counter::Get);
            return lcs_command(ctx, a, b, opts, out);
        }
        StrCmd::Rename { src, dst, nx } => {
            stats.incr(Counter::Set);
            return rename(ctx, src, dst, nx, out);
        }
        StrCmd::Copy { src, dst, opts } => {
            stats.incr(Counter::Set);
            return copy(ctx, src, dst, opts, out);
        }
        StrCmd::RandomKey => {
            stats.incr(Counter::Get);
            match random_key(ctx) {
                Some(k) => bulk(out, &k),
                None => out.extend_from_slice(null(ctx.client.is_resp3())),
            }
        }
        StrCmd::Touch(keys) => {
            stats.incr(Counter::Exists);
            let n = keys.iter().filter(|k| store.contains(k)).count();
            integer(out, n as i64);
        }
        StrCmd::Object(args) => {
            stats.incr(Counter::Management);
            return object(ctx, args, out);
        }
    }
    Flow::Continue
}

/// `[start end [BYTE | BIT]]` of BITCOUNT.
fn bitcount_range(args: Args<'_>) -> Result<Option<(i64, i64, bool)>, &'static str> {
    let v: Vec<&[u8]> = args.iter().collect();
    match v.len() {
        0 => Ok(None),
        2 | 3 => {
            let (Some(s), Some(e)) = (int(v[0]), int(v[1])) else {
                return Err(NOT_INTEGER);
            };
            let bit = match v.get(2) {
                None => false,
                Some(u) if u.eq_ignore_ascii_case(b"BYTE") => false,
                Some(u) if u.eq_ignore_ascii_case(b"BIT") => true,
                Some(_) => return Err(SYNTAX),
            };
            Ok(Some((s, e, bit)))
        }
        _ => Err(SYNTAX),
    }
}

fn lcs_command(ctx: &mut Ctx<'_>, a: &[u8], b: &[u8], opts: Args<'_>, out: &mut Vec<u8>) -> Flow {
    let (mut len, mut idx, mut with_len, mut min) = (false, false, false, 0usize);
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        if o.eq_ignore_ascii_case(b"IDX") {
            idx = true;
        } else if o.eq_ignore_ascii_case(b"LEN") {
            len = true;
        } else if o.eq_ignore_ascii_case(b"WITHMATCHLEN") {
            with_len = true;
        } else if o.eq_ignore_ascii_case(b"MINMATCHLEN") {
            let Some(n) = it.next() else {
                return err(out, SYNTAX);
            };
            let Some(n) = int(n) else {
                return err(out, NOT_INTEGER);
            };
            min = n.max(0) as usize;
        } else {
            return err(out, SYNTAX);
        }
    }
    if len && idx {
        return err(
            out,
            "If you want both the length and indexes, please just use IDX.",
        );
    }
    let store = ctx.db;
    let (va, vb) = {
        let keys = [a, b];
        let mut lock = store.lock_keys(keys.iter().copied());
        (
            lock.get(a, |v| v.unwrap_or_default().to_vec()),
            lock.get(b, |v| v.unwrap_or_default().to_vec()),
        )
    };
    let r = match lcs::lcs(&va, &vb, !len, min, MAX_STRING) {
        Ok(r) => r,
        Err(e) => return err(out, &e.to_string()),
    };
    if idx {
        // A map of two pairs: `%2` in RESP3, a flat array in RESP2.
        if ctx.client.is_resp3() {
            header(out, b'%', 2);
        } else {
            array(out, 4);
        }
        bulk(out, b"matches");
        array(out, r.matches.len());
        for m in &r.matches {
            array(out, 2 + usize::from(with_len));
            for (s, e) in [m.a, m.b] {
                array(out, 2);
                integer(out, s as i64);
                integer(out, e as i64);
            }
            if with_len {
                integer(out, m.len as i64);
            }
        }
        bulk(out, b"len");
        integer(out, r.len as i64);
    } else if len {
        integer(out, r.len as i64);
    } else {
        bulk(out, &r.string);
    }
    Flow::Continue
}

fn rename(ctx: &mut Ctx<'_>, src: &[u8], dst: &[u8], nx: bool, out: &mut Vec<u8>) -> Flow {
    let keys = [src, dst];
    let (value, vset, vdel) = {
        let mut lock = ctx.db.lock_keys(keys.iter().copied());
        // The expiry and encoding move with the value, as in Redis.
        let Some((value, expires, enc)) =
            lock.get_encoded(src, |v| v.map(|(v, e, enc)| (v.to_vec(), e, enc)))
        else {
            return err(out, "no such key");
        };
        if src == dst {
            drop(lock);
            if nx {
                integer(out, 0);
            } else {
                ok(out, Proto::Resp);
            }
            return Flow::Continue;
        }
        if nx && lock.get(dst, |v| v.is_some()) {
            drop(lock);
            integer(out, 0);
            return Flow::Continue;
        }
        let vset = lock.set_encoded(dst, &value, expires, enc);
        let vdel = lock.delete(src);
        (value, vset, vdel)
    };
    if let Some(v) = vset {
        ctx.wrote(dst, Some(&value), v);
    }
    if let Some(v) = vdel {
        ctx.wrote(src, None, v);
    }
    if nx {
        integer(out, 1);
    } else {
        ok(out, Proto::Resp);
    }
    Flow::Continue
}

fn copy(ctx: &mut Ctx<'_>, src: &[u8], dst: &[u8], opts: Args<'_>, out: &mut Vec<u8>) -> Flow {
    let mut replace = false;
    let mut it = opts.iter().peekable();
    while let Some(o) = it.next() {
        if o.eq_ignore_ascii_case(b"REPLACE") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"DB") && it.peek().is_some() {
            let db = it.next().unwrap_or_default();
            match parse_int::<i32>(db) {
                None => return err(out, NOT_INTEGER),
                Some(0) => {}
                Some(_) => return err(out, "DB index is out of range"),
            }
        } else {
            return err(out, SYNTAX);
        }
    }
    if src == dst {
        return err(out, "source and destination objects are the same");
    }
    let keys = [src, dst];
    let (value, version) = {
        let mut lock = ctx.db.lock_keys(keys.iter().copied());
        // The copy keeps the source's expiry and encoding, as in Redis.
        let Some((value, expires, enc)) =
            lock.get_encoded(src, |v| v.map(|(v, e, enc)| (v.to_vec(), e, enc)))
        else {
            drop(lock);
            integer(out, 0);
            return Flow::Continue;
        };
        if !replace && lock.get(dst, |v| v.is_some()) {
            drop(lock);
            integer(out, 0);
            return Flow::Continue;
        }
        let v = lock.set_encoded(dst, &value, expires, enc);
        (value, v)
    };
    if let Some(v) = version {
        ctx.wrote(dst, Some(&value), v);
    }
    integer(out, 1);
    Flow::Continue
}

/// A pseudo-random 64-bit number (a hashed counter; not for secrets).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    STATE.get_or_init(ahash::RandomState::new).hash_one(n)
}

/// A random live key: scans from a random bucket to the first buckets
/// holding live keys (wrapping around), then picks one of those keys.
fn random_key(ctx: &Ctx<'_>) -> Option<Vec<u8>> {
    let store = ctx.db;
    let buckets = store.shape().buckets() as u64;
    let start = random_u64() % buckets.max(1);
    let mut found: Vec<Vec<u8>> = Vec::new();
    for from in [start, 0] {
        let mut cursor = from;
        loop {
            cursor = store.scan_step(cursor, 1, |k| found.push(k.to_vec()));
            if !found.is_empty() || cursor == 0 {
                break;
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    if found.is_empty() {
        return None;
    }
    let i = (random_u64() % found.len() as u64) as usize;
    Some(found.swap_remove(i))
}

/// The encoding Redis would give the string value `v` produced as `how`
/// (`store::Encoding`): stored as given (SET), `int` for a canonical 64-bit
/// integer, `embstr` up to 44 bytes, `raw` beyond; built as a fresh string
/// (INCRBYFLOAT), `embstr`/`raw` by length; edited in place, `raw`.
pub fn encoding_of(v: &[u8], how: Encoding) -> &'static str {
    let canonical_int = || {
        v.len() <= 20
            && parse_int::<i64>(v).is_some_and(|n| itoa::Buffer::new().format(n).as_bytes() == v)
    };
    match how {
        Encoding::Raw => "raw",
        Encoding::Auto if canonical_int() => "int",
        Encoding::Auto | Encoding::Str if v.len() <= 44 => "embstr",
        Encoding::Auto | Encoding::Str => "raw",
    }
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation Redis would use for the value,",
    "    given how it was produced (this store keeps every value as plain bytes).",
    "FREQ <key>",
    "    Not tracked: MerkleKV has no LFU eviction.",
    "IDLETIME <key>",
    "    Return the number of seconds since the key was last written.",
    "REFCOUNT <key>",
    "    Return the number of references of the value: always 1 here.",
    "HELP",
    "    Print this help.",
];

fn object(ctx: &mut Ctx<'_>, args: Args<'_>, out: &mut Vec<u8>) -> Flow {
    let mut it = args.iter();
    let sub = it.next().unwrap_or_default();
    let rest: Vec<&[u8]> = it.collect();
    let eq = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    if eq("HELP") && rest.is_empty() {
        array(out, OBJECT_HELP.len());
        for l in OBJECT_HELP {
            out.push(b'+');
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        return Flow::Continue;
    }
    if !["ENCODING", "FREQ", "IDLETIME", "REFCOUNT"]
        .iter()
        .any(|s| eq(s))
    {
        return err(
            out,
            &format!(
                "unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&sub[..sub.len().min(128)])
            ),
        );
    }
    if rest.len() != 1 {
        return err(
            out,
            &format!(
                "wrong number of arguments for 'object|{}' command",
                String::from_utf8_lossy(sub).to_lowercase()
            ),
        );
    }
    let key = rest[0];
    let db = ctx.db;
    let entry = db
        .get_encoded(key, |v| v.map(|(v, how)| encoding_of(v, how)))
        .zip(db.version(key).map(|v| v.millis()));
    let Some((encoding, written_ms)) = entry else {
        out.extend_from_slice(null(ctx.client.is_resp3()));
        return Flow::Continue;
    };
    if eq("ENCODING") {
        bulk(out, encoding.as_bytes());
    } else if eq("REFCOUNT") {
        integer(out, 1);
    } else if eq("IDLETIME") {
        integer(out, (now_millis().saturating_sub(written_ms) / 1000) as i64);
    } else {
        return err(
            out,
            "An LFU maxmemory policy is not selected, access frequency not tracked. MerkleKV does not evict keys.",
        );
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let auto = |v: &[u8]| encoding_of(v, Encoding::Auto);
        assert_eq!(auto(b"1234"), "int");
        assert_eq!(auto(b"-9223372036854775808"), "int");
        assert_eq!(auto(b"9223372036854775808"), "embstr");
        assert_eq!(auto(b"0123"), "embstr");
        assert_eq!(auto(b"+1"), "embstr");
        assert_eq!(auto(b"hello"), "embstr");
        assert_eq!(auto(&[b'x'; 44]), "embstr");
        assert_eq!(auto(&[b'x'; 45]), "raw");
        // A fresh string is never an integer; an edited one is always raw.
        assert_eq!(encoding_of(b"3", Encoding::Str), "embstr");
        assert_eq!(encoding_of(&[b'1'; 44], Encoding::Str), "embstr");
        assert_eq!(encoding_of(&[b'1'; 45], Encoding::Str), "raw");
        assert_eq!(encoding_of(b"12", Encoding::Raw), "raw");
        assert_eq!(encoding_of(b"", Encoding::Raw), "raw");
    }

    #[test]
    fn bitcount_ranges() {
        assert_eq!(bitcount_range(Args::List(&[])), Ok(None));
        assert_eq!(
            bitcount_range(Args::List(&[b"1", b"-1", b"bit"])),
            Ok(Some((1, -1, true)))
        );
        assert_eq!(bitcount_range(Args::List(&[b"1"])), Err(SYNTAX));
        assert_eq!(bitcount_range(Args::List(&[b"1", b"x"])), Err(NOT_INTEGER));
        assert_eq!(
            bitcount_range(Args::List(&[b"1", b"2", b"bits"])),
            Err(SYNTAX)
        );
    }
}
