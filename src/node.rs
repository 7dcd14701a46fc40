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
    /// The persistent engine (`None` for an in-memory node).
    pub persist: Option<crate::persist::Persist>,
    /// Anti-entropy identity, statistics and cancellation.
    pub antientropy: crate::antientropy::AntiEntropy,
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
            persist: None,
            antientropy: crate::antientropy::AntiEntropy::new(),
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
    /// The persistent engine could not be opened or recovered.
    Persist(crate::persist::PersistError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Bind(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "cannot start threads: {e}"),
            StartError::Persist(e) => write!(f, "{e}"),
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
    /// Starts a node: builds the store, recovers it from `storage_path`
    /// (persistent engine), binds the client port, and starts the workers
    /// and background threads. Returns once the port accepts connections.
    pub fn start(config: Config) -> Result<Node, StartError> {
        let store = Store::new(crate::store::StoreOptions {
            shards: config.shards,
            tree_bits: config.tree_bits,
            node_id: config.node_id.clone(),
            tombstone_ttl_ms: config.tombstone_ttl.as_millis() as u64,
        })
        .map_err(StartError::Store)?;
        let persist = match config.engine {
            crate::config::Engine::Persistent => {
                Some(crate::persist::Persist::open(&config, &store).map_err(StartError::Persist)?)
            }
            crate::config::Engine::Memory => None,
        };
        let (listeners, addr) = crate::server::bind(&config.host, config.port, config.threads)
            .map_err(StartError::Bind)?;
        let mut shared = Shared::new(config, store);
        shared.persist = persist;
        let shared = Arc::new(shared);
        let mut threads =
            crate::server::spawn_workers(&shared, listeners).map_err(StartError::Io)?;
        threads.extend(crate::replication::spawn(&shared).map_err(StartError::Io)?);
        threads.push(spawn_housekeeping(shared.clone()).map_err(StartError::Io)?);
        threads.extend(crate::persist::Persist::spawn(&shared).map_err(StartError::Io)?);
        threads.push(crate::antientropy::spawn(shared.clone()).map_err(StartError::Io)?);
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
        self.join(std::time::Instant::now());
    }

    /// Requests shutdown and waits for every thread to stop.
    pub fn shutdown(self) {
        let requested = std::time::Instant::now();
        self.shared.shutdown.trigger();
        self.join(requested);
    }

    /// Joins every thread, then flushes persistence within the shutdown
    /// budget counted from `requested`.
    fn join(self, requested: std::time::Instant) {
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(p) = &self.shared.persist {
            p.shutdown(&self.shared.store, requested + PERSIST_SHUTDOWN_BUDGET);
        }
        log::info!("node stopped");
    }
}

/// Time from a shutdown request by which persistence must be done (the
/// process must exit within 1 s of SIGINT/SIGTERM, PROTOCOL.md §7).
const PERSIST_SHUTDOWN_BUDGET: std::time::Duration = std::time::Duration::from_millis(600);

/// How often the housekeeping thread rehashes stale Merkle leaves, so that
/// tree reads (HASH, anti-entropy) find little to do and hold each shard
/// lock only briefly (see `store/mod.rs`, "Lazy leaf digests").
const DIGEST_REFRESH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// Sleep between two refresh chunks of the background refresher.
const REFRESH_PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// Background maintenance: Merkle leaf refresh (every
/// [`DIGEST_REFRESH_PERIOD`]) and tombstone collection.
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
            lower_priority();
            let mut next_gc = std::time::Instant::now() + period;
            while stop.recv_timeout(DIGEST_REFRESH_PERIOD).is_err() {
                // Chunks of ≤ 256 records (~0.1-0.2 ms of work), each
                // followed by a short sleep: one long burst per tick
                // measurably raised the workers' p99 on a busy machine.
                shared.store.refresh_digests_paced(|| {
                    std::thread::sleep(REFRESH_PAUSE);
                    !shared.shutdown.is_triggered()
                });
                if std::time::Instant::now() >= next_gc {
                    let (n, _) = shared.store.collect_tombstones(crate::store::now_millis());
                    if n > 0 {
                        log::debug!("collected {n} tombstones");
                    }
                    next_gc = std::time::Instant::now() + period;
                }
            }
        })
}

