//! RESP introspection against the real binary, bytes compared:
//! `COMMAND LIST [FILTERBY …]`, `COMMAND GETKEYS`, `COMMAND
//! GETKEYSANDFLAGS`, `COMMAND COUNT`, `MONITOR`, `CLIENT KILL`, `CLIENT
//! LIST`/`INFO`, `SAVE`/`BGSAVE`/`LASTSAVE`, `WATCH` and expiry, INFO
//! sections and the command, error and latency statistics
//! (`commandstats`, `errorstats`, `latencystats`, `CONFIG RESETSTAT`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use common::broker::info_u64;

fn req(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Reads until `want` bytes arrived (the replies here are known exactly).
fn exchange(s: &mut TcpStream, args: &[&str], want: &[u8]) {
    s.write_all(&req(args)).unwrap();
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "{args:?}"
    );
}

/// The bulk strings of a flat array reply.
fn list(s: &mut TcpStream, args: &[&str]) -> Vec<String> {
    s.write_all(&req(args)).unwrap();
    let line = |s: &mut TcpStream| {
        let mut l = Vec::new();
        let mut b = [0u8];
        while !l.ends_with(b"\r\n") {
            s.read_exact(&mut b).unwrap();
            l.push(b[0]);
        }
        String::from_utf8(l[..l.len() - 2].to_vec()).unwrap()
    };
    let head = line(s);
    let n: usize = head[1..].parse().unwrap();
    (0..n)
        .map(|_| {
            line(s);
            line(s)
        })
        .collect()
}

#[test]
fn command_list_and_filters() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let all = list(&mut s, &["COMMAND", "LIST"]);
    for want in ["set", "get", "client|list", "config|get", "command|getkeys"] {
        assert!(all.iter().any(|n| n == want), "{want} missing: {all:?}");
    }
    assert_eq!(
        list(&mut s, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "set"]),
        ["set"]
    );
    let cfg = list(
        &mut s,
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "config*"],
    );
    assert_eq!(
        cfg,
        [
            "config",
            "config|get",
            "config|set",
            "config|resetstat",
            "config|help"
        ]
    );
    assert!(list(&mut s, &["COMMAND", "LIST", "FILTERBY", "MODULE", "m"]).is_empty());
    assert!(list(&mut s, &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "nope"]).is_empty());
    let bitmap = list(&mut s, &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "bitmap"]);
    assert_eq!(bitmap, ["setbit", "getbit", "bitcount"]);
    for bad in [
        &["COMMAND", "LIST", "bad"][..],
        &["COMMAND", "LIST", "FILTERBY", "bad"],
        &["COMMAND", "LIST", "FILTERBY", "bad", "x"],
    ] {
        exchange(&mut s, bad, b"-ERR syntax error\r\n");
    }
}

#[test]
fn command_getkeys() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "get", "key"],
        b"*1\r\n$3\r\nkey\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "lcs", "key1", "key2"],
        b"*2\r\n$4\r\nkey1\r\n$4\r\nkey2\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYSANDFLAGS", "mset", "k1", "v1", "k2", "v2"],
        b"*2\r\n*2\r\n$2\r\nk1\r\n*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n\
          *2\r\n$2\r\nk2\r\n*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "get"],
        b"-ERR Invalid number of arguments specified for command\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "ping"],
        b"-ERR The command has no key arguments\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "nosuch", "k"],
        b"-ERR Invalid command specified\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS"],
        b"-ERR wrong number of arguments for 'command|getkeys' command\r\n",
    );
}

#[test]
fn config_set_takes_current_values_and_refuses_changes() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory", "0", "save", ""],
        b"+OK\r\n",
    );
    // A free port: still read at startup only.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    exchange(
        &mut s,
        &["CONFIG", "SET", "port", &free],
        b"-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config (MerkleKV reads it at startup only)\r\n",
    );
    // A port another process listens on is refused as such; nothing of
    // the command applies.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    s.write_all(&req(&[
        "CONFIG",
        "SET",
        "maxmemory",
        "10000001",
        "port",
        &port,
    ]))
    .unwrap();
    let e = common::read_line(&mut s);
    assert!(
        e.starts_with(
            "-ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port: "
        ),
        "{e}"
    );
    assert_eq!(list(&mut s, &["CONFIG", "GET", "maxmemory"])[1], "0");
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory", "1", "maxmemory", "2"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - duplicate parameter\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "nosuch", "1"],
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory"],
        b"-ERR wrong number of arguments for 'config|set' command\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "GET", "replicaof"],
        b"*2\r\n$9\r\nreplicaof\r\n$0\r\n\r\n",
    );
}

/// Redis's data-type encoding parameters are accepted and reported
/// (under the name and its alias) but change nothing: there are no such
/// types. Values are checked as Redis checks them.
#[test]
fn config_set_keeps_data_type_encoding_parameters() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(
        &mut s,
        &["CONFIG", "GET", "list-max-*-size"],
        b"*4\r\n$21\r\nlist-max-ziplist-size\r\n$2\r\n-2\r\n$22\r\nlist-max-listpack-size\r\n$2\r\n-2\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "list-max-ziplist-size", "-1"],
        b"+OK\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "GET", "list-max-listpack-size"],
        b"*2\r\n$22\r\nlist-max-listpack-size\r\n$2\r\n-1\r\n",
    );
    // All or nothing: the bad second value leaves the first unchanged.
    exchange(
        &mut s,
        &["CONFIG", "SET", "set-max-intset-entries", "10", "hash-max-listpack-entries", "x"],
        b"-ERR CONFIG SET failed (possibly related to argument 'hash-max-listpack-entries') - argument couldn't be parsed into an integer\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "zset-max-listpack-value", "-5"],
        b"-ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-value') - argument must be within the allowed range\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "GET", "set-max-intset-entries"],
        b"*2\r\n$22\r\nset-max-intset-entries\r\n$3\r\n512\r\n",
    );
}

