//! The MQTT bridge: two threads around one blocking rumqttc client.
//!
//! * **`mqtt-bridge`** owns the rumqttc [`Connection`](rumqttc::Connection) and is the only
//!   thread that polls it (`Connection::recv`, blocking, never with a
//!   timeout: cancelling rumqttc's poll mid-write can lose a packet). It
//!   creates the session when replication is on, subscribes to
//!   `<prefix>/events/#` on every ConnAck, reconnects with exponential
//!   backoff ([`BACKOFF_MIN`]..[`BACKOFF_MAX`]), counts broker
//!   acknowledgements, and decodes and applies received batches through
//!   [`Applier`]. It never publishes.
//! * **`mqtt-publish`** takes events from the [`Outbox`],
//!   cuts batches (at [`MAX_BATCH_EVENTS`] events, [`MAX_BATCH_BYTES`]
//!   bytes, or [`LINGER`] after the batch's first event), encodes them and
//!   hands them to the client with `try_publish` — never a blocking call,
//!   so the two threads cannot deadlock on rumqttc's bounded request
//!   channel. At most [`WINDOW`] batches are in flight (handed over, not yet
//!   acknowledged); the request channel holds more than that, so
//!   `try_publish` does not fail for want of room.
//!
//! The threads share a `Link` (mutex + condvar): the client of the
//! current session, whether it is connected, the event counts of the
//! batches in flight (in order, to count what the broker acknowledged and
//! what a lost session took with it), and the drain state.
//!
//! While the broker is unreachable the publisher holds its current batch
//! and stops taking events, so the outbox buffers (bounded) and a short
//! outage loses nothing; beyond its bounds workers drop and count.
//!
//! Stopping (shutdown, `REPLICATE disable`): whoever notices first starts a
//! *drain* with a deadline ([`DRAIN_BOUND`]): the publisher hands over
//! what is queued, the bridge waits for the acknowledgements, then sends
//! DISCONNECT and ends the session. What did not make it is counted as
//! unpublished. Because the bridge blocks in `recv`, the publisher
//! *nudges* it (an UNSUBSCRIBE of an unused topic, which the broker simply
//! acknowledges) whenever the bridge must re-evaluate without traffic.
//!
//! Wire format and limits: docs/protocol.md §9, §17.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use rumqttc::{
    Client, ConnectionError, Event, Incoming, LastWill, MqttOptions, NetworkOptions, Outgoing,
    Publish, QoS, SubscribeReasonCode,
};

use super::auth::{self, Keys};
use super::wire::{self, EventRef, OwnPrefix};
use super::{BrokerState, ChangeEvent, Metrics, Outbox};
use crate::applier::Applier;
use crate::state::{InfoSection, Shared};
use crate::store::Db;
use crate::store::{Applied, MAX_VALUE_LEN, Version};

/// Time bound of a batch: it is handed over at most this long after its
/// first event was taken.
pub const LINGER: Duration = Duration::from_millis(1);
/// Most events per batch.
pub const MAX_BATCH_EVENTS: usize = 4096;
/// A batch is cut before an event that would take it past this many bytes
/// (a single larger event travels alone).
pub const MAX_BATCH_BYTES: usize = 512 << 10;
/// Most batches handed to the client and not yet acknowledged.
pub const WINDOW: usize = 32;
/// MQTT packet limit, incoming and outgoing: room for one event with an
/// 8 MiB key and an 8 MiB value (far above rumqttc's 10 KiB default).
pub const MAX_PACKET: usize = 2 * MAX_VALUE_LEN + (1 << 20);
const _: () = assert!(MAX_BATCH_BYTES < MAX_PACKET && WINDOW + CHANNEL_SLACK <= u16::MAX as usize);

