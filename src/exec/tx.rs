//! RESP transactions: `MULTI` / `EXEC` / `DISCARD` / `WATCH` / `UNWATCH`.
//!
//! Redis clients use them more than their authors may know: redis-py's
//! `pipeline()` wraps every pipeline in `MULTI`/`EXEC` unless told
//! otherwise, and `WATCH` is the standard optimistic check-and-set.
//!
//! Design and invariants:
//!
//! * After `MULTI`, each request is checked when it arrives (a parse
//!   error, or a command that cannot run inside a transaction, gets its
//!   error now and makes `EXEC` answer `-EXECABORT`) and its raw RESP
//!   frame is appended to the connection's queue (`+QUEUED`). The queue
//!   is bounded ([`MAX_QUEUED_BYTES`]); the frames are parsed again at
//!   `EXEC`, so nothing borrowed from the read buffer outlives it.
//! * `EXEC` runs the queued commands through the ordinary executor inside
//!   [`Store::exclusive`](crate::store::Store::exclusive): every shard is
//!   held, so no other connection, replication or anti-entropy write can
//!   interleave, and the transaction is isolated like a Redis `EXEC`.
//!   The commands get a [`Ctx`] whose `db` is the hold's
//!   [`Db`](crate::store::Db): they run on the held shards and cannot
//!   lock one again (a locking store call on this thread meanwhile is a
//!   bug that panics instead of freezing the node; see `store/lock.rs`).
//!   Writes inside it replicate and are logged like any other write.
//! * `FLUSHDB`, `FLUSHALL` (and text `TRUNCATE`, which has no MULTI) run
//!   on the held shards: the versioned clear empties them under the hold
//!   and is logged with its floor like outside a transaction; commands
//!   queued after it in the same `EXEC` see the empty keyspace.
//! * Commands that wait for another thread or compute Merkle digests
//!   (`SYNC`, `HASH`, `REPLICATE`, `SHUTDOWN`, the internal `MKV.*`
//!   commands, `HELLO`) are refused inside a transaction: under
//!   `Store::exclusive` they could wait for a thread that waits for a
//!   shard.
//! * `KEYS` and `SCAN` are refused inside a transaction, with their own
//!   error: their work is sized by the client (the whole keyspace, or a
//!   `COUNT` of records, each matched against a glob pattern), and inside
//!   `EXEC` it would run while every shard is held, stalling every other
//!   client, replication and anti-entropy for its whole duration. Outside
//!   `MULTI` they hold one shard at a time. (Redis queues them; a client
//!   that needs a consistent key list with other reads can WATCH the keys
//!   it reads instead.)
//! * `WATCH` records each key's version (or its absence). `EXEC` compares
//!   them under the exclusive hold and answers a null array without
//!   running anything when one changed, whoever changed it (another
//!   client, a replicated write, anti-entropy, FLUSHDB). Versions make
//!   this exact: an overwrite with the same value still counts as a change.
//!   A key live when watched that has expired by `EXEC` counts as changed
//!   too (its record keeps its version when it expires).
//! * Read-only mode (`crate::readonly`): a client write queued while it
//!   is on is refused at once (`-READONLY …`, and `EXEC` aborts); a
//!   transaction holding writes whose `EXEC` comes after the mode was
//!   switched on aborts as a whole (`-EXECABORT Transaction discarded
//!   because of: READONLY …`), as in Redis.
//! * Without `MULTI`, `EXEC`/`DISCARD` are errors, as in Redis; `QUIT`
//!   inside `MULTI` closes the connection at once.

use std::time::Instant;

use super::{Ctx, Flow};
use crate::metrics::names;
use crate::protocol::redis::Redis;
use crate::protocol::reply::{NIL_ARRAY, NULL3, Proto, array, error, ok};
use crate::protocol::{Command, Parsed, resp};
use crate::stats::Counter;
use crate::store::Version;

/// Reply to a command refused inside `MULTI` (Redis's text).
const NOT_ALLOWED: &str = "Command not allowed inside a transaction";
/// Reply to `KEYS`/`SCAN` inside `MULTI` (module docs).
const NO_SCANS: &str = "KEYS and SCAN are not allowed inside a transaction: \
                        EXEC holds every shard, run them outside MULTI";

/// Upper bound on the bytes of queued requests of one transaction.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Upper bound on the keys one connection watches.
pub const MAX_WATCHED_KEYS: usize = 100_000;
/// Upper bound on the bytes of the keys one connection watches.
pub const MAX_WATCHED_BYTES: usize = 16 << 20;

/// Per-connection transaction state (allocated on first use).
#[derive(Debug, Default)]
pub struct TxState {
    /// `Some` between `MULTI` and `EXEC`/`DISCARD`.
    queue: Option<Queue>,
    /// Watched keys, the version each had when watched (None: absent),
    /// and whether it was live then (an expired record keeps its version).
    watched: Vec<(Vec<u8>, Option<Version>, bool)>,
    /// Total bytes of the watched keys.
    watched_bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    /// Concatenated raw RESP frames.
    frames: Vec<u8>,
    count: usize,
    /// An error was answered while queueing: `EXEC` aborts.
    dirty: bool,
    /// A client write is queued (`crate::readonly::is_write`): `EXEC`
    /// aborts if read-only mode was switched on meanwhile.
    writes: bool,
}