/// `maxmemory` and `maxmemory-clients` change at run time; a failing
/// value anywhere in the command changes nothing (Redis's rollback).
#[test]
fn config_set_changes_memory_limits_all_or_nothing() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let get = |s: &mut TcpStream, name: &str| list(s, &["CONFIG", "GET", name])[1].clone();
    let budget = get(&mut s, "maxmemory-clients");
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory", "10000002"],
        b"+OK\r\n",
    );
    assert_eq!(get(&mut s, "maxmemory"), "10000002");
    exchange(
        &mut s,
        &[
            "CONFIG",
            "SET",
            "maxmemory",
            "10000001",
            "maxmemory-clients",
            "200%",
            "client-query-buffer-limit",
            "invalid",
        ],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - percentage argument must be less or equal to 100\r\n",
    );
    assert_eq!(get(&mut s, "maxmemory"), "10000002");
    assert_eq!(get(&mut s, "maxmemory-clients"), budget);
    assert_eq!(get(&mut s, "client-query-buffer-limit"), "67108864");
    // Percentages are of maxmemory (the new one when set together).
    exchange(
        &mut s,
        &[
            "CONFIG",
            "SET",
            "maxmemory",
            "1gb",
            "maxmemory-clients",
            "50%",
        ],
        b"+OK\r\n",
    );
    assert_eq!(get(&mut s, "maxmemory"), "1073741824");
    assert_eq!(get(&mut s, "maxmemory-clients"), "536870912");
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory-clients", "1000"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - argument must be at least 1048576 bytes\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory", "lots"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n",
    );
    // The new maxmemory is in force: a write over it is refused.
    exchange(&mut s, &["CONFIG", "SET", "maxmemory", "1"], b"+OK\r\n");
    assert!(common::wait_until(Duration::from_secs(20), || {
        s.write_all(&req(&["SET", "k", "v"])).unwrap();
        common::read_line(&mut s).starts_with("-OOM ")
    }));
    exchange(&mut s, &["CONFIG", "SET", "maxmemory", "0"], b"+OK\r\n");
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
}

#[test]
fn reset_ends_transactions_and_client_state() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(&mut s, &["CLIENT", "SETNAME", "me"], b"+OK\r\n");
    exchange(&mut s, &["WATCH", "w"], b"+OK\r\n");
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["SET", "a", "1"], b"+QUEUED\r\n");
    exchange(&mut s, &["RESET"], b"+RESET\r\n");
    exchange(&mut s, &["EXEC"], b"-ERR EXEC without MULTI\r\n");
    exchange(&mut s, &["GET", "a"], b"$-1\r\n");
    exchange(&mut s, &["CLIENT", "GETNAME"], b"$-1\r\n");
    s.write_all(&req(&["HELLO", "3"])).unwrap();
    let mut hello = Vec::new();
    let mut b = [0u8];
    while !hello.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        s.read_exact(&mut b).unwrap();
        hello.push(b[0]);
    }
    exchange(&mut s, &["GET", "a"], b"_\r\n");
    exchange(&mut s, &["RESET"], b"+RESET\r\n");
    exchange(&mut s, &["GET", "a"], b"$-1\r\n");
}

#[test]
fn info_has_a_cpu_section() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    s.write_all(&req(&["INFO", "cpu"])).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let n: usize = String::from_utf8_lossy(&head[1..head.len() - 2])
        .parse()
        .unwrap();
    let mut body = vec![0; n + 2];
    s.read_exact(&mut body).unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("# CPU\r\nused_cpu_sys:"), "{body}");
    for f in [
        "used_cpu_user:",
        "used_cpu_sys_children:",
        "used_cpu_user_children:",
    ] {
        assert!(body.contains(f), "{body}");
    }
    assert!(!body.contains("used_memory"), "{body}");
}

/// Reads one RESP bulk string reply (`$n\r\n…\r\n`) as text.
fn bulk_reply(s: &mut TcpStream, args: &[&str]) -> String {
    s.write_all(&req(args)).unwrap();
    let head = common::read_line(s);
    let n: usize = head
        .strip_prefix('$')
        .unwrap_or_else(|| panic!("{args:?}: {head}"))
        .parse()
        .unwrap();
    let body = common::read_n(s, n + 2);
    String::from_utf8_lossy(&body[..n]).into_owned()
}

/// A monitor line without its timestamp: `[0 addr] "arg" …`.
fn monitor_line(m: &mut TcpStream) -> String {
    let line = common::read_line(m);
    let (ts, rest) = line.split_once(' ').unwrap();
    let (secs, usecs) = ts.strip_prefix('+').unwrap().split_once('.').unwrap();
    assert!(secs.parse::<u64>().unwrap() > 1_600_000_000, "{line}");
    assert_eq!(usecs.len(), 6, "{line}");
    rest.to_string()
}

/// True once the peer closed `s` (EOF or reset), within the deadline.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// Clients on both workers (the kernel spreads connections over the
/// SO_REUSEPORT listeners; with 16 of them, all on one worker has odds of
/// 2^-15).
const SPREAD: usize = 16;

#[test]
fn monitor_shows_every_workers_commands_in_redis_format() {
    let srv = Server::start(&["--threads", "2"]);
    let mut m = srv.connect();
    exchange(&mut m, &["MONITOR"], b"+OK\r\n");
    let mut clients: Vec<TcpStream> = (0..SPREAD).map(|_| srv.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("k{i}");
        exchange(c, &["SET", &key, "a \"b\"\n"], b"+OK\r\n");
        let addr = c.local_addr().unwrap();
        assert_eq!(
            monitor_line(&mut m),
            format!("[0 {addr}] \"SET\" \"{key}\" \"a \\\"b\\\"\\n\"")
        );
    }
    // Secrets redacted; admin commands hidden; MULTI/EXEC in Redis's order
    // (queued commands shown when EXEC runs them).
    let c = &mut clients[0];
    let addr = c.local_addr().unwrap();
    c.write_all(&req(&["AUTH", "user", "pw"])).unwrap();
    common::read_line(c);
    exchange(c, &["CONFIG", "GET", "nothing"], b"*0\r\n");
    exchange(c, &["MULTI"], b"+OK\r\n");
    exchange(c, &["INCR", "n"], b"+QUEUED\r\n");
    exchange(c, &["EXEC"], b"*1\r\n:1\r\n");
    for want in [
        "\"AUTH\" \"(redacted)\" \"(redacted)\"",
        "\"MULTI\"",
        "\"INCR\" \"n\"",
        "\"EXEC\"",
    ] {
        assert_eq!(monitor_line(&mut m), format!("[0 {addr}] {want}"));
    }
    // Text-protocol clients are shown too.
    let mut t = srv.connect();
    assert_eq!(common::cmd(&mut t, "SET tk tv"), "OK");
    let taddr = t.local_addr().unwrap();
    assert_eq!(
        monitor_line(&mut m),
        format!("[0 {taddr}] \"SET\" \"tk\" \"tv\"")
    );
    // The monitor is listed with flag O until RESET ends monitor mode.
    let list = bulk_reply(c, &["CLIENT", "LIST", "TYPE", "normal"]);
    assert_eq!(list.matches(" flags=O ").count(), 1, "{list}");
    exchange(&mut m, &["RESET"], b"+RESET\r\n");
    let list = bulk_reply(c, &["CLIENT", "LIST"]);
    assert!(!list.contains("flags=O"), "{list}");
    exchange(c, &["SET", "after", "reset"], b"+OK\r\n");
    // Nothing more arrives: the next bytes are the monitor's own reply.
    exchange(&mut m, &["PING"], b"+PONG\r\n");
}

