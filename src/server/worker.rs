//! A worker: one `mio::Poll`, one SO_REUSEPORT listener, its connections.
//!
//! Each loop turn:
//!
//! 1. wait for readiness (edge-triggered; both interests registered once at
//!    accept, so backpressure costs no `epoll_ctl`);
//! 2. for each readable connection: read into the worker's scratch buffer,
//!    parse and execute every complete request (pipelining), appending
//!    replies to the connection's output buffer. A short read means the
//!    socket is drained (epoll(7)), which saves the extra `read` that would
//!    only return `EAGAIN`;
//! 3. connections that hit the per-turn request budget, or whose backpressure
//!    or deferred reply cleared, go to the `pending` queue and are resumed
//!    after the other ready connections (fairness);
//! 4. write every connection with new output once (one `write` per
//!    connection per turn for a whole pipelined batch). With persistence,
//!    the turn's log records are committed first (group commit: under
//!    `fsync = always` one fsync covers the turn, and no reply of the turn
//!    is written before it).
//!
//! Invariants: a connection whose unsent output reaches [`WBUF_HIGH`] is not
//! read or parsed until it drains; its buffered input is bounded by one
//! request (a text line ≤ `MAX_LINE`, a RESP request ≤ `resp::MAX_REQUEST`)
//! plus one read, and is framed incrementally across reads
//! (`resp::Partial`, `text::parse_resume`), so a request costs time linear
//! in its size however it is split. A deferred request (SYNC)
//! stops processing of that connection until its reply arrives, so replies
//! stay in request order.
//!
//! A failed AUTH *holds* its connection for `security.auth_failure_delay_ms`
//! (`Conn::held_until`): nothing of it is processed or written, so its
//! `WRONGPASS` and every later reply wait. The worker keeps the deadlines in
//! `Env::held` and shortens its poll timeout to the earliest one; the thread
//! never sleeps, so other connections are served meanwhile. A connection
//! is held at most once at a time, so `held` has at most one live entry
//! per connection (entries of connections closed meanwhile expire with
//! their deadline).
//!
//! The path of a request through this loop and beyond: docs/architecture.md,
//! "A write, end to end".

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{self, Conn, WBUF_HIGH};
use super::tls::{self, Acceptor};
use crate::auth::{self, gate::Admit};
use crate::exec::monitor;
use crate::exec::{self, Ctx, Flow};
use crate::jobs::{Completion, Job, Responder};
use crate::limits::LogKind;
use crate::metrics::names;
use crate::monitor::Feed;
use crate::protocol::redis::Redis;
use crate::protocol::reply::{self, Proto};
use crate::protocol::{Command, Fatal, Parsed, resp, text};
use crate::pubsub::Subscriber;
use crate::script;
use crate::state::Shared;
use crate::stats::{ClientInfo, ReplyMode, WorkerStats};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Size of the worker's read buffer (one `read` per wakeup for typical
/// pipelines).
const SCRATCH: usize = 64 << 10;
/// Requests executed per connection before others get a turn.
const BUDGET: usize = 1024;
/// Growth step of a connection's own input buffer.
const RBUF_STEP: usize = 16 << 10;
/// Input buffer capacity kept once a request is done; a larger buffer
/// (left by a large request) is shrunk or released.
const RBUF_KEEP: usize = 64 << 10;
/// Input bytes read from one connection per turn before the others get a
/// turn (fast senders of large requests cannot hold the worker: with 60
/// such clients, a 4 MiB budget made a turn, and so a PING, wait seconds).
const READ_BUDGET: usize = 256 << 10;
/// Argument spans the worker keeps after a request with many arguments.
const SPANS_KEEP: usize = 4096;
/// Period of the connection sweep: idle timeout, closing deadlines, soft
/// output limit, client memory budget.
const SWEEP: Duration = Duration::from_millis(250);

/// Why [`process`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// All complete requests were handled; need more input.
    Drained,
    /// The per-turn budget is used up.
    Budget,
    /// Deferred reply, backpressure, or closing.
    Blocked,
    /// SHUTDOWN was executed.
    NodeStopping,
}

/// What [`process`] needs besides the connection.
struct Env {
    id: usize,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    rmw: Vec<u8>,
    /// Reused RESP argument spans.
    spans: Vec<(u32, u32)>,
    /// Spans of the next pipelined RESP request, framed ahead to prefetch
    /// its key (then swapped into `spans` instead of framing it again).
    peek: Vec<(u32, u32)>,
    now: Instant,
    now_ms: u64,
    completions: Sender<Completion>,
    waker: Arc<Waker>,
    /// This worker's persistence log (persistent engine only).
    log: Option<crate::persist::LogWriter>,
    /// Tokens of this worker's `MONITOR` connections (may hold stale
    /// tokens until the next wake prunes them).
    monitors: Vec<usize>,
    /// Tokens of this worker's connections with Pub/Sub subscriptions
    /// (pruned like `monitors`).
    subscribers: Vec<usize>,
    /// Slots of the hot commands in the command statistics.
    hot: names::Hot,
    /// Connections held after a failed AUTH: (until, token, connection id).
    held: Vec<(Instant, usize, u64)>,
}

/// A worker thread's state.
pub struct Worker {
    poll: Poll,
    listener: TcpListener,
    env: Env,
    completions: Receiver<Completion>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    pending: VecDeque<usize>,
    dirty: Vec<usize>,
    scratch: Box<[u8]>,
    shutting_down: bool,
    last_sweep: Instant,
    /// Client buffer bytes of this worker's connections (the part of
    /// `Memory::clients` this worker reported).
    client_bytes: usize,
}

