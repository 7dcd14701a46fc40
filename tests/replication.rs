//! MQTT replication end to end: real `merklekv` processes and a real
//! mosquitto per test (docs/protocol.md §9, REPLICATE in §3.2).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::broker::{
    Broker, Node, eventually, get_value, info, info_u64, mqtt_publish, node_with_config, one,
    replicated_node, wait_connected, wait_same_hash, wait_value,
};
use common::{DEADLINE, TempDir, cmd, free_port, read_line};
use merklekv::replication::{ChangeEvent, wire};
use merklekv::store::{Version, node_hash, now_millis};

const TOPIC: &str = "mkv-test/events";

fn cluster(broker: &Broker, ids: &[&str]) -> Vec<Node> {
    let nodes: Vec<Node> = ids
        .iter()
        .map(|id| replicated_node(id, broker.port, ""))
        .collect();
    for n in &nodes {
        wait_connected(n);
    }
    nodes
}

fn servers(nodes: &[Node]) -> Vec<&common::Server> {
    nodes.iter().map(|n| &n.server).collect()
}

#[test]
fn writes_of_every_kind_replicate_to_all_nodes() {
    let broker = Broker::start();
    let n = cluster(&broker, &["n1", "n2", "n3"]);
    let others = |i: usize| {
        n.iter()
            .enumerate()
            .filter(move |(j, _)| *j != i)
            .map(|(_, x)| x)
    };

    assert_eq!(one(&n[0], "SET k1 hello"), "OK");
    others(0).for_each(|x| wait_value(x, "k1", "VALUE hello"));

    assert_eq!(one(&n[1], "APPEND k1 _world"), "VALUE hello_world");
    others(1).for_each(|x| wait_value(x, "k1", "VALUE hello_world"));

    assert_eq!(one(&n[2], "PREPEND k1 say:"), "VALUE say:hello_world");
    others(2).for_each(|x| wait_value(x, "k1", "VALUE say:hello_world"));

    assert_eq!(one(&n[2], "INC counter 5"), "VALUE 5");
    others(2).for_each(|x| wait_value(x, "counter", "VALUE 5"));
    assert_eq!(one(&n[0], "DEC counter 2"), "VALUE 3");
    others(0).for_each(|x| wait_value(x, "counter", "VALUE 3"));

    assert_eq!(one(&n[1], "MSET a 1 b 2 c 3"), "OK");
    for x in others(1) {
        wait_value(x, "a", "VALUE 1");
        wait_value(x, "b", "VALUE 2");
        wait_value(x, "c", "VALUE 3");
    }

    assert_eq!(one(&n[2], "DEL k1"), "DELETED");
    others(2).for_each(|x| wait_value(x, "k1", "NOT_FOUND"));
    // Deleting a missing key changes nothing and publishes nothing.
    assert_eq!(one(&n[2], "DEL k1"), "NOT_FOUND");

    // Same data, same versions, same tombstones everywhere.
    wait_same_hash(&servers(&n), "");
    for x in &n {
        assert_eq!(one(x, "DBSIZE"), "DBSIZE 4");
    }
    // Every node published exactly its own writes: n1 SET+DEC, n2
    // APPEND+3×MSET, n3 PREPEND+INC+DEL.
    let published = [2, 4, 3];
    for (x, want) in n.iter().zip(published) {
        eventually("published counts", || {
            info_u64(x, "replication_events_published") == want
        });
    }
}

