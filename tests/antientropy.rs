//! Anti-entropy end to end: real `merklekv` processes on ephemeral ports,
//! no broker. Background rounds, SYNC (plain, --full, --verify), the
//! internal RESP commands, refused tree parameters, faulty peers, INFO.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, TempDir, cmd, expect, read_line, read_n, wait_until};

/// Starts a node with id `id`, the given `[anti_entropy]` body (may be
/// empty) and one worker thread.
fn node(id: &str, anti_entropy: &str) -> Server {
    // The file is read at startup; the directory goes when this returns.
    let dir = TempDir::new(&format!("ae-{id}"));
    let path = dir.file(
        "node.toml",
        &format!("node_id = \"{id}\"\n[anti_entropy]\n{anti_entropy}\n"),
    );
    Server::start(&["--config", path.to_str().unwrap(), "--threads", "1"])
}

/// A node that pulls from `peer` every second.
fn follower(id: &str, peer: &Server) -> Server {
    node(
        id,
        &format!(
            "enabled = true\ninterval_seconds = 1\npeer_list = [\"{}\"]",
            peer.addr
        ),
    )
}

fn hash(s: &Server) -> String {
    cmd(&mut s.connect(), "HASH")
}

/// The INFO reply as `name:value` lines.
fn info(s: &Server) -> Vec<String> {
    common::info_fields(&mut s.connect())
        .into_iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect()
}

fn info_field(s: &Server, name: &str) -> String {
    let prefix = format!("{name}:");
    info(s)
        .into_iter()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("INFO has no {name}"))
}

/// Writes `n` keys with one pipelined write and checks every reply.
fn write_keys(s: &Server, n: usize, prefix: &str) {
    let mut c = s.connect();
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(format!("SET {prefix}{i} value-{i}\r\n").as_bytes());
    }
    c.write_all(&req).unwrap();
    assert_eq!(read_n(&mut c, 4 * n), b"OK\r\n".repeat(n));
}

fn stderr_count(s: &Server, needle: &str) -> usize {
    s.stderr.lock().unwrap().matches(needle).count()
}

fn sync(on: &Server, peer: &Server, opts: &str) -> String {
    cmd(
        &mut on.connect(),
        &format!("SYNC 127.0.0.1 {}{opts}", peer.addr.port()),
    )
}

#[test]
fn a_follower_converges_after_10000_pipelined_writes() {
    let a = node("a", "");
    let b = follower("b", &a);
    write_keys(&a, 10_000, "key:");
    let start = Instant::now();
    assert!(
        wait_until(DEADLINE, || hash(&b) == hash(&a)),
        "B did not converge; B INFO: {:?}",
        info(&b)
    );
    eprintln!("converged {:?} after the last write", start.elapsed());
    assert_eq!(cmd(&mut b.connect(), "DBSIZE"), "DBSIZE 10000");
    assert_eq!(cmd(&mut b.connect(), "GET key:9999"), "VALUE value-9999");
    // Every key was repaired exactly once, whatever the number of rounds.
    assert!(wait_until(DEADLINE, || info_field(&b, "ae_keys_repaired") == "10000"));
    assert!(info_field(&a, "ae_requests_served").parse::<u64>().unwrap() > 0);
    let peer_line = info_field(&b, "ae_peer0");
    assert!(
        peer_line.starts_with(&format!("addr={},configured=1,status=ok,", a.addr)),
        "{peer_line}"
    );
    for field in [
        "last_round_unix_ms=",
        "last_duration_ms=",
        "last_buckets_differing=",
        "keys_repaired=10000,",
        "bytes_sent=",
        "bytes_received=",
    ] {
        assert!(peer_line.contains(field), "{field} in {peer_line}");
    }
}

