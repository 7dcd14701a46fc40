//! Execution of the RESP-only Redis-compatibility commands
//! ([`crate::protocol::redis::Redis`]): introspection, client bookkeeping,
//! cursors, `SET` options. Replies are RESP2.
//!
//! Writes (`SET … NX|XX|GET`) go through [`Ctx::wrote`] like every other
//! local write, so they replicate exactly like text-protocol writes.
//!
//! RESP3: `HELLO 3` switches a connection to RESP3 (current redis-py
//! versions ask for it by default and fail on `-NOPROTO`). The replies of
//! this server's commands are the same in both versions except nulls
//! (`_` instead of `$-1`/`*-1`) and the map-typed replies of `HELLO`,
//! `CONFIG GET` and `COMMAND DOCS` (`%n` instead of a flat array of 2n).
//!
//! Compatibility level: tools read `redis_version` (INFO) and `version`
//! (HELLO) to pick features; this server reports [`REDIS_COMPAT_VERSION`],
//! the Redis release whose RESP2 replies it follows for the commands it
//! has, and its own version in `merklekv_version`.

use std::fmt::Write as _;

use super::{Ctx, Flow};
use crate::config::Engine;
use crate::metrics;
use crate::protocol::glob;
use crate::protocol::redis::{
    COMMANDS, ClientFilter, ClientKill, CommandQuery, CommandSpec, ListFilter, MemoryQuery,
    PubSubQuery, Redis, SetCond, SlowLogQuery, categories, key_flags, key_positions, spec,
    subcommands,
};
use crate::protocol::reply::{
    NIL_ARRAY, NULL3, Proto, array, bulk, insert_counted, integer, map, null, ok,
};
use crate::protocol::{Args, parse_int};
use crate::pubsub::SubOp;
use crate::stats::{ClientInfo, ClientType, Counter, rss_kb};

