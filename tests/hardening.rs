//! Issue 11 against the real binary: one test per attack a single client
//! could use to exhaust or stall a node, and the limits that stop it
//! (output limits, client memory budget, `maxmemory`, lingering close,
//! idle timeout, linear framing). After each attack a fresh connection
//! gets `PONG` and the server's RSS (VmRSS of /proc/<pid>/status) stayed
//! within the bound the test states. No timing thresholds: every wait
//! polls a condition with a deadline.

mod common;

use common::req;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use common::broker::{Broker, node_with_config, wait_connected, wait_value};
use common::{DEADLINE, Server, TempDir, expect, info_fields, read_n, wait_until};

const MIB: usize = 1 << 20;

/// The reply of a connection closed by an output limit.
const OUTPUT_LIMIT_RESP: &[u8] =
    b"-ERR output buffer limit reached (client_output_buffer_limit); closing connection\r\n";

/// A server with `limits` (`name = value` lines) in a nested-layout
/// config file. The returned directory must outlive the server.
fn start(limits: &[(&str, &str)], args: &[&str]) -> (Server, TempDir) {
    let dir = TempDir::new("hardening");
    let mut toml = String::from("[limits]\n");
    for (k, v) in limits {
        toml.push_str(&format!("{k} = {v}\n"));
    }
    let conf = dir.file("node.toml", &toml);
    let mut all = vec!["--config", conf.to_str().unwrap()];
    all.extend_from_slice(args);
    (Server::start(&all), dir)
}

/// The server's resident set size in KiB.
fn rss_kb(srv: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn info(srv: &Server) -> HashMap<String, String> {
    info_fields(&mut srv.connect()).into_iter().collect()
}

fn info_u64(srv: &Server, name: &str) -> u64 {
    info(srv)
        .get(name)
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .parse()
        .unwrap()
}

/// `active_connections` of STATS (exactly 25 lines after `STATS`).
fn active_connections(srv: &Server) -> u64 {
    let mut s = srv.connect();
    s.write_all(b"STATS\r\n").unwrap();
    assert_eq!(common::read_line(&mut s), "STATS");
    let mut n = None;
    for _ in 0..25 {
        let line = common::read_line(&mut s);
        if let Some(v) = line.strip_prefix("active_connections:") {
            n = v.parse().ok();
        }
    }
    n.expect("STATS has active_connections")
}

/// After an attack: a fresh connection gets PONG, and RSS grew by less
/// than `bound_mib` since `before_kb`.
fn assert_healthy(srv: &Server, before_kb: u64, bound_mib: u64) {
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"PING"]), b"+PONG\r\n");
    let grown = rss_kb(srv).saturating_sub(before_kb) / 1024;
    assert!(
        grown < bound_mib,
        "RSS grew by {grown} MiB (bound {bound_mib} MiB)"
    );
}

/// Reads until the server closes; the bytes read. A reset (instead of an
/// orderly close) fails the test: the lingering close exists to avoid it.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading until the close: {e} after {} bytes", got.len()),
        }
    }
}

/// Fills the store with `n` keys of `key_len` bytes (values "v").
fn fill(srv: &Server, n: usize, key_len: usize) {
    let mut s = srv.connect();
    let mut batch = Vec::new();
    for i in 0..n {
        let mut k = format!("{i:08}").into_bytes();
        k.resize(key_len, b'k');
        batch.extend(req(&[b"SET", &k, b"v"]));
    }
    s.write_all(&batch).unwrap();
    read_n(&mut s, 5 * n);
}

// ---- amplification: output limits ----------------------------------------------

/// MGET of a 1 MiB value 2,000 times from a client that never reads: the
/// reply stops at the hard output limit (8 MiB here) instead of growing to
/// 2 GiB, the connection is closed, logged and counted.
#[test]
fn amplification_by_a_client_that_never_reads_stops_at_the_output_limit() {
    let (srv, _dir) = start(&[("client_output_buffer_limit", "8388608")], &[]);
    let mut s = srv.connect();
    let big = vec![b'x'; MIB];
    expect(&mut s, &req(&[b"SET", b"big", &big]), b"+OK\r\n");
    let before = rss_kb(&srv);

    let mut attacker = srv.connect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"big"[..], 2000));
    attacker.write_all(&req(&mget)).unwrap();
    assert!(wait_until(DEADLINE, || info_u64(
        &srv,
        "client_output_limit_disconnections"
    ) == 1));
    assert_healthy(&srv, before, 64);
    // The attacker is closed (at the latest when the lingering deadline
    // passes): what it finally reads is never the whole 2 GiB answer.
    let mut got = 0usize;
    let mut buf = vec![0; 1 << 20];
    loop {
        match attacker.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 16 * MIB, "read {got} bytes");
    // The line reaches the test through a reader thread of the server's
    // stderr: poll for it (on a loaded machine it can lag the counter).
    assert!(wait_until(DEADLINE, || srv
        .stderr
        .lock()
        .unwrap()
        .contains("closing a client over the hard output limit")));
}

