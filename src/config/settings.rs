//! The settings table: every setting described once.
//!
//! Each [`Setting`] row gives the setting's name in the file, its other
//! names (the flat layout's, or a top-level shortcut), its environment
//! variables, its [`Kind`] (type and bounds), its default, its
//! documentation, how a checked value is stored into [`Config`] and how the
//! stored value is shown. The file reader, the environment reader, the
//! defaults, the README's settings table (checked by a test below) and any
//! listing of the running configuration (INFO, `CONFIG GET`) all read
//! [`SETTINGS`]; none of them names a setting's bound or default itself.
//!
//! See the module documentation of `config` for how to add a setting.

use super::types::{
    Config, Engine, FsyncPolicy, LogFormat, MAX_BUSY_POLL_US, MAX_SHARDS, MAX_THREADS,
};
use super::values::{Kind, Val, show_broker};

/// Ten years: the cap on every duration setting, so that `Instant +
/// duration` can never overflow downstream.
const MAX_SECS: i64 = 10 * 365 * 86_400;
/// No upper bound.
const ANY: i64 = i64::MAX;

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// This value, written as in the environment and checked by the
    /// setting's kind.
    Value(&'static str),
    /// Computed after all sources are read (see `resolve`); the text
    /// describes it for the documentation.
    Derived(&'static str),
    /// Set together with another setting, which carries the default.
    See(&'static str),
    /// Unset unless given (an optional or an accepted-and-ignored setting).
    Unset,
}

/// One setting. Rows are written as struct literals ending in `..BASE`, so
/// a row names only what it uses.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted name in the file (`table.key`, or `key` at the top level):
    /// the nested layout's name, which the documentation and INFO use.
    pub name: &'static str,
    /// Other names in the file. When one file gives a setting under two
    /// names, a top-level key wins over a table key (with a warning). A
    /// name in `[replication]` or `sync_interval_seconds` is read only in
    /// the flat layout, one in `[mqtt]` only in the nested layout.
    pub aliases: &'static [&'static str],
    /// Environment variables; the first one set to a non-empty value wins.
    pub env: &'static [&'static str],
    /// Type and bounds, for every source.
    pub kind: Kind,
    /// Default.
    pub initial: Initial,
    /// One sentence for the README's settings table.
    pub doc: &'static str,
    /// Hidden from listings of the running configuration (passwords).
    pub secret: bool,
    /// Stores a value checked by `kind` into the configuration.
    pub apply: fn(&mut Config, Val),
    /// The current value as written in the environment (empty: not kept).
    pub show: fn(&Config) -> String,
}

/// The fields a row need not write.
const BASE: Setting = Setting {
    name: "",
    aliases: &[],
    env: &[],
    kind: Kind::Str,
    initial: Initial::Unset,
    doc: "",
    secret: false,
    apply: |_, _| {},
    show: |_| String::new(),
};

