//! `CONFIG GET` and `CONFIG SET`: Redis's parameter names (and MerkleKV's
//! own setting names where Redis has none) over this node's settings.
//!
//! Run-time changes (docs/protocol.md, `CONFIG SET`): every parameter
//! [`check`] knows changes the value in force, in every worker, at once (the
//! values are atomics: `crate::live`, `crate::limits::Memory`, the slow
//! log, read-only mode, the log crate's maximum level). Every other
//! parameter is read at startup only: setting it to its current value
//! succeeds and changes nothing (tools and Redis's test harness do this),
//! any other value is refused with Redis's immutable-parameter error.
//!
//! All or nothing, as Redis: every name, then every value, is checked
//! before anything is applied; the first failure is reported.

use super::Ctx;
use crate::config::Engine;
use crate::config::types::MAX_BUSY_POLL_US;
use crate::logging;
use crate::metrics;
use crate::protocol::glob;
use crate::protocol::reply::{bulk, map};
use crate::protocol::{Args, parse_int};
use crate::typeparams;

/// The parameters `CONFIG SET` changes at run time (besides Redis's
/// data-type encoding parameters, `typeparams.rs`): those [`check`] turns
/// into a [`Change`]. Names are compared ignoring case.
#[cfg(test)]
const LIVE: &[&str] = &[
    READ_ONLY,
    "maxmemory",
    "maxmemory-clients",
    "maxclients",
    "timeout",
    "client-output-buffer-limit",
    "proto-max-bulk-len",
    "latency-tracking",
    "loglevel",
    LOGGING_LEVEL,
    AUTH_DELAY,
    MAX_AUTH_FAILURES,
    AE_INTERVAL,
    HEAP_TRIM,
    SLOWER_THAN,
    SLOWLOG_LEN,
];

/// Read-only mode (`crate::readonly`), `yes` or `no`.
const READ_ONLY: &str = "read-only";
/// The slow log's threshold in microseconds (negative: off) and length.
const SLOWER_THAN: &str = "slowlog-log-slower-than";
const SLOWLOG_LEN: &str = "slowlog-max-len";
/// MerkleKV's own names (no Redis equivalent, or a finer one).
const LOGGING_LEVEL: &str = "logging.level";
const AUTH_DELAY: &str = "security.auth_failure_delay_ms";
const MAX_AUTH_FAILURES: &str = "security.max_auth_failures";
const AE_INTERVAL: &str = "anti_entropy.interval_seconds";
const HEAP_TRIM: &str = "limits.heap_trim_threshold";
const BUSY_POLL: &str = "network.busy_poll_us";

/// MerkleKV's log level names (`logging.level`), most verbose first.
const LEVELS: [(&str, log::LevelFilter); 6] = [
    ("trace", log::LevelFilter::Trace),
    ("debug", log::LevelFilter::Debug),
    ("info", log::LevelFilter::Info),
    ("warn", log::LevelFilter::Warn),
    ("error", log::LevelFilter::Error),
    ("off", log::LevelFilter::Off),
];

/// The setting behind Redis's `busy-reply-threshold` / `lua-time-limit`.
const BUSY_THRESHOLD: &str = "scripting.busy_reply_threshold_ms";

fn busy_ms(sh: &crate::state::Shared) -> String {
    sh.scripting.threshold().as_millis().to_string()
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.into()
}