/// A client that does read gets the error instead of a cut reply, for
/// each command that builds long replies: MGET, KEYS, SCAN (text), EXEC.
#[test]
fn long_replies_over_the_output_limit_end_with_an_error_and_a_close() {
    let (srv, _dir) = start(&[("client_output_buffer_limit", "4194304")], &[]);
    let big = vec![b'x'; MIB];
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"SET", b"big", &big]), b"+OK\r\n");
    fill(&srv, 6000, 1000);
    let before = rss_kb(&srv);

    // A reply that fits is unaffected, then the one that does not.
    let mut c = srv.connect();
    c.write_all(&req(&[b"PING"])).unwrap();
    c.write_all(&req(&[b"MGET", b"big", b"big", b"big", b"big", b"big"]))
        .unwrap();
    c.write_all(&req(&[b"PING"])).unwrap();
    let mut want = b"+PONG\r\n".to_vec();
    want.extend_from_slice(OUTPUT_LIMIT_RESP);
    assert_eq!(read_until_closed(&mut c), want);

    let mut c = srv.connect();
    c.write_all(&req(&[b"KEYS", b"*"])).unwrap();
    assert_eq!(read_until_closed(&mut c), OUTPUT_LIMIT_RESP);

    let mut c = srv.connect();
    c.write_all(b"SCAN\r\n").unwrap();
    assert_eq!(
        read_until_closed(&mut c),
        b"ERROR output buffer limit reached (client_output_buffer_limit); closing connection\r\n"
    );

    let mut c = srv.connect();
    let mut tx = req(&[b"MULTI"]);
    for _ in 0..6 {
        tx.extend(req(&[b"GET", b"big"]));
    }
    tx.extend(req(&[b"EXEC"]));
    c.write_all(&tx).unwrap();
    let mut want = b"+OK\r\n".to_vec();
    for _ in 0..6 {
        want.extend_from_slice(b"+QUEUED\r\n");
    }
    want.extend_from_slice(OUTPUT_LIMIT_RESP);
    assert_eq!(read_until_closed(&mut c), want);

    assert_eq!(info_u64(&srv, "client_output_limit_disconnections"), 4);
    assert_healthy(&srv, before, 64);
}

/// A slow reader whose unsent output stays above the soft limit for longer
/// than its time is disconnected (and counted), below the hard limit.
#[test]
fn a_slow_reader_over_the_soft_limit_is_disconnected() {
    let (srv, _dir) = start(
        &[
            ("client_output_buffer_soft_limit", "1048576"),
            ("client_output_buffer_soft_seconds", "1"),
        ],
        &[],
    );
    let big = vec![b'x'; MIB];
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"SET", b"big", &big]), b"+OK\r\n");
    let before = rss_kb(&srv);
    let mut slow = srv.connect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"big"[..], 16));
    slow.write_all(&req(&mget)).unwrap();
    assert!(wait_until(DEADLINE, || info_u64(
        &srv,
        "client_output_limit_disconnections"
    ) == 1));
    assert_healthy(&srv, before, 64);
}

// ---- quadratic parsing --------------------------------------------------------

