use merklekv::config::*;
use std::time::Duration;
fn main() {
    env_logger::init();
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(7379);
    let c = Config {
        node_id: "n1".into(),
        host: "127.0.0.1".into(),
        port,
        threads: 2,
        shards: 64,
        max_connections: 10000,
        connection_timeout: None,
        engine: Engine::Memory,
        storage_path: "data".into(),
        fsync: FsyncPolicy::EverySec,
        snapshot_interval: Duration::from_secs(300),
        tombstone_ttl: Duration::from_secs(86400),
        tree_bits: 16,
        replication: ReplicationConfig {
            enabled: false,
            broker_host: "localhost".into(),
            broker_port: 1883,
            topic_prefix: "merkle_kv".into(),
            client_id: "n1".into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(60),
            clean_session: true,
            qos: 1,
            peer_list: vec![],
        },
        anti_entropy: AntiEntropyConfig {
            enabled: false,
            interval: Duration::from_secs(60),
            max_concurrent_syncs: 3,
            peer_list: vec![],
        },
        logging: LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
            file_path: None,
        },
    };
    let node = merklekv::node::Node::start(c).unwrap_or_else(|e| {
        eprintln!("Error: {e}");
        std::process::exit(1)
    });
    node.wait();
}
