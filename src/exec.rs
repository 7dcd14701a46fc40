//! The executor: [`Command`] → store → reply bytes (+ change events).
//!
//! One executor serves every front end. Replies are appended straight to
//! the connection's output buffer in the connection's [`Proto`]; a GET
//! copies the value from the store into that buffer under the shard lock,
//! so a hit costs one memcpy and no allocation.
//!
//! Every local write goes through [`Ctx::wrote`], the single place where a
//! state change leaves the node (replication outbox; persistence log).
//! Commands that would block a worker (SYNC) are handed off as a [`Job`] and
//! answered later through its [`Responder`].

mod redis;
pub mod tx;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::node::Shared;
use crate::protocol::{Args, Command, ReplicateAction, parse_int};
use crate::stats::{ClientInfo, Counter, WorkerStats, rss_kb, unix_now, uptime};
use crate::store::{Db, MAX_VALUE_LEN, Version, merkle};

/// The wire protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The MerkleKV text protocol (PROTOCOL.md §1–§7).
    Text,
    /// RESP2 (PROTOCOL.md §15).
    Resp,
}

/// What the connection should do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next request.
    Continue,
    /// The reply is written; stop the whole process.
    Shutdown,
    /// The reply comes later: hand this task over and stop processing this
    /// connection's requests until it is answered.
    Defer(Task),
    /// Close this connection after flushing its replies (RESP `QUIT`).
    Close,
}

/// Work that must not run on a worker thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Run one anti-entropy round with a peer (SYNC).
    Sync {
        host: String,
        port: u16,
        full: bool,
        verify: bool,
    },
}

/// A reply produced off the worker, routed back to its connection.
#[derive(Debug)]
pub struct Completion {
    /// Worker-local connection token.
    pub token: usize,
    /// Connection id (guards against a reused token).
    pub conn_id: u64,
    /// Encoded reply.
    pub bytes: Vec<u8>,
}

/// Answers a deferred request exactly once.
pub struct Responder {
    pub(crate) tx: Sender<Completion>,
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) token: usize,
    pub(crate) conn_id: u64,
    pub(crate) proto: Proto,
}

impl Responder {
    /// Sends `OK` (or `+OK`) or `ERROR <msg>` (or `-ERR <msg>`).
    pub fn respond(self, result: Result<(), String>) {
        let mut bytes = Vec::new();
        match result {
            Ok(()) => ok(&mut bytes, self.proto),
            Err(e) => error(&mut bytes, self.proto, &e),
        }
        let _ = self.tx.send(Completion {
            token: self.token,
            conn_id: self.conn_id,
            bytes,
        });
        let _ = self.waker.wake();
    }
}

/// A deferred task and where its answer goes.
pub struct Job {
    pub task: Task,
    pub responder: Responder,
}

/// Per-call execution context.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    /// The keyspace as commands see it: locking per call, or the shards
    /// of the exclusive hold of a running `EXEC` (`exec::tx`). Commands
    /// reach the keyspace only through it, never through `shared.store`.
    pub db: Db<'a>,
    pub stats: &'a WorkerStats,
    pub client: &'a ClientInfo,
    /// Reusable buffer for read-modify-write results.
    pub scratch: &'a mut Vec<u8>,
    /// The worker's notion of now (one clock read per loop turn).
    pub now: Instant,
    /// The worker's persistence log (persistent engine only).
    pub log: Option<&'a crate::persist::LogWriter>,
}

impl Ctx<'_> {
    /// Reports a local write: the one funnel to replication and the log.
    /// A local write's replay stamp is its version's clock (`store::durable`).
    #[inline]
    pub fn wrote(&mut self, key: &[u8], value: Option<&[u8]>, version: Version) {
        if let Some(log) = self.log {
            log.append(key, value, version, version.hlc);
        }
        self.shared.outbox.publish(key, value, version);
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

// ---- reply encoding -------------------------------------------------------

fn crlf(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

fn int_bytes(n: i64, buf: &mut itoa::Buffer) -> &[u8] {
    buf.format(n).as_bytes()
}

/// `OK` / `+OK`.
pub fn ok(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Text => b"OK\r\n",
        Proto::Resp => b"+OK\r\n",
    });
}