/// Finds a setting by its name.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Every setting. Within a table (and among top-level keys) the file is
/// read in this order, and so is the environment; the order decides only
/// which of two bad values is reported.
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "description",
        doc: "Accepted and ignored.",
        ..BASE
    },
    Setting {
        name: "node_id",
        env: &["MERKLE_KV_NODE_ID"],
        kind: Kind::NonEmpty,
        initial: Initial::Derived(
            "`<hostname>-<port>`; flat layout: `replication.client_id` if given",
        ),
        doc: "Node id, the origin of replicated writes.",
        apply: |c, v| c.node_id = v.string(),
        show: |c| c.node_id.clone(),
        ..BASE
    },
    Setting {
        name: "advertise_address",
        env: &["MERKLE_KV_ADVERTISE_ADDRESS"],
        kind: Kind::Str,
        initial: Initial::Derived("the bind address and port"),
        doc: "`host:port` other nodes use for anti-entropy with this one, announced on `<prefix>/nodes/<node_id>`; never 0.0.0.0 or ::.",
        apply: |c, v| c.advertise_address = Some(v.string()),
        show: |c| c.advertise_address.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "read_only",
        env: &["MERKLE_KV_READ_ONLY"],
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "Start in read-only mode (`--read-only`): client writes get `-READONLY`, replicated and anti-entropy writes still apply; switched at run time with `READONLY on`/`off` (text), `MKV.READONLY ON`/`OFF` or `CONFIG SET read-only yes`/`no` (RESP).",
        apply: |c, v| c.read_only = v.bool(),
        show: |c| c.read_only.to_string(),
        ..BASE
    },
    Setting {
        name: "network.bind_address",
        aliases: &["host"],
        env: &["MERKLE_KV_NETWORK_BIND_ADDRESS"],
        kind: Kind::Host,
        initial: Initial::Value("127.0.0.1"),
        doc: "Address the client port binds to.",
        apply: |c, v| c.host = v.string(),
        show: |c| c.host.clone(),
        ..BASE
    },
    Setting {
        name: "network.bind_port",
        aliases: &["port"],
        env: &["MERKLE_KV_NETWORK_BIND_PORT"],
        kind: Kind::Port,
        initial: Initial::Value("7379"),
        doc: "Client port (text protocol and RESP).",
        apply: |c, v| c.port = v.int() as u16,
        show: |c| c.port.to_string(),
        ..BASE
    },
    Setting {
        name: "network.max_connections",
        env: &["MERKLE_KV_NETWORK_MAX_CONNECTIONS"],
        kind: Kind::Int { min: 1, max: ANY },
        initial: Initial::Value("10000"),
        doc: "Maximum simultaneous client connections. **Live**: `CONFIG SET maxclients` (connections beyond a lowered value stay open).",
        apply: |c, v| c.max_connections = v.usize(),
        show: |c| c.max_connections.to_string(),
        ..BASE
    },
    Setting {
        name: "network.connection_timeout",
        env: &["MERKLE_KV_NETWORK_CONNECTION_TIMEOUT"],
        kind: Kind::Int {
            min: 0,
            max: MAX_SECS,
        },
        initial: Initial::Value("0"),
        doc: "Seconds a client connection may stay idle before it is closed; 0 = never. **Live**: `CONFIG SET timeout`.",
        apply: |c, v| c.connection_timeout = (v.u64() > 0).then(|| v.secs()),
        show: |c| c.connection_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ..BASE
    },
    Setting {
        name: "network.text_protocol",
        env: &["MERKLE_KV_NETWORK_TEXT_PROTOCOL"],
        kind: Kind::Bool,
        initial: Initial::Value("true"),
        doc: "`true`: a connection whose first byte is not `*` speaks the text protocol; `false`: the port is RESP only (Redis inline commands answered in RESP).",
        apply: |c, v| c.text_protocol = v.bool(),
        show: |c| c.text_protocol.to_string(),
        ..BASE
    },
    Setting {
        name: "network.threads",
        aliases: &["threads"],
        env: &["MERKLE_KV_NETWORK_THREADS"],
        kind: Kind::Int {
            min: 1,
            max: MAX_THREADS as i64,
        },
        initial: Initial::Derived("number of cores"),
        doc: "Worker threads (event loops).",
        apply: |c, v| c.threads = v.usize(),
        show: |c| c.threads.to_string(),
        ..BASE
    },
    Setting {
        name: "network.busy_poll_us",
        env: &["MERKLE_KV_NETWORK_BUSY_POLL_US"],
        kind: Kind::Int {
            min: 0,
            max: MAX_BUSY_POLL_US as i64,
        },
        initial: Initial::Value("0"),
        doc: "Microseconds a worker keeps polling its sockets without sleeping after it last found work (lower latency, fewer wakeups; burns that CPU, so only for workers with cores of their own); 0 = sleep at once. **Live**: `CONFIG SET network.busy_poll_us`.",
        apply: |c, v| c.busy_poll_us = v.u64(),
        show: |c| c.busy_poll_us.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.maxmemory",
        env: &["MERKLE_KV_LIMITS_MAXMEMORY"],
        kind: Kind::Int { min: 0, max: ANY },
        initial: Initial::Value("0"),
        doc: "Bytes of used memory (data estimate + client buffers) above which client writes get `-OOM`; reads, deletes and replication still apply; 0 = unlimited. **Live**: `CONFIG SET maxmemory`.",
        apply: |c, v| c.limits.maxmemory = v.u64(),
        show: |c| c.limits.maxmemory.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.maxmemory_clients",
        env: &["MERKLE_KV_LIMITS_MAXMEMORY_CLIENTS"],
        kind: Kind::Int {
            min: 1 << 20,
            max: ANY,
        },
        initial: Initial::Derived(
            "`limits.maxmemory` / 4 (at least 1048576), or 1073741824 (1 GiB) when that is 0",
        ),
        doc: "Bytes of all client buffers (input, output, MULTI, WATCH, Pub/Sub subscriptions) above which the largest clients are disconnected (never one that sent `CLIENT NO-EVICT on`). **Live**: `CONFIG SET maxmemory-clients`.",
        apply: |c, v| c.limits.maxmemory_clients = v.u64(),
        show: |c| c.limits.maxmemory_clients.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.client_output_buffer_limit",
        env: &["MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_LIMIT"],
        kind: Kind::Int { min: 0, max: ANY },
        initial: Initial::Value("268435456"),
        doc: "Hard limit: bytes of pending output (including a reply being generated) at which a client is disconnected; 0 = none. **Live**: `CONFIG SET client-output-buffer-limit` (with the next two).",
        apply: |c, v| c.limits.output_hard = v.usize(),
        show: |c| c.limits.output_hard.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.client_output_buffer_soft_limit",
        env: &["MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_SOFT_LIMIT"],
        kind: Kind::Int { min: 0, max: ANY },
        initial: Initial::Value("67108864"),
        doc: "Soft limit: bytes of pending output a client may stay above for `client_output_buffer_soft_seconds`; 0 = none. **Live** (`client-output-buffer-limit`).",
        apply: |c, v| c.limits.output_soft = v.usize(),
        show: |c| c.limits.output_soft.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.client_output_buffer_soft_seconds",
        env: &["MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_SOFT_SECONDS"],
        kind: Kind::Int {
            min: 0,
            max: MAX_SECS,
        },
        initial: Initial::Value("60"),
        doc: "Seconds a client may stay above the soft output limit. **Live** (`client-output-buffer-limit`).",
        apply: |c, v| c.limits.output_soft_time = v.secs(),
        show: |c| c.limits.output_soft_time.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "limits.proto_max_bulk_len",
        env: &["MERKLE_KV_LIMITS_PROTO_MAX_BULK_LEN"],
        kind: Kind::Int {
            min: 1024,
            max: crate::store::MAX_VALUE_LEN as i64,
        },
        initial: Initial::Value("8388608"),
        doc: "Largest RESP bulk string (key, value or argument) a client may send, Redis's `proto-max-bulk-len`; a larger one gets `-ERR Protocol error: invalid bulk length` and the connection is closed. At most the store's value limit (8 MiB). **Live**: `CONFIG SET proto-max-bulk-len` (open connections take it within 250 ms).",
        apply: |c, v| c.limits.proto_max_bulk_len = v.usize(),
        show: |c| c.limits.proto_max_bulk_len.to_string(),
        ..BASE
    },
    Setting {
        name: "limits.heap_trim_threshold",
        env: &["MERKLE_KV_LIMITS_HEAP_TRIM_THRESHOLD"],
        kind: Kind::Int { min: 0, max: ANY },
        initial: Initial::Value("16777216"),
        doc: "Bytes by which the store's used-memory estimate must fall below its peak (mass expiry, deletes, FLUSHALL) before the housekeeping thread returns free heap memory to the system (`malloc_trim`, glibc only; at most once a second); 0 = never. **Live**: `CONFIG SET limits.heap_trim_threshold`.",
        apply: |c, v| c.limits.heap_trim_threshold = v.u64(),
        show: |c| c.limits.heap_trim_threshold.to_string(),
        ..BASE
    },
    Setting {
        name: "scripting.enabled",
        env: &["MERKLE_KV_SCRIPTING_ENABLED"],
        kind: Kind::Bool,
        initial: Initial::Value("true"),
        doc: "Serve Lua scripts (`EVAL`, `EVALSHA`, `FCALL`, `SCRIPT`, `FUNCTION`); `false` refuses them with `-ERR scripting is disabled`.",
        apply: |c, v| c.scripting.enabled = v.bool(),
        show: |c| c.scripting.enabled.to_string(),
        ..BASE
    },
    Setting {
        name: "scripting.busy_reply_threshold_ms",
        env: &["MERKLE_KV_SCRIPTING_BUSY_REPLY_THRESHOLD_MS"],
        kind: Kind::Int {
            min: 0,
            max: 3_600_000,
        },
        initial: Initial::Value("5000"),
        doc: "Milliseconds a script may run before other clients get `-BUSY` and `SCRIPT KILL` may stop it (Redis's `busy-reply-threshold`, alias `lua-time-limit`); until then they wait. **Live**: `CONFIG SET busy-reply-threshold`.",
        apply: |c, v| c.scripting.busy_reply_threshold = v.millis(),
        show: |c| c.scripting.busy_reply_threshold.as_millis().to_string(),
        ..BASE
    },
    Setting {
        name: "scripting.max_memory",
        env: &["MERKLE_KV_SCRIPTING_MAX_MEMORY"],
        kind: Kind::Int {
            min: 1 << 20,
            max: 1 << 40,
        },
        initial: Initial::Value("67108864"),
        doc: "Bytes the Lua heap may use (a script that allocates more fails with `-ERR script used more than scripting.max_memory`), and separately the bytes of cached script and library source (`SCRIPT LOAD` past it is refused).",
        apply: |c, v| c.scripting.max_memory = v.usize(),
        show: |c| c.scripting.max_memory.to_string(),
        ..BASE
    },
    Setting {
        name: "metrics.bind",
        env: &["MERKLE_KV_METRICS_BIND"],
        kind: Kind::NonEmpty,
        doc: "`host:port` of the HTTP listener serving `/metrics` (Prometheus text format), `/health` and `/ready`; unset: no listener (`--metrics-bind`).",
        apply: |c, v| c.metrics.bind = Some(v.string()),
        show: |c| c.metrics.bind.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "metrics.latency_tracking",
        env: &["MERKLE_KV_METRICS_LATENCY_TRACKING"],
        kind: Kind::Bool,
        initial: Initial::Value("true"),
        doc: "Time every command: INFO `usec` and `latencystats`, the `/metrics` latency histograms (Redis `latency-tracking`); `false` saves two clock reads per command. **Live**: `CONFIG SET latency-tracking yes|no`.",
        apply: |c, v| c.metrics.latency_tracking = v.bool(),
        show: |c| c.metrics.latency_tracking.to_string(),
        ..BASE
    },
    Setting {
        name: "sync_interval_seconds",
        kind: Kind::Int {
            min: 0,
            max: MAX_SECS,
        },
        doc: "Flat layout; accepted and ignored (as in 1.x).",
        ..BASE
    },
    Setting {
        name: "replication.enabled",
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "Flat layout: connect to the MQTT broker (nested layout: `[mqtt]` present).",
        apply: |c, v| c.replication.enabled = v.bool(),
        show: |c| c.replication.enabled.to_string(),
        ..BASE
    },
    Setting {
        name: "mqtt.broker_address",
        env: &["MERKLE_KV_MQTT_BROKER_ADDRESS"],
        kind: Kind::Broker,
        initial: Initial::Value("localhost:1883"),
        doc: "MQTT broker; setting it in the environment turns replication on.",
        apply: |c, v| {
            if let Val::HostPort(host, port, tls) = v {
                c.replication.broker_host = host;
                c.replication.broker_port = port;
                c.replication.tls = tls;
            }
        },
        show: |c| {
            show_broker(
                &c.replication.broker_host,
                c.replication.broker_port,
                c.replication.tls,
            )
        },
        ..BASE
    },
    Setting {
        name: "mqtt.ca_file",
        env: &["MERKLE_KV_MQTT_CA_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM CA that signed the broker's certificate; needed by an `mqtts://` address.",
        apply: |c, v| c.replication.ca_file = Some(v.string().into()),
        show: |c| show_path(&c.replication.ca_file),
        ..BASE
    },
    Setting {
        name: "mqtt.client_cert_file",
        env: &["MERKLE_KV_MQTT_CLIENT_CERT_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM client certificate presented to the broker (`mqtts://`, with `client_key_file`).",
        apply: |c, v| c.replication.client_cert_file = Some(v.string().into()),
        show: |c| show_path(&c.replication.client_cert_file),
        ..BASE
    },
    Setting {
        name: "mqtt.client_key_file",
        env: &["MERKLE_KV_MQTT_CLIENT_KEY_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM private key of `mqtt.client_cert_file`.",
        apply: |c, v| c.replication.client_key_file = Some(v.string().into()),
        show: |c| show_path(&c.replication.client_key_file),
        ..BASE
    },
    Setting {
        name: "replication.mqtt_broker",
        kind: Kind::Host,
        initial: Initial::See("mqtt.broker_address"),
        doc: "Flat layout: MQTT broker host.",
        apply: |c, v| c.replication.broker_host = v.string(),
        show: |c| c.replication.broker_host.clone(),
        ..BASE
    },
    Setting {
        name: "replication.mqtt_port",
        kind: Kind::Port,
        initial: Initial::See("mqtt.broker_address"),
        doc: "Flat layout: MQTT broker port.",
        apply: |c, v| c.replication.broker_port = v.int() as u16,
        show: |c| c.replication.broker_port.to_string(),
        ..BASE
    },
    Setting {
        name: "mqtt.topic_prefix",
        aliases: &["replication.topic_prefix"],
        env: &["MERKLE_KV_MQTT_TOPIC_PREFIX"],
        kind: Kind::Topic,
        initial: Initial::Value("merkle_kv"),
        doc: "Publish to `<prefix>/events`, subscribe to `<prefix>/events/#`.",
        apply: |c, v| c.replication.topic_prefix = v.string(),
        show: |c| c.replication.topic_prefix.clone(),
        ..BASE
    },
    Setting {
        name: "mqtt.client_id",
        aliases: &["replication.client_id"],
        env: &["MERKLE_KV_MQTT_CLIENT_ID", "CLIENT_ID"],
        kind: Kind::NonEmpty,
        initial: Initial::Derived("`node_id`"),
        doc: "MQTT client id (the environment does not change the node id).",
        apply: |c, v| c.replication.client_id = v.string(),
        show: |c| c.replication.client_id.clone(),
        ..BASE
    },
    Setting {
        name: "mqtt.qos",
        aliases: &["replication.qos"],
        kind: Kind::Int { min: 0, max: 1 },
        initial: Initial::Value("1"),
        doc: "QoS of published events.",
        apply: |c, v| c.replication.qos = v.int() as u8,
        show: |c| c.replication.qos.to_string(),
        ..BASE
    },
    Setting {
        name: "mqtt.username",
        env: &["MERKLE_KV_MQTT_USERNAME"],
        kind: Kind::Str,
        initial: Initial::Derived("the client id when a password is set"),
        doc: "MQTT user name.",
        apply: |c, v| c.replication.username = Some(v.string()),
        show: |c| c.replication.username.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "mqtt.password",
        aliases: &["replication.client_password"],
        env: &["MERKLE_KV_MQTT_PASSWORD", "CLIENT_PASSWORD"],
        kind: Kind::Str,
        doc: "MQTT password.",
        secret: true,
        apply: |c, v| c.replication.password = Some(v.string()),
        show: |c| c.replication.password.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "mqtt.keep_alive",
        env: &["MERKLE_KV_MQTT_KEEP_ALIVE"],
        kind: Kind::Int { min: 0, max: 65535 },
        initial: Initial::Value("60"),
        doc: "MQTT keep-alive interval in seconds.",
        apply: |c, v| c.replication.keep_alive = v.secs(),
        show: |c| c.replication.keep_alive.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "mqtt.clean_session",
        env: &["MERKLE_KV_MQTT_CLEAN_SESSION"],
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "MQTT clean-session flag. Default false: a persistent session under the stable client id, so the broker queues events (QoS 1) while the node reconnects.",
        apply: |c, v| c.replication.clean_session = v.bool(),
        show: |c| c.replication.clean_session.to_string(),
        ..BASE
    },
    Setting {
        name: "mqtt.cluster_key",
        aliases: &["replication.cluster_key"],
        env: &["MERKLE_KV_MQTT_CLUSTER_KEY"],
        kind: Kind::Keys,
        doc: "Key(s) signing and verifying event batches and presence messages (HMAC-SHA256); the first signs; comma-separated in the environment.",
        secret: true,
        apply: |c, v| c.replication.cluster_keys = v.list(),
        show: |c| c.replication.cluster_keys.join(","),
        ..BASE
    },
    Setting {
        name: "mqtt.cluster_key_file",
        aliases: &["replication.cluster_key_file"],
        env: &["MERKLE_KV_MQTT_CLUSTER_KEY_FILE"],
        kind: Kind::NonEmpty,
        doc: "File of cluster keys, one per line, after `cluster_key`'s.",
        apply: |c, v| c.replication.cluster_key_file = Some(v.string().into()),
        show: |c| {
            c.replication
                .cluster_key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        },
        ..BASE
    },
    Setting {
        name: "replication.peer_list",
        kind: Kind::List,
        doc: "Flat layout: only counted by `REPLICATE status`; any strings.",
        apply: |c, v| c.replication.peer_list = v.list(),
        show: |c| c.replication.peer_list.join(","),
        ..BASE
    },
    Setting {
        name: "storage.memory_limit_mb",
        kind: Kind::Int { min: 0, max: ANY },
        doc: "Accepted and ignored.",
        ..BASE
    },
    Setting {
        name: "storage.backup_interval_hours",
        kind: Kind::Int { min: 0, max: ANY },
        doc: "Accepted and ignored.",
        ..BASE
    },
    Setting {
        name: "storage.persistence_enabled",
        env: &["MERKLE_KV_STORAGE_PERSISTENCE_ENABLED"],
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "`true` selects the persistent engine (as `engine = \"sled\"`).",
        apply: |c, v| {
            c.engine = if v.bool() {
                Engine::Persistent
            } else {
                Engine::Memory
            }
        },
        show: |c| (c.engine == Engine::Persistent).to_string(),
        ..BASE
    },
    Setting {
        name: "storage.storage_path",
        aliases: &["storage_path"],
        env: &["MERKLE_KV_STORAGE_PATH"],
        kind: Kind::NonEmpty,
        initial: Initial::Value("data"),
        doc: "Directory of the persistent engine.",
        apply: |c, v| c.storage_path = v.string().into(),
        show: |c| c.storage_path.display().to_string(),
        ..BASE
    },
    Setting {
        name: "engine",
        kind: Kind::Engine,
        initial: Initial::Value("rwlock"),
        doc: "Storage engine: `rwlock` or `kv` (in memory), `sled` (persistent).",
        apply: |c, v| {
            if let Val::Engine(e) = v {
                c.engine = e;
            }
        },
        show: |c| match c.engine {
            Engine::Memory => "rwlock".to_string(),
            Engine::Persistent => "sled".to_string(),
        },
        ..BASE
    },
    Setting {
        name: "storage.shards",
        kind: Kind::PowerOfTwo {
            max: MAX_SHARDS as i64,
        },
        initial: Initial::Value("64"),
        doc: "Store shards.",
        apply: |c, v| c.shards = v.usize(),
        show: |c| c.shards.to_string(),
        ..BASE
    },
    Setting {
        name: "storage.fsync",
        env: &["MERKLE_KV_STORAGE_FSYNC"],
        kind: Kind::Choice {
            names: &FsyncPolicy::NAMES,
            fold: false,
        },
        initial: Initial::Value("everysec"),
        doc: "When the append-only log is fsynced: before the reply, once a second, or as the OS decides.",
        apply: |c, v| c.fsync = FsyncPolicy::from_name(&v.string()).unwrap_or(c.fsync),
        show: |c| c.fsync.name().to_string(),
        ..BASE
    },
    Setting {
        name: "storage.snapshot_interval_seconds",
        kind: Kind::Int {
            min: 1,
            max: MAX_SECS,
        },
        initial: Initial::Value("300"),
        doc: "Seconds between snapshots of the persistent engine.",
        apply: |c, v| c.snapshot_interval = v.secs(),
        show: |c| c.snapshot_interval.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "storage.tombstone_ttl_seconds",
        kind: Kind::Int {
            min: 1,
            max: MAX_SECS,
        },
        initial: Initial::Value("86400"),
        doc: "Seconds a delete's tombstone is kept before it is collected.",
        apply: |c, v| c.tombstone_ttl = v.secs(),
        show: |c| c.tombstone_ttl.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "storage.max_clock_skew_seconds",
        env: &["MERKLE_KV_STORAGE_MAX_CLOCK_SKEW_SECONDS"],
        kind: Kind::Int {
            min: 1,
            max: MAX_SECS,
        },
        initial: Initial::Value("60"),
        doc: "Seconds a version received from another node (MQTT, anti-entropy, SYNC) or \
              replayed from disk may be ahead of the local clock; later ones are refused.",
        apply: |c, v| c.max_clock_skew = v.secs(),
        show: |c| c.max_clock_skew.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.enabled",
        env: &["MERKLE_KV_ANTI_ENTROPY_ENABLED"],
        kind: Kind::Bool,
        initial: Initial::Value("true"),
        doc: "Run background anti-entropy rounds (when `peer_list` is not empty).",
        apply: |c, v| c.anti_entropy.enabled = v.bool(),
        show: |c| c.anti_entropy.enabled.to_string(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.interval_seconds",
        env: &["MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS"],
        kind: Kind::Int {
            min: 1,
            max: MAX_SECS,
        },
        initial: Initial::Value("15"),
        doc: "Seconds between anti-entropy rounds (a round also starts early, at most once a second, when replication lost events). **Live**: `CONFIG SET anti_entropy.interval_seconds` (the next round comes that long after the last one).",
        apply: |c, v| c.anti_entropy.interval = v.secs(),
        show: |c| c.anti_entropy.interval.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.peer_discovery_interval",
        kind: Kind::Int {
            min: 0,
            max: MAX_SECS,
        },
        doc: "Accepted and ignored.",
        ..BASE
    },
    Setting {
        name: "anti_entropy.max_concurrent_syncs",
        env: &["MERKLE_KV_ANTI_ENTROPY_MAX_CONCURRENT_SYNCS"],
        kind: Kind::Int { min: 1, max: 1024 },
        initial: Initial::Value("3"),
        doc: "Peers synchronised at once.",
        apply: |c, v| c.anti_entropy.max_concurrent_syncs = v.usize(),
        show: |c| c.anti_entropy.max_concurrent_syncs.to_string(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.peer_list",
        env: &["MERKLE_KV_ANTI_ENTROPY_PEER_LIST"],
        kind: Kind::PeerList,
        doc: "Peers' client ports; comma-separated in the environment.",
        apply: |c, v| c.anti_entropy.peer_list = v.list(),
        show: |c| c.anti_entropy.peer_list.join(","),
        ..BASE
    },
    Setting {
        name: "anti_entropy.tls",
        env: &["MERKLE_KV_ANTI_ENTROPY_TLS"],
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "Connect to peers (anti-entropy, SYNC) with TLS; the node's `tls.cert_file` is its client certificate.",
        apply: |c, v| c.anti_entropy.tls = v.bool(),
        show: |c| c.anti_entropy.tls.to_string(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.ca_file",
        env: &["MERKLE_KV_ANTI_ENTROPY_CA_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM CA that signed the peers' certificates (`anti_entropy.tls`).",
        apply: |c, v| c.anti_entropy.ca_file = Some(v.string().into()),
        show: |c| show_path(&c.anti_entropy.ca_file),
        ..BASE
    },
    Setting {
        name: "anti_entropy.username",
        env: &["MERKLE_KV_ANTI_ENTROPY_USERNAME"],
        kind: Kind::NonEmpty,
        initial: Initial::Derived("`default`"),
        doc: "User that anti-entropy and SYNC authenticate as on peers.",
        apply: |c, v| c.anti_entropy.username = Some(v.string()),
        show: |c| c.anti_entropy.username.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.password",
        env: &["MERKLE_KV_ANTI_ENTROPY_PASSWORD"],
        kind: Kind::Str,
        initial: Initial::Derived("`security.requirepass`"),
        doc: "Password that anti-entropy and SYNC authenticate with on peers.",
        secret: true,
        apply: |c, v| c.anti_entropy.password = Some(v.string()),
        show: |c| c.anti_entropy.password.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "anti_entropy.tree_bits",
        kind: Kind::Multiple {
            of: 4,
            min: 4,
            max: 24,
        },
        initial: Initial::Value("16"),
        doc: "Merkle tree depth: 2^tree_bits leaf buckets; must be equal on every node.",
        apply: |c, v| c.tree_bits = v.int() as u32,
        show: |c| c.tree_bits.to_string(),
        ..BASE
    },
    Setting {
        name: "cluster.forget_offline_after_seconds",
        env: &["MERKLE_KV_CLUSTER_FORGET_OFFLINE_AFTER_SECONDS"],
        kind: Kind::Int {
            min: 0,
            max: MAX_SECS,
        },
        initial: Initial::Value("86400"),
        doc: "Seconds after which a member seen offline is dropped from the member table (`NODES`) and its retained presence cleared; 0 = never.",
        apply: |c, v| c.forget_offline_after = v.secs(),
        show: |c| c.forget_offline_after.as_secs().to_string(),
        ..BASE
    },
    Setting {
        name: "security.requirepass",
        aliases: &["requirepass"],
        env: &["MERKLE_KV_SECURITY_REQUIREPASS"],
        kind: Kind::NonEmpty,
        doc: "Password of the built-in user `default` (role admin); unset: no authentication.",
        secret: true,
        apply: |c, v| c.security.requirepass = Some(v.string()),
        show: |c| c.security.requirepass.clone().unwrap_or_default(),
        ..BASE
    },
    Setting {
        name: "security.requirepass_file",
        env: &["MERKLE_KV_SECURITY_REQUIREPASS_FILE"],
        kind: Kind::NonEmpty,
        doc: "File whose first line is the `default` user's password (wins over `requirepass`).",
        apply: |c, v| c.security.requirepass_file = Some(v.string().into()),
        show: |c| {
            c.security
                .requirepass_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        },
        ..BASE
    },
    Setting {
        name: "security.users",
        kind: Kind::Users,
        doc: "`[[security.users]]` entries: `name`, `password` or `password_sha256`, `role`.",
        secret: true,
        apply: |c, v| c.security.users = v.users(),
        show: |c| {
            let users: Vec<String> = c
                .security
                .users
                .iter()
                .map(|u| format!("{}:{}", u.name, u.role.name()))
                .collect();
            users.join(",")
        },
        ..BASE
    },
    Setting {
        name: "security.protected_mode",
        env: &["MERKLE_KV_SECURITY_PROTECTED_MODE"],
        kind: Kind::Bool,
        initial: Initial::Value("true"),
        doc: "Refuse to start on a non-loopback address without a password.",
        apply: |c, v| c.security.protected_mode = v.bool(),
        show: |c| c.security.protected_mode.to_string(),
        ..BASE
    },
    Setting {
        name: "security.max_auth_failures",
        env: &["MERKLE_KV_SECURITY_MAX_AUTH_FAILURES"],
        kind: Kind::Int { min: 1, max: 1000 },
        initial: Initial::Value("10"),
        doc: "Failed AUTH attempts after which a connection is closed. **Live**: `CONFIG SET security.max_auth_failures`.",
        apply: |c, v| c.security.max_auth_failures = v.usize(),
        show: |c| c.security.max_auth_failures.to_string(),
        ..BASE
    },
    Setting {
        name: "security.auth_failure_delay_ms",
        env: &["MERKLE_KV_SECURITY_AUTH_FAILURE_DELAY_MS"],
        kind: Kind::Int {
            min: 0,
            max: 10_000,
        },
        initial: Initial::Value("200"),
        doc: "Milliseconds a connection's reply to a failed AUTH is delayed (nothing else on it runs meanwhile); 0: none. **Live**: `CONFIG SET security.auth_failure_delay_ms`.",
        apply: |c, v| c.security.auth_failure_delay = v.millis(),
        show: |c| c.security.auth_failure_delay.as_millis().to_string(),
        ..BASE
    },
    Setting {
        name: "logging.level",
        env: &["MERKLE_KV_LOGGING_LEVEL"],
        kind: Kind::Choice {
            names: &["trace", "debug", "info", "warn", "error", "off"],
            fold: true,
        },
        initial: Initial::Value("info"),
        doc: "Log level; `RUST_LOG` wins when set. **Live**: `CONFIG SET logging.level` or Redis's `loglevel` (`debug` = trace, `verbose` = debug, `notice` = info, `warning` = warn); with `RUST_LOG` directives it only caps them.",
        apply: |c, v| c.logging.level = v.string(),
        show: |c| c.logging.level.clone(),
        ..BASE
    },
    Setting {
        name: "logging.format",
        kind: Kind::Choice {
            names: &["json", "text"],
            fold: true,
        },
        initial: Initial::Value("text"),
        doc: "Log line format.",
        apply: |c, v| {
            c.logging.format = if v.string() == "json" {
                LogFormat::Json
            } else {
                LogFormat::Text
            }
        },
        show: |c| match c.logging.format {
            LogFormat::Json => "json".to_string(),
            LogFormat::Text => "text".to_string(),
        },
        ..BASE
    },
    Setting {
        name: "logging.file_path",
        kind: Kind::NonEmpty,
        doc: "Log to this file instead of stderr.",
        apply: |c, v| c.logging.file_path = Some(v.string().into()),
        show: |c| {
            c.logging
                .file_path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        },
        ..BASE
    },
    Setting {
        name: "tls.cert_file",
        env: &["MERKLE_KV_TLS_CERT_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM certificate chain for TLS on the client port (with `tls.key_file`; reread on SIGHUP).",
        apply: |c, v| c.tls.cert_file = Some(v.string().into()),
        show: |c| show_path(&c.tls.cert_file),
        ..BASE
    },
    Setting {
        name: "tls.key_file",
        env: &["MERKLE_KV_TLS_KEY_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM private key of `tls.cert_file`.",
        apply: |c, v| c.tls.key_file = Some(v.string().into()),
        show: |c| show_path(&c.tls.key_file),
        ..BASE
    },
    Setting {
        name: "tls.client_ca_file",
        env: &["MERKLE_KV_TLS_CLIENT_CA_FILE"],
        kind: Kind::NonEmpty,
        doc: "PEM CA: TLS clients must present a certificate it signed (mutual TLS).",
        apply: |c, v| c.tls.client_ca_file = Some(v.string().into()),
        show: |c| show_path(&c.tls.client_ca_file),
        ..BASE
    },
    Setting {
        name: "tls.required",
        env: &["MERKLE_KV_TLS_REQUIRED"],
        kind: Kind::Bool,
        initial: Initial::Value("false"),
        doc: "Refuse plaintext connections on the client port (one error reply, then close).",
        apply: |c, v| c.tls.required = v.bool(),
        show: |c| c.tls.required.to_string(),
        ..BASE
    },
];

/// A path setting's value as shown (empty when unset).
fn show_path(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map_or(String::new(), |p| p.display().to_string())
}

impl Setting {
    /// This setting's row of the README's settings table.
    pub fn readme_row(&self) -> String {
        let code = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let default = match self.initial {
            Initial::Value(v) => format!("`{v}`"),
            Initial::Derived(text) => text.to_string(),
            Initial::See(other) => format!("see `{other}`"),
            Initial::Unset => "none".to_string(),
        };
        format!(
            "| `{}` | {} | {} | {} | {} | {} |",
            self.name,
            code(self.aliases),
            code(self.env),
            default,
            self.kind.allowed(),
            self.doc
        )
    }
}

/// The resolved configuration as `name = value` lines, one per setting
/// that has a value (`--check-config`); a secret set shows as `(secret)`.
pub fn listing(c: &Config) -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let v = (s.show)(c);
        if v.is_empty() {
            continue;
        }
        let v = if s.secret { "(secret)".to_string() } else { v };
        out.push_str(&format!("{} = {v}\n", s.name));
    }
    out
}

/// The README's settings table, header included.
pub fn readme_table() -> String {
    let mut out = String::from(
        "| Setting | Also read as | Environment | Default | Values | Meaning |\n\
         |---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&s.readme_row());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::values::from_text;
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut seen = Vec::new();
        for s in SETTINGS {
            for name in std::iter::once(&s.name).chain(s.aliases).chain(s.env) {
                assert!(!seen.contains(name), "{name} appears twice");
                seen.push(*name);
            }
        }
    }

    /// Every default passes its own kind, and a default configuration shows
    /// exactly the documented default.
    #[test]
    fn defaults_are_valid_and_applied() {
        let c = Config::default();
        for s in SETTINGS {
            match s.initial {
                Initial::Value(v) => {
                    assert!(
                        from_text(s.kind, v).is_ok(),
                        "{}: bad default {v:?}",
                        s.name
                    );
                    assert_eq!((s.show)(&c), v, "{}", s.name);
                }
                Initial::See(other) => {
                    assert!(find(other).is_some(), "{}: see {other}", s.name);
                }
                Initial::Derived(_) | Initial::Unset => {}
            }
        }
    }

    #[test]
    fn listing_hides_secrets() {
        let mut c = Config::default();
        c.security.requirepass = Some("hunter2".into());
        let l = listing(&c);
        assert!(l.contains("security.requirepass = (secret)\n"), "{l}");
        assert!(!l.contains("hunter2"), "{l}");
        assert!(l.contains("network.bind_port = 7379\n"), "{l}");
        assert!(
            !l.contains("mqtt.password"),
            "unset settings are left out: {l}"
        );
    }

    /// README.md's settings table is exactly [`readme_table`]: a setting
    /// added here must be documented there (paste the table printed on
    /// failure).
    #[test]
    fn readme_lists_every_setting() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let want = readme_table();
        let header = want.lines().next().unwrap();
        let found: String = match readme.find(header) {
            Some(at) => readme[at..]
                .lines()
                .take_while(|l| l.starts_with('|'))
                .map(|l| format!("{l}\n"))
                .collect(),
            None => String::new(),
        };
        assert!(
            found == want,
            "README.md's settings table is out of date; replace it with:\n\n{want}"
        );
    }
}
