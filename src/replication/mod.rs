//! MQTT replication (docs/protocol.md §9, docs/architecture.md "A write, end to end").
//!
//! Local writes leave the workers through the [`Outbox`], a bounded channel
//! that never blocks a worker; two bridge threads ([`bridge`]) carry them to
//! the broker as CBOR batches ([`wire`]) and apply the batches other nodes
//! publish.
//!
//! ```text
//!  workers --publish()--> Outbox (bounded: count + bytes; full => drop, count)
//!                            |
//!                   "mqtt-publish" thread: cut batches (count / bytes / 1 ms),
//!                            |  encode CBOR, hand to rumqttc (window-limited)
//!                            v
//!                   "mqtt-bridge" thread: owns the rumqttc Connection; connects,
//!                            |  subscribes, reconnects with backoff; decodes
//!                            |  received batches, applies them via applier::Applier
//!                            v
//!                         broker  <prefix>/events  (QoS 1 default, retain false)
//! ```
//!
//! Invariants:
//! * A worker never waits for the broker. When the outbox is full (broker
//!   slow or unreachable for long) the event is dropped and counted;
//!   anti-entropy repairs what replication lost. While the broker is
//!   unreachable the outbox holds what it can (so a short outage loses
//!   nothing), bounded by [`OUTBOX_CAPACITY`] events and
//!   [`OUTBOX_MAX_BYTES`] bytes.
//! * [`Node::start`](crate::node::Node::start) never waits for the broker:
//!   the bridge connects in the background.
//! * Received events are applied with last-writer-wins through
//!   [`crate::applier::Applier`] (which advances the clock) and are never
//!   re-published; a node ignores batches whose origin is its own node id.
//! * Only one MQTT session exists at a time: `REPLICATE enable` (re)starts
//!   the one bridge, it never opens a second client.
//! * `REPLICATE disable` stops both publishing and applying at once (flags
//!   checked per event), then flushes what was queued (bounded) and
//!   disconnects.
//! * Nothing undecodable is fatal: it is counted and logged (rate-limited).

pub mod auth;
pub mod bridge;
pub mod members;
pub mod wire;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::store::Version;
use crate::sync::lock;

pub use bridge::spawn;

/// Capacity of the outbox, in events. The channel itself is unbounded
/// (it allocates blocks as events arrive and frees them as the publisher
/// takes them); this count bounds it. A bounded channel of this capacity
/// would allocate and touch 5 MiB at startup on every node, replicating
/// or not.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// Most bytes (keys + values + per-event overhead) the outbox holds. One
/// event is always admitted into an empty outbox, whatever its size, so a
/// value of any size the protocol accepts can replicate.
pub const OUTBOX_MAX_BYTES: usize = 64 << 20;

/// Bytes an event is charged in the outbox besides its key and value.
const EVENT_CHARGE: usize = 64;

/// One local write to publish: a value, or a tombstone (`value: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub version: Version,
    /// Absolute expiry of the record (Unix ms), 0 if none.
    pub expires: u64,
}

/// Bytes an event with this key and value is charged in the outbox.
fn charge(key: &[u8], value: Option<&[u8]>) -> usize {
    EVENT_CHARGE + key.len() + value.map_or(0, <[u8]>::len)
}

impl ChangeEvent {
    /// Bytes this event is charged in the outbox.
    fn charge(&self) -> usize {
        charge(&self.key, self.value.as_deref())
    }
}

/// Errors of `REPLICATE enable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationError {
    /// The bridge threads are not running (the node was built without
    /// [`spawn`], or they exited).
    BridgeNotRunning,
}

impl std::fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicationError::BridgeNotRunning => f.write_str("replication bridge is not running"),
        }
    }
}

impl std::error::Error for ReplicationError {}

