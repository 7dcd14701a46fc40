//! Anti-entropy: Merkle-tree rounds that repair whatever replication lost.
//!
//! * [`serve`] answers the internal `MKV.*` commands on the client port
//!   (run by the workers like any other command; wire format in
//!   [`crate::protocol::internal`]).
//! * [`round`] is one round with one peer: tree diff, bucket diff, fetch,
//!   last-writer-wins repair (or an exact copy for `SYNC --full`).
//! * This module runs the **anti-entropy thread** ([`spawn`]): it answers
//!   the SYNC jobs the workers defer (`shared.jobs`; a worker never blocks
//!   on a round) and, when `[anti_entropy] enabled = true` with a non-empty
//!   `peer_list`, starts a round with every peer each `interval` (the first
//!   right at startup, so a restarted node repairs at once).
//!
//! # Threads and bounds
//!
//! The anti-entropy thread only schedules: each round runs on its own
//! short-lived thread, at most `max_concurrent_syncs` at once (SYNC jobs
//! first, then periodic rounds; a peer whose round is still running is not
//! queued again, so slow peers never pile up). Periodic rounds to a peer
//! reuse one connection while it stays healthy.
//!
//! Every call of a round has a timeout (connect 2 s, each read or write
//! 5 s, the whole round [`ROUND_TIMEOUT`]); a peer that sends garbage,
//! stalls or disconnects fails that round only and is retried next
//! interval. On shutdown the thread aborts the sockets of running rounds
//! (their blocked reads return at once), answers queued SYNCs with an
//! error and joins the round threads (waiting at most `STOP_GRACE`, 500 ms: a
//! round still inside `connect` is left behind rather than delay the exit).
//!
//! # Logging
//!
//! One line per peer *state change* (reachable → unreachable → reachable,
//! tree parameters refused, failing for a new reason), never one per round.
//!
//! # Observability
//!
//! [`write_info`] appends `ae_*` lines to INFO: totals, and one line per
//! peer with its status, rounds, last round time and duration, buckets
//! differing, keys repaired and bytes sent/received; plus the tombstone
//! count and the age of the oldest tombstone.

pub mod round;
pub mod serve;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};

use crate::client::{Client, Options};
use crate::exec::{Job, Task};
use crate::node::{Applier, Shared};
use round::{RespPeer, RoundError, RoundOptions, RoundReport};

/// Upper bound on one whole round (a trickling peer cannot hold a round
/// slot longer than this).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long shutdown waits for aborted rounds to end.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// SYNC targets (not in `peer_list`) remembered for INFO.
const MAX_ADHOC_PEERS: usize = 16;

/// Client settings of rounds.
pub fn client_options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// Anti-entropy state shared by the node's threads (in `Shared`).
pub struct AntiEntropy {
    instance: u64,
    served: AtomicU64,
    running: AtomicU64,
    cancel: Arc<AtomicBool>,
    aborts: Mutex<HashMap<u64, TcpStream>>,
    next_abort: AtomicU64,
    stats: Mutex<Stats>,
    /// Idle appliers, reused across rounds so each keeps its one log
    /// segment instead of opening a new one per round.
    appliers: Mutex<Vec<Applier>>,
}

#[derive(Default)]
struct Stats {
    rounds: u64,
    failed: u64,
    keys_repaired: u64,
    keys_removed: u64,
    buckets_differing: u64,
    bytes_sent: u64,
    bytes_received: u64,
    peers: BTreeMap<String, PeerStats>,
    seq: u64,
}

#[derive(Default, Clone)]
struct PeerStats {
    configured: bool,
    status: &'static str,
    rounds: u64,
    failed: u64,
    last_round_unix_ms: u64,
    last_duration_us: u64,
    last_buckets_differing: u64,
    keys_repaired: u64,
    keys_removed: u64,
    bytes_sent: u64,
    bytes_received: u64,
    used: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random, non-zero number for this process.
fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

fn status_of(res: &Result<RoundReport, RoundError>) -> &'static str {
    match res {
        Ok(r) if r.self_peer => "self",
        Ok(_) => "ok",
        Err(RoundError::Connect { .. }) => "unreachable",
        Err(RoundError::Mismatch { .. }) => "refused_tree_parameters",
        Err(RoundError::VerifyFailed { .. }) => "verify_failed",
        Err(RoundError::Cancelled) => "cancelled",
        Err(_) => "failing",
    }
}

