//! Membership over the broker end to end (docs/protocol.md §9.5): real
//! `merklekv` processes with no `peer_list`, a real mosquitto.

mod common;

use common::broker::{Broker, Node, SLOW, replicated_node, wait_connected, wait_value};
use common::{DEADLINE, Server, cmd, read_line, wait_until};

/// The `NODES` lines of `s`, each split into fields.
fn nodes(s: &Server) -> Vec<Vec<String>> {
    let mut c = s.connect();
    let head = cmd(&mut c, "NODES");
    let n: usize = head
        .strip_prefix("NODES ")
        .unwrap_or_else(|| panic!("NODES answered {head:?}"))
        .parse()
        .unwrap();
    (0..n)
        .map(|_| read_line(&mut c).split(' ').map(str::to_string).collect())
        .collect()
}

/// The status `s` lists for member `id`, if listed.
fn status_of(s: &Server, id: &str) -> Option<String> {
    nodes(s)
        .into_iter()
        .find(|f| f[0] == id)
        .map(|f| f[2].clone())
}

fn wait_status(s: &Server, id: &str, want: &str, timeout: std::time::Duration) {
    let mut last = Vec::new();
    let ok = wait_until(timeout, || {
        last = nodes(s);
        last.iter().any(|f| f[0] == id && f[2] == want)
    });
    assert!(ok, "{id} never {want} on {}: {last:?}", s.addr);
}

/// Short keepalive; no persistent session (a restarted node gets nothing
/// queued by the broker: only anti-entropy repairs it); no peer list.
const EXTRA: &str = "keep_alive = 1\nclean_session = true";

fn start(broker: &Broker, id: &str) -> Node {
    let n = replicated_node(id, broker.port, EXTRA);
    wait_connected(&n);
    n
}

#[test]
fn nodes_discover_each_other_and_see_a_killed_one_go_offline() {
    let broker = Broker::start();
    let mut n: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|id| start(&broker, id))
        .collect();
    for node in &n {
        for other in ["a", "b", "c"] {
            let want = if other == node.id { "self" } else { "online" };
            wait_status(node, other, want, DEADLINE);
        }
    }
    // Fields: id address status last_seen last_round lag_p50 lag_p99.
    let rows = nodes(&n[0]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.len() == 7), "{rows:?}");
    assert_eq!(rows[0][1], n[0].addr.to_string(), "self address");
    let b_row = rows.iter().find(|r| r[0] == "b").unwrap();
    assert_eq!(b_row[1], n[1].addr.to_string(), "b's advertised address");

    // A write on a is applied on b: the lag figures appear for origin a.
    cmd(&mut n[0].connect(), "SET lagkey v");
    wait_value(&n[1], "lagkey", "VALUE v");
    let ok = wait_until(DEADLINE, || {
        nodes(&n[1])
            .iter()
            .any(|r| r[0] == "a" && r[5] != "-" && r[6] != "-")
    });
    assert!(ok, "no lag figures for a on b: {:?}", nodes(&n[1]));

    // RESP view: one bulk string per member.
    let mut c = n[0].connect();
    use std::io::Write;
    c.write_all(b"*1\r\n$11\r\nMKV.MEMBERS\r\n").unwrap();
    assert_eq!(read_line(&mut c), "*3");

    // Killed: the broker publishes its will after 1.5 keepalives.
    n[2].kill9();
    wait_status(&n[0], "c", "offline", SLOW);
    wait_status(&n[1], "c", "offline", SLOW);
    assert_eq!(status_of(&n[0], "b").as_deref(), Some("online"));

    // A clean shutdown says offline at once.
    n[1].signal("TERM");
    wait_status(&n[0], "b", "offline", DEADLINE);
}

#[test]
fn a_restarted_node_catches_up_through_discovered_peers_alone() {
    let broker = Broker::start();
    let a = start(&broker, "a");
    let b = start(&broker, "b");
    wait_status(&a, "b", "online", DEADLINE);
    let mut c = start(&broker, "c");
    c.kill9();
    // Written while c is down: it never sees these events.
    let mut conn = a.connect();
    for i in 0..20 {
        assert_eq!(cmd(&mut conn, &format!("SET missed{i} v{i}")), "OK");
    }
    wait_value(&b, "missed19", "VALUE v19");
    let c = start(&broker, "c");
    // No peer list anywhere: only discovery brings a round.
    for i in 0..20 {
        wait_value(&c, &format!("missed{i}"), &format!("VALUE v{i}"));
    }
    let ok = wait_until(DEADLINE, || {
        nodes(&c).iter().any(|r| r[0] != "c" && r[4] != "-")
    });
    assert!(ok, "no anti-entropy round listed: {:?}", nodes(&c));
}

#[test]
fn advertising_the_unspecified_address_is_refused() {
    let broker = Broker::start();
    let dir = common::TempDir::new("adv");
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"x\"\nadvertise_address = \"0.0.0.0:7000\"\n[mqtt]\n\
             broker_address = \"tcp://127.0.0.1:{}\"\n",
            broker.port
        ),
    );
    let out = std::process::Command::new(common::bin())
        .args(["--config", conf.to_str().unwrap(), "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("advertise_address"), "{err}");
}
