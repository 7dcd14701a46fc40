use super::*;
use std::collections::HashMap;
use std::time::Duration;

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
    assert!(!r.clean_session);
    assert_eq!(r.qos, 1);
    assert!(r.peer_list.is_empty());
    let a = &c.anti_entropy;
    assert!(a.enabled);
    assert_eq!(a.interval, Duration::from_secs(15));
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
            Some((host.to_string(), port, false)),
            "{text}"
        );
    }
    for (text, host, port) in [
        ("mqtts://broker:8884", "broker", 8884),
        ("SSL://broker", "broker", 8883),
        ("ssl://127.0.0.1:1", "127.0.0.1", 1),
    ] {
        assert_eq!(
            parse_broker_address(text),
            Some((host.to_string(), port, true)),
            "{text}"
        );
    }
    for bad in [
        "",
        "tcp://",
        "ws://h:8883",
        "mqtts://",
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
    let e = err("node_id = \"n\"\n[mqtt]\nbroker_address = \"ws://h:1\"\n");
    assert_eq!(
        e,
        "config.toml: field \"mqtt.broker_address\": expected \"tcp://host:port\", \
         \"mqtt://host:port\", \"mqtts://host:port\" or \"host:port\", got \"ws://h:1\""
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
        "port = 1\nbogus = 1\n[replication]\nextra = true\n[telemetry]\nx = 1\n[mqtt]\nbroker_address = \"h\"",
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
        w.contains("config.toml: unknown table [telemetry] ignored"),
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
        requirepass: Some("pw".into()),
        metrics_bind: Some("127.0.0.1:9121".into()),
        read_only: true,
    };
    let env = env_of(&[
        ("MERKLE_KV_NODE_ID", "env"),
        ("MERKLE_KV_METRICS_BIND", "127.0.0.1:1"),
        ("MERKLE_KV_NETWORK_BIND_PORT", "2"),
        ("MERKLE_KV_READ_ONLY", "false"),
    ]);
    let c = load_str(FLAT_EXAMPLE, "f.toml", &env, &o).unwrap().config;
    assert_eq!(c.node_id, "cli");
    assert_eq!(c.replication.client_id, "node1");
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 0));
    assert_eq!(c.threads, MAX_THREADS, "clamped");
    assert_eq!(c.engine, Engine::Persistent);
    assert_eq!(c.storage_path, PathBuf::from("/cli"));
    assert_eq!(c.metrics.bind.as_deref(), Some("127.0.0.1:9121"));
    assert!(c.read_only, "--read-only wins over the environment");
}

