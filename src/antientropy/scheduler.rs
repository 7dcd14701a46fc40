//! The anti-entropy thread: schedules rounds (SYNC jobs first, then the
//! periodic rounds with every configured peer), runs each on its own
//! short-lived thread, records their outcome; and the INFO section.
//! Design and bounds: see the parent module.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};

use super::round::{self, Repair, RespPeer, RoundError, RoundOptions, RoundReport};
use super::{EARLY_ROUND_GAP, ROUND_TIMEOUT, STOP_GRACE, client_options};
use crate::applier::Applier;
use crate::client::Client;
use crate::jobs::{Job, Task};
use crate::state::{InfoSection, Shared};
use crate::store::Db;
use crate::store::{Applied, Version};
use crate::sync::lock;

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
    let started_unix_ms = crate::clock::unix_millis();
    let opts = RoundOptions {
        instance: ae.instance,
        ..opts
    };
    ae.running.fetch_add(1, Relaxed);
    let client = match client {
        Some(c) => Ok(c),
        None => {
            let opts = crate::client::Options {
                tls: shared.peer_tls.clone(),
                ..client_options()
            };
            Client::connect(host, port, &opts).and_then(|mut c| {
                // Peers authenticate (docs/protocol.md §16): the configured
                // user, by default `default` with `security.requirepass`.
                let ae_cfg = &shared.config.anti_entropy;
                if let Some(pw) = &ae_cfg.password {
                    let user = ae_cfg
                        .username
                        .as_deref()
                        .unwrap_or(crate::auth::DEFAULT_USER);
                    c.auth(user, pw)?;
                }
                Ok(c)
            })
        }
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
                source: format!(
                    "{} {name}",
                    if configured { "anti-entropy" } else { "sync" }
                ),
            };
            let mut applier = match lock(&ae.writers).pop() {
                Some(w) => Applier::with_writer(shared.clone(), w),
                None => Applier::new(shared.clone(), "anti-entropy"),
            };
            let mut res = round::run(&mut peer, &shared.store, &mut applier, &opts);
            // Repairs are durable (per the fsync policy) before SYNC answers.
            applier.commit();
            if let Some(w) = applier.into_writer() {
                lock(&ae.writers).push(w);
            }
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
    /// `Outbox::lost` at the start of the last round that found the
    /// roots equal: every loss before it is repaired at this peer.
    synced_losses: u64,
    /// Found through the member table rather than `peer_list`.
    discovered: bool,
    /// Periodic rounds run with it (a discovered peer that went offline
    /// is not).
    active: bool,
    /// The member's epoch when last seen online (a new one means it came
    /// back: sync promptly).
    epoch: u64,
}

impl PeerSlot {
    fn new(host: String, port: u16, discovered: bool) -> PeerSlot {
        PeerSlot {
            name: crate::client::host_port(&host, port),
            host,
            port,
            client: None,
            busy: false,
            queued: false,
            is_self: false,
            state: String::new(),
            synced_losses: 0,
            discovered,
            active: true,
            epoch: 0,
        }
    }
}

/// A round to start.
enum Work {
    Sync(Job),
    Periodic(usize),
}

/// A finished round.
struct Done {
    peer: Option<usize>,
    /// `Outbox::lost` when the round started.
    lost_at_start: u64,
    result: Result<RoundReport, RoundError>,
    client: Option<Client>,
}

/// Starts the anti-entropy thread.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    let stop = shared.shutdown.subscribe();
    std::thread::Builder::new()
        .name("anti-entropy".into())
        .spawn(move || {
            crate::failfast::checkpoint();
            Scheduler::new(shared).run(stop)
        })
}

struct Scheduler {
    shared: Arc<Shared>,
    peers: Vec<PeerSlot>,
    syncs: VecDeque<Job>,
    periodic: VecDeque<usize>,
    running: usize,
    threads: Vec<JoinHandle<()>>,
    done_sender: Sender<Done>,
    done_receiver: Receiver<Done>,
}