impl Worker {
    /// A worker serving `listener`.
    pub fn new(id: usize, mut listener: TcpListener, shared: Arc<Shared>) -> io::Result<Worker> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        shared.shutdown.add_waker(waker.clone());
        shared.stats.set_waker(id, waker.clone());
        let (completion_sender, completion_receiver) = unbounded();
        let now = Instant::now();
        let log = shared
            .persist
            .as_ref()
            .map(|p| p.worker_writer(&format!("w{id}")));
        Ok(Worker {
            poll,
            listener,
            env: Env {
                id,
                stats: shared.stats.worker(id),
                shared,
                rmw: Vec::new(),
                spans: Vec::new(),
                peek: Vec::new(),
                now,
                now_ms: 0,
                completions: completion_sender,
                waker,
                log,
                monitors: Vec::new(),
                subscribers: Vec::new(),
                hot: names::NAMES.hot(),
                held: Vec::new(),
            },
            completions: completion_receiver,
            conns: Vec::new(),
            free: Vec::new(),
            pending: VecDeque::new(),
            dirty: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            shutting_down: false,
            last_sweep: now,
            client_bytes: 0,
        })
    }

    /// Runs the event loop until shutdown.
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        // When a poll last found an event (busy polling counts from it).
        let mut last_event = self.env.now;
        loop {
            crate::failfast::checkpoint();
            if self.env.shared.shutdown.is_triggered() {
                break;
            }
            // No connection: nothing for the sweep to do, so block until
            // an event (a connection, a completion or shutdown wakes us)
            // instead of waking every `SWEEP` on an idle node.
            let mut timeout = if !self.pending.is_empty() {
                Some(Duration::ZERO)
            } else if self.conns.len() == self.free.len() {
                None
            } else {
                Some(SWEEP)
            };
            if let Some(first) = self.env.held.iter().map(|h| h.0).min() {
                let wait = first.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
            }
            // Busy polling: for `network.busy_poll_us` after the last event,
            // poll without sleeping, so the next request finds the worker
            // running (no sleep, no wakeup). Only with connections open.
            let busy = self.env.shared.live.busy_poll();
            let spin_from = (!busy.is_zero()
                && timeout != Some(Duration::ZERO)
                && self.conns.len() > self.free.len()
                && self.env.now.saturating_duration_since(last_event) < busy)
                .then(Instant::now);
            if spin_from.is_some() {
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker {}: poll failed: {e}", self.env.id);
                break;
            }
            self.set_now(Instant::now());
            let found = !events.is_empty();
            if found {
                last_event = self.env.now;
            }
            if let Some(from) = spin_from {
                self.env
                    .stats
                    .busy_poll(found, self.env.now.saturating_duration_since(from));
                if !found {
                    // A spinning worker gives way to any other thread that
                    // is ready to run on its core (it returns at once when
                    // none is).
                    std::thread::yield_now();
                }
            }
            self.release_held();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.on_wake(),
                    Token(i) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            if let Some(c) = self.conn(i) {
                                c.want_read = true;
                                c.hup |= ev.is_read_closed() || ev.is_error();
                            }
                            self.drive(i);
                        }
                        if ev.is_writable() {
                            self.on_writable(i);
                        }
                    }
                }
            }
            for _ in 0..self.pending.len() {
                let Some(i) = self.pending.pop_front() else {
                    break;
                };
                if let Some(c) = self.conn(i) {
                    c.pending = false;
                    self.drive(i);
                }
            }
            self.commit_log();
            self.flush_dirty();
            if self.shutting_down {
                self.env.shared.shutdown.trigger();
                break;
            }
            self.sweep();
        }
        self.commit_log();
        self.flush_dirty();
        for i in 0..self.conns.len() {
            self.close(i);
        }
    }

    /// Group commit: the turn's log records are written (and fsynced under
    /// `fsync = always`) before any reply of the turn is written.
    fn commit_log(&self) {
        if let Some(log) = &self.env.log {
            log.commit();
        }
    }

    fn set_now(&mut self, now: Instant) {
        self.env.now = now;
        self.env.now_ms = self.env.shared.stats.elapsed_ms(now);
    }

    fn conn(&mut self, i: usize) -> Option<&mut Conn> {
        self.conns.get_mut(i).and_then(Option::as_mut)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, addr)) => {
                    let max = self.env.shared.live.max_connections();
                    if self.env.shared.stats.active_connections() >= max {
                        self.env.shared.stats.reject_connection();
                        let _ = sock.write(b"ERROR max connections reached\r\n");
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if let Err(e) = self.poll.registry().register(
                        &mut sock,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("register connection: {e}");
                        self.free.push(i);
                        continue;
                    }
                    let info = self.env.shared.stats.accepted(
                        self.env.id,
                        addr,
                        sock.local_addr().ok(),
                        i64::from(std::os::fd::AsRawFd::as_raw_fd(&sock)),
                        self.env.now,
                    );
                    let max_bulk = self.env.shared.memory.proto_max_bulk_len();
                    self.conns[i] = Some(Conn::new(sock, info, self.env.now, max_bulk));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE and friends: the backlog keeps the connection
                    // until a later accept succeeds.
                    log::warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }

    fn on_wake(&mut self) {
        while let Ok(c) = self.completions.try_recv() {
            let Some(conn) = self.conn(c.token) else {
                continue;
            };
            if conn.info.id != c.conn_id || conn.lingering {
                continue;
            }
            if conn.script_jobs > 0 {
                // A chained script's reply (never suppressed: `chains`).
                conn.script_jobs -= 1;
                conn.wbuf.extend_from_slice(&c.bytes);
            } else {
                if !std::mem::take(&mut conn.drop_deferred) {
                    conn.wbuf.extend_from_slice(&c.bytes);
                }
                conn.deferred = false;
            }
            self.mark_dirty(c.token);
            self.mark_pending(c.token);
            self.account(c.token);
        }
        if self.env.shared.stats.take_kills(self.env.id) {
            for i in 0..self.conns.len() {
                if self.conns[i].as_ref().is_some_and(|c| c.info.is_killed()) {
                    self.close(i);
                }
            }
        }
        if !self.env.monitors.is_empty() {
            self.drain_feeds(false);
        }
        if !self.env.subscribers.is_empty() {
            self.drain_feeds(true);
        }
    }

    /// Moves the lines published for this worker's monitors (or, with
    /// `pubsub`, the messages for its subscribers) into their output
    /// buffers. A connection whose feed overflowed, or whose output passes
    /// the hard output limit, is disconnected like any client over that
    /// limit (and counted).
    fn drain_feeds(&mut self, pubsub: bool) {
        let feed_of = |c: &Conn| {
            if pubsub {
                c.subs.as_ref().map(|s| s.sub.feed.clone())
            } else {
                c.monitor.clone()
            }
        };
        let list = if pubsub {
            &mut self.env.subscribers
        } else {
            &mut self.env.monitors
        };
        let mut tokens = std::mem::take(list);
        tokens.retain(|&i| {
            self.conns
                .get(i)
                .is_some_and(|c| c.as_ref().is_some_and(|c| feed_of(c).is_some()))
        });
        let hard = self.env.shared.memory.output_hard();
        for &i in &tokens {
            let now = self.env.now;
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            let Some(feed) = feed_of(conn) else {
                continue;
            };
            if conn.closing || conn.lingering {
                feed.drain_into(&mut Vec::new());
                continue;
            }
            // A subscriber waiting for a deferred reply (its script) gets
            // the messages published meanwhile after that reply, as Redis
            // sends a script's publishes to its own caller: they wait in
            // the bounded feed until the completion is written (`on_wake`
            // writes completions first, then drains).
            if pubsub && (conn.deferred || conn.script_jobs > 0) {
                continue;
            }
            let fits = feed.drain_into(&mut conn.wbuf);
            if !fits || (hard != 0 && conn.unsent() > hard) {
                let unsent = conn.unsent();
                if pubsub {
                    self.env.shared.pubsub.drop_all(&mut conn.subs);
                } else {
                    conn.monitor = None;
                    self.env.shared.stats.monitors.remove(conn.info.id);
                }
                conn.fail(now, OUTPUT_LIMIT);
                conn.publish_view(0, true);
                output_limit_hit(&self.env, unsent, "hard");
            }
            self.mark_dirty(i);
            self.check_soft_limit(i);
            self.account(i);
        }
        tokens.retain(|&i| {
            self.conns
                .get(i)
                .is_some_and(|c| c.as_ref().is_some_and(|c| feed_of(c).is_some()))
        });
        if pubsub {
            self.env.subscribers = tokens;
        } else {
            self.env.monitors = tokens;
        }
    }

    /// Ends the holds whose time has come: the connection's replies are
    /// written and its input processed again.
    fn release_held(&mut self) {
        let now = self.env.now;
        let mut k = 0;
        while k < self.env.held.len() {
            let (until, i, id) = self.env.held[k];
            if until > now {
                k += 1;
                continue;
            }
            self.env.held.swap_remove(k);
            if let Some(c) = self.conn(i)
                && c.info.id == id
                && c.held_until == Some(until)
            {
                c.held_until = None;
                self.mark_dirty(i);
                self.mark_pending(i);
            }
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = self.conn(i)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    fn mark_pending(&mut self, i: usize) {
        if let Some(c) = self.conn(i)
            && !c.pending
        {
            c.pending = true;
            self.pending.push_back(i);
        }
    }

    /// Reads, parses and executes as much as allowed for connection `i`.
    fn drive(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if conn.lingering {
            if conn.discard(&mut self.scratch) {
                self.close(i);
            }
            return;
        }
        let env = &mut self.env;
        let mut budget = BUDGET;
        let mut read_budget = READ_BUDGET;
        let mut stop = Stop::Drained;

        // Input left over from an earlier turn goes first.
        if !conn.rbuf.is_empty() && !conn.blocked() {
            stop = process_rbuf(env, i, conn, false, &mut budget);
        }

        while stop == Stop::Drained && conn.want_read && !conn.read_closed && !conn.blocked() {
            if read_budget == 0 {
                // Fairness: the rest of this input waits for the next turn.
                stop = Stop::Budget;
                break;
            }
            let res = if conn.rbuf.is_empty() {
                conn::read(&mut conn.sock, &mut conn.tls, &mut self.scratch)
            } else {
                // Growth is bounded by the parsers, which refuse a request
                // as soon as it is known to exceed its protocol's limit.
                let len = conn.rbuf.len();
                conn.rbuf.resize(len + RBUF_STEP, 0);
                let r = conn::read(&mut conn.sock, &mut conn.tls, &mut conn.rbuf[len..]);
                conn.rbuf.truncate(len + *r.as_ref().unwrap_or(&0));
                r
            };
            match res {
                Ok(0) => conn.read_closed = true,
                Ok(n) => {
                    conn.last_active = env.now;
                    read_budget = read_budget.saturating_sub(n);
                    // The first bytes of a connection choose its transport.
                    if conn.proto.is_none()
                        && conn.tls.is_none()
                        && let Some(acceptor) = &env.shared.tls
                    {
                        match choose_transport(acceptor, conn, &self.scratch[..n], env) {
                            Transport::Plain => {}
                            Transport::Tls => continue,
                            Transport::Refused => {
                                stop = Stop::Blocked;
                                break;
                            }
                            Transport::Failed => {
                                self.close(i);
                                return;
                            }
                        }
                    }
                    let from_scratch = conn.rbuf.is_empty();
                    // A read into the connection's buffer may have been
                    // cut by its room, not by the socket: read again.
                    let full = !from_scratch || n == self.scratch.len();
                    if !full && !conn.hup {
                        conn.want_read = false;
                    }
                    if from_scratch {
                        let (used, s) =
                            process(env, i, conn, &self.scratch[..n], false, &mut budget);
                        if !conn.closing {
                            conn.rbuf.extend_from_slice(&self.scratch[used..n]);
                        }
                        stop = s;
                    } else {
                        stop = process_rbuf(env, i, conn, false, &mut budget);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.want_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData
                        && conn.tls.is_some()
                        && let Some(a) = &env.shared.tls
                    {
                        a.stats.errors.fetch_add(1, Relaxed);
                        log::debug!("TLS from {}: {e}", conn.info.addr);
                    }
                    self.close(i);
                    return;
                }
            }
        }

        // The peer half-closed: answer what is left, then close.
        if stop == Stop::Drained && conn.read_closed && !conn.blocked() {
            stop = process_rbuf(env, i, conn, true, &mut budget);
            if stop == Stop::Drained {
                conn.start_close(env.now);
            }
        }

        // A request with very many arguments leaves a large spans vector.
        if env.spans.capacity() > SPANS_KEEP {
            env.spans = Vec::new();
        }
        if env.peek.capacity() > SPANS_KEEP {
            env.peek = Vec::new();
        }

        let resume = stop == Stop::Budget;
        if conn.unsent() > 0 || conn.closing || conn.tls_pending() {
            self.mark_dirty(i);
        }
        if resume {
            self.mark_pending(i);
        }
        if stop == Stop::NodeStopping {
            self.shutting_down = true;
            self.commit_log();
            if let Some(c) = self.conn(i) {
                c.closing = true;
                let _ = c.flush();
            }
        }
        self.check_soft_limit(i);
        self.account(i);
        // What CLIENT LIST shows: published after each batch, before its
        // replies leave (a client that got a reply sees the state it left),
        // and the output side after the write (`flush`).
        if let Some(c) = self.conn(i) {
            let q = c.rbuf.len();
            c.publish_view(q, false);
        }
    }

    fn on_writable(&mut self, i: usize) {
        let wait_for_log = self
            .env
            .log
            .as_ref()
            .is_some_and(|l| l.must_commit_before_reply());
        let Some(conn) = self.conn(i) else { return };
        if conn.unsent() == 0 && !conn.closing && !conn.tls_pending() {
            return;
        }
        if wait_for_log {
            // Replies of this turn go out after the group commit.
            self.mark_dirty(i);
            return;
        }
        self.flush(i);
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let Some(conn) = self.conn(i) else { continue };
            conn.dirty = false;
            // A writable edge in this turn may have written it already.
            if conn.unsent() == 0 && !conn.closing && !conn.tls_pending() {
                continue;
            }
            self.flush(i);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Writes what connection `i` can take; closes it on error, lingers
    /// once a closing connection is drained, and resumes its input when
    /// the write relieved backpressure.
    fn flush(&mut self, i: usize) {
        let now = self.env.now;
        let Some(conn) = self.conn(i) else { return };
        if conn.lingering || conn.held_until.is_some() {
            return;
        }
        let was_blocked = conn.unsent() >= WBUF_HIGH;
        let before = conn.unsent();
        let res = conn.flush();
        if conn.unsent() < before {
            conn.last_active = now;
        }
        let q = conn.rbuf.len();
        conn.publish_view(q, true);
        match res {
            Err(_) => self.close(i),
            Ok(true) if conn.closing => {
                if conn.read_closed {
                    self.close(i);
                } else {
                    conn.linger();
                    self.account(i);
                    // Input may already be waiting (edge-triggered).
                    self.drive(i);
                }
            }
            Ok(_) => {
                if was_blocked && !conn.blocked() {
                    self.mark_pending(i);
                }
                self.check_soft_limit(i);
                self.account(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let Some(slot) = self.conns.get_mut(i) else {
            return;
        };
        let Some(mut conn) = slot.take() else { return };
        if conn.monitor.take().is_some() {
            self.env.shared.stats.monitors.remove(conn.info.id);
        }
        self.env.shared.pubsub.drop_all(&mut conn.subs);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        self.env.shared.stats.disconnect(conn.info.id);
        self.env.shared.memory.clients_changed(conn.mem, 0);
        self.client_bytes -= conn.mem;
        self.free.push(i);
    }

    /// Reports the change of connection `i`'s buffer bytes to the client
    /// memory accounting, and enforces `maxmemory_clients`.
    fn account(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let now = conn.buffer_bytes();
        if now == conn.mem {
            return;
        }
        self.env.shared.memory.clients_changed(conn.mem, now);
        self.client_bytes = self.client_bytes + now - conn.mem;
        conn.mem = now;
        if self.env.shared.memory.clients_over_budget() {
            self.evict();
        }
    }

    /// `maxmemory_clients`: while client buffers exceed the budget and this
    /// worker holds more than its share, disconnects its largest client.
    /// (A worker within its share leaves eviction to the others, which
    /// check on their next sweep.)
    fn evict(&mut self) {
        let shared = self.env.shared.clone();
        let memory = &shared.memory;
        let share = memory.clients_budget() / shared.config.threads.max(1) as u64;
        while memory.clients_over_budget() && self.client_bytes as u64 > share {
            let Some((i, bytes)) = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    c.as_ref()
                        .filter(|c| !c.closing && !c.info.no_evict())
                        .map(|c| (i, c.mem))
                })
                .max_by_key(|&(_, m)| m)
            else {
                return;
            };
            if bytes == 0 {
                return;
            }
            memory.count_evicted();
            if memory.log_gate(LogKind::Evicted, self.env.now_ms) {
                let (_, evicted, _) = memory.counters();
                log::warn!(
                    "client buffers above maxmemory_clients ({} > {} bytes): disconnecting the largest client ({bytes} bytes); {evicted} evicted so far",
                    memory.clients(),
                    memory.clients_budget()
                );
            }
            let now = self.env.now;
            let conn = self.conns[i].as_mut().expect("found above");
            conn.fail(
                now,
                "client evicted: client buffers above maxmemory_clients; closing connection",
            );
            let fresh = conn.buffer_bytes();
            memory.clients_changed(conn.mem, fresh);
            self.client_bytes = self.client_bytes + fresh - conn.mem;
            conn.mem = fresh;
            self.mark_dirty(i);
        }
    }

    /// The soft output limit: a connection whose unsent output stays above
    /// it for longer than the configured time is disconnected.
    #[inline]
    fn check_soft_limit(&mut self, i: usize) {
        let soft = self.env.shared.memory.output_soft();
        let Some(conn) = self.conn(i) else { return };
        if soft == 0 || conn.closing || conn.unsent() <= soft {
            conn.soft_since = None;
            return;
        }
        self.over_soft_limit(i);
    }

    /// [`Worker::check_soft_limit`] for a connection above the soft limit.
    #[cold]
    fn over_soft_limit(&mut self, i: usize) {
        let soft_time = self.env.shared.memory.output_soft_time();
        let now = self.env.now;
        let Some(conn) = self.conn(i) else { return };
        let since = *conn.soft_since.get_or_insert(now);
        if now.duration_since(since) >= soft_time {
            let unsent = conn.unsent();
            conn.fail(now, OUTPUT_LIMIT);
            output_limit_hit(&self.env, unsent, "soft");
            self.mark_dirty(i);
            self.account(i);
        }
    }

    /// Every [`SWEEP`]: closes idle connections (`connection_timeout`) and
    /// closing connections past their deadline, applies the soft output
    /// limit, and the client memory budget.
    fn sweep(&mut self) {
        if self.env.now.duration_since(self.last_sweep) < SWEEP {
            return;
        }
        self.last_sweep = self.env.now;
        let now = self.env.now;
        let idle_timeout = self.env.shared.live.timeout();
        let max_bulk = self.env.shared.memory.proto_max_bulk_len();
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            // `CONFIG SET proto-max-bulk-len` reaches open connections here.
            c.resp.set_max_bulk(max_bulk);
            let expired = c.close_by.is_some_and(|t| now >= t);
            let idle = idle_timeout.is_some_and(|t| {
                !c.deferred
                    && c.script_jobs == 0
                    && !c.closing
                    && c.held_until.is_none()
                    && now.duration_since(c.last_active) > t
            });
            if expired || idle {
                self.close(i);
            } else {
                self.check_soft_limit(i);
            }
        }
        if self.env.shared.memory.clients_over_budget() {
            self.evict();
        }
    }
}

/// The last reply of a connection closed by an output limit.
const OUTPUT_LIMIT: &str =
    "output buffer limit reached (client_output_buffer_limit); closing connection";

/// Counts and (rate-limited) logs a disconnection by an output limit.
fn output_limit_hit(env: &Env, bytes: usize, which: &str) {
    let memory = &env.shared.memory;
    memory.count_output_closed();
    if memory.log_gate(LogKind::OutputLimit, env.now_ms) {
        let (_, _, n) = memory.counters();
        log::warn!(
            "closing a client over the {which} output limit ({bytes} bytes of reply pending); {n} such disconnections so far"
        );
    }
}

/// What a connection's first bytes chose.
enum Transport {
    /// Plaintext (RESP or text): process the bytes.
    Plain,
    /// A TLS handshake: the bytes went into a new session.
    Tls,
    /// Plaintext under `tls.required`: an error reply is queued, then close.
    Refused,
    /// The handshake's first bytes were not valid TLS: close.
    Failed,
}

/// Starts a TLS session when `first` begins with a TLS handshake record;
/// refuses plaintext when TLS is required.
#[cold]
fn choose_transport(acceptor: &Acceptor, conn: &mut Conn, first: &[u8], env: &Env) -> Transport {
    let shared = &env.shared;
    if first[0] == tls::HANDSHAKE {
        return match acceptor.start(first) {
            Ok(session) => {
                conn.tls = Some(Box::new(session));
                acceptor.stats.connections.fetch_add(1, Relaxed);
                Transport::Tls
            }
            Err(e) => {
                acceptor.stats.connections.fetch_add(1, Relaxed);
                acceptor.stats.errors.fetch_add(1, Relaxed);
                log::debug!("TLS from {}: {e}", conn.info.addr);
                Transport::Failed
            }
        };
    }
    if !acceptor.required {
        return Transport::Plain;
    }
    let proto = if first[0] == b'*' || !shared.config.text_protocol {
        Proto::Resp
    } else {
        Proto::Text
    };
    conn.proto = Some(proto);
    acceptor.stats.plaintext_refused.fetch_add(1, Relaxed);
    reply::error(
        &mut conn.wbuf,
        proto,
        "TLS required: connect with TLS to this port",
    );
    conn.closing = true;
    Transport::Refused
}

/// The probable key of the next complete text-protocol line in `buf` (the
/// second space-separated word), for a prefetch hint only: no validation,
/// a wrong guess merely prefetches a useless line. `None` without a
/// complete line or a second word.
#[inline]
fn text_peek_key(buf: &[u8]) -> Option<&[u8]> {
    let line = &buf[..memchr::memchr(b'\n', buf)?];
    let rest = &line[memchr::memchr(b' ', line)? + 1..];
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\t')
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// [`process`] on the connection's own input buffer; drops what was used.
fn process_rbuf(
    env: &mut Env,
    token: usize,
    conn: &mut Conn,
    eof: bool,
    budget: &mut usize,
) -> Stop {
    let buf = std::mem::take(&mut conn.rbuf);
    let (used, stop) = process(env, token, conn, &buf, eof, budget);
    if conn.closing {
        // Nothing more is processed: the input is dropped.
        return stop;
    }
    conn.rbuf = buf;
    conn.rbuf.drain(..used);
    // Input buffers shrink back after a large request: a buffer mostly
    // empty is released (or cut down to what it holds).
    let cap = conn.rbuf.capacity();
    if cap > RBUF_KEEP && conn.rbuf.len() <= cap / 4 {
        if conn.rbuf.is_empty() {
            conn.rbuf = Vec::new();
        } else {
            conn.rbuf.shrink_to(conn.rbuf.len().max(RBUF_KEEP));
        }
    }
    stop
}

/// Parses and executes the complete requests at the front of `data`.
/// Returns the bytes consumed and why it stopped. With `eof`, a final
/// unterminated request is executed too.
///
/// The batch runs inside the script gate (`script::gate`): while a Lua
/// script runs, no request of this worker touches the keyspace.
fn process(
    env: &mut Env,
    token: usize,
    conn: &mut Conn,
    data: &[u8],
    eof: bool,
    budget: &mut usize,
) -> (usize, Stop) {
    let mut entered = env.shared.scripting.gate.enter(env.id);
    let r = process_batch(env, token, conn, data, eof, budget, &mut entered);
    if entered {
        env.shared.scripting.gate.leave(env.id);
    }
    r
}

/// Whether a request may run now that the script gate was closed when the
/// batch began: waits until the script ends (then enters the gate) or is
/// busy (then only [`script::allowed_while_busy`] requests run).
#[cold]
fn gate_admits(shared: &Shared, id: usize, cmd: &Command<'_>, entered: &mut bool) -> bool {
    let gate = &shared.scripting.gate;
    loop {
        if gate.enter(id) {
            *entered = true;
            return true;
        }
        // A script request only queues for the script thread (no key is
        // touched here): it need not wait for the running script, unless
        // that one is busy (then `-BUSY`, as in Redis).
        if script::queues_for_script_thread(cmd) && !gate.busy() {
            return true;
        }
        match gate.wait(shared.scripting.threshold()) {
            crate::script::gate::Closed::Ended => continue,
            crate::script::gate::Closed::Busy => return script::allowed_while_busy(cmd),
        }
    }
}

/// Script requests one connection may have out at once (a pipeline of
/// `EVAL`s is handed over without waiting for each reply).
const MAX_CHAIN: u32 = 64;

/// Whether `cmd` may be taken while this connection has script replies
/// out: another script request, under the same conditions as the first
/// (replies on, no transaction), up to [`MAX_CHAIN`]. The script thread
/// answers in the order it received them, so replies stay in request
/// order; anything else waits until they are all back.
fn chains(cmd: &Command<'_>, conn: &Conn) -> bool {
    matches!(cmd, Command::Redis(Redis::Run(_))) && conn.script_jobs < MAX_CHAIN && may_chain(conn)
}

/// The connection state a chained script request needs: replies on and
/// no transaction (both for the first of a chain and for those after it).
fn may_chain(conn: &Conn) -> bool {
    conn.tx.is_none() && conn.info.reply_mode() == ReplyMode::On
}

/// The `-BUSY` refusal of `cmd` while a script is busy; inside `MULTI`
/// the transaction is flagged (`EXEC` then aborts), and `EXEC` itself
/// discards it, as Redis does.
#[cold]
fn refuse_busy(shared: &Shared, conn: &mut Conn, cmd: &Command<'_>, proto: Proto) {
    let sc = &shared.scripting;
    sc.counters.busy_replies.fetch_add(1, Relaxed);
    let busy = if sc.gate.running_function() {
        script::BUSY_FUNCTION
    } else {
        script::BUSY_EVAL
    };
    if matches!(cmd, Command::Redis(Redis::Exec)) && conn.tx.as_ref().is_some_and(|t| t.queuing()) {
        conn.tx = None;
        let msg = format!("EXECABORT Transaction discarded because of: {busy}");
        reply::error(&mut conn.wbuf, proto, &msg);
        return;
    }
    if let Some(t) = conn.tx.as_mut().filter(|t| t.queuing()) {
        t.flag_error();
    }
    reply::error(&mut conn.wbuf, proto, busy);
}

/// [`process`] once the gate was tried: `entered` says whether this
/// worker is inside it (and becomes true when a request enters later).
#[allow(clippy::too_many_arguments)]
fn process_batch(
    env: &mut Env,
    token: usize,
    conn: &mut Conn,
    data: &[u8],
    eof: bool,
    budget: &mut usize,
    entered: &mut bool,
) -> (usize, Stop) {
    let mut pos = 0;
    let mut touched = false;
    // Length of the RESP request at `pos` when it was already framed into
    // `env.peek` (while prefetching), so it is not framed twice.
    let mut framed: Option<usize> = None;
    loop {
        if conn.blocked() {
            return (pos, Stop::Blocked);
        }
        if pos == data.len() {
            return (pos, Stop::Drained);
        }
        if *budget == 0 {
            return (pos, Stop::Budget);
        }
        let rest = &data[pos..];
        let text_ok = env.shared.config.text_protocol;
        let proto = *conn.proto.get_or_insert(if rest[0] == b'*' || !text_ok {
            Proto::Resp
        } else {
            Proto::Text
        });
        let parsed = match (proto, framed.take()) {
            (Proto::Text, _) => match text::parse_resume(rest, &mut conn.text_scanned) {
                Parsed::Incomplete if eof => text::parse_eof(rest),
                p => p,
            },
            (Proto::Resp, Some(n)) => {
                std::mem::swap(&mut env.spans, &mut env.peek);
                resp::decode(rest, n, &env.spans)
            }
            (Proto::Resp, None) => {
                // A remembered prefix always describes the front of `data`.
                debug_assert!(pos == 0 || !conn.resp.is_active());
                // Framed and decoded in two steps so that `env.spans` stays
                // readable (the command words below).
                match conn.resp.frame(rest, &mut env.spans) {
                    resp::Frame::Incomplete => Parsed::Incomplete,
                    resp::Frame::Invalid(e) => Parsed::Fatal(Fatal::Protocol(e)),
                    resp::Frame::Complete(n) => resp::decode(rest, n, &env.spans),
                }
            }
        };
        match parsed {
            Parsed::Request(cmd, n) => {
                // Replies of scripts still out come first (`chains`).
                if conn.script_jobs > 0 && !chains(&cmd, conn) {
                    return (pos, Stop::Blocked);
                }
                let start = pos;
                pos += n;
                *budget -= 1;
                // Pipelined requests: start loading the next request's
                // bucket while this one executes (store lookups are
                // cache-miss bound; measured in perf/README.md).
                let next = match proto {
                    Proto::Resp => {
                        match resp::frame_max(&data[pos..], &mut env.peek, conn.resp.max_bulk()) {
                            resp::Frame::Complete(n) => {
                                framed = Some(n);
                                env.peek
                                    .get(1)
                                    .map(|&(s, e)| &data[pos + s as usize..pos + e as usize])
                            }
                            _ => None,
                        }
                    }
                    Proto::Text => text_peek_key(&data[pos..]),
                };
                if let Some(key) = next {
                    env.shared.store.prefetch(key);
                }
                if !touched {
                    conn.info.touch(env.now_ms);
                    touched = true;
                }
                // The hard output limit, enforced while the reply is
                // generated: long replies stop at `out_limit` and set
                // `cut`; any reply past the limit closes the connection.
                let hard = env.shared.memory.output_hard();
                let reply_start = conn.wbuf.len();
                // The command word and subcommand, read once: they name the
                // statistics slot and CLIENT LIST's `cmd` field. A RESP
                // request's are its first two argument spans (no rescan).
                let words = match proto {
                    Proto::Resp => (
                        span(&data[start..pos], &env.spans, 0),
                        span(&data[start..pos], &env.spans, 1),
                    ),
                    Proto::Text => names::words(&data[start..pos]),
                };
                let slot = slot_of(&cmd, words, &env.hot);
                let started = env
                    .shared
                    .live
                    .latency_tracking()
                    .then(crate::clock::mono_nanos);
                skip_armed(&conn.info);
                // What CLIENT LIST shows as the last command (and, for
                // CLIENT LIST / INFO on this connection, its state now).
                note_command(conn, words);
                if matches!(
                    cmd,
                    Command::Redis(Redis::ClientList(_) | Redis::ClientInfo)
                ) {
                    conn.publish_view(data.len() - start, true);
                }
                let mut ctx = Ctx {
                    shared: &env.shared,
                    db: env.shared.store.db(),
                    stats: &env.stats,
                    client: &conn.info,
                    scratch: &mut env.rmw,
                    now: env.now,
                    log: env.log.as_ref(),
                    out_limit: if hard == 0 {
                        usize::MAX
                    } else {
                        conn.wpos + hard
                    },
                    cut: false,
                };
                // Authentication and roles (auth::gate): one test when no
                // password is configured.
                if env.shared.auth.enabled() || matches!(cmd, Command::Auth { .. }) {
                    match auth::gate::admit(
                        &env.shared.auth,
                        &mut conn.session,
                        &cmd,
                        &data[start..pos],
                        proto,
                        &mut conn.wbuf,
                    ) {
                        Admit::Run => {}
                        Admit::Done => {
                            let auth = matches!(cmd, Command::Auth { .. });
                            account_gate(env, slot, &conn.wbuf[reply_start..], started);
                            // AUTH ran (answered by the gate): monitors see
                            // it, redacted, as in Redis.
                            if auth {
                                feed_monitors(env, conn, &data[start..pos], proto);
                            }
                            continue;
                        }
                        Admit::Failed { close } => {
                            account_gate(env, slot, &conn.wbuf[reply_start..], started);
                            // A failed AUTH (or HELLO … AUTH) ran too.
                            feed_monitors(env, conn, &data[start..pos], proto);
                            conn.closing |= close;
                            hold(env, token, conn);
                            if conn.blocked() {
                                return (pos, Stop::Blocked);
                            }
                            continue;
                        }
                    }
                }
                // Pub/Sub: a RESP2 connection with subscriptions runs only
                // (un)subscriptions, PING, QUIT and RESET (Redis's
                // subscribed mode). A test of a connection field otherwise.
                if conn.subs.is_some() && !conn.info.is_resp3() {
                    match cmd {
                        Command::Redis(
                            Redis::Subscribe { .. } | Redis::Unsubscribe { .. } | Redis::Reset,
                        )
                        | Command::Quit => {}
                        Command::Ping(msg) => {
                            conn.wbuf.extend_from_slice(b"*2\r\n$4\r\npong\r\n");
                            reply::bulk(&mut conn.wbuf, msg.unwrap_or_default());
                            env.stats
                                .commands
                                .account(slot, &conn.wbuf[reply_start..], None);
                            continue;
                        }
                        _ => {
                            let msg = format!(
                                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                                conn.view.cmd()
                            );
                            reply::error(&mut conn.wbuf, proto, &msg);
                            env.stats.commands.refused(slot, &conn.wbuf[reply_start..]);
                            continue;
                        }
                    }
                }
                // A Lua script runs (script::gate): wait for it, or answer
                // -BUSY once it is busy. One branch when no script ran.
                if !*entered && !gate_admits(&env.shared, env.id, &cmd, entered) {
                    refuse_busy(&env.shared, conn, &cmd, proto);
                    env.stats.commands.refused(slot, &conn.wbuf[reply_start..]);
                    continue;
                }
                // MONITOR: one relaxed load when nobody monitors. Commands
                // queued by MULTI are shown when EXEC runs them (exec::tx).
                let monitored = env.shared.stats.monitors.active()
                    && (exec::tx::is_tx_command(&cmd)
                        || matches!(cmd, Command::Quit)
                        || !conn.tx.as_ref().is_some_and(|t| t.queuing()));
                let reset = matches!(cmd, Command::Redis(Redis::Reset));
                // RESP transactions (exec::tx): only connections that used
                // MULTI/WATCH pay for more than this test.
                let tx_cmd = exec::tx::is_tx_command(&cmd);
                let queued = conn.tx.as_ref().is_some_and(|t| t.queuing());
                let flow = if conn.tx.is_some() || tx_cmd {
                    match exec::tx::step(
                        cmd,
                        &data[start..pos],
                        &mut conn.tx,
                        &mut ctx,
                        &mut conn.wbuf,
                    ) {
                        Some(cmd) => exec::execute(cmd, &mut ctx, &mut conn.wbuf, proto),
                        None => Flow::Continue,
                    }
                } else {
                    exec::execute(cmd, &mut ctx, &mut conn.wbuf, proto)
                };
                let reply_bytes = &conn.wbuf[reply_start..];
                if queued && !tx_cmd && reply_bytes == b"+QUEUED\r\n" {
                    // Counted when it runs, at EXEC.
                } else if queued && !tx_cmd && reply_bytes.first() == Some(&b'-') {
                    // Refused inside MULTI.
                    env.stats.commands.refused(slot, reply_bytes);
                } else {
                    let nanos = started.map(|t| crate::clock::mono_nanos().saturating_sub(t));
                    env.stats.commands.account(slot, reply_bytes, nanos);
                    if let Some(n) = nanos {
                        log_if_slow(&env.shared, &conn.info, &data[start..pos], proto, n);
                    }
                }
                if monitored {
                    monitor::feed(
                        &env.shared.stats.monitors,
                        &conn.info.addr,
                        &data[start..pos],
                        proto,
                    );
                }
                if reset && conn.monitor.take().is_some() {
                    env.shared.stats.monitors.remove(conn.info.id);
                }
                if reset {
                    env.shared.pubsub.drop_all(&mut conn.subs);
                }
                let suppressed = suppress_reply(&conn.info);
                if suppressed {
                    conn.wbuf.truncate(reply_start);
                    ctx.cut = false;
                    if matches!(flow, Flow::Defer(_)) {
                        conn.drop_deferred = true;
                    }
                }
                if ctx.cut || (hard != 0 && conn.unsent() > hard) {
                    let unsent = conn.unsent();
                    conn.wbuf.truncate(reply_start);
                    conn.wbuf.shrink_to(reply_start.max(RBUF_KEEP));
                    reply::error(&mut conn.wbuf, proto, OUTPUT_LIMIT);
                    conn.start_close(env.now);
                    output_limit_hit(env, unsent, "hard");
                    return (pos, Stop::Blocked);
                }
                match flow {
                    Flow::Continue => {}
                    Flow::Monitor => {
                        if conn.monitor.is_none() {
                            let feed = env.shared.stats.monitors.add(
                                conn.info.id,
                                env.shared.memory.output_hard(),
                                env.waker.clone(),
                            );
                            conn.monitor = Some(feed);
                            env.monitors.push(token);
                        }
                        if !suppressed {
                            reply::ok(&mut conn.wbuf, proto);
                        }
                    }
                    Flow::PubSub(op) => {
                        // Messages already published come before the
                        // confirmations (an overflow stays flagged for
                        // the next drain).
                        if let Some(s) = &conn.subs {
                            s.sub.feed.drain_into(&mut conn.wbuf);
                        }
                        let had = conn.subs.is_some();
                        let (id, info) = (conn.info.id, conn.info.clone());
                        let cap = env.shared.memory.output_hard();
                        let waker = env.waker.clone();
                        // Confirmations are sent whatever `CLIENT REPLY`
                        // says, as Redis sends them (they are pushed).
                        env.shared.pubsub.apply(
                            &mut conn.subs,
                            op,
                            || Subscriber {
                                feed: Arc::new(Feed::new(id, cap, waker)),
                                client: info,
                            },
                            conn.info.is_resp3(),
                            &mut conn.wbuf,
                        );
                        if !had && conn.subs.is_some() {
                            env.subscribers.push(token);
                        }
                    }
                    Flow::StopNode => return (pos, Stop::NodeStopping),
                    Flow::Close => {
                        conn.start_close(env.now);
                        return (pos, Stop::Blocked);
                    }
                    Flow::Defer(mut task) => {
                        // A script runs with its caller's role (auth::gate).
                        if let crate::jobs::Task::Script(script::Call::Run(run)) = &mut task {
                            run.user = conn.session.user();
                        }
                        // A script request with its reply on may be followed
                        // by more of them before its reply comes (`chains`).
                        let chain = matches!(task, crate::jobs::Task::Script(script::Call::Run(_)))
                            && !suppressed
                            && may_chain(conn);
                        let job = Job {
                            task,
                            responder: Responder {
                                completions: env.completions.clone(),
                                waker: env.waker.clone(),
                                token,
                                conn_id: conn.info.id,
                                proto,
                            },
                        };
                        let queue = if matches!(job.task, crate::jobs::Task::Script(_)) {
                            &env.shared.scripts.0
                        } else {
                            &env.shared.jobs.0
                        };
                        if queue.send(job).is_ok() {
                            if chain {
                                conn.script_jobs += 1;
                            } else {
                                conn.deferred = true;
                            }
                        } else {
                            reply::error(&mut conn.wbuf, proto, "no executor for this command");
                        }
                    }
                }
            }
            Parsed::Invalid(..) | Parsed::Fatal(_) if conn.script_jobs > 0 => {
                // Its error waits for the replies of the scripts still out.
                return (pos, Stop::Blocked);
            }
            Parsed::Invalid(e, n) => {
                let (word, sub) = names::words(&data[pos..pos + n]);
                let slot = word.and_then(|w| names::NAMES.lookup(w, sub));
                env.stats.commands.reject(slot, &e.0, proto);
                pos += n;
                *budget -= 1;
                if let Some(tx) = &mut conn.tx {
                    tx.flag_error();
                }
                skip_armed(&conn.info);
                if !suppress_reply(&conn.info) {
                    reply::error(&mut conn.wbuf, proto, &e.0);
                }
            }
            Parsed::Skip(n) => pos += n,
            Parsed::Incomplete => return (pos, Stop::Drained),
            Parsed::Fatal(f) => {
                if !matches!(f, Fatal::InvalidUtf8) {
                    env.stats.commands.reject(None, "", proto);
                }
                match f {
                    Fatal::LineTooLong => reply::error(&mut conn.wbuf, proto, "line too long"),
                    Fatal::Protocol(e) => {
                        if e == resp::ProtocolError::BulkTooLong {
                            env.shared.memory.count_bulk_refused();
                        }
                        reply::error(&mut conn.wbuf, proto, &e.to_string());
                    }
                    Fatal::InvalidUtf8 => {}
                }
                conn.start_close(env.now);
                return (data.len(), Stop::Blocked);
            }
        }
    }
}

/// Shows a request that ran to the monitors, if any (one relaxed load
/// otherwise).
#[inline]
fn feed_monitors(env: &Env, conn: &Conn, frame: &[u8], proto: Proto) {
    if env.shared.stats.monitors.active() {
        monitor::feed(&env.shared.stats.monitors, &conn.info.addr, frame, proto);
    }
}

/// Argument `k` of a RESP request framed into `spans` (offsets into
/// `frame`, the request's bytes).
#[inline]
fn span<'a>(frame: &'a [u8], spans: &[(u32, u32)], k: usize) -> Option<&'a [u8]> {
    spans
        .get(k)
        .and_then(|&(s, e)| frame.get(s as usize..e as usize))
}

/// Records the name of the command about to run (`words`: its first two
/// words, [`names::words`]) for `CLIENT LIST`'s `cmd` field.
#[inline]
fn note_command(conn: &mut Conn, words: (Option<&[u8]>, Option<&[u8]>)) {
    if let (Some(name), sub) = words {
        conn.view_changed |= conn.view.set_cmd(name, sub);
    }
}

/// The command-statistics slot of a request: a `match` for the hot
/// commands, the command word (and subcommand) looked up for the rest.
#[inline]
fn slot_of(cmd: &Command<'_>, words: (Option<&[u8]>, Option<&[u8]>), hot: &names::Hot) -> usize {
    match cmd {
        Command::Get(_) => hot.get,
        Command::Set(..) => hot.set,
        Command::MGet(_) => hot.mget,
        Command::MSet(_) => hot.mset,
        Command::Exists(_) => hot.exists,
        Command::Ping(_) => hot.ping,
        Command::Echo(_) => hot.echo,
        Command::Strlen(_) => hot.strlen,
        _ => {
            let (word, sub) = words;
            word.map_or(names::UNKNOWN, |w| names::NAMES.slot(w, sub))
        }
    }
}

/// SLOWLOG: logs the request `frame` that took `nanos` when that is at
/// least the threshold (one relaxed load otherwise).
#[inline]
fn log_if_slow(shared: &Shared, info: &ClientInfo, frame: &[u8], proto: Proto, nanos: u64) {
    let log = &shared.slowlog;
    if log.threshold_nanos().is_none_or(|t| nanos < t) {
        return;
    }
    if let Some(args) = monitor::args_of(frame, proto) {
        let now = crate::clock::since_epoch().as_secs();
        log.record(&args, nanos, now, info.addr.to_string(), info.meta().name);
    }
}

/// Accounts a request the connection's gate answered itself (`AUTH`, or
/// a refusal: `NOAUTH`, `NOPERM`, …).
#[cold]
fn account_gate(env: &Env, slot: usize, reply: &[u8], started: Option<u64>) {
    let nanos = started.map(|t| crate::clock::mono_nanos().saturating_sub(t));
    env.stats.commands.account(slot, reply, nanos);
}

/// After a failed AUTH: holds `conn` for `security.auth_failure_delay_ms`
/// (none when zero).
fn hold(env: &mut Env, token: usize, conn: &mut Conn) {
    let delay = env.shared.live.auth_failure_delay();
    if delay.is_zero() {
        return;
    }
    // The clock now, not the turn's start: the request may have arrived
    // after the turn began, and the delay counts from its arrival at least.
    let until = Instant::now() + delay;
    conn.held_until = Some(until);
    env.held.push((until, token, conn.info.id));
    env.shared.auth.delayed.fetch_add(1, Relaxed);
}

/// `CLIENT REPLY SKIP` applies to the command about to run: turns a
/// pending skip into the current command's skip.
#[inline]
fn skip_armed(info: &ClientInfo) {
    if info.reply_mode() == ReplyMode::SkipNext {
        info.set_reply_mode(ReplyMode::Skip);
    }
}

/// After a command ran: true when its reply is to be dropped (`CLIENT
/// REPLY OFF`, or the one command a `SKIP` covered, which ends the skip).
/// Checked after running so that `CLIENT REPLY ON` answers `+OK` and a
/// fresh `SKIP` covers the next command, not itself.
#[inline]
fn suppress_reply(info: &ClientInfo) -> bool {
    match info.reply_mode() {
        ReplyMode::On | ReplyMode::SkipNext => false,
        ReplyMode::Off => true,
        ReplyMode::Skip => {
            info.set_reply_mode(ReplyMode::On);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::text_peek_key;

    #[test]
    fn text_peek_key_guesses_the_second_word() {
        assert_eq!(text_peek_key(b"GET k1\r\nSET"), Some(&b"k1"[..]));
        assert_eq!(text_peek_key(b"SET k2 v v\n"), Some(&b"k2"[..]));
        assert_eq!(text_peek_key(b"GET k3"), None);
        assert_eq!(text_peek_key(b"PING\r\n"), None);
        assert_eq!(text_peek_key(b"SET  v\r\n"), None);
        assert_eq!(text_peek_key(b""), None);
    }
}
