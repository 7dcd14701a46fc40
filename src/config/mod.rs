//! Node configuration: the resolved [`Config`] every subsystem reads, and
//! how it is loaded (docs/protocol.md §11).
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
//! - [`types`]: [`Config`] and its parts, [`Layout`], [`Overrides`]: plain data.
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
//! `[network]`, `[storage]`, `[anti_entropy]`, `[logging]`, `[limits]`) are read the same
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
pub mod secrets;
pub mod settings;
pub mod types;
pub mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use resolve::{default_node_id, default_threads, hostname};
pub use settings::{SETTINGS, Setting};
pub use types::{
    AntiEntropyConfig, Config, Engine, FsyncPolicy, Layout, LogFormat, LoggingConfig, MAX_SHARDS,
    MAX_THREADS, MetricsConfig, Overrides, ReplicationConfig, Role, ScriptingConfig,
    SecurityConfig, TlsConfig, UserConfig,
};
pub use values::{parse_broker_address, parse_engine, parse_host_port};

use resolve::Layers;

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
    let mut config = layers.finish(overrides);
    secrets::resolve(&mut config)?;
    Ok(Loaded {
        config,
        warnings,
        source,
        layout,
    })
}
