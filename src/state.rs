//! The state shared by every thread of a node ([`Shared`]), the stop
//! signal, and the INFO section interface.
//!
//! Plain data: every field is built before the node starts a thread
//! (`node::Node::start` builds it in one step) and never replaced. The
//! subsystems that own a part of it (store, replication outbox,
//! persistence, anti-entropy) sit below this module; the threads that use
//! it (workers, replication bridge, anti-entropy scheduler, persistence
//! and housekeeping threads) sit above it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::antientropy::AntiEntropy;
use crate::auth::Auth;
use crate::clock;
use crate::config::Config;
use crate::contact::Contact;
use crate::jobs::Job;
use crate::limits::{Limits, Memory};
use crate::persist::Persist;
use crate::readonly::ReadOnly;
use crate::replication::Outbox;
use crate::stats::{Stats, rss_kb, uptime};
use crate::store::{Db, Store};
use crate::sync::lock;

/// Everything the workers and background threads share.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    pub outbox: Outbox,
    pub shutdown: StopSignal,
    /// Jobs that must not run on a worker (SYNC): consumed by the
    /// anti-entropy thread, answered through their [`crate::jobs::Responder`].
    /// Script requests for the script thread (`crate::script`).
    pub scripts: (Sender<Job>, Receiver<Job>),
    /// The script gate and counters (`crate::script`).
    pub scripting: crate::script::shared::Scripting,
    pub jobs: (Sender<Job>, Receiver<Job>),
    /// The persistent engine (`None` for an in-memory node).
    pub persist: Option<Persist>,
    /// Anti-entropy identity, statistics and cancellation.
    pub antientropy: AntiEntropy,
    /// Last contact with the cluster and the stale latch (resurrection
    /// guard, `contact.rs`).
    pub contact: Contact,
    /// The sections of INFO after the node's own lines, in order.
    pub info: &'static [&'static dyn InfoSection],
    /// Users, roles and authentication counters.
    pub auth: Auth,
    /// Client memory and output limits, used-memory accounting.
    pub memory: Memory,
    /// Settings `CONFIG SET` changes at run time (`live.rs`).
    pub live: crate::live::Live,
    /// Read-only mode (`readonly.rs`): switched at run time.
    pub read_only: ReadOnly,
    /// The slow log (`slowlog.rs`).
    pub slowlog: crate::slowlog::SlowLog,
    /// Pub/Sub subscriptions of this node's connections (`pubsub.rs`).
    pub pubsub: crate::pubsub::PubSub,
    /// Redis's data-type encoding parameters: set and reported, no
    /// effect (`typeparams.rs`).
    pub type_params: crate::typeparams::TypeParams,
    /// TLS on the client port (`None`: not configured).
    pub tls: Option<crate::server::tls::Acceptor>,
    /// TLS for connections to peers (`anti_entropy.tls`).
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS to the MQTT broker (`mqtts://`).
    pub broker_tls: Option<Arc<rustls::ClientConfig>>,
}

/// The node's loaded TLS configurations, handed to [`Shared::new`].
#[derive(Default)]
pub struct NodeTls {
    /// TLS on the client port.
    pub client_port: Option<crate::server::tls::Acceptor>,
    /// TLS for connections to peers.
    pub peers: Option<Arc<rustls::ClientConfig>>,
    /// TLS to the MQTT broker.
    pub broker: Option<Arc<rustls::ClientConfig>>,
}

impl Shared {
    /// Shared state for `config`, an already built (and recovered) store,
    /// its persistent engine, its TLS configurations, and the subsystems'
    /// INFO sections.
    pub fn new(
        config: Config,
        store: Store,
        persist: Option<Persist>,
        contact: Contact,
        tls: NodeTls,
        info: &'static [&'static dyn InfoSection],
    ) -> Shared {
        let workers = config.threads.max(1);
        let limits = Limits::from_config(&config.limits);
        let replicate = config.replication.enabled;
        let read_only = ReadOnly::new(config.read_only);
        let busy_threshold = config.scripting.busy_reply_threshold;
        Shared {
            auth: Auth::new(&config.security, &config.anti_entropy.peer_list),
            live: crate::live::Live::new(&config),
            config,
            store,
            // One more than the workers: the script thread's counters.
            stats: Stats::new(workers + 1, crate::metrics::names::NAMES.all()),
            outbox: Outbox::new(replicate),
            shutdown: StopSignal::default(),
            jobs: unbounded(),
            scripts: unbounded(),
            scripting: crate::script::shared::Scripting::new(workers, busy_threshold),
            persist,
            antientropy: AntiEntropy::new(),
            contact,
            info,
            memory: Memory::new(limits),
            read_only,
            slowlog: Default::default(),
            pubsub: Default::default(),
            type_params: Default::default(),
            tls: tls.client_port,
            peer_tls: tls.peers,
            broker_tls: tls.broker,
        }
    }

    /// Writes the INFO body (after the `INFO` line): the node's own lines,
    /// then every registered section in order. `db` is the keyspace as
    /// the caller sees it (the held shards inside `EXEC`).
    pub fn write_info(&self, db: Db<'_>, s: &mut String) {
        write_node_info(self, db, s);
        for section in self.info {
            section.write_info(self, db, s);
        }
    }

    /// The lines of RESP INFO's `# MerkleKV` section: the text INFO body
    /// without the sections that have a title of their own.
    pub fn write_info_untitled(&self, db: Db<'_>, s: &mut String) {
        write_node_info(self, db, s);
        for section in self.info.iter().filter(|i| i.title().is_none()) {
            section.write_info(self, db, s);
        }
    }

    /// The sections with a title of their own (RESP INFO), in order.
    pub fn titled_info(&self) -> impl Iterator<Item = &'static dyn InfoSection> + '_ {
        self.info.iter().copied().filter(|i| i.title().is_some())
    }
}

