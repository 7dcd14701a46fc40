//! Cluster membership over the broker (docs/protocol.md §9.5).
//!
//! Every replicating node publishes a retained *presence* message on
//! `<prefix>/nodes/<node_id>` (a CBOR map, [`Presence`]) when it connects,
//! registers an `offline` presence as its MQTT last will, and publishes
//! `offline` itself before a clean disconnect. Every node subscribes to
//! `<prefix>/nodes/+` and keeps the [`Members`] table from what it
//! receives; the anti-entropy scheduler syncs with the online members whose
//! tree parameters match ([`Members::peers`]), and `NODES` / INFO
//! `# Cluster` list them.
//!
//! Invariants: the table holds at most [`MAX_MEMBERS`] entries (further
//! node ids are counted and ignored); each member keeps at most
//! [`LAG_SAMPLES`] replication-lag samples. A member's `epoch` grows each
//! time it comes (back) online, so the scheduler can sync with it promptly.
//!
//! **Forgetting.** A member offline for longer than
//! `cluster.forget_offline_after_seconds` ([`Members::forget_offline`],
//! run by the bridge as events arrive) is dropped from the table, counted,
//! and the bridge clears its retained presence (an empty retained message
//! on its topic), so nodes started later never list it. The clock of that
//! rule is `offline_since_ms`: when this node first saw the member offline
//! (a retained `offline` presence received again after a reconnect does
//! not restart it; the presence carries no time of its own). Clearing is
//! safe against a member that comes back at that moment: should the
//! broker order the clear after the member's new `online` presence, every
//! node removes the member, and the member itself receives the empty
//! message on its own topic and publishes its presence again (the bridge
//! does that for any empty message on its own topic while connected), so
//! it reappears within one round trip; nothing but discovery depends on
//! the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::state::{InfoSection, Shared};
use crate::store::Db;
use crate::sync::lock;

/// Version of the presence format.
pub const PRESENCE_FORMAT: u32 = 1;
/// Most members kept in the table.
pub const MAX_MEMBERS: usize = 256;
/// Replication-lag samples kept per member (a ring: the recent ones).
pub const LAG_SAMPLES: usize = 256;
/// Longest presence payload accepted.
pub const MAX_PRESENCE_BYTES: usize = 4096;

/// What a node says about itself on `<prefix>/nodes/<node_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// [`PRESENCE_FORMAT`].
    pub format: u32,
    /// The node id (also the last topic level).
    pub node_id: String,
    /// `host:port` peers use for anti-entropy.
    pub address: String,
    /// The server version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Internal (anti-entropy) command set version.
    pub wire_version: i64,
    /// log2 of the number of Merkle buckets.
    pub tree_bits: u32,
    /// log2 of the Merkle fan-out.
    pub fanout_bits: u32,
    /// Process start, Unix milliseconds.
    pub started_ms: u64,
    /// `online` or `offline`.
    pub status: String,
}

impl Presence {
    /// CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a presence payload.
    pub fn decode(payload: &[u8]) -> Result<Presence, MemberError> {
        if payload.len() > MAX_PRESENCE_BYTES {
            return Err(MemberError::TooLarge(payload.len()));
        }
        ciborium::from_reader(payload).map_err(|e| MemberError::Undecodable(e.to_string()))
    }

    /// This presence with another status.
    pub fn with_status(&self, status: &str) -> Presence {
        Presence {
            status: status.to_string(),
            ..self.clone()
        }
    }

    fn params(&self) -> (i64, u32, u32) {
        (self.wire_version, self.tree_bits, self.fanout_bits)
    }
}

/// Why a presence message was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberError {
    /// Over [`MAX_PRESENCE_BYTES`].
    TooLarge(usize),
    /// Not a presence map.
    Undecodable(String),
    /// The payload's node id is not the topic's.
    WrongTopic { topic: String, node_id: String },
    /// The table is full.
    Full,
}