/// The Redis version whose RESP2 behaviour this server follows.
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Executes one RESP-only command, appending its reply to `out`.
pub(super) fn execute(cmd: Redis<'_>, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) -> Flow {
    let stats = ctx.stats;
    let resp3 = ctx.client.is_resp3();
    let nil = null(resp3);
    match cmd {
        Redis::Command(q) => {
            stats.incr(Counter::Management);
            command(q, out, resp3);
        }
        Redis::ConfigGet(patterns) => {
            stats.incr(Counter::Management);
            super::config::get(ctx, patterns, out, resp3);
        }
        Redis::ConfigSet(pairs) => {
            stats.incr(Counter::Management);
            match super::config::set(ctx, pairs) {
                Ok(()) => ok(out, Proto::Resp),
                Err(e) => crate::protocol::reply::error(out, Proto::Resp, &e),
            }
        }
        Redis::ConfigResetStat => {
            stats.incr(Counter::Management);
            ctx.shared.stats.reset_command_stats();
            ok(out, Proto::Resp);
        }
        Redis::ClientSetName(name) => {
            stats.incr(Counter::Management);
            let name = String::from_utf8_lossy(name).into_owned();
            ctx.client.update_meta(|m| m.name = name);
            ok(out, Proto::Resp);
        }
        Redis::ClientGetName => {
            stats.incr(Counter::Management);
            let m = ctx.client.meta();
            if m.name.is_empty() {
                out.extend_from_slice(nil);
            } else {
                bulk(out, m.name.as_bytes());
            }
        }
        Redis::ClientSetInfo { lib_ver, value } => {
            stats.incr(Counter::Management);
            let v = String::from_utf8_lossy(value).into_owned();
            ctx.client.update_meta(|m| {
                if lib_ver {
                    m.lib_ver = v;
                } else {
                    m.lib_name = v;
                }
            });
            ok(out, Proto::Resp);
        }
        Redis::ClientNoEvict(on) => {
            stats.incr(Counter::Management);
            ctx.client.set_no_evict(on);
            ok(out, Proto::Resp);
        }
        Redis::ClientId => {
            stats.incr(Counter::Management);
            integer(out, ctx.client.id as i64);
        }
        Redis::ClientList(filter) => {
            stats.incr(Counter::ClientList);
            stats.incr(Counter::Management);
            let mut s = String::new();
            let now_ms = ctx.shared.stats.elapsed_ms(ctx.now);
            for c in ctx.shared.stats.clients() {
                let shown = match filter {
                    ClientFilter::All => true,
                    ClientFilter::Type(t) => t == client_type(&c),
                    ClientFilter::Ids(ids) => ids.iter().any(|i| parse_int::<u64>(i) == Some(c.id)),
                };
                if shown {
                    let user = user_name(ctx, &c);
                    c.write_redis_line(&mut s, ctx.now, now_ms, user);
                }
            }
            bulk(out, s.as_bytes());
        }
        Redis::ClientInfo => {
            stats.incr(Counter::Management);
            let mut s = String::new();
            let now_ms = ctx.shared.stats.elapsed_ms(ctx.now);
            let user = user_name(ctx, ctx.client);
            ctx.client.write_redis_line(&mut s, ctx.now, now_ms, user);
            bulk(out, s.as_bytes());
        }
        Redis::ClientKill(k) => {
            stats.incr(Counter::Management);
            return client_kill(ctx, k, out);
        }
        Redis::Monitor => {
            stats.incr(Counter::Management);
            return Flow::Monitor;
        }
        Redis::Save => {
            stats.incr(Counter::Management);
            if ctx.shared.persist.is_none() {
                crate::protocol::reply::error(out, Proto::Resp, NO_PERSISTENCE);
                return Flow::Continue;
            }
            return Flow::Defer(crate::jobs::Task::Save);
        }
        Redis::BgSave { schedule } => {
            stats.incr(Counter::Management);
            let Some(p) = &ctx.shared.persist else {
                crate::protocol::reply::error(out, Proto::Resp, NO_PERSISTENCE);
                return Flow::Continue;
            };
            if p.request_snapshot(schedule) {
                simple(out, "Background saving started");
            } else if schedule {
                simple(out, "Background saving scheduled");
            } else {
                crate::protocol::reply::error(
                    out,
                    Proto::Resp,
                    "Background save already in progress",
                );
            }
        }
        Redis::LastSave => {
            stats.incr(Counter::Management);
            // As in Redis: the start time until a snapshot succeeds.
            let started = crate::clock::since_epoch()
                .saturating_sub(ctx.shared.stats.started().elapsed())
                .as_secs();
            let last = ctx
                .shared
                .persist
                .as_ref()
                .and_then(|p| p.last_snapshot_unix());
            integer(out, last.unwrap_or(started) as i64);
        }
        Redis::ClientReply(mode) => {
            use crate::stats::ReplyMode;
            stats.incr(Counter::Management);
            // As in Redis: ON answers +OK (and cancels a pending skip);
            // OFF and SKIP answer nothing; SKIP while OFF changes nothing.
            match mode {
                ReplyMode::On => {
                    ctx.client.set_reply_mode(ReplyMode::On);
                    ok(out, Proto::Resp);
                }
                ReplyMode::SkipNext if ctx.client.reply_mode() == ReplyMode::Off => {}
                m => ctx.client.set_reply_mode(m),
            }
        }
        Redis::Hello {
            protover, setname, ..
        } => {
            stats.incr(Counter::Management);
            if let Some(p) = protover {
                ctx.client.set_resp3(p == 3);
            }
            if let Some(n) = setname {
                let n = String::from_utf8_lossy(n).into_owned();
                ctx.client.update_meta(|m| m.name = n);
            }
            hello(ctx, out);
        }
        Redis::Scan {
            cursor,
            pattern,
            count,
            any_type,
        } => {
            stats.incr(Counter::Scan);
            let pattern = match pattern.map(glob::Pattern::new).transpose() {
                Ok(p) => p,
                Err(e) => {
                    crate::protocol::reply::error(out, Proto::Resp, &e.to_string());
                    return Flow::Continue;
                }
            };
            let mut keys = Vec::new();
            let mut n = 0;
            let room = ctx.out_limit.saturating_sub(out.len());
            let mut cut = false;
            let next = ctx.db.scan_step(cursor, count, |k| {
                if any_type && !cut && pattern.as_ref().is_none_or(|p| p.matches(k)) {
                    cut = keys.len() + k.len() > room;
                    if !cut {
                        bulk(&mut keys, k);
                        n += 1;
                    }
                }
            });
            if cut {
                ctx.cut = true;
                return Flow::Continue;
            }
            array(out, 2);
            bulk(out, itoa::Buffer::new().format(next).as_bytes());
            array(out, n);
            out.extend_from_slice(&keys);
        }
        Redis::Keys(pattern) => {
            stats.incr(Counter::Scan);
            let store = ctx.db;
            let prefix = glob::literal_prefix(pattern);
            let pattern = match glob::Pattern::new(pattern) {
                Ok(p) => p,
                Err(e) => {
                    crate::protocol::reply::error(out, Proto::Resp, &e.to_string());
                    return Flow::Continue;
                }
            };
            // Written straight into the reply (count inserted at the end),
            // and only up to the output limit: the key space is never
            // copied as a whole.
            let start = out.len();
            let limit = ctx.out_limit;
            let mut n = 0;
            let mut cut = false;
            let now = crate::store::now_millis();
            for i in 0..store.shard_count() {
                store.for_each_in_shard(i, |r| {
                    let k = r.key();
                    if !cut && r.is_live(now) && k.starts_with(prefix) && pattern.matches(k) {
                        cut = out.len() + k.len() > limit;
                        if !cut {
                            bulk(out, k);
                            n += 1;
                        }
                    }
                });
                if cut {
                    ctx.cut = true;
                    return Flow::Continue;
                }
            }
            insert_counted(out, start, b"*", n);
        }
        Redis::Info(sections) => {
            stats.incr(Counter::Stat);
            let mut s = String::new();
            info(ctx, sections, &mut s);
            bulk(out, s.as_bytes());
        }
        Redis::SetWith {
            key,
            value,
            cond,
            get,
        } => {
            stats.incr(Counter::Set);
            let store = ctx.db;
            let (old, version) = {
                // One shard lock around check-and-set: atomic per key.
                let mut lock = store.lock_keys(std::iter::once(key));
                let old = lock.get(key, |v| v.map(<[u8]>::to_vec));
                let go = match cond {
                    None => true,
                    Some(SetCond::Nx) => old.is_none(),
                    Some(SetCond::Xx) => old.is_some(),
                };
                (old, if go { lock.set(key, value) } else { None })
            };
            if let Some(v) = version {
                ctx.wrote(key, Some(value), v);
            }
            match (get, old, version) {
                (true, Some(old), _) => bulk(out, &old),
                (true, None, _) | (false, _, None) => out.extend_from_slice(nil),
                (false, _, Some(_)) => ok(out, Proto::Resp),
            }
        }
        Redis::SetNx(key, value) => {
            stats.incr(Counter::Set);
            let version = {
                let mut lock = ctx.db.lock_keys(std::iter::once(key));
                if lock.get(key, |v| v.is_some()) {
                    None
                } else {
                    lock.set(key, value)
                }
            };
            if let Some(v) = version {
                ctx.wrote(key, Some(value), v);
            }
            integer(out, i64::from(version.is_some()));
        }
        Redis::GetDel(key) => {
            stats.incr(Counter::Get);
            stats.incr(Counter::Delete);
            let (old, version) = {
                let mut lock = ctx.db.lock_keys(std::iter::once(key));
                let old = lock.get(key, |v| v.map(<[u8]>::to_vec));
                (old, lock.delete(key))
            };
            if let Some(v) = version {
                ctx.wrote(key, None, v);
            }
            match old {
                Some(old) => bulk(out, &old),
                None => out.extend_from_slice(nil),
            }
        }
        Redis::MSetNx(pairs) => {
            stats.incr(Counter::Bulk);
            let set = super::mset(ctx, pairs, true);
            integer(out, i64::from(set));
        }
        Redis::Type(key) => {
            stats.incr(Counter::Get);
            let exists = ctx.db.contains(key);
            simple(out, if exists { "string" } else { "none" });
        }
        // Transactions need the connection's state: the worker hands them
        // to `exec::tx::step` before they get here.
        Redis::Multi | Redis::Exec | Redis::Discard | Redis::Watch(_) | Redis::Unwatch => {
            out.extend_from_slice(b"-ERR transactions need a client connection\r\n");
        }
        Redis::Str(c) => return super::strings::execute(c, ctx, out),
        Redis::Time => {
            stats.incr(Counter::Management);
            let now = crate::clock::since_epoch();
            array(out, 2);
            bulk(out, itoa::Buffer::new().format(now.as_secs()).as_bytes());
            bulk(
                out,
                itoa::Buffer::new().format(now.subsec_micros()).as_bytes(),
            );
        }
        Redis::Reset => {
            stats.incr(Counter::Management);
            ctx.client.set_resp3(false);
            ctx.client.set_reply_mode(crate::stats::ReplyMode::On);
            // The library strings stay: they still describe the client
            // behind the connection (Redis 7.2).
            ctx.client.update_meta(|m| m.name.clear());
            ctx.client.set_no_evict(false);
            // (The worker also ends monitor mode.)
            out.extend_from_slice(b"+RESET\r\n");
        }
        Redis::Run(r) => return super::script::run(ctx, r, out),
        Redis::Script(a) => return super::script::admin(ctx, a, out),
        Redis::Subscribe { kind, names } | Redis::Unsubscribe { kind, names } => {
            let subscribe = matches!(cmd, Redis::Subscribe { .. });
            return Flow::PubSub(SubOp {
                subscribe,
                kind,
                names: names.iter().map(<[u8]>::to_vec).collect(),
            });
        }
        Redis::Publish {
            channel,
            message,
            shard,
        } => {
            let ps = &ctx.shared.pubsub;
            let n = if shard {
                ps.spublish(channel, message)
            } else {
                ps.publish(channel, message)
            };
            integer(out, n as i64);
        }
        Redis::PubSub(q) => pubsub_query(ctx, q, out),
        Redis::Memory(q) => memory(ctx, q, out),
        Redis::SlowLog(q) => slowlog(ctx, q, out),
        Redis::ModuleList => array(out, 0),
        Redis::Help(container) => help(out, container_help(container)),
    }
    Flow::Continue
}

