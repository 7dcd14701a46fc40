//! The composition root: builds a node's shared state and starts its
//! threads. Nothing else lives here.
//!
//! Start order: store → persistence (recovers the store before the port
//! opens) → bind → [`Shared`] (built in one step) → workers, replication
//! bridge, housekeeping, expiry, persistence threads, anti-entropy scheduler.
//! See docs/architecture.md for the threads and the path of a write.

use std::sync::Arc;

use crate::config::{Config, Engine};
use crate::contact::Contact;
use crate::persist::Persist;
use crate::state::InfoSection;
use crate::store::{Store, StoreOptions};

pub use crate::applier::Applier;
pub use crate::state::{Shared, StopSignal};

/// The INFO sections after the node's own lines, in their order.
static INFO_SECTIONS: [&dyn InfoSection; 9] = [
    &crate::auth::info::AuthInfo,
    &crate::server::ClientLimitsInfo,
    &crate::server::BusyPollInfo,
    &crate::replication::bridge::ReplicationInfo,
    &crate::persist::threads::PersistInfo,
    &crate::antientropy::scheduler::AntiEntropyInfo,
    &crate::server::TlsInfo,
    &crate::replication::members::ClusterInfo,
    &crate::script::engine::ScriptingInfo,
];

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
    /// The TLS certificate, key or CA could not be loaded.
    Tls(crate::server::tls::TlsError),
    /// The address to announce to the cluster is unusable.
    Advertise(String),
    /// The configuration is refused (protected mode).
    Config(crate::config::ConfigError),
    /// The last-contact file could not be read or written.
    Contact(crate::contact::ContactError),
    /// The metrics listener could not be started.
    Metrics(crate::metrics::http::HttpError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Bind(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "cannot start threads: {e}"),
            StartError::Persist(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "{e}"),
            StartError::Advertise(e) => write!(f, "{e}"),
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Contact(e) => write!(f, "{e}"),
            StartError::Metrics(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Store(e) => Some(e),
            StartError::Bind(e) => Some(e),
            StartError::Io(e) => Some(e),
            StartError::Persist(e) => Some(e),
            StartError::Tls(e) => Some(e),
            StartError::Advertise(_) => None,
            StartError::Config(e) => Some(e),
            StartError::Contact(e) => Some(e),
            StartError::Metrics(e) => Some(e),
        }
    }
}

/// The TLS client configuration for peers (`anti_entropy.tls`): trusts
/// `anti_entropy.ca_file`, presents the node's own `tls.cert_file` when set.
fn peer_tls(
    config: &Config,
) -> Result<Option<Arc<rustls::ClientConfig>>, crate::server::tls::TlsError> {
    use crate::server::tls::{TlsError, client_config};
    let ae = &config.anti_entropy;
    if !ae.tls {
        return Ok(None);
    }
    let Some(ca) = &ae.ca_file else {
        return Err(TlsError::Incomplete(
            "anti_entropy.tls = true needs anti_entropy.ca_file",
        ));
    };
    let identity = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    client_config(ca, identity).map(Some)
}

/// The TLS client configuration for the MQTT broker (`mqtts://` or
/// `ssl://` address): trusts `mqtt.ca_file`, presents
/// `mqtt.client_cert_file` when set.
fn broker_tls(
    config: &Config,
) -> Result<Option<Arc<rustls::ClientConfig>>, crate::server::tls::TlsError> {
    use crate::server::tls::{TlsError, client_config};
    let r = &config.replication;
    if !r.tls {
        return Ok(None);
    }
    let Some(ca) = &r.ca_file else {
        return Err(TlsError::Incomplete(
            "an mqtts:// broker address needs mqtt.ca_file",
        ));
    };
    let identity = match (&r.client_cert_file, &r.client_key_file) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => {
            return Err(TlsError::Incomplete(
                "mqtt.client_cert_file and mqtt.client_key_file must be given together",
            ));
        }
    };
    client_config(ca, identity).map(Some)
}

/// A running node: its address, shared state and threads.
pub struct Node {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    metrics_addr: Option<std::net::SocketAddr>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Checks `config` as far as that is possible without starting
    /// (`--check-config`): protected mode, the store's shape, the TLS
    /// files, the address announced to the cluster. Binding the port,
    /// opening the data directory and reaching the broker or peers are
    /// not tried.
    pub fn check(config: &Config) -> Result<(), StartError> {
        crate::config::secrets::check_protected(config).map_err(StartError::Config)?;
        let store = Store::new(store_options(config)).map_err(StartError::Store)?;
        crate::server::tls::Acceptor::load(&config.tls).map_err(StartError::Tls)?;
        peer_tls(config).map_err(StartError::Tls)?;
        broker_tls(config).map_err(StartError::Tls)?;
        // Port 0 (ephemeral) is only known once bound; any port checks the host.
        presence(config, &store, config.port.max(1)).map_err(StartError::Advertise)?;
        Ok(())
    }

