//! Node configuration: the resolved [`Config`] every subsystem reads, and
//! how it is loaded (PROTOCOL.md §11).
//!
//! # Sources and precedence
//!
//! Settings are resolved in layers, each overriding the one before it:
//!
//! 1. built-in defaults (a standalone in-memory node on 127.0.0.1:7379, no
//!    broker, no peers; see [`Config::default`]);
//! 2. the TOML file, in either layout (below);
//! 3. the environment (`MERKLE_KV_*`, `CLIENT_ID`, `CLIENT_PASSWORD`),
//!    passed in as a function so tests never touch the process environment;
//! 4. command-line flags ([`Overrides`], filled by `crate::cli`).
//!
//! Derived defaults are computed only after all layers are applied: the node
//! id defaults to `<hostname>-<port>` with the *final* port, the MQTT client
//! id to the final node id, and the MQTT user name (when a password is set
//! but no user name) to the final client id.
//!
//! # Layouts
//!
//! *Flat* (what 1.x servers read, §11.2) when the file has a top-level `host`
//! or `port`; *nested* (the user documentation, §11.3) when it has `node_id`
//! or a `[network]` table; flat wins if both. A file with neither is flat if
//! it has a flat-only item (`[replication]`, `sync_interval_seconds`) and
//! nested otherwise, so an empty file means "all defaults".
//!
//! The layouts differ only where they must: the flat layout takes the host and
//! port from the top level, replication from `[replication]` (its `client_id`
//! is also the node id unless a top-level `node_id` is given), and the nested
//! layout takes replication from `[mqtt]` (its presence enables it). The
//! project's extension tables and keys (`threads`, `engine`, `storage_path`,
//! `[network]`, `[storage]`, `[anti_entropy]`, `[logging]`) are read the same
//! way in both. When a setting is given both at the top level and in its
//! table (`threads` / `network.threads`, `storage_path` /
//! `storage.storage_path`, `engine` / `storage.persistence_enabled`,
//! `host`/`port` / `network.bind_*`), the top-level key wins and a warning
//! says so.
//!
//! # Leniency and strictness
//!
//! 1.x refused a flat file with a missing "required" key; this server fills
//! in the default instead (a modern server should start from a partial file).
//! A key that *is* present must have the right type and be in range, or
//! loading fails with an error naming the file and the field. Unknown keys and
//! tables are ignored and reported as warnings in [`Loaded::warnings`]: the
//! logger is not initialised while the configuration is read, so the caller
//! logs them. Some documented keys are accepted, type-checked and unused:
//! `description`, `sync_interval_seconds`, `storage.memory_limit_mb`,
//! `storage.backup_interval_hours`, `anti_entropy.peer_discovery_interval`.
//!
//! The older documentation's defaults `max_connections = 1000`,
//! `connection_timeout = 30` and `topic_prefix = "merkle-kv"` are not applied
//! implicitly (§1): the defaults are 10000 connections, no idle timeout and
//! `merkle_kv` (the prefix 1.x tooling writes, so nodes of both layouts meet
//! on the same topic without configuration). Durations are capped at ten
//! years so that `Instant + duration` can never overflow downstream.
//!
//! The file is parsed into a `toml::Table` (via the toml crate's serde
//! support) and then walked by hand rather than deserialised into derived
//! structs: that is what gives exact field names and ranges in errors, the
//! port-as-string leniency, and warnings (not errors) for unknown keys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use toml::{Table, Value};

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
    /// Client port; 0 asks the OS for an ephemeral port (tests).
    pub port: u16,
    /// Worker threads (event loops); default: available cores.
    pub threads: usize,
    /// Store shards, a power of two; default 64.
    pub shards: usize,
    /// Maximum simultaneous client connections; default 10000.
    pub max_connections: usize,
    /// Close connections idle for longer than this; `None` = never (default).
    pub connection_timeout: Option<Duration>,
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
    /// Merkle tree depth: 2^tree_bits leaf buckets; default 16; multiple of 4
    /// in 4..=24 (fan-out 16). Must be equal on every node of a cluster.
    pub tree_bits: u32,
    /// MQTT replication settings.
    pub replication: ReplicationConfig,
    /// Anti-entropy settings.
    pub anti_entropy: AntiEntropyConfig,
    /// Logging settings.
    pub logging: LoggingConfig,
}

/// MQTT replication settings (PROTOCOL.md §9, §11).
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
}

/// Anti-entropy settings (PROTOCOL.md §10).
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

// ---------------------------------------------------------------------------
// Defaults and limits
// ---------------------------------------------------------------------------

/// Default bind address.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default client port.
pub const DEFAULT_PORT: u16 = 7379;
/// Default MQTT broker host (used only when replication gets enabled).
pub const DEFAULT_BROKER_HOST: &str = "localhost";
/// Default MQTT broker port.
pub const DEFAULT_BROKER_PORT: u16 = 1883;
/// Default MQTT topic prefix.
pub const DEFAULT_TOPIC_PREFIX: &str = "merkle_kv";
/// Default directory of the persistent engine.
pub const DEFAULT_STORAGE_PATH: &str = "data";
/// Default number of store shards.
pub const DEFAULT_SHARDS: usize = 64;
/// Default connection limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default Merkle tree depth in bits.
pub const DEFAULT_TREE_BITS: u32 = 16;
/// Upper bound for `threads`.
pub const MAX_THREADS: usize = 1024;
/// Upper bound for `storage.shards`.
pub const MAX_SHARDS: usize = 4096;

const DEFAULT_KEEP_ALIVE_SECS: u64 = 60;
const DEFAULT_QOS: u8 = 1;
const DEFAULT_AE_INTERVAL_SECS: u64 = 300;
const DEFAULT_AE_MAX_CONCURRENT: usize = 3;
const DEFAULT_SNAPSHOT_SECS: u64 = 300;
const DEFAULT_TOMBSTONE_TTL_SECS: u64 = 86_400;
const DEFAULT_LOG_LEVEL: &str = "info";
/// Ten years: the cap on every duration setting.
const MAX_SECS: i64 = 10 * 365 * 86_400;
const MAX_CONCURRENT_SYNCS: i64 = 1024;
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

// ---------------------------------------------------------------------------
// Public loading API
// ---------------------------------------------------------------------------

/// Which layout a configuration file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 1.x layout (§11.2): top-level `host`/`port`, `[replication]`.
    Flat,
    /// Documented layout (§11.3): `node_id`, `[network]`, `[mqtt]`, ...
    Nested,
}

/// A resolved configuration plus what the caller should log once the logger
/// is up.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The resolved configuration.
    pub config: Config,
    /// Non-fatal problems (unknown keys, shadowed settings), one line each,
    /// already prefixed with the file name.
    pub warnings: Vec<String>,
    /// The file that was read; `None` when running on built-in defaults.
    pub source: Option<PathBuf>,
    /// The layout the file was read as; `None` without a file.
    pub layout: Option<Layout>,
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
}

/// Why the configuration could not be loaded.
///
/// `Display` gives the message without an `Error: ` prefix; the caller prints
/// `Error: {e}` and exits with status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The configuration file does not exist.
    NotFound {
        /// Path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, not
    /// UTF-8, ...).
    Read {
        /// Path as given.
        path: PathBuf,
        /// The I/O error's text.
        error: String,
    },
    /// The file is not valid TOML.
    Syntax {
        /// File name as given.
        file: String,
        /// 1-based line of the error, when the parser reported a position.
        line: Option<usize>,
        /// 1-based column (in characters) of the error.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key has the wrong type or is out of range.
    Field {
        /// File name as given.
        file: String,
        /// Dotted field name, e.g. `mqtt.broker_address`.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// An environment variable has a malformed value.
    Env {
        /// Variable name.
        var: String,
        /// What was expected and what was found.
        message: String,
    },
    /// `engine` (file, or `--engine`) names no known engine (PROTOCOL.md §8).
    UnknownEngine {
        /// The value given.
        name: String,
    },
    /// A command-line problem; the message includes the usage text when the
    /// arguments themselves were malformed.
    Cli {
        /// Full message.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound { path } => {
                write!(f, "configuration file \"{}\" not found", path.display())
            }
            ConfigError::Read { path, error } => write!(
                f,
                "cannot read configuration file \"{}\": {error}",
                path.display()
            ),
            ConfigError::Syntax {
                file,
                line,
                column,
                message,
            } => match (line, column) {
                (Some(l), Some(c)) => {
                    write!(f, "{file}: invalid TOML at line {l}, column {c}: {message}")
                }
                (Some(l), None) => write!(f, "{file}: invalid TOML at line {l}: {message}"),
                _ => write!(f, "{file}: invalid TOML: {message}"),
            },
            ConfigError::Field {
                file,
                field,
                message,
            } => write!(f, "{file}: field \"{field}\": {message}"),
            ConfigError::Env { var, message } => {
                write!(f, "environment variable {var}: {message}")
            }
            ConfigError::UnknownEngine { name } => write!(
                f,
                "Unknown engine type '{name}'\nAvailable engines: rwlock, kv, sled"
            ),
            ConfigError::Cli { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads the configuration: defaults, then the file at `path` (if any), then
/// the environment (`env(name)` returns a variable's value), then `overrides`.
///
/// A missing file is an error here; deciding whether to look for a file at
/// all (the `config.toml` fallback) is the caller's job.
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let Some(path) = path else {
        return finish(Layer::default(), Vec::new(), None, None, env, overrides);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                error: e.to_string(),
            }
        }
    })?;
    let file = path.display().to_string();
    let mut warnings = Vec::new();
    let (layer, layout) = parse_document(&text, &file, &mut warnings)?;
    finish(
        layer,
        warnings,
        Some(path.to_path_buf()),
        Some(layout),
        env,
        overrides,
    )
}