/// `PUBSUB CHANNELS | NUMSUB | NUMPAT | HELP` (this node's subscriptions).
fn pubsub_query(ctx: &Ctx<'_>, q: PubSubQuery<'_>, out: &mut Vec<u8>) {
    let ps = &ctx.shared.pubsub;
    match q {
        PubSubQuery::Channels { pattern, shard } => {
            let pattern = pattern.and_then(|p| glob::Pattern::new(p).ok());
            let mut names = ps.channels(pattern.as_ref(), shard);
            names.sort_unstable();
            array(out, names.len());
            names.iter().for_each(|n| bulk(out, n));
        }
        PubSubQuery::NumSub { channels, shard } => {
            array(out, channels.len() * 2);
            for c in channels.iter() {
                bulk(out, c);
                integer(out, ps.numsub(c, shard) as i64);
            }
        }
        PubSubQuery::NumPat => integer(out, ps.pattern_count() as i64),
        PubSubQuery::Help => help(out, PUBSUB_HELP),
    }
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard channels.",
    "HELP",
    "    Print this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Return unused memory held by the allocator to the operating system.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value (its record in the store).",
    "HELP",
    "    Print this help.",
];

/// `SLOWLOG …` (`crate::slowlog`).
fn slowlog(ctx: &Ctx<'_>, q: SlowLogQuery, out: &mut Vec<u8>) {
    let log = &ctx.shared.slowlog;
    match q {
        SlowLogQuery::Get(count) => {
            let entries = log.get(count);
            array(out, entries.len());
            for e in entries {
                array(out, 6);
                integer(out, e.id as i64);
                integer(out, e.time as i64);
                integer(out, e.micros as i64);
                array(out, e.args.len());
                e.args.iter().for_each(|a| bulk(out, a));
                bulk(out, e.addr.as_bytes());
                bulk(out, e.name.as_bytes());
            }
        }
        SlowLogQuery::Len => integer(out, log.len() as i64),
        SlowLogQuery::Reset => {
            log.reset();
            ok(out, super::Proto::Resp);
        }
        SlowLogQuery::Help => help(out, SLOWLOG_HELP),
    }
}

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return the <count> newest entries (default 10, -1 for all). Each entry is",
    "    its id, Unix time, duration in microseconds, arguments, client address",
    "    and client name.",
    "LEN",
    "    Return the number of entries kept.",
    "RESET",
    "    Remove every entry.",
    "HELP",
    "    Print this help.",
];