    /// Starts a node: builds the store, recovers it from `storage_path`
    /// (persistent engine), binds the client port, and starts the workers
    /// and background threads. Returns once the port accepts connections.
    pub fn start(config: Config) -> Result<Node, StartError> {
        crate::config::secrets::check_protected(&config).map_err(StartError::Config)?;
        // The metrics listener opens first: /health and /ready answer
        // while the store is recovered (metrics::http).
        let metrics = match &config.metrics.bind {
            Some(bind) => Some(crate::metrics::http::start(bind).map_err(StartError::Metrics)?),
            None => None,
        };
        match Self::build(config) {
            Ok(mut node) => {
                if let Some(m) = metrics {
                    m.gate.serve(&node.shared).map_err(StartError::Io)?;
                    node.metrics_addr = Some(m.addr);
                    node.threads.push(m.thread);
                }
                Ok(node)
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.gate.stop();
                    let _ = m.thread.join();
                }
                Err(e)
            }
        }
    }

    /// [`Node::start`] after the metrics listener.
    fn build(config: Config) -> Result<Node, StartError> {
        let store = Store::new(store_options(&config)).map_err(StartError::Store)?;
        // Before recovery, which applies the bound to replayed records.
        store.set_max_clock_skew(config.max_clock_skew.as_millis() as u64);
        let persist = match config.engine {
            Engine::Persistent => {
                Some(Persist::open(&config, &store).map_err(StartError::Persist)?)
            }
            Engine::Memory => None,
        };
        let tls = crate::server::tls::Acceptor::load(&config.tls).map_err(StartError::Tls)?;
        let peer_tls = peer_tls(&config).map_err(StartError::Tls)?;
        let broker_tls = broker_tls(&config).map_err(StartError::Tls)?;
        let (listeners, addr) = crate::server::bind(&config.host, config.port, config.threads)
            .map_err(StartError::Bind)?;
        let presence = presence(&config, &store, addr.port()).map_err(StartError::Advertise)?;
        let member = config.replication.enabled
            || (config.anti_entropy.enabled && !config.anti_entropy.peer_list.is_empty());
        let contact = Contact::open(
            member,
            config.tombstone_ttl.as_millis() as u64,
            persist.as_ref().map(|_| config.storage_path.as_path()),
            crate::clock::unix_millis(),
        )
        .map_err(StartError::Contact)?;
        let tls = crate::state::NodeTls {
            client_port: tls,
            peers: peer_tls,
            broker: broker_tls,
        };
        let shared = Arc::new(Shared::new(
            config,
            store,
            persist,
            contact,
            tls,
            &INFO_SECTIONS,
        ));
        if let Some(p) = presence {
            shared.outbox.members.set_own(p);
        }
        let mut threads =
            crate::server::spawn_workers(&shared, listeners).map_err(StartError::Io)?;
        threads.extend(crate::replication::spawn(&shared).map_err(StartError::Io)?);
        threads.push(crate::housekeeping::spawn(shared.clone()).map_err(StartError::Io)?);
        threads.push(crate::expirer::spawn(shared.clone()).map_err(StartError::Io)?);
        threads.push(crate::script::engine::spawn(shared.clone()).map_err(StartError::Io)?);
        threads.extend(crate::persist::threads::spawn(&shared).map_err(StartError::Io)?);
        threads.push(crate::antientropy::scheduler::spawn(shared.clone()).map_err(StartError::Io)?);
        log::info!("Server listening on {addr}");
        Ok(Node {
            shared,
            addr,
            metrics_addr: None,
            threads,
        })
    }

    /// The bound client address (the real port when 0 was configured).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The bound metrics listener address (`metrics.bind`), if any.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until shutdown is requested (SHUTDOWN, a signal, or
    /// [`StopSignal::trigger`]), then stops every thread.
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
/// process must exit within 1 s of SIGINT/SIGTERM, docs/protocol.md §7).
/// This node's presence for the member table (docs/protocol.md §9.5):
/// `None` when the address to announce is unspecified (0.0.0.0, ::) and
/// replication is off; an error naming the setting when it is on.
fn presence(
    config: &Config,
    store: &Store,
    port: u16,
) -> Result<Option<crate::replication::members::Presence>, String> {
    let (host, port) = match &config.advertise_address {
        Some(a) => crate::config::parse_host_port(a).ok_or_else(|| {
            format!("advertise_address: expected host:port with a port in 1..=65535, got {a:?}")
        })?,
        None => (config.host.clone(), port),
    };
    let unspecified = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if unspecified {
        if config.replication.enabled {
            return Err(format!(
                "advertise_address: refusing to announce the unspecified address {host} to the \
                 cluster; set advertise_address (MERKLE_KV_ADVERTISE_ADDRESS) to an address \
                 other nodes can reach"
            ));
        }
        return Ok(None);
    }
    Ok(Some(crate::replication::members::Presence {
        format: crate::replication::members::PRESENCE_FORMAT,
        node_id: config.node_id.clone(),
        address: crate::config::values::join_host_port(&host, port),
        version: env!("CARGO_PKG_VERSION").to_string(),
        wire_version: crate::protocol::internal::WIRE_VERSION,
        tree_bits: store.shape().bits,
        fanout_bits: crate::store::merkle::FANOUT_BITS,
        started_ms: crate::clock::unix_millis(),
        status: "online".to_string(),
    }))
}

const PERSIST_SHUTDOWN_BUDGET: std::time::Duration = std::time::Duration::from_millis(600);

/// The store's shape and identity, as the configuration gives them.
fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        shards: config.shards,
        tree_bits: config.tree_bits,
        node_id: config.node_id.clone(),
        tombstone_ttl_ms: config.tombstone_ttl.as_millis() as u64,
    }
}
