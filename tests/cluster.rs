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

/// Redis's refusal, sent by a node in read-only mode (docs/protocol.md §21).
const READONLY: &str = "READONLY You can't write against a read only replica.";

/// Sends one RESP request and reads exactly the expected reply.
fn resp(c: &mut std::net::TcpStream, args: &[&str], want: &str) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    common::expect(c, &common::req(&args), want.as_bytes());
}

#[test]
fn read_only_mode_refuses_client_writes_and_still_applies_replicated_ones() {
    let broker = Broker::start();
    let a = start(&broker, "a");
    // b starts read-only from its configuration file.
    let dir = common::TempDir::new("ro");
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"b\"\nread_only = true\n[mqtt]\nbroker_address = \"{}\"\n\
             topic_prefix = \"mkv-test\"\n{EXTRA}\n",
            broker.address()
        ),
    );
    let b = common::broker::node_with_config("b", dir, conf);
    wait_connected(&b);
    wait_status(&a, "b", "online", DEADLINE);

    // Text: every kind of write is refused, byte for byte; reads work.
    let mut t = b.connect();
    let refused = format!("ERROR {READONLY}\r\n");
    for line in [
        "SET k v",
        "DEL k",
        "INC n",
        "APPEND k v",
        "MSET a 1 b 2",
        "EXPIRE k 5",
        "SETEX k 5 v",
        "FLUSHDB",
        "TRUNCATE",
    ] {
        common::expect(&mut t, format!("{line}\r\n").as_bytes(), refused.as_bytes());
    }
    common::expect(&mut t, b"GET k\r\n", b"NOT_FOUND\r\n");
    common::expect(&mut t, b"READONLY status\r\n", b"READONLY on\r\n");

    // RESP: the same refusal as Redis's read-only replica; inside MULTI a
    // refused write makes EXEC abort.
    let mut r = b.connect();
    let refused = format!("-{READONLY}\r\n");
    resp(&mut r, &["SET", "k", "v"], &refused);
    resp(&mut r, &["INCRBYFLOAT", "f", "1.5"], &refused);
    resp(&mut r, &["FLUSHALL"], &refused);
    resp(&mut r, &["GET", "k"], "$-1\r\n");
    resp(&mut r, &["MULTI"], "+OK\r\n");
    resp(&mut r, &["GET", "k"], "+QUEUED\r\n");
    resp(&mut r, &["SET", "k", "v"], &refused);
    resp(
        &mut r,
        &["EXEC"],
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    resp(
        &mut r,
        &["CONFIG", "GET", "read-only"],
        "*2\r\n$9\r\nread-only\r\n$3\r\nyes\r\n",
    );

    // A write made on a reaches b through the broker all the same.
    assert_eq!(cmd(&mut a.connect(), "SET replicated from-a"), "OK");
    wait_value(&b, "replicated", "VALUE from-a");
    // Anti-entropy still applies too: with replication off on b, a write
    // on a reaches b through a plain SYNC, which only pulls; SYNC --full
    // (it deletes local records under new local versions) is refused.
    common::expect(&mut t, b"REPLICATE disable\r\n", b"OK\r\n");
    assert_eq!(cmd(&mut a.connect(), "SET pulled by-sync"), "OK");
    let sync = format!("SYNC 127.0.0.1 {}", a.addr.port());
    common::expect(
        &mut t,
        format!("{sync} --full\r\n").as_bytes(),
        format!("ERROR {READONLY}\r\n").as_bytes(),
    );
    common::expect(&mut t, format!("{sync}\r\n").as_bytes(), b"OK\r\n");
    common::expect(&mut t, b"GET pulled\r\n", b"VALUE by-sync\r\n");
    common::expect(&mut t, b"REPLICATE enable\r\n", b"OK\r\n");
    wait_connected(&b);
    let fields = common::broker::info(&b);
    assert_eq!(fields["read_only"], "1");
    assert_eq!(fields["read_only_refused_writes"], "14");

    // Switched off at run time (text), writes work again.
    common::expect(&mut t, b"READONLY off\r\n", b"OK\r\n");
    common::expect(&mut t, b"SET k v\r\n", b"OK\r\n");
    wait_value(&a, "k", "VALUE v");
    // On again through RESP, then off through CONFIG SET.
    resp(&mut r, &["MKV.READONLY", "ON"], "+OK\r\n");
    resp(&mut r, &["MKV.READONLY"], "$2\r\non\r\n");
    resp(&mut r, &["SET", "k", "w"], &refused);
    // A transaction queued before the switch aborts at EXEC.
    let mut tx = b.connect();
    resp(&mut r, &["MKV.READONLY", "OFF"], "+OK\r\n");
    resp(&mut tx, &["MULTI"], "+OK\r\n");
    resp(&mut tx, &["SET", "k", "x"], "+QUEUED\r\n");
    resp(&mut r, &["CONFIG", "SET", "read-only", "yes"], "+OK\r\n");
    resp(
        &mut tx,
        &["EXEC"],
        &format!("-EXECABORT Transaction discarded because of: {READONLY}\r\n"),
    );
    resp(
        &mut r,
        &["CONFIG", "SET", "read-only", "maybe"],
        "-ERR CONFIG SET failed (possibly related to argument 'read-only') - argument must be 'yes' or 'no'\r\n",
    );
    resp(&mut r, &["CONFIG", "SET", "read-only", "no"], "+OK\r\n");
    resp(&mut r, &["SET", "k", "y"], "+OK\r\n");
    resp(&mut r, &["GET", "k"], "$1\r\ny\r\n");
    let fields = common::broker::info(&b);
    assert_eq!(fields["read_only"], "0");
    assert_eq!(fields["read_only_switches"], "5");
}