/// How long shutdown or `REPLICATE disable` may spend flushing.
pub const DRAIN_BOUND: Duration = Duration::from_millis(300);
/// First reconnect delay; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// TCP + MQTT connect timeout, in seconds (rumqttc's unit).
const CONNECT_TIMEOUT_SECS: u64 = 1;
/// Room in rumqttc's request channel besides the publish window
/// (subscribe, nudges, disconnect).
const CHANNEL_SLACK: usize = 16;
/// Safety-net wait of an idle bridge or publisher thread. They are woken
/// by `Outbox::set_enabled` (mode changes), by events and by shutdown;
/// this only bounds a missed wake, so an idle node does not wake them
/// several times a second.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Minimum time between two looks for members to forget.
const FORGET_EVERY: Duration = Duration::from_secs(1);
/// Minimum time between two warnings of one kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Starts the bridge threads (always: they idle while replication is
/// off, so `REPLICATE enable` can start it later).
pub fn spawn(shared: &Arc<Shared>) -> io::Result<Vec<JoinHandle<()>>> {
    let r = &shared.config.replication;
    let bridge = Arc::new(Bridge {
        shared: shared.clone(),
        link: Mutex::new(Link::default()),
        cv: Condvar::new(),
        topic: format!("{}/events", r.topic_prefix),
        keys: Keys::new(&r.cluster_keys),
        nodes: format!("{}/nodes/", r.topic_prefix),
        qos: if r.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
    });
    shared.outbox.running.store(true, Relaxed);
    if shared.outbox.is_enabled() {
        // INFO must not say "off" for a node configured to replicate while
        // the bridge thread is still starting.
        shared.outbox.metrics.set_state(BrokerState::Connecting);
    }
    let b = bridge.clone();
    let t1 = std::thread::Builder::new()
        .name("mqtt-bridge".into())
        .spawn(move || {
            crate::failfast::checkpoint();
            b.run_bridge()
        });
    let t1 = match t1 {
        Ok(t) => t,
        Err(e) => {
            shared.outbox.running.store(false, Relaxed);
            return Err(e);
        }
    };
    let b = bridge.clone();
    let t2 = std::thread::Builder::new()
        .name("mqtt-publish".into())
        .spawn(move || {
            crate::failfast::checkpoint();
            b.run_publisher()
        });
    match t2 {
        Ok(t2) => Ok(vec![t1, t2]),
        Err(e) => {
            // The bridge thread would wait for a publisher that never comes.
            bridge.lock().publisher_exited = true;
            shared.outbox.running.store(false, Relaxed);
            shared.outbox.set_enabled(false);
            Err(e)
        }
    }
}

/// State shared by the two threads (see the module docs).
#[derive(Default)]
struct Link {
    /// The current session's client.
    client: Option<Client>,
    /// The session is connected and subscribed.
    connected: bool,
    /// A session exists (the bridge thread is in it).
    session: bool,
    /// Events per batch handed over and not yet acknowledged, in order.
    inflight: VecDeque<u32>,
    /// Flushing before the session ends.
    drain: Option<Drain>,
    /// The publisher thread has returned.
    publisher_exited: bool,
    /// The bridge thread has returned.
    bridge_exited: bool,
}

#[derive(Clone, Copy)]
struct Drain {
    deadline: Instant,
    /// The publisher handed over (or gave up on) everything queued.
    publisher_done: bool,
}

impl Link {
    /// Starts a drain unless one runs. True if a new one started.
    fn begin_drain(&mut self) -> bool {
        if self.drain.is_some() {
            return false;
        }
        self.drain = Some(Drain {
            deadline: Instant::now() + DRAIN_BOUND,
            publisher_done: false,
        });
        true
    }

    /// Wakes the bridge thread out of `Connection::recv`.
    fn nudge(&self, topic: &str) {
        if let (Some(c), true) = (&self.client, self.connected) {
            let _ = c.try_unsubscribe(format!("{topic}/nudge"));
        }
    }

    /// Forgets the batches in flight: they are counted as unpublished.
    fn lose_inflight(&mut self, o: &Outbox) {
        let lost: u64 = self.inflight.drain(..).map(u64::from).sum();
        o.metrics.events_unpublished.fetch_add(lost, Relaxed);
        o.note_lost(lost);
    }
}

struct Bridge {
    shared: Arc<Shared>,
    link: Mutex<Link>,
    cv: Condvar,
    /// `<prefix>/events`.
    topic: String,
    /// Cluster keys signing published and verifying received payloads.
    keys: Keys,
    /// `<prefix>/nodes/` (membership, docs/protocol.md §9.5).
    nodes: String,
    qos: QoS,
}