/// Like [`load`], but reads the TOML from `text`; `file` names it in messages.
pub fn load_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let (layer, layout) = parse_document(text, file, &mut warnings)?;
    finish(layer, warnings, None, Some(layout), env, overrides)
}

/// Maps an `engine` value to an [`Engine`] (PROTOCOL.md §8).
pub fn parse_engine(name: &str) -> Result<Engine, ConfigError> {
    match name {
        "rwlock" | "kv" => Ok(Engine::Memory),
        "sled" => Ok(Engine::Persistent),
        _ => Err(ConfigError::UnknownEngine {
            name: name.to_string(),
        }),
    }
}

/// Splits `host:port` (IPv6 as `[addr]:port`) into host and port.
///
/// The host must be non-empty and free of whitespace and `/`; the port must be
/// plain digits in 1..=65535. No name resolution is done.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = s.rsplit_once(':')?;
        if host.contains(':') {
            return None; // bare IPv6 is ambiguous; require brackets
        }
        (host, port)
    };
    if !valid_host(host) || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Some((host.to_string(), p)),
        _ => None,
    }
}

/// Parses an MQTT broker address: `tcp://H:P`, `mqtt://H:P`, `H:P`, or any of
/// these without `:P` (port 1883). A trailing `/` is tolerated.
pub fn parse_broker_address(s: &str) -> Option<(String, u16)> {
    let lower = s.to_ascii_lowercase();
    let rest = if lower.starts_with("tcp://") || lower.starts_with("mqtt://") {
        &s[s.find("://")? + 3..]
    } else if s.contains("://") {
        return None; // other schemes (ssl, ws, ...) are not supported
    } else {
        s
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(hp) = parse_host_port(rest) {
        return Some(hp);
    }
    let host = match rest.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if rest.contains(':') => return None,
        None => rest,
    };
    valid_host(host).then(|| (host.to_string(), DEFAULT_BROKER_PORT))
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
    /// flags (PROTOCOL.md §11.1).
    fn default() -> Self {
        resolve(Layer::default(), &Overrides::default())
    }
}

// ---------------------------------------------------------------------------
// The layered, not yet resolved settings
// ---------------------------------------------------------------------------

/// Every setting as an `Option`: `None` = "not given by this or an earlier
/// layer". Later layers overwrite in place; [`resolve`] fills in defaults.
#[derive(Debug, Default, Clone)]
struct Layer {
    node_id: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    threads: Option<usize>,
    shards: Option<usize>,
    max_connections: Option<usize>,
    connection_timeout: Option<u64>,
    engine: Option<Engine>,
    storage_path: Option<PathBuf>,
    fsync: Option<FsyncPolicy>,
    snapshot_interval: Option<u64>,
    tombstone_ttl: Option<u64>,
    tree_bits: Option<u32>,
    repl_enabled: Option<bool>,
    broker_host: Option<String>,
    broker_port: Option<u16>,
    topic_prefix: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    keep_alive: Option<u64>,
    clean_session: Option<bool>,
    qos: Option<u8>,
    repl_peer_list: Option<Vec<String>>,
    ae_enabled: Option<bool>,
    ae_interval: Option<u64>,
    ae_max_concurrent: Option<usize>,
    ae_peer_list: Option<Vec<String>>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    log_file: Option<PathBuf>,
}

fn finish(
    mut layer: Layer,
    warnings: Vec<String>,
    source: Option<PathBuf>,
    layout: Option<Layout>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    apply_env(&mut layer, env)?;
    Ok(Loaded {
        config: resolve(layer, overrides),
        warnings,
        source,
        layout,
    })
}

/// Applies the command-line overrides and fills in every default.
fn resolve(l: Layer, o: &Overrides) -> Config {
    let port = o.port.or(l.port).unwrap_or(DEFAULT_PORT);
    let node_id = o
        .node_id
        .clone()
        .or(l.node_id)
        .unwrap_or_else(|| default_node_id(port));
    let client_id = l.client_id.unwrap_or_else(|| node_id.clone());
    // MQTT 3.1.1 sends a password only with a user name; 1.x uses the client id.
    let username = l
        .username
        .or_else(|| l.password.as_ref().map(|_| client_id.clone()));
    Config {
        host: o
            .host
            .clone()
            .or(l.host)
            .unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port,
        threads: o
            .threads
            .or(l.threads)
            .unwrap_or_else(default_threads)
            .clamp(1, MAX_THREADS),
        shards: l.shards.unwrap_or(DEFAULT_SHARDS),
        max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        connection_timeout: l
            .connection_timeout
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        engine: o.engine.or(l.engine).unwrap_or(Engine::Memory),
        storage_path: o
            .storage_path
            .clone()
            .or(l.storage_path)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORAGE_PATH)),
        fsync: l.fsync.unwrap_or(FsyncPolicy::EverySec),
        snapshot_interval: Duration::from_secs(
            l.snapshot_interval.unwrap_or(DEFAULT_SNAPSHOT_SECS),
        ),
        tombstone_ttl: Duration::from_secs(l.tombstone_ttl.unwrap_or(DEFAULT_TOMBSTONE_TTL_SECS)),
        tree_bits: l.tree_bits.unwrap_or(DEFAULT_TREE_BITS),
        replication: ReplicationConfig {
            enabled: l.repl_enabled.unwrap_or(false),
            broker_host: l
                .broker_host
                .unwrap_or_else(|| DEFAULT_BROKER_HOST.to_string()),
            broker_port: l.broker_port.unwrap_or(DEFAULT_BROKER_PORT),
            topic_prefix: l
                .topic_prefix
                .unwrap_or_else(|| DEFAULT_TOPIC_PREFIX.to_string()),
            client_id,
            username,
            password: l.password,
            keep_alive: Duration::from_secs(l.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE_SECS)),
            clean_session: l.clean_session.unwrap_or(true),
            qos: l.qos.unwrap_or(DEFAULT_QOS),
            peer_list: l.repl_peer_list.unwrap_or_default(),
        },
        anti_entropy: AntiEntropyConfig {
            enabled: l.ae_enabled.unwrap_or(true),
            interval: Duration::from_secs(l.ae_interval.unwrap_or(DEFAULT_AE_INTERVAL_SECS)),
            max_concurrent_syncs: l.ae_max_concurrent.unwrap_or(DEFAULT_AE_MAX_CONCURRENT),
            peer_list: l.ae_peer_list.unwrap_or_default(),
        },
        logging: LoggingConfig {
            level: l.log_level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()),
            format: l.log_format.unwrap_or(LogFormat::Text),
            file_path: l.log_file,
        },
        node_id,
    }
}

// ---------------------------------------------------------------------------
// Value checks shared by the file and the environment. Each returns the
// "expected ..., got ..." message; the caller adds file/field or variable.
// ---------------------------------------------------------------------------

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && !h
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '\0')
}

fn range_text(min: i64, max: i64) -> String {
    if max == i64::MAX {
        format!("an integer >= {min}")
    } else {
        format!("an integer in {min}..={max}")
    }
}

fn check_range(n: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected {}, got {n}", range_text(min, max)))
    }
}

fn check_shards(n: i64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(s) if s.is_power_of_two() && s <= MAX_SHARDS => Ok(s),
        _ => Err(format!(
            "expected a power of two in 1..={MAX_SHARDS}, got {n}"
        )),
    }
}

fn check_tree_bits(n: i64) -> Result<u32, String> {
    if (4..=24).contains(&n) && n % 4 == 0 {
        Ok(n as u32)
    } else {
        Err(format!("expected a multiple of 4 in 4..=24, got {n}"))
    }
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "everysec" => Ok(FsyncPolicy::EverySec),
        "no" => Ok(FsyncPolicy::No),
        _ => Err(format!(
            "expected one of \"always\", \"everysec\", \"no\", got {s:?}"
        )),
    }
}

fn parse_level(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!(
            "expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"off\", got {s:?}"
        ))
    }
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(format!("expected \"json\" or \"text\", got {s:?}")),
    }
}

fn check_non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected a non-empty string, got \"\"".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn check_host(s: &str) -> Result<String, String> {
    if valid_host(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a host name or IP address (no spaces, no scheme), got {s:?}"
        ))
    }
}

fn check_topic(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['+', '#', '\0']) {
        Err(format!(
            "expected a non-empty MQTT topic prefix without '+' or '#', got {s:?}"
        ))
    } else {
        Ok(s.to_string())
    }
}

fn check_peer(s: &str) -> Result<String, String> {
    match parse_host_port(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!("expected \"host:port\", got {s:?}")),
    }
}

fn check_broker(s: &str) -> Result<(String, u16), String> {
    parse_broker_address(s).ok_or_else(|| {
        format!("expected \"tcp://host:port\", \"mqtt://host:port\" or \"host:port\", got {s:?}")
    })
}

fn check_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// An integer from a string (environment, CLI, or a port written as a string
/// in the file), checked against `min..=max`.
fn int_from_str(s: &str, min: i64, max: i64) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected {}, got {s:?}", range_text(min, max)));
    }
    match t.parse::<i64>() {
        Ok(n) => check_range(n, min, max),
        Err(_) => Err(format!("expected {}, got {t}", range_text(min, max))),
    }
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Walking the TOML document
// ---------------------------------------------------------------------------