impl Default for AntiEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl AntiEntropy {
    /// Fresh state with a random instance number.
    pub fn new() -> AntiEntropy {
        AntiEntropy {
            instance: random_instance(),
            served: AtomicU64::new(0),
            running: AtomicU64::new(0),
            cancel: Arc::new(AtomicBool::new(false)),
            aborts: Mutex::new(HashMap::new()),
            next_abort: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            appliers: Mutex::new(Vec::new()),
        }
    }

    /// This process's instance number (`MKV.ROOT`).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Counts an internal command answered for a peer.
    pub fn count_served(&self) {
        self.served.fetch_add(1, Relaxed);
    }

    fn register(&self, client: &Client) -> Option<u64> {
        let handle = client.abort_handle().ok()?;
        let id = self.next_abort.fetch_add(1, Relaxed);
        lock(&self.aborts).insert(id, handle);
        if self.cancel.load(Relaxed) {
            client.close();
        }
        Some(id)
    }

    fn unregister(&self, id: Option<u64>) {
        if let Some(id) = id {
            lock(&self.aborts).remove(&id);
        }
    }

    /// Stops every running round: flags them and shuts their sockets.
    pub fn cancel_all(&self) {
        self.cancel.store(true, Relaxed);
        for s in lock(&self.aborts).values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        peer: &str,
        configured: bool,
        res: &Result<RoundReport, RoundError>,
        started_unix_ms: u64,
        took: Duration,
        sent: u64,
        received: u64,
    ) {
        let mut st = lock(&self.stats);
        st.seq += 1;
        let seq = st.seq;
        st.rounds += 1;
        st.bytes_sent += sent;
        st.bytes_received += received;
        if let Ok(r) = res {
            st.keys_repaired += r.keys_repaired as u64;
            st.keys_removed += r.keys_removed as u64;
            st.buckets_differing += r.buckets_differing as u64;
        } else {
            st.failed += 1;
        }
        if !st.peers.contains_key(peer) {
            let adhoc = st.peers.values().filter(|p| !p.configured).count();
            if !configured
                && adhoc >= MAX_ADHOC_PEERS
                && let Some(oldest) = st
                    .peers
                    .iter()
                    .filter(|(_, p)| !p.configured)
                    .min_by_key(|(_, p)| p.used)
                    .map(|(k, _)| k.clone())
            {
                st.peers.remove(&oldest);
            }
        }
        let p = st.peers.entry(peer.to_string()).or_default();
        p.configured |= configured;
        p.used = seq;
        p.status = status_of(res);
        p.rounds += 1;
        p.last_round_unix_ms = started_unix_ms;
        p.last_duration_us = took.as_micros() as u64;
        p.bytes_sent += sent;
        p.bytes_received += received;
        match res {
            Ok(r) => {
                p.last_buckets_differing = r.buckets_differing as u64;
                p.keys_repaired += r.keys_repaired as u64;
                p.keys_removed += r.keys_removed as u64;
            }
            Err(_) => p.failed += 1,
        }
    }
}