#[test]
fn a_delete_is_never_resurrected() {
    let a = node("a", "");
    let b = node("b", "");
    let mut ca = a.connect();
    assert_eq!(cmd(&mut ca, "SET doomed 1"), "OK");
    assert_eq!(cmd(&mut ca, "SET kept 1"), "OK");
    assert_eq!(sync(&b, &a, ""), "OK");
    assert_eq!(cmd(&mut b.connect(), "GET doomed"), "VALUE 1");
    assert_eq!(cmd(&mut ca, "DEL doomed"), "DELETED");
    // A pulls from B, which still has the old value: the tombstone wins.
    assert_eq!(sync(&a, &b, ""), "OK");
    assert_eq!(cmd(&mut ca, "GET doomed"), "NOT_FOUND");
    // B pulls the tombstone.
    assert_eq!(sync(&b, &a, " --verify"), "OK");
    assert_eq!(cmd(&mut b.connect(), "GET doomed"), "NOT_FOUND");
    assert_eq!(cmd(&mut b.connect(), "EXISTS doomed kept"), "EXISTS 1");
    assert_eq!(hash(&a), hash(&b));
    assert_eq!(info_field(&b, "tombstones"), "1");
    let age: u64 = info_field(&b, "tombstones_oldest_age_seconds")
        .parse()
        .unwrap();
    assert!(age <= info_field(&b, "uptime_seconds").parse().unwrap());
    // Any number of further rounds either way changes nothing.
    assert_eq!(sync(&a, &b, " --verify"), "OK");
    assert_eq!(cmd(&mut ca, "GET doomed"), "NOT_FOUND");
}

#[test]
fn a_node_restarted_empty_pulls_everything() {
    let a = node("a", "");
    write_keys(&a, 2000, "k");
    let mut ca = a.connect();
    for i in 0..50 {
        assert_eq!(cmd(&mut ca, &format!("DEL k{i}")), "DELETED");
    }
    let b = follower("b", &a);
    assert!(wait_until(DEADLINE, || hash(&b) == hash(&a)));
    drop(b);
    let b = follower("b", &a);
    assert!(wait_until(DEADLINE, || hash(&b) == hash(&a)));
    assert_eq!(cmd(&mut b.connect(), "DBSIZE"), "DBSIZE 1950");
    assert_eq!(cmd(&mut b.connect(), "GET k10"), "NOT_FOUND");
    assert_eq!(cmd(&mut b.connect(), "GET k1999"), "VALUE value-1999");
}

#[test]
fn sync_pulls_newer_entries_and_full_makes_a_copy() {
    let a = node("a", "");
    let b = node("b", "");
    let (mut ca, mut cb) = (a.connect(), b.connect());
    assert_eq!(cmd(&mut ca, "SET b 2"), "OK");
    // B sees A's b first, so its own write is newer (hybrid clock).
    assert_eq!(sync(&b, &a, ""), "OK");
    assert_eq!(cmd(&mut cb, "SET b 3"), "OK");
    assert_eq!(cmd(&mut cb, "SET c 4"), "OK");
    assert_eq!(cmd(&mut ca, "SET a 1"), "OK");

    assert_eq!(sync(&a, &b, ""), "OK");
    assert_eq!(cmd(&mut ca, "MGET a b c"), "VALUES 3");
    assert_eq!(read_line(&mut ca), "a 1");
    assert_eq!(read_line(&mut ca), "b 3");
    assert_eq!(read_line(&mut ca), "c 4");
    // A keeps its local-only key, so the roots still differ.
    let v = sync(&a, &b, " --verify");
    assert!(
        v.starts_with("ERROR sync with 127.0.0.1:") && v.contains("verify failed: roots differ"),
        "{v}"
    );
    assert_ne!(hash(&a), hash(&b));

    // --full: A becomes a copy of B, local-only entries deleted (with a
    // tombstone, which B learns from its next round; then --verify passes).
    assert_eq!(sync(&a, &b, " --full"), "OK");
    assert_eq!(cmd(&mut ca, "GET a"), "NOT_FOUND");
    assert_eq!(cmd(&mut ca, "DBSIZE"), "DBSIZE 2");
    assert_eq!(info_field(&a, "tombstones"), "1");
    assert_eq!(info_field(&a, "ae_keys_removed"), "1");
    assert_eq!(sync(&b, &a, ""), "OK");
    assert_eq!(sync(&a, &b, " --full --verify"), "OK");
    assert_eq!(hash(&a), hash(&b));

    // SYNC to the node itself; pipelined requests stay in order.
    let own = a.addr.port();
    expect(
        &mut ca,
        format!("SYNC 127.0.0.1 {own} --full --verify\r\nGET b\r\n").as_bytes(),
        b"OK\r\nVALUE 3\r\n",
    );
    // An unreachable peer.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        cmd(&mut ca, &format!("SYNC 127.0.0.1 {port}")),
        format!("ERROR connect 127.0.0.1:{port}")
    );
    assert_eq!(
        cmd(&mut ca, &format!("SYNC no-such-host.invalid {port}")),
        format!("ERROR connect no-such-host.invalid:{port}")
    );
    assert_eq!(cmd(&mut ca, "PING"), "PONG");
    let stats = info(&a);
    assert!(stats.iter().any(|l| l == "ae_enabled:0"), "{stats:?}");
    assert!(
        stats
            .iter()
            .any(|l| l.starts_with("tombstones_oldest_age_seconds:"))
    );
    assert!(
        stats.iter().any(|l| l.contains(&format!(
            "addr=127.0.0.1:{port},configured=0,status=unreachable"
        ))),
        "{stats:?}"
    );
}

