//! Pub/Sub: `PUBLISH` delivers a message to every connection of this node
//! subscribed to its channel (`SUBSCRIBE`) or to a pattern matching it
//! (`PSUBSCRIBE`), whichever worker owns that connection.
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

#[derive(Default)]
struct Registry {
    channels: HashMap<Vec<u8>, Vec<Subscriber>, ahash::RandomState>,
    patterns: Vec<PatternEntry>,
}

/// Every subscription of the node (see the module docs).
#[derive(Default)]
pub struct PubSub {
    reg: Mutex<Registry>,
    /// Channels and distinct patterns with at least one subscriber
    /// (INFO's `pubsub_channels`, `pubsub_patterns`).
    channels: AtomicUsize,
    patterns: AtomicUsize,
    /// Connections with at least one subscription (`pubsub_clients`).
    clients: AtomicUsize,
}

impl PubSub {
    /// Subscribes `s` to `channel`; false if it already was.
    pub fn subscribe(&self, channel: &[u8], s: &Subscriber) -> bool {
        let mut reg = lock(&self.reg);
        let subs = reg.channels.entry(channel.to_vec()).or_default();
        if subs.iter().any(|x| x.feed.conn_id == s.feed.conn_id) {
            return false;
        }
        subs.push(s.clone());
        self.channels.store(reg.channels.len(), Relaxed);
        true
    }