#[test]
fn read_only_from_file_and_env() {
    let o = Overrides::default();
    let c = load_str("read_only = true\n", "f.toml", &env_of(&[]), &o).unwrap();
    assert!(c.config.read_only);
    let env = env_of(&[("MERKLE_KV_READ_ONLY", "true")]);
    assert!(load_str("", "f.toml", &env, &o).unwrap().config.read_only);
    assert!(
        !load_str("", "f.toml", &env_of(&[]), &o)
            .unwrap()
            .config
            .read_only
    );
    let e = load_str("read_only = 1\n", "f.toml", &env_of(&[]), &o).unwrap_err();
    assert!(e.to_string().contains("read_only"), "{e}");
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
        let l = load(Some(&path), &no_env, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
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

#[test]
fn security_users_and_secrets() {
    let c = ok(r#"
[security]
requirepass = "top"
protected_mode = false
[[security.users]]
name = "app"
password = "pw"
role = "readwrite"
[[security.users]]
name = "ro"
password_sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
role = "readonly"
[mqtt]
broker_address = "tcp://127.0.0.1:1883"
cluster_key = "k1"
"#);
    assert_eq!(c.security.requirepass.as_deref(), Some("top"));
    assert!(!c.security.protected_mode);
    assert_eq!(c.security.users.len(), 2);
    assert_eq!(c.security.users[0].role, Role::ReadWrite);
    assert_eq!(c.security.users[0].password_sha256, values::sha256(b"pw"));
    assert_eq!(c.security.users[1].password_sha256, values::sha256(b"test"));
    assert_eq!(c.security.users[1].role, Role::ReadOnly);
    assert_eq!(c.replication.cluster_keys, ["k1"]);
    // Anti-entropy authenticates with the default user's password.
    assert_eq!(c.anti_entropy.password.as_deref(), Some("top"));
    // Flat layout: a top-level requirepass; rotation keys as an array.
    let c = ok(
        "port = 7000\nrequirepass = \"flat\"\n[replication]\ncluster_key = [\"new\", \"old\"]\n",
    );
    assert_eq!(c.security.requirepass.as_deref(), Some("flat"));
    assert_eq!(c.replication.cluster_keys, ["new", "old"]);
    let env = parse_env(
        "",
        &[
            ("MERKLE_KV_SECURITY_REQUIREPASS", "e"),
            ("MERKLE_KV_MQTT_CLUSTER_KEY", "a,b"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(env.security.requirepass.as_deref(), Some("e"));
    assert_eq!(env.replication.cluster_keys, ["a", "b"]);
    // Debug output never shows a user's password digest.
    assert!(!format!("{:?}", c.security.users).contains("sha"));
}

#[test]
fn bad_security_users_are_refused_by_entry() {
    for (entry, needle) in [
        ("name = \"a\"\nrole = \"admin\"", "give exactly one of"),
        ("name = \"a\"\npassword = \"p\"", "\"role\" is missing"),
        (
            "name = \"a\"\npassword = \"p\"\nrole = \"root\"",
            "expected one of",
        ),
        (
            "name = \"a\"\npassword_sha256 = \"xyz\"\nrole = \"admin\"",
            "64 hex digits",
        ),
        (
            "name = \"default\"\npassword = \"p\"\nrole = \"admin\"",
            "security.requirepass",
        ),
        (
            "name = \"a b\"\npassword = \"p\"\nrole = \"admin\"",
            "without spaces",
        ),
        (
            "name = \"a\"\npassword = \"p\"\nrole = \"admin\"\npw = 1",
            "unknown key",
        ),
    ] {
        let e = parse(&format!("[[security.users]]\n{entry}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("security.users") && e.contains(needle),
            "{entry}: {e}"
        );
    }
}

#[test]
fn secret_files_are_read_after_every_layer() {
    let dir = crate::testutil::TempDir::new("cfg-secrets");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "from-file\r\nsecond\n").unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "k2\n\nk3\n").unwrap();
    let c = ok(&format!(
        "[security]\nrequirepass = \"inline\"\nrequirepass_file = \"{}\"\n\
         [mqtt]\ncluster_key = \"k1\"\ncluster_key_file = \"{}\"\n",
        pass.display(),
        keys.display()
    ));
    assert_eq!(c.security.requirepass.as_deref(), Some("from-file"));
    assert_eq!(c.replication.cluster_keys, ["k1", "k2", "k3"]);
    let e = parse("[security]\nrequirepass_file = \"/nonexistent/mkv\"\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("security.requirepass_file \"/nonexistent/mkv\""),
        "{e}"
    );
}

#[test]
fn protected_mode_needs_a_password_off_loopback() {
    let mut c = Config::default();
    assert!(secrets::check_protected(&c).is_ok());
    c.host = "0.0.0.0".into();
    let e = secrets::check_protected(&c).unwrap_err().to_string();
    assert!(
        e.contains("protected_mode = false") && e.contains("requirepass"),
        "{e}"
    );
    c.security.requirepass = Some("x".into());
    assert!(secrets::check_protected(&c).is_ok());
    c.security.requirepass = None;
    c.security.protected_mode = false;
    assert!(secrets::check_protected(&c).is_ok());
    for h in ["127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"] {
        assert!(secrets::is_loopback(h), "{h}");
    }
    for h in ["0.0.0.0", "::", "10.0.0.1", "example.com"] {
        assert!(!secrets::is_loopback(h), "{h}");
    }
}

#[test]
fn limits_defaults_layouts_env_and_derived_client_budget() {
    let c = ok("");
    assert_eq!(c.limits.maxmemory, 0);
    assert_eq!(c.limits.maxmemory_clients, 1 << 30);
    assert_eq!(c.limits.output_hard, 256 << 20);
    assert_eq!(c.limits.output_soft, 64 << 20);
    assert_eq!(c.limits.output_soft_time, Duration::from_secs(60));
    // Derived from the final maxmemory, at least 1 MiB.
    assert_eq!(
        ok("[limits]\nmaxmemory = 400000000\n")
            .limits
            .maxmemory_clients,
        100_000_000
    );
    assert_eq!(
        ok("[limits]\nmaxmemory = 1\n").limits.maxmemory_clients,
        1 << 20
    );
    let l = parse_env(
        "[limits]\nmaxmemory = 1000\n",
        &[("MERKLE_KV_LIMITS_MAXMEMORY", "4000000000")],
    )
    .unwrap();
    assert_eq!(l.config.limits.maxmemory_clients, 1_000_000_000);
    // Given explicitly: kept.
    let c = ok(
        "[limits]\nmaxmemory = 400000000\nmaxmemory_clients = 2097152\n\
        client_output_buffer_limit = 0\nclient_output_buffer_soft_limit = 5\n\
        client_output_buffer_soft_seconds = 7\n",
    );
    assert_eq!(c.limits.maxmemory_clients, 2 << 20);
    assert_eq!(c.limits.output_hard, 0);
    assert_eq!(c.limits.output_soft, 5);
    assert_eq!(c.limits.output_soft_time, Duration::from_secs(7));
    // The flat layout reads the same table.
    let c = ok("host = \"127.0.0.1\"\nport = 7000\n[limits]\nmaxmemory = 5\n");
    assert_eq!(c.limits.maxmemory, 5);
    // Bounds.
    assert!(err("[limits]\nmaxmemory_clients = 1000\n").contains("limits.maxmemory_clients"));
    assert!(err("[limits]\nmaxmemory = -1\n").contains("limits.maxmemory"));
    assert!(
        env_err(
            "",
            &[("MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_LIMIT", "lots")]
        )
        .contains("MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_LIMIT")
    );
}

/// Every `MERKLE_KV_*` variable the container files set is one the node
/// reads (a typo there would be ignored silently at run time), and the
/// compose nodes' shared file binds every interface, uses the broker
/// service and has no peer list (discovery only).
#[test]
fn container_files_name_real_settings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known: Vec<&str> = super::settings::SETTINGS
        .iter()
        .flat_map(|s| s.env.iter().copied())
        .collect();
    let mut seen = 0;
    for file in ["Dockerfile", "docker-compose.yml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (at, _) in text.match_indices("MERKLE_KV_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.ends_with('_') {
                continue; // the prefix in prose: `MERKLE_KV_*`
            }
            assert!(known.contains(&name.as_str()), "{file}: unknown {name}");
            seen += 1;
        }
    }
    assert!(seen >= 8, "{seen}");
    let c = load(
        Some(&root.join("configs/docker.toml")),
        &no_env,
        &Overrides::default(),
    )
    .unwrap()
    .config;
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(
        (
            c.replication.broker_host.as_str(),
            c.replication.broker_port
        ),
        ("mosquitto", 1883)
    );
    assert!(c.anti_entropy.enabled && c.anti_entropy.peer_list.is_empty());
    assert_eq!(c.engine, Engine::Persistent);
}
