//! Internal anti-entropy commands: their names, arguments, limits and the
//! compact encodings both ends share (RESP only, binary-safe).
//!
//! A round (see `crate::antientropy`) needs these questions answered by the
//! peer, each for many tree nodes, buckets or keys per round trip:
//!
//! | Request | Reply |
//! |---|---|
//! | `MKV.ROOT` | `*7` `:<wire version>` `:<tree bits>` `:<fan-out bits>` `$<node id>` `:<instance>` `$<32-byte root>` `:<records>` |
//! | `MKV.NODES <bits> <level> <index>…` | one bulk string: the 32-byte digests of the nodes, concatenated in request order |
//! | `MKV.BUCKETS <bits> <bucket>…` | `*m` (m ≤ n): per bucket `*2k` of `$<key>` `$<version>` pairs, any order, tombstones included |
//! | `MKV.FETCH <key>…` | `*m` (m ≤ n): per key `*2` `$<value>`-or-`$-1` (tombstone) and `$<version>`, or `*-1` (no record) |
//! | `MKV.ENTRIES <bits> <bucket>…` | like `MKV.BUCKETS` with whole records: per bucket `*3k` of `$<key>` `$<value>`-or-`$-1` `$<version>` |
//!
//! `MKV.ENTRIES` is for buckets the requester does not have at all (a node
//! restarted empty): comparing versions would only say "fetch everything",
//! so it saves the second round trip and sending every key twice.
//! * `<bits>` is the requester's `tree_bits`: a node with a different tree
//!   shape answers `-ERR tree parameters differ …` instead of digests that
//!   would be compared against the wrong nodes. Indices and levels are
//!   base-10 integers checked against that shape.
//! * A `<version>` is 16 bytes: the HLC timestamp then the origin hash, both
//!   big-endian ([`encode_version`]), so byte order is version order. In
//!   `MKV.ENTRIES` and `MKV.FETCH` a live record with an expiry has a
//!   24-byte `<version>`: those 16 bytes then its absolute expiry (Unix
//!   ms, big-endian; [`encode_version_expiry`]). An expired record is
//!   served as the tombstone of its version, so an expired value never
//!   travels.
//! * `<instance>` is a random number drawn when the node starts: a node
//!   that sees its own instance in a peer's `MKV.ROOT` is talking to itself.
//! * `<records>` counts the peer's records (live and tombstones): it tells
//!   the requester how dense the peer's tree is, i.e. whether pulling a
//!   subtree it lacks whole is cheaper than descending into it.
//!
//! # Bounds
//!
//! A request names at most [`MAX_NODES`] nodes, [`MAX_BUCKETS`] buckets or
//! [`MAX_KEYS`] keys; more is refused before anything is allocated for the
//! reply. `MKV.BUCKETS`, `MKV.ENTRIES` and `MKV.FETCH` replies also stop
//! early, after the bucket or entry that takes them past [`REPLY_BUDGET`]
//! bytes (at least one bucket or entry is always answered): `m < n` tells
//! the requester to ask again for the rest. A reply is therefore bounded by the budget plus
//! one bucket or one entry (≤ `store::MAX_VALUE_LEN`).
//!
//! Reference: docs/protocol.md §16.

use std::borrow::Cow;

use super::redis::wrong_args;
use super::{Args, ParseError};
use crate::store::Version;
use crate::store::merkle::FANOUT_BITS;

/// Version of the internal command set; `MKV.ROOT` reports it and a round
/// refuses a peer with another one. 2: leaf digests are SHA-256 truncated
/// to 128 bits (1: full SHA-256), so every digest of the tree differs from
/// a version-1 node's for the same data.
pub const WIRE_VERSION: i64 = 2;
/// Most tree nodes per `MKV.NODES`.
pub const MAX_NODES: usize = 4096;
/// Most buckets per `MKV.BUCKETS` / `MKV.ENTRIES`.
pub const MAX_BUCKETS: usize = 1024;
/// Most keys per `MKV.FETCH`.
pub const MAX_KEYS: usize = 1024;
/// Soft bound on the bytes of one `MKV.BUCKETS`, `MKV.ENTRIES` or `MKV.FETCH` reply.
pub const REPLY_BUDGET: usize = 4 << 20;
/// Largest `tree_bits` a store supports (`store::StoreOptions`).
pub const MAX_TREE_BITS: u32 = 24;