/// One section of INFO (`name:value\r\n` lines), provided by a subsystem.
pub trait InfoSection: Sync {
    /// The section's own title in RESP `INFO` (`# <title>`, selected by
    /// its lower-case name); `None`: its lines are part of `# MerkleKV`.
    /// The text protocol's INFO has no titles and lists every section.
    fn title(&self) -> Option<&'static str> {
        None
    }

    /// Appends this section's lines; store counters come from `db`, never
    /// from `shared.store` (inside `EXEC` that would lock a held shard).
    fn write_info(&self, shared: &Shared, db: Db<'_>, out: &mut String);
}

/// The node's own INFO lines: the five fields every node reports
/// (docs/protocol.md, INFO), then identity, shape and store counters.
fn write_node_info(shared: &Shared, db: Db<'_>, s: &mut String) {
    let up = shared.stats.started().elapsed().as_secs();
    let _ = write!(
        s,
        "version:{}\r\nuptime_seconds:{up}\r\nuptime:{}\r\nserver_time_unix:{}\r\ndb_keys:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        uptime(up),
        clock::unix_millis() / 1000,
        db.len()
    );
    let _ = write!(
        s,
        "node_id:{}\r\nthreads:{}\r\nshards:{}\r\ntree_bits:{}\r\ntombstones:{}\r\nused_memory_kb:{}\r\n",
        shared.config.node_id,
        shared.config.threads,
        db.shard_count(),
        db.shape().bits,
        db.tombstones(),
        rss_kb()
    );
    let _ = write!(s, "merkle_leaves_hashed:{}\r\n", db.leaves_hashed());
    let _ = write!(
        s,
        "expiring_keys:{}\r\nexpired_keys:{}\r\nstore_lock_contended:{}\r\n",
        db.expiring(),
        shared.store.expired_keys(),
        shared.store.lock_contended()
    );
    shared.read_only.write_info(s);
    shared.contact.write_info(clock::unix_millis(), s);
    write_refusals(&shared.store, s);
}

/// The clock bound and the versions it refused, per source
/// (`store/bound.rs`).
fn write_refusals(store: &crate::store::Store, s: &mut String) {
    let _ = write!(
        s,
        "max_clock_skew_ms:{}\r\nversions_refused:{}\r\n",
        store.max_clock_skew(),
        store.versions_refused()
    );
    for (source, r) in store.refusals() {
        let name: String = source
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let _ = write!(
            s,
            "versions_refused_from_{name}:count={},last_version={}.{},ahead_ms={}\r\n",
            r.count,
            r.last.millis(),
            r.last.hlc & crate::store::version::LOGICAL_MASK,
            r.ahead_ms
        );
    }
}

/// A process-wide stop signal: a flag, the workers' wakers, and channels
/// the owner of the node and the background threads wait on.
#[derive(Default)]
pub struct StopSignal {
    flag: AtomicBool,
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    waiters: Mutex<Vec<Sender<()>>>,
}

impl StopSignal {
    /// True once shutdown was requested.
    #[inline]
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Requests shutdown: every worker is woken and every waiter notified.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        for w in lock(&self.wakers).iter() {
            let _ = w.wake();
        }
        for waiter in lock(&self.waiters).iter() {
            let _ = waiter.try_send(());
        }
    }

    /// Registers a worker's waker.
    pub fn add_waker(&self, w: Arc<mio::Waker>) {
        lock(&self.wakers).push(w);
        if self.is_triggered() {
            self.trigger();
        }
    }

    /// A channel that receives a message when shutdown is triggered.
    pub fn subscribe(&self) -> Receiver<()> {
        let (notify, rx) = crossbeam_channel::bounded(1);
        if self.is_triggered() {
            let _ = notify.try_send(());
        }
        lock(&self.waiters).push(notify);
        rx
    }
}