#[test]
fn a_monitor_that_does_not_read_is_disconnected_at_the_output_limit() {
    let srv = Server::start_with(
        &["--threads", "2"],
        &[("MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_LIMIT", "200000")],
    );
    let mut m = srv.connect();
    exchange(&mut m, &["MONITOR"], b"+OK\r\n");
    let mut c = srv.connect();
    let value = "v".repeat(10_000);
    // The monitor never reads: its lines pile up until the limit.
    let mut s = srv.connect();
    let mut n = 0;
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            for _ in 0..50 {
                exchange(&mut c, &["SET", "big", &value], b"+OK\r\n");
            }
            n += 50;
            let info = bulk_reply(&mut s, &["INFO", "stats"]);
            info.contains("client_output_buffer_limit_disconnections:1\r\n")
        }),
        "no disconnection after {n} lines"
    );
    let list = bulk_reply(&mut s, &["CLIENT", "LIST"]);
    assert!(!list.contains("flags=O"), "{list}");
    // The connection ends with the output-limit error after what fit.
    let mut rest = Vec::new();
    let _ = m.read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).contains("-ERR output buffer limit reached"),
        "{} bytes",
        rest.len()
    );
}

#[test]
fn client_kill_closes_connections_of_every_worker() {
    let srv = Server::start(&["--threads", "2"]);
    let mut admin = srv.connect();
    let mut clients: Vec<TcpStream> = (0..SPREAD).map(|_| srv.connect()).collect();
    let mut ids = Vec::new();
    for c in clients.iter_mut() {
        c.write_all(&req(&["CLIENT", "ID"])).unwrap();
        ids.push(common::read_line(c)[1..].to_string());
    }
    // By id (the new form answers a count).
    for (c, id) in clients.iter_mut().zip(&ids).take(SPREAD / 2) {
        exchange(&mut admin, &["CLIENT", "KILL", "ID", id], b":1\r\n");
        assert!(closed_by_server(c));
    }
    // By address (the old form answers +OK or an error).
    let addr = clients[SPREAD / 2].local_addr().unwrap().to_string();
    exchange(&mut admin, &["CLIENT", "KILL", &addr], b"+OK\r\n");
    assert!(closed_by_server(&mut clients[SPREAD / 2]));
    exchange(
        &mut admin,
        &["CLIENT", "KILL", &addr],
        b"-ERR No such client\r\n",
    );
    exchange(&mut admin, &["CLIENT", "KILL", "ADDR", &addr], b":0\r\n");
    // Filters combine; SKIPME yes (the default) spares the caller.
    let left = SPREAD - SPREAD / 2 - 1;
    let laddr = srv.addr.to_string();
    exchange(
        &mut admin,
        &[
            "CLIENT", "KILL", "LADDR", &laddr, "TYPE", "normal", "USER", "default", "MAXAGE", "0",
        ],
        format!(":{left}\r\n").as_bytes(),
    );
    for c in clients.iter_mut().skip(SPREAD / 2 + 1) {
        assert!(closed_by_server(c));
    }
    exchange(&mut admin, &["CLIENT", "KILL", "TYPE", "master"], b":0\r\n");
    let list = bulk_reply(&mut admin, &["CLIENT", "LIST"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    // Illegal arguments, with Redis's errors.
    for (args, err) in [
        (
            &["CLIENT", "KILL"][..],
            "-ERR wrong number of arguments for 'client|kill' command",
        ),
        (&["CLIENT", "KILL", "ID", "10", "x"], "-ERR syntax error"),
        (
            &["CLIENT", "KILL", "ID", "str"],
            "-ERR client-id should be greater than 0",
        ),
        (
            &["CLIENT", "KILL", "ID", "0"],
            "-ERR client-id should be greater than 0",
        ),
        (
            &["CLIENT", "KILL", "TYPE", "wrong_type"],
            "-ERR Unknown client type 'wrong_type'",
        ),
        (
            &["CLIENT", "KILL", "USER", "wrong_user"],
            "-ERR No such user 'wrong_user'",
        ),
        (&["CLIENT", "KILL", "SKIPME", "maybe"], "-ERR syntax error"),
        (
            &["CLIENT", "KILL", "MAXAGE", "-1"],
            "-ERR maxage should be greater than 0",
        ),
        (
            &["CLIENT", "KILL", "MAXAGE", "x"],
            "-ERR value is not an integer or out of range",
        ),
    ] {
        exchange(&mut admin, args, format!("{err}\r\n").as_bytes());
    }
    // SKIPME no: the caller gets its reply, then is closed.
    exchange(&mut admin, &["CLIENT", "KILL", "SKIPME", "no"], b":1\r\n");
    assert!(closed_by_server(&mut admin));
}

#[test]
fn client_list_and_info_have_redis_fields() {
    let srv = Server::start(&["--threads", "2"]);
    let mut s = srv.connect();
    s.write_all(&req(&["CLIENT", "ID"])).unwrap();
    let id = common::read_line(&mut s)[1..].to_string();
    let info = bulk_reply(&mut s, &["CLIENT", "INFO"]);
    let names: Vec<&str> = info
        .trim_end()
        .split(' ')
        .map(|f| f.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        names.join(" "),
        "id addr laddr fd name age idle flags db sub psub ssub multi watch qbuf qbuf-free \
         argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp \
         lib-name lib-ver"
    );
    let field = |line: &str, k: &str| -> String {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("{k} missing: {line}"))
    };
    assert_eq!(field(&info, "id"), id);
    assert_eq!(field(&info, "addr"), s.local_addr().unwrap().to_string());
    assert_eq!(field(&info, "laddr"), srv.addr.to_string());
    assert!(field(&info, "fd").parse::<u32>().unwrap() > 2);
    // The request being run is in the query buffer, as in Redis.
    assert_eq!(field(&info, "qbuf"), "26");
    for (k, v) in [
        ("flags", "N"),
        ("db", "0"),
        ("multi", "-1"),
        ("watch", "0"),
        ("obl", "0"),
        ("events", "r"),
        ("cmd", "client|info"),
        ("user", "default"),
        ("redir", "-1"),
        ("resp", "2"),
    ] {
        assert_eq!(field(&info, k), v, "{info}");
    }
    // Another connection inside MULTI, seen from here.
    let mut t = srv.connect();
    t.write_all(&req(&["CLIENT", "ID"])).unwrap();
    let tid = common::read_line(&mut t)[1..].to_string();
    exchange(&mut t, &["WATCH", "w1", "w2"], b"+OK\r\n");
    exchange(&mut t, &["MULTI"], b"+OK\r\n");
    exchange(&mut t, &["SET", "a", "b"], b"+QUEUED\r\n");
    let list = bulk_reply(&mut s, &["CLIENT", "LIST", "ID", &tid]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert_eq!(field(&list, "id"), tid);
    assert_eq!(field(&list, "flags"), "x");
    assert_eq!(field(&list, "multi"), "1");
    assert_eq!(field(&list, "watch"), "2");
    assert_eq!(field(&list, "cmd"), "set");
    // A connection's view is republished when what it shows changes, even
    // under the same command name: the last UNSUBSCRIBE ends the
    // subscriptions.
    exchange(&mut t, &["EXEC"], b"*1\r\n+OK\r\n");
    exchange(
        &mut t,
        &["SUBSCRIBE", "c1", "c2"],
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n",
    );
    exchange(
        &mut t,
        &["UNSUBSCRIBE", "c1"],
        b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nc1\r\n:1\r\n",
    );
    let list = bulk_reply(&mut s, &["CLIENT", "LIST", "ID", &tid]);
    assert_eq!(
        (field(&list, "flags"), field(&list, "sub")),
        ("P".into(), "1".into()),
        "{list}"
    );
    exchange(
        &mut t,
        &["UNSUBSCRIBE", "c2"],
        b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nc2\r\n:0\r\n",
    );
    let list = bulk_reply(&mut s, &["CLIENT", "LIST", "ID", &tid]);
    assert_eq!(
        (
            field(&list, "flags"),
            field(&list, "sub"),
            field(&list, "multi")
        ),
        ("N".into(), "0".into(), "-1".into()),
        "{list}"
    );
    assert_eq!(field(&list, "cmd"), "unsubscribe");
    let both = bulk_reply(&mut s, &["CLIENT", "LIST", "ID", &tid, &id, "999"]);
    assert_eq!(both.lines().count(), 2, "{both}");
    assert_eq!(field(&both, "cmd"), "client|list");
    exchange(&mut s, &["CLIENT", "LIST", "TYPE", "pubsub"], b"$0\r\n\r\n");
    exchange(
        &mut s,
        &["CLIENT", "LIST", "TYPE", "x"],
        b"-ERR Unknown client type 'x'\r\n",
    );
    exchange(
        &mut s,
        &["CLIENT", "LIST", "ID", "0"],
        b"-ERR Invalid client ID\r\n",
    );
    exchange(&mut s, &["CLIENT", "LIST", "x"], b"-ERR syntax error\r\n");
    // RESET clears the name but keeps the library strings (Redis 7.2).
    exchange(&mut s, &["CLIENT", "SETNAME", "n1"], b"+OK\r\n");
    exchange(
        &mut s,
        &["CLIENT", "SETINFO", "LIB-NAME", "redis.py"],
        b"+OK\r\n",
    );
    exchange(&mut s, &["RESET"], b"+RESET\r\n");
    let info = bulk_reply(&mut s, &["CLIENT", "INFO"]);
    assert_eq!(field(&info, "name"), "");
    assert_eq!(field(&info, "lib-name"), "redis.py");
}

#[test]
fn save_bgsave_lastsave() {
    // In memory: a clear refusal; LASTSAVE is the start time, as in Redis.
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let refusal = b"-ERR persistence is off (engine = \"memory\"): there is nothing to save\r\n";
    exchange(&mut s, &["SAVE"], refusal);
    exchange(&mut s, &["BGSAVE"], refusal);
    exchange(&mut s, &["BGSAVE", "x"], b"-ERR syntax error\r\n");
    s.write_all(&req(&["LASTSAVE"])).unwrap();
    let started: u64 = common::read_line(&mut s)[1..].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && started + 600 > now, "{started}");
    // SAVE is not allowed inside MULTI.
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["SET", "foo", "bar"], b"+QUEUED\r\n");
    exchange(
        &mut s,
        &["SAVE"],
        b"-ERR Command not allowed inside a transaction\r\n",
    );
    exchange(
        &mut s,
        &["EXEC"],
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    drop(srv);

    // Persistent: SAVE writes a snapshot, LASTSAVE moves, BGSAVE starts one.
    let dir = common::TempDir::new("save");
    let srv = Server::start(&[
        "--engine",
        "sled",
        "--storage-path",
        dir.path().to_str().unwrap(),
    ]);
    let mut s = srv.connect();
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    exchange(&mut s, &["SAVE"], b"+OK\r\n");
    s.write_all(&req(&["INFO", "merklekv"])).unwrap();
    let head = common::read_line(&mut s);
    let info = common::read_n(&mut s, head[1..].parse::<usize>().unwrap() + 2);
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("persist_snapshots:"), "{info}");
    assert!(!info.contains("persist_snapshots:0\r\n"), "{info}");
    assert!(
        !info.contains("persist_last_snapshot_entries:0\r\n"),
        "{info}"
    );
    s.write_all(&req(&["LASTSAVE"])).unwrap();
    let last: u64 = common::read_line(&mut s)[1..].parse().unwrap();
    assert!(last >= started, "{last} < {started}");
    s.write_all(&req(&["BGSAVE", "SCHEDULE"])).unwrap();
    let reply = common::read_line(&mut s);
    assert!(
        reply == "+Background saving started" || reply == "+Background saving scheduled",
        "{reply}"
    );
}

