//! Value kinds: how a setting's value is written and checked.
//!
//! A [`Kind`] is the one description of a setting's type and bounds. The
//! file reader ([`from_toml`]), the environment reader and the built-in
//! defaults ([`from_text`]) all check values through it, so a bound is
//! written once and every source reports it with the same
//! `expected ..., got ...` text; the caller adds the file and field, or the
//! variable.

use toml::Value;

use super::error::ConfigError;
use super::types::{Engine, Role, UserConfig};

/// Default MQTT broker port (an address without `:port`).
pub const DEFAULT_BROKER_PORT: u16 = 1883;
/// The MQTT-over-TLS port used when a `mqtts://` address gives none.
pub const DEFAULT_BROKER_TLS_PORT: u16 = 8883;

/// How a setting's value is written and which values are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer in `min..=max` (`max == i64::MAX`: no upper bound).
    Int { min: i64, max: i64 },
    /// A power of two in `1..=max`.
    PowerOfTwo { max: i64 },
    /// A multiple of `of` in `min..=max`.
    Multiple { of: i64, min: i64, max: i64 },
    /// A TCP port in 1..=65535; the file also accepts it as a string of digits.
    Port,
    /// `true`/`false`; the environment also accepts 1/0, yes/no, on/off.
    Bool,
    /// Any string.
    Str,
    /// A non-empty string.
    NonEmpty,
    /// A host name or IP address: no spaces, no `/`, no scheme.
    Host,
    /// An MQTT topic prefix: non-empty, no `+` or `#`.
    Topic,
    /// An MQTT broker address (`tcp://host:port`, `mqtt://…`, `mqtts://…`
    /// or `ssl://…` for TLS, `host:port`, `host`); the environment's value
    /// is trimmed first.
    Broker,
    /// One of `names`. With `fold`, the value is trimmed and lower-cased
    /// first; the environment's value is always trimmed.
    Choice {
        names: &'static [&'static str],
        fold: bool,
    },
    /// A storage engine name (`rwlock`, `kv`, `sled`); an unknown one is
    /// [`ConfigError::UnknownEngine`], not a field error.
    Engine,
    /// Strings: a TOML array in the file, comma-separated in the
    /// environment (where an empty value means "none", not "unset").
    List,
    /// Like [`Kind::List`], each entry `host:port`.
    PeerList,
    /// Secret keys: one non-empty string or an array of them in the file,
    /// comma-separated in the environment.
    Keys,
    /// `[[security.users]]`: an array of tables with `name`, `password` or
    /// `password_sha256` (64 hex digits), and `role`. File only.
    Users,
}

/// A checked value, ready to be stored by a setting's `apply`.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Bool(bool),
    Str(String),
    List(Vec<String>),
    /// A broker address, split.
    HostPort(String, u16, bool),
    Engine(Engine),
    Users(Vec<UserConfig>),
}

// The accessors return a neutral value for a variant the kind cannot
// produce; `apply` functions only see values their own kind produced.
impl Val {
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(n) => *n,
            _ => 0,
        }
    }
    pub fn usize(&self) -> usize {
        usize::try_from(self.int()).unwrap_or(usize::MAX)
    }
    pub fn u64(&self) -> u64 {
        u64::try_from(self.int()).unwrap_or(0)
    }
    /// The integer as a number of seconds.
    pub fn secs(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.u64())
    }
    /// The integer as a number of milliseconds.
    pub fn millis(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.u64())
    }
    pub fn bool(&self) -> bool {
        matches!(self, Val::Bool(true))
    }
    pub fn string(self) -> String {
        match self {
            Val::Str(s) => s,
            _ => String::new(),
        }
    }
    pub fn list(self) -> Vec<String> {
        match self {
            Val::List(l) => l,
            _ => Vec::new(),
        }
    }
    pub fn users(self) -> Vec<UserConfig> {
        match self {
            Val::Users(u) => u,
            _ => Vec::new(),
        }
    }
}