/// A request of 300k arguments sent in 16 KiB pieces is framed once
/// overall (the parse-step count is checked by `resp` unit tests, the time
/// by `benches/parser.rs`): it is answered correctly and another client is
/// served while it trickles in.
#[test]
fn a_request_of_many_arguments_in_small_pieces_is_answered() {
    const N: usize = 300_000;
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"SET", b"a", b"1"]), b"+OK\r\n");
    let before = rss_kb(&srv);
    let mut args: Vec<&[u8]> = vec![b"EXISTS"];
    args.extend(std::iter::repeat_n(&b"a"[..], N));
    let buf = req(&args);
    let mut c = srv.connect();
    // A debug build on a loaded machine: executing the request takes a while.
    c.set_read_timeout(Some(3 * DEADLINE)).unwrap();
    for (i, piece) in buf.chunks(16 << 10).enumerate() {
        c.write_all(piece).unwrap();
        if i % 16 == 0 {
            expect(&mut s, &req(&[b"PING"]), b"+PONG\r\n");
        }
    }
    expect(&mut c, b"", format!(":{N}\r\n").as_bytes());
    assert_healthy(&srv, before, 128);
}

// ---- glob work ----------------------------------------------------------------

/// KEYS with a pattern that makes a backtracking matcher quadratic
/// (`*aaa…ab` against long keys of `a`s): inside MULTI it is refused at
/// queue time (no glob work while every shard is held); outside, it costs
/// time linear in the key length. A pattern over 1024 bytes is refused.
#[test]
fn hostile_glob_patterns_cost_linear_time_and_never_run_under_exec() {
    let srv = Server::start(&[]);
    fill(&srv, 2000, 1000);
    let before = rss_kb(&srv);
    let mut pattern = b"*".to_vec();
    pattern.resize(501, b'a');
    pattern.push(b'b');
    let mut s = srv.connect();
    s.write_all(&req(&[b"MULTI"])).unwrap();
    s.write_all(&req(&[b"KEYS", &pattern])).unwrap();
    s.write_all(&req(&[b"EXEC"])).unwrap();
    let mut want = b"+OK\r\n-ERR KEYS and SCAN are not allowed inside a transaction".to_vec();
    let got = read_n(&mut s, want.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    common::read_line(&mut s);
    assert!(common::read_line(&mut s).starts_with("-EXECABORT"));
    want = b"*0\r\n".to_vec();
    expect(&mut s, &req(&[b"KEYS", &pattern]), &want);
    let long = vec![b'*'; 1 << 20];
    expect(
        &mut s,
        &req(&[b"KEYS", &long]),
        b"-ERR pattern too long (max 1024 bytes)\r\n",
    );
    assert_healthy(&srv, before, 64);
}

// ---- buffers: budget and shrinking --------------------------------------------

/// Many connections each holding a large incomplete request: past
/// `maxmemory_clients` the largest are disconnected first, and counted.
#[test]
fn many_large_incomplete_requests_are_evicted_past_the_client_budget() {
    let (srv, _dir) = start(&[("maxmemory_clients", "33554432")], &[]);
    let before = rss_kb(&srv);
    let chunk = {
        let mut c = format!("${MIB}\r\n").into_bytes();
        c.resize(c.len() + MIB, b'v');
        c.extend_from_slice(b"\r\n");
        c
    };
    let mut attackers = Vec::new();
    for _ in 0..6 {
        let mut c = srv.connect();
        c.write_all(b"*64\r\n$3\r\nSET\r\n").unwrap();
        // 16 MiB of a request that never completes (a write may fail once
        // the server evicted this connection).
        for _ in 0..16 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
        attackers.push(c);
    }
    assert!(wait_until(DEADLINE, || {
        let i = info(&srv);
        i["evicted_clients"].parse::<u64>().unwrap() >= 3
            && i["clients_memory"].parse::<u64>().unwrap() <= 32 * MIB as u64
    }));
    assert_healthy(&srv, before, 160);
}

/// `CLIENT NO-EVICT on` protects a connection from client eviction: past
/// `maxmemory_clients` the largest connection that is not protected is
/// disconnected, even when the protected one holds more.
#[test]
fn a_no_evict_client_is_spared_by_client_eviction() {
    // One worker: with several, each evicts only beyond its share of the
    // budget, so which connections go would depend on their placement.
    let (srv, _dir) = start(&[], &["--threads", "1"]);
    let chunk = {
        let mut c = format!("${MIB}\r\n").into_bytes();
        c.resize(c.len() + MIB, b'v');
        c.extend_from_slice(b"\r\n");
        c
    };
    let clients_memory = || info(&srv)["clients_memory"].parse::<u64>().unwrap();
    let mut protected = srv.connect();
    expect(
        &mut protected,
        &req(&[b"CLIENT", b"NO-EVICT", b"maybe"]),
        b"-ERR syntax error\r\n",
    );
    expect(
        &mut protected,
        &req(&[b"CLIENT", b"NO-EVICT", b"on"]),
        b"+OK\r\n",
    );
    expect(&mut protected, &req(&[b"CLIENT", b"ID"]), b"");
    let id = common::read_line(&mut protected)[1..].to_string();
    // A request that never completes: 24 MiB held by the protected
    // connection. The budget is then set just above what it holds.
    protected.write_all(b"*64\r\n$3\r\nSET\r\n").unwrap();
    for _ in 0..24 {
        protected.write_all(&chunk).unwrap();
    }
    // Settled: at least the 24 MiB, and the same on five reads in a row
    // (the input buffer grows while the bytes arrive).
    let (mut last, mut same) = (0, 0);
    assert!(wait_until(DEADLINE, || {
        let m = clients_memory();
        same = if m == last { same + 1 } else { 0 };
        last = m;
        m >= 24 * MIB as u64 && same >= 5
    }));
    let budget = (last + 8 * MIB as u64).to_string();
    let mut admin = srv.connect();
    expect(
        &mut admin,
        &req(&[b"CONFIG", b"SET", b"maxmemory-clients", budget.as_bytes()]),
        b"+OK\r\n",
    );
    // Two smaller connections push the total over the budget: they are
    // evicted, the larger protected one is not.
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut other = srv.connect();
        other.write_all(b"*64\r\n$3\r\nSET\r\n").unwrap();
        for _ in 0..6 {
            if other.write_all(&chunk).is_err() {
                break;
            }
        }
        others.push(other);
    }
    assert!(wait_until(DEADLINE, || {
        info(&srv)["evicted_clients"].parse::<u64>().unwrap() >= 1
    }));
    admin
        .write_all(&req(&[b"CLIENT", b"LIST", b"ID", id.as_bytes()]))
        .unwrap();
    let head = common::read_line(&mut admin);
    let n: usize = head[1..].parse().unwrap_or_else(|_| panic!("{head}"));
    let line = String::from_utf8_lossy(&read_n(&mut admin, n + 2)).into_owned();
    assert!(line.contains(&format!("id={id} ")), "{line}");
    assert!(line.contains(" flags=e "), "{line}");
}

