//! The executor: [`Command`] → store → reply bytes (+ change events).
//!
//! One executor serves every front end. Replies are appended straight to
//! the connection's output buffer in the connection's [`Proto`]; a GET
//! copies the value from the store into that buffer under the shard lock,
//! so a hit costs one memcpy and no allocation.
//!
//! Every local write goes through [`Ctx::wrote`], the single place where a
//! state change leaves the node (replication outbox; persistence log).
//! Commands that would block a worker (SYNC) return [`Flow::Defer`]; the
//! worker hands them off as a [`crate::jobs::Job`].
//!
//! Each arm says *what* it answers through a [`Reply`] (a value or its
//! absence, a count, a key list, …); [`crate::protocol::reply`] decides
//! how that looks in the text protocol and in RESP.

mod config;
mod expiry;
pub mod monitor;
mod redis;
pub use redis::REDIS_COMPAT_VERSION;
mod script;
mod strings;
pub mod tx;

use std::time::Instant;

use crate::jobs::Task;
use crate::limits::OOM;
use crate::protocol::redis::Redis;
use crate::protocol::reply::{Proto, Reply};
use crate::protocol::{Args, Command, ReadOnlyAction, ReplicateAction, parse_int};
use crate::state::Shared;
use crate::stats::{ClientInfo, Counter, WorkerStats};
use crate::store::{Db, Encoding, MAX_VALUE_LEN, Written, merkle};

/// What the connection should do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next request.
    Continue,
    /// The reply is written; stop the whole node (SHUTDOWN).
    StopNode,
    /// The reply comes later: hand this task over and stop processing this
    /// connection's requests until it is answered.
    Defer(Task),
    /// Close this connection after flushing its replies (RESP `QUIT`).
    Close,
    /// `MONITOR`: the connection becomes a monitor (the worker registers
    /// its feed and answers `+OK`).
    Monitor,
    /// A Pub/Sub (un)subscription: the worker changes the connection's
    /// subscriptions and answers the confirmations (`crate::pubsub`).
    PubSub(crate::pubsub::SubOp),
}

/// Per-call execution context.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    /// The keyspace as commands see it: locking per call, or the shards
    /// of the exclusive hold of a running `EXEC` (`exec::tx`). Commands
    /// reach the keyspace only through it, never through `shared.store`
    /// (except those refused inside `MULTI`: digests, internal commands).
    pub db: Db<'a>,
    pub stats: &'a WorkerStats,
    pub client: &'a ClientInfo,
    /// Reusable buffer for read-modify-write results.
    pub scratch: &'a mut Vec<u8>,
    /// The worker's notion of now (one clock read per loop turn).
    pub now: Instant,
    /// The worker's persistence log (persistent engine only).
    pub log: Option<&'a crate::persist::LogWriter>,
    /// Length of the output buffer at which a reply of many elements stops
    /// growing (the hard output limit; `usize::MAX` for none).
    pub out_limit: usize,
    /// Set when a reply was cut at `out_limit` (or would pass it): the
    /// worker then drops the reply and closes the connection.
    pub cut: bool,
}

impl Ctx<'_> {
    /// Reports a local write: the one funnel to replication and the log.
    /// A local write's replay stamp is its version's clock (`store::durable`).
    /// `w` is the write's version, or its version and the record's expiry
    /// ([`Written`]: the event and the log carry the whole record).
    #[inline]
    pub fn wrote(&mut self, key: &[u8], value: Option<&[u8]>, w: impl Into<Written>) {
        let Written { version, expires } = w.into();
        if let Some(v) = value {
            self.shared.memory.grew(key.len() + v.len());
        }
        if let Some(log) = self.log {
            log.append_expiring(key, value, version, version.hlc, expires);
        }
        self.shared.outbox.publish(key, value, version, expires);
    }

    /// Reports a FLUSHDB/TRUNCATE with the floor from
    /// `Store::clear_versioned` (persisted; never replicated).
    #[inline]
    pub fn cleared(&mut self, floor: u64) {
        if let Some(log) = self.log {
            log.append_clear(floor);
        }
    }
}

// ---- the executor ---------------------------------------------------------