/// `ERROR <msg>` / `-ERR <msg>`. A RESP message that starts with a Redis
/// error code other than ERR (only `NOPROTO` exists here) is sent as
/// `-<msg>`, the way Redis clients expect to see the code.
pub fn error(out: &mut Vec<u8>, proto: Proto, msg: &str) {
    out.extend_from_slice(match proto {
        Proto::Text => b"ERROR ",
        Proto::Resp if msg.starts_with("NOPROTO ") => b"-",
        Proto::Resp => b"-ERR ",
    });
    // A reply line must stay one line whatever the message holds.
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    crlf(out);
}

/// A RESP header: the type byte, then `n`, then CRLF (`$5`, `*2`, `%1`).
pub fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut b = itoa::Buffer::new();
    out.push(kind);
    out.extend_from_slice(b.format(n).as_bytes());
    crlf(out);
}

/// Inserts the line `<prefix><n>\r\n` at `at`, in front of the bytes
/// written since: for replies whose count is known only at their end.
/// Allocates nothing (the inserted bytes come from an exact-size iterator).
pub fn insert_counted(out: &mut Vec<u8>, at: usize, prefix: &[u8], n: usize) {
    let mut b = itoa::Buffer::new();
    let line = prefix.iter().chain(b.format(n).as_bytes()).chain(b"\r\n");
    out.splice(at..at, line.copied());
}

/// RESP bulk string.
pub fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    header(out, b'$', v.len());
    out.extend_from_slice(v);
    crlf(out);
}

/// RESP integer.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    let mut b = itoa::Buffer::new();
    out.push(b':');
    out.extend_from_slice(int_bytes(n, &mut b));
    crlf(out);
}

/// RESP array header.
pub fn array(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n);
}

/// RESP2 null bulk string.
pub const NIL: &[u8] = b"$-1\r\n";
/// RESP2 null array.
pub const NIL_ARRAY: &[u8] = b"*-1\r\n";

/// The RESP null reply for this client: `$-1` in RESP2, `_` once it chose
/// RESP3 with `HELLO 3` (the only data-reply difference between the two for
/// the commands this server has).
#[inline]
pub fn null(client: &ClientInfo) -> &'static [u8] {
    if client.is_resp3() { b"_\r\n" } else { NIL }
}

/// A value: text `VALUE <v>`, RESP bulk string.
#[inline]
fn value(out: &mut Vec<u8>, proto: Proto, v: &[u8]) {
    match proto {
        Proto::Text => {
            out.reserve(v.len() + 8);
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(v);
            crlf(out);
        }
        Proto::Resp => bulk(out, v),
    }
}

/// A missing value: text `NOT_FOUND`, RESP null bulk.
#[inline]
fn not_found(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Text => b"NOT_FOUND\r\n",
        Proto::Resp => NIL,
    });
}

/// `<WORD> <n>` in text, an integer in RESP.
fn counted(out: &mut Vec<u8>, proto: Proto, word: &str, n: i64) {
    match proto {
        Proto::Text => {
            let mut b = itoa::Buffer::new();
            out.extend_from_slice(word.as_bytes());
            out.push(b' ');
            out.extend_from_slice(int_bytes(n, &mut b));
            crlf(out);
        }
        Proto::Resp => integer(out, n),
    }
}

/// A multi-line text block: text as is, RESP as one bulk string.
fn block(out: &mut Vec<u8>, proto: Proto, text: &str) {
    match proto {
        Proto::Text => out.extend_from_slice(text.as_bytes()),
        Proto::Resp => bulk(out, text.as_bytes()),
    }
}

// ---- the executor ---------------------------------------------------------