/// Runs one round with `host:port` now. `client` is a connection to reuse
/// (periodic rounds); it is handed back if it is still healthy.
pub fn sync_with(
    shared: &Arc<Shared>,
    host: &str,
    port: u16,
    opts: RoundOptions,
    client: Option<Client>,
    configured: bool,
) -> (Result<RoundReport, RoundError>, Option<Client>) {
    let ae = &shared.antientropy;
    let name = crate::client::host_port(host, port);
    let start = Instant::now();
    let started_unix_ms = crate::store::now_millis();
    let opts = RoundOptions {
        instance: ae.instance,
        ..opts
    };
    ae.running.fetch_add(1, Relaxed);
    let client = match client {
        Some(c) => Ok(c),
        None => Client::connect(host, port, &client_options()),
    };
    let (res, client, sent, received) = match client {
        Err(e) => (Err(RoundError::from(e)), None, 0, 0),
        Ok(mut c) => {
            let (s0, r0) = (c.bytes_sent(), c.bytes_received());
            c.set_deadline(Some(start + ROUND_TIMEOUT));
            let id = ae.register(&c);
            let mut peer = RespPeer {
                transport: c,
                cancel: Some(ae.cancel.clone()),
            };
            let pooled = lock(&ae.appliers).pop();
            let mut applier =
                pooled.unwrap_or_else(|| Applier::new(shared.clone(), "anti-entropy"));
            let mut res = round::run(&mut peer, &shared.store, &mut applier, &opts);
            // Repairs are durable (per the fsync policy) before SYNC answers.
            applier.commit();
            lock(&ae.appliers).push(applier);
            ae.unregister(id);
            let c = peer.transport;
            let (sent, received) = (c.bytes_sent() - s0, c.bytes_received() - r0);
            if let Ok(r) = &mut res {
                (r.bytes_sent, r.bytes_received) = (sent, received);
            }
            // After a transport failure the stream may hold half a reply.
            let keep = match &res {
                Ok(_) | Err(RoundError::Mismatch { .. } | RoundError::VerifyFailed { .. }) => {
                    Some(c)
                }
                Err(_) => None,
            };
            (res, keep, sent, received)
        }
    };
    let took = start.elapsed();
    ae.running.fetch_sub(1, Relaxed);
    ae.record(
        &name,
        configured,
        &res,
        started_unix_ms,
        took,
        sent,
        received,
    );
    if let Ok(r) = &res {
        log::debug!(
            "anti-entropy round with {name}: {:?} in {took:?}, {sent} bytes sent, {received} received",
            r
        );
    }
    (res, client)
}

/// A configured peer and its scheduling state.
struct PeerSlot {
    name: String,
    host: String,
    port: u16,
    client: Option<Client>,
    busy: bool,
    queued: bool,
    /// The peer turned out to be this process: no more rounds.
    is_self: bool,
    /// Last logged state, to log only changes.
    state: String,
}

/// A round to start.
enum Work {
    Sync(Job),
    Periodic(usize),
}

/// A finished round.
struct Done {
    peer: Option<usize>,
    result: Result<RoundReport, RoundError>,
    client: Option<Client>,
}

/// Starts the anti-entropy thread.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    let stop = shared.shutdown.subscribe();
    std::thread::Builder::new()
        .name("anti-entropy".into())
        .spawn(move || Scheduler::new(shared).run(stop))
}

struct Scheduler {
    shared: Arc<Shared>,
    peers: Vec<PeerSlot>,
    syncs: VecDeque<Job>,
    periodic: VecDeque<usize>,
    running: usize,
    threads: Vec<JoinHandle<()>>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
}