#[test]
fn different_tree_parameters_are_refused_and_logged_once() {
    let a = node("a", "tree_bits = 8");
    let mut ca = a.connect();
    assert_eq!(cmd(&mut ca, "SET k v"), "OK");
    let b = follower("b", &a);
    assert!(wait_until(DEADLINE, || info_field(&b, "ae_rounds")
        .parse::<u64>()
        .unwrap()
        >= 3));
    let expected = "tree parameters differ: local wire_version=2 tree_bits=16 fanout=16, \
                    peer wire_version=2 tree_bits=8 fanout=16";
    assert_eq!(
        stderr_count(
            &b,
            &format!("refusing to compare with peer {}: {expected}", a.addr)
        ),
        1,
        "{}",
        b.stderr.lock().unwrap()
    );
    assert_eq!(cmd(&mut b.connect(), "GET k"), "NOT_FOUND");
    assert_eq!(
        cmd(
            &mut b.connect(),
            &format!("SYNC 127.0.0.1 {}", a.addr.port())
        ),
        format!("ERROR {expected}")
    );
    assert!(info_field(&b, "ae_peer0").contains("status=refused_tree_parameters"));
}

#[test]
fn a_down_peer_is_logged_once_per_state_change() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let b = node(
        "b",
        &format!("enabled = true\ninterval_seconds = 1\npeer_list = [\"127.0.0.1:{port}\"]"),
    );
    assert!(wait_until(DEADLINE, || info_field(&b, "ae_rounds_failed")
        .parse::<u64>()
        .unwrap()
        >= 3));
    let down = format!("peer 127.0.0.1:{port} unreachable");
    assert_eq!(stderr_count(&b, &down), 1, "{}", b.stderr.lock().unwrap());
    // The peer comes up on that port: one "reachable again" line, and B
    // converges with it.
    let a = Server::start(&["--node-id", "a", "--port", &port.to_string()]);
    assert_eq!(cmd(&mut a.connect(), "SET late 1"), "OK");
    assert!(wait_until(DEADLINE, || hash(&b) == hash(&a)));
    let up = format!("peer 127.0.0.1:{port} reachable again");
    assert!(wait_until(DEADLINE, || stderr_count(&b, &up) == 1));
    assert_eq!(stderr_count(&b, &down), 1);
}