impl std::fmt::Display for MemberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberError::TooLarge(n) => write!(f, "presence of {n} bytes is too large"),
            MemberError::Undecodable(e) => write!(f, "undecodable presence: {e}"),
            MemberError::WrongTopic { topic, node_id } => {
                write!(f, "presence of {node_id:?} on the topic of {topic:?}")
            }
            MemberError::Full => write!(f, "member table full ({MAX_MEMBERS} members)"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Member {
    presence: Presence,
    online: bool,
    /// Unix ms of the last presence message.
    last_seen_ms: u64,
    /// Grows each time the member comes (back) online.
    epoch: u64,
    /// Tree parameters or wire version differ from ours (logged once).
    incompatible: bool,
    /// Unix ms when this node saw the member go (or first saw it) offline.
    offline_since_ms: u64,
    lags: LagRing,
}

/// The most recent replication-lag samples, in milliseconds.
#[derive(Debug, Clone, Default)]
struct LagRing {
    samples: Vec<u64>,
    next: usize,
}

impl LagRing {
    fn push(&mut self, ms: u64) {
        if self.samples.len() < LAG_SAMPLES {
            self.samples.push(ms);
        } else {
            self.samples[self.next] = ms;
        }
        self.next = (self.next + 1) % LAG_SAMPLES;
    }

    /// (p50, p99) of the samples, or `None` without samples.
    fn percentiles(&self) -> Option<(u64, u64)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        // Nearest rank.
        let at = |q: usize| s[(s.len() * q).div_ceil(100).max(1) - 1];
        Some((at(50), at(99)))
    }
}

/// A discovered anti-entropy peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeer {
    pub node_id: String,
    pub address: String,
    pub epoch: u64,
}

/// A row as `NODES` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub node_id: String,
    pub address: String,
    /// `self`, `online`, `offline` or `incompatible`.
    pub status: &'static str,
    pub last_seen_ms: u64,
    /// (p50, p99) replication lag in ms.
    pub lag: Option<(u64, u64)>,
}

/// The member table (shared; the bridge writes, the scheduler and
/// commands read).
pub struct Members {
    table: Mutex<Table>,
    /// Signals the anti-entropy scheduler that the table changed.
    changed: (Sender<()>, Receiver<()>),
    /// Presence messages ignored (undecodable, wrong topic, table full).
    pub ignored: AtomicU64,
    /// Members forgotten after being offline too long.
    pub forgotten: AtomicU64,
}

#[derive(Default)]
struct Table {
    own: Option<Presence>,
    /// Lag samples of origins not in the table are dropped.
    members: BTreeMap<String, Member>,
    /// Last epoch handed out.
    epoch: u64,
}

impl Default for Members {
    fn default() -> Members {
        Members {
            table: Mutex::new(Table::default()),
            changed: bounded(1),
            ignored: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
        }
    }
}

impl Members {
    /// Sets this node's own presence (the bridge, before connecting).
    pub fn set_own(&self, p: Presence) {
        lock(&self.table).own = Some(p);
    }

    /// This node's presence, if replication set it.
    pub fn own(&self) -> Option<Presence> {
        lock(&self.table).own.clone()
    }

    /// Wakes on table changes (the scheduler selects on it).
    pub fn changed(&self) -> &Receiver<()> {
        &self.changed.1
    }

    /// A presence message arrived for `topic_id` (the last topic level) at
    /// `now_ms`. An empty payload (a cleared retained message) removes the
    /// member.
    pub fn update(&self, topic_id: &str, payload: &[u8], now_ms: u64) -> Result<(), MemberError> {
        let res = self.update_inner(topic_id, payload, now_ms);
        if res.is_err() {
            self.ignored.fetch_add(1, Relaxed);
        }
        res
    }

