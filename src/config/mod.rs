//! Node configuration: the resolved [`Config`] every subsystem reads, and
//! how it is loaded (PROTOCOL.md §11).
//!
//! # Where things are
//!
//! - [`settings`]: **the settings table**, one row per setting: its names in
//!   the file, environment variables, kind and bounds, default, one line of
//!   documentation, and how its value is stored into and shown from
//!   [`Config`]. Everything below reads it; nothing else names a bound or a
//!   default.
//! - [`values`]: the value kinds and their checks (`expected ..., got ...`).
//! - `file`: the TOML layouts (flat and nested) and unknown-key warnings.
//! - `env`: the `MERKLE_KV_*` variables (and 1.x `CLIENT_ID`,
//!   `CLIENT_PASSWORD`).
//! - `resolve`: defaults, layering, command-line overrides, derived defaults.
//! - [`error`]: the error type, [`ConfigError`].
//!
//! # Adding a setting
//!
//! 1. Add the field to [`Config`] (or a sub-struct) and a placeholder for it
//!    in `resolve::blank()` (the compiler asks for it).
//! 2. Add one row to [`settings::SETTINGS`], in the table it belongs to:
//!
//!    ```ignore
//!    Setting {
//!        name: "network.max_output_bytes",          // [network] max_output_bytes = …
//!        env: &["MERKLE_KV_NETWORK_MAX_OUTPUT_BYTES"],
//!        kind: Kind::Int { min: 1024, max: ANY },   // bounds, for file and env
//!        initial: Initial::Value("67108864"),       // default, checked by `kind`
//!        doc: "Bytes of replies queued for one client before it is disconnected.",
//!        apply: |c, v| c.max_output_bytes = v.usize(),
//!        show: |c| c.max_output_bytes.to_string(),
//!        ..BASE
//!    },
//!    ```
//!
//!    The file (both layouts), the environment, the default, the error
//!    messages (`config.toml: field "network.max_output_bytes": expected an
//!    integer >= 1024, got 5`, `environment variable
//!    MERKLE_KV_NETWORK_MAX_OUTPUT_BYTES: ...`) and unknown-key detection
//!    follow from the row. A new `[table]` is picked up from the name.
//!    Optional fields: `aliases` (other names in the file, e.g. a flat-layout
//!    `replication.*` name or a top-level shortcut), `secret` (hide the value
//!    from listings). A new kind of value (a new check) goes into
//!    [`values::Kind`].
//! 3. Run `cargo test --lib config`: the test `readme_lists_every_setting`
//!    fails and prints the README's new settings table; paste it into
//!    README.md. Other tests check that the default passes the kind and that
//!    `show` reads back the default.
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

mod env;
pub mod error;
mod file;
mod resolve;
pub mod settings;
pub mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use error::ConfigError;
pub use settings::{SETTINGS, Setting};
pub use values::{parse_broker_address, parse_engine, parse_host_port};

use resolve::Layers;

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
        return finish(None, Vec::new(), None, env, overrides);
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
    let name = path.display().to_string();
    let mut warnings = Vec::new();
    let parsed = file::parse(&text, &name, &mut warnings)?;
    finish(
        Some(parsed),
        warnings,
        Some(path.to_path_buf()),
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
    let parsed = file::parse(text, file, &mut warnings)?;
    finish(Some(parsed), warnings, None, env, overrides)
}

fn finish(
    parsed: Option<(file::FileValues, Layout)>,
    warnings: Vec<String>,
    source: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let mut layers = Layers::new();
    let layout = parsed.map(|(values, layout)| {
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                layers.set(i, v);
            }
        }
        layout
    });
    env::apply(&mut layers, env)?;
    Ok(Loaded {
        config: layers.finish(overrides),
        warnings,
        source,
        layout,
    })
}

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
        Layers::new().finish(&Overrides::default())
    }
}