impl TxState {
    /// True between `MULTI` and `EXEC`/`DISCARD`.
    pub fn queuing(&self) -> bool {
        self.queue.is_some()
    }

    /// Commands queued, while queuing (`CLIENT LIST`'s `multi`).
    pub fn queued(&self) -> Option<usize> {
        self.queue.as_ref().map(|q| q.count)
    }

    /// A request inside `MULTI` failed to parse: `EXEC` will abort.
    pub fn flag_error(&mut self) {
        if let Some(q) = &mut self.queue {
            q.dirty = true;
        }
    }

    /// How many keys are watched.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    /// Heap bytes held: the queued frames and the watched keys.
    pub fn buffer_bytes(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.frames.capacity())
            + self.watched.capacity() * std::mem::size_of::<(Vec<u8>, Option<Version>, bool)>()
            + self.watched_bytes
    }

    fn idle(&self) -> bool {
        self.queue.is_none() && self.watched.is_empty()
    }
}

/// True for the commands this module handles even outside `MULTI`.
#[inline]
pub fn is_tx_command(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Redis(
            Redis::Multi
                | Redis::Exec
                | Redis::Discard
                | Redis::Watch(_)
                | Redis::Unwatch
                | Redis::Reset
        )
    )
}

/// True when `cmd` is refused inside `MULTI` (scripts refuse it too).
pub fn refused_in_multi(cmd: &Command<'_>) -> bool {
    refusal(cmd).is_some()
}

/// Why `cmd` is refused inside `MULTI` (see the module docs), if it is.
fn refusal(cmd: &Command<'_>) -> Option<&'static str> {
    match cmd {
        Command::Sync { .. }
        | Command::Hash(_)
        | Command::Replicate(_)
        | Command::Shutdown
        | Command::Internal(_)
        | Command::Redis(
            Redis::Hello { .. }
            | Redis::Monitor
            | Redis::Save
            | Redis::Subscribe { .. }
            | Redis::Unsubscribe { .. }
            | Redis::Run(_)
            | Redis::Script(_),
        ) => Some(NOT_ALLOWED),
        Command::Scan(_) | Command::Redis(Redis::Keys(_) | Redis::Scan { .. }) => Some(NO_SCANS),
        _ => None,
    }
}

/// Handles `cmd` on a RESP connection whose transaction state is `tx`
/// (`frame`: its raw bytes). Returns the command back when it is to run
/// normally; `None` when it was handled here (reply written).
pub fn step<'a>(
    cmd: Command<'a>,
    frame: &[u8],
    tx: &mut Option<Box<TxState>>,
    ctx: &mut Ctx<'_>,
    out: &mut Vec<u8>,
) -> Option<Command<'a>> {
    // (RESET goes on to the executor, which counts it.)
    if is_tx_command(&cmd) && cmd != Command::Redis(Redis::Reset) {
        ctx.stats.incr(Counter::TotalCommands);
    }
    let queuing = tx.as_ref().is_some_and(|t| t.queuing());
    match cmd {
        Command::Redis(Redis::Multi) => {
            if queuing {
                error(out, Proto::Resp, "MULTI calls can not be nested");
            } else {
                tx.get_or_insert_with(Box::default).queue = Some(Queue::default());
                ok(out, Proto::Resp);
            }
        }
        Command::Redis(Redis::Exec) => match tx.as_deref_mut() {
            Some(t) if t.queuing() => {
                exec(t, ctx, out);
                *tx = None;
            }
            _ => error(out, Proto::Resp, "EXEC without MULTI"),
        },
        Command::Redis(Redis::Discard) => {
            if queuing {
                *tx = None;
                ok(out, Proto::Resp);
            } else {
                error(out, Proto::Resp, "DISCARD without MULTI");
            }
        }
        Command::Redis(Redis::Watch(keys)) => {
            if queuing {
                error(out, Proto::Resp, "WATCH inside MULTI is not allowed");
                return None;
            }
            let t = tx.get_or_insert_with(Box::default);
            let bytes: usize = keys.iter().map(<[u8]>::len).sum();
            if t.watched.len() + keys.len() > MAX_WATCHED_KEYS
                || t.watched_bytes + bytes > MAX_WATCHED_BYTES
            {
                error(
                    out,
                    Proto::Resp,
                    &format!(
                        "too many watched keys (at most {MAX_WATCHED_KEYS} keys, {} MiB)",
                        MAX_WATCHED_BYTES >> 20
                    ),
                );
                return None;
            }
            let store = &ctx.shared.store;
            for k in keys.iter() {
                let v = store.version(k);
                let live = v.is_some() && store.contains(k);
                t.watched.push((k.to_vec(), v, live));
            }
            t.watched_bytes += bytes;
            ok(out, Proto::Resp);
        }
        Command::Redis(Redis::Unwatch) => {
            if let Some(t) = tx.as_deref_mut() {
                t.watched.clear();
                t.watched_bytes = 0;
                if t.idle() {
                    *tx = None;
                }
            }
            ok(out, Proto::Resp);
        }
        // RESET runs at once, even inside MULTI, and ends the transaction
        // and every watch; the executor resets the rest of the state.
        cmd @ Command::Redis(Redis::Reset) => {
            *tx = None;
            return Some(cmd);
        }
        // QUIT closes at once, as in Redis.
        cmd @ Command::Quit => return Some(cmd),
        cmd if !queuing => return Some(cmd),
        cmd => {
            let q = tx
                .as_deref_mut()
                .and_then(|t| t.queue.as_mut())
                .expect("queuing");
            if let Some(why) = refusal(&cmd) {
                q.dirty = true;
                error(out, Proto::Resp, why);
            } else if ctx.shared.read_only.refuses(&cmd) {
                q.dirty = true;
                error(out, Proto::Resp, crate::readonly::READONLY);
            } else if q.frames.len() + frame.len() > MAX_QUEUED_BYTES {
                q.dirty = true;
                error(
                    out,
                    Proto::Resp,
                    &format!(
                        "transaction too large (more than {} MiB queued)",
                        MAX_QUEUED_BYTES >> 20
                    ),
                );
            } else {
                q.frames.extend_from_slice(frame);
                q.count += 1;
                q.writes |= crate::readonly::is_write(&cmd);
                out.extend_from_slice(b"+QUEUED\r\n");
            }
        }
    }
    None
}