/// Logs one kind of warning at most once per [`WARN_EVERY`].
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn warn(&mut self, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!("{} ({} similar suppressed)", msg(), self.suppressed);
        } else {
            log::warn!("{}", msg());
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

impl Bridge {
    fn lock(&self) -> MutexGuard<'_, Link> {
        crate::sync::lock(&self.link)
    }

    fn wait<'a>(&self, g: MutexGuard<'a, Link>, d: Duration) -> MutexGuard<'a, Link> {
        self.cv
            .wait_timeout(g, d)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    fn outbox(&self) -> &Outbox {
        &self.shared.outbox
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.outbox.metrics
    }

    /// Replication should stop (or not run): shutdown or disabled.
    fn stopping(&self) -> bool {
        self.shared.shutdown.is_triggered() || !self.outbox().is_enabled()
    }

    // ---- the bridge thread ------------------------------------------------

    fn run_bridge(&self) {
        let stop = self.shared.shutdown.subscribe();
        let wake = self.outbox().bridge_wake.1.clone();
        let mut applier = Applier::new(self.shared.clone(), "mqtt");
        let mut rx = Receiving::new(&self.shared.config.node_id);
        while !self.shared.shutdown.is_triggered() {
            if !self.outbox().is_enabled() {
                self.metrics().set_state(BrokerState::Off);
                select! {
                    recv(wake) -> _ => {}
                    recv(stop) -> _ => {}
                    default(IDLE_RECHECK) => {}
                }
                continue;
            }
            self.session(&stop, &wake, &mut applier, &mut rx);
        }
        self.metrics().set_state(BrokerState::Off);
        self.lock().bridge_exited = true;
        self.cv.notify_all();
    }

    fn options(&self) -> MqttOptions {
        let r = &self.shared.config.replication;
        let mut o = MqttOptions::new(r.client_id.clone(), r.broker_host.clone(), r.broker_port);
        let ka = r.keep_alive;
        o.set_keep_alive(if ka.is_zero() {
            ka
        } else {
            ka.max(Duration::from_secs(1))
        });
        // rumqttc refuses a persistent session without a client id.
        o.set_clean_session(r.clean_session || r.client_id.is_empty());
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_inflight((WINDOW + CHANNEL_SLACK) as u16);
        if let Some(p) = self.outbox().members.own() {
            let mut will = p.with_status("offline").encode();
            self.keys.sign(&mut will);
            o.set_last_will(LastWill::new(
                format!("{}{}", self.nodes, p.node_id),
                will,
                QoS::AtLeastOnce,
                true,
            ));
        }
        match (&r.username, &r.password) {
            (Some(u), p) => {
                o.set_credentials(u.clone(), p.clone().unwrap_or_default());
            }
            (None, Some(p)) => {
                o.set_credentials(r.client_id.clone(), p.clone());
            }
            (None, None) => {}
        }
        if let Some(tls) = &self.shared.broker_tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        o
    }

    /// One MQTT session: from replication on until it is turned off or the
    /// node shuts down (reconnecting as often as needed in between).
    fn session(
        &self,
        stop: &Receiver<()>,
        wake: &Receiver<()>,
        applier: &mut Applier,
        rx: &mut Receiving,
    ) {
        let r = &self.shared.config.replication;
        let broker = format!("{}:{}", r.broker_host, r.broker_port);
        let filter = format!("{}/#", self.topic);
        let (client, mut conn) = Client::new(self.options(), WINDOW + CHANNEL_SLACK);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
        conn.eventloop.set_network_options(net);
        {
            let mut l = self.lock();
            l.client = Some(client.clone());
            l.connected = false;
            l.session = true;
            l.inflight.clear();
            l.drain = None;
        }
        self.metrics().set_state(BrokerState::Connecting);
        log::info!(
            "replication: connecting to MQTT broker {broker} (topic {})",
            self.topic
        );
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        let mut graceful = false;
        loop {
            if self.stopping() {
                let mut l = self.lock();
                if !l.connected || l.publisher_exited {
                    graceful = l.connected;
                    break;
                }
                if l.begin_drain() {
                    self.metrics().set_state(BrokerState::Draining);
                    self.cv.notify_all();
                    let _ = self.outbox().publisher_wake.0.try_send(());
                }
                let d = l.drain.expect("drain started above");
                if (d.publisher_done && l.inflight.is_empty()) || Instant::now() >= d.deadline {
                    graceful = true;
                    break;
                }
            }
            match conn.recv() {
                Ok(Ok(ev)) => {
                    if self.event(ev, &client, &filter, applier, rx) {
                        if failing {
                            log::info!("replication: reconnected to MQTT broker {broker}");
                        } else {
                            log::info!("replication: connected to MQTT broker {broker}");
                        }
                        failing = false;
                        backoff = BACKOFF_MIN;
                    }
                }
                Ok(Err(e)) => {
                    self.lost(&e, &broker, &mut failing);
                    if self.stopping() {
                        break;
                    }
                    self.metrics().set_state(BrokerState::Backoff);
                    select! {
                        recv(wake) -> _ => {}
                        recv(stop) -> _ => {}
                        default(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if !self.stopping() {
                        self.metrics().set_state(BrokerState::Connecting);
                    }
                }
                // Cannot happen while `conn` holds its own request sender.
                Err(_) => break,
            }
        }
        if graceful {
            // A clean DISCONNECT discards the will: say "offline" first.
            self.publish_presence(&client, "offline");
            let _ = client.try_disconnect();
            for _ in 0..(WINDOW + CHANNEL_SLACK) * 2 {
                match conn.recv() {
                    Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(ev)) => {
                        self.event(ev, &client, &filter, applier, rx);
                    }
                }
            }
        }
        {
            let mut l = self.lock();
            l.client = None;
            l.connected = false;
            l.session = false;
            l.drain = None;
            l.lose_inflight(self.outbox());
        }
        self.cv.notify_all();
        self.metrics().set_state(BrokerState::Off);
        log::info!("replication: MQTT session with {broker} closed");
    }

    /// The connection failed or was lost.
    fn lost(&self, e: &ConnectionError, broker: &str, failing: &mut bool) {
        self.metrics().connect_failures.fetch_add(1, Relaxed);
        {
            let mut l = self.lock();
            l.connected = false;
        }
        self.cv.notify_all();
        if *failing {
            log::debug!("replication: MQTT broker {broker} still unreachable: {e}");
        } else {
            log::warn!("replication: MQTT broker {broker} unreachable or lost: {e}; retrying");
            *failing = true;
        }
    }

    /// Forgets the members offline for longer than
    /// `cluster.forget_offline_after_seconds` and clears their retained
    /// presence (members.rs); looks at most once per [`FORGET_EVERY`].
    fn forget_offline(&self, client: &Client, rx: &mut Receiving) {
        let after = self.shared.config.forget_offline_after;
        if after.is_zero()
            || rx
                .forget_checked
                .is_some_and(|t| t.elapsed() < FORGET_EVERY)
        {
            return;
        }
        rx.forget_checked = Some(Instant::now());
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let gone = self
            .outbox()
            .members
            .forget_offline(crate::clock::unix_millis(), after_ms);
        for id in gone {
            if id != self.shared.config.node_id {
                self.publish_retained(client, &id, Vec::new(), "clear");
            }
        }
    }

    /// Handles one event of the connection; true on a new connection.
    fn event(
        &self,
        ev: Event,
        client: &Client,
        filter: &str,
        applier: &mut Applier,
        rx: &mut Receiving,
    ) -> bool {
        self.forget_offline(client, rx);
        match ev {
            Event::Incoming(Incoming::ConnAck(ack)) => {
                self.metrics().connects.fetch_add(1, Relaxed);
                if let Err(e) = client.try_subscribe(filter, self.qos) {
                    log::warn!("replication: cannot subscribe to {filter}: {e}");
                }
                let mut l = self.lock();
                // Without a session on the broker, rumqttc dropped whatever
                // it had not delivered: anti-entropy repairs it.
                if !ack.session_present {
                    l.lose_inflight(self.outbox());
                }
                l.connected = true;
                drop(l);
                let members = format!("{}+", self.nodes);
                if let Err(e) = client.try_subscribe(&members, QoS::AtLeastOnce) {
                    log::warn!("replication: cannot subscribe to {members}: {e}");
                }
                self.publish_presence(client, "online");
                self.cv.notify_all();
                return true;
            }
            Event::Incoming(Incoming::PubAck(_)) if self.qos == QoS::AtLeastOnce => self.acked(),
            Event::Outgoing(Outgoing::Publish(_)) if self.qos == QoS::AtMostOnce => self.acked(),
            Event::Incoming(Incoming::Publish(p)) => match p.topic.strip_prefix(&self.nodes) {
                Some(id) => {
                    // True for an authentic empty (cleared) presence.
                    let cleared = rx.presence(id, &p, self);
                    // Another node cleared this node's presence (it had
                    // forgotten this node, members.rs): announce it again.
                    if cleared && id == self.shared.config.node_id && !self.stopping() {
                        log::info!(
                            "cluster: this node's presence was cleared; publishing it again"
                        );
                        self.publish_presence(client, "online");
                    }
                }
                None => rx.message(&p, self, applier),
            },
            Event::Incoming(Incoming::SubAck(s)) => {
                if s.return_codes.contains(&SubscribeReasonCode::Failure) {
                    log::warn!("replication: the broker refused the subscription to {filter}");
                }
                // INFO says "connected" once events can arrive.
                self.metrics().set_state(if self.stopping() {
                    BrokerState::Draining
                } else {
                    BrokerState::Connected
                });
            }
            _ => {}
        }
        false
    }

    /// Publishes this node's retained presence with `status`. It takes a
    /// place in the in-flight queue (with no events) so that the broker's
    /// acknowledgements keep matching the batches.
    fn publish_presence(&self, client: &Client, status: &str) {
        let Some(p) = self.outbox().members.own() else {
            return;
        };
        self.publish_retained(client, &p.node_id, p.with_status(status).encode(), status);
    }

    /// Publishes a retained `payload` on `<prefix>/nodes/<id>` (QoS 1; an
    /// empty payload clears the topic), taking a place in the in-flight
    /// queue like a presence message. `what` names it in a warning.
    ///
    /// With cluster keys the payload is signed, an empty one too: the
    /// broker then keeps the bare trailer as the retained message instead
    /// of deleting it, and keyed nodes accept the clearing (an unsigned
    /// empty message is refused like any unsigned presence).
    fn publish_retained(&self, client: &Client, id: &str, mut payload: Vec<u8>, what: &str) {
        self.keys.sign(&mut payload);
        let topic = format!("{}{id}", self.nodes);
        let mut l = self.lock();
        match client.try_publish(topic, QoS::AtLeastOnce, true, payload) {
            Ok(()) => l.inflight.push_back(0),
            Err(e) => log::warn!("cluster: cannot publish presence of {id:?} ({what}): {e}"),
        }
    }

    /// The oldest batch in flight reached the broker (a presence message
    /// counts no events and no batch).
    fn acked(&self) {
        let mut l = self.lock();
        if let Some(n) = l.inflight.pop_front().filter(|&n| n > 0) {
            let m = self.metrics();
            m.events_published.fetch_add(u64::from(n), Relaxed);
            m.batches_published.fetch_add(1, Relaxed);
        }
        drop(l);
        self.cv.notify_all();
    }

    // ---- the publisher thread ---------------------------------------------

    fn run_publisher(&self) {
        let mut p = Publisher::new(self);
        let stop = self.shared.shutdown.subscribe();
        let wake = self.outbox().publisher_wake.1.clone();
        loop {
            if self.shared.shutdown.is_triggered() {
                p.drain();
                break;
            }
            if !self.outbox().is_enabled() {
                // While the bridge still has a session (draining after
                // `REPLICATE disable`) recheck often; with none, wait for
                // a wake (`Outbox::set_enabled`) or shutdown.
                let recheck = if self.lock().session {
                    p.drain();
                    Duration::from_millis(200)
                } else {
                    p.discard();
                    IDLE_RECHECK
                };
                select! {
                    recv(wake) -> _ => {}
                    recv(stop) -> _ => {}
                    default(recheck) => {}
                }
                continue;
            }
            if p.is_empty() {
                select! {
                    recv(self.outbox().rx) -> ev => {
                        if let Ok(ev) = ev {
                            p.first(ev);
                        }
                    }
                    recv(wake) -> _ => continue,
                    recv(stop) -> _ => continue,
                    default(IDLE_RECHECK) => continue,
                }
            } else {
                // A backlog: the previous batch was cut full.
                p.fill();
            }
            p.hand_over(None);
        }
        // Wait (bounded) for the bridge to close the session, nudging it.
        let give_up = Instant::now() + DRAIN_BOUND * 4;
        let mut l = self.lock();
        l.publisher_exited = true;
        while !l.bridge_exited && Instant::now() < give_up {
            l.nudge(&self.topic);
            l = self.wait(l, Duration::from_millis(20));
        }
    }
}

