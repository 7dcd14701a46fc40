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
//! [`scheduler::AntiEntropyInfo`] appends `ae_*` lines to INFO: totals, and one line per
//! peer with its status, rounds, last round time and duration, buckets
//! differing, keys repaired and bytes sent/received; plus the tombstone
//! count and the age of the oldest tombstone.
//!
//! Overview: docs/architecture.md, "Anti-entropy"; the `MKV.*` wire
//! format: docs/protocol.md §16; SYNC and HASH: docs/protocol.md §10.

pub mod round;
pub mod scheduler;
pub mod serve;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{Client, Options};
use crate::persist::LogWriter;
use crate::sync::lock;
use round::{RoundError, RoundReport};

pub use scheduler::{spawn, sync_with};

/// Least time between two early rounds (started because replication lost
/// events, see `scheduler`).
pub const EARLY_ROUND_GAP: Duration = Duration::from_secs(1);
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
    /// Early rounds started because replication lost events.
    early_rounds: AtomicU64,
    /// Lost events known repaired: the outbox's loss count when the last
    /// configured peer to do so started a round that found equal roots.
    repaired_losses: AtomicU64,
    /// The log writers of idle appliers, reused across rounds so each
    /// keeps its one log segment instead of opening a new one per round.
    writers: Mutex<Vec<LogWriter>>,
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

/// A random, non-zero number for this process.
fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(crate::clock::since_epoch().as_nanos());
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
            early_rounds: AtomicU64::new(0),
            repaired_losses: AtomicU64::new(0),
            writers: Mutex::new(Vec::new()),
        }
    }

    /// Replication losses (`Outbox::lost`) known to be repaired: every
    /// configured peer has since started a round with equal roots.
    pub fn repaired_losses(&self) -> u64 {
        self.repaired_losses.load(Relaxed)
    }

    /// Unix ms when the last round with `peer` (`host:port`) started.
    pub fn last_round_ms(&self, peer: &str) -> Option<u64> {
        lock(&self.stats)
            .peers
            .get(peer)
            .map(|p| p.last_round_unix_ms)
    }

    /// Drops the statistics of `peer` (`host:port`): a discovered peer's
    /// slot was given to another member, so the INFO `ae_peer<i>` lines
    /// stay bounded by the slots.
    pub fn forget_peer(&self, peer: &str) {
        lock(&self.stats).peers.remove(peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_peer_drops_its_statistics() {
        let ae = AntiEntropy::new();
        let ok = Ok(RoundReport::default());
        ae.record("h:1", true, &ok, 7, Duration::ZERO, 0, 0);
        ae.record("h:2", true, &ok, 9, Duration::ZERO, 0, 0);
        assert_eq!(ae.last_round_ms("h:1"), Some(7));
        ae.forget_peer("h:1");
        assert_eq!(ae.last_round_ms("h:1"), None);
        assert_eq!(ae.last_round_ms("h:2"), Some(9));
    }
}
