//! The resolved configuration's types: [`Config`] and its parts, the
//! layouts, the command-line overrides. Plain data; every other file of
//! `config` builds on these.

use std::path::PathBuf;
use std::time::Duration;

/// Storage engine selected by `engine` / `storage.persistence_enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `rwlock` or `kv`: in-memory only.
    Memory,
    /// `sled`, or nested `storage.persistence_enabled = true`: append-only
    /// log + snapshots under `storage_path`.
    Persistent,
}

/// When the append-only log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Reply only after the record is durable (group commit per loop turn).
    Always,
    /// Fsync once per second in the background.
    EverySec,
    /// Leave it to the OS.
    No,
}

/// Fully resolved node configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Node id: origin of change events and Merkle versions.
    pub node_id: String,
    /// Bind address (host name or IP).
    pub host: String,
    /// `host:port` announced to the cluster for anti-entropy; `None` = the
    /// bind address and port (see [`Config::advertised`]).
    pub advertise_address: Option<String>,
    /// Start in read-only mode: client writes are refused, replicated
    /// and anti-entropy writes still apply (`crate::readonly`).
    pub read_only: bool,
    /// Offline members are dropped from the member table after this long
    /// (`cluster.forget_offline_after_seconds`); zero = never.
    pub forget_offline_after: Duration,
    /// Client port; 0 asks the OS for an ephemeral port (tests).
    pub port: u16,
    /// Worker threads (event loops); default: available cores.
    pub threads: usize,
    /// Microseconds a worker keeps polling without sleeping after it last
    /// found an event; 0 (default): it sleeps in `epoll_wait` at once.
    pub busy_poll_us: u64,
    /// Store shards, a power of two; default 64.
    pub shards: usize,
    /// Maximum simultaneous client connections; default 10000.
    pub max_connections: usize,
    /// Close connections idle for longer than this; `None` = never (default).
    pub connection_timeout: Option<Duration>,
    /// A connection whose first byte is not `*` speaks the text protocol
    /// (default). Off: every connection is RESP, and a line not starting
    /// with `*` is a Redis inline command answered in RESP.
    pub text_protocol: bool,
    /// Storage engine.
    pub engine: Engine,
    /// Directory of the persistent engine.
    pub storage_path: PathBuf,
    /// Persistence fsync policy; default `EverySec`.
    pub fsync: FsyncPolicy,
    /// Interval between snapshots of the persistent engine; default 300 s.
    pub snapshot_interval: Duration,
    /// How long tombstones are kept before they are collected; default 24 h.
    pub tombstone_ttl: Duration,
    /// How far ahead of the local wall clock a received (or replayed)
    /// version may be; default 60 s (`store::version::check_remote`).
    pub max_clock_skew: Duration,
    /// Merkle tree depth: 2^tree_bits leaf buckets; default 16; multiple of 4
    /// in 4..=24 (fan-out 16). Must be equal on every node of a cluster.
    pub tree_bits: u32,
    /// MQTT replication settings.
    pub replication: ReplicationConfig,
    /// Anti-entropy settings.
    pub anti_entropy: AntiEntropyConfig,
    /// Logging settings.
    pub logging: LoggingConfig,
    /// TLS on the client port.
    pub tls: TlsConfig,
    /// Users, passwords and protected mode (docs/protocol.md, Security).
    pub security: SecurityConfig,
    /// Client memory and output limits.
    pub limits: LimitsConfig,
    /// Command statistics and the metrics endpoint.
    pub metrics: MetricsConfig,
    /// Lua scripting (`EVAL`, `FCALL`; docs/protocol.md §15.4).
    pub scripting: ScriptingConfig,
}

/// Lua scripting limits (docs/protocol.md §15.4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptingConfig {
    /// Serve `EVAL`/`FCALL`/`SCRIPT`/`FUNCTION`; default on.
    pub enabled: bool,
    /// Run time after which other clients get `-BUSY` (Redis's
    /// `busy-reply-threshold`); default 5 s.
    pub busy_reply_threshold: Duration,
    /// Lua heap limit, and separately the limit on cached script and
    /// library source bytes; default 64 MiB.
    pub max_memory: usize,
}