/// An internal command. Every index in it was checked against `bits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Internal<'a> {
    /// `MKV.ROOT`.
    Root,
    /// `MKV.NODES bits level index…`.
    Nodes {
        bits: u32,
        level: u32,
        indices: Args<'a>,
    },
    /// `MKV.BUCKETS bits bucket…` (`values: false`) or
    /// `MKV.ENTRIES bits bucket…` (`values: true`).
    Buckets {
        bits: u32,
        buckets: Args<'a>,
        values: bool,
    },
    /// `MKV.FETCH key…`.
    Fetch(Args<'a>),
}

fn err(msg: String) -> ParseError {
    ParseError(Cow::Owned(msg))
}

fn number(arg: &[u8], what: &str) -> Result<u64, ParseError> {
    // Digits only: `u64::from_str` would also take a leading `+`, which
    // `index` does not.
    Some(arg)
        .filter(|a| a.iter().all(u8::is_ascii_digit))
        .and_then(super::parse_int)
        .ok_or_else(|| {
            err(format!(
                "{what} must be a non-negative integer, got '{}'",
                String::from_utf8_lossy(&arg[..arg.len().min(32)])
            ))
        })
}

fn tree_bits(arg: &[u8]) -> Result<u32, ParseError> {
    let b = number(arg, "tree bits")?;
    if b > MAX_TREE_BITS as u64 || b % FANOUT_BITS as u64 != 0 {
        return Err(err(format!(
            "tree bits must be a multiple of {FANOUT_BITS} up to {MAX_TREE_BITS}, got {b}"
        )));
    }
    Ok(b as u32)
}

/// Checks that every argument is an index below `limit`.
fn indices(args: &Args<'_>, limit: u64, what: &str) -> Result<(), ParseError> {
    for a in args.iter() {
        let i = number(a, what)?;
        if i >= limit {
            return Err(err(format!("{what} {i} out of range (< {limit})")));
        }
    }
    Ok(())
}

