//! Execution of the key-expiry commands of [`crate::protocol::expiry`].
//!
//! Every change of a key's expiry is a write of the whole record under a
//! new version (`store/expiry.rs`): `EXPIRE` rewrites the value with the
//! new expiry, `PERSIST` without one, and the write goes through
//! [`Ctx::wrote`] like any other, so the event and the log carry the
//! record's absolute expiry. Times are checked as Redis checks them
//! (`getExpireMillisecondsOrReply` for `SET`/`SETEX`/`GETEX`: positive and
//! without overflow; `EXPIRE`: any value without overflow, at or before
//! now deletes the key), with Redis's error texts.

use super::{Ctx, Flow};
use crate::protocol::expiry::{ExpiryCmd, TtlQuery, Unit};
use crate::protocol::reply::{Proto, bulk, error, integer, null, ok};
use crate::protocol::{Args, parse_int};
use crate::stats::Counter;
use crate::store::{ExpireFlags, Expired, Written, now_millis};

const NOT_INTEGER: &str = "value is not an integer or out of range";
const SYNTAX: &str = "syntax error";

fn err(out: &mut Vec<u8>, msg: &str) -> Flow {
    error(out, Proto::Resp, msg);
    Flow::Continue
}

fn invalid(out: &mut Vec<u8>, name: &str) -> Flow {
    err(out, &format!("invalid expire time in '{name}' command"))
}

/// A Redis integer: what `string2ll` accepts (no `+`, no spaces).
fn int(arg: &[u8]) -> Option<i64> {
    if arg.first() == Some(&b'+') {
        return None;
    }
    parse_int(arg)
}

/// Why a time argument was refused.
enum TimeError {
    NotInteger,
    Invalid,
}

/// The absolute expiry (Unix ms) of a `SET`/`SETEX`/`GETEX` time: it
/// must be positive and must not overflow (Redis rules).
fn set_time(arg: &[u8], unit: Unit, absolute: bool, now: u64) -> Result<u64, TimeError> {
    let mut ms = int(arg).ok_or(TimeError::NotInteger)?;
    if ms <= 0 || (unit == Unit::Seconds && ms > i64::MAX / 1000) {
        return Err(TimeError::Invalid);
    }
    if unit == Unit::Seconds {
        ms *= 1000;
    }
    if !absolute {
        ms = ms.checked_add(now as i64).ok_or(TimeError::Invalid)?;
    }
    Ok(ms as u64)
}

/// The absolute time (Unix ms, possibly in the past) of an `EXPIRE`.
fn expire_time(arg: &[u8], unit: Unit, absolute: bool, now: u64) -> Result<i64, TimeError> {
    let mut when = int(arg).ok_or(TimeError::NotInteger)?;
    if unit == Unit::Seconds {
        when = when.checked_mul(1000).ok_or(TimeError::Invalid)?;
    }
    if !absolute {
        when = when.checked_add(now as i64).ok_or(TimeError::Invalid)?;
    }
    Ok(when)
}

/// The expiry option of `SET` / `GETEX`.
#[derive(Clone, Copy)]
enum Opt<'a> {
    /// EX/PX/EXAT/PXAT with its unparsed time.
    Time(&'a [u8], Unit, bool),
    Keep,
    Persist,
}

/// Parsed `SET` options.
#[derive(Default)]
struct SetOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    ttl: Option<Opt<'a>>,
}