/// The parameters `CONFIG GET` knows, with the values in force.
fn params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let sh = &ctx.shared;
    let c = &sh.config;
    let m = &sh.memory;
    let level = logging::level();
    let mut params = vec![
        ("save", String::new()),
        ("appendonly", yes_no(c.engine == Engine::Persistent)),
        ("databases", "1".into()),
        ("bind", c.host.clone()),
        ("port", c.port.to_string()),
        ("maxclients", sh.live.max_connections().to_string()),
        ("timeout", sh.live.timeout_secs().to_string()),
        ("maxmemory", m.maxmemory().to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxmemory-clients", m.clients_budget().to_string()),
        (
            "client-output-buffer-limit",
            format!(
                "normal {} {} {}",
                m.output_hard(),
                m.output_soft(),
                m.output_soft_time().as_secs()
            ),
        ),
        ("io-threads", c.threads.to_string()),
        ("latency-tracking", yes_no(sh.live.latency_tracking())),
        (
            "latency-tracking-info-percentiles",
            metrics::info::percentiles_text(),
        ),
        ("daemonize", "no".into()),
        ("replicaof", String::new()),
        ("proto-max-bulk-len", m.proto_max_bulk_len().to_string()),
        (
            "client-query-buffer-limit",
            crate::protocol::resp::MAX_REQUEST.to_string(),
        ),
        (READ_ONLY, yes_no(sh.read_only.is_on())),
        (SLOWER_THAN, sh.slowlog.slower_than_us().to_string()),
        (SLOWLOG_LEN, sh.slowlog.max_len().to_string()),
        ("loglevel", logging::redis_level_name(level).into()),
        (
            LOGGING_LEVEL,
            LEVELS
                .iter()
                .find(|(_, l)| *l == level)
                .map_or("info", |(n, _)| n)
                .into(),
        ),
        (
            AUTH_DELAY,
            sh.live.auth_failure_delay().as_millis().to_string(),
        ),
        (MAX_AUTH_FAILURES, sh.auth.max_failures().to_string()),
        (AE_INTERVAL, sh.live.ae_interval().as_secs().to_string()),
        (HEAP_TRIM, sh.live.heap_trim_threshold().to_string()),
        (BUSY_POLL, sh.live.busy_poll().as_micros().to_string()),
        ("busy-reply-threshold", busy_ms(sh)),
        ("lua-time-limit", busy_ms(sh)),
        (BUSY_THRESHOLD, busy_ms(sh)),
    ];
    for (i, p) in typeparams::PARAMS.iter().enumerate() {
        let v = sh.type_params.get(i).to_string();
        if let Some(alias) = p.alias {
            params.push((alias, v.clone()));
        }
        params.push((p.name, v));
    }
    params
}

/// One checked `CONFIG SET` change, applied only once every pair passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    ReadOnly(bool),
    Maxmemory(u64),
    ClientsBudget(Budget),
    TypeParam(usize, i64),
    SlowerThan(i64),
    SlowlogLen(usize),
    MaxClients(usize),
    Timeout(u64),
    OutputLimits(OutputLimits),
    ProtoMaxBulkLen(usize),
    LatencyTracking(bool),
    LogLevel(log::LevelFilter),
    AuthDelayMs(u64),
    MaxAuthFailures(u32),
    AeIntervalSecs(u64),
    HeapTrimThreshold(u64),
    BusyThresholdMs(u64),
    BusyPollUs(u64),
}

/// `CONFIG SET name value [name value …]` (see the module docs).
pub fn set(ctx: &Ctx<'_>, pairs: Args<'_>) -> Result<(), String> {
    let params = params(ctx);
    let args: Vec<&[u8]> = pairs.iter().collect();
    let failed = |name: &[u8], why: &str| {
        format!(
            "CONFIG SET failed (possibly related to argument '{}') - {why}",
            String::from_utf8_lossy(name)
        )
    };
    let mut seen: Vec<&[u8]> = Vec::new();
    for pair in args.chunks(2) {
        let name = pair[0];
        if !params
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(name)
            ));
        }
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(failed(name, "duplicate parameter"));
        }
        seen.push(name);
    }
    // Every value is checked before anything changes (Redis's rollback
    // semantics: all or nothing).
    let mut changes = Vec::with_capacity(args.len() / 2);
    let mut budget_name: &[u8] = b"";
    for pair in args.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        match check(name, value).map_err(|e| failed(name, &e))? {
            Some(change) => {
                if matches!(change, Change::ClientsBudget(_)) {
                    budget_name = name;
                }
                changes.push(change);
            }
            None => immutable(ctx, &params, name, value).map_err(|e| failed(name, &e))?,
        }
    }
    // A percentage of maxmemory: of the new one when both are set.
    let maxmemory = changes
        .iter()
        .find_map(|c| match c {
            Change::Maxmemory(m) => Some(*m),
            _ => None,
        })
        .unwrap_or_else(|| ctx.shared.memory.maxmemory());
    for c in &mut changes {
        if let Change::ClientsBudget(Budget::Percent(p)) = *c {
            let b = maxmemory / 100 * p + maxmemory % 100 * p / 100;
            if b < MIN_CLIENTS_BUDGET {
                return Err(failed(
                    budget_name,
                    "the percentage of maxmemory is under 1048576 bytes, the smallest client budget",
                ));
            }
            *c = Change::ClientsBudget(Budget::Bytes(b));
        }
    }
    for c in changes {
        apply(ctx, c);
    }
    Ok(())
}