fn count(name: &[u8], n: usize, max: usize, what: &str) -> Result<(), ParseError> {
    if n == 0 {
        return Err(wrong_args(name));
    }
    if n > max {
        return Err(err(format!(
            "{}: too many {what} ({n}, at most {max} per call)",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// Parses an internal command. `name` is the upper-cased command name
/// (`MKV.ROOT`, `MKV.NODES`, `MKV.BUCKETS`, `MKV.FETCH` or `MKV.ENTRIES`),
/// `args` the arguments after it.
pub fn parse<'a>(name: &[u8], args: Args<'a>) -> Result<Internal<'a>, ParseError> {
    let mut it = args.iter();
    match name {
        b"MKV.ROOT" => {
            if !args.is_empty() {
                return Err(wrong_args(name));
            }
            Ok(Internal::Root)
        }
        b"MKV.NODES" => {
            let (Some(b), Some(l)) = (it.next(), it.next()) else {
                return Err(wrong_args(name));
            };
            let bits = tree_bits(b)?;
            let depth = bits / FANOUT_BITS;
            let level = number(l, "level")?;
            if level > depth as u64 {
                return Err(err(format!("level {level} out of range (0..={depth})")));
            }
            let level = level as u32;
            let rest = args.skip(2);
            count(name, rest.len(), MAX_NODES, "nodes")?;
            indices(&rest, 1u64 << (FANOUT_BITS * level), "node index")?;
            Ok(Internal::Nodes {
                bits,
                level,
                indices: rest,
            })
        }
        b"MKV.BUCKETS" | b"MKV.ENTRIES" => {
            let values = name == b"MKV.ENTRIES";
            let Some(b) = it.next() else {
                return Err(wrong_args(name));
            };
            let bits = tree_bits(b)?;
            let rest = args.skip(1);
            count(name, rest.len(), MAX_BUCKETS, "buckets")?;
            indices(&rest, 1u64 << bits, "bucket")?;
            Ok(Internal::Buckets {
                bits,
                buckets: rest,
                values,
            })
        }
        b"MKV.FETCH" => {
            count(name, args.len(), MAX_KEYS, "keys")?;
            Ok(Internal::Fetch(args))
        }
        _ => Err(err(format!(
            "unknown command '{}'",
            String::from_utf8_lossy(name)
        ))),
    }
}

/// Parses an index argument already validated by [`parse`].
#[inline]
pub fn index(arg: &[u8]) -> usize {
    arg.iter().fold(0usize, |n, d| {
        n.wrapping_mul(10).wrapping_add((d - b'0') as usize)
    })
}

/// The 16-byte wire form of a version: `hlc` then `node`, big-endian.
pub fn encode_version(v: Version) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.hlc.to_be_bytes());
    b[8..].copy_from_slice(&v.node.to_be_bytes());
    b
}

/// A version, followed by the expiry when there is one (0 = none): 16 or
/// 24 bytes (module docs).
pub fn encode_version_expiry(v: Version, expires: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_version(v));
    if expires != 0 {
        out.extend_from_slice(&expires.to_be_bytes());
    }
}

/// Decodes [`encode_version_expiry`]: `(version, expires)` from 16 or 24
/// bytes (expiry 0 = none).
pub fn decode_version_expiry(b: &[u8]) -> Option<(Version, u64)> {
    match b.len() {
        16 => Some((decode_version(b)?, 0)),
        24 => {
            let (v, e) = b.split_at(16);
            Some((decode_version(v)?, u64::from_be_bytes(e.try_into().ok()?)))
        }
        _ => None,
    }
}