/// Lowers the calling thread's priority to nice [`HOUSEKEEPING_NICE`], so
/// that background digest refresh and tombstone collection yield the CPU
/// to the workers when both want it.
///
/// Not `SCHED_IDLE`: that was tried and measured. The housekeeping thread
/// holds a shard lock (briefly) and a shard's refresh mutex (while hashing
/// a chunk), which tree readers (HASH, anti-entropy) and writers wait for.
/// An idle-class thread on a saturated machine gets almost no CPU while
/// holding them, so a worker waited for seconds on it (priority inversion;
/// a HASH took over 10 s with both cores busy). At nice 10 the thread still
/// gets about a tenth of a contended core, which bounds such a wait to a
/// few times the ~1 ms a chunk takes.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; `gettid` cannot fail
    // and `setpriority` on our own thread id only affects this thread.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, HOUSEKEEPING_NICE)
    };
    if rc != 0 {
        log::debug!(
            "housekeeping: cannot lower priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Nice value of the housekeeping thread (see [`lower_priority`]).
const HOUSEKEEPING_NICE: libc::c_int = 10;

/// A background thread's funnel for writes received from peers
/// (replication events, anti-entropy repairs): last-writer-wins apply,
/// plus everything an applied write must also reach (persistence).
/// Each applying thread owns one.
pub struct Applier {
    shared: Arc<Shared>,
    /// This thread's log segment (persistent engine only).
    log: Option<crate::persist::LogWriter>,
    /// A `replace_if`/`remove_if` changed the store since the last commit.
    forced: bool,
}

impl Applier {
    /// An applier for one thread (`name` identifies it, e.g. in logs and
    /// in its log segment's file name).
    pub fn new(shared: Arc<Shared>, name: &str) -> Applier {
        let log = shared.persist.as_ref().map(|p| p.applier_writer(name));
        Applier {
            shared,
            log,
            forced: false,
        }
    }

    /// Applies a remote write with LWW. Remote writes are never re-published.
    /// A stored write is appended to this thread's log.
    pub fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: crate::store::Version,
    ) -> crate::store::Applied {
        let Some(log) = &self.log else {
            return self.shared.store.apply(key, value, version);
        };
        let (applied, stamp) = self.shared.store.apply_stamped(key, value, version);
        if applied == crate::store::Applied::Stored {
            log.append(key, value, version, stamp);
        }
        applied
    }

    /// Ends a batch of applies: writes this thread's log buffer and, with
    /// `fsync = always`, makes it durable. Call it after each received
    /// batch / repair round (before answering SYNC); without it the
    /// background flusher writes and fsyncs within a second.
    ///
    /// After forced changes (`SYNC --full`), which last-writer-wins replay
    /// of a log cannot reproduce (older versions stored, records removed
    /// without tombstones), a snapshot is written before this returns.
    pub fn commit(&mut self) {
        if let Some(log) = &self.log {
            log.commit();
        }
        if std::mem::take(&mut self.forced)
            && let Some(p) = &self.shared.persist
        {
            let shutdown = &self.shared.shutdown;
            if let Err(e) = p.snapshot(&self.shared.store, &|| shutdown.is_triggered()) {
                log::warn!("snapshot after SYNC --full failed: {e}");
            }
        }
    }

    /// `SYNC --full`: stores exactly this record (even an older version) if
    /// the local record is still `expected` ([`crate::store::Store::replace_if`]).
    pub fn replace_if(
        &mut self,
        key: &[u8],
        expected: Option<crate::store::Version>,
        value: Option<&[u8]>,
        version: crate::store::Version,
    ) -> bool {
        let done = self.shared.store.replace_if(key, expected, value, version);
        self.forced |= done;
        done
    }

    /// `SYNC --full`: drops a local-only record outright (no tombstone) if
    /// it is still `expected` ([`crate::store::Store::remove_if`]).
    pub fn remove_if(&mut self, key: &[u8], expected: crate::store::Version) -> bool {
        let done = self.shared.store.remove_if(key, expected);
        self.forced |= done;
        done
    }

    /// The shared node state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