    /// Unsubscribes connection `conn_id` from `channel`; false if it was
    /// not subscribed.
    pub fn unsubscribe(&self, channel: &[u8], conn_id: u64) -> bool {
        let mut reg = lock(&self.reg);
        let Some(subs) = reg.channels.get_mut(channel) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|x| x.feed.conn_id != conn_id);
        let removed = subs.len() < before;
        if subs.is_empty() {
            reg.channels.remove(channel);
        }
        self.channels.store(reg.channels.len(), Relaxed);
        removed
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
        let mut n = 0;
        let mut framed: [Option<Vec<u8>>; 2] = [None, None];
        if let Some(subs) = reg.channels.get(channel) {
            for s in subs {
                let resp3 = s.client.is_resp3();
                let bytes = framed[usize::from(resp3)].get_or_insert_with(|| {
                    let mut b = Vec::new();
                    frame(&mut b, resp3, b"message", None, channel, message);
                    b
                });
                s.feed.push(bytes);
                n += 1;
            }
        }
        for e in reg.patterns.iter().filter(|e| e.pattern.matches(channel)) {
            let mut framed: [Option<Vec<u8>>; 2] = [None, None];
            for s in &e.subs {
                let resp3 = s.client.is_resp3();
                let bytes = framed[usize::from(resp3)].get_or_insert_with(|| {
                    let mut b = Vec::new();
                    frame(&mut b, resp3, b"pmessage", Some(&e.text), channel, message);
                    b
                });
                s.feed.push(bytes);
                n += 1;
            }
        }
        n
    }

    /// The channels with subscribers whose name matches `pattern` (all
    /// when `None`), in no particular order.
    pub fn channels(&self, pattern: Option<&Pattern>) -> Vec<Vec<u8>> {
        let reg = lock(&self.reg);
        reg.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| p.matches(c)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` (patterns not counted, as in Redis).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        lock(&self.reg).channels.get(channel).map_or(0, Vec::len)
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
    /// `SUBSCRIBE`/`PSUBSCRIBE` (else the `UN` forms).
    pub subscribe: bool,
    /// Patterns (`P…`) rather than channels.
    pub pattern: bool,
    /// The channels or patterns; empty for "all" (unsubscriptions only).
    pub names: Vec<Vec<u8>>,
}

/// A connection's subscriptions, owned by its worker.
pub struct Subscriptions {
    pub sub: Subscriber,
    channels: HashSet<Vec<u8>, ahash::RandomState>,
    patterns: HashSet<Vec<u8>, ahash::RandomState>,
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

    /// Heap bytes held (counted in the connection's memory).
    pub fn bytes(&self) -> usize {
        self.bytes + 32 * (self.channels.len() + self.patterns.len())
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
        let kind: &[u8] = match (op.subscribe, op.pattern) {
            (true, false) => b"subscribe",
            (true, true) => b"psubscribe",
            (false, false) => b"unsubscribe",
            (false, true) => b"punsubscribe",
        };
        if op.subscribe {
            if subs.is_none() {
                self.clients.fetch_add(1, Relaxed);
            }
            let s = subs.get_or_insert_with(|| {
                Box::new(Subscriptions {
                    sub: subscriber(),
                    channels: HashSet::default(),
                    patterns: HashSet::default(),
                    bytes: 0,
                })
            });
            for name in op.names {
                let set = if op.pattern {
                    &mut s.patterns
                } else {
                    &mut s.channels
                };
                if !set.contains(&name) {
                    if op.pattern {
                        self.psubscribe(&name, &s.sub);
                    } else {
                        self.subscribe(&name, &s.sub);
                    }
                    s.bytes += name.len();
                    set.insert(name.clone());
                }
                confirm(
                    out,
                    resp3,
                    kind,
                    Some(&name),
                    s.channels.len() + s.patterns.len(),
                );
            }
            return;
        }
        let Some(s) = subs.as_mut() else {
            if op.names.is_empty() {
                confirm(out, resp3, kind, None, 0);
            }
            for name in &op.names {
                confirm(out, resp3, kind, Some(name), 0);
            }
            return;
        };
        let id = s.sub.feed.conn_id;
        let set = if op.pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        let names = if op.names.is_empty() {
            set.iter().cloned().collect()
        } else {
            op.names
        };
        if names.is_empty() {
            confirm(out, resp3, kind, None, s.channels.len() + s.patterns.len());
        }
        for name in names {
            let set = if op.pattern {
                &mut s.patterns
            } else {
                &mut s.channels
            };
            if set.remove(&name) {
                s.bytes -= name.len();
                if op.pattern {
                    self.punsubscribe(&name, id);
                } else {
                    self.unsubscribe(&name, id);
                }
            }
            confirm(
                out,
                resp3,
                kind,
                Some(&name),
                s.channels.len() + s.patterns.len(),
            );
        }
        if s.channels.is_empty() && s.patterns.is_empty() {
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
            self.unsubscribe(c, id);
        }
        for p in &s.patterns {
            self.punsubscribe(p, id);
        }
    }
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
    out.push(if resp3 { b'>' } else { b'*' });
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in [Some(kind), pattern, Some(channel), Some(message)]
        .into_iter()
        .flatten()
    {
        out.push(b'$');
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the confirmation of a (un)subscription: `kind` (`subscribe`,
/// `unsubscribe`, `psubscribe`, `punsubscribe`), the channel or pattern
/// (`None`: a null, for an unsubscription that had nothing to end) and
/// the connection's subscription count after it.
pub fn confirm(out: &mut Vec<u8>, resp3: bool, kind: &[u8], name: Option<&[u8]>, count: usize) {
    out.extend_from_slice(if resp3 { b">3\r\n" } else { b"*3\r\n" });
    out.push(b'$');
    out.extend_from_slice(kind.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(kind);
    out.extend_from_slice(b"\r\n");
    match name {
        Some(n) => {
            out.push(b'$');
            out.extend_from_slice(n.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(n);
            out.extend_from_slice(b"\r\n");
        }
        None if resp3 => out.extend_from_slice(b"_\r\n"),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
    out.push(b':');
    out.extend_from_slice(count.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::monitor::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    fn sub(id: u64, cap: usize) -> Subscriber {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let stats = crate::stats::Stats::new(1, &[]);
        Subscriber {
            feed: Arc::new(Feed::new(id, cap, Arc::new(Count(AtomicUsize::new(0))))),
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
        assert!(ps.subscribe(b"news", &a));
        assert!(!ps.subscribe(b"news", &a));
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
        assert_eq!(ps.numsub(b"news"), 1);
        assert_eq!(ps.channels(None), vec![b"news".to_vec()]);
        assert!(ps.unsubscribe(b"news", 1));
        assert!(!ps.unsubscribe(b"news", 1));
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
        ps.subscribe(b"c", &a);
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
        ps.subscribe(b"c", &a);
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
        let op = |subscribe, pattern, names: &[&[u8]]| SubOp {
            subscribe,
            pattern,
            names: names.iter().map(|n| n.to_vec()).collect(),
        };
        ps.apply(
            &mut subs,
            op(true, false, &[b"a", b"a", b"b"]),
            || sub(7, 0),
            false,
            &mut out,
        );
        ps.apply(
            &mut subs,
            op(true, true, &[b"p*"]),
            || sub(7, 0),
            false,
            &mut out,
        );
        let s = subs.as_ref().unwrap();
        assert_eq!((s.channels(), s.patterns()), (2, 1));
        assert_eq!(ps.client_count(), 1);
        assert_eq!(ps.numsub(b"a"), 1);
        out.clear();
        ps.apply(
            &mut subs,
            op(false, false, &[b"a", b"x"]),
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
            op(false, true, &[]),
            || sub(7, 0),
            false,
            &mut out,
        );
        assert_eq!(out, b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n");
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
