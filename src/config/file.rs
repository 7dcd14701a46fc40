//! Reading the TOML file: layout detection, the walk over [`SETTINGS`], and
//! the few rules by which the two layouts differ.
//!
//! The file is parsed into a `toml::Table` (via the toml crate's serde
//! support) and then walked by the settings table rather than deserialised
//! into derived structs: that is what gives exact field names and ranges in
//! errors, the port-as-string leniency, and warnings (not errors) for
//! unknown keys.

use toml::{Table, Value};

use super::error::ConfigError;
use super::settings::SETTINGS;
use super::types::{Engine, Layout};
use super::values::{Refused, Val, describe, from_toml, list_entry};

/// Top-level keys and tables read only in the flat layout.
const FLAT_ONLY: [&str; 4] = ["host", "port", "replication", "sync_interval_seconds"];
/// Top-level tables read only in the nested layout.
const NESTED_ONLY: [&str; 1] = ["mqtt"];

/// The values the file gives, one slot per row of [`SETTINGS`].
pub type FileValues = Vec<Option<Val>>;

/// Parses `text` (named `file` in messages) and reads every setting it
/// gives; warnings (unknown keys, shadowed settings) go to `warnings`.
pub fn parse(
    text: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(FileValues, Layout), ConfigError> {
    let doc: Table = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
    let layout = detect_layout(&doc);
    let field_err = |field: &str, message: String| ConfigError::Field {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };

    // Tables are read before top-level keys, so that a top-level key wins
    // over the table key naming the same setting; the layout's own keys
    // and table (top-level host/port and [replication], or [mqtt]) come last.
    let phase = |name: &str| {
        let first = name.split('.').next().unwrap_or(name);
        if FLAT_ONLY.contains(&first) || NESTED_ONLY.contains(&first) {
            2
        } else if name.contains('.') {
            0
        } else {
            1
        }
    };
    let mut reads: Vec<(usize, &'static str)> = SETTINGS
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            std::iter::once(s.name)
                .chain(s.aliases.iter().copied())
                .map(move |n| (i, n))
        })
        .filter(|(_, n)| readable(n, layout))
        .collect();
    reads.sort_by_key(|(_, n)| phase(n)); // stable: row order within a phase

    let mut values: FileValues = vec![None; SETTINGS.len()];
    let mut given_by: Vec<Option<&str>> = vec![None; SETTINGS.len()];
    for (i, name) in reads {
        let kind = SETTINGS[i].kind;
        let raw = match name.split_once('.') {
            None => doc.get(name),
            Some((t, k)) => match doc.get(t) {
                None => None,
                Some(Value::Table(table)) => table.get(k),
                Some(v) => {
                    return Err(field_err(
                        t,
                        format!("expected a table, got {}", describe(v)),
                    ));
                }
            },
        };
        let Some(raw) = raw else { continue };
        let value = match raw {
            Value::Array(items) if kind.is_list() => {
                let mut out = Vec::with_capacity(items.len());
                for (n, item) in items.iter().enumerate() {
                    let entry = list_entry(kind, item)
                        .map_err(|r| refused(r, |m| field_err(&format!("{name}[{n}]"), m)))?;
                    out.push(entry);
                }
                Val::List(out)
            }
            raw => from_toml(kind, raw).map_err(|r| refused(r, |m| field_err(name, m)))?,
        };
        if let Some(earlier) = given_by[i] {
            warnings.push(shadowed(file, name, earlier));
        }
        given_by[i] = Some(name);
        values[i] = Some(value);
    }

    let tables = known_tables(layout);
    layout_rules(&doc, layout, &mut values, file, warnings);
    unknown_keys(&doc, layout, &tables, file, warnings);
    Ok((values, layout))
}