/// The node's replication handle: the workers' outbox, the on/off switch
/// shared with the bridge threads, and the counters INFO reports.
pub struct Outbox {
    sender: Sender<ChangeEvent>,
    pub(crate) rx: Receiver<ChangeEvent>,
    /// Replication on: local writes are queued and received events applied.
    enabled: AtomicBool,
    dropped: AtomicU64,
    /// Events lost so far: dropped here or unpublished by the bridge.
    lost: AtomicU64,
    /// Set on a loss until the anti-entropy scheduler takes it
    /// ([`Outbox::take_loss`]): one wake-up per early round, not per event.
    loss_flag: AtomicBool,
    /// Wakes the anti-entropy scheduler on a loss.
    loss_wake: (Sender<()>, Receiver<()>),
    queued_bytes: AtomicUsize,
    /// Events queued and not yet [`Outbox::taken`] (at most
    /// [`OUTBOX_CAPACITY`]).
    queued_events: AtomicUsize,
    /// Set while the bridge threads run.
    pub(crate) running: AtomicBool,
    /// Wakes the bridge thread (mode changes).
    pub(crate) bridge_wake: (Sender<()>, Receiver<()>),
    /// Wakes the publisher thread (mode changes).
    pub(crate) publisher_wake: (Sender<()>, Receiver<()>),
    /// Counters and state shown by INFO.
    pub metrics: Metrics,
    /// The cluster members seen on the broker.
    pub members: members::Members,
}

impl Outbox {
    /// An outbox, initially replicating iff `enabled`.
    pub fn new(enabled: bool) -> Outbox {
        let (sender, rx) = unbounded();
        Outbox {
            sender,
            rx,
            enabled: AtomicBool::new(enabled),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            loss_flag: AtomicBool::new(false),
            loss_wake: bounded(1),
            queued_bytes: AtomicUsize::new(0),
            queued_events: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            bridge_wake: bounded(1),
            publisher_wake: bounded(1),
            metrics: Metrics::default(),
            members: members::Members::default(),
        }
    }

    /// True while replication is on (local writes published, received
    /// events applied).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Turns replication on or off without checking the bridge (see
    /// [`Outbox::enable`] / [`Outbox::disable`]).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
        let _ = self.bridge_wake.0.try_send(());
        let _ = self.publisher_wake.0.try_send(());
    }

    /// `REPLICATE enable`: starts replication with the configured broker
    /// (even if the configuration had it disabled). Already on: nothing
    /// changes. Never opens a second MQTT session.
    pub fn enable(&self) -> Result<(), ReplicationError> {
        if !self.running.load(Relaxed) {
            return Err(ReplicationError::BridgeNotRunning);
        }
        if !self.is_enabled() {
            log::info!("replication enabled");
            self.set_enabled(true);
        }
        Ok(())
    }

    /// `REPLICATE disable`: from now on local writes are not queued and
    /// received events are not applied; what is queued is flushed (bounded)
    /// and the MQTT session is closed in the background.
    pub fn disable(&self) {
        if self.is_enabled() {
            log::info!("replication disabled");
            self.set_enabled(false);
        }
    }

    /// Queues a local write for publication if replication is enabled.
    /// Never blocks: a full queue drops the event and counts it.
    #[inline]
    pub fn publish(&self, key: &[u8], value: Option<&[u8]>, version: Version, expires: u64) {
        if !self.is_enabled() {
            return;
        }
        // Charged before copying: a full outbox (broker down) costs no
        // allocation per dropped write.
        let charge = charge(key, value);
        let before = self.queued_bytes.fetch_add(charge, Relaxed);
        let over_bytes = before != 0 && before + charge > OUTBOX_MAX_BYTES;
        if over_bytes || self.queued_events.fetch_add(1, Relaxed) >= OUTBOX_CAPACITY {
            if !over_bytes {
                // Refused by the event count, which was charged too.
                self.queued_events.fetch_sub(1, Relaxed);
            }
            self.queued_bytes.fetch_sub(charge, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            self.note_lost(1);
            return;
        }
        let ev = ChangeEvent {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            version,
            expires,
        };
        if self.sender.try_send(ev).is_err() {
            self.queued_events.fetch_sub(1, Relaxed);
            self.queued_bytes.fetch_sub(charge, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            self.note_lost(1);
        }
    }

    /// Accounts for an event the bridge took out of the channel.
    #[inline]
    pub(crate) fn taken(&self, ev: &ChangeEvent) {
        self.queued_bytes.fetch_sub(ev.charge(), Relaxed);
        self.queued_events.fetch_sub(1, Relaxed);
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Counts `n` events that will not reach the broker (dropped or
    /// unpublished) and asks the anti-entropy scheduler for an early round.
    pub(crate) fn note_lost(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.lost.fetch_add(n, Relaxed);
        if !self.loss_flag.swap(true, Relaxed) {
            let _ = self.loss_wake.0.try_send(());
        }
    }

    /// Events lost so far (dropped + unpublished).
    pub fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    /// Signalled after a loss (once until [`Outbox::take_loss`]).
    pub fn loss_signal(&self) -> Receiver<()> {
        self.loss_wake.1.clone()
    }

    /// Takes the loss flag: true if events were lost since the last call.
    pub fn take_loss(&self) -> bool {
        self.loss_flag.swap(false, Relaxed)
    }

    /// Events waiting to be published.
    pub fn queued(&self) -> usize {
        self.sender.len()
    }

    /// Bytes waiting to be published (as charged).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Relaxed)
    }
}

/// State of the broker connection, as INFO shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BrokerState {
    /// Replication off: no session.
    Off = 0,
    /// Connecting (first attempt, or again after a failure).
    Connecting = 1,
    /// Connected and subscribed.
    Connected = 2,
    /// Lost or refused; waiting before the next attempt.
    Backoff = 3,
    /// Flushing queued events before closing the session.
    Draining = 4,
}

impl BrokerState {
    /// The state as INFO `replication_broker_state` shows it.
    pub fn name(self) -> &'static str {
        match self {
            BrokerState::Off => "off",
            BrokerState::Connecting => "connecting",
            BrokerState::Connected => "connected",
            BrokerState::Backoff => "reconnecting",
            BrokerState::Draining => "draining",
        }
    }

    fn from_u8(v: u8) -> BrokerState {
        match v {
            1 => BrokerState::Connecting,
            2 => BrokerState::Connected,
            3 => BrokerState::Backoff,
            4 => BrokerState::Draining,
            _ => BrokerState::Off,
        }
    }
}

