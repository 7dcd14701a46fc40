//! Resurrection guard: a node out of contact with the cluster for longer
//! than `tombstone_ttl` may hold keys whose tombstones the others have
//! already collected. It notices (here: it was down that long), refuses to
//! serve anti-entropy so no peer pulls those keys back, and stays so until
//! an operator runs `SYNC <peer> <port> --full` or `--rejoin` on it.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::broker::info;
use common::{DEADLINE, Server, TempDir, cmd, wait_until};

const TTL_SECS: u64 = 2;

fn sync(on: &mut TcpStream, peer: &Server, opts: &str) -> String {
    let mut line = format!("SYNC {} {}", peer.addr.ip(), peer.addr.port());
    if !opts.is_empty() {
        line.push(' ');
        line.push_str(opts);
    }
    cmd(on, &line)
}

/// Waits (by the wall clock) until more than the TTL has passed since `t`.
fn outlive_ttl(t: Instant) {
    let ttl = Duration::from_secs(TTL_SECS) + Duration::from_millis(300);
    assert!(wait_until(ttl * 2, || t.elapsed() > ttl));
}

#[test]
fn a_node_back_after_longer_than_the_tombstone_ttl_does_not_resurrect_deletes() {
    let tmp = TempDir::new("resurrect");
    let b_conf = tmp.file(
        "b.toml",
        &format!("node_id = \"res-b\"\n[storage]\ntombstone_ttl_seconds = {TTL_SECS}\n"),
    );
    let b = Server::start(&["--config", b_conf.to_str().unwrap()]);
    let a_conf: PathBuf = tmp.file(
        "a.toml",
        &format!(
            "node_id = \"res-a\"\n[storage]\npersistence_enabled = true\nstorage_path = \"{}\"\n\
             fsync = \"always\"\ntombstone_ttl_seconds = {TTL_SECS}\n\n\
             [anti_entropy]\ninterval_seconds = 1\npeer_list = [\"{}\"]\n",
            tmp.path().join("a-data").display(),
            b.addr
        ),
    );
    let start_a = || Server::start(&["--config", a_conf.to_str().unwrap()]);
    let mut a = start_a();
    let mut cb = b.connect();
    assert_eq!(cmd(&mut cb, "SET doomed old"), "OK");
    let mut ca = a.connect();
    assert!(
        wait_until(DEADLINE, || cmd(&mut ca, "GET doomed") == "VALUE old"),
        "A never pulled the key"
    );
    assert_eq!(info(&a)["cluster_stale"], "0");

    // A goes away; the key is deleted and its tombstone collected.
    a.kill9();
    let down = Instant::now();
    assert_eq!(cmd(&mut cb, "DEL doomed"), "DELETED");
    assert!(
        wait_until(DEADLINE, || info(&b)["tombstones"] == "0"),
        "B never collected the tombstone"
    );
    outlive_ttl(down);

    // A comes back with the old value: it knows it may be stale.
    let mut a = start_a();
    let mut ca = a.connect();
    let i = info(&a);
    assert_eq!(i["cluster_stale"], "1", "{i:?}");
    assert_eq!(cmd(&mut ca, "GET doomed"), "VALUE old");
    assert!(
        a.stderr
            .lock()
            .unwrap()
            .contains("no contact with the cluster"),
        "no warning logged"
    );
    // B pulling from A is refused: the deleted key does not come back.
    let refused = sync(&mut cb, &a, "");
    assert!(
        refused.starts_with("ERROR") && refused.contains("STALE"),
        "{refused}"
    );
    assert_eq!(cmd(&mut cb, "GET doomed"), "NOT_FOUND");
    // A's own rounds with B (every second) do not end the stale state.
    let rounds = |s: &Server| info(s)["ae_rounds"].parse::<u64>().unwrap();
    let r0 = rounds(&a);
    assert!(wait_until(DEADLINE, || rounds(&a) >= r0 + 2));
    assert_eq!(info(&a)["cluster_stale"], "1");

    // The operator copies B exactly: the old value is gone, A serves again.
    // (--force: the copy deletes more than half of A's records.)
    assert_eq!(sync(&mut ca, &b, "--full --force"), "OK");
    assert_eq!(info(&a)["cluster_stale"], "0");
    assert_eq!(cmd(&mut ca, "GET doomed"), "NOT_FOUND");
    assert_eq!(sync(&mut cb, &a, ""), "OK");
    assert_eq!(cmd(&mut cb, "GET doomed"), "NOT_FOUND");

    // Down too long again; this time the operator keeps A's data.
    a.kill9();
    let down = Instant::now();
    outlive_ttl(down);
    let a = start_a();
    let mut ca = a.connect();
    assert_eq!(info(&a)["cluster_stale"], "1");
    assert_eq!(sync(&mut ca, &b, "--rejoin"), "OK");
    assert_eq!(info(&a)["cluster_stale"], "0");
    assert_eq!(sync(&mut cb, &a, ""), "OK");
}