/// Decoding and applying received batches (bridge thread).
struct Receiving {
    own: OwnPrefix,
    node_id: String,
    undecodable: WarnLimiter,
    unauthenticated: WarnLimiter,
    invalid: WarnLimiter,
    /// Ignored presence messages.
    members: WarnLimiter,
    /// When the member table was last looked at for members to forget.
    forget_checked: Option<Instant>,
}

impl Receiving {
    fn new(node_id: &str) -> Receiving {
        Receiving {
            own: OwnPrefix::new(node_id),
            node_id: node_id.to_string(),
            undecodable: WarnLimiter::default(),
            unauthenticated: WarnLimiter::default(),
            invalid: WarnLimiter::default(),
            members: WarnLimiter::default(),
            forget_checked: None,
        }
    }

    /// A presence message on `<prefix>/nodes/<id>`. With cluster keys it
    /// must be signed like a batch: a publisher without the key cannot add,
    /// change or remove (empty payload) a member, so it cannot make nodes
    /// run anti-entropy with an address of its choosing.
    ///
    /// Returns true for an accepted empty presence (the member was cleared).
    fn presence(&mut self, id: &str, p: &Publish, b: &Bridge) -> bool {
        let body = match b.keys.verify(&p.payload) {
            Ok(body) => body,
            Err(e) => {
                b.metrics().presence_unauthenticated.fetch_add(1, Relaxed);
                self.unauthenticated.warn(|| {
                    format!(
                        "cluster: refused a presence message on {} ({} bytes): {e}",
                        p.topic,
                        p.payload.len()
                    )
                });
                return false;
            }
        };
        if let Err(e) = b
            .outbox()
            .members
            .update(id, body, crate::clock::unix_millis())
        {
            self.members
                .warn(|| format!("cluster: ignoring {}: {e}", p.topic));
        }
        body.is_empty()
    }