/// The `HELP` lines of a container command.
fn container_help(container: &str) -> &'static [&'static str] {
    match container {
        "client" => &[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME | SETNAME <name>",
            "    Return / set the name of this connection.",
            "SETINFO LIB-NAME|LIB-VER <value>",
            "    Describe the client library behind this connection.",
            "ID | INFO",
            "    Return the id / the CLIENT LIST line of this connection.",
            "LIST [TYPE normal|pubsub|replica|master] [ID <id> ...]",
            "    Return the connections of this node, one line each.",
            "KILL <ip:port> | KILL <filter> <value> ...",
            "    Close connections: filters ID, ADDR, LADDR, USER, TYPE, MAXAGE, SKIPME.",
            "REPLY ON|OFF|SKIP",
            "    Turn this connection's replies on or off, or skip the next one.",
            "NO-EVICT ON|OFF",
            "    Protect this connection from client eviction (maxmemory-clients).",
            "HELP",
            "    Print this help.",
        ],
        "command" => &[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return the details of every command.",
            "COUNT",
            "    Return the number of commands.",
            "LIST [FILTERBY MODULE <name>|ACLCAT <category>|PATTERN <pattern>]",
            "    Return the command names, optionally filtered.",
            "INFO [<command-name> ...] | DOCS [<command-name> ...]",
            "    Return the details / the documentation of commands.",
            "GETKEYS <full-command> | GETKEYSANDFLAGS <full-command>",
            "    Return the keys (and their flags) of a full command.",
            "HELP",
            "    Print this help.",
        ],
        "config" => &[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern> [<pattern> ...]",
            "    Return the parameters matching the glob patterns, with their values.",
            "SET <parameter> <value> [<parameter> <value> ...]",
            "    Change parameters that can change at run time (all or nothing).",
            "RESETSTAT",
            "    Reset the command, error and latency statistics of INFO.",
            "HELP",
            "    Print this help.",
        ],
        "function" => &[
            "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library (node-local: load it on every node).",
            "DELETE <LIBRARY NAME>",
            "    Delete a library and its functions.",
            "KILL",
            "    Kill the running function (only if it has not written).",
            "FLUSH [ASYNC|SYNC]",
            "    Delete every library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return the libraries and their functions.",
            "STATS",
            "    Return the running function and the library and function counts.",
            "HELP",
            "    Print this help.",
        ],
        "script" => &[
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return whether each script is cached.",
            "FLUSH [ASYNC|SYNC]",
            "    Empty the script cache.",
            "KILL",
            "    Kill the running script (only if it has not written).",
            "LOAD <script>",
            "    Compile and cache a script; return its SHA1 (node-local).",
            "HELP",
            "    Print this help.",
        ],
        _ => &[
            "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LIST",
            "    Return the loaded modules (none: MerkleKV has no module system).",
            "HELP",
            "    Print this help.",
        ],
    }
}