#[test]
fn lag_figures_grow_while_the_broker_is_paused() {
    let broker = Broker::start();
    // The default keepalive outlives the pause, so no session drops and
    // the event travels through the broker; no anti-entropy, which could
    // repair the key first (a repair records no lag).
    let quiet = "[anti_entropy]\nenabled = false";
    let a = replicated_node("a", broker.port, quiet);
    let b = replicated_node("b", broker.port, quiet);
    wait_connected(&a);
    wait_connected(&b);
    wait_status(&b, "a", "online", DEADLINE);

    let pause = std::time::Duration::from_millis(2000);
    broker.signal("STOP");
    assert_eq!(cmd(&mut a.connect(), "SET paused v"), "OK");
    std::thread::sleep(pause);
    broker.signal("CONT");
    wait_value(&b, "paused", "VALUE v");

    // Fields: id address status last_seen last_round lag_p50 lag_p99.
    let mut last = Vec::new();
    let ok = wait_until(DEADLINE, || {
        last = nodes(&b);
        last.iter().any(|r| {
            r[0] == "a"
                && r[6]
                    .parse::<u128>()
                    .is_ok_and(|p99| p99 >= pause.as_millis())
        })
    });
    assert!(ok, "lag p99 of a on b never reached {pause:?}: {last:?}");
}

#[test]
fn offline_members_are_forgotten_and_their_presence_cleared() {
    let broker = Broker::start();
    let forget = format!("{EXTRA}\n[cluster]\nforget_offline_after_seconds = 1");
    let a = replicated_node("a", broker.port, &forget);
    wait_connected(&a);
    let mut c = start(&broker, "c");
    wait_status(&a, "c", "online", DEADLINE);
    c.kill9();
    wait_status(&a, "c", "offline", SLOW);
    let ok = wait_until(DEADLINE, || status_of(&a, "c").is_none());
    assert!(ok, "c never forgotten: {:?}", nodes(&a));
    let fields = common::broker::info(&a);
    assert_eq!(fields["cluster_members_forgotten"], "1");
    assert_eq!(fields["cluster_forget_offline_after_seconds"], "1");
    // No peer_list, but anti-entropy runs with discovered peers.
    assert_eq!(fields["ae_enabled"], "1");

    // Its retained presence is gone: a node started now never hears of c.
    let d = start(&broker, "d");
    wait_status(&d, "a", "online", DEADLINE);
    assert_eq!(status_of(&d, "c"), None, "{:?}", nodes(&d));

    // A node whose presence is cleared while it is online announces itself
    // again (the safety net of clearing, docs/protocol.md §9.5).
    common::broker::mqtt_publish(broker.port, "mkv-test/nodes/d", &[Vec::new()]);
    wait_status(&a, "d", "online", DEADLINE);
    let ok = wait_until(DEADLINE, || {
        common::broker::info(&a)["cluster_members_online"] == "1"
    });
    assert!(ok, "{:?}", nodes(&a));
}