/// Executes one command, appending its reply to `out` in `proto`.
pub fn execute(cmd: Command<'_>, ctx: &mut Ctx<'_>, out: &mut Vec<u8>, proto: Proto) -> Flow {
    let mut reply = Reply::new(out, proto, ctx.client.is_resp3());
    execute_with(cmd, ctx, &mut reply)
}

/// Executes one command of the text protocol or RESP: says what it
/// answers; `reply` encodes it.
fn execute_with(cmd: Command<'_>, ctx: &mut Ctx<'_>, reply: &mut Reply<'_>) -> Flow {
    let stats = ctx.stats;
    let store = ctx.db;
    stats.incr(Counter::TotalCommands);
    if ctx.shared.read_only.refuses(&cmd) {
        reply.error(crate::readonly::READONLY);
        return Flow::Continue;
    }
    if ctx.shared.memory.refuse_writes() && may_grow(&cmd) {
        ctx.shared.memory.count_refused();
        reply.error(OOM);
        return Flow::Continue;
    }
    match cmd {
        Command::Get(key) => {
            stats.incr(Counter::Get);
            store.get(key, |v| reply.value_or_not_found(v));
        }
        Command::Set(key, val) => {
            stats.incr(Counter::Set);
            let v = store.set(key, val);
            ctx.wrote(key, Some(val), v);
            reply.ok();
        }
        Command::Delete(keys) => {
            stats.incr(Counter::Delete);
            let mut n = 0;
            for key in keys.iter() {
                if let Some(v) = store.delete(key) {
                    ctx.wrote(key, None, v);
                    n += 1;
                }
            }
            reply.deleted(n);
        }
        Command::Append(key, val) | Command::Prepend(key, val) => {
            stats.incr(Counter::String);
            let append = matches!(cmd, Command::Append(..));
            // Growing an existing value edits it in place (`raw` for
            // OBJECT ENCODING); creating the key stores the value as SET does.
            let res = store.update_encoded(key, ctx.scratch, |old, new| {
                let encoding = match old {
                    Some(_) => Encoding::Raw,
                    None => Encoding::Auto,
                };
                let old = old.unwrap_or(&[]);
                if old.len() + val.len() > MAX_VALUE_LEN {
                    return Err(());
                }
                let (a, b) = if append { (old, val) } else { (val, old) };
                new.extend_from_slice(a);
                new.extend_from_slice(b);
                Ok(((), encoding))
            });
            match res {
                Ok(((), v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    reply.grown(&new);
                    *ctx.scratch = new;
                }
                Err(()) => reply.error(&format!(
                    "value would exceed the maximum of {MAX_VALUE_LEN} bytes"
                )),
            }
        }
        Command::Numeric {
            key,
            amount,
            decrement,
        } => {
            stats.incr(Counter::Numeric);
            // RESP follows Redis: overflow is an error. The text protocol
            // keeps 1.x's wrapping arithmetic (docs/protocol.md).
            let proto = reply.proto();
            if proto == Proto::Resp && decrement && amount == i64::MIN {
                reply.error("decrement would overflow");
                return Flow::Continue;
            }
            // Err(true): overflow; Err(false): not a number.
            let res = store.update(key, ctx.scratch, |old, new| {
                let old = match old {
                    None => 0,
                    // docs/protocol.md: what `i64::from_str` accepts.
                    Some(v) => parse_int::<i64>(v).ok_or(false)?,
                };
                let n = match (proto, decrement) {
                    (Proto::Text, true) => old.wrapping_sub(amount),
                    (Proto::Text, false) => old.wrapping_add(amount),
                    (Proto::Resp, true) => old.checked_sub(amount).ok_or(true)?,
                    (Proto::Resp, false) => old.checked_add(amount).ok_or(true)?,
                };
                new.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                Ok(n)
            });
            match res {
                Ok((n, v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    *ctx.scratch = new;
                    reply.number(n);
                }
                Err(true) => reply.error("increment or decrement would overflow"),
                Err(false) => reply.error_per_proto(
                    format_args!(
                        "Value for key '{}' is not a valid number",
                        String::from_utf8_lossy(key)
                    ),
                    "value is not an integer or out of range",
                ),
            }
        }
        Command::MGet(keys) => {
            stats.incr(Counter::Bulk);
            let mut lock = store.lock_keys(keys.iter());
            let mut values = reply.values(keys.len());
            // Stops before the value that would pass the output limit.
            let limit = ctx.out_limit;
            let mut cut = false;
            for k in keys.iter() {
                lock.get(k, |v| {
                    cut = values.written() + k.len() + v.map_or(0, <[u8]>::len) + 32 > limit;
                    if !cut {
                        values.item(k, v);
                    }
                });
                if cut {
                    ctx.cut = true;
                    return Flow::Continue;
                }
            }
            values.finish();
        }
        Command::MSet(pairs) => {
            stats.incr(Counter::Bulk);
            mset(ctx, pairs, false);
            reply.ok();
        }
        Command::Exists(keys) => {
            stats.incr(Counter::Exists);
            let n = if keys.len() == 1 {
                keys.iter().filter(|k| store.contains(k)).count()
            } else {
                let mut lock = store.lock_keys(keys.iter());
                keys.iter().filter(|k| lock.get(k, |v| v.is_some())).count()
            };
            reply.count("EXISTS", n as i64);
        }
        Command::Scan(prefix) => {
            stats.incr(Counter::Scan);
            // Collected (sorted) within the output limit, never the whole
            // key space at once.
            let room = ctx.out_limit.saturating_sub(reply.out.len());
            match store.scan_bounded(prefix, room) {
                Some(keys) => reply.keys(&keys),
                None => ctx.cut = true,
            }
        }
        Command::Truncate | Command::FlushDb => {
            if cmd == Command::Truncate {
                stats.incr(Counter::Bulk);
            } else {
                stats.incr(Counter::FlushDb);
                stats.incr(Counter::Management);
            }
            let floor = store.clear_versioned();
            ctx.cleared(floor);
            reply.ok();
        }
        Command::Ping(msg) => {
            stats.incr(Counter::Ping);
            reply.pong(msg);
        }
        Command::Echo(msg) => {
            stats.incr(Counter::Echo);
            reply.tagged(b"ECHO", msg);
        }
        Command::DbSize => {
            stats.incr(Counter::DbSize);
            reply.count("DBSIZE", store.len() as i64);
        }
        Command::Memory => {
            stats.incr(Counter::Memory);
            let (n, bytes) = store.usage();
            reply.count("MEMORY", (48 + 48 * n + bytes) as i64);
        }
        Command::Stats => {
            stats.incr(Counter::Stat);
            let mut s = String::from("STATS\r\n");
            ctx.shared.stats.write_stats(&mut s);
            reply.block(&s);
        }
        Command::Info => {
            stats.incr(Counter::Stat);
            let mut s = String::from("INFO\r\n");
            ctx.shared.write_info(ctx.db, &mut s);
            reply.block(&s);
        }
        Command::Version => {
            stats.incr(Counter::Management);
            reply.tagged(b"VERSION", env!("CARGO_PKG_VERSION").as_bytes());
        }
        Command::ClientList => {
            stats.incr(Counter::ClientList);
            stats.incr(Counter::Management);
            let mut s = String::new();
            ctx.shared.stats.write_client_list(&mut s, ctx.now);
            reply.framed("CLIENT LIST", &s);
        }
        Command::Hash(prefix) => {
            stats.incr(Counter::Hash);
            let (label, digest) = match prefix {
                None => (None, ctx.shared.store.root()),
                Some(b"*") => (prefix, ctx.shared.store.root()),
                Some(p) => (prefix, ctx.shared.store.prefix_digest(p)),
            };
            reply.hash(label, &merkle::hex(&digest));
        }
        Command::Sync {
            host,
            port,
            full,
            verify,
            force,
            rejoin,
        } => {
            stats.incr(Counter::Sync);
            return Flow::Defer(Task::Sync {
                host: host.to_string(),
                port,
                full,
                verify,
                force,
                rejoin,
            });
        }
        Command::Replicate(action) => {
            stats.incr(Counter::Replicate);
            replicate(ctx.shared, action, reply);
        }
        Command::ReadOnly(action) => {
            stats.incr(Counter::Management);
            let ro = &ctx.shared.read_only;
            match action {
                ReadOnlyAction::On => {
                    ro.set(true);
                    reply.ok();
                }
                ReadOnlyAction::Off => {
                    ro.set(false);
                    reply.ok();
                }
                ReadOnlyAction::Status => {
                    reply.tagged(b"READONLY", if ro.is_on() { b"on" } else { b"off" })
                }
            }
        }
        Command::Nodes => {
            stats.incr(Counter::Management);
            reply.lines(
                "NODES",
                &crate::replication::members::node_lines(ctx.shared),
            );
        }
        Command::Shutdown => {
            stats.incr(Counter::Management);
            reply.ok();
            return Flow::StopNode;
        }
        Command::Strlen(key) => {
            stats.incr(Counter::Get);
            let n = store.get(key, |v| v.map_or(0, <[u8]>::len));
            reply.integer(n as i64);
        }
        Command::Select(db) => {
            if db == b"0" {
                reply.ok();
            } else {
                reply.error("DB index is out of range");
            }
        }
        Command::Quit => {
            reply.ok();
            return Flow::Close;
        }
        // The connection's gate (auth::gate) answers AUTH before a command
        // reaches the executor; a queued or replayed one lands here.
        Command::Auth { .. } => reply.error("AUTH is not allowed here"),
        Command::Internal(cmd) => match reply.proto() {
            Proto::Resp => {
                let shared = ctx.shared;
                if shared.contact.is_stale() {
                    reply.error(crate::contact::STALE_REFUSAL);
                    return Flow::Continue;
                }
                shared.antientropy.count_served();
                let id = crate::antientropy::serve::Identity {
                    node_id: &shared.config.node_id,
                    instance: shared.antientropy.instance(),
                };
                crate::antientropy::serve::execute(&cmd, &shared.store, id, reply.out);
            }
            Proto::Text => reply.error("internal commands need RESP"),
        },
        // RESP-only Redis-compatibility commands (exec/redis.rs).
        Command::Redis(c) => return redis::execute(c, ctx, reply.out),
        Command::Expiry(c) => return expiry::execute(c, ctx, reply.out),
    }
    Flow::Continue
}

/// Commands refused while used memory is above `maxmemory` (Redis's
/// `denyoom`): those that can add data. Reads, deletes, FLUSHDB and admin
/// commands still run, and so do replicated and anti-entropy writes, which
/// do not come through here (a replica must not diverge because it is full).
fn may_grow(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Set(..)
            | Command::Append(..)
            | Command::Prepend(..)
            | Command::Numeric { .. }
            | Command::MSet(_)
            | Command::Redis(Redis::SetWith { .. } | Redis::SetNx(..) | Redis::MSetNx(_))
    )
}

/// MSET / MSETNX: sets every `(key, value)` pair of `pairs` under one
/// multi-shard lock (atomic), then reports the writes. With
/// `only_if_none`, sets nothing when any of the keys exists. Returns
/// whether the pairs were set.
fn mset(ctx: &mut Ctx<'_>, pairs: Args<'_>, only_if_none: bool) -> bool {
    let keys = pairs.iter().step_by(2);
    let mut versions = Vec::with_capacity(pairs.len() / 2);
    {
        let mut lock = ctx.db.lock_keys(keys.clone());
        if only_if_none && keys.clone().any(|k| lock.get(k, |v| v.is_some())) {
            return false;
        }
        let mut it = pairs.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            versions.extend(lock.set(k, v));
        }
    }
    let mut it = pairs.iter();
    let mut vs = versions.into_iter();
    while let (Some(k), Some(val), Some(ver)) = (it.next(), it.next(), vs.next()) {
        ctx.wrote(k, Some(val), ver);
    }
    true
}

fn replicate(shared: &Shared, action: ReplicateAction, reply: &mut Reply<'_>) {
    match action {
        ReplicateAction::Enable => match shared.outbox.enable() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(&e.to_string()),
        },
        ReplicateAction::Disable => {
            shared.outbox.disable();
            reply.ok();
        }
        ReplicateAction::Status => {
            let text = if shared.outbox.is_enabled() {
                format!(
                    "REPLICATION enabled {} nodes",
                    shared.config.replication.peer_list.len()
                )
            } else {
                "REPLICATION disabled".to_string()
            };
            reply.line(text.as_bytes());
        }
    }
}