#[test]
fn internal_commands_over_resp() {
    let a = node("node-a", "tree_bits = 8");
    let mut c = a.connect();
    let expected = b"*7\r\n:2\r\n:8\r\n:4\r\n$6\r\nnode-a\r\n:".to_vec();
    c.write_all(b"*1\r\n$8\r\nmkv.root\r\n").unwrap();
    let head = read_n(&mut c, expected.len());
    assert_eq!(head, expected);
    let instance = read_line(&mut c);
    assert!(instance.parse::<i64>().is_ok(), "{instance}");
    let mut root = b"$32\r\n".to_vec();
    root.extend_from_slice(&[0; 32]);
    root.extend_from_slice(b"\r\n:0\r\n");
    assert_eq!(read_n(&mut c, root.len()), root);

    // Empty store: zero digests, empty buckets, no records.
    let mut zeros = b"$64\r\n".to_vec();
    zeros.extend_from_slice(&[0; 64]);
    zeros.extend_from_slice(b"\r\n");
    expect(
        &mut c,
        b"*5\r\n$9\r\nMKV.NODES\r\n$1\r\n8\r\n$1\r\n1\r\n$1\r\n0\r\n$2\r\n15\r\n",
        &zeros,
    );
    expect(
        &mut c,
        b"*3\r\n$11\r\nMKV.BUCKETS\r\n$1\r\n8\r\n$3\r\n255\r\n",
        b"*1\r\n*0\r\n",
    );
    expect(
        &mut c,
        b"*4\r\n$11\r\nMKV.ENTRIES\r\n$1\r\n8\r\n$1\r\n0\r\n$1\r\n1\r\n",
        b"*2\r\n*0\r\n*0\r\n",
    );
    expect(
        &mut c,
        b"*2\r\n$9\r\nMKV.FETCH\r\n$1\r\nk\r\n",
        b"*1\r\n*-1\r\n",
    );
    // Binary-safe keys and values, tombstones with their versions.
    expect(
        &mut c,
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$3\r\n\0\r\n\r\n",
        b"+OK\r\n",
    );
    expect(&mut c, b"*2\r\n$3\r\nDEL\r\n$1\r\nt\r\n", b":0\r\n");
    expect(
        &mut c,
        b"*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1\r\nx\r\n*2\r\n$3\r\nDEL\r\n$1\r\nt\r\n",
        b"+OK\r\n:1\r\n",
    );
    // MKV.ENTRIES of the bucket holding t: its tombstone.
    let mut req = b"*3\r\n$11\r\nMKV.ENTRIES\r\n$1\r\n8\r\n".to_vec();
    let bucket = (xxhash_rust::xxh3::xxh3_64(b"t") >> 56).to_string();
    req.extend_from_slice(format!("${}\r\n{bucket}\r\n", bucket.len()).as_bytes());
    c.write_all(&req).unwrap();
    assert_eq!(read_n(&mut c, 25), b"*1\r\n*3\r\n$1\r\nt\r\n$-1\r\n$16\r\n");
    let _version = read_n(&mut c, 18);
    c.write_all(b"*3\r\n$9\r\nMKV.FETCH\r\n$3\r\nk\r\n\r\n$1\r\nt\r\n")
        .unwrap();
    assert_eq!(read_n(&mut c, 22), b"*2\r\n*2\r\n$3\r\n\0\r\n\r\n$16\r\n");
    let _version = read_n(&mut c, 18);
    assert_eq!(read_n(&mut c, 14), b"*2\r\n$-1\r\n$16\r\n");
    let _version = read_n(&mut c, 18);

    // Bad requests get an error and cost nothing else.
    for (req, reply) in [
        (
            &b"*4\r\n$9\r\nMKV.NODES\r\n$2\r\n16\r\n$1\r\n1\r\n$1\r\n0\r\n"[..],
            &b"-ERR tree parameters differ: this node has tree_bits=8 fanout=16, the request tree_bits=16\r\n"[..],
        ),
        (
            b"*4\r\n$9\r\nMKV.NODES\r\n$1\r\n8\r\n$1\r\n3\r\n$1\r\n0\r\n",
            b"-ERR level 3 out of range (0..=2)\r\n",
        ),
        (
            b"*3\r\n$11\r\nMKV.BUCKETS\r\n$1\r\n8\r\n$3\r\n256\r\n",
            b"-ERR bucket 256 out of range (< 256)\r\n",
        ),
        (
            b"*1\r\n$9\r\nMKV.FETCH\r\n",
            b"-ERR wrong number of arguments for 'mkv.fetch' command\r\n",
        ),
    ] {
        expect(&mut c, req, reply);
    }
    let mut many = b"*1026\r\n$9\r\nMKV.FETCH\r\n".to_vec();
    for _ in 0..1025 {
        many.extend_from_slice(b"$1\r\nk\r\n");
    }
    expect(
        &mut c,
        &many,
        b"-ERR MKV.FETCH: too many keys (1025, at most 1024 per call)\r\n",
    );
    expect(&mut c, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n");
    // Text clients cannot reach them.
    assert_eq!(
        cmd(&mut a.connect(), "MKV.ROOT"),
        "ERROR Unknown command: MKV.ROOT"
    );
}

/// A fake peer: accepts connections and treats each with `f`.
fn fake_peer(f: fn(TcpStream)) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || f(s));
        }
    });
    port
}

fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

#[test]
fn a_faulty_peer_costs_one_round_and_clients_are_served_meanwhile() {
    let a = node("a", "");
    let mut ca = a.connect();
    assert_eq!(cmd(&mut ca, "SET k v"), "OK");
    let garbage = fake_peer(|mut s| {
        if read_request(&mut s) {
            let _ = s.write_all(b"%garbage\r\n");
        }
    });
    let hangup = fake_peer(|mut s| {
        read_request(&mut s);
    });
    let lying = fake_peer(|mut s| {
        if read_request(&mut s) {
            let _ = s.write_all(b"$999999999999\r\n");
        }
    });
    let stall = fake_peer(|mut s| {
        // Answer MKV.ROOT with a different root, then never again.
        if read_request(&mut s) {
            let mut r = format!(
                "*7\r\n:{}\r\n:16\r\n:4\r\n$4\r\nfake\r\n:5\r\n$32\r\n",
                merklekv::protocol::internal::WIRE_VERSION
            )
            .into_bytes();
            r.extend_from_slice(&[1; 32]);
            r.extend_from_slice(b"\r\n:1\r\n");
            let _ = s.write_all(&r);
        }
        while read_request(&mut s) {}
    });
    for (port, reason) in [
        (garbage, "protocol error: unexpected reply type byte 0x25"),
        (hangup, "connection closed by peer"),
        (lying, "reply too large"),
    ] {
        let r = cmd(&mut ca, &format!("SYNC 127.0.0.1 {port}"));
        assert!(
            r.starts_with(&format!(
                "ERROR sync with 127.0.0.1:{port} failed: {reason}"
            )),
            "{r}"
        );
    }
    // A stalled round times out; meanwhile other clients are served.
    let mut syncing = a.connect();
    syncing
        .write_all(format!("SYNC 127.0.0.1 {stall}\r\n").as_bytes())
        .unwrap();
    assert!(wait_until(DEADLINE, || info_field(&a, "ae_rounds_running") == "1"));
    let mut other = a.connect();
    for _ in 0..100 {
        assert_eq!(cmd(&mut other, "GET k"), "VALUE v");
    }
    // The SYNC is still waiting for its peer (the only worker serves on).
    syncing.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        syncing.peek(&mut byte).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
    syncing.set_nonblocking(false).unwrap();
    assert_eq!(
        read_line(&mut syncing),
        format!("ERROR sync with 127.0.0.1:{stall} failed: timed out")
    );
    assert_eq!(cmd(&mut ca, "GET k"), "VALUE v");
    assert_eq!(cmd(&mut ca, "DBSIZE"), "DBSIZE 1");
}