/// Executes one command, appending its reply to `out`.
pub fn execute(cmd: Command<'_>, ctx: &mut Ctx<'_>, out: &mut Vec<u8>, proto: Proto) -> Flow {
    let stats = ctx.stats;
    let store = ctx.db;
    stats.incr(Counter::TotalCommands);
    match cmd {
        Command::Get(key) => {
            stats.incr(Counter::Get);
            let client = ctx.client;
            store.get(key, |v| match (v, proto) {
                (Some(v), _) => value(out, proto, v),
                (None, Proto::Resp) => out.extend_from_slice(null(client)),
                (None, Proto::Text) => not_found(out, proto),
            });
        }
        Command::Set(key, val) => {
            stats.incr(Counter::Set);
            let v = store.set(key, val);
            ctx.wrote(key, Some(val), v);
            ok(out, proto);
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
            match proto {
                Proto::Text if n > 0 => out.extend_from_slice(b"DELETED\r\n"),
                Proto::Text => out.extend_from_slice(b"NOT_FOUND\r\n"),
                Proto::Resp => integer(out, n),
            }
        }
        Command::Append(key, val) | Command::Prepend(key, val) => {
            stats.incr(Counter::String);
            let append = matches!(cmd, Command::Append(..));
            let res = store.update(key, ctx.scratch, |old, new| {
                let old = old.unwrap_or(&[]);
                if old.len() + val.len() > MAX_VALUE_LEN {
                    return Err(());
                }
                let (a, b) = if append { (old, val) } else { (val, old) };
                new.extend_from_slice(a);
                new.extend_from_slice(b);
                Ok(())
            });
            match res {
                Ok(((), v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    match proto {
                        Proto::Text => value(out, proto, &new),
                        Proto::Resp => integer(out, new.len() as i64),
                    }
                    *ctx.scratch = new;
                }
                Err(()) => error(
                    out,
                    proto,
                    &format!("value would exceed the maximum of {MAX_VALUE_LEN} bytes"),
                ),
            }
        }
        Command::Numeric {
            key,
            amount,
            decrement,
        } => {
            stats.incr(Counter::Numeric);
            let res = store.update(key, ctx.scratch, |old, new| {
                let old = match old {
                    None => 0,
                    // PROTOCOL.md §5: what `i64::from_str` accepts.
                    Some(v) => parse_int::<i64>(v).ok_or(())?,
                };
                let n = if decrement {
                    old.wrapping_sub(amount)
                } else {
                    old.wrapping_add(amount)
                };
                new.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                Ok(n)
            });
            match res {
                Ok((n, v)) => {
                    let new = std::mem::take(ctx.scratch);
                    ctx.wrote(key, Some(&new), v);
                    *ctx.scratch = new;
                    match proto {
                        Proto::Text => {
                            let mut b = itoa::Buffer::new();
                            value(out, proto, int_bytes(n, &mut b));
                        }
                        Proto::Resp => integer(out, n),
                    }
                }
                Err(()) => match proto {
                    Proto::Text => error(
                        out,
                        proto,
                        &format!(
                            "Value for key '{}' is not a valid number",
                            String::from_utf8_lossy(key)
                        ),
                    ),
                    Proto::Resp => error(out, proto, "value is not an integer or out of range"),
                },
            }
        }
        Command::MGet(keys) => {
            stats.incr(Counter::Bulk);
            mget(ctx, keys, out, proto);
        }
        Command::MSet(pairs) => {
            stats.incr(Counter::Bulk);
            mset(ctx, pairs, false);
            ok(out, proto);
        }
        Command::Exists(keys) => {
            stats.incr(Counter::Exists);
            let n = if keys.len() == 1 {
                keys.iter().filter(|k| store.contains(k)).count()
            } else {
                let mut lock = store.lock_keys(keys.iter());
                keys.iter().filter(|k| lock.get(k, |v| v.is_some())).count()
            };
            counted(out, proto, "EXISTS", n as i64);
        }
        Command::Scan(prefix) => {
            stats.incr(Counter::Scan);
            let keys = store.scan(prefix);
            match proto {
                Proto::Text => {
                    counted(out, proto, "KEYS", keys.len() as i64);
                    for k in &keys {
                        out.extend_from_slice(k);
                        crlf(out);
                    }
                }
                Proto::Resp => {
                    array(out, keys.len());
                    for k in &keys {
                        bulk(out, k);
                    }
                }
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
            ok(out, proto);
        }
        Command::Ping(msg) => {
            stats.incr(Counter::Ping);
            match (proto, msg) {
                (Proto::Text, None) => out.extend_from_slice(b"PONG\r\n"),
                (Proto::Text, Some(m)) => {
                    out.extend_from_slice(b"PONG ");
                    out.extend_from_slice(m);
                    crlf(out);
                }
                (Proto::Resp, None) => out.extend_from_slice(b"+PONG\r\n"),
                (Proto::Resp, Some(m)) => bulk(out, m),
            }
        }
        Command::Echo(msg) => {
            stats.incr(Counter::Echo);
            match proto {
                Proto::Text => {
                    out.extend_from_slice(b"ECHO ");
                    out.extend_from_slice(msg);
                    crlf(out);
                }
                Proto::Resp => bulk(out, msg),
            }
        }
        Command::DbSize => {
            stats.incr(Counter::DbSize);
            counted(out, proto, "DBSIZE", store.len() as i64);
        }
        Command::Memory => {
            stats.incr(Counter::Memory);
            let (n, bytes) = store.usage();
            counted(out, proto, "MEMORY", (48 + 48 * n + bytes) as i64);
        }
        Command::Stats => {
            stats.incr(Counter::Stat);
            let mut s = String::from("STATS\r\n");
            ctx.shared.stats.write_stats(&mut s);
            block(out, proto, &s);
        }
        Command::Info => {
            stats.incr(Counter::Stat);
            let mut s = String::from("INFO\r\n");
            write_info(ctx.shared, ctx.db, &mut s);
            block(out, proto, &s);
        }
        Command::Version => {
            stats.incr(Counter::Management);
            match proto {
                Proto::Text => out.extend_from_slice(
                    concat!("VERSION ", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
                ),
                Proto::Resp => bulk(out, env!("CARGO_PKG_VERSION").as_bytes()),
            }
        }
        Command::ClientList => {
            stats.incr(Counter::ClientList);
            stats.incr(Counter::Management);
            let mut s = String::new();
            if proto == Proto::Text {
                s.push_str("CLIENT LIST\r\n");
            }
            ctx.shared.stats.write_client_list(&mut s, ctx.now);
            if proto == Proto::Text {
                s.push_str("END\r\n");
            }
            block(out, proto, &s);
        }
        Command::Hash(prefix) => {
            stats.incr(Counter::Hash);
            let (label, digest) = match prefix {
                None => (None, ctx.shared.store.root()),
                Some(b"*") => (prefix, ctx.shared.store.root()),
                Some(p) => (prefix, ctx.shared.store.prefix_digest(p)),
            };
            let hex = merkle::hex(&digest);
            match proto {
                Proto::Text => {
                    out.extend_from_slice(b"HASH ");
                    if let Some(l) = label {
                        out.extend_from_slice(l);
                        out.push(b' ');
                    }
                    out.extend_from_slice(hex.as_bytes());
                    crlf(out);
                }
                Proto::Resp => bulk(out, hex.as_bytes()),
            }
        }
        Command::Sync {
            host,
            port,
            full,
            verify,
        } => {
            stats.incr(Counter::Sync);
            return Flow::Defer(Task::Sync {
                host: host.to_string(),
                port,
                full,
                verify,
            });
        }
        Command::Replicate(action) => {
            stats.incr(Counter::Replicate);
            replicate(ctx.shared, action, out, proto);
        }
        Command::Shutdown => {
            stats.incr(Counter::Management);
            ok(out, proto);
            return Flow::Shutdown;
        }
        Command::Strlen(key) => {
            stats.incr(Counter::Get);
            let n = store.get(key, |v| v.map_or(0, <[u8]>::len));
            integer(out, n as i64);
        }
        Command::Select(db) => {
            if db == b"0" {
                ok(out, proto);
            } else {
                error(out, proto, "DB index is out of range");
            }
        }
        Command::Quit => {
            ok(out, proto);
            return Flow::Close;
        }
        Command::Internal(cmd) => match proto {
            Proto::Resp => {
                let shared = ctx.shared;
                shared.antientropy.count_served();
                let id = crate::antientropy::serve::Identity {
                    node_id: &shared.config.node_id,
                    instance: shared.antientropy.instance(),
                };
                crate::antientropy::serve::execute(&cmd, &shared.store, id, out);
            }
            Proto::Text => error(out, proto, "internal commands need RESP"),
        },
        // RESP-only Redis-compatibility commands (exec/redis.rs).
        Command::Redis(c) => return redis::execute(c, ctx, out),
    }
    Flow::Continue
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

fn mget(ctx: &mut Ctx<'_>, keys: Args<'_>, out: &mut Vec<u8>, proto: Proto) {
    let mut lock = ctx.db.lock_keys(keys.iter());
    match proto {
        Proto::Text => {
            // `VALUES <found>` precedes the lines, so write the lines first
            // and put the header in front once the count is known.
            let start = out.len();
            let mut found = 0;
            for k in keys.iter() {
                out.extend_from_slice(k);
                lock.get(k, |v| match v {
                    Some(v) => {
                        found += 1;
                        out.push(b' ');
                        out.extend_from_slice(v);
                    }
                    None => out.extend_from_slice(b" NOT_FOUND"),
                });
                crlf(out);
            }
            if found == 0 {
                out.truncate(start);
                out.extend_from_slice(b"NOT_FOUND\r\n");
            } else {
                insert_counted(out, start, b"VALUES ", found);
            }
        }
        Proto::Resp => {
            array(out, keys.len());
            for k in keys.iter() {
                lock.get(k, |v| match v {
                    Some(v) => bulk(out, v),
                    None => out.extend_from_slice(null(ctx.client)),
                });
            }
        }
    }
}

fn replicate(shared: &Shared, action: ReplicateAction, out: &mut Vec<u8>, proto: Proto) {
    match action {
        ReplicateAction::Enable => match shared.outbox.enable() {
            Ok(()) => ok(out, proto),
            Err(e) => error(out, proto, &e.to_string()),
        },
        ReplicateAction::Disable => {
            shared.outbox.disable();
            ok(out, proto);
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
            match proto {
                Proto::Text => {
                    out.extend_from_slice(text.as_bytes());
                    crlf(out);
                }
                Proto::Resp => bulk(out, text.as_bytes()),
            }
        }
    }
}

/// Writes the INFO body (after the `INFO` line): the five fields of
/// PROTOCOL.md §6, then this node's extra `name:value` lines.
pub fn write_info(shared: &Shared, db: Db<'_>, s: &mut String) {
    let up = shared.stats.started().elapsed().as_secs();
    let _ = write!(
        s,
        "version:{}\r\nuptime_seconds:{up}\r\nuptime:{}\r\nserver_time_unix:{}\r\ndb_keys:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        uptime(up),
        unix_now(),
        db.len()
    );
    let _ = write!(
        s,
        "node_id:{}\r\nthreads:{}\r\nshards:{}\r\ntree_bits:{}\r\ntombstones:{}\r\nused_memory_kb:{}\r\n",
        shared.config.node_id,
        shared.config.threads,
        db.shard_count(),
        db.shape().bits,
        db.tombstones(),
        rss_kb()
    );
    let _ = write!(s, "merkle_leaves_hashed:{}\r\n", db.leaves_hashed());
    crate::replication::write_info(shared, s);
    let _ = write!(
        s,
        "replication_enabled:{}\r\nreplication_queued:{}\r\nreplication_dropped:{}\r\n",
        shared.outbox.is_enabled() as u8,
        shared.outbox.queued(),
        shared.outbox.dropped()
    );
    crate::persist::write_info(shared, s);
    crate::antientropy::write_info(shared, db, s);
}