    fn update_inner(&self, topic_id: &str, payload: &[u8], now_ms: u64) -> Result<(), MemberError> {
        let mut t = lock(&self.table);
        if payload.is_empty() {
            if t.members.remove(topic_id).is_some() {
                drop(t);
                self.signal();
            }
            return Ok(());
        }
        let p = Presence::decode(payload)?;
        if p.node_id != topic_id {
            return Err(MemberError::WrongTopic {
                topic: topic_id.to_string(),
                node_id: p.node_id,
            });
        }
        if !t.members.contains_key(topic_id) && t.members.len() >= MAX_MEMBERS {
            return Err(MemberError::Full);
        }
        let ours = t.own.as_ref().map(Presence::params);
        let online = p.status == "online";
        t.epoch += 1;
        let epoch = t.epoch;
        let incompatible = ours.is_some_and(|o| o != p.params());
        let m = t
            .members
            .entry(topic_id.to_string())
            .or_insert_with(|| Member {
                presence: p.clone(),
                online: false,
                last_seen_ms: now_ms,
                epoch: 0,
                incompatible: false,
                offline_since_ms: now_ms,
                lags: LagRing::default(),
            });
        let came_online = online && (!m.online || m.presence.started_ms != p.started_ms);
        if incompatible && !m.incompatible {
            log::warn!(
                "cluster: member {:?} at {} has wire_version={} tree_bits={} fanout_bits={}, \
                 unlike this node; listed but not synchronised with",
                p.node_id,
                p.address,
                p.wire_version,
                p.tree_bits,
                p.fanout_bits
            );
        }
        if came_online {
            m.epoch = epoch;
        }
        if m.online && !online {
            m.offline_since_ms = now_ms;
        }
        if m.online != online {
            log::info!(
                "cluster: member {:?} at {} is {}",
                p.node_id,
                p.address,
                p.status
            );
        }
        m.online = online;
        m.incompatible = incompatible;
        m.last_seen_ms = now_ms;
        m.presence = p;
        drop(t);
        self.signal();
        Ok(())
    }

    fn signal(&self) {
        let _ = self.changed.0.try_send(());
    }

    /// Records the replication lag of events from `origin` applied at
    /// `now_ms`, given their HLC physical times (ms).
    pub fn record_lags(&self, origin: &str, now_ms: u64, times: &[u64]) {
        let mut t = lock(&self.table);
        if let Some(m) = t.members.get_mut(origin) {
            for &ms in times.iter().rev().take(LAG_SAMPLES) {
                m.lags.push(now_ms.saturating_sub(ms));
            }
        }
    }

    /// Drops the members offline for longer than `after_ms` at `now_ms`
    /// (never with `after_ms` 0) and returns their ids, counted in
    /// [`Members::forgotten`].
    pub fn forget_offline(&self, now_ms: u64, after_ms: u64) -> Vec<String> {
        if after_ms == 0 {
            return Vec::new();
        }
        let mut t = lock(&self.table);
        let gone: Vec<String> = t
            .members
            .iter()
            .filter(|(_, m)| !m.online && now_ms.saturating_sub(m.offline_since_ms) > after_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            t.members.remove(id);
            log::info!(
                "cluster: forgetting member {id:?}, offline for more than {} s",
                after_ms / 1000
            );
        }
        drop(t);
        if !gone.is_empty() {
            self.forgotten.fetch_add(gone.len() as u64, Relaxed);
            self.signal();
        }
        gone
    }

    /// The online, compatible members other than `self_id`.
    pub fn peers(&self, self_id: &str) -> Vec<DiscoveredPeer> {
        let t = lock(&self.table);
        t.members
            .values()
            .filter(|m| m.online && !m.incompatible && m.presence.node_id != self_id)
            .map(|m| DiscoveredPeer {
                node_id: m.presence.node_id.clone(),
                address: m.presence.address.clone(),
                epoch: m.epoch,
            })
            .collect()
    }

