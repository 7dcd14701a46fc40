//! Pub/Sub: `PUBLISH` delivers a message to every connection of this node
//! subscribed to its channel (`SUBSCRIBE`) or to a pattern matching it
//! (`PSUBSCRIBE`), whichever worker owns that connection. Sharded Pub/Sub
//! (`SSUBSCRIBE`, `SPUBLISH`) is a separate namespace of channels, as on
//! a standalone Redis (one node holds every shard).
//!
//! Design (the delivery path is `MONITOR`'s, `crate::monitor`):
//!
//! * [`PubSub`] (in [`crate::state::Shared`]) maps each channel and each
//!   pattern to its subscribers. A subscriber is a connection's [`Feed`]
//!   plus its [`ClientInfo`] (to frame a message in the protocol the
//!   connection speaks when it is published: RESP2 array or RESP3 push).
//! * `PUBLISH`, on any worker, frames the message once per protocol and
//!   pushes it into each subscriber's feed under the registry lock; the
//!   feed wakes the owning worker, which moves the bytes into the
//!   connection's output buffer where the output limits apply
//!   (`server::worker`). A feed holds at most its cap (the hard output
//!   limit, or 64 MiB without one); a subscriber whose feed overflows is
//!   disconnected as for a client over the hard output limit, and counted.
//! * Nothing here is on the GET/SET path: a worker drains feeds only when
//!   one of its connections subscribes, and commands pay nothing unless
//!   their connection is subscribed (a field of the connection).
//! * Node-local: messages do not cross to other nodes of the cluster
//!   (docs/architecture.md).
//!
//! Invariants: a connection appears at most once per channel and per
//! pattern; an entry with no subscribers is removed, so `PUBSUB CHANNELS`
//! and `NUMPAT` count live subscriptions only. Lock order: the registry
//! lock, then a feed's lock (never the reverse).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::monitor::Feed;
use crate::protocol::glob::Pattern;
use crate::protocol::reply;
use crate::stats::ClientInfo;
use crate::sync::lock;

/// One subscribed connection, as the registry holds it.
#[derive(Clone)]
pub struct Subscriber {
    pub feed: Arc<Feed>,
    pub client: Arc<ClientInfo>,
}

struct PatternEntry {
    text: Vec<u8>,
    pattern: Pattern,
    subs: Vec<Subscriber>,
}

type Channels = HashMap<Vec<u8>, Vec<Subscriber>, ahash::RandomState>;

#[derive(Default)]
struct Registry {
    channels: Channels,
    /// Sharded channels (`SSUBSCRIBE`).
    shard: Channels,
    patterns: Vec<PatternEntry>,
}

impl Registry {
    fn map(&mut self, shard: bool) -> &mut Channels {
        if shard {
            &mut self.shard
        } else {
            &mut self.channels
        }
    }
}

/// What a subscription is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// A channel (`SUBSCRIBE`).
    Channel,
    /// A glob pattern over channels (`PSUBSCRIBE`).
    Pattern,
    /// A sharded channel (`SSUBSCRIBE`).
    Shard,
}

/// Every subscription of the node (see the module docs).
#[derive(Default)]
pub struct PubSub {
    reg: Mutex<Registry>,
    /// Channels and distinct patterns with at least one subscriber
    /// (INFO's `pubsub_channels`, `pubsub_patterns`).
    channels: AtomicUsize,
    patterns: AtomicUsize,
    /// Sharded channels with subscribers (`pubsubshard_channels`).
    shard_channels: AtomicUsize,
    /// Connections with at least one subscription (`pubsub_clients`).
    clients: AtomicUsize,
}

impl PubSub {
    fn count(&self, reg: &Registry, shard: bool) {
        if shard {
            self.shard_channels.store(reg.shard.len(), Relaxed);
        } else {
            self.channels.store(reg.channels.len(), Relaxed);
        }
    }

    /// Subscribes `s` to `channel` (a sharded one with `shard`); false if
    /// it already was.
    pub fn subscribe(&self, channel: &[u8], shard: bool, s: &Subscriber) -> bool {
        let mut reg = lock(&self.reg);
        let subs = reg.map(shard).entry(channel.to_vec()).or_default();
        if subs.iter().any(|x| x.feed.conn_id == s.feed.conn_id) {
            return false;
        }
        subs.push(s.clone());
        self.count(&reg, shard);
        true
    }

