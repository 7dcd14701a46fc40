//! Command-line parsing (docs/protocol.md §11.1).
//!
//! `merklekv [--config <path>] [--engine <type>] [--storage-path <path>]
//! [--port <n>] [--bind <addr>] [--threads <n>] [--node-id <id>]
//! [--requirepass <pw>] [--read-only] [--check-config]`
//!
//! Precedence, weakest first: built-in defaults < configuration file <
//! environment < these flags. Without `--config`, `config.toml` in the working
//! directory is read if it exists; otherwise the built-in defaults apply.
//!
//! Both `--flag value` and `--flag=value` are accepted; a repeated flag's last
//! value wins. `--help`/`-h` and `--version`/`-V` return the text to print
//! (stdout, exit 0) without reading any configuration; arguments before them
//! must still be well-formed. Anything else is an error whose message ends
//! with the usage text; the caller prints `Error: {e}` and exits 1.
//!
//! The parser is hand-written: seven flags do not justify a dependency, and
//! it keeps the error format (`Error: …`, exit 1, usage in the message) fully
//! under our control. Option values that are paths (`--config`,
//! `--storage-path`) may be non-UTF-8 when passed as a separate argument;
//! every other argument must be UTF-8.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded, MAX_THREADS, Overrides};

/// What the command line asks for.
// `Run` is much larger than the text variants; it is built once per process,
// so boxing it would only complicate the caller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CliOutcome {
    /// Start the node with this configuration (log `warnings` once logging is up).
    Run(Loaded),
    /// `--check-config`: check this configuration and list it, do not start.
    Check(Loaded),
    /// Print this usage text to stdout and exit 0 (no trailing newline).
    Help(String),
    /// Print this version line to stdout and exit 0 (no trailing newline).
    Version(String),
}

/// The version line: `merklekv 0.1.0`.
pub fn version() -> String {
    format!("merklekv {}", env!("CARGO_PKG_VERSION"))
}

/// The usage text printed by `--help` and after argument errors.
pub fn usage() -> String {
    format!(
        "{version}: a replicated key-value server with Merkle-tree anti-entropy

Usage: merklekv [OPTIONS]

Options:
      --config <path>        TOML configuration file, flat or nested layout
                             (default: ./config.toml if present, else built-in
                             defaults: standalone in-memory node on 127.0.0.1:7379)
      --engine <type>        storage engine: rwlock | kv (in-memory), sled (persistent)
      --storage-path <path>  directory of the persistent engine
      --port <n>             client port, 0..=65535 (0 = any free port)
      --bind <addr>          bind address (alias: --host)
      --threads <n>          worker threads, 1..={MAX_THREADS} (default: number of cores)
      --node-id <id>         node id, the origin of replicated writes
                             (default: <hostname>-<port>)
      --requirepass <pw>     password of the user \"default\" (role admin); clients
                             must AUTH (prefer security.requirepass_file: a flag
                             is visible to other local users in ps)
      --read-only            start in read-only mode: client writes are refused,
                             replicated writes still apply
      --metrics-bind <addr>  host:port of the HTTP metrics listener (/metrics,
                             /health, /ready; default: off)
      --check-config         check the configuration (file, environment, these
                             options; TLS files; protected mode; the address
                             announced to the cluster), print the resolved
                             settings and exit: 0 if it would start, else 1
  -h, --help                 print this help and exit
  -V, --version              print the version and exit

Precedence: defaults < configuration file < environment (MERKLE_KV_*,
CLIENT_ID, CLIENT_PASSWORD) < command-line options. RUST_LOG sets the log level.",
        version = version()
    )
}

/// Parses the command line (`args` includes the program name, as from
/// `std::env::args_os()`) and loads the configuration it selects, reading the
/// environment through `env`.
pub fn parse<I: IntoIterator<Item = OsString>>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CliOutcome, ConfigError> {
    parse_in(args, env, Path::new(""))
}

/// Like [`parse`], with relative paths (`--config`, the `config.toml`
/// fallback) resolved against `cwd` instead of the process working directory.
pub fn parse_in<I: IntoIterator<Item = OsString>>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<CliOutcome, ConfigError> {
    let raw = match scan(args)? {
        Scan::Help => return Ok(CliOutcome::Help(usage())),
        Scan::Version => return Ok(CliOutcome::Version(version())),
        Scan::Run(raw) => raw,
    };
    let overrides = raw.overrides()?;
    let check = raw.check;
    let path = match raw.config {
        Some(p) => Some(cwd.join(p)),
        None => Some(cwd.join("config.toml")).filter(|p| p.is_file()),
    };
    let loaded = config::load(path.as_deref(), env, &overrides)?;
    Ok(if check {
        CliOutcome::Check(loaded)
    } else {
        CliOutcome::Run(loaded)
    })
}