/// A connection's input buffer shrinks back once a large request is done.
#[test]
fn input_buffers_shrink_after_a_large_request() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    let values: Vec<Vec<u8>> = (0..24u8).map(|i| vec![b'a' + i; MIB]).collect();
    let keys: Vec<Vec<u8>> = (0..24).map(|i| format!("k{i}").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    for (k, v) in keys.iter().zip(&values) {
        args.push(k);
        args.push(v);
    }
    expect(&mut c, &req(&args), b"+OK\r\n");
    // `c` stays open and idle: its buffers are given back.
    let mut last = 0;
    assert!(
        wait_until(DEADLINE, || {
            last = info_u64(&srv, "clients_memory");
            last < MIB as u64
        }),
        "clients_memory stayed at {last}"
    );
    expect(&mut c, &req(&[b"STRLEN", b"k23"]), b":1048576\r\n");
}

// ---- lingering close -----------------------------------------------------------

/// A 2 MiB text line gets `ERROR line too long` and then an orderly close:
/// the server reads and discards the rest, so no RST destroys the reply.
#[test]
fn an_over_long_line_gets_its_error_before_the_close() {
    let srv = Server::start(&[]);
    let before = rss_kb(&srv);
    let mut line = b"SET k ".to_vec();
    line.resize(2 * MIB, b'v');
    for _ in 0..10 {
        let mut c = srv.connect();
        c.write_all(&line).unwrap();
        assert_eq!(read_until_closed(&mut c), b"ERROR line too long\r\n");
    }
    // RESP: a framing error followed by a lot of unread input.
    let mut c = srv.connect();
    let mut bad = b"*1\r\n$99999999999\r\n".to_vec();
    bad.resize(2 * MIB, b'x');
    c.write_all(&bad).unwrap();
    assert_eq!(
        read_until_closed(&mut c),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_healthy(&srv, before, 64);
}

/// `limits.proto_max_bulk_len`: a bulk string over it is refused from its
/// header with Redis's error and the connection is closed, counted and
/// reported; one at the limit is accepted. Also when the request is
/// pipelined behind another (framed ahead for prefetching).
#[test]
fn bulk_strings_over_proto_max_bulk_len_are_refused() {
    let (srv, _dir) = start(&[("proto_max_bulk_len", "2048")], &[]);
    let mut c = srv.connect();
    let at = vec![b'v'; 2048];
    expect(&mut c, &req(&[b"SET", b"k", &at]), b"+OK\r\n");
    let over = vec![b'v'; 2049];
    let mut two = req(&[b"SET", b"a", b"1"]);
    two.extend(req(&[b"SET", b"k", &over]));
    c.write_all(&two).unwrap();
    assert_eq!(
        read_until_closed(&mut c),
        b"+OK\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    let mut c = srv.connect();
    c.write_all(&req(&[&over, b"x"])).unwrap();
    assert_eq!(
        read_until_closed(&mut c),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(info_u64(&srv, "proto_max_bulk_len"), 2048);
    assert_eq!(info_u64(&srv, "proto_max_bulk_len_disconnections"), 2);
    let mut c = srv.connect();
    expect(
        &mut c,
        &req(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]),
        b"*2\r\n$18\r\nproto-max-bulk-len\r\n$4\r\n2048\r\n",
    );
    expect(
        &mut c,
        &req(&[b"GET", b"k"]),
        &[b"$2048\r\n".as_slice(), &at, b"\r\n"].concat(),
    );
}

// ---- idle and slow clients --------------------------------------------------

/// With `connection_timeout`, idle connections are closed, and so is a
/// client that stopped reading its replies; a flood of idle connections
/// costs little memory meanwhile.
#[test]
fn idle_flood_and_stuck_readers_are_closed_by_connection_timeout() {
    let dir = TempDir::new("idle");
    let conf = dir.file("node.toml", "[network]\nconnection_timeout = 1\n");
    let srv = Server::start(&["--config", conf.to_str().unwrap()]);
    let big = vec![b'x'; MIB];
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"SET", b"big", &big]), b"+OK\r\n");
    let before = rss_kb(&srv);
    let mut idle: Vec<TcpStream> = (0..500).map(|_| srv.connect()).collect();
    let mut stuck = srv.connect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"big"[..], 32));
    stuck.write_all(&req(&mget)).unwrap();
    let grown = rss_kb(&srv).saturating_sub(before) / 1024;
    assert!(grown < 64, "500 idle connections cost {grown} MiB");
    // Everything but the INFO connection itself is closed, without any
    // reading from this side.
    assert!(wait_until(DEADLINE, || active_connections(&srv) == 1));
    for c in idle.iter_mut() {
        assert_eq!(read_until_closed(c), b"");
    }
    // The stuck reader's pending reply is abandoned: it reads part of it,
    // then the close (or a reset, as its unsent data is discarded).
    let mut total = 0;
    let mut buf = vec![0; 1 << 20];
    while let Ok(n) = stuck.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total < 32 * MIB, "read {total}");
    assert_healthy(&srv, before, 96);
}