#[test]
fn watch_sees_a_key_that_expired() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(&mut s, &["SET", "x", "foo", "PX", "200"], b"+OK\r\n");
    exchange(&mut s, &["WATCH", "x"], b"+OK\r\n");
    assert!(common::wait_until(Duration::from_secs(20), || {
        s.write_all(&req(&["EXISTS", "x"])).unwrap();
        common::read_line(&mut s) == ":0"
    }));
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["PING"], b"+QUEUED\r\n");
    exchange(&mut s, &["EXEC"], b"*-1\r\n");
    // A key already expired when watched is not a change.
    exchange(&mut s, &["WATCH", "x"], b"+OK\r\n");
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["PING"], b"+QUEUED\r\n");
    exchange(&mut s, &["EXEC"], b"*1\r\n+PONG\r\n");
}

/// The `name:value` lines of an INFO text starting with `prefix`.
fn lines_with<'a>(info: &'a str, prefix: &str) -> Vec<&'a str> {
    info.split("\r\n")
        .filter(|l| l.starts_with(prefix))
        .collect()
}

/// `cmdstat_<name>:calls=…` without the run-time fields (`usec`,
/// `usec_per_call`), which depend on the machine.
fn cmdstat(info: &str, name: &str) -> Option<String> {
    let line = lines_with(info, &format!("cmdstat_{name}:")).pop()?;
    let fields: Vec<&str> = line.split_once(':')?.1.split(',').collect();
    assert_eq!(fields.len(), 5, "{line}");
    assert!(
        fields[1].starts_with("usec=") && fields[2].starts_with("usec_per_call="),
        "{line}"
    );
    let per_call = fields[2]["usec_per_call=".len()..].to_string();
    assert!(
        per_call.split_once('.').is_some_and(|(_, d)| d.len() == 2),
        "{line}"
    );
    Some(format!("{},{},{}", fields[0], fields[3], fields[4]))
}

