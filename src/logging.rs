//! Logging setup on top of `env_logger`.
//!
//! - Level: `RUST_LOG` (when set and non-empty) wins over `logging.level`, so
//!   supervisors keep control; `RUST_LOG` may hold full env_logger directives
//!   (`info,merklekv::replication=debug`).
//! - Format: `text` is env_logger's usual line; `json` writes one object per
//!   line, `{"ts":"<RFC 3339, ms>","level":"info","target":"…","msg":"…"}`,
//!   with strings escaped per RFC 8259.
//! - Destination: stderr, or `logging.file_path` opened for appending (parent
//!   directories created). If the file cannot be opened the logger falls back
//!   to stderr and logs a warning saying why: a bad log path must not stop a
//!   node from serving.
//! - Changing the level at run time (`CONFIG SET loglevel` / `logging.level`,
//!   [`set_level`]): with a plain level (no `RUST_LOG` directives) the
//!   logger itself passes every record and the `log` crate's global maximum
//!   level (an atomic every log macro checks first) is the only filter, so
//!   raising or lowering it takes effect in every thread at once. With
//!   `RUST_LOG` directives the directives stay in force and the maximum
//!   level only caps them.
//! - [`init`] may be called more than once (tests): only the first call
//!   installs a logger, later calls do nothing.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::config::{LogFormat, LoggingConfig};

/// Installs the global logger described by `cfg` (see the module docs).
pub fn init(cfg: &LoggingConfig) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (mut builder, warning) = builder(cfg, rust_log.as_deref());
    if builder.try_init().is_ok() {
        if let Some(level) = plain_level(filter_spec(&cfg.level, rust_log.as_deref())) {
            log::set_max_level(level);
        }
        if let Some(w) = warning {
            log::warn!("{w}");
        }
    }
}

/// The level a filter spec names when it is a plain level (`info`), not
/// env_logger directives.
fn plain_level(spec: &str) -> Option<log::LevelFilter> {
    spec.trim().parse().ok()
}

/// The log level in force (the `log` crate's maximum level).
pub fn level() -> log::LevelFilter {
    log::max_level()
}

/// Changes the log level in every thread (see the module docs).
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Redis's `loglevel` names, most verbose first, with the level each
/// means here: `debug` is everything, `notice` (Redis's default) is
/// `info` (MerkleKV's default), `warning` is `warn`.
pub const REDIS_LEVELS: [(&str, log::LevelFilter); 4] = [
    ("debug", log::LevelFilter::Trace),
    ("verbose", log::LevelFilter::Debug),
    ("notice", log::LevelFilter::Info),
    ("warning", log::LevelFilter::Warn),
];

/// Redis's name for `level` (`error` and `off` are quieter than any
/// Redis level and shown as `warning`).
pub fn redis_level_name(level: log::LevelFilter) -> &'static str {
    REDIS_LEVELS
        .iter()
        .find(|(_, l)| *l == level)
        .map_or("warning", |(n, _)| n)
}

/// The filter directives to use: `RUST_LOG` if set and non-empty, else the
/// configured level.
fn filter_spec<'a>(level: &'a str, rust_log: Option<&'a str>) -> &'a str {
    match rust_log.map(str::trim) {
        Some(s) if !s.is_empty() => s,
        _ => level,
    }
}

/// Builds (but does not install) the logger; also returns a warning to log
/// once it is installed.
fn builder(cfg: &LoggingConfig, rust_log: Option<&str>) -> (env_logger::Builder, Option<String>) {
    let mut b = env_logger::Builder::new();
    let spec = filter_spec(&cfg.level, rust_log);
    // A plain level is applied as the global maximum level after init, so
    // that it can be raised at run time; directives filter here.
    b.parse_filters(if plain_level(spec).is_some() {
        "trace"
    } else {
        spec
    });
    if cfg.format == LogFormat::Json {
        b.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            write_json(buf, &ts, record)
        });
    }
    let mut warning = None;
    if let Some(path) = &cfg.file_path {
        match open_log_file(path) {
            Ok(file) => {
                b.target(env_logger::Target::Pipe(Box::new(file)));
                b.write_style(env_logger::WriteStyle::Never);
            }
            Err(e) => {
                warning = Some(format!(
                    "cannot open log file \"{}\": {e}; logging to stderr",
                    path.display()
                ));
            }
        }
    }
    (b, warning)
}

/// Opens `path` for appending, creating it and its parent directories.
fn open_log_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Writes one record as a single JSON line.
fn write_json(out: &mut dyn Write, ts: &str, record: &log::Record<'_>) -> io::Result<()> {
    let mut line = String::with_capacity(96);
    line.push_str("{\"ts\":\"");
    push_escaped(&mut line, ts);
    line.push_str("\",\"level\":\"");
    line.push_str(level_name(record.level()));
    line.push_str("\",\"target\":\"");
    push_escaped(&mut line, record.target());
    line.push_str("\",\"msg\":\"");
    // Formatting into the escaper cannot fail: it only appends to a String.
    let _ = write!(JsonEscaper(&mut line), "{}", record.args());
    line.push_str("\"}\n");
    out.write_all(line.as_bytes())
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Appends `s` to `out` as the inside of a JSON string literal.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            // Other control characters, and the two line separators that
            // break JavaScript-based log viewers.
            c if c < '\u{20}' || c == '\u{7F}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A `fmt::Write` that JSON-escapes everything written through it, so a log
/// message is escaped while it is formatted, without an extra buffer.
struct JsonEscaper<'a>(&'a mut String);