#[test]
fn shutdown_is_prompt_while_a_round_is_stalled() {
    let stall = fake_peer(|mut s| while read_request(&mut s) {});
    let mut a = node("a", "");
    let mut c = a.connect();
    c.write_all(format!("SYNC 127.0.0.1 {stall}\r\n").as_bytes())
        .unwrap();
    // Once the round is blocked on the silent peer, stop the node: it must
    // not wait for the round's 5 s read timeout.
    assert!(wait_until(DEADLINE, || info_field(&a, "ae_rounds_running") == "1"));
    let mut admin = a.connect();
    admin.write_all(b"SHUTDOWN\r\n").unwrap();
    assert_eq!(read_line(&mut admin), "OK");
    let status = a.wait_exit(Duration::from_secs(3)).expect("exits promptly");
    assert!(status.success());
}

#[test]
fn full_sync_from_an_empty_peer_is_refused_unless_forced() {
    // A peer that claims an empty tree must not wipe the node by mistake.
    let (a, empty) = (node("a", ""), node("empty", ""));
    write_keys(&a, 4, "k");
    let v = sync(&a, &empty, " --full");
    assert_eq!(
        v,
        format!(
            "ERROR sync with 127.0.0.1:{} failed: refused: --full would remove more than \
             half of the 4 local records (at most 2 without --force)",
            empty.addr.port()
        )
    );
    let mut ca = a.connect();
    assert_eq!(cmd(&mut ca, "DBSIZE"), "DBSIZE 4");
    // Forced: every record is deleted with a tombstone, not dropped.
    assert_eq!(sync(&a, &empty, " --full --force"), "OK");
    assert_eq!(cmd(&mut ca, "DBSIZE"), "DBSIZE 0");
    assert_eq!(info_field(&a, "tombstones"), "4");
    assert_eq!(info_field(&a, "ae_keys_removed"), "4");
    // The deletions reach the peer like any delete.
    assert_eq!(sync(&empty, &a, ""), "OK");
    assert_eq!(hash(&a), hash(&empty));
}

/// One RESP request; the first reply line (`:123`, `+OK`, …).
fn resp(s: &Server, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut c = s.connect();
    c.write_all(&common::req(&args)).unwrap();
    read_line(&mut c)
}