/// Flags as given, before their values are checked.
#[derive(Default)]
struct RawArgs {
    config: Option<PathBuf>,
    engine: Option<String>,
    storage_path: Option<PathBuf>,
    port: Option<String>,
    bind: Option<String>,
    threads: Option<String>,
    node_id: Option<String>,
    requirepass: Option<String>,
    metrics_bind: Option<String>,
    read_only: bool,
    check: bool,
}

enum Scan {
    Run(Box<RawArgs>),
    Help,
    Version,
}

fn usage_error(message: String) -> ConfigError {
    ConfigError::Cli {
        message: format!("{message}\n\n{}", usage()),
    }
}

/// First pass: split flags and values; stop at `--help`/`--version`.
fn scan<I: IntoIterator<Item = OsString>>(args: I) -> Result<Scan, ConfigError> {
    let mut raw = RawArgs::default();
    let mut it = args.into_iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            return Err(usage_error(format!(
                "argument is not valid UTF-8: '{}'",
                arg.to_string_lossy()
            )));
        };
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (text, None),
        };
        if matches!(name, "-h" | "--help" | "-V" | "--version") {
            if inline.is_some() {
                return Err(usage_error(format!("option '{name}' takes no value")));
            }
            return Ok(if matches!(name, "-h" | "--help") {
                Scan::Help
            } else {
                Scan::Version
            });
        }
        // The flags without a value.
        if name == "--read-only" || name == "--check-config" {
            if inline.is_some() {
                return Err(usage_error(format!("option '{name}' takes no value")));
            }
            if name == "--read-only" {
                raw.read_only = true;
            } else {
                raw.check = true;
            }
            continue;
        }
        if !matches!(
            name,
            "--config"
                | "--engine"
                | "--storage-path"
                | "--port"
                | "--bind"
                | "--host"
                | "--threads"
                | "--node-id"
                | "--requirepass"
                | "--metrics-bind"
        ) {
            return Err(usage_error(format!("unknown argument '{text}'")));
        }
        let value: OsString = match inline {
            Some(v) => v.into(),
            None => it
                .next()
                .ok_or_else(|| usage_error(format!("option '{name}' requires a value")))?,
        };
        match name {
            "--config" => raw.config = Some(PathBuf::from(value)),
            "--storage-path" => raw.storage_path = Some(PathBuf::from(value)),
            _ => {
                let value = value.into_string().map_err(|v| {
                    usage_error(format!(
                        "value of '{name}' is not valid UTF-8: '{}'",
                        v.to_string_lossy()
                    ))
                })?;
                let slot = match name {
                    "--engine" => &mut raw.engine,
                    "--port" => &mut raw.port,
                    "--bind" | "--host" => &mut raw.bind,
                    "--threads" => &mut raw.threads,
                    "--requirepass" => &mut raw.requirepass,
                    "--metrics-bind" => &mut raw.metrics_bind,
                    _ => &mut raw.node_id,
                };
                *slot = Some(value);
            }
        }
    }
    Ok(Scan::Run(Box::new(raw)))
}

fn invalid(flag: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Cli {
        message: format!("invalid value '{value}' for '{flag}': expected {expected}"),
    }
}

fn number(flag: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let t = value.trim();
    match t.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) && !t.starts_with('+') => Ok(n),
        _ => Err(invalid(
            flag,
            value,
            &format!("an integer in {min}..={max}"),
        )),
    }
}