/// The change `name value` asks for, `None` for a parameter read at
/// startup only, or the reason the value is refused (Redis's text).
fn check(name: &[u8], value: &[u8]) -> Result<Option<Change>, String> {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if let Some(i) = typeparams::find(name) {
        let v = typeparams::parse(i, value).map_err(|e| e.to_string())?;
        return Ok(Some(Change::TypeParam(i, v)));
    }
    let change = if is(READ_ONLY) {
        Change::ReadOnly(parse_yes_no(value)?)
    } else if is("latency-tracking") {
        Change::LatencyTracking(parse_yes_no(value)?)
    } else if is("maxmemory") {
        Change::Maxmemory(parse_memory(value).ok_or("argument must be a memory value")?)
    } else if is("maxmemory-clients") {
        Change::ClientsBudget(parse_budget(value)?)
    } else if is(SLOWER_THAN) {
        Change::SlowerThan(int_in(value, i64::MIN, i64::MAX)?)
    } else if is(SLOWLOG_LEN) {
        Change::SlowlogLen(int_in(value, 0, crate::slowlog::MAX_MAX_LEN as i64)? as usize)
    } else if is("maxclients") {
        Change::MaxClients(int_in(value, 1, u32::MAX.into())? as usize)
    } else if is("timeout") {
        Change::Timeout(int_in(value, 0, i32::MAX.into())? as u64)
    } else if is("client-output-buffer-limit") {
        Change::OutputLimits(parse_output_limits(value)?)
    } else if is("proto-max-bulk-len") {
        let n = parse_memory(value).ok_or("argument must be a memory value")?;
        let (min, max) = (MIN_BULK, crate::store::MAX_VALUE_LEN as u64);
        if !(min..=max).contains(&n) {
            return Err(format!(
                "argument must be between {min} and {max} inclusive"
            ));
        }
        Change::ProtoMaxBulkLen(n as usize)
    } else if is("loglevel") {
        Change::LogLevel(choice(value, &logging::REDIS_LEVELS)?)
    } else if is(LOGGING_LEVEL) {
        Change::LogLevel(choice(value, &LEVELS)?)
    } else if is(AUTH_DELAY) {
        Change::AuthDelayMs(int_in(value, 0, MAX_AUTH_DELAY_MS)? as u64)
    } else if is(MAX_AUTH_FAILURES) {
        Change::MaxAuthFailures(int_in(value, 1, MAX_MAX_AUTH_FAILURES)? as u32)
    } else if is(AE_INTERVAL) {
        Change::AeIntervalSecs(int_in(value, 1, MAX_SECS)? as u64)
    } else if is("busy-reply-threshold") || is("lua-time-limit") || is(BUSY_THRESHOLD) {
        Change::BusyThresholdMs(int_in(value, 0, 3_600_000)? as u64)
    } else if is(HEAP_TRIM) {
        Change::HeapTrimThreshold(int_in(value, 0, i64::MAX)? as u64)
    } else if is(BUSY_POLL) {
        Change::BusyPollUs(int_in(value, 0, MAX_BUSY_POLL_US as i64)? as u64)
    } else {
        return Ok(None);
    };
    Ok(Some(change))
}

/// Smallest `proto-max-bulk-len` (as the setting `limits.proto_max_bulk_len`).
const MIN_BULK: u64 = 1024;
/// Largest `security.auth_failure_delay_ms` (as the setting).
const MAX_AUTH_DELAY_MS: i64 = 10_000;
/// Largest `security.max_auth_failures` (as the setting).
const MAX_MAX_AUTH_FAILURES: i64 = 1000;
/// Largest interval in seconds (as the settings: ten years).
const MAX_SECS: i64 = 10 * 365 * 86_400;