#[test]
fn info_command_error_and_latency_stats() {
    let srv = Server::start(&[]);
    let mut text = srv.connect();
    text.write_all(b"GET tk\r\n").unwrap();
    let mut nf = [0u8; 11];
    text.read_exact(&mut nf).unwrap();
    assert_eq!(&nf, b"NOT_FOUND\r\n");
    let mut s = srv.connect();
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    exchange(&mut s, &["SET", "k", "v2"], b"+OK\r\n");
    exchange(&mut s, &["GET", "k"], b"$2\r\nv2\r\n");
    exchange(
        &mut s,
        &["GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    exchange(
        &mut s,
        &["INCR", "k"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    exchange(
        &mut s,
        &["ASDF"],
        b"-ERR unknown command 'ASDF', with args beginning with: \r\n",
    );
    exchange(&mut s, &["CLIENT", "ID"], b":");
    let mut rest = [0u8; 1];
    while rest != [b'\n'] {
        s.read_exact(&mut rest).unwrap();
    }
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["SET", "a", "b"], b"+QUEUED\r\n");
    exchange(
        &mut s,
        &["SET"],
        b"-ERR wrong number of arguments for 'set' command\r\n",
    );
    exchange(
        &mut s,
        &["EXEC"],
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    exchange(&mut s, &["MULTI"], b"+OK\r\n");
    exchange(&mut s, &["INCR", "k"], b"+QUEUED\r\n");
    exchange(
        &mut s,
        &["EXEC"],
        b"*1\r\n-ERR value is not an integer or out of range\r\n",
    );

    let all = bulk_reply(&mut s, &["INFO", "everything"]);
    let c = |name| cmdstat(&all, name);
    assert_eq!(
        c("get").unwrap(),
        "calls=2,rejected_calls=1,failed_calls=0",
        "{all}"
    );
    assert_eq!(
        c("set").unwrap(),
        "calls=2,rejected_calls=1,failed_calls=0",
        "{all}"
    );
    assert_eq!(
        c("incr").unwrap(),
        "calls=2,rejected_calls=0,failed_calls=2",
        "{all}"
    );
    assert_eq!(
        c("multi").unwrap(),
        "calls=2,rejected_calls=0,failed_calls=0",
        "{all}"
    );
    assert_eq!(
        c("exec").unwrap(),
        "calls=2,rejected_calls=0,failed_calls=1",
        "{all}"
    );
    assert_eq!(
        c("client|id").unwrap(),
        "calls=1,rejected_calls=0,failed_calls=0",
        "{all}"
    );
    assert_eq!(c("info"), None, "INFO counts after its own reply");
    assert_eq!(c("unknown"), None, "every command word has a slot: {all}");
    assert_eq!(
        lines_with(&all, "errorstat_"),
        ["errorstat_ERR:count=5", "errorstat_EXECABORT:count=1"],
        "{all}"
    );
    assert!(all.contains("\r\ntotal_error_replies:6\r\n"), "{all}");
    let sections: Vec<&str> = lines_with(&all, "# ");
    assert_eq!(
        sections,
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Commandstats",
            "# Errorstats",
            "# Latencystats",
            "# Cluster",
            "# Scripting",
            "# Keyspace",
            "# MerkleKV"
        ]
    );
    let lat = lines_with(&all, "latency_percentiles_usec_");
    let get = lat
        .iter()
        .find(|l| l.starts_with("latency_percentiles_usec_get:"))
        .unwrap_or_else(|| panic!("{all}"));
    let values: Vec<&str> = get.split_once(':').unwrap().1.split(',').collect();
    assert_eq!(values.len(), 3, "{get}");
    for (v, p) in values.iter().zip(["p50=", "p99=", "p99.9="]) {
        let n = v.strip_prefix(p).unwrap_or_else(|| panic!("{get}"));
        assert!(
            n.parse::<f64>().unwrap() > 0.0 && n.split('.').nth(1).unwrap().len() == 3,
            "{get}"
        );
    }
    assert!(
        lat.iter()
            .any(|l| l.starts_with("latency_percentiles_usec_client|id:")),
        "{all}"
    );

    // Section selection as in Redis.
    let default = bulk_reply(&mut s, &["INFO"]);
    assert!(!default.contains("cmdstat_") && !default.contains("latency_percentiles"));
    assert!(
        default.contains("# Errorstats\r\nerrorstat_ERR:count=5\r\n"),
        "{default}"
    );
    let default_arg = bulk_reply(&mut s, &["INFO", "default"]);
    assert_eq!(lines_with(&default_arg, "# "), lines_with(&default, "# "));
    assert_eq!(
        lines_with(&default, "# "),
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Errorstats",
            "# Cluster",
            "# Scripting",
            "# Keyspace",
            "# MerkleKV"
        ]
    );
    let one = bulk_reply(&mut s, &["INFO", "commandSTATS"]);
    assert!(one.starts_with("# Commandstats\r\ncmdstat_"), "{one}");
    assert!(
        !one.contains("used_memory") && !one.contains("# Errorstats"),
        "{one}"
    );
    let two = bulk_reply(&mut s, &["INFO", "cpu", "errorstats", "nosuch"]);
    assert_eq!(lines_with(&two, "# "), ["# CPU", "# Errorstats"], "{two}");
    let cpu_all = bulk_reply(&mut s, &["INFO", "cpu", "all"]);
    assert_eq!(cpu_all.matches("used_cpu_user_children").count(), 1);
    assert!(cpu_all.contains("rejected_calls"));

    // CONFIG RESETSTAT: statistics start again (its own call counts).
    exchange(&mut s, &["CONFIG", "RESETSTAT"], b"+OK\r\n");
    let after = bulk_reply(&mut s, &["INFO", "all"]);
    assert_eq!(
        lines_with(&after, "cmdstat_").len(),
        1,
        "only CONFIG RESETSTAT itself: {after}"
    );
    assert_eq!(
        cmdstat(&after, "config|resetstat").unwrap(),
        "calls=1,rejected_calls=0,failed_calls=0"
    );
    assert!(lines_with(&after, "errorstat_").is_empty(), "{after}");
    assert!(after.contains("\r\ntotal_error_replies:0\r\n"), "{after}");
    assert_eq!(
        lines_with(&after, "latency_percentiles_usec_"),
        [lines_with(&after, "latency_percentiles_usec_config|resetstat:")[0]]
    );
    exchange(&mut s, &["GET", "k"], b"$2\r\nv2\r\n");
    let again = bulk_reply(&mut s, &["INFO", "commandstats"]);
    assert_eq!(
        cmdstat(&again, "get").unwrap(),
        "calls=1,rejected_calls=0,failed_calls=0"
    );
    let cfg = list(&mut s, &["CONFIG", "GET", "latency-tracking*"]);
    assert_eq!(
        cfg,
        [
            "latency-tracking",
            "yes",
            "latency-tracking-info-percentiles",
            "50 99 99.9"
        ]
    );
}

#[test]
fn latency_tracking_off_counts_without_timing() {
    let srv = Server::start_with(&[], &[("MERKLE_KV_METRICS_LATENCY_TRACKING", "false")]);
    let mut s = srv.connect();
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    let info = bulk_reply(&mut s, &["INFO", "commandstats", "latencystats"]);
    assert_eq!(
        info,
        "# Commandstats\r\ncmdstat_set:calls=1,usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0\r\n\r\n# Latencystats\r\n"
    );
    let cfg = list(&mut s, &["CONFIG", "GET", "latency-tracking"]);
    assert_eq!(cfg, ["latency-tracking", "no"]);
}

/// `MEMORY`: `USAGE` measures the key's record (allocation and table
/// slot), and `COMMAND GETKEYS` knows its key; the other subcommands
/// answer for this store.
#[test]
fn memory_usage_and_subcommands() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    // 24-byte header + key + value + 16-byte digest, padded to 8, + slot.
    exchange(&mut s, &["MEMORY", "USAGE", "k"], b":56\r\n");
    exchange(
        &mut s,
        &["MEMORY", "USAGE", "k", "SAMPLES", "0"],
        b":56\r\n",
    );
    exchange(&mut s, &["MEMORY", "USAGE", "nosuch"], b"$-1\r\n");
    exchange(
        &mut s,
        &["MEMORY", "USAGE", "k", "x"],
        b"-ERR syntax error\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "MEMORY", "USAGE", "k"],
        b"*1\r\n$1\r\nk\r\n",
    );
    exchange(
        &mut s,
        &["COMMAND", "GETKEYS", "MEMORY", "STATS"],
        b"-ERR The command has no key arguments\r\n",
    );
    exchange(&mut s, &["MEMORY", "PURGE"], b"+OK\r\n");
    exchange(
        &mut s,
        &["MEMORY", "MALLOC-STATS"],
        b"$45\r\nStats not supported for the current allocator\r\n",
    );
    s.write_all(&req(&["MEMORY", "HELP"])).unwrap();
    let n: usize = common::read_line(&mut s)[1..].parse().unwrap();
    let first = common::read_line(&mut s);
    assert!(first.starts_with("+MEMORY <subcommand>"), "{first}");
    for _ in 1..n {
        assert!(common::read_line(&mut s).starts_with('+'));
    }
    s.write_all(&req(&["MEMORY", "STATS"])).unwrap();
    assert_eq!(common::read_line(&mut s), "*12");
    let mut fields = Vec::new();
    for _ in 0..6 {
        common::read_line(&mut s);
        fields.push(common::read_line(&mut s));
        fields.push(common::read_line(&mut s));
    }
    let at = fields.iter().position(|f| f == "keys.count").unwrap();
    assert_eq!(fields[at + 1], ":1");
    exchange(
        &mut s,
        &["MEMORY", "NOSUCH"],
        b"-ERR unknown subcommand 'NOSUCH'. Try MEMORY HELP.\r\n",
    );
    exchange(
        &mut s,
        &["MEMORY", "STATS", "x"],
        b"-ERR wrong number of arguments for 'memory|stats' command\r\n",
    );
}