/// A `HELP` reply: an array of simple strings.
fn help(out: &mut Vec<u8>, lines: &[&str]) {
    array(out, lines.len());
    lines.iter().for_each(|l| simple(out, l));
}

/// `MEMORY …`: honest answers for this store (docs/protocol.md §15).
fn memory(ctx: &Ctx<'_>, q: MemoryQuery<'_>, out: &mut Vec<u8>) {
    let m = &ctx.shared.memory;
    match q {
        MemoryQuery::Usage(key) => {
            // The record's allocation and its 8-byte slot in the table.
            let n = ctx.db.get_with_expiry(key, |v| {
                v.map(|(v, exp)| crate::store::record::footprint(key.len(), v.len(), exp != 0) + 8)
            });
            match n {
                Some(n) => integer(out, n as i64),
                None => out.extend_from_slice(null(ctx.client.is_resp3())),
            }
        }
        MemoryQuery::Stats => {
            let keys = ctx.db.len();
            let used = m.used();
            let clients = m.clients();
            let dataset = used.saturating_sub(clients);
            let fields: [(&str, u64); 6] = [
                ("total.allocated", used),
                ("clients.normal", clients),
                ("keys.count", keys as u64),
                (
                    "keys.bytes-per-key",
                    dataset.checked_div(keys as u64).unwrap_or(0),
                ),
                ("dataset.bytes", dataset),
                ("maxmemory", m.maxmemory()),
            ];
            map(out, fields.len(), ctx.client.is_resp3());
            for (k, v) in fields {
                bulk(out, k.as_bytes());
                integer(out, v as i64);
            }
        }
        MemoryQuery::Doctor => {
            let used = m.used();
            let max = m.maxmemory();
            let text = if max != 0 && used > max / 10 * 9 {
                format!(
                    "used memory ({used} bytes) is above 90% of maxmemory ({max} bytes): writes will soon be refused (-OOM)"
                )
            } else {
                format!(
                    "no memory problems found: used memory is {used} bytes (maxmemory {max}, 0: no limit)"
                )
            };
            bulk(out, text.as_bytes());
        }
        MemoryQuery::Purge => {
            ctx.stats.incr(Counter::Management);
            // The housekeeping thread's trim, on demand (`heap.rs`),
            // counted in INFO `heap_trims` like its own.
            ctx.shared.memory.trims.trim_now();
            ok(out, super::Proto::Resp);
        }
        MemoryQuery::MallocStats => bulk(out, b"Stats not supported for the current allocator"),
        MemoryQuery::Help => help(out, MEMORY_HELP),
    }
}

/// A connection's type for `CLIENT LIST|KILL TYPE`: `pubsub` while it
/// has subscriptions, else `normal` (there are no replica connections).
fn client_type(c: &ClientInfo) -> ClientType {
    if c.view().subscribed() {
        ClientType::PubSub
    } else {
        ClientType::Normal
    }
}

/// The refusal of `SAVE` / `BGSAVE` on an in-memory node.
const NO_PERSISTENCE: &str = "persistence is off (engine = \"memory\"): there is nothing to save";

/// The name of the user connection `c` is authenticated as (`default`
/// without authentication, as Redis shows it).
fn user_name<'a>(ctx: &'a Ctx<'_>, c: &ClientInfo) -> &'a str {
    match c.view().user {
        Some(i) => ctx.shared.auth.user_name(i),
        None => crate::auth::DEFAULT_USER,
    }
}