/// Why a value was refused.
#[derive(Debug)]
pub enum Refused {
    /// `expected ..., got ...`; the caller names the file and field or the
    /// variable.
    Expected(String),
    /// A complete error (an unknown engine).
    Error(ConfigError),
}

impl From<String> for Refused {
    fn from(s: String) -> Self {
        Refused::Expected(s)
    }
}

impl Kind {
    /// What is expected, for messages: `an integer in 1..=1024`.
    pub fn expected(&self) -> String {
        match *self {
            Kind::Int { min, max } => range_text(min, max),
            Kind::PowerOfTwo { max } => format!("a power of two in 1..={max}"),
            Kind::Multiple { of, min, max } => format!("a multiple of {of} in {min}..={max}"),
            Kind::Port => range_text(1, 65535),
            Kind::Bool => "true or false".to_string(),
            Kind::List | Kind::PeerList => "an array of strings".to_string(),
            Kind::Keys => "a non-empty string or an array of them".to_string(),
            Kind::Users => "an array of tables ([[security.users]])".to_string(),
            _ => "a string".to_string(),
        }
    }

    /// The allowed values, for the README's settings table.
    pub fn allowed(&self) -> String {
        match *self {
            Kind::Int { min, max } if max == i64::MAX => format!("integer >= {min}"),
            Kind::Int { min, max } => format!("{min}..={max}"),
            Kind::PowerOfTwo { max } => format!("power of two, 1..={max}"),
            Kind::Multiple { of, min, max } => format!("multiple of {of}, {min}..={max}"),
            Kind::Port => "1..=65535".to_string(),
            Kind::Bool => "true, false".to_string(),
            Kind::Str => "string".to_string(),
            Kind::NonEmpty => "non-empty string".to_string(),
            Kind::Host => "host name or IP".to_string(),
            Kind::Topic => "topic without `+`, `#`".to_string(),
            Kind::Broker => {
                "`tcp://host:port`, `mqtts://host:port`, `host:port`, `host`".to_string()
            }
            Kind::Choice { names, .. } => names.join(", "),
            Kind::Engine => "rwlock, kv, sled".to_string(),
            Kind::List => "list of strings".to_string(),
            Kind::PeerList => "list of `host:port`".to_string(),
            Kind::Keys => "string or list of strings".to_string(),
            Kind::Users => "array of tables".to_string(),
        }
    }

    /// Whether the file gives this kind as an array.
    pub fn is_list(&self) -> bool {
        matches!(self, Kind::List | Kind::PeerList | Kind::Keys)
    }

    fn is_int(&self) -> bool {
        matches!(
            self,
            Kind::Int { .. } | Kind::PowerOfTwo { .. } | Kind::Multiple { .. } | Kind::Port
        )
    }

    /// Checks an integer against the bounds.
    fn check_int(&self, n: i64) -> Result<i64, String> {
        let ok = match *self {
            Kind::Int { min, max } => (min..=max).contains(&n),
            Kind::PowerOfTwo { max } => n >= 1 && n <= max && (n as u64).is_power_of_two(),
            Kind::Multiple { of, min, max } => (min..=max).contains(&n) && n % of == 0,
            Kind::Port => (1..=65535).contains(&n),
            _ => false,
        };
        if ok {
            Ok(n)
        } else {
            Err(format!("expected {}, got {n}", self.expected()))
        }
    }

    /// Checks one string (a string setting, or one entry of a list).
    fn check_str(&self, s: &str) -> Result<Val, Refused> {
        let text = |r: Result<String, String>| r.map(Val::Str).map_err(Refused::Expected);
        match *self {
            Kind::Str | Kind::List => Ok(Val::Str(s.to_string())),
            Kind::NonEmpty | Kind::Keys => text(check_non_empty(s)),
            Kind::Host => text(check_host(s)),
            Kind::Topic => text(check_topic(s)),
            Kind::PeerList => text(check_peer(s)),
            Kind::Broker => parse_broker_address(s)
                .map(|(h, p, tls)| Val::HostPort(h, p, tls))
                .ok_or_else(|| {
                    Refused::Expected(format!(
                        "expected \"tcp://host:port\", \"mqtt://host:port\", \
                         \"mqtts://host:port\" or \"host:port\", got {s:?}"
                    ))
                }),
            Kind::Choice { names, fold } => text(check_choice(s, names, fold)),
            Kind::Engine => parse_engine(s).map(Val::Engine).map_err(Refused::Error),
            _ => Err(Refused::Expected(format!(
                "expected {}, got {s:?}",
                self.expected()
            ))),
        }
    }
}