/// A parameter read at startup only: its current value is accepted (no
/// change), any other refused.
fn immutable(
    ctx: &Ctx<'_>,
    params: &[(&'static str, String)],
    name: &[u8],
    value: &[u8],
) -> Result<(), String> {
    let current = params
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_bytes())
        .unwrap_or_default();
    if current == value {
        return Ok(());
    }
    if name.eq_ignore_ascii_case(b"port") {
        // The port cannot change at run time either way; a port another
        // process holds is reported as such (as Redis does).
        let port = parse_int::<u16>(value).ok_or("argument couldn't be parsed into an integer")?;
        let host = ctx.shared.config.host.as_str();
        if let Err(e) = std::net::TcpListener::bind((host, port)) {
            return Err(format!("Unable to listen on this port: {e}"));
        }
    }
    Err("can't set immutable config (MerkleKV reads it at startup only)".into())
}

fn apply(ctx: &Ctx<'_>, change: Change) {
    let sh = &ctx.shared;
    match change {
        Change::ReadOnly(on) => sh.read_only.set(on),
        Change::Maxmemory(m) => sh.memory.set_maxmemory(m),
        Change::ClientsBudget(Budget::Bytes(b)) => sh.memory.set_clients_budget(b),
        // Resolved to bytes before anything is applied.
        Change::ClientsBudget(Budget::Percent(_)) => {}
        Change::TypeParam(i, v) => sh.type_params.set(i, v),
        Change::SlowerThan(us) => sh.slowlog.set_slower_than_us(us),
        Change::SlowlogLen(n) => sh.slowlog.set_max_len(n),
        Change::MaxClients(n) => sh.live.set_max_connections(n),
        Change::Timeout(s) => sh.live.set_timeout_secs(s),
        Change::OutputLimits(o) => sh.memory.set_output_limits(o.hard, o.soft, o.soft_secs),
        Change::ProtoMaxBulkLen(n) => sh.memory.set_proto_max_bulk_len(n),
        Change::LatencyTracking(on) => sh.live.set_latency_tracking(on),
        Change::LogLevel(l) => logging::set_level(l),
        Change::AuthDelayMs(ms) => sh.live.set_auth_failure_delay_ms(ms),
        Change::MaxAuthFailures(n) => sh.auth.set_max_failures(n),
        Change::AeIntervalSecs(s) => sh.live.set_ae_interval_secs(s),
        Change::HeapTrimThreshold(b) => sh.live.set_heap_trim_threshold(b),
        Change::BusyThresholdMs(ms) => sh.scripting.set_threshold_ms(ms),
        Change::BusyPollUs(us) => sh.live.set_busy_poll_us(us),
    }
}

fn parse_yes_no(v: &[u8]) -> Result<bool, String> {
    if v.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if v.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".into())
    }
}

/// An integer in `min..=max`, with Redis's errors.
fn int_in(v: &[u8], min: i64, max: i64) -> Result<i64, String> {
    match parse_int::<i64>(v) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(format!(
            "argument must be between {min} and {max} inclusive"
        )),
        None => Err("argument couldn't be parsed into an integer".into()),
    }
}

/// One of `names` (any case), with Redis's enum error.
fn choice<T: Copy>(v: &[u8], names: &[(&str, T)]) -> Result<T, String> {
    names
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(v))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            format!(
                "argument(s) must be one of the following: {}",
                all.join(", ")
            )
        })
}

/// The `normal` class of `client-output-buffer-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutputLimits {
    hard: usize,
    soft: usize,
    soft_secs: u64,
}

/// Largest soft-limit time (as the setting
/// `limits.client_output_buffer_soft_seconds`: ten years).
const MAX_SOFT_SECS: u64 = MAX_SECS as u64;