#[test]
fn large_values_replicate() {
    let broker = Broker::start();
    let n = cluster(&broker, &["big1", "big2"]);
    let pattern = |len: usize, seed: u8| -> String {
        (0..len)
            .map(|i| (b'a' + ((i as u8).wrapping_mul(7).wrapping_add(seed)) % 26) as char)
            .collect()
    };
    // 100 KB, ~1 MiB (the largest text request line allows), then ~2 MB by
    // APPEND: bigger than one batch, far bigger than rumqttc's default
    // packet limit.
    let v100k = pattern(100_000, 1);
    let v1m = pattern(1_000_000, 2);
    let mut c = n[0].connect();
    assert_eq!(cmd(&mut c, &format!("SET v100k {v100k}")), "OK");
    assert_eq!(cmd(&mut c, &format!("SET v2m {v1m}")), "OK");
    eventually("100 KB value on the peer", || {
        get_value(&n[1], "v100k").as_deref() == Some(v100k.as_bytes())
    });
    eventually("1 MB value on the peer", || {
        get_value(&n[1], "v2m").as_deref() == Some(v1m.as_bytes())
    });
    c.write_all(format!("APPEND v2m {v1m}\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut reply = Vec::new();
    r.read_until(b'\n', &mut reply).unwrap();
    assert_eq!(reply.len(), "VALUE ".len() + 2_000_000 + 2);
    let want = format!("{v1m}{v1m}");
    eventually("2 MB value on the peer", || {
        get_value(&n[1], "v2m").as_deref() == Some(want.as_bytes())
    });
    wait_same_hash(&servers(&n), "");
}

#[test]
fn concurrent_writes_of_one_key_converge_everywhere() {
    let broker = Broker::start();
    let n = cluster(&broker, &["c1", "c2", "c3"]);
    std::thread::scope(|s| {
        for (i, node) in n.iter().enumerate().take(2) {
            s.spawn(move || {
                let mut c = node.connect();
                for round in 0..20 {
                    let mut req = String::new();
                    for j in 0..25 {
                        req.push_str(&format!("SET hot w{i}-{round}-{j}\r\n"));
                        req.push_str(&format!("INC hits{i} 1\r\n"));
                    }
                    c.write_all(req.as_bytes()).unwrap();
                    for _ in 0..50 {
                        read_line(&mut c);
                    }
                }
            });
        }
    });
    let all = servers(&n);
    wait_same_hash(&all, "");
    let hot: Vec<_> = n.iter().map(|x| one(x, "GET hot")).collect();
    assert!(hot[0].starts_with("VALUE w"), "{hot:?}");
    assert!(hot.windows(2).all(|w| w[0] == w[1]), "{hot:?}");
    for x in &n {
        assert_eq!(one(x, "GET hits0"), "VALUE 500");
        assert_eq!(one(x, "GET hits1"), "VALUE 500");
    }
}

#[test]
fn a_node_started_before_the_broker_serves_and_catches_up() {
    let port = free_port();
    let early = replicated_node("early", port, "");
    // Serving at once, no broker anywhere.
    let mut c = early.connect();
    assert_eq!(cmd(&mut c, "PING"), "PONG");
    for i in 0..5 {
        assert_eq!(cmd(&mut c, &format!("SET pre{i} v{i}")), "OK");
    }
    assert_eq!(cmd(&mut c, "GET pre3"), "VALUE v3");
    let state = info(&early)["replication_broker_state"].clone();
    assert!(
        state == "connecting" || state == "reconnecting",
        "state {state}"
    );
    assert_eq!(info_u64(&early, "replication_events_published"), 0);
    // At least one attempt has failed before the broker exists, so the
    // count checked at the end does not depend on how soon it starts.
    eventually("a failed connect attempt", || {
        info_u64(&early, "replication_connect_failures") >= 1
    });

    let broker = Broker::start_on(port).expect("broker on the reserved port");
    wait_connected(&early);
    // The writes queued while the broker was away are published now.
    eventually("queued writes published", || {
        info_u64(&early, "replication_events_published") == 5
    });
    assert_eq!(info_u64(&early, "replication_dropped"), 0);

    let late = replicated_node("late", broker.port, "");
    wait_connected(&late);
    assert_eq!(cmd(&mut c, "SET from-early 1"), "OK");
    wait_value(&late, "from-early", "VALUE 1");
    assert_eq!(one(&late, "SET from-late 2"), "OK");
    wait_value(&early, "from-late", "VALUE 2");
    assert!(info_u64(&early, "replication_connect_failures") >= 1);
}

#[test]
fn broker_killed_and_restarted_mid_traffic() {
    let mut broker = Broker::start();
    let n = cluster(&broker, &["r1", "r2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, done) = (stop.clone(), done.clone());
        let mut c = n[0].connect();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every write is answered, broker or not.
                assert_eq!(cmd(&mut c, &format!("SET t{i} {i}")), "OK");
                i += 1;
                done.store(i, Ordering::Relaxed);
            }
        })
    };
    eventually("traffic before the fault", || {
        done.load(Ordering::Relaxed) > 200
    });
    broker.kill();
    eventually("the node notices the broker is gone", || {
        info(&n[0])["replication_broker_state"] != "connected"
    });
    let at_kill = done.load(Ordering::Relaxed);
    eventually("traffic during the outage", || {
        done.load(Ordering::Relaxed) > at_kill + 200
    });
    assert_eq!(one(&n[1], "PING"), "PONG");
    broker.restart();
    wait_connected(&n[0]);
    wait_connected(&n[1]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    assert_eq!(one(&n[0], "SET after-a 1"), "OK");
    wait_value(&n[1], "after-a", "VALUE 1");
    assert_eq!(one(&n[1], "SET after-b 2"), "OK");
    wait_value(&n[0], "after-b", "VALUE 2");
    let i = info(&n[0]);
    assert!(
        i["replication_connects"].parse::<u64>().unwrap() >= 2,
        "{i:?}"
    );
    assert!(
        i["replication_connect_failures"].parse::<u64>().unwrap() >= 1,
        "{i:?}"
    );
}

fn event(key: &[u8], value: Option<&[u8]>, origin: &str, ms: u64) -> ChangeEvent {
    ChangeEvent {
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
        version: Version::new(ms << 16, node_hash(origin)),
        expires: 0,
    }
}

fn batch(origin: &str, events: &[ChangeEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(origin, events, &mut out);
    out
}

#[test]
fn garbage_payloads_are_harmless_and_counted() {
    let broker = Broker::start();
    let n = cluster(&broker, &["g1"]);
    let node = &n[0];
    let now = now_millis();

    // Undecodable: 7 payloads on the topic and a subtopic.
    let mut noise: Vec<u8> = (0u32..2000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    noise[0] = 0xa3;
    let good = batch("elsewhere", &[event(b"x", Some(b"y"), "elsewhere", now)]);
    let garbage = [
        Vec::new(),
        b"garbage".to_vec(),
        b"{\"json\": true}".to_vec(),
        noise,
        vec![0x18, 42],
        good[..good.len() - 3].to_vec(),
        good.iter()
            .map(|b| if *b == 0x01 { 0x07 } else { *b })
            .collect(),
    ];
    mqtt_publish(broker.port, TOPIC, &garbage[..4]);
    mqtt_publish(broker.port, &format!("{TOPIC}/sub"), &garbage[4..]);
    eventually("undecodable payloads counted", || {
        info_u64(node, "replication_payloads_undecodable") == 7
    });
    assert_eq!(one(node, "PING"), "PONG");
    assert_eq!(one(node, "SET still ok"), "OK");

    // Decodable but refused events: empty key, versions past the clock
    // bound (max_clock_skew, 60 s by default): two minutes ahead, and the
    // (u64::MAX, u64::MAX) poison.
    let far = now + 2 * 60_000;
    let poison = ChangeEvent {
        key: b"poison".to_vec(),
        value: Some(b"v".to_vec()),
        version: Version::new(u64::MAX, u64::MAX),
        expires: 0,
    };
    mqtt_publish(
        broker.port,
        TOPIC,
        &[batch(
            "elsewhere",
            &[
                event(b"", Some(b"v"), "elsewhere", now),
                event(b"future", Some(b"v"), "elsewhere", far),
                poison,
            ],
        )],
    );
    eventually("invalid events counted", || {
        info_u64(node, "replication_events_invalid") == 3
    });
    assert_eq!(one(node, "GET future"), "NOT_FOUND");
    assert_eq!(one(node, "GET poison"), "NOT_FOUND");
    let i = info(node);
    assert_eq!(i["max_clock_skew_ms"], "60000");
    assert_eq!(i["versions_refused"], "2");
    assert!(
        i["versions_refused_from_mqtt_elsewhere"].starts_with("count=2,"),
        "{i:?}"
    );

    // A batch claiming this node's own origin is skipped; a foreign batch
    // and a 1.x single event published after it are applied.
    #[derive(serde::Serialize)]
    struct Old<'a> {
        v: u8,
        op: &'a str,
        key: &'a str,
        val: Option<Vec<u8>>,
        ts: u64,
        src: &'a str,
    }
    let mut legacy = Vec::new();
    ciborium::into_writer(
        &Old {
            v: 1,
            op: "set",
            key: "legacy",
            val: Some(b"old".to_vec()),
            ts: now * 1_000_000,
            src: "one-x",
        },
        &mut legacy,
    )
    .unwrap();
    mqtt_publish(
        broker.port,
        TOPIC,
        &[
            batch("g1", &[event(b"spoof", Some(b"v"), "g1", now)]),
            batch(
                "elsewhere",
                &[
                    event(b"foreign", Some(b"yes"), "elsewhere", now),
                    event(b"still", None, "elsewhere", now + 1000),
                ],
            ),
            legacy,
        ],
    );
    wait_value(node, "legacy", "VALUE old");
    assert_eq!(one(node, "GET foreign"), "VALUE yes");
    assert_eq!(
        one(node, "GET still"),
        "NOT_FOUND",
        "the newer tombstone wins"
    );
    assert_eq!(one(node, "GET spoof"), "NOT_FOUND");
    let i = info(node);
    assert_eq!(i["replication_payloads_undecodable"], "7");
    assert_eq!(i["replication_events_applied"], "3");
    assert_eq!(i["replication_batches_received"], "3");
    assert!(i.contains_key("replication_origin_elsewhere"), "{i:?}");
    assert!(i.contains_key("replication_origin_one-x"), "{i:?}");
}

#[test]
fn no_echo_storm_published_counts_follow_local_writes() {
    let broker = Broker::start();
    let n = cluster(&broker, &["e1", "e2", "e3"]);
    let mut c = n[0].connect();
    let req: String = (0..300).map(|i| format!("SET e{i} {i}\r\n")).collect();
    c.write_all(req.as_bytes()).unwrap();
    for _ in 0..300 {
        assert_eq!(read_line(&mut c), "OK");
    }
    for x in &n[1..] {
        eventually("all writes applied", || {
            info_u64(x, "replication_events_applied") == 300
        });
    }
    eventually("all writes published", || {
        info_u64(&n[0], "replication_events_published") == 300
    });
    // Applied writes are never re-published, and a node ignores its own.
    for x in &n[1..] {
        assert_eq!(info_u64(x, "replication_events_published"), 0);
        assert_eq!(info_u64(x, "replication_batches_own"), 0);
    }
    let i = info(&n[0]);
    assert_eq!(i["replication_events_applied"], "0");
    assert_ne!(i["replication_batches_own"], "0");
    // Batching: far fewer messages than writes for a pipelined burst.
    let batches: u64 = i["replication_batches_published"].parse().unwrap();
    assert!((1..300).contains(&batches), "{batches} batches");

    assert_eq!(one(&n[1], "SET back 1"), "OK");
    wait_value(&n[0], "back", "VALUE 1");
    wait_value(&n[2], "back", "VALUE 1");
    eventually("one more publication", || {
        info_u64(&n[1], "replication_events_published") == 1
    });
    assert_eq!(info_u64(&n[0], "replication_events_published"), 300);
    assert_eq!(info_u64(&n[2], "replication_events_published"), 0);
}

#[test]
fn replicate_enable_disable_status() {
    let broker = Broker::start();
    // No anti-entropy on A: it would discover B and pull B's write made
    // while replication was off (docs/protocol.md §9.5).
    let a = replicated_node("ra", broker.port, "[anti_entropy]\nenabled = false");
    // Flat layout with replication off and two listed peers.
    let dir = TempDir::new("rb");
    let conf = dir.file(
        "flat.toml",
        &format!(
            "host = \"127.0.0.1\"\nport = 7379\nstorage_path = \"data\"\nengine = \"rwlock\"\n\
             sync_interval_seconds = 60\n[replication]\nenabled = false\n\
             mqtt_broker = \"127.0.0.1\"\nmqtt_port = {}\ntopic_prefix = \"mkv-test\"\n\
             client_id = \"rb\"\npeer_list = [\"x:1\", \"y:2\"]\n",
            broker.port
        ),
    );
    let b = node_with_config("rb", dir, conf);
    wait_connected(&a);

    assert_eq!(one(&a, "REPLICATE status"), "REPLICATION enabled 0 nodes");
    assert_eq!(one(&b, "REPLICATE status"), "REPLICATION disabled");
    assert_eq!(info(&b)["replication_broker_state"], "off");
    assert_eq!(
        one(&b, "REPLICATE bogus"),
        "ERROR Unknown REPLICATE action: bogus"
    );
    // Off: local writes are not queued.
    assert_eq!(one(&b, "SET while-off 1"), "OK");
    assert_eq!(info_u64(&b, "replication_queued"), 0);

    assert_eq!(one(&b, "REPLICATE enable"), "OK");
    assert_eq!(one(&b, "REPLICATE ENABLE"), "OK", "already on");
    assert_eq!(one(&b, "REPLICATE status"), "REPLICATION enabled 2 nodes");
    wait_connected(&b);
    assert_eq!(one(&a, "SET one 1"), "OK");
    wait_value(&b, "one", "VALUE 1");
    assert_eq!(one(&b, "SET two 2"), "OK");
    wait_value(&a, "two", "VALUE 2");

    // Disable: no publishing, no applying, session closed.
    assert_eq!(one(&b, "REPLICATE disable"), "OK");
    assert_eq!(one(&b, "REPLICATE status"), "REPLICATION disabled");
    eventually("session closed", || {
        info(&b)["replication_broker_state"] == "off"
    });
    let published = info_u64(&b, "replication_events_published");
    assert_eq!(one(&b, "SET quiet 1"), "OK");
    assert_eq!(one(&a, "SET unseen 1"), "OK");
    eventually("a published", || {
        info_u64(&a, "replication_events_published") == 2
    });
    assert_eq!(info_u64(&b, "replication_events_published"), published);
    assert_eq!(info_u64(&b, "replication_queued"), 0);

    // Enable again: the same bridge connects again. Its session is
    // persistent (the default), so the broker kept what A published
    // meanwhile and delivers it now; B's write made while off stays local.
    assert_eq!(one(&b, "REPLICATE enable"), "OK");
    wait_connected(&b);
    assert_eq!(one(&a, "SET three 3"), "OK");
    wait_value(&b, "three", "VALUE 3");
    wait_value(&b, "unseen", "VALUE 1");
    assert_eq!(one(&a, "GET quiet"), "NOT_FOUND");
    let i = info(&b);
    assert_eq!(i["replication_connects"], "2", "{i:?}");
    // A second session with the same client id would have kicked the first.
    assert_eq!(i["replication_connect_failures"], "0", "{i:?}");
}

#[test]
fn shutdown_flushes_queued_events() {
    let broker = Broker::start();
    let mut n = cluster(&broker, &["s1", "s2"]);
    let mut c = n[0].connect();
    let req: String = (0..100).map(|i| format!("SET last{i} {i}\r\n")).collect();
    c.write_all(format!("{req}SHUTDOWN\r\n").as_bytes())
        .unwrap();
    for _ in 0..101 {
        assert_eq!(read_line(&mut c), "OK");
    }
    let status = n[0].wait_exit(DEADLINE).expect("exited");
    assert!(status.success(), "{status:?}");
    for i in [0, 50, 99] {
        wait_value(&n[1], &format!("last{i}"), &format!("VALUE {i}"));
    }
    eventually("all 100 applied", || {
        info_u64(&n[1], "replication_events_applied") == 100
    });
}

#[test]
fn without_a_broker_the_queue_is_bounded_and_drops_are_counted() {
    // Nothing listens on this port (and nothing can take it meanwhile):
    // every connection attempt is refused.
    let closed = common::ClosedPort::new();
    let node = replicated_node("lonely", closed.port(), "");
    let total = 80_000;
    let mut c = node.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = Vec::new();
    for chunk in 0..total / 1000 {
        let req: String = (0..1000)
            .map(|i| format!("SET q{} x\r\n", chunk * 1000 + i))
            .collect();
        c.write_all(req.as_bytes()).unwrap();
        for _ in 0..1000 {
            line.clear();
            r.read_until(b'\n', &mut line).unwrap();
            assert_eq!(line, b"OK\r\n");
        }
    }
    assert_eq!(cmd(&mut c, "PING"), "PONG");
    let i = info(&node);
    let dropped: u64 = i["replication_dropped"].parse().unwrap();
    let queued: u64 = i["replication_queued"].parse().unwrap();
    // The outbox holds OUTBOX_CAPACITY events; the publisher holds at most
    // one more batch (MAX_BATCH_EVENTS) while it waits for the broker.
    let cap = merklekv::replication::OUTBOX_CAPACITY as u64;
    let held = total - dropped - queued;
    assert_eq!(queued, cap, "{i:?}");
    assert!(held <= 4097, "{held} held; {i:?}");
    assert!(dropped >= total - cap - 4097, "{i:?}");
    assert_eq!(i["replication_events_published"], "0");
}

/// `storage.max_clock_skew_seconds` on the real binary: a node configured
/// with a loose bound takes an event dated a day ahead; a node with the
/// default bound (60 s) refuses it from MQTT, and again when it SYNCs from
/// the first node — the anti-entropy path of issue 12's clock poisoning.
#[test]
fn versions_past_max_clock_skew_are_refused_on_every_path() {
    let broker = Broker::start();
    let loose = replicated_node(
        "loose",
        broker.port,
        "[storage]\nmax_clock_skew_seconds = 172800",
    );
    // No background anti-entropy on the strict node: discovery would
    // otherwise run rounds with the loose node and count more refusals.
    let strict = replicated_node("strict", broker.port, "[anti_entropy]\nenabled = false");
    wait_connected(&loose);
    wait_connected(&strict);
    let ahead = now_millis() + 86_400_000;
    mqtt_publish(
        broker.port,
        TOPIC,
        &[batch(
            "elsewhere",
            &[event(b"ahead", Some(b"v"), "elsewhere", ahead)],
        )],
    );
    wait_value(&loose, "ahead", "VALUE v");
    eventually("the strict node refuses the event", || {
        info_u64(&strict, "replication_events_invalid") == 1
    });
    assert_eq!(one(&strict, "GET ahead"), "NOT_FOUND");
    assert_eq!(info(&loose)["max_clock_skew_ms"], "172800000");
    assert_eq!(info(&strict)["max_clock_skew_ms"], "60000");

    let port = loose.addr.port();
    assert_eq!(one(&strict, &format!("SYNC 127.0.0.1 {port}")), "OK");
    assert_eq!(one(&strict, "GET ahead"), "NOT_FOUND");
    let i = info(&strict);
    assert_eq!(i["versions_refused"], "2");
    assert!(
        i["versions_refused_from_mqtt_elsewhere"].starts_with("count=1,"),
        "{i:?}"
    );
    let from_sync = format!("versions_refused_from_sync_127.0.0.1_{port}");
    assert!(
        i.get(&from_sync).is_some_and(|v| v.starts_with("count=1,")),
        "{i:?}"
    );
    // Nothing was dragged along: the strict node's writes replicate as usual.
    assert_eq!(one(&strict, "SET fresh 1"), "OK");
    wait_value(&loose, "fresh", "VALUE 1");
}