    /// Unsubscribes connection `conn_id` from `channel` (sharded with
    /// `shard`); false if it was not subscribed.
    pub fn unsubscribe(&self, channel: &[u8], shard: bool, conn_id: u64) -> bool {
        let mut reg = lock(&self.reg);
        let map = reg.map(shard);
        let Some(subs) = map.get_mut(channel) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|x| x.feed.conn_id != conn_id);
        let removed = subs.len() < before;
        if subs.is_empty() {
            map.remove(channel);
        }
        self.count(&reg, shard);
        removed
    }

    /// Delivers `message` on the sharded `channel` (`SPUBLISH`) to its
    /// subscribers; returns how many.
    pub fn spublish(&self, channel: &[u8], message: &[u8]) -> usize {
        let reg = lock(&self.reg);
        reg.shard
            .get(channel)
            .map_or(0, |subs| deliver(subs, b"smessage", None, channel, message))
    }

    /// Subscribes `s` to the glob `pattern` (already checked to compile);
    /// false if it already was.
    pub fn psubscribe(&self, pattern: &[u8], s: &Subscriber) -> bool {
        let mut reg = lock(&self.reg);
        if let Some(e) = reg.patterns.iter_mut().find(|e| e.text == pattern) {
            if e.subs.iter().any(|x| x.feed.conn_id == s.feed.conn_id) {
                return false;
            }
            e.subs.push(s.clone());
            return true;
        }
        let Ok(compiled) = Pattern::new(pattern) else {
            return false;
        };
        reg.patterns.push(PatternEntry {
            text: pattern.to_vec(),
            pattern: compiled,
            subs: vec![s.clone()],
        });
        self.patterns.store(reg.patterns.len(), Relaxed);
        true
    }

    /// Unsubscribes connection `conn_id` from `pattern`; false if it was
    /// not subscribed.
    pub fn punsubscribe(&self, pattern: &[u8], conn_id: u64) -> bool {
        let mut reg = lock(&self.reg);
        let Some(i) = reg.patterns.iter().position(|e| e.text == pattern) else {
            return false;
        };
        let e = &mut reg.patterns[i];
        let before = e.subs.len();
        e.subs.retain(|x| x.feed.conn_id != conn_id);
        let removed = e.subs.len() < before;
        if e.subs.is_empty() {
            reg.patterns.swap_remove(i);
        }
        self.patterns.store(reg.patterns.len(), Relaxed);
        removed
    }

    /// Delivers `message` on `channel` to every subscriber of the channel
    /// and of each matching pattern; returns how many deliveries were
    /// made (a connection subscribed both ways counts twice, as in Redis).
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        let reg = lock(&self.reg);
        let mut n = reg
            .channels
            .get(channel)
            .map_or(0, |subs| deliver(subs, b"message", None, channel, message));
        for e in reg.patterns.iter().filter(|e| e.pattern.matches(channel)) {
            n += deliver(&e.subs, b"pmessage", Some(&e.text), channel, message);
        }
        n
    }

    /// The channels (sharded ones with `shard`) with subscribers whose
    /// name matches `pattern` (all when `None`), in no particular order.
    pub fn channels(&self, pattern: Option<&Pattern>, shard: bool) -> Vec<Vec<u8>> {
        let mut reg = lock(&self.reg);
        reg.map(shard)
            .keys()
            .filter(|c| pattern.is_none_or(|p| p.matches(c)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` (sharded with `shard`; patterns not
    /// counted, as in Redis).
    pub fn numsub(&self, channel: &[u8], shard: bool) -> usize {
        lock(&self.reg).map(shard).get(channel).map_or(0, Vec::len)
    }

    /// Sharded channels with at least one subscriber.
    pub fn shard_channel_count(&self) -> usize {
        self.shard_channels.load(Relaxed)
    }

    /// Channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.load(Relaxed)
    }

    /// Connections with at least one subscription.
    pub fn client_count(&self) -> usize {
        self.clients.load(Relaxed)
    }

    /// Distinct patterns with at least one subscriber.
    pub fn pattern_count(&self) -> usize {
        self.patterns.load(Relaxed)
    }
}

/// A (un)subscription a connection asked for, run by its worker with
/// [`PubSub::apply`] (it changes the connection's state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubOp {
    /// `SUBSCRIBE`/`PSUBSCRIBE`/`SSUBSCRIBE` (else the `UN` forms).
    pub subscribe: bool,
    /// Channels, patterns (`P…`) or sharded channels (`S…`).
    pub kind: SubKind,
    /// The channels or patterns; empty for "all" (unsubscriptions only).
    pub names: Vec<Vec<u8>>,
}

/// A connection's subscriptions, owned by its worker.
pub struct Subscriptions {
    pub sub: Subscriber,
    channels: HashSet<Vec<u8>, ahash::RandomState>,
    patterns: HashSet<Vec<u8>, ahash::RandomState>,
    shard: HashSet<Vec<u8>, ahash::RandomState>,
    /// Bytes of the channel and pattern names held.
    bytes: usize,
}

impl Subscriptions {
    /// Channels subscribed to (`CLIENT LIST`'s `sub`).
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Patterns subscribed to (`psub`).
    pub fn patterns(&self) -> usize {
        self.patterns.len()
    }

    /// Sharded channels subscribed to (`ssub`).
    pub fn shard_channels(&self) -> usize {
        self.shard.len()
    }

    /// Heap bytes held (counted in the connection's memory).
    pub fn bytes(&self) -> usize {
        self.bytes + 32 * (self.channels.len() + self.patterns.len() + self.shard.len())
    }

    fn set(&mut self, kind: SubKind) -> &mut HashSet<Vec<u8>, ahash::RandomState> {
        match kind {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shard,
        }
    }

    /// The count a confirmation of `kind` reports: channels and patterns,
    /// or, for sharded channels, those alone (as Redis counts).
    fn count(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }
}

impl PubSub {
    /// Runs `op` for the connection whose subscriptions are `subs`,
    /// appending one confirmation per name (or one with a null name when
    /// an unsubscription has nothing to end) in RESP2 or RESP3 (`resp3`).
    /// `subscriber` makes the connection's feed on its first subscription;
    /// `subs` is `None` again once nothing is left.
    pub fn apply(
        &self,
        subs: &mut Option<Box<Subscriptions>>,
        op: SubOp,
        subscriber: impl FnOnce() -> Subscriber,
        resp3: bool,
        out: &mut Vec<u8>,
    ) {
        let word: &[u8] = match (op.subscribe, op.kind) {
            (true, SubKind::Channel) => b"subscribe",
            (true, SubKind::Pattern) => b"psubscribe",
            (true, SubKind::Shard) => b"ssubscribe",
            (false, SubKind::Channel) => b"unsubscribe",
            (false, SubKind::Pattern) => b"punsubscribe",
            (false, SubKind::Shard) => b"sunsubscribe",
        };
        let kind = op.kind;
        if op.subscribe {
            if subs.is_none() {
                self.clients.fetch_add(1, Relaxed);
            }
            let s = subs.get_or_insert_with(|| {
                Box::new(Subscriptions {
                    sub: subscriber(),
                    channels: HashSet::default(),
                    patterns: HashSet::default(),
                    shard: HashSet::default(),
                    bytes: 0,
                })
            });
            for name in op.names {
                if !s.set(kind).contains(&name) {
                    match kind {
                        SubKind::Pattern => self.psubscribe(&name, &s.sub),
                        _ => self.subscribe(&name, kind == SubKind::Shard, &s.sub),
                    };
                    s.bytes += name.len();
                    s.set(kind).insert(name.clone());
                }
                confirm(out, resp3, word, Some(&name), s.count(kind));
            }
            return;
        }
        let Some(s) = subs.as_mut() else {
            if op.names.is_empty() {
                confirm(out, resp3, word, None, 0);
            }
            for name in &op.names {
                confirm(out, resp3, word, Some(name), 0);
            }
            return;
        };
        let id = s.sub.feed.conn_id;
        let names = if op.names.is_empty() {
            s.set(kind).iter().cloned().collect()
        } else {
            op.names
        };
        if names.is_empty() {
            confirm(out, resp3, word, None, s.count(kind));
        }
        for name in names {
            if s.set(kind).remove(&name) {
                s.bytes -= name.len();
                match kind {
                    SubKind::Pattern => self.punsubscribe(&name, id),
                    _ => self.unsubscribe(&name, kind == SubKind::Shard, id),
                };
            }
            confirm(out, resp3, word, Some(&name), s.count(kind));
        }
        if s.is_empty() {
            *subs = None;
            self.clients.fetch_sub(1, Relaxed);
        }
    }

    /// Ends every subscription of a connection (closed, or `RESET`),
    /// without confirmations.
    pub fn drop_all(&self, subs: &mut Option<Box<Subscriptions>>) {
        let Some(s) = subs.take() else { return };
        self.clients.fetch_sub(1, Relaxed);
        let id = s.sub.feed.conn_id;
        for c in &s.channels {
            self.unsubscribe(c, false, id);
        }
        for c in &s.shard {
            self.unsubscribe(c, true, id);
        }
        for p in &s.patterns {
            self.punsubscribe(p, id);
        }
    }
}

/// Pushes the message into each of `subs`' feeds, framed (as `kind`, with
/// the matching `pattern` for `pmessage`) at most once per protocol;
/// returns how many deliveries were made.
fn deliver(
    subs: &[Subscriber],
    kind: &[u8],
    pattern: Option<&[u8]>,
    channel: &[u8],
    message: &[u8],
) -> usize {
    let mut framed: [Option<Vec<u8>>; 2] = [None, None];
    for s in subs {
        let resp3 = s.client.is_resp3();
        let bytes = framed[usize::from(resp3)].get_or_insert_with(|| {
            let mut b = Vec::new();
            frame(&mut b, resp3, kind, pattern, channel, message);
            b
        });
        s.feed.push(bytes);
    }
    subs.len()
}

/// Appends a Pub/Sub message (`kind` `message` or `pmessage`, with the
/// pattern for the latter) in RESP2 (an array) or RESP3 (a push).
pub fn frame(
    out: &mut Vec<u8>,
    resp3: bool,
    kind: &[u8],
    pattern: Option<&[u8]>,
    channel: &[u8],
    message: &[u8],
) {
    let n = 3 + usize::from(pattern.is_some());
    reply::header(out, if resp3 { b'>' } else { b'*' }, n);
    for part in [Some(kind), pattern, Some(channel), Some(message)]
        .into_iter()
        .flatten()
    {
        reply::bulk(out, part);
    }
}

/// Appends the confirmation of a (un)subscription: `kind` (`subscribe`,
/// `unsubscribe`, `psubscribe`, `punsubscribe`, `ssubscribe`,
/// `sunsubscribe`), the channel or pattern
/// (`None`: a null, for an unsubscription that had nothing to end) and
/// the connection's subscription count after it.
pub fn confirm(out: &mut Vec<u8>, resp3: bool, kind: &[u8], name: Option<&[u8]>, count: usize) {
    reply::header(out, if resp3 { b'>' } else { b'*' }, 3);
    reply::bulk(out, kind);
    match name {
        Some(n) => reply::bulk(out, n),
        None => out.extend_from_slice(reply::null(resp3)),
    }
    reply::integer(out, count as i64);
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::monitor::CountWakes;

    fn sub(id: u64, cap: usize) -> Subscriber {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let stats = crate::stats::Stats::new(1, &[]);
        Subscriber {
            feed: Arc::new(Feed::new(
                id,
                cap,
                Arc::new(CountWakes(AtomicUsize::new(0))),
            )),
            client: stats.connect(addr, std::time::Instant::now()),
        }
    }

    fn drained(s: &Subscriber) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(s.feed.drain_into(&mut out));
        out
    }

    #[test]
    fn publish_reaches_channel_and_pattern_subscribers() {
        let ps = PubSub::default();
        let (a, b) = (sub(1, 0), sub(2, 0));
        assert!(ps.subscribe(b"news", false, &a));
        assert!(!ps.subscribe(b"news", false, &a));
        assert!(ps.psubscribe(b"n*", &b));
        assert!(ps.psubscribe(b"n*", &a));
        assert_eq!((ps.channel_count(), ps.pattern_count()), (1, 1));
        assert_eq!(ps.publish(b"news", b"hi"), 3);
        assert_eq!(ps.publish(b"other", b"x"), 0);
        assert_eq!(
            drained(&a),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n\
              *4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            drained(&b),
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(ps.numsub(b"news", false), 1);
        assert_eq!(ps.channels(None, false), vec![b"news".to_vec()]);
        assert!(ps.unsubscribe(b"news", false, 1));
        assert!(!ps.unsubscribe(b"news", false, 1));
        assert!(ps.punsubscribe(b"n*", 1));
        assert!(ps.punsubscribe(b"n*", 2));
        assert_eq!((ps.channel_count(), ps.pattern_count()), (0, 0));
        assert_eq!(ps.publish(b"news", b"hi"), 0);
    }

    #[test]
    fn resp3_subscribers_get_pushes() {
        let ps = PubSub::default();
        let a = sub(1, 0);
        a.client.set_resp3(true);
        ps.subscribe(b"c", false, &a);
        ps.publish(b"c", b"m");
        assert_eq!(
            drained(&a),
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"
        );
    }

    #[test]
    fn a_full_feed_overflows() {
        let ps = PubSub::default();
        let a = sub(1, 40);
        ps.subscribe(b"c", false, &a);
        ps.publish(b"c", b"0123456789");
        ps.publish(b"c", b"0123456789");
        let mut out = Vec::new();
        assert!(!a.feed.drain_into(&mut out));
    }

    #[test]
    fn apply_tracks_a_connections_subscriptions() {
        let ps = PubSub::default();
        let mut subs = None;
        let mut out = Vec::new();
        let op = |subscribe, kind, names: &[&[u8]]| SubOp {
            subscribe,
            kind,
            names: names.iter().map(|n| n.to_vec()).collect(),
        };
        ps.apply(
            &mut subs,
            op(true, SubKind::Channel, &[b"a", b"a", b"b"]),
            || sub(7, 0),
            false,
            &mut out,
        );
        ps.apply(
            &mut subs,
            op(true, SubKind::Pattern, &[b"p*"]),
            || sub(7, 0),
            false,
            &mut out,
        );
        let s = subs.as_ref().unwrap();
        assert_eq!((s.channels(), s.patterns()), (2, 1));
        assert_eq!(ps.client_count(), 1);
        assert_eq!(ps.numsub(b"a", false), 1);
        out.clear();
        ps.apply(
            &mut subs,
            op(false, SubKind::Channel, &[b"a", b"x"]),
            || sub(7, 0),
            false,
            &mut out,
        );
        let mut want = Vec::new();
        confirm(&mut want, false, b"unsubscribe", Some(b"a"), 2);
        confirm(&mut want, false, b"unsubscribe", Some(b"x"), 2);
        assert_eq!(out, want);
        ps.drop_all(&mut subs);
        assert!(subs.is_none());
        assert_eq!(ps.client_count(), 0);
        assert_eq!((ps.channel_count(), ps.pattern_count()), (0, 0));
        out.clear();
        ps.apply(
            &mut subs,
            op(false, SubKind::Pattern, &[]),
            || sub(7, 0),
            false,
            &mut out,
        );
        assert_eq!(out, b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n");
    }

    #[test]
    fn sharded_channels_are_a_namespace_of_their_own() {
        let ps = PubSub::default();
        let mut subs = None;
        let mut out = Vec::new();
        let op = |subscribe, kind| SubOp {
            subscribe,
            kind,
            names: vec![b"c".to_vec()],
        };
        ps.apply(
            &mut subs,
            op(true, SubKind::Shard),
            || sub(3, 0),
            false,
            &mut out,
        );
        ps.apply(
            &mut subs,
            op(true, SubKind::Channel),
            || sub(3, 0),
            false,
            &mut out,
        );
        let mut want = Vec::new();
        confirm(&mut want, false, b"ssubscribe", Some(b"c"), 1);
        confirm(&mut want, false, b"subscribe", Some(b"c"), 1);
        assert_eq!(out, want);
        assert_eq!(ps.shard_channel_count(), 1);
        assert_eq!(ps.spublish(b"c", b"m"), 1);
        assert_eq!(ps.publish(b"c", b"n"), 1);
        let mut got = Vec::new();
        assert!(subs.as_ref().unwrap().sub.feed.drain_into(&mut got));
        assert_eq!(
            got,
            b"*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$1\r\nm\r\n\
              *3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nn\r\n"
        );
        ps.drop_all(&mut subs);
        assert_eq!((ps.shard_channel_count(), ps.channel_count()), (0, 0));
        assert_eq!(ps.client_count(), 0);
    }

    #[test]
    fn confirmations_are_framed_as_redis() {
        let mut out = Vec::new();
        confirm(&mut out, false, b"subscribe", Some(b"a"), 1);
        confirm(&mut out, false, b"unsubscribe", None, 0);
        confirm(&mut out, true, b"unsubscribe", None, 0);
        assert_eq!(
            out,
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
              *3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n\
              >3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
        );
    }
}