/// Command statistics and the metrics endpoint (docs/protocol.md, INFO
/// `latencystats` and "Metrics endpoint").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsConfig {
    /// `host:port` of the HTTP metrics listener; `None`: off (default).
    pub bind: Option<String>,
    /// Time every command (INFO `usec`, `latencystats`, the latency
    /// histograms); default on.
    pub latency_tracking: bool,
}

/// TLS on the client port (docs/protocol.md, "TLS").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    /// PEM certificate chain of the node (TLS is on when given with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM CA: clients must present a certificate it signed (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Refuse plaintext connections.
    pub required: bool,
}

/// A user's role: which classes of commands it may run (`crate::auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads, introspection and connection commands.
    ReadOnly,
    /// Reads plus data writes.
    ReadWrite,
    /// Everything, including SHUTDOWN, FLUSHDB, SYNC, REPLICATE, `MKV.*`.
    Admin,
}

impl Role {
    /// The names used in the file, in variant order.
    pub const NAMES: [&'static str; 3] = ["readonly", "readwrite", "admin"];

    /// The role named `name` (one of [`Role::NAMES`]).
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "readonly" => Some(Role::ReadOnly),
            "readwrite" => Some(Role::ReadWrite),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "readonly",
            Role::ReadWrite => "readwrite",
            Role::Admin => "admin",
        }
    }
}

/// One `[[security.users]]` entry. Only the password's SHA-256 is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    /// SHA-256 of the password (`password` is hashed when read).
    pub password_sha256: [u8; 32],
    pub role: Role,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or its hash.
        write!(f, "UserConfig({}, {})", self.name, self.role.name())
    }
}

/// `[security]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// Password of the built-in user `default` (role admin); after
    /// loading, the first line of `requirepass_file` when that is given.
    pub requirepass: Option<String>,
    /// File holding the default user's password (first line).
    pub requirepass_file: Option<PathBuf>,
    /// Further users.
    pub users: Vec<UserConfig>,
    /// Refuse to start on a non-loopback address without a password.
    pub protected_mode: bool,
    /// Failed AUTH attempts after which a connection is closed.
    pub max_auth_failures: usize,
    /// How long a connection's reply to a failed AUTH (and everything
    /// after it) is held back; zero: not at all.
    pub auth_failure_delay: Duration,
}

impl SecurityConfig {
    /// True when clients must authenticate.
    pub fn enabled(&self) -> bool {
        self.requirepass.is_some() || !self.users.is_empty()
    }
}

/// Client memory and output limits (docs/protocol.md §17); 0 = none,
/// except `maxmemory_clients`, which is always set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Used memory above which client writes are refused; default 0.
    pub maxmemory: u64,
    /// Budget of all client buffers; default a quarter of `maxmemory`, or
    /// 1 GiB when `maxmemory` is 0.
    pub maxmemory_clients: u64,
    /// Hard limit on a connection's pending output; default 256 MiB.
    pub output_hard: usize,
    /// Soft limit on a connection's pending output; default 64 MiB …
    pub output_soft: usize,
    /// … for at most this long; default 60 s.
    pub output_soft_time: Duration,
    /// Largest RESP bulk string (key, value or argument) a client may send
    /// (Redis's `proto-max-bulk-len`); default and at most the store's
    /// value limit, 8 MiB.
    pub proto_max_bulk_len: usize,
    /// Fall of the used-memory estimate below its peak that makes the
    /// housekeeping thread return free heap memory (`heap.rs`); 0: never;
    /// default 16 MiB.
    pub heap_trim_threshold: u64,
}