    /// Every member, this node first, then by node id.
    pub fn rows(&self, self_id: &str) -> Vec<MemberRow> {
        let t = lock(&self.table);
        let mut rows = Vec::with_capacity(t.members.len() + 1);
        if let Some(own) = &t.own {
            rows.push(MemberRow {
                node_id: own.node_id.clone(),
                address: own.address.clone(),
                status: "self",
                last_seen_ms: crate::clock::unix_millis(),
                lag: None,
            });
        }
        for m in t.members.values() {
            if m.presence.node_id == self_id {
                continue;
            }
            rows.push(MemberRow {
                node_id: m.presence.node_id.clone(),
                address: m.presence.address.clone(),
                status: match (m.online, m.incompatible) {
                    (false, _) => "offline",
                    (true, true) => "incompatible",
                    (true, false) => "online",
                },
                last_seen_ms: m.last_seen_ms,
                lag: m.lags.percentiles(),
            });
        }
        rows
    }
}

/// One `NODES` line (without the line ending): `id address status
/// last_seen_ms last_round_ms lag_p50_ms lag_p99_ms`, `-` for unknown.
pub fn format_row(r: &MemberRow, last_round_ms: Option<u64>) -> String {
    let mut s = String::new();
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let _ = write!(
        s,
        "{} {} {} {} {} {} {}",
        r.node_id,
        r.address,
        r.status,
        r.last_seen_ms,
        opt(last_round_ms),
        opt(r.lag.map(|l| l.0)),
        opt(r.lag.map(|l| l.1)),
    );
    s
}

/// The `NODES` lines of this node's table (docs/protocol.md §9.5).
pub fn node_lines(shared: &Shared) -> Vec<String> {
    shared
        .outbox
        .members
        .rows(&shared.config.node_id)
        .iter()
        .map(|r| {
            let last_round = (r.status != "self")
                .then(|| shared.antientropy.last_round_ms(&r.address))
                .flatten();
            format_row(r, last_round)
        })
        .collect()
}

/// The `cluster_*` lines of INFO: the RESP section `# Cluster`
/// (docs/protocol.md §9.5).
pub struct ClusterInfo;