/// How a value looks in an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// One table of the document, with the keys read so far (the rest are
/// reported as unknown).
struct Section<'a> {
    file: &'a str,
    /// Dotted path of this table; empty for the top level.
    path: &'static str,
    table: &'a Table,
    used: Vec<&'static str>,
}

type FieldResult<T> = Result<Option<T>, ConfigError>;

impl<'a> Section<'a> {
    fn new(file: &'a str, path: &'static str, table: &'a Table) -> Self {
        Section {
            file,
            path,
            table,
            used: Vec::new(),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Field {
            file: self.file.to_string(),
            field: self.field(key),
            message,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.table.get(key)
    }

    /// A string, passed through `check`.
    fn string_with<T>(
        &mut self,
        key: &'static str,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> FieldResult<T> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => check(s).map(Some).map_err(|m| self.err(key, m)),
            Some(v) => Err(self.err(key, format!("expected a string, got {}", describe(v)))),
        }
    }

    fn string(&mut self, key: &'static str) -> FieldResult<String> {
        self.string_with(key, |s| Ok(s.to_string()))
    }

    fn non_empty(&mut self, key: &'static str) -> FieldResult<String> {
        self.string_with(key, check_non_empty)
    }

    fn bool(&mut self, key: &'static str) -> FieldResult<bool> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, format!("expected true or false, got {}", describe(v)))),
        }
    }

    /// An integer in `min..=max`.
    fn int(&mut self, key: &'static str, min: i64, max: i64) -> FieldResult<i64> {
        self.int_with(key, |n| check_range(n, min, max), &range_text(min, max))
    }

    /// An integer passed through `check`; `expected` describes it for
    /// wrong-typed values.
    fn int_with<T>(
        &mut self,
        key: &'static str,
        check: impl Fn(i64) -> Result<T, String>,
        expected: &str,
    ) -> FieldResult<T> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => check(*n).map(Some).map_err(|m| self.err(key, m)),
            Some(v) => Err(self.err(key, format!("expected {expected}, got {}", describe(v)))),
        }
    }

    /// A TCP port in 1..=65535, as an integer or a string of digits.
    fn port(&mut self, key: &'static str) -> FieldResult<u16> {
        let value = match self.get(key) {
            None => return Ok(None),
            Some(Value::Integer(n)) => check_range(*n, 1, 65535),
            Some(Value::String(s)) => int_from_str(s, 1, 65535),
            Some(v) => Err(format!(
                "expected {}, got {}",
                range_text(1, 65535),
                describe(v)
            )),
        };
        value.map(|n| Some(n as u16)).map_err(|m| self.err(key, m))
    }

    /// An array of strings, each passed through `check`.
    fn list_with(
        &mut self,
        key: &'static str,
        check: impl Fn(&str) -> Result<String, String>,
    ) -> FieldResult<Vec<String>> {
        let items = match self.get(key) {
            None => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(v) => {
                return Err(self.err(
                    key,
                    format!("expected an array of strings, got {}", describe(v)),
                ));
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let entry = format!("{key}[{i}]");
            match item {
                Value::String(s) => out.push(check(s).map_err(|m| self.err(&entry, m))?),
                v => {
                    return Err(self.err(&entry, format!("expected a string, got {}", describe(v))));
                }
            }
        }
        Ok(Some(out))
    }

    fn table(&mut self, key: &'static str, path: &'static str) -> FieldResult<Section<'a>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(Section::new(self.file, path, t))),
            Some(v) => Err(self.err(key, format!("expected a table, got {}", describe(v)))),
        }
    }

    /// Reports every key not read as an unknown key (with a hint, if any).
    fn finish(self, warnings: &mut Vec<String>, hint: impl Fn(&str) -> Option<&'static str>) {
        for (key, value) in self.table {
            if self.used.contains(&key.as_str()) {
                continue;
            }
            let what = if value.is_table() {
                format!("unknown table [{}]", self.field(key))
            } else {
                format!("unknown key \"{}\"", self.field(key))
            };
            match hint(key) {
                Some(h) => warnings.push(format!("{}: {what} ignored ({h})", self.file)),
                None => warnings.push(format!("{}: {what} ignored", self.file)),
            }
        }
    }
}

fn no_hint(_: &str) -> Option<&'static str> {
    None
}

fn detect_layout(t: &Table) -> Layout {
    if t.contains_key("host") || t.contains_key("port") {
        Layout::Flat
    } else if t.contains_key("node_id") || t.contains_key("network") {
        Layout::Nested
    } else if t.contains_key("replication") || t.contains_key("sync_interval_seconds") {
        Layout::Flat
    } else {
        Layout::Nested
    }
}

/// Turns a toml parse error into [`ConfigError::Syntax`] with a line number.
fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            // Count characters, not bytes: skip UTF-8 continuation bytes.
            let column = before[line_start..]
                .iter()
                .filter(|&&b| b & 0xC0 != 0x80)
                .count()
                + 1;
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    ConfigError::Syntax {
        file: file.to_string(),
        line,
        column,
        message: e.message().trim().to_string(),
    }
}