/// MQTT replication settings (docs/protocol.md §9, §11).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationConfig {
    /// Connect at startup.
    pub enabled: bool,
    /// Broker host name or IP (no scheme).
    pub broker_host: String,
    /// Broker port; default 1883.
    pub broker_port: u16,
    /// Topic prefix: publish `<prefix>/events`, subscribe `<prefix>/events/#`.
    pub topic_prefix: String,
    /// MQTT client id (default: node id; env `CLIENT_ID` overrides).
    pub client_id: String,
    /// MQTT user name (flat layout: the client id when a password is set).
    pub username: Option<String>,
    /// MQTT password (env `CLIENT_PASSWORD` overrides).
    pub password: Option<String>,
    /// Keep-alive interval; default 60 s.
    pub keep_alive: Duration,
    /// MQTT clean session flag; default true.
    pub clean_session: bool,
    /// Publish QoS, 0 or 1; default 1.
    pub qos: u8,
    /// `replication.peer_list` (only counted by `REPLICATE status`).
    pub peer_list: Vec<String>,
    /// Connect with TLS (`mqtts://` or `ssl://` broker address).
    pub tls: bool,
    /// PEM CA that signed the broker's certificate (TLS).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate presented to the broker (TLS, optional).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Keys that sign and verify event batches (HMAC-SHA256); the first
    /// signs. Empty: batches are neither signed nor checked.
    pub cluster_keys: Vec<String>,
    /// File with further cluster keys, one per line (read at load time,
    /// after `cluster_keys`).
    pub cluster_key_file: Option<PathBuf>,
}

/// Anti-entropy settings (docs/protocol.md §10).
#[derive(Debug, Clone, PartialEq)]
pub struct AntiEntropyConfig {
    /// Run background rounds (only when `peer_list` is non-empty).
    pub enabled: bool,
    /// Time between rounds; at least 1 s.
    pub interval: Duration,
    /// Peers synchronised at once; default 3.
    pub max_concurrent_syncs: usize,
    /// Peers as `host:port` of their client port.
    pub peer_list: Vec<String>,
    /// Connect to peers with TLS.
    pub tls: bool,
    /// PEM CA that signed the peers' certificates (TLS).
    pub ca_file: Option<PathBuf>,
    /// User name anti-entropy and SYNC authenticate with (default `default`).
    pub username: Option<String>,
    /// Password they authenticate with (default: `security.requirepass`).
    pub password: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging settings; `RUST_LOG` wins over `level` when set.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// Default level: trace|debug|info|warn|error; default "info".
    pub level: String,
    /// Output format; default text.
    pub format: LogFormat,
    /// Log to this file instead of stderr.
    pub file_path: Option<PathBuf>,
}

impl FsyncPolicy {
    /// The names used in the file and the environment, in variant order.
    pub const NAMES: [&'static str; 3] = ["always", "everysec", "no"];

    /// The policy named `name` (one of [`FsyncPolicy::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "always" => Some(FsyncPolicy::Always),
            "everysec" => Some(FsyncPolicy::EverySec),
            "no" => Some(FsyncPolicy::No),
            _ => None,
        }
    }

    /// The policy's name in the file and the environment.
    pub fn name(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

/// Upper bound for `network.busy_poll_us`: 10 ms.
pub const MAX_BUSY_POLL_US: u64 = 10_000;

/// Upper bound for `threads`.
pub const MAX_THREADS: usize = 1024;
/// Upper bound for `storage.shards`.
pub const MAX_SHARDS: usize = 4096;

/// Which layout a configuration file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 1.x layout (§11.2): top-level `host`/`port`, `[replication]`.
    Flat,
    /// Documented layout (§11.3): `node_id`, `[network]`, `[mqtt]`, ...
    Nested,
}

/// Command-line overrides: the last and strongest layer.
///
/// `crate::cli` validates these; [`load`] only clamps `threads` into
/// `1..=MAX_THREADS` so that a hand-built value cannot break the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--node-id`
    pub node_id: Option<String>,
    /// `--bind` / `--host`
    pub host: Option<String>,
    /// `--port` (0 = ephemeral port, allowed only here)
    pub port: Option<u16>,
    /// `--threads`
    pub threads: Option<usize>,
    /// `--engine`
    pub engine: Option<Engine>,
    /// `--storage-path`
    pub storage_path: Option<PathBuf>,
    /// `--requirepass`
    pub requirepass: Option<String>,
    /// `--metrics-bind`
    pub metrics_bind: Option<String>,
    /// `--read-only`
    pub read_only: bool,
}
