//! Repair out of the box: persistent MQTT sessions by default, lost events
//! counted and shown as pending until anti-entropy repaired them, and an
//! early anti-entropy round when replication loses events.

mod common;

use std::io::{BufRead, BufReader, Write};

use common::broker::{
    Broker, SLOW, info, info_u64, node_with_config, replicated_node, wait_connected,
};
use common::{DEADLINE, Server, TempDir, cmd, wait_until};

/// Pipelines `SET <prefix><i> x` for `0..n` and checks every reply.
fn write_many(s: &Server, prefix: &str, n: usize) {
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = Vec::new();
    for chunk in 0..n.div_ceil(1000) {
        let req: String = (chunk * 1000..((chunk + 1) * 1000).min(n))
            .map(|i| format!("SET {prefix}{i} x\r\n"))
            .collect();
        c.write_all(req.as_bytes()).unwrap();
        for _ in chunk * 1000..((chunk + 1) * 1000).min(n) {
            line.clear();
            r.read_until(b'\n', &mut line).unwrap();
            assert_eq!(line, b"OK\r\n");
        }
    }
}

#[test]
fn a_restarted_node_gets_what_was_published_while_it_was_down() {
    // Default settings: clean_session = false under the stable client id
    // (the node id), so the broker queues events for the absent node. No
    // anti-entropy: only the broker can deliver them.
    let broker = Broker::start();
    let a = replicated_node("ps-a", broker.port, "");
    let mut b = replicated_node("ps-b", broker.port, "");
    wait_connected(&a);
    wait_connected(&b);
    assert_eq!(info(&b)["ae_interval_seconds"], "15", "default interval");
    b.server.kill9();

    write_many(&a, "away", 500);
    assert!(
        wait_until(DEADLINE, || info_u64(&a, "replication_events_published")
            >= 500),
        "the broker never acknowledged A's events: {:?}",
        info(&a)
    );

    let b = replicated_node("ps-b", broker.port, "");
    let mut c = b.connect();
    let ok = wait_until(DEADLINE, || cmd(&mut c, "DBSIZE") == "DBSIZE 500");
    assert!(
        ok,
        "the restarted node did not receive the queued events: {} {:?}",
        cmd(&mut c, "DBSIZE"),
        info(&b)
    );
    assert_eq!(cmd(&mut c, "GET away499"), "VALUE x");
}

#[test]
fn lost_events_start_an_early_round_and_stay_pending_until_repaired() {
    // Peer B: a plain in-memory node. Node A: replication towards a broker
    // that does not exist (its outbox fills, then drops), anti-entropy
    // with B every 2 s.
    let b = Server::start(&["--node-id", "repair-b"]);
    let closed = common::ClosedPort::new(); // the broker that never answers
    let dir = TempDir::new("repair-a");
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"repair-a\"\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{}\"\n\n\
             [anti_entropy]\ninterval_seconds = 2\npeer_list = [\"{}\"]\n",
            closed.port(),
            b.addr
        ),
    );
    let a = node_with_config("repair-a", dir, conf);
    let i = info(&a);
    assert_eq!(i["replication_events_lost"], "0");
    assert_eq!(i["replication_repair_pending"], "0");

    // More than the outbox holds: the rest is dropped.
    write_many(&a, "q", 80_000);
    let i = info(&a);
    let lost: u64 = i["replication_events_lost"].parse().unwrap();
    let dropped: u64 = i["replication_dropped"].parse().unwrap();
    assert!(lost >= dropped && dropped > 0, "{i:?}");
    assert!(
        i["replication_repair_pending"].parse::<u64>().unwrap() > 0,
        "B has none of A's writes yet: {i:?}"
    );
    assert!(
        wait_until(DEADLINE, || info_u64(&a, "ae_early_rounds") >= 1),
        "no early round after the losses: {:?}",
        info(&a)
    );

    // B pulls A's data; A's next round with B finds equal roots.
    let mut cb = b.connect();
    // Pulling 80,000 keys in a debug build on a busy machine can take a while.
    cb.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    assert_eq!(
        cmd(&mut cb, &format!("SYNC {} {}", a.addr.ip(), a.addr.port())),
        "OK"
    );
    assert_eq!(cmd(&mut cb, "DBSIZE"), "DBSIZE 80000");
    assert!(
        wait_until(SLOW, || info_u64(&a, "replication_repair_pending") == 0),
        "repair still pending after B caught up: {:?}",
        info(&a)
    );
    assert_eq!(info_u64(&a, "replication_events_lost"), lost);
}