fn parse_document(
    text: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(Layer, Layout), ConfigError> {
    let table: Table = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
    let layout = detect_layout(&table);
    let mut layer = Layer::default();
    let mut top = Section::new(file, "", &table);

    // Tables shared by both layouts first: top-level keys below override them.
    if let Some(mut s) = top.table("network", "network")? {
        parse_network(&mut s, &mut layer)?;
        s.finish(warnings, no_hint);
    }
    if let Some(mut s) = top.table("storage", "storage")? {
        parse_storage(&mut s, &mut layer)?;
        s.finish(warnings, no_hint);
    }
    if let Some(mut s) = top.table("anti_entropy", "anti_entropy")? {
        parse_anti_entropy(&mut s, &mut layer)?;
        s.finish(warnings, no_hint);
    }
    if let Some(mut s) = top.table("logging", "logging")? {
        parse_logging(&mut s, &mut layer)?;
        s.finish(warnings, no_hint);
    }

    let mut shadow = |key: &str, table_key: &str| {
        warnings.push(format!(
            "{file}: \"{key}\" overrides \"{table_key}\"; remove one of them"
        ));
    };

    top.string("description")?; // informative only
    if let Some(id) = top.non_empty("node_id")? {
        layer.node_id = Some(id);
    }
    if let Some(n) = top.int("threads", 1, MAX_THREADS as i64)? {
        if layer.threads.is_some() {
            shadow("threads", "network.threads");
        }
        layer.threads = Some(to_usize(n));
    }
    if let Some(p) = top.non_empty("storage_path")? {
        if layer.storage_path.is_some() {
            shadow("storage_path", "storage.storage_path");
        }
        layer.storage_path = Some(PathBuf::from(p));
    }
    if let Some(name) = top.string("engine")? {
        let engine = parse_engine(&name)?;
        if layer.engine.is_some_and(|e| e != engine) {
            shadow("engine", "storage.persistence_enabled");
        }
        layer.engine = Some(engine);
    }

    match layout {
        Layout::Flat => {
            if let Some(h) = top.string_with("host", check_host)? {
                if layer.host.is_some() {
                    shadow("host", "network.bind_address");
                }
                layer.host = Some(h);
            }
            if let Some(p) = top.port("port")? {
                if layer.port.is_some() {
                    shadow("port", "network.bind_port");
                }
                layer.port = Some(p);
            }
            top.int("sync_interval_seconds", 0, MAX_SECS)?; // parsed, unused (as in 1.x)
            if let Some(mut s) = top.table("replication", "replication")? {
                parse_replication(&mut s, &mut layer)?;
                s.finish(warnings, no_hint);
            }
            // Flat layout: the replication client id is also the node id.
            if layer.node_id.is_none() {
                layer.node_id.clone_from(&layer.client_id);
            }
            top.finish(warnings, |k| {
                (k == "mqtt").then_some(
                    "[mqtt] belongs to the nested layout; this file is read as the flat \
                     layout (top-level host/port), which uses [replication]",
                )
            });
        }
        Layout::Nested => {
            if let Some(mut s) = top.table("mqtt", "mqtt")? {
                parse_mqtt(&mut s, &mut layer)?;
                s.finish(warnings, no_hint);
            }
            top.finish(warnings, |k| match k {
                "replication" | "sync_interval_seconds" => Some(
                    "this belongs to the flat layout; this file has node_id or [network] and no \
                     top-level host/port, so it is read as the nested layout, which uses [mqtt]",
                ),
                _ => None,
            });
        }
    }
    Ok((layer, layout))
}

fn parse_network(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(h) = s.string_with("bind_address", check_host)? {
        l.host = Some(h);
    }
    if let Some(p) = s.port("bind_port")? {
        l.port = Some(p);
    }
    if let Some(n) = s.int("max_connections", 1, i64::MAX)? {
        l.max_connections = Some(to_usize(n));
    }
    if let Some(n) = s.int("connection_timeout", 0, MAX_SECS)? {
        l.connection_timeout = Some(to_u64(n));
    }
    if let Some(n) = s.int("threads", 1, MAX_THREADS as i64)? {
        l.threads = Some(to_usize(n));
    }
    Ok(())
}

fn parse_storage(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    s.int("memory_limit_mb", 0, i64::MAX)?; // accepted, not enforced
    s.int("backup_interval_hours", 0, i64::MAX)?; // accepted, unused
    if let Some(on) = s.bool("persistence_enabled")? {
        l.engine = Some(if on {
            Engine::Persistent
        } else {
            Engine::Memory
        });
    }
    if let Some(p) = s.non_empty("storage_path")? {
        l.storage_path = Some(PathBuf::from(p));
    }
    let shards_text = format!("a power of two in 1..={MAX_SHARDS}");
    if let Some(n) = s.int_with("shards", check_shards, &shards_text)? {
        l.shards = Some(n);
    }
    if let Some(f) = s.string_with("fsync", parse_fsync)? {
        l.fsync = Some(f);
    }
    if let Some(n) = s.int("snapshot_interval_seconds", 1, MAX_SECS)? {
        l.snapshot_interval = Some(to_u64(n));
    }
    if let Some(n) = s.int("tombstone_ttl_seconds", 1, MAX_SECS)? {
        l.tombstone_ttl = Some(to_u64(n));
    }
    Ok(())
}

fn parse_anti_entropy(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(b) = s.bool("enabled")? {
        l.ae_enabled = Some(b);
    }
    if let Some(n) = s.int("interval_seconds", 1, MAX_SECS)? {
        l.ae_interval = Some(to_u64(n));
    }
    s.int("peer_discovery_interval", 0, MAX_SECS)?; // accepted, unused
    if let Some(n) = s.int("max_concurrent_syncs", 1, MAX_CONCURRENT_SYNCS)? {
        l.ae_max_concurrent = Some(to_usize(n));
    }
    if let Some(list) = s.list_with("peer_list", check_peer)? {
        l.ae_peer_list = Some(list);
    }
    if let Some(b) = s.int_with("tree_bits", check_tree_bits, "a multiple of 4 in 4..=24")? {
        l.tree_bits = Some(b);
    }
    Ok(())
}

fn parse_logging(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(v) = s.string_with("level", parse_level)? {
        l.log_level = Some(v);
    }
    if let Some(f) = s.string_with("format", parse_format)? {
        l.log_format = Some(f);
    }
    if let Some(p) = s.non_empty("file_path")? {
        l.log_file = Some(PathBuf::from(p));
    }
    Ok(())
}

/// Keys common to `[mqtt]` and `[replication]`.
fn parse_mqtt_common(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(t) = s.string_with("topic_prefix", check_topic)? {
        l.topic_prefix = Some(t);
    }
    if let Some(id) = s.non_empty("client_id")? {
        l.client_id = Some(id);
    }
    if let Some(q) = s.int("qos", 0, 1)? {
        l.qos = Some(q as u8);
    }
    Ok(())
}

/// Nested `[mqtt]`: its presence enables replication.
fn parse_mqtt(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    l.repl_enabled = Some(true);
    if let Some((host, port)) = s.string_with("broker_address", check_broker)? {
        l.broker_host = Some(host);
        l.broker_port = Some(port);
    }
    parse_mqtt_common(s, l)?;
    if let Some(u) = s.string("username")? {
        l.username = Some(u);
    }
    if let Some(p) = s.string("password")? {
        l.password = Some(p);
    }
    if let Some(n) = s.int("keep_alive", 0, 65535)? {
        l.keep_alive = Some(to_u64(n));
    }
    if let Some(b) = s.bool("clean_session")? {
        l.clean_session = Some(b);
    }
    Ok(())
}

/// Flat `[replication]`.
fn parse_replication(s: &mut Section<'_>, l: &mut Layer) -> Result<(), ConfigError> {
    if let Some(b) = s.bool("enabled")? {
        l.repl_enabled = Some(b);
    }
    if let Some(h) = s.string_with("mqtt_broker", check_host)? {
        l.broker_host = Some(h);
    }
    if let Some(p) = s.port("mqtt_port")? {
        l.broker_port = Some(p);
    }
    parse_mqtt_common(s, l)?;
    if let Some(p) = s.string("client_password")? {
        l.password = Some(p);
    }
    // Only counted by `REPLICATE status`; 1.x accepted any string here and the
    // documented example itself holds a placeholder ("h:p"), so entries are
    // not checked for host:port.
    if let Some(list) = s.list_with("peer_list", |p| Ok(p.to_string()))? {
        l.repl_peer_list = Some(list);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// Reads variables through the caller's lookup function. An empty value counts
/// as unset (supervisors often blank a variable to unset it), except for
/// `MERKLE_KV_ANTI_ENTROPY_PEER_LIST`, where it means "no peers".
struct EnvReader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl EnvReader<'_> {
    fn raw(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }

    fn get<T>(&self, var: &str, check: impl Fn(&str) -> Result<T, String>) -> FieldResult<T> {
        match self.raw(var) {
            Some(v) if !v.is_empty() => check(&v).map(Some).map_err(|message| ConfigError::Env {
                var: var.to_string(),
                message,
            }),
            _ => Ok(None),
        }
    }

    fn string(&self, var: &str) -> FieldResult<String> {
        self.get(var, |s| Ok(s.to_string()))
    }

    fn int(&self, var: &str, min: i64, max: i64) -> FieldResult<i64> {
        self.get(var, |s| int_from_str(s, min, max))
    }
}

fn apply_env(l: &mut Layer, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let e = EnvReader { env };
    if let Some(v) = e.string("MERKLE_KV_NODE_ID")? {
        l.node_id = Some(v);
    }
    if let Some(v) = e.get("MERKLE_KV_NETWORK_BIND_ADDRESS", check_host)? {
        l.host = Some(v);
    }
    if let Some(v) = e.int("MERKLE_KV_NETWORK_BIND_PORT", 1, 65535)? {
        l.port = Some(v as u16);
    }
    if let Some(v) = e.int("MERKLE_KV_NETWORK_MAX_CONNECTIONS", 1, i64::MAX)? {
        l.max_connections = Some(to_usize(v));
    }
    if let Some(v) = e.int("MERKLE_KV_NETWORK_CONNECTION_TIMEOUT", 0, MAX_SECS)? {
        l.connection_timeout = Some(to_u64(v));
    }
    if let Some(v) = e.int("MERKLE_KV_NETWORK_THREADS", 1, MAX_THREADS as i64)? {
        l.threads = Some(to_usize(v));
    }
    if let Some((host, port)) =
        e.get("MERKLE_KV_MQTT_BROKER_ADDRESS", |s| check_broker(s.trim()))?
    {
        l.broker_host = Some(host);
        l.broker_port = Some(port);
        l.repl_enabled = Some(true);
    }
    if let Some(v) = e.get("MERKLE_KV_MQTT_TOPIC_PREFIX", check_topic)? {
        l.topic_prefix = Some(v);
    }
    // The MERKLE_KV_* name is the more deliberate one: it wins over the bare
    // 1.x names CLIENT_ID / CLIENT_PASSWORD.
    if let Some(v) = e
        .string("MERKLE_KV_MQTT_CLIENT_ID")?
        .or(e.string("CLIENT_ID")?)
    {
        l.client_id = Some(v);
    }
    if let Some(v) = e.string("MERKLE_KV_MQTT_USERNAME")? {
        l.username = Some(v);
    }
    if let Some(v) = e
        .string("MERKLE_KV_MQTT_PASSWORD")?
        .or(e.string("CLIENT_PASSWORD")?)
    {
        l.password = Some(v);
    }
    if let Some(v) = e.int("MERKLE_KV_MQTT_KEEP_ALIVE", 0, 65535)? {
        l.keep_alive = Some(to_u64(v));
    }
    if let Some(v) = e.get("MERKLE_KV_MQTT_CLEAN_SESSION", check_bool)? {
        l.clean_session = Some(v);
    }
    if let Some(v) = e.get("MERKLE_KV_ANTI_ENTROPY_ENABLED", check_bool)? {
        l.ae_enabled = Some(v);
    }
    if let Some(v) = e.int("MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS", 1, MAX_SECS)? {
        l.ae_interval = Some(to_u64(v));
    }
    if let Some(v) = e.int(
        "MERKLE_KV_ANTI_ENTROPY_MAX_CONCURRENT_SYNCS",
        1,
        MAX_CONCURRENT_SYNCS,
    )? {
        l.ae_max_concurrent = Some(to_usize(v));
    }
    const PEERS: &str = "MERKLE_KV_ANTI_ENTROPY_PEER_LIST";
    if let Some(v) = e.raw(PEERS) {
        let mut peers = Vec::new();
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            peers.push(check_peer(p).map_err(|message| ConfigError::Env {
                var: PEERS.to_string(),
                message,
            })?);
        }
        l.ae_peer_list = Some(peers);
    }
    if let Some(on) = e.get("MERKLE_KV_STORAGE_PERSISTENCE_ENABLED", check_bool)? {
        l.engine = Some(if on {
            Engine::Persistent
        } else {
            Engine::Memory
        });
    }
    if let Some(v) = e.string("MERKLE_KV_STORAGE_PATH")? {
        l.storage_path = Some(PathBuf::from(v));
    }
    if let Some(v) = e.get("MERKLE_KV_STORAGE_FSYNC", |s| parse_fsync(s.trim()))? {
        l.fsync = Some(v);
    }
    if let Some(v) = e.get("MERKLE_KV_LOGGING_LEVEL", parse_level)? {
        l.log_level = Some(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// §11.2, verbatim.
    const FLAT_EXAMPLE: &str = r#"
host = "127.0.0.1"            # bind address                      (required)
port = 7379                   # u16; "7379" as a string also OK   (required)
storage_path = "data"         # dir for the persistent engine     (required)
engine = "rwlock"             # rwlock | kv | sled  (§8)          (required)
sync_interval_seconds = 60    # parsed, unused                    (required)

[replication]                 # table required, even when disabled
enabled = false               # connect to MQTT at startup?        (required)
mqtt_broker = "localhost"     # host or IP, no scheme              (required)
mqtt_port = 1883              #                                     (required)
topic_prefix = "merkle_kv"    # topics <prefix>/events             (required)
client_id = "node1"           # MQTT id and event src              (required)
client_password = "secret"    # optional; env CLIENT_PASSWORD wins
peer_list = ["h:p"]           # optional; only REPLICATE status count

[anti_entropy]                # optional table; unused by 1.x
enabled = true
interval_seconds = 60
peer_list = ["127.0.0.1:7380"]
"#;

    /// §11.3, verbatim.
    const NESTED_EXAMPLE: &str = r#"
node_id = "node-alpha"                     # required
description = "primary node"               # optional

[network]
bind_address = "127.0.0.1"                 # default "127.0.0.1"
bind_port = 7379                           # default 7379, 1..65535
max_connections = 1000                     # default 1000
connection_timeout = 30                    # seconds, default 30

[mqtt]
broker_address = "tcp://127.0.0.1:1883"    # required, tcp://host:port
topic_prefix = "merkle-kv"                 # default "merkle-kv"
client_id = "merkle-node-alpha"            # default node_id
username = "user"                          # optional
password = "secret"                        # optional
keep_alive = 60                            # seconds, default 60
clean_session = true                       # default true

[anti_entropy]
enabled = true                             # default true
interval_seconds = 300                     # default 300
peer_discovery_interval = 600              # default 600
max_concurrent_syncs = 3                   # default 3
peer_list = ["127.0.0.1:7879"]             # default []

[storage]
memory_limit_mb = 1024
persistence_enabled = false
backup_interval_hours = 24

[logging]
level = "info"                             # trace|debug|info|warn|error
format = "json"                            # json|text
file_path = "/var/log/merkle-kv/node-alpha.log"
"#;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Loaded, ConfigError> {
        load_str(text, "config.toml", &no_env, &Overrides::default())
    }

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_str(text, "config.toml", &env_of(env), &Overrides::default())
    }

    fn ok(text: &str) -> Config {
        let loaded = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        loaded.config
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(l) => panic!("expected an error, got {:?}", l.config),
            Err(e) => e.to_string(),
        }
    }

    fn env_err(text: &str, env: &[(&str, &str)]) -> String {
        match parse_env(text, env) {
            Ok(l) => panic!("expected an error, got {:?}", l.config),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_without_file() {
        let l = load(None, &no_env, &Overrides::default()).unwrap();
        assert!(l.warnings.is_empty());
        assert_eq!(l.source, None);
        assert_eq!(l.layout, None);
        let c = l.config;
        assert_eq!(c, Config::default());
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 7379);
        assert_eq!(c.node_id, format!("{}-7379", hostname()));
        assert_eq!(c.threads, default_threads());
        assert!(c.threads >= 1);
        assert_eq!(c.shards, 64);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.connection_timeout, None);
        assert_eq!(c.engine, Engine::Memory);
        assert_eq!(c.storage_path, PathBuf::from("data"));
        assert_eq!(c.fsync, FsyncPolicy::EverySec);
        assert_eq!(c.snapshot_interval, Duration::from_secs(300));
        assert_eq!(c.tombstone_ttl, Duration::from_secs(86_400));
        assert_eq!(c.tree_bits, 16);
        let r = &c.replication;
        assert!(!r.enabled);
        assert_eq!((r.broker_host.as_str(), r.broker_port), ("localhost", 1883));
        assert_eq!(r.topic_prefix, "merkle_kv");
        assert_eq!(r.client_id, c.node_id);
        assert_eq!((r.username.as_deref(), r.password.as_deref()), (None, None));
        assert_eq!(r.keep_alive, Duration::from_secs(60));
        assert!(r.clean_session);
        assert_eq!(r.qos, 1);
        assert!(r.peer_list.is_empty());
        let a = &c.anti_entropy;
        assert!(a.enabled);
        assert_eq!(a.interval, Duration::from_secs(300));
        assert_eq!(a.max_concurrent_syncs, 3);
        assert!(a.peer_list.is_empty());
        assert_eq!(c.logging.level, "info");
        assert_eq!(c.logging.format, LogFormat::Text);
        assert_eq!(c.logging.file_path, None);
    }

    #[test]
    fn empty_file_is_nested_defaults() {
        let l = parse("").unwrap();
        assert_eq!(l.layout, Some(Layout::Nested));
        assert!(l.warnings.is_empty());
        assert_eq!(l.config, Config::default());
    }

    #[test]
    fn flat_example_loads() {
        let l = parse(FLAT_EXAMPLE).unwrap();
        assert_eq!(l.layout, Some(Layout::Flat));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 7379));
        assert_eq!(c.storage_path, PathBuf::from("data"));
        assert_eq!(c.engine, Engine::Memory);
        assert_eq!(c.node_id, "node1");
        let r = &c.replication;
        assert!(!r.enabled);
        assert_eq!((r.broker_host.as_str(), r.broker_port), ("localhost", 1883));
        assert_eq!(r.topic_prefix, "merkle_kv");
        assert_eq!(r.client_id, "node1");
        assert_eq!(r.password.as_deref(), Some("secret"));
        assert_eq!(r.username.as_deref(), Some("node1"));
        assert_eq!(r.peer_list, vec!["h:p".to_string()]);
        assert!(c.anti_entropy.enabled);
        assert_eq!(c.anti_entropy.interval, Duration::from_secs(60));
        assert_eq!(c.anti_entropy.peer_list, vec!["127.0.0.1:7380".to_string()]);
        // Not in the file: defaults.
        assert_eq!(c.connection_timeout, None);
        assert_eq!(c.max_connections, 10_000);
    }

    #[test]
    fn nested_example_loads_with_mapping_table() {
        let l = parse(NESTED_EXAMPLE).unwrap();
        assert_eq!(l.layout, Some(Layout::Nested));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = l.config;
        assert_eq!(c.node_id, "node-alpha");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 7379));
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.connection_timeout, Some(Duration::from_secs(30)));
        let r = &c.replication;
        assert!(r.enabled, "[mqtt] present => replication enabled");
        assert_eq!((r.broker_host.as_str(), r.broker_port), ("127.0.0.1", 1883));
        assert_eq!(r.topic_prefix, "merkle-kv");
        assert_eq!(r.client_id, "merkle-node-alpha");
        assert_eq!(r.username.as_deref(), Some("user"));
        assert_eq!(r.password.as_deref(), Some("secret"));
        assert_eq!(r.keep_alive, Duration::from_secs(60));
        assert!(r.clean_session);
        let a = &c.anti_entropy;
        assert!(a.enabled);
        assert_eq!(a.interval, Duration::from_secs(300));
        assert_eq!(a.max_concurrent_syncs, 3);
        assert_eq!(a.peer_list, vec!["127.0.0.1:7879".to_string()]);
        assert_eq!(c.engine, Engine::Memory);
        assert_eq!(c.storage_path, PathBuf::from("data"));
        assert_eq!(c.logging.level, "info");
        assert_eq!(c.logging.format, LogFormat::Json);
        assert_eq!(
            c.logging.file_path,
            Some(PathBuf::from("/var/log/merkle-kv/node-alpha.log"))
        );
    }

    #[test]
    fn nested_mapping_details() {
        // client_id defaults to node_id; persistence => persistent engine.
        let c = ok(r#"
node_id = "n1"
[mqtt]
broker_address = "broker.example:1884"
[storage]
persistence_enabled = true
storage_path = "/var/lib/mkv"
"#);
        assert_eq!(c.replication.client_id, "n1");
        assert_eq!(c.replication.broker_host, "broker.example");
        assert_eq!(c.replication.broker_port, 1884);
        assert_eq!(c.replication.topic_prefix, "merkle_kv");
        assert_eq!(c.replication.username, None);
        assert_eq!(c.engine, Engine::Persistent);
        assert_eq!(c.storage_path, PathBuf::from("/var/lib/mkv"));
        // Without [mqtt], replication stays off.
        assert!(!ok("node_id = \"n1\"").replication.enabled);
        // [mqtt] without broker_address: enabled, default broker.
        let c = ok("node_id = \"n1\"\n[mqtt]\n");
        assert!(c.replication.enabled);
        assert_eq!(c.replication.broker_host, "localhost");
        assert_eq!(c.replication.broker_port, 1883);
    }

    #[test]
    fn broker_address_forms() {
        for (text, host, port) in [
            ("tcp://127.0.0.1:1883", "127.0.0.1", 1883),
            ("mqtt://broker:1999", "broker", 1999),
            ("TCP://broker:1999/", "broker", 1999),
            ("broker:1999", "broker", 1999),
            ("tcp://broker", "broker", 1883),
            ("broker", "broker", 1883),
            ("[::1]:1884", "::1", 1884),
            ("tcp://[::1]", "::1", 1883),
        ] {
            assert_eq!(
                parse_broker_address(text),
                Some((host.to_string(), port)),
                "{text}"
            );
        }
        for bad in [
            "",
            "tcp://",
            "ssl://h:8883",
            "h:",
            "h:0",
            "h:65536",
            "h:x",
            "a b:1",
            "::1",
            "tcp://h:1/x",
        ] {
            assert_eq!(parse_broker_address(bad), None, "{bad:?}");
        }
        let e = err("node_id = \"n\"\n[mqtt]\nbroker_address = \"ssl://h:1\"\n");
        assert_eq!(
            e,
            "config.toml: field \"mqtt.broker_address\": expected \"tcp://host:port\", \
             \"mqtt://host:port\" or \"host:port\", got \"ssl://h:1\""
        );
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("127.0.0.1:7380"),
            Some(("127.0.0.1".into(), 7380))
        );
        assert_eq!(parse_host_port("[::1]:7380"), Some(("::1".into(), 7380)));
        assert_eq!(parse_host_port("node-2:1"), Some(("node-2".into(), 1)));
        for bad in [
            "", "h", ":1", "h:", "h:0", "h:+1", "h:65536", "::1:7380", "[::1]", "h p:1", "h:1 ",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn port_as_string_and_range() {
        assert_eq!(ok("port = \"7380\"").port, 7380);
        assert_eq!(ok("port = 1").port, 1);
        assert_eq!(ok("port = 65535").port, 65535);
        assert_eq!(
            err("port = 70000"),
            "config.toml: field \"port\": expected an integer in 1..=65535, got 70000"
        );
        assert_eq!(
            err("port = 0"),
            "config.toml: field \"port\": expected an integer in 1..=65535, got 0"
        );
        assert_eq!(
            err("port = \"abc\""),
            "config.toml: field \"port\": expected an integer in 1..=65535, got \"abc\""
        );
        assert_eq!(
            err("port = \"70000\""),
            "config.toml: field \"port\": expected an integer in 1..=65535, got 70000"
        );
        assert_eq!(
            err("port = true"),
            "config.toml: field \"port\": expected an integer in 1..=65535, got true"
        );
        assert_eq!(
            err("node_id = \"n\"\n[network]\nbind_port = -1"),
            "config.toml: field \"network.bind_port\": expected an integer in 1..=65535, got -1"
        );
        assert_eq!(
            err("host = \"h\"\n[replication]\nmqtt_port = 99999"),
            "config.toml: field \"replication.mqtt_port\": expected an integer in 1..=65535, got 99999"
        );
    }

    #[test]
    fn engines() {
        assert_eq!(ok("port = 1\nengine = \"rwlock\"").engine, Engine::Memory);
        assert_eq!(ok("port = 1\nengine = \"kv\"").engine, Engine::Memory);
        assert_eq!(ok("port = 1\nengine = \"sled\"").engine, Engine::Persistent);
        assert_eq!(
            err("port = 1\nengine = \"rocksdb\""),
            "Unknown engine type 'rocksdb'\nAvailable engines: rwlock, kv, sled"
        );
        assert_eq!(
            err("port = 1\nengine = 3"),
            "config.toml: field \"engine\": expected a string, got 3"
        );
        // Top-level engine in the nested layout.
        assert_eq!(
            ok("node_id = \"n\"\nengine = \"sled\"").engine,
            Engine::Persistent
        );
    }

    #[test]
    fn flat_node_id_and_username() {
        let c = ok("port = 1\n[replication]\nclient_id = \"n7\"");
        assert_eq!(c.node_id, "n7");
        assert_eq!(c.replication.client_id, "n7");
        assert_eq!(c.replication.username, None, "no password => no user name");
        // A top-level node_id separates the two.
        let c = ok("port = 1\nnode_id = \"origin\"\n[replication]\nclient_id = \"mq\"");
        assert_eq!(c.node_id, "origin");
        assert_eq!(c.replication.client_id, "mq");
        // No client id at all: <hostname>-<port>.
        assert_eq!(ok("port = 7390").node_id, format!("{}-7390", hostname()));
    }

    #[test]
    fn client_id_env_is_mqtt_only() {
        let env = [("CLIENT_ID", "other"), ("CLIENT_PASSWORD", "pw")];
        let c = parse_env(FLAT_EXAMPLE, &env).unwrap().config;
        assert_eq!(
            c.node_id, "node1",
            "CLIENT_ID must not change the event origin"
        );
        assert_eq!(c.replication.client_id, "other");
        assert_eq!(c.replication.password.as_deref(), Some("pw"));
        assert_eq!(c.replication.username.as_deref(), Some("other"));
        // Nested: same rule.
        let c = parse_env("node_id = \"n1\"\n[mqtt]\n", &[("CLIENT_ID", "x")])
            .unwrap()
            .config;
        assert_eq!(
            (c.node_id.as_str(), c.replication.client_id.as_str()),
            ("n1", "x")
        );
        // The MERKLE_KV_* names win over the bare 1.x names.
        let env = [
            ("CLIENT_ID", "a"),
            ("MERKLE_KV_MQTT_CLIENT_ID", "b"),
            ("CLIENT_PASSWORD", "c"),
            ("MERKLE_KV_MQTT_PASSWORD", "d"),
        ];
        let r = parse_env("", &env).unwrap().config.replication;
        assert_eq!(
            (r.client_id.as_str(), r.password.as_deref()),
            ("b", Some("d"))
        );
    }

    #[test]
    fn client_password_wins_over_file() {
        let c = parse_env(FLAT_EXAMPLE, &[("CLIENT_PASSWORD", "from-env")])
            .unwrap()
            .config;
        assert_eq!(c.replication.password.as_deref(), Some("from-env"));
        assert_eq!(c.replication.username.as_deref(), Some("node1"));
        // An explicit nested user name is kept.
        let c = parse_env(NESTED_EXAMPLE, &[("CLIENT_PASSWORD", "p2")])
            .unwrap()
            .config;
        assert_eq!(c.replication.password.as_deref(), Some("p2"));
        assert_eq!(c.replication.username.as_deref(), Some("user"));
    }

    #[test]
    fn env_overrides_each_variable() {
        let get = |env: &[(&str, &str)]| parse_env(FLAT_EXAMPLE, env).unwrap().config;
        assert_eq!(get(&[("MERKLE_KV_NODE_ID", "nn")]).node_id, "nn");
        assert_eq!(
            get(&[("MERKLE_KV_NODE_ID", "nn")]).replication.client_id,
            "node1"
        );
        assert_eq!(
            get(&[("MERKLE_KV_NETWORK_BIND_ADDRESS", "0.0.0.0")]).host,
            "0.0.0.0"
        );
        assert_eq!(get(&[("MERKLE_KV_NETWORK_BIND_PORT", "7400")]).port, 7400);
        assert_eq!(
            get(&[("MERKLE_KV_NETWORK_MAX_CONNECTIONS", "5")]).max_connections,
            5
        );
        assert_eq!(
            get(&[("MERKLE_KV_NETWORK_CONNECTION_TIMEOUT", "9")]).connection_timeout,
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            get(&[("MERKLE_KV_NETWORK_CONNECTION_TIMEOUT", "0")]).connection_timeout,
            None
        );
        assert_eq!(get(&[("MERKLE_KV_NETWORK_THREADS", "3")]).threads, 3);
        let r = get(&[("MERKLE_KV_MQTT_BROKER_ADDRESS", "tcp://b:2000")]).replication;
        assert!(r.enabled, "setting the broker enables replication");
        assert_eq!((r.broker_host.as_str(), r.broker_port), ("b", 2000));
        assert_eq!(
            get(&[("MERKLE_KV_MQTT_TOPIC_PREFIX", "t")])
                .replication
                .topic_prefix,
            "t"
        );
        assert_eq!(
            get(&[("MERKLE_KV_MQTT_CLIENT_ID", "c")])
                .replication
                .client_id,
            "c"
        );
        assert_eq!(get(&[("MERKLE_KV_MQTT_CLIENT_ID", "c")]).node_id, "node1");
        assert_eq!(
            get(&[("MERKLE_KV_MQTT_USERNAME", "u")])
                .replication
                .username
                .as_deref(),
            Some("u")
        );
        assert_eq!(
            get(&[("MERKLE_KV_MQTT_PASSWORD", "p")])
                .replication
                .password
                .as_deref(),
            Some("p")
        );
        assert_eq!(
            get(&[("MERKLE_KV_MQTT_KEEP_ALIVE", "5")])
                .replication
                .keep_alive,
            Duration::from_secs(5)
        );
        assert!(
            !get(&[("MERKLE_KV_MQTT_CLEAN_SESSION", "false")])
                .replication
                .clean_session
        );
        assert!(
            !get(&[("MERKLE_KV_ANTI_ENTROPY_ENABLED", "0")])
                .anti_entropy
                .enabled
        );
        assert_eq!(
            get(&[("MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS", "7")])
                .anti_entropy
                .interval,
            Duration::from_secs(7)
        );
        assert_eq!(
            get(&[("MERKLE_KV_ANTI_ENTROPY_MAX_CONCURRENT_SYNCS", "2")])
                .anti_entropy
                .max_concurrent_syncs,
            2
        );
        assert_eq!(
            get(&[("MERKLE_KV_ANTI_ENTROPY_PEER_LIST", "a:1, b:2,,")])
                .anti_entropy
                .peer_list,
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(
            get(&[("MERKLE_KV_ANTI_ENTROPY_PEER_LIST", "")])
                .anti_entropy
                .peer_list
                .is_empty(),
            "an empty peer list clears the file's peers"
        );
        assert_eq!(
            get(&[("MERKLE_KV_STORAGE_PERSISTENCE_ENABLED", "true")]).engine,
            Engine::Persistent
        );
        assert_eq!(
            get(&[("MERKLE_KV_STORAGE_PATH", "/tmp/x")]).storage_path,
            PathBuf::from("/tmp/x")
        );
        assert_eq!(
            get(&[("MERKLE_KV_STORAGE_FSYNC", "always")]).fsync,
            FsyncPolicy::Always
        );
        assert_eq!(
            get(&[("MERKLE_KV_LOGGING_LEVEL", "DEBUG")]).logging.level,
            "debug"
        );
        // Empty values count as unset.
        assert_eq!(get(&[("MERKLE_KV_NETWORK_BIND_PORT", "")]).port, 7379);
        assert_eq!(
            get(&[("CLIENT_PASSWORD", "")])
                .replication
                .password
                .as_deref(),
            Some("secret")
        );
    }

    #[test]
    fn env_malformed_values_name_the_variable() {
        for (var, value) in [
            ("MERKLE_KV_NETWORK_BIND_ADDRESS", "a b"),
            ("MERKLE_KV_NETWORK_BIND_PORT", "abc"),
            ("MERKLE_KV_NETWORK_BIND_PORT", "0"),
            ("MERKLE_KV_NETWORK_BIND_PORT", "65536"),
            ("MERKLE_KV_NETWORK_MAX_CONNECTIONS", "0"),
            ("MERKLE_KV_NETWORK_CONNECTION_TIMEOUT", "-1"),
            ("MERKLE_KV_NETWORK_THREADS", "0"),
            ("MERKLE_KV_NETWORK_THREADS", "99999"),
            ("MERKLE_KV_MQTT_BROKER_ADDRESS", "ws://x:1"),
            ("MERKLE_KV_MQTT_TOPIC_PREFIX", "a/#"),
            ("MERKLE_KV_MQTT_KEEP_ALIVE", "1.5"),
            ("MERKLE_KV_MQTT_CLEAN_SESSION", "maybe"),
            ("MERKLE_KV_ANTI_ENTROPY_ENABLED", "2"),
            ("MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS", "0"),
            ("MERKLE_KV_ANTI_ENTROPY_MAX_CONCURRENT_SYNCS", "x"),
            ("MERKLE_KV_ANTI_ENTROPY_PEER_LIST", "a:1,nope"),
            ("MERKLE_KV_STORAGE_PERSISTENCE_ENABLED", "yep"),
            ("MERKLE_KV_STORAGE_FSYNC", "sometimes"),
            ("MERKLE_KV_LOGGING_LEVEL", "loud"),
        ] {
            let e = env_err("", &[(var, value)]);
            assert!(
                e.starts_with(&format!("environment variable {var}: expected ")),
                "{var}={value}: {e}"
            );
        }
        assert_eq!(
            env_err("", &[("MERKLE_KV_NETWORK_BIND_PORT", "70000")]),
            "environment variable MERKLE_KV_NETWORK_BIND_PORT: expected an integer in 1..=65535, got 70000"
        );
    }

    #[test]
    fn validation_errors_name_file_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "port = 1\nthreads = 0",
                "field \"threads\": expected an integer in 1..=1024, got 0",
            ),
            (
                "port = 1\nthreads = 5000",
                "field \"threads\": expected an integer in 1..=1024",
            ),
            (
                "[network]\nthreads = 0",
                "field \"network.threads\": expected an integer in 1..=1024",
            ),
            (
                "[network]\nmax_connections = 0",
                "field \"network.max_connections\": expected an integer >= 1, got 0",
            ),
            (
                "[network]\nconnection_timeout = -5",
                "field \"network.connection_timeout\": expected an integer in 0..=",
            ),
            (
                "[network]\nbind_address = \"\"",
                "field \"network.bind_address\": expected a host name",
            ),
            (
                "[storage]\nshards = 100",
                "field \"storage.shards\": expected a power of two in 1..=4096, got 100",
            ),
            (
                "[storage]\nshards = 0",
                "field \"storage.shards\": expected a power of two in 1..=4096, got 0",
            ),
            (
                "[storage]\nshards = 8192",
                "field \"storage.shards\": expected a power of two in 1..=4096, got 8192",
            ),
            (
                "[storage]\nshards = \"64\"",
                "field \"storage.shards\": expected a power of two in 1..=4096, got \"64\"",
            ),
            (
                "[storage]\nfsync = \"sometimes\"",
                "field \"storage.fsync\": expected one of \"always\", \"everysec\", \"no\", got \"sometimes\"",
            ),
            (
                "[storage]\nsnapshot_interval_seconds = 0",
                "field \"storage.snapshot_interval_seconds\": expected an integer in 1..=",
            ),
            (
                "[storage]\ntombstone_ttl_seconds = 0",
                "field \"storage.tombstone_ttl_seconds\"",
            ),
            (
                "[storage]\npersistence_enabled = \"yes\"",
                "field \"storage.persistence_enabled\": expected true or false, got \"yes\"",
            ),
            (
                "[storage]\nstorage_path = 1",
                "field \"storage.storage_path\": expected a string, got 1",
            ),
            (
                "[storage]\nmemory_limit_mb = -1",
                "field \"storage.memory_limit_mb\"",
            ),
            (
                "[anti_entropy]\ntree_bits = 10",
                "field \"anti_entropy.tree_bits\": expected a multiple of 4 in 4..=24, got 10",
            ),
            (
                "[anti_entropy]\ntree_bits = 28",
                "field \"anti_entropy.tree_bits\": expected a multiple of 4 in 4..=24, got 28",
            ),
            (
                "[anti_entropy]\ntree_bits = 0",
                "field \"anti_entropy.tree_bits\"",
            ),
            (
                "[anti_entropy]\ninterval_seconds = 0",
                "field \"anti_entropy.interval_seconds\": expected an integer in 1..=",
            ),
            (
                "[anti_entropy]\nmax_concurrent_syncs = 0",
                "field \"anti_entropy.max_concurrent_syncs\"",
            ),
            (
                "[anti_entropy]\npeer_list = [\"127.0.0.1:1\", \"nope\"]",
                "field \"anti_entropy.peer_list[1]\": expected \"host:port\", got \"nope\"",
            ),
            (
                "[anti_entropy]\npeer_list = [1]",
                "field \"anti_entropy.peer_list[0]\": expected a string, got 1",
            ),
            (
                "[anti_entropy]\npeer_list = \"a:1\"",
                "field \"anti_entropy.peer_list\": expected an array of strings, got \"a:1\"",
            ),
            (
                "[anti_entropy]\nenabled = 1",
                "field \"anti_entropy.enabled\": expected true or false, got 1",
            ),
            (
                "[mqtt]\nqos = 2",
                "field \"mqtt.qos\": expected an integer in 0..=1, got 2",
            ),
            (
                "[mqtt]\nkeep_alive = 70000",
                "field \"mqtt.keep_alive\": expected an integer in 0..=65535",
            ),
            (
                "[mqtt]\nbroker_address = \"tcp://\"",
                "field \"mqtt.broker_address\": expected \"tcp://host:port\"",
            ),
            (
                "[mqtt]\nbroker_address = 1883",
                "field \"mqtt.broker_address\": expected a string, got 1883",
            ),
            (
                "[mqtt]\ntopic_prefix = \"a/+\"",
                "field \"mqtt.topic_prefix\": expected a non-empty MQTT topic prefix",
            ),
            (
                "[mqtt]\nclient_id = \"\"",
                "field \"mqtt.client_id\": expected a non-empty string",
            ),
            (
                "port = 1\n[replication]\nqos = 5",
                "field \"replication.qos\": expected an integer in 0..=1, got 5",
            ),
            (
                "port = 1\n[replication]\nenabled = \"true\"",
                "field \"replication.enabled\": expected true or false, got \"true\"",
            ),
            (
                "port = 1\n[replication]\nmqtt_broker = \"tcp://h\"",
                "field \"replication.mqtt_broker\": expected a host name",
            ),
            (
                "port = 1\n[replication]\npeer_list = [true]",
                "field \"replication.peer_list[0]\": expected a string, got true",
            ),
            (
                "port = 1\nhost = 5",
                "field \"host\": expected a string, got 5",
            ),
            (
                "port = 1\nsync_interval_seconds = \"60\"",
                "field \"sync_interval_seconds\": expected an integer",
            ),
            (
                "port = 1\nreplication = 5",
                "field \"replication\": expected a table, got 5",
            ),
            (
                "network = [1]",
                "field \"network\": expected a table, got an array",
            ),
            (
                "[logging]\nlevel = \"verbose\"",
                "field \"logging.level\": expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"off\", got \"verbose\"",
            ),
            (
                "[logging]\nformat = \"xml\"",
                "field \"logging.format\": expected \"json\" or \"text\", got \"xml\"",
            ),
            (
                "node_id = \"\"",
                "field \"node_id\": expected a non-empty string",
            ),
            (
                "node_id = 1.5",
                "field \"node_id\": expected a string, got 1.5",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(
                e.starts_with("config.toml: ") && e.contains(want),
                "{text:?}\n  got:  {e}\n  want: {want}"
            );
        }
    }

    #[test]
    fn extensions_in_both_layouts() {
        let ext = r#"
threads = 3
[network]
max_connections = 50
connection_timeout = 0
[storage]
shards = 16
fsync = "always"
snapshot_interval_seconds = 60
tombstone_ttl_seconds = 3600
[anti_entropy]
tree_bits = 8
"#;
        for head in ["port = 7380\n", "node_id = \"n\"\n"] {
            let c = ok(&format!("{head}{ext}"));
            assert_eq!(c.threads, 3);
            assert_eq!(c.max_connections, 50);
            assert_eq!(c.connection_timeout, None, "0 = no idle timeout");
            assert_eq!(c.shards, 16);
            assert_eq!(c.fsync, FsyncPolicy::Always);
            assert_eq!(c.snapshot_interval, Duration::from_secs(60));
            assert_eq!(c.tombstone_ttl, Duration::from_secs(3600));
            assert_eq!(c.tree_bits, 8);
        }
        assert_eq!(ok("[network]\nthreads = 2").threads, 2);
        assert_eq!(ok("[mqtt]\nqos = 0").replication.qos, 0);
        assert_eq!(ok("port = 1\n[replication]\nqos = 0").replication.qos, 0);
        assert_eq!(ok("[storage]\nfsync = \"no\"").fsync, FsyncPolicy::No);
        assert_eq!(ok("[storage]\nshards = 1").shards, 1);
        assert_eq!(ok("[storage]\nshards = 4096").shards, 4096);
        assert_eq!(ok("[anti_entropy]\ntree_bits = 24").tree_bits, 24);
        assert_eq!(ok("[anti_entropy]\ntree_bits = 4").tree_bits, 4);
        assert_eq!(
            ok("node_id = \"n\"\nstorage_path = \"/d\"").storage_path,
            PathBuf::from("/d")
        );
    }

    #[test]
    fn shadowed_settings_warn_and_top_level_wins() {
        let l = parse("port = 1\nthreads = 4\n[network]\nthreads = 2").unwrap();
        assert_eq!(l.config.threads, 4);
        assert_eq!(
            l.warnings,
            vec!["config.toml: \"threads\" overrides \"network.threads\"; remove one of them"]
        );
        let l = parse("engine = \"rwlock\"\n[storage]\npersistence_enabled = true").unwrap();
        assert_eq!(l.config.engine, Engine::Memory);
        assert_eq!(l.warnings.len(), 1);
        // Agreeing engine settings are not worth a warning.
        assert!(
            parse("engine = \"sled\"\n[storage]\npersistence_enabled = true")
                .unwrap()
                .warnings
                .is_empty()
        );
        let l = parse("host = \"a\"\n[network]\nbind_address = \"b\"").unwrap();
        assert_eq!((l.config.host.as_str(), l.warnings.len()), ("a", 1));
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let l = parse(
            "port = 1\nbogus = 1\n[replication]\nextra = true\n[metrics]\nx = 1\n[mqtt]\nbroker_address = \"h\"",
        )
        .unwrap();
        assert_eq!(l.config.port, 1);
        assert!(
            !l.config.replication.enabled,
            "[mqtt] is not read in the flat layout"
        );
        let w = l.warnings.join("\n");
        assert!(
            w.contains("config.toml: unknown key \"bogus\" ignored"),
            "{w}"
        );
        assert!(
            w.contains("config.toml: unknown key \"replication.extra\" ignored"),
            "{w}"
        );
        assert!(
            w.contains("config.toml: unknown table [metrics] ignored"),
            "{w}"
        );
        assert!(
            w.contains("unknown table [mqtt] ignored ([mqtt] belongs to the nested layout"),
            "{w}"
        );
        assert_eq!(l.warnings.len(), 4);

        let l = parse("node_id = \"n\"\nsync_interval_seconds = 5\n[replication]\nenabled = true\n[network]\nfoo = 1").unwrap();
        assert!(!l.config.replication.enabled);
        let w = l.warnings.join("\n");
        assert!(
            w.contains("unknown table [replication] ignored (this belongs to the flat layout"),
            "{w}"
        );
        assert!(
            w.contains("unknown key \"sync_interval_seconds\" ignored"),
            "{w}"
        );
        assert!(w.contains("unknown key \"network.foo\" ignored"), "{w}");

        // replication.peer_list is only counted: any strings are accepted.
        let c = ok("port = 1\n[replication]\npeer_list = [\"nope\"]");
        assert_eq!(c.replication.peer_list, vec!["nope".to_string()]);
    }

    #[test]
    fn layout_detection() {
        assert_eq!(parse("port = 1").unwrap().layout, Some(Layout::Flat));
        assert_eq!(parse("host = \"h\"").unwrap().layout, Some(Layout::Flat));
        assert_eq!(
            parse("node_id = \"n\"").unwrap().layout,
            Some(Layout::Nested)
        );
        assert_eq!(parse("[network]").unwrap().layout, Some(Layout::Nested));
        // Flat wins when both markers are present.
        let l = parse("port = 7390\nnode_id = \"n\"\n[network]\nmax_connections = 5").unwrap();
        assert_eq!(l.layout, Some(Layout::Flat));
        assert_eq!((l.config.port, l.config.node_id.as_str()), (7390, "n"));
        // Neither: flat-only items make it flat, anything else is nested.
        let l = parse("[replication]\nenabled = true\nclient_id = \"c\"").unwrap();
        assert_eq!(l.layout, Some(Layout::Flat));
        assert!(l.config.replication.enabled);
        assert_eq!(l.config.node_id, "c");
        assert_eq!(
            parse("engine = \"sled\"").unwrap().layout,
            Some(Layout::Nested)
        );
    }

    #[test]
    fn missing_file_and_unreadable_file() {
        let p = Path::new("/nonexistent-merklekv/x.toml");
        let e = load(Some(p), &no_env, &Overrides::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration file \"/nonexistent-merklekv/x.toml\" not found"
        );
        let e = load(Some(Path::new("/")), &no_env, &Overrides::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read configuration file \"/\": "),
            "{e}"
        );
    }

    #[test]
    fn invalid_toml_mentions_line() {
        let e = err("host = \"127.0.0.1\"\nport = 7379\n\nengine = = \"x\"\n");
        assert!(
            e.starts_with("config.toml: invalid TOML at line 4, column "),
            "{e}"
        );
        let e = err("[storage]\nshards = 1\nshards = 2\n");
        assert!(e.starts_with("config.toml: invalid TOML at line 3"), "{e}");
        let e = err("é = \"unterminated\n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn overrides_are_the_last_layer() {
        let o = Overrides {
            node_id: Some("cli".into()),
            host: Some("0.0.0.0".into()),
            port: Some(0),
            threads: Some(5000),
            engine: Some(Engine::Persistent),
            storage_path: Some("/cli".into()),
        };
        let env = env_of(&[
            ("MERKLE_KV_NODE_ID", "env"),
            ("MERKLE_KV_NETWORK_BIND_PORT", "2"),
        ]);
        let c = load_str(FLAT_EXAMPLE, "f.toml", &env, &o).unwrap().config;
        assert_eq!(c.node_id, "cli");
        assert_eq!(c.replication.client_id, "node1");
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 0));
        assert_eq!(c.threads, MAX_THREADS, "clamped");
        assert_eq!(c.engine, Engine::Persistent);
        assert_eq!(c.storage_path, PathBuf::from("/cli"));
    }

    #[test]
    fn default_node_id_forms() {
        assert_eq!(default_node_id(7381), format!("{}-7381", hostname()));
        let a = default_node_id(0);
        let b = default_node_id(0);
        assert_ne!(a, b, "ephemeral-port nodes need distinct ids");
        assert!(a.starts_with(&format!("{}-0-{}-", hostname(), std::process::id())));
        // The port used is the final one.
        let o = Overrides {
            port: Some(7999),
            ..Overrides::default()
        };
        let c = load(None, &no_env, &o).unwrap().config;
        assert_eq!(c.node_id, format!("{}-7999", hostname()));
        assert_eq!(c.replication.client_id, c.node_id);
    }

    #[test]
    fn engine_error_display() {
        assert_eq!(
            parse_engine("x").unwrap_err().to_string(),
            "Unknown engine type 'x'\nAvailable engines: rwlock, kv, sled"
        );
    }

    #[test]
    fn shipped_configs_load_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let l =
                load(Some(&path), &no_env, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                l.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                l.warnings
            );
            seen += 1;
        }
        assert!(
            seen >= 4,
            "expected standalone + 3 cluster configs, found {seen}"
        );
    }

    #[test]
    fn cluster_configs_form_a_cluster() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut ports = Vec::new();
        for (i, name) in ["node1.toml", "node2.toml", "node3.toml"]
            .iter()
            .enumerate()
        {
            let c = load(Some(&dir.join(name)), &no_env, &Overrides::default())
                .unwrap()
                .config;
            assert_eq!(c.node_id, format!("node{}", i + 1));
            assert!(c.replication.enabled);
            assert_eq!(c.replication.topic_prefix, "merkle_kv");
            assert_eq!(c.engine, Engine::Memory);
            assert_eq!(c.anti_entropy.peer_list.len(), 2);
            assert!(
                !c.anti_entropy
                    .peer_list
                    .contains(&format!("127.0.0.1:{}", c.port))
            );
            ports.push(c.port);
        }
        assert_eq!(ports, vec![7379, 7380, 7381]);
        let s = load(
            Some(&dir.join("standalone.toml")),
            &no_env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.layout, Some(Layout::Flat));
        assert_eq!((s.config.host.as_str(), s.config.port), ("127.0.0.1", 7379));
        assert!(!s.config.replication.enabled);
        assert_eq!(s.config.engine, Engine::Memory);
    }
}