/// Checks a value from the TOML file. An array for a list kind is checked
/// entry by entry by the caller (which names the entry), through
/// [`list_entry`].
pub fn from_toml(kind: Kind, v: &Value) -> Result<Val, Refused> {
    let wrong = || Refused::Expected(format!("expected {}, got {}", kind.expected(), describe(v)));
    match (kind, v) {
        (Kind::Port, Value::String(s)) => Ok(Val::Int(int_from_str(kind, s)?)),
        (k, Value::Integer(n)) if k.is_int() => Ok(Val::Int(k.check_int(*n)?)),
        (Kind::Bool, Value::Boolean(b)) => Ok(Val::Bool(*b)),
        (Kind::Keys, Value::String(s)) => Ok(Val::List(vec![Kind::Keys.check_str(s)?.string()])),
        (Kind::Users, Value::Array(items)) => users(items).map(Val::Users),
        (k, _) if k.is_list() || k == Kind::Users => Err(wrong()),
        (k, Value::String(s)) if !k.is_int() && k != Kind::Bool => k.check_str(s),
        _ => Err(wrong()),
    }
}

/// Checks one entry of a TOML array of strings.
pub fn list_entry(kind: Kind, v: &Value) -> Result<String, Refused> {
    match v {
        Value::String(s) => kind.check_str(s).map(Val::string),
        v => Err(Refused::Expected(format!(
            "expected a string, got {}",
            describe(v)
        ))),
    }
}

/// Checks a value written as text: an environment variable or a built-in
/// default.
pub fn from_text(kind: Kind, s: &str) -> Result<Val, Refused> {
    match kind {
        k if k.is_int() => Ok(Val::Int(int_from_str(k, s)?)),
        Kind::Bool => Ok(Val::Bool(check_bool(s)?)),
        Kind::Broker | Kind::Choice { .. } | Kind::Engine => kind.check_str(s.trim()),
        Kind::Users => Err(Refused::Expected(
            "users can only be given in the configuration file".to_string(),
        )),
        Kind::List | Kind::PeerList | Kind::Keys => {
            let mut out = Vec::new();
            for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                out.push(kind.check_str(p)?.string());
            }
            Ok(Val::List(out))
        }
        k => k.check_str(s),
    }
}

/// Maps an `engine` value to an [`Engine`] (docs/protocol.md §8).
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
/// these without `:P` (port 1883); `mqtts://H:P` or `ssl://H:P` (TLS, port
/// 8883 by default). A trailing `/` is tolerated. Returns host, port and
/// whether the scheme asks for TLS.
pub fn parse_broker_address(s: &str) -> Option<(String, u16, bool)> {
    let lower = s.to_ascii_lowercase();
    let (rest, tls) = if lower.starts_with("tcp://") || lower.starts_with("mqtt://") {
        (&s[s.find("://")? + 3..], false)
    } else if lower.starts_with("mqtts://") || lower.starts_with("ssl://") {
        (&s[s.find("://")? + 3..], true)
    } else if s.contains("://") {
        return None; // other schemes (ws, ...) are not supported
    } else {
        (s, false)
    };
    let default_port = if tls {
        DEFAULT_BROKER_TLS_PORT
    } else {
        DEFAULT_BROKER_PORT
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some((h, p)) = parse_host_port(rest) {
        return Some((h, p, tls));
    }
    let host = match rest.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if rest.contains(':') => return None,
        None => rest,
    };
    valid_host(host).then(|| (host.to_string(), default_port, tls))
}