impl InfoSection for ClusterInfo {
    fn title(&self) -> Option<&'static str> {
        Some("Cluster")
    }

    fn write_info(&self, shared: &Shared, _db: Db<'_>, s: &mut String) {
        let members = &shared.outbox.members;
        let rows = members.rows(&shared.config.node_id);
        let lines = node_lines(shared);
        let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
        let _ = write!(
            s,
            "cluster_members:{}\r\ncluster_members_online:{}\r\ncluster_members_offline:{}\r\n\
             cluster_members_incompatible:{}\r\ncluster_members_forgotten:{}\r\n\
             cluster_forget_offline_after_seconds:{}\r\ncluster_presence_ignored:{}\r\n",
            lines.len(),
            count("online"),
            count("offline"),
            count("incompatible"),
            members.forgotten.load(Relaxed),
            shared.config.forget_offline_after.as_secs(),
            members.ignored.load(Relaxed)
        );
        for (i, l) in lines.iter().enumerate() {
            let _ = write!(s, "cluster_member{i}:{l}\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(id: &str, status: &str, bits: u32) -> Presence {
        Presence {
            format: PRESENCE_FORMAT,
            node_id: id.into(),
            address: format!("127.0.0.1:{}", 7000 + id.len()),
            version: "2".into(),
            wire_version: 1,
            tree_bits: bits,
            fanout_bits: 4,
            started_ms: 5,
            status: status.into(),
        }
    }

    #[test]
    fn presence_round_trips() {
        let p = presence("a", "online", 16);
        assert_eq!(Presence::decode(&p.encode()).unwrap(), p);
        assert!(Presence::decode(b"\xff").is_err());
        assert!(Presence::decode(&vec![0; MAX_PRESENCE_BYTES + 1]).is_err());
    }

    #[test]
    fn table_tracks_online_offline_and_epochs() {
        let m = Members::default();
        m.set_own(presence("me", "online", 16));
        m.update("b", &presence("b", "online", 16).encode(), 1)
            .unwrap();
        m.update("c", &presence("c", "online", 8).encode(), 1)
            .unwrap();
        let peers = m.peers("me");
        assert_eq!(peers.len(), 1, "the incompatible member is not a peer");
        assert_eq!(peers[0].node_id, "b");
        let e1 = peers[0].epoch;
        m.update("b", &presence("b", "offline", 16).encode(), 2)
            .unwrap();
        assert!(m.peers("me").is_empty());
        m.update("b", &presence("b", "online", 16).encode(), 3)
            .unwrap();
        assert!(m.peers("me")[0].epoch > e1, "reappearing bumps the epoch");
        let rows = m.rows("me");
        let st: Vec<_> = rows
            .iter()
            .map(|r| (r.node_id.as_str(), r.status))
            .collect();
        assert_eq!(st, [("me", "self"), ("b", "online"), ("c", "incompatible")]);
        assert!(matches!(
            m.update("x", &presence("y", "online", 16).encode(), 1),
            Err(MemberError::WrongTopic { .. })
        ));
        m.update("c", b"", 4).unwrap();
        assert_eq!(m.rows("me").len(), 2);
    }

    #[test]
    fn offline_members_are_forgotten_after_the_setting() {
        let m = Members::default();
        m.set_own(presence("me", "online", 16));
        m.update("b", &presence("b", "online", 16).encode(), 1_000)
            .unwrap();
        m.update("c", &presence("c", "offline", 16).encode(), 1_000)
            .unwrap();
        m.update("b", &presence("b", "offline", 16).encode(), 5_000)
            .unwrap();
        // 0 = never.
        assert!(m.forget_offline(1_000_000, 0).is_empty());
        // c has been offline since 1 s, b since 5 s; limit 10 s.
        assert!(m.forget_offline(11_000, 10_000).is_empty(), "exactly 10 s");
        // The retained offline presence of c arrives again (a reconnect):
        // its offline time does not restart.
        m.update("c", &presence("c", "offline", 16).encode(), 11_000)
            .unwrap();
        assert_eq!(m.forget_offline(11_001, 10_000), ["c"]);
        assert_eq!(m.forgotten.load(Relaxed), 1);
        // b comes back: an online member is never forgotten.
        m.update("b", &presence("b", "online", 16).encode(), 12_000)
            .unwrap();
        assert!(m.forget_offline(1_000_000, 10_000).is_empty());
        let ids: Vec<_> = m.rows("me").into_iter().map(|r| r.node_id).collect();
        assert_eq!(ids, ["me", "b"]);
        // Offline again: the clock starts at the new transition.
        m.update("b", &presence("b", "offline", 16).encode(), 2_000_000)
            .unwrap();
        assert!(m.forget_offline(2_010_000, 10_000).is_empty());
        assert_eq!(m.forget_offline(2_010_001, 10_000), ["b"]);
        assert_eq!(m.forgotten.load(Relaxed), 2);
        assert_eq!(m.rows("me").len(), 1);
    }

    #[test]
    fn table_is_bounded() {
        let m = Members::default();
        for i in 0..MAX_MEMBERS {
            let id = format!("n{i}");
            m.update(&id, &presence(&id, "online", 16).encode(), 1)
                .unwrap();
        }
        assert_eq!(
            m.update("zz", &presence("zz", "online", 16).encode(), 1),
            Err(MemberError::Full)
        );
        assert_eq!(m.ignored.load(Relaxed), 1);
    }

    #[test]
    fn lag_percentiles_use_recent_samples() {
        let mut r = LagRing::default();
        assert_eq!(r.percentiles(), None);
        for v in 1..=100 {
            r.push(v);
        }
        assert_eq!(r.percentiles(), Some((50, 99)));
        for _ in 0..LAG_SAMPLES {
            r.push(7);
        }
        assert_eq!(r.percentiles(), Some((7, 7)));
    }
}