/// Runs the queued transaction of `t` (which is queuing).
fn exec(t: &mut TxState, ctx: &mut Ctx<'_>, out: &mut Vec<u8>) {
    let q = t.queue.take().unwrap_or_default();
    let watched = std::mem::take(&mut t.watched);
    t.watched_bytes = 0;
    if q.dirty {
        out.extend_from_slice(b"-EXECABORT Transaction discarded because of previous errors.\r\n");
        return;
    }
    if q.writes && ctx.shared.read_only.is_on() {
        ctx.shared.read_only.count_refused();
        error(
            out,
            Proto::Resp,
            &format!(
                "EXECABORT Transaction discarded because of: {}",
                crate::readonly::READONLY
            ),
        );
        return;
    }
    let shared = ctx.shared;
    let timing = shared.live.latency_tracking();
    let mut cut = false;
    shared.store.exclusive(|held| {
        // The queued commands see the held shards and nothing else.
        let mut ctx = Ctx {
            shared,
            db: held.db(),
            stats: ctx.stats,
            client: ctx.client,
            scratch: &mut *ctx.scratch,
            now: ctx.now,
            log: ctx.log,
            out_limit: ctx.out_limit,
            cut: false,
        };
        let db = ctx.db;
        // A key that expired since WATCH counts as changed (Redis 7.0:
        // "WATCH will consider touched expired keys").
        if watched
            .iter()
            .any(|(k, v, live)| db.version(k) != *v || (*live && !db.contains(k)))
        {
            out.extend_from_slice(if ctx.client.is_resp3() {
                NULL3
            } else {
                NIL_ARRAY
            });
            return;
        }
        array(out, q.count);
        let mut spans = Vec::new();
        let mut pos = 0;
        for _ in 0..q.count {
            // The output limit: a reply of many results stops here and the
            // worker closes the connection (`Ctx::cut`).
            if ctx.cut || out.len() > ctx.out_limit {
                cut = true;
                break;
            }
            // Every frame parsed as a command when it was queued.
            match resp::parse(&q.frames[pos..], &mut spans) {
                Parsed::Request(cmd, n) => {
                    // Each queued command counts as its own call (INFO
                    // commandstats), as in Redis.
                    let (word, sub) = names::words(&q.frames[pos..pos + n]);
                    let slot = word.map_or(names::UNKNOWN, |w| names::NAMES.slot(w, sub));
                    let started = timing.then(Instant::now);
                    let reply_start = out.len();
                    pos += n;
                    let frame = &q.frames[pos - n..pos];
                    let flow = super::execute(cmd, &mut ctx, out, Proto::Resp);
                    if ctx.shared.stats.monitors.active() {
                        super::monitor::feed(
                            &ctx.shared.stats.monitors,
                            &ctx.client.addr,
                            frame,
                            Proto::Resp,
                        );
                    }
                    match flow {
                        Flow::Continue => {}
                        // CLIENT KILL of the caller: closed by its worker.
                        Flow::Close => {
                            ctx.shared.stats.kill(ctx.client);
                        }
                        // Refused at queue time (module docs); never here.
                        _ => error(out, Proto::Resp, NOT_ALLOWED),
                    }
                    let nanos = started.map(|t| t.elapsed().as_nanos() as u64);
                    ctx.stats.commands.account(slot, &out[reply_start..], nanos);
                }
                Parsed::Invalid(e, n) => {
                    pos += n;
                    error(out, Proto::Resp, &e.0);
                }
                _ => {
                    error(out, Proto::Resp, "transaction queue corrupted");
                    pos = q.frames.len();
                }
            }
        }
        cut |= ctx.cut;
    });
    ctx.cut |= cut;
}