// ---- maxmemory -----------------------------------------------------------------

/// Above `maxmemory`, writes are refused with Redis's OOM error (text:
/// `ERROR OOM …`), counted; reads and deletes still work, and deleting
/// makes room again.
#[test]
fn maxmemory_refuses_writes_but_not_reads_or_deletes() {
    let (srv, _dir) = start(&[("maxmemory", "4194304")], &[]);
    let before = rss_kb(&srv);
    // 60 KiB values: each request fits one read, so the data, not the
    // writer's input buffer, is what reaches the limit.
    let value = vec![b'x'; 60 << 10];
    let mut s = srv.connect();
    let mut stored = Vec::new();
    for i in 0..200 {
        let k = format!("k{i}").into_bytes();
        s.write_all(&req(&[b"SET", &k, &value])).unwrap();
        let line = common::read_line(&mut s);
        if line == "+OK" {
            stored.push(k);
        } else {
            assert_eq!(
                line,
                "-OOM command not allowed when used memory > 'maxmemory'."
            );
            break;
        }
    }
    assert!((60..=70).contains(&stored.len()), "{} stored", stored.len());
    let mut t = srv.connect();
    assert_eq!(
        common::cmd(&mut t, "SET other v"),
        "ERROR OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(
        common::cmd(&mut t, "APPEND k0 v"),
        "ERROR OOM command not allowed when used memory > 'maxmemory'."
    );
    // Reads and deletes work.
    expect(&mut s, &req(&[b"STRLEN", &stored[0]]), b":61440\r\n");
    expect(&mut s, &req(&[b"DEL", &stored[0], &stored[1]]), b":2\r\n");
    assert!(info_u64(&srv, "maxmemory_refused_writes") >= 3);
    assert_eq!(info_u64(&srv, "maxmemory"), 4 * MIB as u64);
    assert_eq!(info_u64(&srv, "maxmemory_clients"), MIB as u64);
    // CONFIG GET shows the limits the Redis way.
    expect(
        &mut s,
        &req(&[b"CONFIG", b"GET", b"client-output-buffer-limit"]),
        b"*2\r\n$26\r\nclient-output-buffer-limit\r\n$28\r\nnormal 268435456 67108864 60\r\n",
    );
    expect(
        &mut s,
        &req(&[b"CONFIG", b"GET", b"maxmemory"]),
        b"*2\r\n$9\r\nmaxmemory\r\n$7\r\n4194304\r\n",
    );
    // Room again once the estimate is refreshed.
    assert!(wait_until(DEADLINE, || common::cmd(&mut t, "SET other v") == "OK"));
    assert_healthy(&srv, before, 64);
}

