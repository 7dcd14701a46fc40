//! Key expiry across processes: three nodes through a real mosquitto
//! (expiry replicates as part of the record, expiring publishes nothing,
//! roots stay equal), a 1.x event's `ttl`, and a persistent node restarted
//! after its key expired (docs/protocol.md §19).

mod common;

use std::io::Write;

use common::broker::{
    Broker, Node, eventually, info, info_u64, mqtt_publish, one, replicated_node, wait_connected,
    wait_same_hash, wait_value,
};
use common::{DEADLINE, Server, TempDir, read_line, wait_until};

fn cluster(broker: &Broker, ids: &[&str]) -> Vec<Node> {
    let nodes: Vec<Node> = ids
        .iter()
        // No background anti-entropy: discovered peers would otherwise
        // repair keys before their events arrive, and this test counts
        // exactly what replication publishes and applies.
        .map(|id| replicated_node(id, broker.port, "[anti_entropy]\nenabled = false"))
        .collect();
    for n in &nodes {
        wait_connected(n);
    }
    nodes
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends one RESP request (space-separated words) and returns the first
/// reply line.
fn resp(s: &Server, line: &str) -> String {
    let mut c = s.connect();
    let words: Vec<&str> = line.split(' ').collect();
    let mut req = format!("*{}\r\n", words.len());
    for w in words {
        req.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    c.write_all(req.as_bytes()).unwrap();
    read_line(&mut c)
}

#[test]
fn expiry_replicates_and_expiring_publishes_nothing() {
    let broker = Broker::start();
    let n = cluster(&broker, &["x1", "x2", "x3"]);
    assert_eq!(resp(&n[0], "SET short v EX 1"), "+OK");
    assert_eq!(one(&n[0], "SET p v"), "OK");
    for x in &n {
        wait_value(x, "short", "VALUE v");
        wait_value(x, "p", "VALUE v");
    }
    // EXPIRE on one node and PERSIST on another replicate (new versions).
    assert_eq!(one(&n[1], "EXPIRE p 100"), "OK");
    for x in &n {
        eventually("EXPIRE replicated", || {
            let t = one(x, "TTL p");
            t == "TTL 100" || t == "TTL 99"
        });
    }
    assert_eq!(one(&n[2], "PERSIST p"), "OK");
    for x in &n {
        eventually("PERSIST replicated", || one(x, "TTL p") == "TTL -1");
    }
    let published: Vec<u64> = n
        .iter()
        .map(|x| info_u64(x, "replication_events_published"))
        .collect();
    assert_eq!(published, [2, 1, 1]);
    // `short` is gone everywhere after its expiry, converted on every node.
    for x in &n {
        eventually("expired everywhere", || {
            one(x, "GET short") == "NOT_FOUND" && info_u64(x, "expired_keys") == 1
        });
        assert_eq!(one(x, "DBSIZE"), "DBSIZE 1");
    }
    let servers: Vec<&Server> = n.iter().map(|x| &x.server).collect();
    wait_same_hash(&servers, "");
    // Expiry published nothing and applied nothing anywhere.
    for (x, before) in n.iter().zip(&published) {
        let i = info(x);
        assert_eq!(i["replication_events_published"], before.to_string());
        assert_eq!(i["tombstones"], "1", "the tombstone of its version");
    }
    let applied: u64 = n
        .iter()
        .map(|x| info_u64(x, "replication_events_applied"))
        .sum();
    assert_eq!(
        applied,
        2 * 4,
        "each node applied the other nodes' 4 writes"
    );
}

#[test]
fn a_1x_event_with_ttl_expires() {
    let broker = Broker::start();
    let n = cluster(&broker, &["y1"]);
    let ts_ns = now_ms() * 1_000_000;
    let event = |key: &str, ttl: Option<u64>| {
        use ciborium::Value;
        let mut m = vec![
            (Value::from("v"), Value::from(1)),
            (Value::from("op"), Value::from("set")),
            (Value::from("key"), Value::from(key)),
            (
                Value::from("val"),
                Value::Array(b"old".iter().map(|&b| Value::from(b)).collect()),
            ),
            (Value::from("ts"), Value::from(ts_ns)),
            (Value::from("src"), Value::from("old-node")),
        ];
        m.push((Value::from("ttl"), ttl.map_or(Value::Null, Value::from)));
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Map(m), &mut out).unwrap();
        out
    };
    mqtt_publish(
        broker.port,
        "mkv-test/events",
        &[event("t1", Some(1)), event("forever", None)],
    );
    wait_value(&n[0], "forever", "VALUE old");
    let ttl = one(&n[0], "PTTL t1");
    // Either still there with at most 1 s left, or already expired.
    if ttl != "NOT_FOUND" {
        let ms: i64 = ttl.strip_prefix("PTTL ").unwrap().parse().unwrap();
        assert!((0..=1000).contains(&ms), "{ttl}");
    }
    eventually("1.x ttl expired", || one(&n[0], "GET t1") == "NOT_FOUND");
    assert_eq!(one(&n[0], "TTL forever"), "TTL -1");
}

#[test]
fn a_restarted_persistent_node_does_not_serve_a_key_that_expired_meanwhile() {
    let dir = TempDir::new("expiry-restart");
    let conf = dir.file(
        "node.toml",
        &format!(
            "engine = \"sled\"\nstorage_path = \"{}\"\n\n[storage]\nfsync = \"always\"\n",
            dir.path().join("data").display()
        ),
    );
    let start = || {
        Server::start(&[
            "--config",
            conf.to_str().unwrap(),
            "--node-id",
            "expiry-restart",
        ])
    };
    let mut s = start();
    let written = now_ms();
    assert_eq!(one(&s, "SETEX short 1 gone soon"), "OK");
    assert_eq!(one(&s, "SETEX long 1000 stays"), "OK");
    assert_eq!(one(&s, "SET keep v"), "OK");
    // Killed before the key expired: the log holds it with its expiry.
    s.kill9();
    assert!(wait_until(DEADLINE, || now_ms() > written + 1_100));
    let s = start();
    assert_eq!(one(&s, "GET short"), "NOT_FOUND");
    assert_eq!(one(&s, "GET long"), "VALUE stays");
    let ttl = one(&s, "TTL long");
    let secs: u64 = ttl.strip_prefix("TTL ").unwrap().parse().unwrap();
    assert!((990..=1000).contains(&secs), "{ttl}");
    assert_eq!(one(&s, "DBSIZE"), "DBSIZE 2");
}