impl Scheduler {
    fn new(shared: Arc<Shared>) -> Scheduler {
        let cfg = &shared.config.anti_entropy;
        let peers = if cfg.enabled {
            cfg.peer_list
                .iter()
                .filter_map(|p| match crate::config::parse_host_port(p) {
                    Some((host, port)) => Some(PeerSlot {
                        name: crate::client::host_port(&host, port),
                        host,
                        port,
                        client: None,
                        busy: false,
                        queued: false,
                        is_self: false,
                        state: String::new(),
                    }),
                    None => {
                        log::warn!("anti-entropy: ignoring malformed peer {p:?}");
                        None
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let (done_tx, done_rx) = unbounded();
        Scheduler {
            shared,
            peers,
            syncs: VecDeque::new(),
            periodic: VecDeque::new(),
            running: 0,
            threads: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    fn run(mut self, stop: Receiver<()>) {
        let interval = self
            .shared
            .config
            .anti_entropy
            .interval
            .max(Duration::from_millis(100));
        let jobs = self.shared.jobs.1.clone();
        if !self.peers.is_empty() {
            log::info!(
                "anti-entropy: {} peer(s), a round every {interval:?}",
                self.peers.len()
            );
        }
        let mut next_tick = Instant::now();
        loop {
            self.start_work();
            let timeout = if self.peers.is_empty() {
                Duration::from_secs(3600)
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            select! {
                recv(stop) -> _ => break,
                recv(jobs) -> job => match job {
                    Ok(job) => self.syncs.push_back(job),
                    Err(_) => break,
                },
                recv(self.done_rx) -> done => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                }
                default(timeout) => {
                    if !self.peers.is_empty() {
                        for (i, p) in self.peers.iter_mut().enumerate() {
                            if !p.busy && !p.queued && !p.is_self {
                                p.queued = true;
                                self.periodic.push_back(i);
                            }
                        }
                        next_tick += interval;
                        let now = Instant::now();
                        if next_tick < now {
                            next_tick = now + interval;
                        }
                    }
                }
            }
        }
        self.stop();
    }

    fn max_running(&self) -> usize {
        self.shared.config.anti_entropy.max_concurrent_syncs.max(1)
    }

    fn start_work(&mut self) {
        while self.running < self.max_running() {
            let work = if let Some(job) = self.syncs.pop_front() {
                Work::Sync(job)
            } else if let Some(i) = self.periodic.pop_front() {
                self.peers[i].queued = false;
                self.peers[i].busy = true;
                Work::Periodic(i)
            } else {
                return;
            };
            self.spawn_round(work);
        }
    }

    fn spawn_round(&mut self, work: Work) {
        let shared = self.shared.clone();
        let tx = self.done_tx.clone();
        let (host, port, opts, client, peer, responder) = match work {
            Work::Sync(job) => {
                let Task::Sync {
                    host,
                    port,
                    full,
                    verify,
                } = job.task;
                let opts = RoundOptions {
                    full,
                    verify,
                    instance: 0,
                };
                (host, port, opts, None, None, Some(job.responder))
            }
            Work::Periodic(i) => {
                let p = &mut self.peers[i];
                (
                    p.host.clone(),
                    p.port,
                    RoundOptions::default(),
                    p.client.take(),
                    Some(i),
                    None,
                )
            }
        };
        // The responder is shared with the closure so that it can still be
        // answered if the thread cannot be created.
        let slot = Arc::new(Mutex::new(responder));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("ae-round".into())
            .spawn(move || {
                let (result, client) =
                    sync_with(&shared, &host, port, opts, client, peer.is_some());
                if let Some(r) = lock(&theirs).take() {
                    r.respond(sync_reply(&host, port, &result));
                }
                let _ = tx.send(Done {
                    peer,
                    result,
                    client,
                });
            });
        match spawned {
            Ok(h) => {
                self.running += 1;
                self.threads.push(h);
            }
            Err(e) => {
                log::error!("anti-entropy: cannot start a round thread: {e}");
                if let Some(r) = lock(&slot).take() {
                    r.respond(Err(format!("cannot start a round thread: {e}")));
                }
                if let Some(i) = peer {
                    self.peers[i].busy = false;
                }
            }
        }
    }

    fn finish(&mut self, done: Done) {
        self.running -= 1;
        self.threads.retain(|h| !h.is_finished());
        let Some(i) = done.peer else { return };
        let p = &mut self.peers[i];
        p.busy = false;
        p.client = done.client;
        p.is_self = done.result.as_ref().is_ok_and(|r| r.self_peer);
        let state = match &done.result {
            Ok(r) if r.self_peer => "self".to_string(),
            Ok(_) => "ok".to_string(),
            Err(RoundError::Cancelled) => return,
            Err(RoundError::Connect { .. }) => "unreachable".to_string(),
            Err(e) => e.to_string(),
        };
        if state == p.state {
            return;
        }
        let was = std::mem::replace(&mut p.state, state);
        match &done.result {
            Ok(r) if r.self_peer => {
                log::info!("anti-entropy: peer {} is this node; skipping it", p.name)
            }
            Ok(_) if was == "unreachable" => {
                log::info!("anti-entropy: peer {} reachable again", p.name)
            }
            Ok(_) if !was.is_empty() => {
                log::info!("anti-entropy: rounds with peer {} succeed again", p.name)
            }
            Ok(_) => {}
            Err(e @ RoundError::Connect { .. }) => log::info!(
                "anti-entropy: peer {} unreachable ({e}); retrying every round",
                p.name
            ),
            Err(e @ RoundError::Mismatch { .. }) => {
                log::warn!(
                    "anti-entropy: refusing to compare with peer {}: {e}",
                    p.name
                )
            }
            Err(e) => log::warn!("anti-entropy: round with peer {} failed: {e}", p.name),
        }
    }

    fn stop(mut self) {
        self.shared.antientropy.cancel_all();
        for job in self.syncs.drain(..) {
            job.responder.respond(Err("shutting down".into()));
        }
        while let Ok(job) = self.shared.jobs.1.try_recv() {
            job.responder.respond(Err("shutting down".into()));
        }
        // Aborted rounds end at once; one still connecting (up to the
        // connect timeout) is left to finish on its own rather than delay
        // the node's exit.
        let deadline = Instant::now() + STOP_GRACE;
        while self.running > 0 && self.done_rx.recv_deadline(deadline).is_ok() {
            self.running -= 1;
        }
        for h in self.threads.drain(..) {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if self.running > 0 {
            log::debug!(
                "anti-entropy: {} round(s) still connecting at exit",
                self.running
            );
        }
    }
}

/// The SYNC reply for a round's result (PROTOCOL.md §10).
fn sync_reply(host: &str, port: u16, res: &Result<RoundReport, RoundError>) -> Result<(), String> {
    match res {
        Ok(_) => Ok(()),
        Err(RoundError::Connect { .. }) => Err(format!("connect {host}:{port}")),
        Err(e @ RoundError::Mismatch { .. }) => {
            log::warn!("SYNC {host}:{port} refused: {e}");
            Err(e.to_string())
        }
        Err(e) => Err(format!("sync with {host}:{port} failed: {e}")),
    }
}

/// Appends the anti-entropy and tombstone lines to INFO.
/// (`db`: the keyspace as the caller sees it, possibly an `EXEC` hold.)
pub fn write_info(shared: &Shared, db: crate::store::Db<'_>, s: &mut String) {
    let cfg = &shared.config.anti_entropy;
    let ae = &shared.antientropy;
    let now = crate::store::now_millis();
    let oldest = match db.oldest_tombstone_ms() {
        Some(t) if db.tombstones() > 0 => now.saturating_sub(t) / 1000,
        _ => 0,
    };
    let _ = write!(s, "tombstones_oldest_age_seconds:{oldest}\r\n");
    let st = lock(&ae.stats);
    let _ = write!(
        s,
        "ae_enabled:{}\r\nae_interval_seconds:{}\r\nae_peers:{}\r\nae_rounds:{}\r\n\
         ae_rounds_failed:{}\r\nae_buckets_differing:{}\r\nae_keys_repaired:{}\r\n\
         ae_keys_removed:{}\r\nae_bytes_sent:{}\r\nae_bytes_received:{}\r\n\
         ae_requests_served:{}\r\nae_rounds_running:{}\r\n",
        (cfg.enabled && !cfg.peer_list.is_empty()) as u8,
        cfg.interval.as_secs(),
        if cfg.enabled { cfg.peer_list.len() } else { 0 },
        st.rounds,
        st.failed,
        st.buckets_differing,
        st.keys_repaired,
        st.keys_removed,
        st.bytes_sent,
        st.bytes_received,
        ae.served.load(Relaxed),
        ae.running.load(Relaxed),
    );
    for (i, (name, p)) in st.peers.iter().enumerate() {
        let _ = write!(
            s,
            "ae_peer{i}:addr={name},configured={},status={},rounds={},failed={},\
             last_round_unix_ms={},last_duration_ms={}.{:03},last_buckets_differing={},\
             keys_repaired={},keys_removed={},bytes_sent={},bytes_received={}\r\n",
            p.configured as u8,
            p.status,
            p.rounds,
            p.failed,
            p.last_round_unix_ms,
            p.last_duration_us / 1000,
            p.last_duration_us % 1000,
            p.last_buckets_differing,
            p.keys_repaired,
            p.keys_removed,
            p.bytes_sent,
            p.bytes_received,
        );
    }
}