impl fmt::Write for JsonEscaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn json_line(level: log::Level, target: &str, args: fmt::Arguments<'_>) -> String {
        let record = log::Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .build();
        let mut out = Vec::new();
        write_json(&mut out, "2026-01-02T03:04:05.678Z", &record).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_line_format() {
        assert_eq!(
            json_line(
                log::Level::Info,
                "merklekv::server",
                format_args!("listening on {}", 7379)
            ),
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\",\"target\":\"merklekv::server\",\"msg\":\"listening on 7379\"}\n"
        );
        assert!(json_line(log::Level::Warn, "t", format_args!("x")).contains("\"level\":\"warn\""));
    }

    #[test]
    fn json_escaping() {
        let line = json_line(
            log::Level::Error,
            "a\"b",
            format_args!("q\" b\\ n\n r\r t\t nul\0 bell\u{7} del\u{7f} ls\u{2028} é ✓"),
        );
        assert_eq!(
            line,
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"error\",\"target\":\"a\\\"b\",\
             \"msg\":\"q\\\" b\\\\ n\\n r\\r t\\t nul\\u0000 bell\\u0007 del\\u007f ls\\u2028 é ✓\"}\n"
        );
        assert_eq!(line.matches('\n').count(), 1, "one record, one line");
    }

    #[test]
    fn plain_levels_and_redis_names() {
        assert_eq!(plain_level("info"), Some(log::LevelFilter::Info));
        assert_eq!(plain_level("OFF"), Some(log::LevelFilter::Off));
        assert_eq!(plain_level("info,merklekv=debug"), None);
        assert_eq!(redis_level_name(log::LevelFilter::Info), "notice");
        assert_eq!(redis_level_name(log::LevelFilter::Trace), "debug");
        assert_eq!(redis_level_name(log::LevelFilter::Error), "warning");
    }

    #[test]
    fn rust_log_wins() {
        assert_eq!(filter_spec("info", None), "info");
        assert_eq!(filter_spec("info", Some("")), "info");
        assert_eq!(filter_spec("info", Some("  ")), "info");
        assert_eq!(filter_spec("info", Some("debug")), "debug");
        assert_eq!(
            filter_spec("warn", Some("info,merklekv=trace")),
            "info,merklekv=trace"
        );
    }

    #[test]
    fn log_file_is_created_and_appended() {
        let dir = TempDir::new("logging-dir");
        let path = dir.path().join("nested/node.log");
        open_log_file(&path).unwrap().write_all(b"one\n").unwrap();
        open_log_file(&path).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn unopenable_log_file_falls_back_to_stderr() {
        let dir = TempDir::new("logging-blocker");
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"a file, not a directory").unwrap();
        let cfg = LoggingConfig {
            level: "info".into(),
            format: LogFormat::Json,
            file_path: Some(blocker.join("node.log")),
        };
        let (_builder, warning) = builder(&cfg, None);
        let w = warning.expect("a warning");
        assert!(w.starts_with("cannot open log file \""), "{w}");
        assert!(w.ends_with("; logging to stderr"), "{w}");
    }

    #[test]
    fn json_records_reach_the_file() {
        use log::Log;
        let dir = TempDir::new("logging-e2e");
        let path = dir.path().join("logs/node.log");
        let cfg = LoggingConfig {
            level: "info".into(),
            format: LogFormat::Json,
            file_path: Some(path.clone()),
        };
        let (mut b, warning) = builder(&cfg, None);
        assert_eq!(warning, None);
        let logger = b.build();
        // A plain level is the global maximum level (set by `init`), not
        // a filter of the logger: only the info record is sent here.
        logger.log(
            &log::Record::builder()
                .level(log::Level::Info)
                .target("merklekv::t")
                .args(format_args!("a \"b\""))
                .build(),
        );
        logger.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].starts_with("{\"ts\":\""), "{text}");
        assert!(
            lines[0].ends_with(
                "Z\",\"level\":\"info\",\"target\":\"merklekv::t\",\"msg\":\"a \\\"b\\\"\"}"
            ),
            "{text}"
        );
        // RUST_LOG wins over the configured level.
        let (mut b, _) = builder(&cfg, Some("debug"));
        assert!(
            b.build()
                .enabled(&log::Metadata::builder().level(log::Level::Debug).build())
        );
        // Directives filter in the logger itself.
        let (mut b, _) = builder(&cfg, Some("warn,other=debug"));
        let info = log::Metadata::builder()
            .level(log::Level::Info)
            .target("merklekv::t")
            .build();
        assert!(!b.build().enabled(&info));
    }

    #[test]
    fn init_twice_is_harmless() {
        let cfg = LoggingConfig {
            level: "warn".into(),
            format: LogFormat::Text,
            file_path: None,
        };
        init(&cfg);
        init(&cfg);
        log::debug!("not shown");
    }
}