/// Most origins whose last applied version INFO remembers; the least
/// recently updated one is forgotten first.
pub const MAX_ORIGINS: usize = 64;

/// Longest origin id kept (bytes); longer ids are cut at a char boundary.
const MAX_ORIGIN_LEN: usize = 128;

/// Replication counters (monotonic) and the broker state.
#[derive(Default)]
pub struct Metrics {
    state: AtomicU8,
    /// Successful MQTT connections (ConnAck received).
    pub connects: AtomicU64,
    /// Failed connection attempts and lost connections.
    pub connect_failures: AtomicU64,
    /// Events / batches acknowledged by the broker (QoS 1) or written to
    /// it (QoS 0).
    pub events_published: AtomicU64,
    pub batches_published: AtomicU64,
    /// Events taken from the outbox that never reached the broker: lost
    /// with a broker session, not flushed in time at shutdown/disable, or
    /// larger than the packet limit.
    pub events_unpublished: AtomicU64,
    /// Batches received from other nodes.
    pub batches_received: AtomicU64,
    /// Own batches echoed back by the broker (skipped).
    pub batches_own: AtomicU64,
    /// Received events stored (newer than what this node had).
    pub events_applied: AtomicU64,
    /// Received events that lost last-writer-wins (duplicates, reordering).
    pub events_stale: AtomicU64,
    /// Received events refused (empty key, value too large, version too
    /// far in the future).
    pub events_invalid: AtomicU64,
    /// Received events not applied because replication was being disabled.
    pub events_ignored: AtomicU64,
    /// Payloads that could not be decoded.
    pub payloads_undecodable: AtomicU64,
    /// Payloads (batches) refused by a node with cluster keys: unsigned or
    /// with a MAC matching none of the keys.
    pub events_unauthenticated: AtomicU64,
    /// Presence messages refused by a node with cluster keys (unsigned,
    /// including empty ones, or with a MAC matching none of the keys).
    pub presence_unauthenticated: AtomicU64,
    origins: Mutex<Origins>,
}

#[derive(Default)]
struct Origins {
    map: HashMap<String, OriginStat>,
    tick: u64,
}

#[derive(Clone, Copy)]
struct OriginStat {
    last: Version,
    events: u64,
    touched: u64,
}

impl Metrics {
    /// The broker connection state.
    pub fn state(&self) -> BrokerState {
        BrokerState::from_u8(self.state.load(Relaxed))
    }