/// `SLOWLOG`: with a threshold of 0 every command is logged, newest
/// first, as Redis lays entries out; `CONFIG SET` changes the threshold
/// and the length at run time. Container commands answer `HELP`, and
/// `MODULE LIST` is empty.
#[test]
fn slowlog_logs_commands_over_the_threshold() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    exchange(&mut s, &["SLOWLOG", "LEN"], b":0\r\n");
    exchange(
        &mut s,
        &[
            "CONFIG",
            "SET",
            "slowlog-log-slower-than",
            "0",
            "slowlog-max-len",
            "2",
        ],
        b"+OK\r\n",
    );
    exchange(&mut s, &["CLIENT", "SETNAME", "slow"], b"+OK\r\n");
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    s.write_all(&req(&["SLOWLOG", "GET", "1"])).unwrap();
    assert_eq!(common::read_line(&mut s), "*1");
    assert_eq!(common::read_line(&mut s), "*6");
    let id = common::read_line(&mut s);
    assert!(id.starts_with(':'), "{id}");
    let time: u64 = common::read_line(&mut s)[1..].parse().unwrap();
    assert!(time > 1_600_000_000, "{time}");
    let micros = common::read_line(&mut s);
    assert!(micros.starts_with(':'), "{micros}");
    let mut rest = Vec::new();
    for _ in 0..11 {
        rest.push(common::read_line(&mut s));
    }
    let addr = s.local_addr().unwrap().to_string();
    assert_eq!(
        rest,
        [
            "*3",
            "$3",
            "SET",
            "$1",
            "k",
            "$1",
            "v",
            &format!("${}", addr.len()),
            &addr,
            "$4",
            "slow"
        ]
    );
    // At most slowlog-max-len entries are kept.
    exchange(&mut s, &["SLOWLOG", "LEN"], b":2\r\n");
    exchange(
        &mut s,
        &["CONFIG", "SET", "slowlog-log-slower-than", "-1"],
        b"+OK\r\n",
    );
    exchange(&mut s, &["SLOWLOG", "RESET"], b"+OK\r\n");
    exchange(&mut s, &["SLOWLOG", "LEN"], b":0\r\n");
    exchange(&mut s, &["SLOWLOG", "GET"], b"*0\r\n");
    exchange(
        &mut s,
        &["SLOWLOG", "GET", "-2"],
        b"-ERR count should be greater than or equal to -1\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "slowlog-max-len", "-1"],
        b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument must be between 0 and 100000 inclusive\r\n",
    );
    exchange(&mut s, &["MODULE", "LIST"], b"*0\r\n");
    for container in [
        "CLIENT", "COMMAND", "CONFIG", "FUNCTION", "MODULE", "SLOWLOG", "PUBSUB", "OBJECT",
        "MEMORY",
    ] {
        s.write_all(&req(&[container, "HELP"])).unwrap();
        let n: usize = common::read_line(&mut s)[1..].parse().unwrap();
        let first = common::read_line(&mut s);
        assert!(
            first.starts_with(&format!("+{container} <subcommand> ")),
            "{first}"
        );
        for _ in 1..n {
            common::read_line(&mut s);
        }
    }
}