impl Scheduler {
    fn new(shared: Arc<Shared>) -> Scheduler {
        let cfg = &shared.config.anti_entropy;
        let peers = if cfg.enabled {
            cfg.peer_list
                .iter()
                .filter_map(|p| match crate::config::parse_host_port(p) {
                    Some((host, port)) => Some(PeerSlot::new(host, port, false)),
                    None => {
                        log::warn!("anti-entropy: ignoring malformed peer {p:?}");
                        None
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let (done_sender, done_receiver) = unbounded();
        Scheduler {
            shared,
            peers,
            syncs: VecDeque::new(),
            periodic: VecDeque::new(),
            running: 0,
            threads: Vec::new(),
            done_sender,
            done_receiver,
        }
    }

    fn run(mut self, stop: Receiver<()>) {
        // `CONFIG SET anti_entropy.interval_seconds` changes it at run
        // time (the `interval_changed` arm below).
        let live_interval = |s: &Shared| s.live.ae_interval().max(Duration::from_millis(100));
        let mut interval = live_interval(&self.shared);
        let interval_changed = self.shared.live.ae_interval_changed().clone();
        let jobs = self.shared.jobs.1.clone();
        if !self.peers.is_empty() {
            log::info!(
                "anti-entropy: {} peer(s), a round every {interval:?}",
                self.peers.len()
            );
        }
        let mut next_tick = Instant::now();
        let losses = self.shared.outbox.loss_signal();
        let mut last_early: Option<Instant> = None;
        let mut early = false;
        let members = self.shared.outbox.members.changed().clone();
        self.refresh_members();
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
                    // SAVE runs on a thread of its own (persist::threads).
                    Ok(Job { task: Task::Save, responder }) => {
                        crate::persist::threads::save(&self.shared, responder);
                    }
                    Ok(job) => self.syncs.push_back(job),
                    Err(_) => break,
                },
                recv(self.done_receiver) -> done => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                }
                recv(members) -> _ => {
                    let had = self.peers.is_empty();
                    self.refresh_members();
                    if had && !self.peers.is_empty() {
                        next_tick = Instant::now() + interval;
                    }
                }
                recv(interval_changed) -> _ => {
                    // The next round comes the new interval after the
                    // last one (at once if that is past).
                    let new = live_interval(&self.shared);
                    let last = next_tick.checked_sub(interval).unwrap_or_else(Instant::now);
                    next_tick = (last + new).max(Instant::now());
                    interval = new;
                    log::info!("anti-entropy: a round every {interval:?}");
                }
                recv(losses) -> _ => {
                    // Replication lost events: repair soon, at most one
                    // early round per EARLY_ROUND_GAP. The flag is taken
                    // when that round starts, so more losses meanwhile
                    // cost no wake-ups.
                    if !self.peers.is_empty() {
                        let at = last_early
                            .map_or(Instant::now(), |t| (t + EARLY_ROUND_GAP).max(Instant::now()));
                        if at < next_tick {
                            next_tick = at;
                            early = true;
                        }
                    }
                }
                default(timeout) => {
                    if !self.peers.is_empty() {
                        if self.shared.outbox.take_loss() && early {
                            self.shared.antientropy.early_rounds.fetch_add(1, Relaxed);
                            last_early = Some(Instant::now());
                        }
                        early = false;
                        for (i, p) in self.peers.iter_mut().enumerate() {
                            if !p.busy && !p.queued && !p.is_self && p.active {
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

    /// Brings the discovered peers in line with the member table: online
    /// compatible members become (active) peers, a member that came back
    /// online is queued for a round at once, the others go inactive.
    fn refresh_members(&mut self) {
        if !self.shared.config.anti_entropy.enabled {
            return;
        }
        let found = self
            .shared
            .outbox
            .members
            .peers(&self.shared.config.node_id);
        for p in self.peers.iter_mut().filter(|p| p.discovered) {
            p.active = false;
        }
        for d in found {
            let Some((host, port)) = crate::config::parse_host_port(&d.address) else {
                continue;
            };
            let name = crate::client::host_port(&host, port);
            let i = match self.peers.iter().position(|p| p.name == name) {
                Some(i) => i,
                None => {
                    log::info!("anti-entropy: discovered peer {:?} at {name}", d.node_id);
                    // Reuse the slot of a member gone offline, so the slots
                    // stay bounded by the member table.
                    let idle = self
                        .peers
                        .iter()
                        .position(|p| p.discovered && !p.active && !p.busy && !p.queued);
                    let slot = PeerSlot::new(host, port, true);
                    match idle {
                        Some(i) => {
                            // Its statistics go with it (INFO stays bounded).
                            self.shared.antientropy.forget_peer(&self.peers[i].name);
                            self.peers[i] = slot;
                            i
                        }
                        None => {
                            self.peers.push(slot);
                            self.peers.len() - 1
                        }
                    }
                }
            };
            let p = &mut self.peers[i];
            p.active = true;
            if p.epoch != d.epoch {
                p.epoch = d.epoch;
                if !p.busy && !p.queued && !p.is_self {
                    p.queued = true;
                    self.periodic.push_back(i);
                }
            }
        }
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
        let done = self.done_sender.clone();
        let (host, port, opts, client, peer, responder) = match work {
            Work::Sync(job) => {
                let Task::Sync {
                    host,
                    port,
                    full,
                    verify,
                    force,
                    rejoin,
                } = job.task
                else {
                    // Only SYNC jobs are queued here (see `run`).
                    job.responder.respond(Err("not an anti-entropy job".into()));
                    return;
                };
                if rejoin && let Err(e) = shared.contact.rejoin(crate::clock::unix_millis()) {
                    log::warn!("SYNC --rejoin: {e}");
                }
                let opts = RoundOptions {
                    full,
                    verify,
                    force,
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
        let lost_at_start = self.shared.outbox.lost();
        let spawned = std::thread::Builder::new()
            .name("ae-round".into())
            .spawn(move || {
                crate::failfast::checkpoint();
                let (result, client) =
                    sync_with(&shared, &host, port, opts, client, peer.is_some());
                if let Ok(r) = &result
                    && !r.self_peer
                {
                    let now = crate::clock::unix_millis();
                    if opts.full {
                        // An exact copy of a peer: nothing old is left.
                        if let Err(e) = shared.contact.rejoin(now) {
                            log::warn!("SYNC --full: {e}");
                        }
                    }
                    shared.contact.touch(now);
                }
                if let Some(r) = lock(&theirs).take() {
                    r.respond(sync_reply(&host, port, &result));
                }
                let _ = done.send(Done {
                    peer,
                    lost_at_start,
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
        if done.result.as_ref().is_ok_and(|r| r.in_sync) {
            p.synced_losses = p.synced_losses.max(done.lost_at_start);
            let repaired = self
                .peers
                .iter()
                .filter(|p| !p.is_self && p.active)
                .map(|p| p.synced_losses)
                .min()
                .unwrap_or(0);
            self.shared
                .antientropy
                .repaired_losses
                .store(repaired, Relaxed);
        }
        let p = &mut self.peers[i];
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
        while self.running > 0 && self.done_receiver.recv_deadline(deadline).is_ok() {
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

/// The SYNC reply for a round's result (docs/protocol.md §10).
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

/// The anti-entropy and tombstone lines of INFO.
pub struct AntiEntropyInfo;

impl InfoSection for AntiEntropyInfo {
    fn write_info(&self, shared: &Shared, db: Db<'_>, s: &mut String) {
        write_info(shared, db, s);
    }
}

fn write_info(shared: &Shared, db: Db<'_>, s: &mut String) {
    let cfg = &shared.config.anti_entropy;
    let ae = &shared.antientropy;
    let now = crate::clock::unix_millis();
    let oldest = match db.oldest_tombstone_ms() {
        Some(t) if db.tombstones() > 0 => now.saturating_sub(t) / 1000,
        _ => 0,
    };
    let _ = write!(s, "tombstones_oldest_age_seconds:{oldest}\r\n");
    let st = lock(&ae.stats);
    let _ = write!(
        s,
        "ae_enabled:{}\r\nae_interval_seconds:{}\r\nae_peers:{}\r\nae_rounds:{}\r\n\
         ae_early_rounds:{}\r\nae_rounds_failed:{}\r\nae_buckets_differing:{}\r\nae_keys_repaired:{}\r\n\
         ae_keys_removed:{}\r\nae_bytes_sent:{}\r\nae_bytes_received:{}\r\n\
         ae_requests_served:{}\r\nae_rounds_running:{}\r\n",
        // Discovered peers (docs/protocol.md §9.5) need replication on.
        (cfg.enabled && (!cfg.peer_list.is_empty() || shared.outbox.is_enabled())) as u8,
        shared.live.ae_interval().as_secs(),
        if cfg.enabled { cfg.peer_list.len() } else { 0 },
        st.rounds,
        ae.early_rounds.load(Relaxed),
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

impl Repair for Applier {
    fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> Applied {
        Applier::apply_expiring(self, key, value, version, expires)
    }
    fn replace_if(
        &mut self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> bool {
        Applier::replace_if_expiring(self, key, expected, value, version, expires)
    }
    fn delete_if(&mut self, key: &[u8], expected: Version) -> bool {
        Applier::delete_if(self, key, expected)
    }
}