impl RawArgs {
    /// Second pass: check the values.
    fn overrides(&self) -> Result<Overrides, ConfigError> {
        let engine = match &self.engine {
            Some(e) => Some(config::parse_engine(e)?),
            None => None,
        };
        let port = match &self.port {
            Some(p) => Some(number("--port", p, 0, 65535)? as u16),
            None => None,
        };
        let threads = match &self.threads {
            Some(t) => Some(number("--threads", t, 1, MAX_THREADS as u64)? as usize),
            None => None,
        };
        let non_empty = |flag: &str, v: &Option<String>| match v {
            Some(s) if s.is_empty() || s.chars().any(char::is_whitespace) => {
                Err(invalid(flag, s, "a non-empty value without spaces"))
            }
            _ => Ok(v.clone()),
        };
        if let Some(p) = &self.storage_path
            && p.as_os_str().is_empty()
        {
            return Err(invalid("--storage-path", "", "a non-empty path"));
        }
        Ok(Overrides {
            node_id: non_empty("--node-id", &self.node_id)?,
            metrics_bind: non_empty("--metrics-bind", &self.metrics_bind)?,
            host: non_empty("--bind", &self.bind)?,
            port,
            threads,
            engine,
            storage_path: self.storage_path.clone(),
            requirepass: match &self.requirepass {
                Some(p) if p.is_empty() => {
                    return Err(invalid("--requirepass", "", "a non-empty password"));
                }
                p => p.clone(),
            },
            read_only: self.read_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Engine;
    use crate::testutil::TempDir;
    use std::collections::HashMap;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("merklekv")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A working directory without config.toml (it does not exist).
    const NO_CWD: &str = "/nonexistent-merklekv-cwd";

    fn run(list: &[&str]) -> Result<CliOutcome, ConfigError> {
        parse_in(args(list), &no_env, Path::new(NO_CWD))
    }

    fn config(list: &[&str]) -> config::Config {
        match run(list) {
            Ok(CliOutcome::Run(l)) => l.config,
            other => panic!("{other:?}"),
        }
    }

    fn error(list: &[&str]) -> String {
        match run(list) {
            Err(e) => e.to_string(),
            Ok(o) => panic!("expected an error, got {o:?}"),
        }
    }

    #[test]
    fn help_and_version() {
        for flag in ["--help", "-h"] {
            match run(&[flag]).unwrap() {
                CliOutcome::Help(text) => {
                    assert!(text.contains("Usage: merklekv [OPTIONS]"));
                    assert!(text.contains("--storage-path <path>"));
                    assert!(!text.ends_with('\n'));
                }
                o => panic!("{o:?}"),
            }
        }
        for flag in ["--version", "-V"] {
            assert_eq!(
                run(&[flag]).unwrap(),
                CliOutcome::Version("merklekv 0.1.0".into())
            );
        }
        // Help does not read the configuration, and wins over later arguments.
        assert!(matches!(
            run(&["--config", "/nonexistent.toml", "--help", "--bogus"]),
            Ok(CliOutcome::Help(_))
        ));
        assert!(
            error(&["--help=1"]).starts_with("option '--help' takes no value\n\nmerklekv 0.1.0")
        );
    }

    #[test]
    fn unknown_argument_prints_usage() {
        let e = error(&["--bogus"]);
        assert!(e.starts_with("unknown argument '--bogus'\n\n"), "{e}");
        assert!(e.contains("Usage: merklekv [OPTIONS]"), "{e}");
        assert!(error(&["positional"]).starts_with("unknown argument 'positional'"));
        assert!(error(&["-x"]).starts_with("unknown argument '-x'"));
        assert!(error(&["--bogus=1"]).starts_with("unknown argument '--bogus=1'"));
        let e = error(&["--port"]);
        assert!(e.starts_with("option '--port' requires a value\n\n"), "{e}");
        assert!(e.contains("Usage:"));
    }

    #[test]
    fn flag_value_forms() {
        let a = config(&[
            "--port",
            "7400",
            "--bind",
            "0.0.0.0",
            "--threads",
            "2",
            "--node-id",
            "n9",
            "--engine",
            "sled",
            "--storage-path",
            "/tmp/d",
        ]);
        let b = config(&[
            "--port=7400",
            "--host=0.0.0.0",
            "--threads=2",
            "--node-id=n9",
            "--engine=sled",
            "--storage-path=/tmp/d",
        ]);
        assert_eq!(a, b);
        assert_eq!((a.port, a.host.as_str(), a.threads), (7400, "0.0.0.0", 2));
        assert_eq!((a.node_id.as_str(), a.engine), ("n9", Engine::Persistent));
        assert_eq!(a.storage_path, PathBuf::from("/tmp/d"));
        // Last one wins.
        assert_eq!(config(&["--port", "1", "--port=2"]).port, 2);
        assert!(config(&["--read-only"]).read_only);
        assert!(!config(&[]).read_only);
        assert!(error(&["--read-only=yes"]).starts_with("option '--read-only' takes no value"));
        match run(&["--check-config", "--port", "7400"]) {
            Ok(CliOutcome::Check(l)) => assert_eq!(l.config.port, 7400),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            config(&["--port", "0"]).port,
            0,
            "ephemeral port via the CLI"
        );
        assert_eq!(
            error(&["--port", "70000"]),
            "invalid value '70000' for '--port': expected an integer in 0..=65535"
        );
        assert!(error(&["--port=-1"]).starts_with("invalid value '-1' for '--port'"));
        assert!(error(&["--port", "+5"]).starts_with("invalid value '+5' for '--port'"));
        assert_eq!(
            error(&["--threads", "0"]),
            "invalid value '0' for '--threads': expected an integer in 1..=1024"
        );
        assert_eq!(
            error(&["--engine", "rocks"]),
            "Unknown engine type 'rocks'\nAvailable engines: rwlock, kv, sled"
        );
        assert!(error(&["--node-id="]).starts_with("invalid value '' for '--node-id'"));
        assert!(error(&["--bind", "a b"]).starts_with("invalid value 'a b' for '--bind'"));
        assert!(error(&["--storage-path="]).starts_with("invalid value '' for '--storage-path'"));
    }

    #[test]
    fn missing_config_file() {
        assert_eq!(
            error(&["--config", "/nonexistent-merklekv.toml"]),
            "configuration file \"/nonexistent-merklekv.toml\" not found"
        );
    }

    #[test]
    fn config_toml_in_working_directory() {
        let tmp = TempDir::new("cli");
        let dir = tmp.path();
        // Absent: built-in defaults.
        match parse_in(args(&[]), &no_env, dir).unwrap() {
            CliOutcome::Run(l) => {
                assert_eq!(l.source, None);
                assert_eq!(l.config.port, 7379);
            }
            o => panic!("{o:?}"),
        }
        std::fs::write(dir.join("config.toml"), "port = 7555\n").unwrap();
        match parse_in(args(&[]), &no_env, dir).unwrap() {
            CliOutcome::Run(l) => {
                assert_eq!(l.source, Some(dir.join("config.toml")));
                assert_eq!(l.config.port, 7555);
            }
            o => panic!("{o:?}"),
        }
        // --config is resolved against the same directory and wins.
        std::fs::write(dir.join("other.toml"), "port = 7556\n").unwrap();
        match parse_in(args(&["--config", "other.toml"]), &no_env, dir).unwrap() {
            CliOutcome::Run(l) => assert_eq!(l.config.port, 7556),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn precedence_defaults_file_env_cli() {
        let tmp = TempDir::new("cli");
        let dir = tmp.path();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "port = 1111\nengine = \"sled\"\nstorage_path = \"/file\"\n[replication]\nclient_id = \"file-id\"\n",
        )
        .unwrap();
        let file = file.to_str().unwrap().to_string();
        let env: HashMap<&str, &str> = [
            ("MERKLE_KV_NETWORK_BIND_PORT", "2222"),
            ("MERKLE_KV_NODE_ID", "env-id"),
            ("MERKLE_KV_STORAGE_PATH", "/env"),
        ]
        .into();
        let env_fn = |k: &str| env.get(k).map(|v| v.to_string());
        let get = |extra: &[&str], env: &dyn Fn(&str) -> Option<String>| {
            let mut list = vec!["--config", file.as_str()];
            list.extend_from_slice(extra);
            match parse_in(args(&list), env, dir).unwrap() {
                CliOutcome::Run(l) => l.config,
                o => panic!("{o:?}"),
            }
        };
        // File only.
        let c = get(&[], &no_env);
        assert_eq!((c.port, c.node_id.as_str()), (1111, "file-id"));
        assert_eq!(c.storage_path, PathBuf::from("/file"));
        assert_eq!(c.engine, Engine::Persistent);
        // Environment beats the file.
        let c = get(&[], &env_fn);
        assert_eq!((c.port, c.node_id.as_str()), (2222, "env-id"));
        assert_eq!(c.storage_path, PathBuf::from("/env"));
        // Flags beat both.
        let c = get(
            &[
                "--port",
                "3333",
                "--node-id",
                "cli-id",
                "--storage-path",
                "/cli",
                "--engine",
                "kv",
            ],
            &env_fn,
        );
        assert_eq!((c.port, c.node_id.as_str()), (3333, "cli-id"));
        assert_eq!(c.storage_path, PathBuf::from("/cli"));
        assert_eq!(c.engine, Engine::Memory);
        assert_eq!(c.replication.client_id, "file-id");
    }

    #[test]
    fn env_errors_surface() {
        let env = |k: &str| (k == "MERKLE_KV_NETWORK_THREADS").then(|| "many".to_string());
        let e = parse_in(args(&[]), &env, Path::new(NO_CWD)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable MERKLE_KV_NETWORK_THREADS: "),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_arguments() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', b'-', 0xff]);
        let list = vec![OsString::from("merklekv"), bad];
        let e = parse_in(list, &no_env, Path::new(NO_CWD))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("argument is not valid UTF-8"), "{e}");
        // A non-UTF-8 path value is fine.
        let list = vec![
            OsString::from("merklekv"),
            OsString::from("--storage-path"),
            OsString::from_vec(vec![b'/', b'd', 0xff]),
        ];
        match parse_in(list, &no_env, Path::new(NO_CWD)).unwrap() {
            CliOutcome::Run(l) => {
                assert_eq!(l.config.storage_path.as_os_str().len(), 3)
            }
            o => panic!("{o:?}"),
        }
    }
}
