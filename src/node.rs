//! The state shared by every thread of a node, and the shutdown signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::config::Config;
use crate::exec::Job;
use crate::replication::Outbox;
use crate::stats::Stats;
use crate::store::Store;

/// Everything the workers and background threads share.
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    pub outbox: Outbox,
    pub shutdown: Shutdown,
    /// Unix seconds at start.
    pub started_unix: u64,
    /// Jobs that must not run on a worker (SYNC): consumed by the
    /// anti-entropy thread, answered through their [`crate::exec::Responder`].
    pub jobs: (Sender<Job>, Receiver<Job>),
}

impl Shared {
    /// Shared state for `config` and an already built store.
    pub fn new(config: Config, store: Store) -> Shared {
        let workers = config.threads.max(1);
        let replicate = config.replication.enabled;
        Shared {
            config,
            store,
            stats: Stats::new(workers),
            outbox: Outbox::new(replicate),
            shutdown: Shutdown::default(),
            started_unix: crate::stats::unix_now(),
            jobs: unbounded(),
        }
    }
}

/// A process-wide stop signal: a flag, the workers' wakers, and a channel
/// the owner of the node waits on.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    waiters: Mutex<Vec<Sender<()>>>,
}

impl Shutdown {
    /// True once shutdown was requested.
    #[inline]
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Requests shutdown: every worker is woken and every waiter notified.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        for w in self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = w.wake();
        }
        for tx in self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = tx.try_send(());
        }
    }

    /// Registers a worker's waker.
    pub fn add_waker(&self, w: Arc<mio::Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(w);
        if self.is_triggered() {
            self.trigger();
        }
    }

    /// A channel that receives a message when shutdown is triggered.
    pub fn subscribe(&self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.is_triggered() {
            let _ = tx.try_send(());
        }
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }
}

/// Errors starting a node.
#[derive(Debug)]
pub enum StartError {
    /// Invalid store parameters.
    Store(crate::store::StoreError),
    /// The client port could not be bound.
    Bind(crate::server::BindError),
    /// Threads could not be created.
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Bind(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "cannot start threads: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running node: its address, shared state and threads.
pub struct Node {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Starts a node: builds the store, binds the client port, and starts
    /// the workers and background threads. Returns once the port accepts
    /// connections.
    pub fn start(config: Config) -> Result<Node, StartError> {
        let store = Store::new(crate::store::StoreOptions {
            shards: config.shards,
            tree_bits: config.tree_bits,
            node_id: config.node_id.clone(),
            tombstone_ttl_ms: config.tombstone_ttl.as_millis() as u64,
        })
        .map_err(StartError::Store)?;
        let (listeners, addr) = crate::server::bind(&config.host, config.port, config.threads)
            .map_err(StartError::Bind)?;
        let shared = Arc::new(Shared::new(config, store));
        let mut threads =
            crate::server::spawn_workers(&shared, listeners).map_err(StartError::Io)?;
        threads.extend(crate::replication::spawn(&shared).map_err(StartError::Io)?);
        threads.push(spawn_housekeeping(shared.clone()).map_err(StartError::Io)?);
        log::info!("Server listening on {addr}");
        Ok(Node {
            shared,
            addr,
            threads,
        })
    }

    /// The bound client address (the real port when 0 was configured).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until shutdown is requested (SHUTDOWN, a signal, or
    /// [`Shutdown::trigger`]), then stops every thread.
    pub fn wait(self) {
        let rx = self.shared.shutdown.subscribe();
        let _ = rx.recv();
        self.join();
    }

    /// Requests shutdown and waits for every thread to stop.
    pub fn shutdown(self) {
        self.shared.shutdown.trigger();
        self.join();
    }

    fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        log::info!("node stopped");
    }
}

/// Background maintenance: tombstone collection.
fn spawn_housekeeping(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stop = shared.shutdown.subscribe();
    let ttl = shared.config.tombstone_ttl;
    let period = (ttl / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    std::thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || {
            while stop.recv_timeout(period).is_err() {
                let (n, _) = shared.store.collect_tombstones(crate::store::now_millis());
                if n > 0 {
                    log::debug!("collected {n} tombstones");
                }
            }
        })
}

/// A background thread's funnel for writes received from peers
/// (replication events, anti-entropy repairs): last-writer-wins apply,
/// plus everything an applied write must also reach (persistence).
/// Each applying thread owns one.
pub struct Applier {
    shared: Arc<Shared>,
}

impl Applier {
    /// An applier for one thread (`name` identifies it, e.g. in logs).
    pub fn new(shared: Arc<Shared>, _name: &str) -> Applier {
        Applier { shared }
    }

    /// Applies a remote write with LWW. Remote writes are never re-published.
    pub fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: crate::store::Version,
    ) -> crate::store::Applied {
        self.shared.store.apply(key, value, version)
    }

    /// The shared node state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