/// True once the server closed `s` (EOF or reset) within `deadline`; a
/// read timeout is not a close.
fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut b = [0u8; 64];
    common::wait_until(deadline, || match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    })
}

/// `CONFIG SET` of the live settings: each takes effect at once on every
/// worker, `CONFIG GET` and INFO show the value in force, and a batch
/// with one bad value changes nothing.
#[test]
fn config_set_changes_live_settings() {
    let srv = Server::start(&["--threads", "2"]);
    let mut s = srv.connect();
    let get = |s: &mut TcpStream, name: &str| list(s, &["CONFIG", "GET", name])[1].clone();
    // All or nothing: the bad maxclients keeps timeout and loglevel.
    exchange(
        &mut s,
        &[
            "CONFIG", "SET", "timeout", "5", "loglevel", "debug", "maxclients", "0",
        ],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive\r\n",
    );
    assert_eq!(get(&mut s, "timeout"), "0");
    assert_eq!(get(&mut s, "loglevel"), "notice");
    exchange(
        &mut s,
        &["CONFIG", "SET", "loglevel", "loud"],
        b"-ERR CONFIG SET failed (possibly related to argument 'loglevel') - argument(s) must be one of the following: debug, verbose, notice, warning\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 1mb 60"],
        b"-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Invalid client class specified in buffer limit configuration.\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "proto-max-bulk-len", "512mb"],
        b"-ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1024 and 8388608 inclusive\r\n",
    );

    // loglevel and MerkleKV's logging.level are one setting.
    exchange(
        &mut s,
        &["CONFIG", "SET", "loglevel", "warning"],
        b"+OK\r\n",
    );
    assert_eq!(get(&mut s, "logging.level"), "warn");
    exchange(
        &mut s,
        &["CONFIG", "SET", "logging.level", "DEBUG"],
        b"+OK\r\n",
    );
    assert_eq!(get(&mut s, "loglevel"), "verbose");

    // maxclients: at the number connected, the next connection is refused.
    let info = bulk_reply(&mut s, &["INFO", "clients"]);
    let connected = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .to_string();
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxclients", &connected],
        b"+OK\r\n",
    );
    let info = bulk_reply(&mut s, &["INFO", "clients"]);
    assert!(
        info.contains(&format!("maxclients:{connected}\r\n")),
        "{info}"
    );
    let mut refused = srv.connect();
    assert_eq!(
        common::read_line(&mut refused),
        "ERROR max connections reached"
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxclients", "10000"],
        b"+OK\r\n",
    );
    exchange(&mut srv.connect(), &["PING"], b"+PONG\r\n");

    // latency-tracking off: commands run from now on are not timed.
    exchange(
        &mut s,
        &["CONFIG", "SET", "latency-tracking", "no"],
        b"+OK\r\n",
    );
    exchange(&mut s, &["CONFIG", "RESETSTAT"], b"+OK\r\n");
    exchange(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    let stats = bulk_reply(&mut s, &["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_set:calls=1,usec=0,"), "{stats}");
    assert_eq!(get(&mut s, "latency-tracking"), "no");
    exchange(
        &mut s,
        &["CONFIG", "SET", "latency-tracking", "yes"],
        b"+OK\r\n",
    );

    // MerkleKV's own: the failed-AUTH delay, shown in INFO.
    exchange(
        &mut s,
        &["CONFIG", "SET", "security.auth_failure_delay_ms", "0"],
        b"+OK\r\n",
    );
    let info = bulk_reply(&mut s, &["INFO", "merklekv"]);
    assert!(info.contains("auth_failure_delay_ms:0\r\n"), "{info}");
    exchange(
        &mut s,
        &[
            "CONFIG",
            "SET",
            "security.max_auth_failures",
            "3",
            "limits.heap_trim_threshold",
            "0",
        ],
        b"+OK\r\n",
    );
    let info = bulk_reply(&mut s, &["INFO", "merklekv"]);
    assert!(info.contains("auth_max_failures:3\r\n"), "{info}");
    assert!(info.contains("heap_trim_threshold:0\r\n"), "{info}");
    assert_eq!(get(&mut s, "security.max_auth_failures"), "3");

    // proto-max-bulk-len: a connection opened before the change takes the
    // new limit too (at its worker's next sweep).
    let mut old = srv.connect();
    exchange(&mut old, &["PING"], b"+PONG\r\n");
    exchange(
        &mut s,
        &["CONFIG", "SET", "proto-max-bulk-len", "1kb"],
        b"+OK\r\n",
    );
    assert_eq!(get(&mut s, "proto-max-bulk-len"), "1024");
    let info = bulk_reply(&mut s, &["INFO", "merklekv"]);
    assert!(info.contains("proto_max_bulk_len:1024\r\n"), "{info}");
    let big = "x".repeat(2000);
    let refusal = b"-ERR Protocol error: invalid bulk length\r\n";
    let mut fresh = srv.connect();
    fresh.write_all(&req(&["SET", "big", &big])).unwrap();
    assert_eq!(common::read_n(&mut fresh, refusal.len()), refusal);
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            old.write_all(&req(&["SET", "big", &big])).unwrap();
            let l = common::read_line(&mut old);
            assert!(
                l == "+OK" || l == "-ERR Protocol error: invalid bulk length",
                "{l}"
            );
            l.starts_with('-')
        }),
        "an open connection kept the old bulk limit"
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "proto-max-bulk-len", "8mb"],
        b"+OK\r\n",
    );

    // client-output-buffer-limit lowered: a client that does not read is
    // disconnected once its pending replies pass the hard limit.
    let value = "v".repeat(100_000);
    // A new connection: `s` may keep the 1 KiB limit until its sweep.
    exchange(&mut srv.connect(), &["SET", "wide", &value], b"+OK\r\n");
    exchange(
        &mut s,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 200kb 0 0",
        ],
        b"+OK\r\n",
    );
    assert_eq!(
        get(&mut s, "client-output-buffer-limit"),
        "normal 204800 0 0"
    );
    let mut lazy = srv.connect();
    let gets = req(&["GET", "wide"]).repeat(20);
    let mut asked = 0;
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let _ = lazy.write_all(&gets);
            asked += 20 * value.len();
            let info = bulk_reply(&mut s, &["INFO", "stats"]);
            info.contains("client_output_buffer_limit_disconnections:1\r\n")
        }),
        "a non-reading client was not disconnected"
    );
    // Far below the configured limit (256 MiB): the lowered one did it.
    assert!(asked < 128 << 20, "{asked} bytes asked");

    // timeout: an idle client is closed (every connection here is idle
    // meanwhile, so this comes last and a fresh connection resets it).
    exchange(&mut s, &["CONFIG", "SET", "timeout", "1"], b"+OK\r\n");
    assert_eq!(get(&mut s, "timeout"), "1");
    let mut idle = srv.connect();
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)),
        "an idle client outlived timeout 1"
    );
    let mut s = srv.connect();
    exchange(&mut s, &["CONFIG", "SET", "timeout", "0"], b"+OK\r\n");
    assert_eq!(get(&mut s, "timeout"), "0");
}