/// The rules by which the layouts differ beyond which tables they read.
fn layout_rules(
    doc: &Table,
    layout: Layout,
    values: &mut FileValues,
    file: &str,
    warnings: &mut Vec<String>,
) {
    let at = |name: &str| SETTINGS.iter().position(|s| s.name == name);
    let (Some(engine), Some(persistence), Some(node_id), Some(client_id), Some(enabled)) = (
        at("engine"),
        at("storage.persistence_enabled"),
        at("node_id"),
        at("mqtt.client_id"),
        at("replication.enabled"),
    ) else {
        return;
    };
    // `engine` is read after `storage.persistence_enabled` and wins; a
    // disagreement is worth a warning, an agreement is not.
    if let (Some(Val::Engine(e)), Some(Val::Bool(p))) = (&values[engine], &values[persistence])
        && (*e == Engine::Persistent) != *p
    {
        warnings.push(shadowed(file, "engine", "storage.persistence_enabled"));
    }
    match layout {
        // Flat layout: the replication client id is also the node id.
        Layout::Flat => {
            if values[node_id].is_none() {
                values[node_id] = values[client_id].clone();
            }
        }
        // Nested layout: the presence of [mqtt] enables replication.
        Layout::Nested => {
            if doc.get("mqtt").is_some() {
                values[enabled] = Some(Val::Bool(true));
            }
        }
    }
}

fn shadowed(file: &str, key: &str, table_key: &str) -> String {
    format!("{file}: \"{key}\" overrides \"{table_key}\"; remove one of them")
}

fn refused(r: Refused, field: impl FnOnce(String) -> ConfigError) -> ConfigError {
    match r {
        Refused::Expected(m) => field(m),
        Refused::Error(e) => e,
    }
}

/// Whether a dotted name is read in `layout`.
fn readable(name: &str, layout: Layout) -> bool {
    let first = name.split('.').next().unwrap_or(name);
    if FLAT_ONLY.contains(&first) {
        layout == Layout::Flat
    } else if NESTED_ONLY.contains(&first) {
        layout == Layout::Nested
    } else {
        true
    }
}

/// The tables named by [`SETTINGS`] that `layout` reads, in table order.
fn known_tables(layout: Layout) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in SETTINGS {
        for name in std::iter::once(&s.name).chain(s.aliases) {
            if let Some((t, _)) = name.split_once('.')
                && readable(t, layout)
                && !out.contains(&t)
            {
                out.push(t);
            }
        }
    }
    out
}

/// Whether `table.key` (or a top-level `key`) names a setting.
fn known_key(table: Option<&str>, key: &str) -> bool {
    SETTINGS
        .iter()
        .flat_map(|s| std::iter::once(&s.name).chain(s.aliases))
        .any(|name| match (table, name.split_once('.')) {
            (Some(t), Some((nt, nk))) => t == nt && key == nk,
            (None, None) => *name == key,
            _ => false,
        })
}

/// Reports every key and table that names no setting (with a hint, if any).
fn unknown_keys(
    doc: &Table,
    layout: Layout,
    tables: &[&str],
    file: &str,
    warnings: &mut Vec<String>,
) {
    let mut report = |field: String, value: &Value, hint: Option<&str>| {
        let what = if value.is_table() {
            format!("unknown table [{field}]")
        } else {
            format!("unknown key \"{field}\"")
        };
        match hint {
            Some(h) => warnings.push(format!("{file}: {what} ignored ({h})")),
            None => warnings.push(format!("{file}: {what} ignored")),
        }
    };
    for t in tables {
        if let Some(Value::Table(table)) = doc.get(*t) {
            for (key, value) in table {
                if !known_key(Some(t), key) {
                    report(format!("{t}.{key}"), value, None);
                }
            }
        }
    }
    for (key, value) in doc {
        let known = if tables.contains(&key.as_str()) {
            true
        } else {
            known_key(None, key) && readable(key, layout)
        };
        if known {
            continue;
        }
        let hint = match layout {
            Layout::Flat if NESTED_ONLY.contains(&key.as_str()) => Some(
                "[mqtt] belongs to the nested layout; this file is read as the flat \
                 layout (top-level host/port), which uses [replication]",
            ),
            Layout::Nested if FLAT_ONLY.contains(&key.as_str()) => Some(
                "this belongs to the flat layout; this file has node_id or [network] and no \
                 top-level host/port, so it is read as the nested layout, which uses [mqtt]",
            ),
            _ => None,
        };
        report(key.clone(), value, hint);
    }
}

/// Flat when the file has a top-level `host` or `port`; nested when it has
/// `node_id` or `[network]`; otherwise flat only with a flat-only item.
fn detect_layout(t: &Table) -> Layout {
    if t.contains_key("host") || t.contains_key("port") {
        Layout::Flat
    } else if t.contains_key("node_id") || t.contains_key("network") {
        Layout::Nested
    } else if FLAT_ONLY.iter().any(|k| t.contains_key(*k)) {
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