/// Parses Redis's `client-output-buffer-limit` value: groups of `<class>
/// <hard> <soft> <soft seconds>` (memory values, seconds), the last group
/// of a class winning. This node has one class, `normal`, which every
/// connection (Pub/Sub subscribers and monitors too) is bounded by; the
/// other Redis classes name connections this node does not have, and are
/// refused as Redis refuses an unknown class.
fn parse_output_limits(v: &[u8]) -> Result<OutputLimits, &'static str> {
    let words: Vec<&[u8]> = v.split(|&b| b == b' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.");
    }
    let mut limits = None;
    for group in words.chunks(4) {
        if !group[0].eq_ignore_ascii_case(b"normal") {
            return Err("Invalid client class specified in buffer limit configuration.");
        }
        let bad = "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let hard = parse_memory(group[1]).ok_or(bad)?;
        let soft = parse_memory(group[2]).ok_or(bad)?;
        let secs = parse_int::<u64>(group[3])
            .filter(|&s| s <= MAX_SOFT_SECS)
            .ok_or(bad)?;
        limits = Some(OutputLimits {
            hard: usize::try_from(hard).map_err(|_| bad)?,
            soft: usize::try_from(soft).map_err(|_| bad)?,
            soft_secs: secs,
        });
    }
    limits.ok_or("Wrong number of arguments in buffer limit configuration.")
}

/// Smallest `maxmemory-clients` (as the setting `limits.maxmemory_clients`).
const MIN_CLIENTS_BUDGET: u64 = 1 << 20;

/// A `maxmemory-clients` value: bytes, or a percentage of `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Bytes(u64),
    Percent(u64),
}

/// Parses a `maxmemory-clients` value as Redis does (`N%` of maxmemory,
/// at most 100, or a memory value); at least 1 MiB here.
fn parse_budget(v: &[u8]) -> Result<Budget, &'static str> {
    if let Some(p) = v.strip_suffix(b"%") {
        return match parse_int::<u64>(p) {
            Some(p) if p > 100 => Err("percentage argument must be less or equal to 100"),
            Some(p) => Ok(Budget::Percent(p)),
            None => Err("argument must be a memory or percent value"),
        };
    }
    match parse_memory(v) {
        Some(b) if b >= MIN_CLIENTS_BUDGET => Ok(Budget::Bytes(b)),
        Some(_) => Err("argument must be at least 1048576 bytes"),
        None => Err("argument must be a memory or percent value"),
    }
}