/// The broker address as written in the configuration (`mqtts://` for TLS).
pub fn show_broker(host: &str, port: u16, tls: bool) -> String {
    let hp = join_host_port(host, port);
    if tls { format!("mqtts://{hp}") } else { hp }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How a value looks in an error message.
pub fn describe(v: &Value) -> String {
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

/// An integer written as text (environment, default, or a port written as a
/// string in the file), checked against `kind`.
fn int_from_str(kind: Kind, s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected {}, got {s:?}", kind.expected()));
    }
    match t.parse::<i64>() {
        Ok(n) => kind.check_int(n),
        Err(_) => Err(format!("expected {}, got {t}", kind.expected())),
    }
}

fn check_choice(s: &str, names: &[&str], fold: bool) -> Result<String, String> {
    let v = if fold {
        s.trim().to_ascii_lowercase()
    } else {
        s.to_string()
    };
    if names.contains(&v.as_str()) {
        return Ok(v);
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    Err(match quoted.as_slice() {
        [a, b] => format!("expected {a} or {b}, got {s:?}"),
        _ => format!("expected one of {}, got {s:?}", quoted.join(", ")),
    })
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

fn check_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// Reads `[[security.users]]` entries (see [`Kind::Users`]).
fn users(items: &[Value]) -> Result<Vec<UserConfig>, Refused> {
    let mut out: Vec<UserConfig> = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let Value::Table(t) = item else {
            return Err(Refused::Expected(format!(
                "entry {n}: expected a table, got {}",
                describe(item)
            )));
        };
        let text = |key: &str| match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(Refused::Expected(format!(
                "entry {n}: \"{key}\": expected a string, got {}",
                describe(v)
            ))),
        };
        for key in t.keys() {
            if !["name", "password", "password_sha256", "role"].contains(&key.as_str()) {
                return Err(Refused::Expected(format!(
                    "entry {n}: unknown key \"{key}\" (expected name, password, password_sha256, role)"
                )));
            }
        }
        let name = match text("name")? {
            Some(s) if !s.is_empty() && !s.contains(|c: char| c.is_whitespace()) => s,
            _ => {
                return Err(Refused::Expected(format!(
                    "entry {n}: \"name\" must be a non-empty string without spaces"
                )));
            }
        };
        if name == "default" {
            return Err(Refused::Expected(format!(
                "entry {n}: the user \"default\" is configured by security.requirepass"
            )));
        }
        if out.iter().any(|u| u.name == name) {
            return Err(Refused::Expected(format!(
                "entry {n}: user \"{name}\" is given twice"
            )));
        }
        let password_sha256 = match (text("password")?, text("password_sha256")?) {
            (Some(p), None) if !p.is_empty() => sha256(p.as_bytes()),
            (None, Some(h)) => parse_sha256(h).ok_or_else(|| {
                Refused::Expected(format!(
                    "entry {n}: \"password_sha256\": expected 64 hex digits, got {h:?}"
                ))
            })?,
            _ => {
                return Err(Refused::Expected(format!(
                    "entry {n}: give exactly one of \"password\" (non-empty) and \"password_sha256\""
                )));
            }
        };
        let role = match text("role")? {
            Some(r) => Role::from_name(r).ok_or_else(|| {
                Refused::Expected(format!(
                    "entry {n}: \"role\": expected one of \"admin\", \"readwrite\", \"readonly\", got {r:?}"
                ))
            })?,
            None => {
                return Err(Refused::Expected(format!(
                    "entry {n}: \"role\" is missing (admin, readwrite or readonly)"
                )));
            }
        };
        out.push(UserConfig {
            name: name.to_string(),
            password_sha256,
            role,
        });
    }
    Ok(out)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// 64 hex digits (either case) as 32 bytes.
fn parse_sha256(h: &str) -> Option<[u8; 32]> {
    let b = h.as_bytes();
    if b.len() != 64 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
