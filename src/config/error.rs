//! The error returned when the configuration cannot be loaded.

use std::fmt;
use std::path::PathBuf;

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
    /// `engine` (file, or `--engine`) names no known engine (docs/protocol.md §8).
    UnknownEngine {
        /// The value given.
        name: String,
    },
    /// A secret file (`requirepass_file`, `cluster_key_file`) cannot be
    /// read or holds no secret.
    SecretFile {
        /// The setting naming the file.
        setting: &'static str,
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// Protected mode: a non-loopback bind address without a password.
    Unprotected {
        /// The bind address.
        host: String,
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
            ConfigError::SecretFile {
                setting,
                path,
                error,
            } => write!(f, "{setting} \"{}\": {error}", path.display()),
            ConfigError::Unprotected { host } => write!(
                f,
                "refusing to listen on {host} without a password (protected mode): any host \
                 that can reach the port could read, change and delete every key. Set one with \
                 `requirepass` in [security] (or --requirepass, or MERKLE_KV_SECURITY_REQUIREPASS), \
                 bind to 127.0.0.1, or set `protected_mode = false` in [security] to allow \
                 unauthenticated access"
            ),
            ConfigError::Cli { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}
