//! Parsing of the RESP string and keyspace commands beyond GET/SET:
//! `INCRBYFLOAT`, `SETRANGE`, `GETRANGE`/`SUBSTR`, `SETBIT`, `GETBIT`,
//! `BITCOUNT`, `LCS`, `RENAME`, `RENAMENX`, `COPY`, `RANDOMKEY`, `TOUCH`,
//! `OBJECT`.
//!
//! Only the arity is checked here. As in Redis, numbers and options are
//! validated when the command runs (`exec::strings`), so inside `MULTI` a
//! bad offset is an error in `EXEC`'s reply rather than an aborted
//! transaction, and errors come in Redis's order (e.g. a missing key
//! before a malformed range for `BITCOUNT`).

use super::Args;

/// The argument count does not fit the command (the caller answers with
/// Redis's "wrong number of arguments" text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongArity;

/// A string or keyspace command (arguments unvalidated, see module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrCmd<'a> {
    /// `INCRBYFLOAT key increment`.
    IncrByFloat { key: &'a [u8], incr: &'a [u8] },
    /// `SETRANGE key offset value`.
    SetRange {
        key: &'a [u8],
        offset: &'a [u8],
        value: &'a [u8],
    },
    /// `GETRANGE key start end` (and its old name `SUBSTR`).
    GetRange {
        key: &'a [u8],
        start: &'a [u8],
        end: &'a [u8],
    },
    /// `SETBIT key offset value`.
    SetBit {
        key: &'a [u8],
        offset: &'a [u8],
        value: &'a [u8],
    },
    /// `GETBIT key offset`.
    GetBit { key: &'a [u8], offset: &'a [u8] },
    /// `BITCOUNT key [start end [BYTE | BIT]]`.
    BitCount { key: &'a [u8], range: Args<'a> },
    /// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`.
    Lcs {
        a: &'a [u8],
        b: &'a [u8],
        opts: Args<'a>,
    },
    /// `RENAME src dst` / `RENAMENX src dst`.
    Rename {
        src: &'a [u8],
        dst: &'a [u8],
        nx: bool,
    },
    /// `COPY src dst [DB n] [REPLACE]`.
    Copy {
        src: &'a [u8],
        dst: &'a [u8],
        opts: Args<'a>,
    },
    /// `RANDOMKEY`.
    RandomKey,
    /// `TOUCH key [key …]`.
    Touch(Args<'a>),
    /// `OBJECT subcommand [arguments]`.
    Object(Args<'a>),
}

/// Parses one of this module's commands; `None` if `upper` names none of
/// them. `upper` is the upper-cased name, `args` the arguments after it.
pub fn parse<'a>(upper: &[u8], args: Args<'a>) -> Option<Result<StrCmd<'a>, WrongArity>> {
    // Redis arity: n exact (name included), -n at least n.
    let arity: i64 = match upper {
        b"INCRBYFLOAT" | b"GETBIT" | b"RENAME" | b"RENAMENX" => 3,
        b"SETRANGE" | b"GETRANGE" | b"SUBSTR" | b"SETBIT" => 4,
        b"BITCOUNT" | b"TOUCH" => -2,
        b"LCS" | b"COPY" => -3,
        b"RANDOMKEY" => 1,
        b"OBJECT" => -2,
        _ => return None,
    };
    let argc = args.len() as i64 + 1;
    if (arity > 0 && argc != arity) || argc < -arity {
        return Some(Err(WrongArity));
    }
    let mut it = args.iter();
    let mut next = || it.next().unwrap_or_default();
    Some(Ok(match upper {
        b"INCRBYFLOAT" => StrCmd::IncrByFloat {
            key: next(),
            incr: next(),
        },
        b"SETRANGE" => StrCmd::SetRange {
            key: next(),
            offset: next(),
            value: next(),
        },
        b"GETRANGE" | b"SUBSTR" => StrCmd::GetRange {
            key: next(),
            start: next(),
            end: next(),
        },
        b"SETBIT" => StrCmd::SetBit {
            key: next(),
            offset: next(),
            value: next(),
        },
        b"GETBIT" => StrCmd::GetBit {
            key: next(),
            offset: next(),
        },
        b"BITCOUNT" => StrCmd::BitCount {
            key: next(),
            range: args.skip(1),
        },
        b"LCS" => StrCmd::Lcs {
            a: next(),
            b: next(),
            opts: args.skip(2),
        },
        b"RENAME" | b"RENAMENX" => StrCmd::Rename {
            src: next(),
            dst: next(),
            nx: upper == b"RENAMENX",
        },
        b"COPY" => StrCmd::Copy {
            src: next(),
            dst: next(),
            opts: args.skip(2),
        },
        b"RANDOMKEY" => StrCmd::RandomKey,
        b"TOUCH" => StrCmd::Touch(args),
        _ => StrCmd::Object(args),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(upper: &str, args: &'a [&'a [u8]]) -> Option<Result<StrCmd<'a>, WrongArity>> {
        parse(upper.as_bytes(), Args::List(args))
    }

    #[test]
    fn arity_like_redis() {
        assert!(p("GET", &[b"k"]).is_none());
        assert_eq!(p("GETRANGE", &[b"k", b"0"]), Some(Err(WrongArity)));
        assert!(p("RANDOMKEY", &[b"x"]).unwrap().is_err());
        assert!(p("TOUCH", &[]).unwrap().is_err());
        assert!(p("LCS", &[b"a"]).unwrap().is_err());
        assert!(p("OBJECT", &[]).unwrap().is_err());
    }

    #[test]
    fn fields() {
        assert_eq!(
            p("SUBSTR", &[b"k", b"1", b"-1"]).unwrap().unwrap(),
            StrCmd::GetRange {
                key: b"k",
                start: b"1",
                end: b"-1"
            }
        );
        assert_eq!(
            p("RENAMENX", &[b"a", b"b"]).unwrap().unwrap(),
            StrCmd::Rename {
                src: b"a",
                dst: b"b",
                nx: true
            }
        );
        let Some(Ok(StrCmd::Lcs { a, b, opts })) = p("LCS", &[b"x", b"y", b"IDX", b"LEN"]) else {
            panic!()
        };
        assert_eq!((a, b, opts.len()), (&b"x"[..], &b"y"[..], 2));
    }
}