/// Parses a Redis memory value: digits with an optional unit `b`, `k`,
/// `kb`, `m`, `mb`, `g`, `gb` (any case; `k` = 1000, `kb` = 1024).
fn parse_memory(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = parse_int::<u64>(&v[..digits])?;
    let unit = v[digits..].to_ascii_lowercase();
    let mul: u64 = match unit.as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1 << 10,
        b"m" => 1000 * 1000,
        b"mb" => 1 << 20,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// `CONFIG GET pattern…`: a map of the matching parameters.
pub fn get(ctx: &Ctx<'_>, patterns: Args<'_>, out: &mut Vec<u8>, resp3: bool) {
    let params = params(ctx);
    // Over-long patterns were refused by the parser; one that still fails
    // to compile matches nothing.
    let patterns: Vec<_> = patterns
        .iter()
        .filter_map(|p| glob::Pattern::new(&p.to_ascii_lowercase()).ok())
        .collect();
    let hits: Vec<_> = params
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| p.matches(name.as_bytes())))
        .collect();
    map(out, hits.len(), resp3);
    for (name, value) in hits {
        bulk(out, name.as_bytes());
        bulk(out, value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_parse_as_in_redis() {
        assert_eq!(parse_memory(b"10000002"), Some(10_000_002));
        assert_eq!(parse_memory(b"1k"), Some(1000));
        assert_eq!(parse_memory(b"1KB"), Some(1024));
        assert_eq!(parse_memory(b"2mb"), Some(2 << 20));
        assert_eq!(parse_memory(b"1g"), Some(1_000_000_000));
        assert_eq!(parse_memory(b"3gb"), Some(3 << 30));
        for bad in [
            &b""[..],
            b"-1",
            b"1x",
            b"kb",
            b"99999999999999999999",
            b"1 mb",
        ] {
            assert_eq!(parse_memory(bad), None, "{bad:?}");
        }
        assert_eq!(parse_memory(b"18446744073709551615gb"), None);
    }

    #[test]
    fn client_budgets_are_bytes_or_percentages() {
        assert_eq!(parse_budget(b"10%"), Ok(Budget::Percent(10)));
        assert_eq!(parse_budget(b"100%"), Ok(Budget::Percent(100)));
        assert_eq!(
            parse_budget(b"200%"),
            Err("percentage argument must be less or equal to 100")
        );
        assert_eq!(parse_budget(b"2mb"), Ok(Budget::Bytes(2 << 20)));
        assert_eq!(
            parse_budget(b"1000"),
            Err("argument must be at least 1048576 bytes")
        );
        assert_eq!(
            parse_budget(b"x%"),
            Err("argument must be a memory or percent value")
        );
    }

    #[test]
    fn output_limits_parse_as_in_redis() {
        assert_eq!(
            parse_output_limits(b"normal 1mb 512kb 10"),
            Ok(OutputLimits {
                hard: 1 << 20,
                soft: 512 << 10,
                soft_secs: 10
            })
        );
        // The last group of a class wins.
        assert_eq!(
            parse_output_limits(b"normal 1 2 3 NORMAL 0 0 0").map(|o| o.hard),
            Ok(0)
        );
        for (bad, why) in [
            (&b"normal 1 2"[..], "Wrong number"),
            (b"", "Wrong number"),
            (b"pubsub 1 2 3", "Invalid client class"),
            (b"master 1 2 3", "Invalid client class"),
            (b"normal x 2 3", "Error in hard"),
            (b"normal 1 2 -3", "Error in hard"),
        ] {
            let e = parse_output_limits(bad).unwrap_err();
            assert!(e.starts_with(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn live_values_are_checked_with_redis_errors() {
        assert_eq!(check(b"timeout", b"5"), Ok(Some(Change::Timeout(5))));
        assert_eq!(
            check(b"TIMEOUT", b"-1"),
            Err("argument must be between 0 and 2147483647 inclusive".into())
        );
        assert_eq!(
            check(b"maxclients", b"x"),
            Err("argument couldn't be parsed into an integer".into())
        );
        assert_eq!(
            check(b"maxclients", b"0"),
            Err("argument must be between 1 and 4294967295 inclusive".into())
        );
        assert_eq!(
            check(b"proto-max-bulk-len", b"4kb"),
            Ok(Some(Change::ProtoMaxBulkLen(4096)))
        );
        assert_eq!(
            check(b"proto-max-bulk-len", b"512mb"),
            Err("argument must be between 1024 and 8388608 inclusive".into())
        );
        assert_eq!(
            check(b"loglevel", b"verbose"),
            Ok(Some(Change::LogLevel(log::LevelFilter::Debug)))
        );
        assert_eq!(
            check(b"loglevel", b"loud"),
            Err("argument(s) must be one of the following: debug, verbose, notice, warning".into())
        );
        assert_eq!(
            check(b"logging.level", b"TRACE"),
            Ok(Some(Change::LogLevel(log::LevelFilter::Trace)))
        );
        assert_eq!(
            check(b"latency-tracking", b"maybe"),
            Err("argument must be 'yes' or 'no'".into())
        );
        assert_eq!(
            check(b"security.auth_failure_delay_ms", b"10001"),
            Err("argument must be between 0 and 10000 inclusive".into())
        );
        assert_eq!(
            check(b"anti_entropy.interval_seconds", b"0"),
            Err("argument must be between 1 and 315360000 inclusive".into())
        );
        assert_eq!(
            check(b"security.max_auth_failures", b"3"),
            Ok(Some(Change::MaxAuthFailures(3)))
        );
        assert_eq!(check(b"port", b"1"), Ok(None));
        for name in LIVE {
            assert_ne!(check(name.as_bytes(), b"?"), Ok(None), "{name}");
        }
        assert_eq!(check(b"io-threads", b"1"), Ok(None));
    }
}