/// The absolute expiry of `key` in Unix ms (RESP `PEXPIRETIME`: -1 no
/// expiry, -2 no key).
fn pexpiretime(s: &Server, key: &str) -> i64 {
    let r = resp(s, &["PEXPIRETIME", key]);
    r.strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PEXPIRETIME {key}: {r}"))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until `b` has completed a whole anti-entropy round that started
/// after this call (two more rounds counted).
fn wait_whole_round(b: &Server) {
    let rounds = || info_field(b, "ae_rounds").parse::<u64>().unwrap();
    let start = rounds();
    assert!(
        wait_until(DEADLINE, || rounds() >= start + 2),
        "no anti-entropy round; B INFO: {:?}",
        info(b)
    );
}

#[test]
fn anti_entropy_carries_expiry_and_never_resurrects_an_expired_key() {
    let a = node("xa", "");
    // Written before B exists, so B can only learn them by anti-entropy.
    assert_eq!(resp(&a, &["SET", "short", "v", "PX", "4000"]), "+OK");
    assert_eq!(resp(&a, &["SET", "long", "w", "EX", "1000"]), "+OK");
    assert_eq!(cmd(&mut a.connect(), "SET plain p"), "OK");
    let (short_at, long_at) = (pexpiretime(&a, "short"), pexpiretime(&a, "long"));
    assert!(short_at > 0 && long_at > short_at, "{short_at} {long_at}");

    let b = follower("xb", &a);
    assert!(
        wait_until(DEADLINE, || cmd(&mut b.connect(), "GET long") == "VALUE w"),
        "B did not repair `long`; B INFO: {:?}",
        info(&b)
    );
    // The same absolute expiry as on A, not a TTL restarted at the repair.
    assert_eq!(pexpiretime(&b, "long"), long_at);
    let ttl = cmd(&mut b.connect(), "TTL long");
    let secs: u64 = ttl.strip_prefix("TTL ").unwrap().parse().unwrap();
    assert!((990..=1000).contains(&secs), "{ttl}");
    // `short` arrives with its expiry too, unless it expires first (a slow
    // machine): then B must not get its value at all (checked below).
    assert!(wait_until(DEADLINE, || {
        pexpiretime(&b, "short") != -2 || unix_ms() > short_at
    }));
    match pexpiretime(&b, "short") {
        -2 => {}
        at => assert_eq!(at, short_at),
    }

    // PERSIST on A is a new version of the whole record: it reaches B.
    assert_eq!(cmd(&mut a.connect(), "PERSIST long"), "OK");
    assert!(
        wait_until(DEADLINE, || cmd(&mut b.connect(), "TTL long") == "TTL -1"),
        "PERSIST did not reach B"
    );
    assert_eq!(cmd(&mut b.connect(), "GET long"), "VALUE w");

    // `short` expires on both nodes (each from the same absolute time).
    assert!(wait_until(DEADLINE, || {
        cmd(&mut a.connect(), "GET short") == "NOT_FOUND"
    }));
    assert!(unix_ms() >= short_at, "gone before its expiry");
    assert!(wait_until(DEADLINE, || {
        cmd(&mut b.connect(), "GET short") == "NOT_FOUND"
    }));
    assert!(wait_until(DEADLINE, || hash(&b) == hash(&a)));
    // Further rounds (and a pull the other way) repair nothing and bring
    // nothing back: the expired record is the tombstone of its version on
    // both nodes, with the same leaf digest.
    let repaired = info_field(&b, "ae_keys_repaired");
    wait_whole_round(&b);
    assert_eq!(info_field(&b, "ae_keys_repaired"), repaired);
    assert_eq!(sync(&a, &b, " --verify"), "OK");
    for s in [&a, &b] {
        let mut c = s.connect();
        assert_eq!(cmd(&mut c, "GET short"), "NOT_FOUND");
        assert_eq!(cmd(&mut c, "EXISTS short long plain"), "EXISTS 2");
        assert_eq!(cmd(&mut c, "DBSIZE"), "DBSIZE 2");
    }
    assert_eq!(hash(&a), hash(&b));

    // A node that first syncs after the expiry never receives the value.
    let c = node("xc", "");
    assert_eq!(sync(&c, &a, " --verify"), "OK");
    assert_eq!(cmd(&mut c.connect(), "GET short"), "NOT_FOUND");
    assert_eq!(cmd(&mut c.connect(), "DBSIZE"), "DBSIZE 2");
    assert_eq!(hash(&c), hash(&a));
}

/// `CONFIG SET anti_entropy.interval_seconds` reschedules the rounds at
/// once: with an hour between rounds only the first one (at start) runs,
/// until the interval is set to one second.
#[test]
fn config_set_changes_the_round_interval() {
    let a = node("ivl-a", "");
    let b = node(
        "ivl-b",
        &format!(
            "enabled = true\ninterval_seconds = 3600\npeer_list = [\"{}\"]",
            a.addr
        ),
    );
    assert!(
        wait_until(Duration::from_secs(30), || info_field(&b, "ae_rounds")
            == "1"),
        "no first round"
    );
    assert_eq!(info_field(&b, "ae_interval_seconds"), "3600");
    let mut s = b.connect();
    expect(
        &mut s,
        &common::req(&[b"CONFIG", b"SET", b"anti_entropy.interval_seconds", b"1"]),
        b"+OK\r\n",
    );
    assert_eq!(info_field(&b, "ae_interval_seconds"), "1");
    assert!(
        wait_until(Duration::from_secs(30), || {
            info_field(&b, "ae_rounds").parse::<u64>().unwrap() >= 3
        }),
        "rounds did not speed up"
    );
}