    fn message(&mut self, p: &Publish, b: &Bridge, applier: &mut Applier) {
        let m = b.metrics();
        if self.own.matches(&p.payload) {
            m.batches_own.fetch_add(1, Relaxed);
            return;
        }
        let body = match b.keys.verify(&p.payload) {
            Ok(body) => body,
            Err(e) => {
                m.events_unauthenticated.fetch_add(1, Relaxed);
                self.unauthenticated.warn(|| {
                    format!(
                        "replication: refused a payload on {} ({} bytes): {e}",
                        p.topic,
                        p.payload.len()
                    )
                });
                return;
            }
        };
        let batch = match wire::decode_ref(body) {
            Ok(batch) => batch,
            Err(e) => {
                m.payloads_undecodable.fetch_add(1, Relaxed);
                self.undecodable.warn(|| {
                    format!(
                        "replication: undecodable payload on {} ({} bytes): {e}",
                        p.topic,
                        p.payload.len()
                    )
                });
                return;
            }
        };
        if batch.origin() == self.node_id {
            m.batches_own.fetch_add(1, Relaxed);
            return;
        }
        m.batches_received.fetch_add(1, Relaxed);
        let total = batch.len() as u64;
        let source = format!("mqtt {}", batch.origin());
        let store = &b.shared.store;
        let (mut applied, mut stale, mut invalid, mut seen) = (0u64, 0u64, 0u64, 0u64);
        let mut newest = Version::default();
        let mut times = Vec::new();
        for ev in batch.events() {
            // `REPLICATE disable` stops applying at once.
            if !b.outbox().is_enabled() {
                break;
            }
            seen += 1;
            // The clock bound: one bogus event must not drag the clock (and
            // every later local write) into the future.
            if !valid(&ev) || !store.accept_remote(ev.version, &source) {
                invalid += 1;
                continue;
            }
            match applier.apply_expiring(ev.key, ev.value, ev.version, ev.expires) {
                Applied::Stored => {
                    applied += 1;
                    newest = newest.max(ev.version);
                    times.push(ev.version.millis());
                }
                Applied::Stale => stale += 1,
            }
        }
        m.events_applied.fetch_add(applied, Relaxed);
        m.events_stale.fetch_add(stale, Relaxed);
        m.events_invalid.fetch_add(invalid, Relaxed);
        m.events_ignored.fetch_add(total - seen, Relaxed);
        if applied > 0 {
            // One log write (and fsync under `fsync = always`) per batch.
            applier.commit();
            m.applied_from(batch.origin(), newest, applied);
            // Lag: local apply time minus the event's HLC physical time.
            b.outbox()
                .members
                .record_lags(batch.origin(), crate::clock::unix_millis(), &times);
        }
        if invalid > 0 {
            self.invalid.warn(|| {
                format!(
                    "replication: refused {invalid} invalid events from {:?} \
                     (empty key, value over {MAX_VALUE_LEN} bytes, or version over \
                     max_clock_skew = {} ms ahead)",
                    batch.origin(),
                    store.max_clock_skew()
                )
            });
        }
    }
}