/// `CLIENT KILL`: closes every connection matching all the filters, on
/// whichever worker owns it (`Stats::kill`). The caller itself, when it
/// matches and `SKIPME no` (or the old form) allows it, gets its reply and
/// is closed after it.
fn client_kill(ctx: &mut Ctx<'_>, k: ClientKill<'_>, out: &mut Vec<u8>) -> Flow {
    if let Some(u) = k.user
        && !known_user(ctx, u)
    {
        let msg = format!("No such user '{}'", String::from_utf8_lossy(u));
        crate::protocol::reply::error(out, Proto::Resp, &msg);
        return Flow::Continue;
    }
    let stats = &ctx.shared.stats;
    let me = ctx.client.id;
    let mut killed = 0;
    let mut kill_me = false;
    for c in stats.clients() {
        let matches = k.id.is_none_or(|id| id == c.id)
            && k.addr.is_none_or(|a| a == c.addr.to_string().as_bytes())
            && k.laddr
                .is_none_or(|a| c.laddr.is_some_and(|l| a == l.to_string().as_bytes()))
            && k.user.is_none_or(|u| u == user_name(ctx, &c).as_bytes())
            && k.kind.is_none_or(|t| t == client_type(&c))
            && k.maxage.is_none_or(|age| c.age(ctx.now) >= age)
            && !(k.skipme && c.id == me);
        if !matches {
            continue;
        }
        if c.id == me {
            kill_me = true;
            killed += 1;
        } else if stats.kill(&c) {
            killed += 1;
        }
    }
    if k.legacy {
        if killed == 0 {
            crate::protocol::reply::error(out, Proto::Resp, "No such client");
        } else {
            ok(out, Proto::Resp);
        }
    } else {
        integer(out, killed);
    }
    if kill_me {
        // Gone from the lists at once, closed after this reply.
        stats.disconnect(me);
        Flow::Close
    } else {
        Flow::Continue
    }
}

/// Whether `name` is a user of this node (`default` always is: without
/// configured users every connection is `default`).
fn known_user(ctx: &Ctx<'_>, name: &[u8]) -> bool {
    let auth = &ctx.shared.auth;
    if !auth.enabled() {
        return name == crate::auth::DEFAULT_USER.as_bytes();
    }
    auth.has_user(name)
}

// ---- COMMAND ---------------------------------------------------------------

fn command(q: CommandQuery<'_>, out: &mut Vec<u8>, resp3: bool) {
    match q {
        CommandQuery::All => {
            array(out, COMMANDS.len());
            COMMANDS.iter().for_each(|c| command_info(c, out));
        }
        CommandQuery::Count => integer(out, COMMANDS.len() as i64),
        CommandQuery::List(filter) => {
            let mut names: Vec<String> = Vec::new();
            for c in COMMANDS {
                let full = std::iter::once(c.name.to_string()).chain(
                    subcommands(c.name)
                        .iter()
                        .map(|s| format!("{}|{s}", c.name)),
                );
                match filter {
                    None => names.extend(full),
                    Some(ListFilter::Module(_)) => {}
                    Some(ListFilter::AclCat(cat)) => {
                        if categories(c)
                            .iter()
                            .any(|k| k.as_bytes().eq_ignore_ascii_case(cat))
                        {
                            names.extend(full);
                        }
                    }
                    Some(ListFilter::Pattern(p)) => {
                        // A pattern too long to compile matches nothing.
                        if let Ok(p) = glob::Pattern::new(&p.to_ascii_lowercase()) {
                            names.extend(full.filter(|n| p.matches(n.as_bytes())));
                        }
                    }
                }
            }
            array(out, names.len());
            names.iter().for_each(|n| bulk(out, n.as_bytes()));
        }
        CommandQuery::GetKeys { args, flags } => {
            let argv: Vec<&[u8]> = args.iter().collect();
            match key_positions(&argv) {
                Err(e) => crate::protocol::reply::error(out, Proto::Resp, e),
                Ok((spec, keys)) => {
                    array(out, keys.len());
                    for i in keys {
                        if flags {
                            array(out, 2);
                            bulk(out, argv[i]);
                            let f = key_flags(spec, i);
                            array(out, f.len());
                            f.iter().for_each(|f| bulk(out, f.as_bytes()));
                        } else {
                            bulk(out, argv[i]);
                        }
                    }
                }
            }
        }
        CommandQuery::Info(names) if names.is_empty() => command(CommandQuery::All, out, resp3),
        CommandQuery::Info(names) => {
            array(out, names.len());
            for n in names.iter() {
                match spec(n) {
                    Some(c) => command_info(c, out),
                    None => out.extend_from_slice(if resp3 { NULL3 } else { NIL_ARRAY }),
                }
            }
        }
        CommandQuery::Docs(names) => {
            // Unknown names are left out, as Redis does.
            let list: Vec<&CommandSpec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(spec).collect()
            };
            map(out, list.len(), resp3);
            for c in list {
                bulk(out, c.name.as_bytes());
                command_docs(c, out, resp3);
            }
        }
    }
}