/// Parses `SET`'s options (`getex: false`) or `GETEX`'s (`true`) with
/// Redis's rules: NX/XX exclusive; one kind of expiry option (the same
/// one may repeat, the last wins); `PERSIST` only for `GETEX`; NX, XX,
/// GET and KEEPTTL only for `SET`. `Err` is a syntax error.
fn parse_opts(opts: Args<'_>, getex: bool) -> Result<SetOpts<'_>, ()> {
    let mut o = SetOpts::default();
    let mut it = opts.iter();
    let is = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
    while let Some(a) = it.next() {
        let time = [
            ("EX", Unit::Seconds, false),
            ("PX", Unit::Millis, false),
            ("EXAT", Unit::Seconds, true),
            ("PXAT", Unit::Millis, true),
        ]
        .into_iter()
        .find(|(w, ..)| is(a, w));
        if let Some((_, unit, absolute)) = time {
            let same = matches!(o.ttl, Some(Opt::Time(_, u, abs)) if u == unit && abs == absolute);
            if o.ttl.is_some() && !same {
                return Err(());
            }
            let t = it.next().ok_or(())?;
            o.ttl = Some(Opt::Time(t, unit, absolute));
        } else if !getex && is(a, "NX") && !o.xx {
            o.nx = true;
        } else if !getex && is(a, "XX") && !o.nx {
            o.xx = true;
        } else if !getex && is(a, "GET") {
            o.get = true;
        } else if !getex && is(a, "KEEPTTL") && matches!(o.ttl, None | Some(Opt::Keep)) {
            o.ttl = Some(Opt::Keep);
        } else if getex && is(a, "PERSIST") && matches!(o.ttl, None | Some(Opt::Persist)) {
            o.ttl = Some(Opt::Persist);
        } else {
            return Err(());
        }
    }
    Ok(o)
}

/// Executes one expiry command, appending its reply to `out`.
pub(super) fn execute(cmd: ExpiryCmd<'_>, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) -> Flow {
    let stats = ctx.stats;
    let db = ctx.db;
    let nil = null(ctx.client.is_resp3());
    match cmd {
        ExpiryCmd::Set { key, value, opts } => {
            stats.incr(Counter::Set);
            let Ok(o) = parse_opts(opts, false) else {
                return err(out, SYNTAX);
            };
            let now = now_millis();
            let mut keep = false;
            let mut expires = 0;
            match o.ttl {
                Some(Opt::Time(t, unit, absolute)) => match set_time(t, unit, absolute, now) {
                    Ok(e) => expires = e,
                    Err(TimeError::NotInteger) => return err(out, NOT_INTEGER),
                    Err(TimeError::Invalid) => return invalid(out, "set"),
                },
                Some(Opt::Keep) => keep = true,
                Some(Opt::Persist) | None => {}
            }
            let (old, written) = {
                // One shard lock around check-and-set: atomic per key.
                let mut lock = db.lock_keys(std::iter::once(key));
                let old = lock.get_with_expiry(key, |v| v.map(|(v, e)| (v.to_vec(), e)));
                let go = !(o.nx && old.is_some() || o.xx && old.is_none());
                let w = if go {
                    if keep {
                        expires = old.as_ref().map_or(0, |(_, e)| *e);
                    }
                    // A time already past stores a record that is expired
                    // at once: it turns into the tombstone of its version
                    // on every node (store/expiry.rs).
                    lock.set_expiring(key, value, expires)
                } else {
                    None
                };
                (old, w)
            };
            if let Some(w) = written {
                ctx.wrote(key, Some(value), w);
            }
            match (o.get, old, written) {
                (true, Some((old, _)), _) => bulk(out, &old),
                (true, None, _) | (false, _, None) => out.extend_from_slice(nil),
                (false, _, Some(_)) => ok(out, Proto::Resp),
            }
        }
        ExpiryCmd::SetEx {
            key,
            ttl,
            value,
            unit,
        } => {
            stats.incr(Counter::Set);
            let name = if unit == Unit::Seconds {
                "setex"
            } else {
                "psetex"
            };
            let expires = match set_time(ttl, unit, false, now_millis()) {
                Ok(e) => e,
                Err(TimeError::NotInteger) => return err(out, NOT_INTEGER),
                Err(TimeError::Invalid) => return invalid(out, name),
            };
            let w = db.set_expiring(key, value, expires);
            ctx.wrote(key, Some(value), w);
            ok(out, Proto::Resp);
        }
        ExpiryCmd::GetEx { key, opts } => {
            stats.incr(Counter::Get);
            let Ok(o) = parse_opts(opts, true) else {
                return err(out, SYNTAX);
            };
            let Some(value) = db.get(key, |v| v.map(<[u8]>::to_vec)) else {
                out.extend_from_slice(nil);
                return Flow::Continue;
            };
            let now = now_millis();
            match o.ttl {
                Some(Opt::Time(t, unit, absolute)) => {
                    let when = match set_time(t, unit, absolute, now) {
                        Ok(e) => e,
                        Err(TimeError::NotInteger) => return err(out, NOT_INTEGER),
                        Err(TimeError::Invalid) => return invalid(out, "getex"),
                    };
                    bulk(out, &value);
                    let flags = ExpireFlags::default();
                    let when = i64::try_from(when).unwrap_or(i64::MAX);
                    expire(ctx, key, when, flags);
                }
                Some(Opt::Persist) => {
                    bulk(out, &value);
                    persist(ctx, key);
                }
                Some(Opt::Keep) | None => bulk(out, &value),
            }
        }
        ExpiryCmd::Expire {
            key,
            time,
            opts,
            unit,
            absolute,
        } => {
            stats.incr(Counter::Set);
            let mut flags = ExpireFlags::default();
            for a in opts.iter() {
                let is = |w: &str| a.eq_ignore_ascii_case(w.as_bytes());
                if is("NX") {
                    flags.nx = true;
                } else if is("XX") {
                    flags.xx = true;
                } else if is("GT") {
                    flags.gt = true;
                } else if is("LT") {
                    flags.lt = true;
                } else {
                    return err(
                        out,
                        &format!("Unsupported option {}", String::from_utf8_lossy(a)),
                    );
                }
            }
            if flags.nx && (flags.xx || flags.gt || flags.lt) {
                return err(
                    out,
                    "NX and XX, GT or LT options at the same time are not compatible",
                );
            }
            if flags.gt && flags.lt {
                return err(out, "GT and LT options at the same time are not compatible");
            }
            let when = match expire_time(time, unit, absolute, now_millis()) {
                Ok(w) => w,
                Err(TimeError::NotInteger) => return err(out, NOT_INTEGER),
                Err(TimeError::Invalid) => {
                    let name = match (unit, absolute) {
                        (Unit::Seconds, false) => "expire",
                        (Unit::Millis, false) => "pexpire",
                        (Unit::Seconds, true) => "expireat",
                        (Unit::Millis, true) => "pexpireat",
                    };
                    return invalid(out, name);
                }
            };
            let changed = expire(ctx, key, when, flags);
            integer(out, i64::from(changed));
        }
        ExpiryCmd::Ttl { key, query } => {
            stats.incr(Counter::Get);
            let n = match db.expiry(key) {
                None => -2,
                Some(0) => -1,
                Some(e) => {
                    let left = e.saturating_sub(now_millis()) as i64;
                    match query {
                        TtlQuery::Ttl => (left + 500) / 1000,
                        TtlQuery::Pttl => left,
                        TtlQuery::ExpireTime => e as i64 / 1000,
                        TtlQuery::PexpireTime => e as i64,
                    }
                }
            };
            integer(out, n);
        }
        ExpiryCmd::Persist(key) => {
            stats.incr(Counter::Set);
            let changed = persist(ctx, key);
            integer(out, i64::from(changed));
        }
        ExpiryCmd::TextExpire { key, amount, unit } => {
            stats.incr(Counter::Set);
            let scale = if unit == Unit::Seconds { 1000 } else { 1 };
            let Some(when) = amount
                .checked_mul(scale)
                .and_then(|ms| ms.checked_add(now_millis() as i64))
            else {
                let word = if unit == Unit::Seconds {
                    "EXPIRE"
                } else {
                    "PEXPIRE"
                };
                error(
                    out,
                    Proto::Text,
                    &format!("{word} command time is out of range"),
                );
                return Flow::Continue;
            };
            if expire(ctx, key, when, ExpireFlags::default()) {
                ok(out, Proto::Text);
            } else {
                out.extend_from_slice(b"NOT_FOUND\r\n");
            }
        }
        ExpiryCmd::TextTtl { key, unit } => {
            stats.incr(Counter::Get);
            let word: &[u8] = if unit == Unit::Seconds {
                b"TTL "
            } else {
                b"PTTL "
            };
            match db.expiry(key) {
                None => out.extend_from_slice(b"NOT_FOUND\r\n"),
                Some(e) => {
                    let n = if e == 0 {
                        -1
                    } else {
                        let left = e.saturating_sub(now_millis()) as i64;
                        if unit == Unit::Seconds {
                            (left + 500) / 1000
                        } else {
                            left
                        }
                    };
                    out.extend_from_slice(word);
                    out.extend_from_slice(n.to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        ExpiryCmd::TextPersist(key) => {
            stats.incr(Counter::Set);
            // OK whether or not the key had an expiry; NOT_FOUND if absent.
            if persist(ctx, key) || db.contains(key) {
                ok(out, Proto::Text);
            } else {
                out.extend_from_slice(b"NOT_FOUND\r\n");
            }
        }
        ExpiryCmd::TextSetEx {
            key,
            seconds,
            value,
        } => {
            stats.incr(Counter::Set);
            let expires = match set_time(
                seconds.to_string().as_bytes(),
                Unit::Seconds,
                false,
                now_millis(),
            ) {
                Ok(e) => e,
                Err(_) => {
                    error(
                        out,
                        Proto::Text,
                        "SETEX command seconds must be a positive integer",
                    );
                    return Flow::Continue;
                }
            };
            let w = db.set_expiring(key, value, expires);
            ctx.wrote(key, Some(value), w);
            ok(out, Proto::Text);
        }
    }
    Flow::Continue
}

/// `EXPIRE` on the store, reporting the write: true if the key's expiry
/// was set (or the key deleted by a time in the past).
fn expire(ctx: &mut Ctx<'_>, key: &[u8], when: i64, flags: ExpireFlags) -> bool {
    let mut value = std::mem::take(ctx.scratch);
    let res = ctx.db.expire(key, when, flags, &mut value);
    let changed = match res {
        Expired::Missing | Expired::Unchanged => false,
        Expired::Set(w) => {
            ctx.wrote(key, Some(&value), w);
            true
        }
        Expired::Deleted(v) => {
            ctx.wrote(key, None, v);
            true
        }
    };
    *ctx.scratch = value;
    changed
}

/// `PERSIST` on the store, reporting the write: true if an expiry was
/// removed.
fn persist(ctx: &mut Ctx<'_>, key: &[u8]) -> bool {
    let mut value = std::mem::take(ctx.scratch);
    let w: Option<Written> = ctx.db.persist(key, &mut value);
    if let Some(w) = w {
        ctx.wrote(key, Some(&value), w);
    }
    *ctx.scratch = value;
    w.is_some()
}