/// Memory a FLUSHALL freed goes back to the system: past
/// `heap_trim_threshold` (1 MiB here) the housekeeping thread trims the
/// heap (glibc only) and counts it; with 0 it never does, but MEMORY
/// PURGE still trims on demand.
#[test]
fn freed_memory_is_returned_to_the_system_past_heap_trim_threshold() {
    let glibc = cfg!(target_env = "gnu");
    for (threshold, trims) in [(MIB as u64, glibc), (0, false)] {
        let (srv, _dir) = start(&[("heap_trim_threshold", &threshold.to_string())], &[]);
        assert_eq!(info_u64(&srv, "heap_trim_threshold"), threshold);
        // 100,000 keys: ~8 MB of used-memory estimate.
        fill(&srv, 100_000, 16);
        assert!(wait_until(DEADLINE, || info_u64(&srv, "used_memory") > 4 * MIB as u64));
        let mut s = srv.connect();
        expect(&mut s, &req(&[b"FLUSHALL"]), b"+OK\r\n");
        assert!(wait_until(DEADLINE, || info_u64(&srv, "used_memory") < MIB as u64));
        if trims {
            assert!(wait_until(DEADLINE, || info_u64(&srv, "heap_trims") >= 1));
        } else {
            assert_eq!(info_u64(&srv, "heap_trims"), 0);
            assert_eq!(info_u64(&srv, "heap_trim_returned_kb"), 0);
            // MEMORY PURGE trims on demand, counted alike.
            expect(&mut s, &req(&[b"MEMORY", b"PURGE"]), b"+OK\r\n");
            assert_eq!(info_u64(&srv, "heap_trims"), u64::from(glibc));
        }
        assert_healthy(&srv, 0, 1024);
    }
}

/// A replica above its `maxmemory` still applies replicated writes: it
/// must not diverge because it is full.
#[test]
fn replication_applies_above_maxmemory() {
    let broker = Broker::start();
    let node = |id: &str, limits: &str| {
        let dir = TempDir::new(id);
        let conf = dir.file(
            "node.toml",
            &format!(
                "node_id = \"{id}\"\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{}\"\n\
                 topic_prefix = \"mkv-hard\"\n[limits]\n{limits}\n",
                broker.port
            ),
        );
        node_with_config(id, dir, conf)
    };
    let a = node("hard-a", "");
    let b = node("hard-b", "maxmemory = 1");
    wait_connected(&a);
    wait_connected(&b);
    let mut cb = b.connect();
    // The first write may pass (nothing counted yet); then b is full.
    common::cmd(&mut cb, "SET first v");
    assert_eq!(
        common::cmd(&mut cb, "SET local v"),
        "ERROR OOM command not allowed when used memory > 'maxmemory'."
    );
    let mut ca = a.connect();
    assert_eq!(common::cmd(&mut ca, "SET k replicated"), "OK");
    wait_value(&b, "k", "VALUE replicated");
    assert_eq!(common::cmd(&mut cb, "DEL k"), "DELETED");
}