/// One `COMMAND INFO` entry in Redis 7 layout: name, arity, flags, first
/// key, last key, step, ACL categories, tips, key specs, subcommands.
fn command_info(c: &CommandSpec, out: &mut Vec<u8>) {
    array(out, 10);
    bulk(out, c.name.as_bytes());
    integer(out, c.arity);
    array(out, c.flags.len());
    c.flags.iter().for_each(|f| simple(out, f));
    integer(out, c.keys.0);
    integer(out, c.keys.1);
    integer(out, c.keys.2);
    let cats = categories(c);
    array(out, cats.len());
    cats.iter().for_each(|f| simple(out, &format!("@{f}")));
    array(out, 0);
    array(out, 0);
    array(out, 0);
}

/// One `COMMAND DOCS` value (a RESP2 flat map): summary, since, group,
/// complexity, arguments.
fn command_docs(c: &CommandSpec, out: &mut Vec<u8>, resp3: bool) {
    map(out, 5, resp3);
    for (k, v) in [
        ("summary", c.summary),
        ("since", c.since),
        ("group", c.group),
        ("complexity", "O(1) per key"),
    ] {
        bulk(out, k.as_bytes());
        bulk(out, v.as_bytes());
    }
    bulk(out, b"arguments");
    array(out, c.args.len());
    for a in c.args {
        let mut flags = Vec::new();
        if a.optional {
            flags.push("optional");
        }
        if a.multiple {
            flags.push("multiple");
        }
        let pairs = 3 + usize::from(a.token.is_some()) + usize::from(!flags.is_empty());
        map(out, pairs, resp3);
        bulk(out, b"name");
        bulk(out, a.name.to_lowercase().as_bytes());
        bulk(out, b"type");
        bulk(out, a.kind.as_bytes());
        bulk(out, b"display_text");
        bulk(out, a.name.as_bytes());
        if let Some(t) = a.token {
            bulk(out, b"token");
            bulk(out, t.as_bytes());
        }
        if !flags.is_empty() {
            bulk(out, b"flags");
            array(out, flags.len());
            flags.iter().for_each(|f| simple(out, f));
        }
    }
}

// ---- HELLO, INFO -----------------------------------------------------------

/// The `HELLO` reply (a map), in the protocol the connection now speaks.
fn hello(ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    let resp3 = ctx.client.is_resp3();
    map(out, 8, resp3);
    for (k, v) in [
        ("server", "merklekv"),
        ("version", REDIS_COMPAT_VERSION),
        ("merklekv_version", env!("CARGO_PKG_VERSION")),
    ] {
        bulk(out, k.as_bytes());
        bulk(out, v.as_bytes());
    }
    bulk(out, b"proto");
    integer(out, if resp3 { 3 } else { 2 });
    bulk(out, b"id");
    integer(out, ctx.client.id as i64);
    bulk(out, b"mode");
    bulk(out, b"standalone");
    bulk(out, b"role");
    bulk(out, b"master");
    bulk(out, b"modules");
    array(out, 0);
}

/// (system, user) CPU seconds of this process or of its waited-for
/// children (`getrusage`).
fn cpu_seconds(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage writes a plain struct we own; zeroed is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_stime), secs(ru.ru_utime))
}

/// Sections of the Redis-style INFO, in order. The subsystems' sections
/// with a title of their own (`InfoSection::title`, e.g. `# Cluster`) come
/// before `keyspace`, where Redis puts its cluster section.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "errorstats",
    "latencystats",
    "keyspace",
    "merklekv",
];

/// Sections left out of a bare `INFO` and `INFO default` (as in Redis).
const NOT_DEFAULT: &[&str] = &["commandstats", "latencystats"];