/// A received event of an acceptable shape (its version is checked
/// against the clock bound separately, `Store::accept_remote`).
fn valid(ev: &EventRef<'_>) -> bool {
    !ev.key.is_empty() && ev.value.is_none_or(|v| v.len() <= MAX_VALUE_LEN)
}

/// Batch assembly and hand-over (publisher thread).
struct Publisher<'a> {
    b: &'a Bridge,
    origin: String,
    batch: Vec<ChangeEvent>,
    bytes: usize,
    /// The event that did not fit the current batch (starts the next).
    carry: Option<ChangeEvent>,
    /// The encoded current batch, if encoded.
    payload: Vec<u8>,
    oversized: WarnLimiter,
}

/// Outcome of a hand-over attempt.
#[derive(Debug, PartialEq, Eq)]
enum HandOver {
    Sent,
    /// Replication is stopping; the batch is kept for the drain.
    Stopping,
    /// Draining and the batch cannot be published (deadline, no connection).
    Failed,
}

impl<'a> Publisher<'a> {
    fn new(b: &'a Bridge) -> Publisher<'a> {
        Publisher {
            b,
            origin: b.shared.config.node_id.clone(),
            batch: Vec::new(),
            bytes: 0,
            carry: None,
            payload: Vec::new(),
            oversized: WarnLimiter::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.carry.is_none()
    }

    /// Adds an event taken from the outbox; false if the batch is full
    /// (the event is carried over to the next batch).
    fn push(&mut self, ev: ChangeEvent) -> bool {
        self.b.outbox().taken(&ev);
        let len = wire::encoded_len(&ev);
        if len + self.b.topic.len() + 64 + auth::TRAILER_LEN > MAX_PACKET {
            self.b.metrics().events_unpublished.fetch_add(1, Relaxed);
            self.b.outbox().note_lost(1);
            self.oversized.warn(|| {
                format!("replication: an event of {len} bytes exceeds the MQTT packet limit of {MAX_PACKET}; not published")
            });
            return true;
        }
        if !self.batch.is_empty()
            && (self.bytes + len > MAX_BATCH_BYTES || self.batch.len() >= MAX_BATCH_EVENTS)
        {
            self.carry = Some(ev);
            return false;
        }
        self.bytes += len;
        self.batch.push(ev);
        self.payload.clear();
        true
    }

    /// Moves the carried event into the (empty) batch.
    fn take_carry(&mut self) {
        if self.batch.is_empty()
            && let Some(ev) = self.carry.take()
        {
            self.bytes = wire::encoded_len(&ev);
            self.batch.push(ev);
            self.payload.clear();
        }
    }

    /// Takes what is queued now, without waiting, until the batch is full.
    fn fill(&mut self) {
        self.take_carry();
        while self.carry.is_none() {
            match self.b.outbox().rx.try_recv() {
                Ok(ev) => {
                    self.push(ev);
                }
                Err(_) => break,
            }
        }
    }

    /// Starts a batch with `ev` and collects for up to [`LINGER`].
    fn first(&mut self, ev: ChangeEvent) {
        let deadline = Instant::now() + LINGER;
        self.push(ev);
        self.fill();
        // Sleep instead of blocking on the channel: a waiting receiver
        // would make every producer's send a wake-up syscall.
        if self.carry.is_none() {
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
            self.fill();
        }
    }

    /// Hands the current batch to the client. `deadline` is set while
    /// draining; otherwise this waits for a connection and window room as
    /// long as replication stays on.
    fn hand_over(&mut self, deadline: Option<Instant>) -> HandOver {
        self.take_carry();
        if self.batch.is_empty() {
            return HandOver::Sent;
        }
        let b = self.b;
        let mut l = b.lock();
        loop {
            match deadline {
                None if b.stopping() => return HandOver::Stopping,
                Some(d) if Instant::now() >= d || !l.connected || !l.session => {
                    return HandOver::Failed;
                }
                _ => {}
            }
            if l.connected && l.inflight.len() < WINDOW {
                if self.payload.is_empty() {
                    wire::encode(&self.origin, &self.batch, &mut self.payload);
                    b.keys.sign(&mut self.payload);
                }
                let payload = std::mem::take(&mut self.payload);
                let sent = l
                    .client
                    .as_ref()
                    .map(|c| c.try_publish(b.topic.as_str(), b.qos, false, payload));
                if let Some(Ok(())) = sent {
                    l.inflight.push_back(self.batch.len() as u32);
                    self.batch.clear();
                    self.bytes = 0;
                    return HandOver::Sent;
                }
                // The request channel is full or closed (session ending):
                // re-encode on the next attempt.
            }
            l = b.wait(l, Duration::from_millis(50));
        }
    }

    /// Flushes what is queued within [`DRAIN_BOUND`], then waits (bounded)
    /// for the bridge to close the session.
    fn drain(&mut self) {
        let b = self.b;
        let deadline = {
            let mut l = b.lock();
            if !(l.session && l.connected) {
                drop(l);
                self.discard();
                return;
            }
            if l.begin_drain() {
                b.metrics().set_state(BrokerState::Draining);
            }
            l.nudge(&b.topic);
            l.drain.map_or_else(Instant::now, |d| d.deadline)
        };
        loop {
            self.fill();
            if self.batch.is_empty() || self.hand_over(Some(deadline)) != HandOver::Sent {
                break;
            }
        }
        self.discard();
        let mut l = b.lock();
        if let Some(d) = l.drain.as_mut() {
            d.publisher_done = true;
        }
        // The bridge ends the session once the acknowledgements are in, or
        // at the deadline; wake it for either.
        let give_up = deadline + DRAIN_BOUND;
        while l.session && Instant::now() < give_up {
            l.nudge(&b.topic);
            let until_deadline = deadline.saturating_duration_since(Instant::now());
            let step = if until_deadline.is_zero() {
                Duration::from_millis(20)
            } else {
                until_deadline.min(Duration::from_millis(50))
            };
            l = b.wait(l, step);
        }
    }

    /// Drops the held batch and everything queued, counting it unpublished.
    fn discard(&mut self) {
        let mut n = self.batch.len() as u64 + u64::from(self.carry.is_some());
        self.batch.clear();
        self.carry = None;
        self.bytes = 0;
        self.payload.clear();
        while let Ok(ev) = self.b.outbox().rx.try_recv() {
            self.b.outbox().taken(&ev);
            n += 1;
        }
        if n > 0 {
            self.b.metrics().events_unpublished.fetch_add(n, Relaxed);
            self.b.outbox().note_lost(n);
        }
    }
}

/// The `replication_*` lines of INFO (`name:value\r\n` each).
pub struct ReplicationInfo;

impl InfoSection for ReplicationInfo {
    fn write_info(&self, shared: &Shared, _db: Db<'_>, s: &mut String) {
        write_info(shared, s);
    }
}

fn write_info(shared: &Shared, s: &mut String) {
    let o = &shared.outbox;
    let m = &o.metrics;
    let r = &shared.config.replication;
    let get = |a: &AtomicU64| a.load(Relaxed);
    let _ = write!(
        s,
        "replication_broker:{}:{}\r\n\
         replication_broker_state:{}\r\n\
         replication_connects:{}\r\n\
         replication_connect_failures:{}\r\n\
         replication_events_published:{}\r\n\
         replication_batches_published:{}\r\n\
         replication_events_unpublished:{}\r\n\
         replication_batches_received:{}\r\n\
         replication_batches_own:{}\r\n\
         replication_events_applied:{}\r\n\
         replication_events_stale:{}\r\n\
         replication_events_invalid:{}\r\n\
         replication_events_ignored:{}\r\n\
         replication_payloads_undecodable:{}\r\n\
         replication_events_unauthenticated:{}\r\n\
         replication_presence_unauthenticated:{}\r\n",
        r.broker_host,
        r.broker_port,
        m.state().name(),
        get(&m.connects),
        get(&m.connect_failures),
        get(&m.events_published),
        get(&m.batches_published),
        get(&m.events_unpublished),
        get(&m.batches_received),
        get(&m.batches_own),
        get(&m.events_applied),
        get(&m.events_stale),
        get(&m.events_invalid),
        get(&m.events_ignored),
        get(&m.payloads_undecodable),
        get(&m.events_unauthenticated),
        get(&m.presence_unauthenticated),
    );
    let origins = m.origins();
    let _ = write!(s, "replication_origins:{}\r\n", origins.len());
    for (id, v, n) in origins {
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let _ = write!(
            s,
            "replication_origin_{name}:last_version={}.{},events={n}\r\n",
            v.millis(),
            v.hlc & ((1 << crate::store::version::LOGICAL_BITS) - 1)
        );
    }
    let _ = write!(
        s,
        "replication_enabled:{}\r\nreplication_queued:{}\r\nreplication_dropped:{}\r\n\
         replication_events_lost:{}\r\nreplication_repair_pending:{}\r\n",
        o.is_enabled() as u8,
        o.queued(),
        o.dropped(),
        o.lost(),
        o.lost()
            .saturating_sub(shared.antientropy.repaired_losses())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_events_are_validated() {
        let ok = |k: &[u8], v: Option<usize>| {
            let value = v.map(|n| vec![0; n]);
            valid(&EventRef {
                key: k,
                value: value.as_deref(),
                version: Version::new(u64::MAX, 1),
                expires: 0,
            })
        };
        assert!(ok(b"k", Some(1)));
        assert!(ok(b"k", None));
        assert!(ok(b"k", Some(MAX_VALUE_LEN)));
        assert!(!ok(b"", Some(1)));
        assert!(!ok(b"k", Some(MAX_VALUE_LEN + 1)));
    }

    #[test]
    fn packet_limit_fits_the_largest_value() {
        let ev = ChangeEvent {
            key: vec![b'k'; 1 << 20],
            value: Some(vec![0; MAX_VALUE_LEN]),
            version: Version::new(u64::MAX, u64::MAX),
            expires: u64::MAX,
        };
        assert!(wire::encoded_len(&ev) + 1024 < MAX_PACKET);
    }
}