#[test]
fn busy_polling_serves_requests_counts_its_hits_and_is_live() {
    // A setting out of range stops the node, naming it.
    let out = std::process::Command::new(common::bin())
        .args(["--port", "0"])
        .env("MERKLE_KV_NETWORK_BUSY_POLL_US", "10001")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MERKLE_KV_NETWORK_BUSY_POLL_US"), "{err}");

    // 10 ms: every request of this loop arrives while the worker polls.
    let srv = Server::start_with(
        &["--threads", "1"],
        &[("MERKLE_KV_NETWORK_BUSY_POLL_US", "10000")],
    );
    let mut s = srv.connect();
    let info = bulk_reply(&mut s, &["INFO", "merklekv"]);
    assert!(info.contains("busy_poll_us:10000\r\n"), "{info}");
    for i in 0..100 {
        let v = format!("v{i}");
        exchange(&mut s, &["SET", "k", &v], b"+OK\r\n");
        exchange(
            &mut s,
            &["GET", "k"],
            format!("${}\r\n{v}\r\n", v.len()).as_bytes(),
        );
        exchange(&mut s, &["PING"], b"+PONG\r\n");
    }
    assert!(info_u64(&srv, "busy_poll_hits") > 0);

    exchange(
        &mut s,
        &["CONFIG", "SET", "network.busy_poll_us", "10001"],
        b"-ERR CONFIG SET failed (possibly related to argument 'network.busy_poll_us') - argument must be between 0 and 10000 inclusive\r\n",
    );
    exchange(
        &mut s,
        &["CONFIG", "SET", "network.busy_poll_us", "0"],
        b"+OK\r\n",
    );
    assert_eq!(
        list(&mut s, &["CONFIG", "GET", "network.busy_poll_us"]),
        ["network.busy_poll_us", "0"]
    );
    // Off: the worker sleeps between requests, and nothing is counted.
    let before = info_u64(&srv, "busy_poll_hits");
    for _ in 0..50 {
        exchange(&mut s, &["PING"], b"+PONG\r\n");
    }
    assert_eq!(info_u64(&srv, "busy_poll_hits"), before);
    let info = bulk_reply(&mut s, &["INFO", "merklekv"]);
    assert!(info.contains("busy_poll_us:0\r\n"), "{info}");
}