    pub(crate) fn set_state(&self, s: BrokerState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Records `n` events applied from `origin`, the newest at `last`.
    pub(crate) fn applied_from(&self, origin: &str, last: Version, n: u64) {
        let mut id = origin;
        if id.len() > MAX_ORIGIN_LEN {
            let mut end = MAX_ORIGIN_LEN;
            while !id.is_char_boundary(end) {
                end -= 1;
            }
            id = &id[..end];
        }
        let mut o = lock(&self.origins);
        o.tick += 1;
        let tick = o.tick;
        if let Some(s) = o.map.get_mut(id) {
            s.last = s.last.max(last);
            s.events += n;
            s.touched = tick;
            return;
        }
        if o.map.len() >= MAX_ORIGINS {
            let oldest = o
                .map
                .iter()
                .min_by_key(|(_, s)| s.touched)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                o.map.remove(&k);
            }
        }
        o.map.insert(
            id.to_string(),
            OriginStat {
                last,
                events: n,
                touched: tick,
            },
        );
    }

    /// Last applied version per origin, sorted by origin.
    pub fn origins(&self) -> Vec<(String, Version, u64)> {
        let o = lock(&self.origins);
        let mut v: Vec<_> = o
            .map
            .iter()
            .map(|(k, s)| (k.clone(), s.last, s.events))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_outbox_queues_nothing_and_full_outbox_counts_drops() {
        let o = Outbox::new(false);
        o.publish(b"k", Some(b"v"), Version::default(), 0);
        assert_eq!(o.queued(), 0);
        o.set_enabled(true);
        for _ in 0..OUTBOX_CAPACITY + 3 {
            o.publish(b"k", None, Version::default(), 0);
        }
        assert_eq!(o.queued(), OUTBOX_CAPACITY);
        assert_eq!(o.dropped(), 3);
        let ev = o.rx.recv().unwrap();
        o.taken(&ev);
        assert_eq!(ev.key, b"k");
        assert_eq!(o.queued_bytes(), (OUTBOX_CAPACITY - 1) * (EVENT_CHARGE + 1));
    }

    #[test]
    fn outbox_is_bounded_in_bytes_but_admits_one_huge_event() {
        let o = Outbox::new(true);
        let big = vec![7u8; OUTBOX_MAX_BYTES + 10];
        o.publish(b"big", Some(&big), Version::default(), 0);
        assert_eq!(o.queued(), 1, "an empty outbox admits any event");
        o.publish(b"small", Some(b"v"), Version::default(), 0);
        assert_eq!((o.queued(), o.dropped()), (1, 1));
        let ev = o.rx.recv().unwrap();
        o.taken(&ev);
        assert_eq!(o.queued_bytes(), 0);
        let half = vec![0u8; OUTBOX_MAX_BYTES / 2];
        o.publish(b"a", Some(&half), Version::default(), 0);
        o.publish(b"b", Some(&half), Version::default(), 0);
        assert_eq!((o.queued(), o.dropped()), (1, 2));
    }

    #[test]
    fn enable_needs_a_running_bridge_and_disable_stops_queueing() {
        let o = Outbox::new(false);
        assert_eq!(o.enable(), Err(ReplicationError::BridgeNotRunning));
        assert!(!o.is_enabled());
        o.running.store(true, Relaxed);
        assert_eq!(o.enable(), Ok(()));
        assert_eq!(o.enable(), Ok(()));
        assert!(o.is_enabled());
        o.disable();
        o.publish(b"k", Some(b"v"), Version::default(), 0);
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn origin_map_is_bounded_and_keeps_the_newest_version() {
        let m = Metrics::default();
        m.applied_from("a", Version::new(5, 1), 2);
        m.applied_from("a", Version::new(3, 1), 1);
        assert_eq!(m.origins(), vec![("a".to_string(), Version::new(5, 1), 3)]);
        for i in 0..MAX_ORIGINS * 2 {
            m.applied_from(&format!("n{i}"), Version::new(i as u64, 0), 1);
        }
        let o = m.origins();
        assert_eq!(o.len(), MAX_ORIGINS);
        // The least recently updated ones were forgotten.
        assert!(o.iter().all(|(k, _, _)| k != "a" && k != "n0"));
        assert!(
            o.iter()
                .any(|(k, _, _)| k == &format!("n{}", MAX_ORIGINS * 2 - 1))
        );
        let long = "é".repeat(200);
        m.applied_from(&long, Version::default(), 1);
        assert!(
            m.origins()
                .iter()
                .any(|(k, _, _)| k.len() == MAX_ORIGIN_LEN)
        );
    }
}