/// Writes the Redis-style INFO text for the requested sections, chosen as
/// Redis does: none or `default`: every section but `commandstats` and
/// `latencystats`; `all` or `everything`: every section; other names
/// (any case) add their section; unknown names add nothing.
fn info(ctx: &Ctx<'_>, sections: Args<'_>, s: &mut String) {
    let is = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
    let all = sections.iter().any(|a| is(a, "all") || is(a, "everything"));
    let default = sections.is_empty() || sections.iter().any(|a| is(a, "default"));
    let wanted = |name: &str| {
        all || (default && !NOT_DEFAULT.contains(&name)) || sections.iter().any(|a| is(a, name))
    };
    let shared = ctx.shared;
    // Merged once, only when a section needs them.
    let needs_commands = ["commandstats", "errorstats", "latencystats", "stats"]
        .iter()
        .any(|n| wanted(n));
    let totals = needs_commands.then(|| shared.stats.command_totals_since_reset());
    let up = shared.stats.started().elapsed().as_secs();
    let rss = rss_kb() * 1024;
    let keys = ctx.db.len();
    let mut first = true;
    let mut start = |s: &mut String| {
        if !first {
            s.push_str("\r\n");
        }
        first = false;
    };
    for &name in SECTIONS {
        if name == "keyspace" {
            for section in shared.titled_info() {
                let title = section.title().unwrap_or_default();
                if wanted(&title.to_ascii_lowercase()) {
                    start(s);
                    let _ = write!(s, "# {title}\r\n");
                    section.write_info(shared, ctx.db, s);
                }
            }
        }
        if !wanted(name) {
            continue;
        }
        start(s);
        let title = if name == "merklekv" {
            "MerkleKV".to_string()
        } else if name == "cpu" {
            "CPU".to_string()
        } else {
            let mut t = name.to_string();
            t[..1].make_ascii_uppercase();
            t
        };
        let _ = write!(s, "# {title}\r\n");
        let c = &shared.config;
        let _ = match name {
            "server" => write!(
                s,
                "redis_version:{REDIS_COMPAT_VERSION}\r\nredis_mode:standalone\r\nmerklekv_version:{}\r\nos:{}\r\narch_bits:{}\r\nprocess_id:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nio_threads_active:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                usize::BITS,
                std::process::id(),
                crate::clock::since_epoch().as_micros(),
                up / 86400,
                c.threads,
            ),
            "clients" => write!(
                s,
                "connected_clients:{}\r\nmaxclients:{}\r\npubsub_clients:{}\r\n",
                shared.stats.active_connections(),
                shared.live.max_connections(),
                shared.pubsub.client_count()
            ),
            "memory" => {
                let m = &shared.memory;
                let used = m.used();
                let r = write!(
                    s,
                    "used_memory:{used}\r\nused_memory_human:{:.2}M\r\nused_memory_rss:{rss}\r\nmaxmemory:{}\r\nmaxmemory_policy:noeviction\r\nmaxmemory_clients:{}\r\nmem_clients_normal:{}\r\n",
                    used as f64 / (1024.0 * 1024.0),
                    m.maxmemory(),
                    m.clients_budget(),
                    m.clients(),
                );
                shared.scripting.counters.write_memory_info(s);
                r
            }
            "persistence" => write!(
                s,
                "loading:0\r\naof_enabled:{}\r\n",
                u8::from(c.engine == Engine::Persistent)
            ),
            "stats" => {
                let (_, evicted, output) = shared.memory.counters();
                write!(
                    s,
                    "total_connections_received:{}\r\ntotal_commands_processed:{}\r\nevicted_clients:{evicted}\r\nclient_output_buffer_limit_disconnections:{output}\r\nrejected_connections:{}\r\ntotal_error_replies:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\n",
                    shared.stats.total_connections(),
                    shared.stats.sum(Counter::TotalCommands),
                    shared.stats.rejected_connections(),
                    totals.as_ref().map_or(0, |t| t.error_replies),
                    shared.pubsub.channel_count(),
                    shared.pubsub.pattern_count(),
                    shared.pubsub.shard_channel_count()
                )
            }
            // Redis's master fields: no Redis replicas attach to this
            // server (replication is MQTT, `# MerkleKV`), so the offsets
            // stay 0.
            "replication" => write!(
                s,
                "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:{:040}\r\nmaster_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n",
                0
            ),
            "cpu" => {
                let (sys, user) = cpu_seconds(libc::RUSAGE_SELF);
                let (csys, cuser) = cpu_seconds(libc::RUSAGE_CHILDREN);
                write!(
                    s,
                    "used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:{csys:.6}\r\nused_cpu_user_children:{cuser:.6}\r\n"
                )
            }
            "commandstats" | "errorstats" | "latencystats" => {
                if let Some(t) = &totals {
                    match name {
                        "commandstats" => metrics::info::write_commandstats(t, s),
                        "errorstats" => metrics::info::write_errorstats(t, s),
                        _ if shared.live.latency_tracking() => {
                            metrics::info::write_latencystats(t, s)
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            "keyspace" if keys > 0 => write!(
                s,
                "db0:keys={keys},expires={},avg_ttl=0\r\n",
                ctx.db.expiring()
            ),
            "keyspace" => Ok(()),
            _ => {
                shared.write_info_untitled(ctx.db, s);
                Ok(())
            }
        };
    }
}