/// Decodes [`encode_version`]; `None` unless exactly 16 bytes.
pub fn decode_version(b: &[u8]) -> Option<Version> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let (hlc, node) = b.split_at(8);
    Some(Version::new(
        u64::from_be_bytes(hlc.try_into().ok()?),
        u64::from_be_bytes(node.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &[&[u8]]) -> Result<Internal<'static>, String> {
        let owned: Vec<&'static [u8]> = line
            .iter()
            .map(|a| &*Box::leak(a.to_vec().into_boxed_slice()))
            .collect();
        let owned: &'static [&'static [u8]] = Box::leak(owned.into_boxed_slice());
        let name = owned[0].to_ascii_uppercase();
        parse(&name, Args::List(&owned[1..])).map_err(|e| e.0.into_owned())
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(p(&[b"mkv.root"]), Ok(Internal::Root));
        let Ok(Internal::Nodes {
            bits,
            level,
            indices,
        }) = p(&[b"MKV.NODES", b"16", b"2", b"0", b"255"])
        else {
            panic!()
        };
        assert_eq!((bits, level), (16, 2));
        assert_eq!(indices.iter().map(index).collect::<Vec<_>>(), vec![0, 255]);
        let Ok(Internal::Buckets {
            bits,
            buckets,
            values,
        }) = p(&[b"MKV.BUCKETS", b"8", b"255"])
        else {
            panic!()
        };
        assert_eq!((bits, buckets.len(), values), (8, 1, false));
        let Ok(Internal::Buckets { values, .. }) = p(&[b"mkv.entries", b"8", b"0", b"1"]) else {
            panic!()
        };
        assert!(values);
        let Ok(Internal::Fetch(keys)) = p(&[b"MKV.FETCH", b"a b", b""]) else {
            panic!()
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a b"[..], b""]);
    }

    #[test]
    fn rejects_bad_arguments_with_clear_errors() {
        let e = |l: &[&[u8]]| p(l).unwrap_err();
        assert_eq!(
            e(&[b"MKV.ROOT", b"x"]),
            "wrong number of arguments for 'mkv.root' command"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"16"]),
            "wrong number of arguments for 'mkv.nodes' command"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"16", b"1"]),
            "wrong number of arguments for 'mkv.nodes' command"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"10", b"1", b"0"]),
            "tree bits must be a multiple of 4 up to 24, got 10"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"16", b"5", b"0"]),
            "level 5 out of range (0..=4)"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"16", b"1", b"16"]),
            "node index 16 out of range (< 16)"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"16", b"1", b"-1"]),
            "node index must be a non-negative integer, got '-1'"
        );
        assert_eq!(
            e(&[b"MKV.BUCKETS", b"4", b"16"]),
            "bucket 16 out of range (< 16)"
        );
        assert_eq!(
            e(&[b"MKV.FETCH"]),
            "wrong number of arguments for 'mkv.fetch' command"
        );
        assert_eq!(
            e(&[b"MKV.NODES", b"99999999999999999999999", b"0", b"0"]),
            "tree bits must be a non-negative integer, got '99999999999999999999999'"
        );
    }

    #[test]
    fn counts_are_bounded() {
        let many: Vec<Vec<u8>> = (0..=MAX_KEYS).map(|i| i.to_string().into_bytes()).collect();
        let mut line: Vec<&[u8]> = vec![b"MKV.FETCH"];
        line.extend(many.iter().map(Vec::as_slice));
        assert_eq!(
            p(&line).unwrap_err(),
            format!("MKV.FETCH: too many keys (1025, at most {MAX_KEYS} per call)")
        );
        line.pop();
        assert!(p(&line).is_ok());
        let mut line: Vec<&[u8]> = vec![b"MKV.BUCKETS", b"16"];
        line.extend(many.iter().map(Vec::as_slice));
        assert!(p(&line).unwrap_err().contains("too many buckets"));
    }

    #[test]
    fn version_encoding_round_trips_and_orders_like_versions() {
        let vs = [
            Version::new(0, 0),
            Version::new(1, u64::MAX),
            Version::new(2, 0),
            Version::new(u64::MAX, 5),
        ];
        for w in vs.windows(2) {
            assert!(encode_version(w[0]) < encode_version(w[1]));
            let mut b = Vec::new();
            encode_version_expiry(w[0], 0, &mut b);
            assert_eq!(decode_version_expiry(&b), Some((w[0], 0)));
            b.clear();
            encode_version_expiry(w[1], 1_700_000_000_123, &mut b);
            assert_eq!(b.len(), 24);
            assert_eq!(decode_version_expiry(&b), Some((w[1], 1_700_000_000_123)));
            assert_eq!(decode_version_expiry(&b[..20]), None);
        }
        for v in vs {
            assert_eq!(decode_version(&encode_version(v)), Some(v));
        }
        assert_eq!(decode_version(&[0; 15]), None);
        assert_eq!(decode_version(&[0; 17]), None);
    }

    #[test]
    fn skip_works_for_every_args_kind() {
        let l: [&[u8]; 3] = [b"a", b"b", b"c"];
        assert_eq!(
            Args::List(&l).skip(2).iter().collect::<Vec<_>>(),
            vec![b"c"]
        );
        let w = Args::Words(" a  b c").skip(2);
        assert_eq!(w.iter().collect::<Vec<_>>(), vec![b"c"]);
        let buf = b"xab";
        let spans = [(1u32, 2u32), (2, 3)];
        assert_eq!(
            Args::Spans(buf, &spans).skip(1).iter().collect::<Vec<_>>(),
            vec![b"b"]
        );
    }
}
