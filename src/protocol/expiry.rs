//! Parsing of the key-expiry commands (issue 14): RESP `SET … EX|PX|EXAT|
//! PXAT|KEEPTTL`, `SETEX`, `PSETEX`, `GETEX`, `EXPIRE`, `PEXPIRE`,
//! `EXPIREAT`, `PEXPIREAT`, `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`,
//! `PERSIST`, and the text protocol's `EXPIRE`, `PEXPIRE`, `TTL`, `PTTL`,
//! `PERSIST`, `SETEX`.
//!
//! As for the other Redis commands (`protocol::strings`), the RESP parser
//! checks only the arity: options and numbers are validated when the
//! command runs (`exec::expiry`), so errors come in Redis's order (syntax
//! before numbers) and inside `MULTI` they are errors in `EXEC`'s reply.
//! The text protocol validates its integer at parse time, like `INC`.

use super::Args;

/// Unit of a time argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// What a TTL query reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlQuery {
    /// `TTL` (seconds left, rounded).
    Ttl,
    /// `PTTL` (milliseconds left).
    Pttl,
    /// `EXPIRETIME` (absolute Unix seconds).
    ExpireTime,
    /// `PEXPIRETIME` (absolute Unix milliseconds).
    PexpireTime,
}

/// An expiry command (arguments unvalidated for RESP, see module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryCmd<'a> {
    /// `SET key value opts…` where an option is about expiry.
    Set {
        key: &'a [u8],
        value: &'a [u8],
        opts: Args<'a>,
    },
    /// `SETEX key seconds value` / `PSETEX key ms value`.
    SetEx {
        key: &'a [u8],
        ttl: &'a [u8],
        value: &'a [u8],
        unit: Unit,
    },
    /// `GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]`.
    GetEx { key: &'a [u8], opts: Args<'a> },
    /// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT key time [NX|XX|GT|LT]…`.
    Expire {
        key: &'a [u8],
        time: &'a [u8],
        opts: Args<'a>,
        unit: Unit,
        absolute: bool,
    },
    /// `TTL`/`PTTL`/`EXPIRETIME`/`PEXPIRETIME key`.
    Ttl { key: &'a [u8], query: TtlQuery },
    /// `PERSIST key`.
    Persist(&'a [u8]),
    /// Text `EXPIRE key seconds` / `PEXPIRE key ms` (validated).
    TextExpire {
        key: &'a [u8],
        amount: i64,
        unit: Unit,
    },
    /// Text `TTL key` / `PTTL key`.
    TextTtl { key: &'a [u8], unit: Unit },
    /// Text `PERSIST key`.
    TextPersist(&'a [u8]),
    /// Text `SETEX key seconds value` (value: the rest of the line).
    TextSetEx {
        key: &'a [u8],
        seconds: i64,
        value: &'a [u8],
    },
}

/// The argument count does not fit the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongArity;

/// Parses a RESP expiry command by its upper-cased name; `None` if `name`
/// is not one.
pub fn parse<'a>(upper: &[u8], args: Args<'a>) -> Option<Result<ExpiryCmd<'a>, WrongArity>> {
    let argc = args.len();
    let mut it = args.iter();
    let mut next = || it.next().unwrap_or_default();
    let exactly = |n: usize| if argc == n { Ok(()) } else { Err(WrongArity) };
    let at_least = |n: usize| if argc >= n { Ok(()) } else { Err(WrongArity) };
    let expire = |unit, absolute| (unit, absolute);
    let (unit, absolute) = match upper {
        b"EXPIRE" => expire(Unit::Seconds, false),
        b"PEXPIRE" => expire(Unit::Millis, false),
        b"EXPIREAT" => expire(Unit::Seconds, true),
        b"PEXPIREAT" => expire(Unit::Millis, true),
        b"SETEX" | b"PSETEX" => {
            let unit = if upper == b"SETEX" {
                Unit::Seconds
            } else {
                Unit::Millis
            };
            return Some(exactly(3).map(|()| ExpiryCmd::SetEx {
                key: next(),
                ttl: next(),
                value: next(),
                unit,
            }));
        }
        b"GETEX" => {
            return Some(at_least(1).map(|()| ExpiryCmd::GetEx {
                key: next(),
                opts: args.skip(1),
            }));
        }
        b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME" => {
            let query = match upper {
                b"TTL" => TtlQuery::Ttl,
                b"PTTL" => TtlQuery::Pttl,
                b"EXPIRETIME" => TtlQuery::ExpireTime,
                _ => TtlQuery::PexpireTime,
            };
            return Some(exactly(1).map(|()| ExpiryCmd::Ttl { key: next(), query }));
        }
        b"PERSIST" => return Some(exactly(1).map(|()| ExpiryCmd::Persist(next()))),
        _ => return None,
    };
    Some(at_least(2).map(|()| ExpiryCmd::Expire {
        key: next(),
        time: next(),
        opts: args.skip(2),
        unit,
        absolute,
    }))
}

/// True if `opt` is a `SET` option about expiry (such a `SET` is an
/// [`ExpiryCmd::Set`]).
pub fn is_set_expiry_option(opt: &[u8]) -> bool {
    ["EX", "PX", "EXAT", "PXAT", "KEEPTTL"]
        .iter()
        .any(|o| opt.eq_ignore_ascii_case(o.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &[&'static [u8]]) -> Option<Result<ExpiryCmd<'static>, WrongArity>> {
        let owned: &'static [&'static [u8]] = Box::leak(line[1..].to_vec().into_boxed_slice());
        parse(&line[0].to_ascii_uppercase(), Args::List(owned))
    }

    #[test]
    fn arity_and_shapes() {
        assert_eq!(p(&[b"get", b"k"]), None);
        assert_eq!(p(&[b"ttl"]), Some(Err(WrongArity)));
        assert_eq!(p(&[b"ttl", b"a", b"b"]), Some(Err(WrongArity)));
        assert_eq!(
            p(&[b"pexpiretime", b"k"]),
            Some(Ok(ExpiryCmd::Ttl {
                key: b"k",
                query: TtlQuery::PexpireTime
            }))
        );
        assert_eq!(p(&[b"expire", b"k"]), Some(Err(WrongArity)));
        let Some(Ok(ExpiryCmd::Expire {
            key,
            time,
            opts,
            unit,
            absolute,
        })) = p(&[b"pexpireat", b"k", b"5", b"NX", b"GT"])
        else {
            panic!("not an expire")
        };
        assert_eq!(
            (key, time, unit, absolute),
            (&b"k"[..], &b"5"[..], Unit::Millis, true)
        );
        assert_eq!(opts.iter().collect::<Vec<_>>(), vec![&b"NX"[..], b"GT"]);
        assert_eq!(p(&[b"setex", b"k", b"1"]), Some(Err(WrongArity)));
        assert_eq!(
            p(&[b"psetex", b"k", b"1", b"v"]),
            Some(Ok(ExpiryCmd::SetEx {
                key: b"k",
                ttl: b"1",
                value: b"v",
                unit: Unit::Millis
            }))
        );
        assert_eq!(p(&[b"getex"]), Some(Err(WrongArity)));
        assert_eq!(p(&[b"persist", b"k"]), Some(Ok(ExpiryCmd::Persist(b"k"))));
        assert!(is_set_expiry_option(b"keepttl") && !is_set_expiry_option(b"GET"));
    }
}
