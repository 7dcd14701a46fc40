//! Resolving the layers into a [`Config`]: built-in defaults, then the
//! file, then the environment (each stored through the settings table as
//! it is read), then the command-line [`Overrides`], then the derived
//! defaults.
//!
//! Derived defaults are computed only after all layers are applied: the
//! node id defaults to `<hostname>-<port>` with the *final* port, the MQTT
//! client id to the final node id, the MQTT user name (when a password is
//! set but no user name) to the final client id, the worker count to
//! the number of cores, and the client buffer budget to a quarter of the
//! final `maxmemory` (1 GiB when unlimited).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::settings::{Initial, SETTINGS};
use super::types::{
    AntiEntropyConfig, Config, Engine, FsyncPolicy, LimitsConfig, LogFormat, LoggingConfig,
    MAX_THREADS, MetricsConfig, Overrides, ReplicationConfig, ScriptingConfig, SecurityConfig,
    TlsConfig,
};
use super::values::{Val, from_text};

/// The configuration being built, and which settings a layer has given.
pub struct Layers {
    config: Config,
    given: Vec<bool>,
}

impl Layers {
    /// Every setting at its built-in default.
    pub fn new() -> Self {
        let mut config = blank();
        for s in SETTINGS {
            if let Initial::Value(text) = s.initial
                && let Ok(v) = from_text(s.kind, text)
            {
                (s.apply)(&mut config, v);
            }
        }
        Layers {
            config,
            given: vec![false; SETTINGS.len()],
        }
    }

    /// Stores `value` for the setting at `index` of [`SETTINGS`].
    pub fn set(&mut self, index: usize, value: Val) {
        if let Some(s) = SETTINGS.get(index) {
            (s.apply)(&mut self.config, value);
            self.given[index] = true;
        }
    }

    /// Stores `value` for the setting named `name`.
    pub fn set_named(&mut self, name: &str, value: Val) {
        if let Some(i) = index(name) {
            self.set(i, value);
        }
    }

    fn given(&self, name: &str) -> bool {
        index(name).is_some_and(|i| self.given[i])
    }

    /// Applies the command-line overrides and the derived defaults.
    pub fn finish(self, o: &Overrides) -> Config {
        let threads_given = self.given("network.threads");
        let node_id_given = self.given("node_id");
        let client_id_given = self.given("mqtt.client_id");
        let username_given = self.given("mqtt.username");
        let clients_budget_given = self.given("limits.maxmemory_clients");
        let mut c = self.config;
        if let Some(port) = o.port {
            c.port = port;
        }
        if let Some(host) = &o.host {
            c.host.clone_from(host);
        }
        if let Some(engine) = o.engine {
            c.engine = engine;
        }
        if let Some(path) = &o.storage_path {
            c.storage_path.clone_from(path);
        }
        if let Some(pw) = &o.requirepass {
            c.security.requirepass = Some(pw.clone());
        }
        if let Some(b) = &o.metrics_bind {
            c.metrics.bind = Some(b.clone());
        }
        c.read_only |= o.read_only;
        c.threads = match o.threads {
            Some(t) => t,
            None if threads_given => c.threads,
            None => default_threads(),
        }
        .clamp(1, MAX_THREADS);
        match &o.node_id {
            Some(id) => c.node_id.clone_from(id),
            None if node_id_given => {}
            None => c.node_id = default_node_id(c.port),
        }
        if !client_id_given {
            c.replication.client_id.clone_from(&c.node_id);
        }
        // MQTT 3.1.1 sends a password only with a user name; 1.x uses the
        // client id.
        if !username_given && c.replication.password.is_some() {
            c.replication.username = Some(c.replication.client_id.clone());
        }
        if !clients_budget_given {
            c.limits.maxmemory_clients = default_clients_budget(c.limits.maxmemory);
        }
        c
    }
}

fn index(name: &str) -> Option<usize> {
    SETTINGS.iter().position(|s| s.name == name)
}

/// Placeholders, each overwritten by its setting's default or derived
/// default. (The compiler asks for a line here when `Config` gains a field.)
fn blank() -> Config {
    Config {
        node_id: String::new(),
        host: String::new(),
        advertise_address: None,
        read_only: false,
        forget_offline_after: Duration::ZERO,
        port: 0,
        threads: 1,
        shards: 1,
        max_connections: 0,
        connection_timeout: None,
        text_protocol: true,
        busy_poll_us: 0,
        engine: Engine::Memory,
        storage_path: PathBuf::new(),
        fsync: FsyncPolicy::EverySec,
        snapshot_interval: Duration::ZERO,
        tombstone_ttl: Duration::ZERO,
        max_clock_skew: Duration::ZERO,
        tree_bits: 0,
        replication: ReplicationConfig {
            enabled: false,
            broker_host: String::new(),
            broker_port: 0,
            topic_prefix: String::new(),
            client_id: String::new(),
            username: None,
            password: None,
            keep_alive: Duration::ZERO,
            clean_session: false,
            qos: 0,
            peer_list: Vec::new(),
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            cluster_keys: Vec::new(),
            cluster_key_file: None,
        },
        anti_entropy: AntiEntropyConfig {
            enabled: false,
            interval: Duration::ZERO,
            max_concurrent_syncs: 0,
            peer_list: Vec::new(),
            tls: false,
            ca_file: None,
            username: None,
            password: None,
        },
        logging: LoggingConfig {
            level: String::new(),
            format: LogFormat::Text,
            file_path: None,
        },
        tls: TlsConfig::default(),
        security: SecurityConfig {
            requirepass: None,
            requirepass_file: None,
            users: Vec::new(),
            protected_mode: true,
            max_auth_failures: 0,
            auth_failure_delay: Duration::ZERO,
        },
        limits: LimitsConfig {
            maxmemory: 0,
            maxmemory_clients: 0,
            output_hard: 0,
            output_soft: 0,
            output_soft_time: Duration::ZERO,
            proto_max_bulk_len: 0,
            heap_trim_threshold: 0,
        },
        metrics: MetricsConfig {
            bind: None,
            latency_tracking: false,
        },
        scripting: ScriptingConfig {
            enabled: false,
            busy_reply_threshold: Duration::ZERO,
            max_memory: 0,
        },
    }
}

/// `limits.maxmemory_clients` when not given: a quarter of `maxmemory`
/// (at least 1 MiB, the setting's minimum), or 1 GiB when `maxmemory` is
/// unlimited.
pub fn default_clients_budget(maxmemory: u64) -> u64 {
    if maxmemory == 0 {
        1 << 30
    } else {
        (maxmemory / 4).max(1 << 20)
    }
}

/// The default node id: `<hostname>-<port>`.
///
/// With port 0 (an ephemeral port, chosen by the OS after binding) the port
/// does not identify the node, so the id becomes `<hostname>-0-<pid>-<n>`,
/// unique per process and call: several test nodes in one process must not
/// share an id, or each would drop the others' events as its own.
pub fn default_node_id(port: u16) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let host = hostname();
    if port == 0 {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        format!("{host}-0-{}-{n}", std::process::id())
    } else {
        format!("{host}-{port}")
    }
}

/// The machine's host name from `/proc/sys/kernel/hostname`, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_whitespace))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Default worker count: available cores, at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS)
}

impl Default for Config {
    /// Built-in defaults: what a node runs with without file, environment or
    /// flags (docs/protocol.md §11.1).
    fn default() -> Self {
        Layers::new().finish(&Overrides::default())
    }
}
