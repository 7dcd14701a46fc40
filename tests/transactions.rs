//! RESP transactions against the real binary: every command of the RESP
//! command table queued inside `MULTI`/`EXEC` (the list comes from the
//! server's own `COMMAND` reply, so a new command is covered as soon as it
//! is in the table), and the `MULTI`/`FLUSHDB`/`EXEC` freeze regressions.
//! After each transaction a fresh connection must get `PONG` within the
//! deadline: `EXEC` holds every shard, so a command that locks one again
//! would freeze the node.
//!
//! The text protocol has no transactions (no `MULTI`), so it has nothing
//! to cover here.

mod common;

use common::req;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{DEADLINE, Server, expect, read_n, wait_until};

/// A parsed RESP reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn read_line(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("read reply");
        out.push(b[0]);
    }
    out.truncate(out.len() - 2);
    out
}

fn read_reply(s: &mut TcpStream) -> Reply {
    let line = read_line(s);
    let rest = String::from_utf8_lossy(&line[1..]).into_owned();
    let n = || rest.parse::<i64>().expect("length");
    match line[0] {
        b'+' => Reply::Simple(rest),
        b'-' => Reply::Error(rest),
        b':' => Reply::Int(n()),
        b'$' if n() < 0 => Reply::Bulk(None),
        b'$' => {
            let mut v = read_n(s, n() as usize + 2);
            v.truncate(v.len() - 2);
            Reply::Bulk(Some(v))
        }
        b'*' if n() < 0 => Reply::Array(None),
        b'*' => Reply::Array(Some((0..n()).map(|_| read_reply(s)).collect())),
        b'%' => Reply::Array(Some((0..2 * n()).map(|_| read_reply(s)).collect())),
        b'_' => Reply::Bulk(None),
        other => panic!("unexpected reply type {:?}", other as char),
    }
}

fn call(s: &mut TcpStream, args: &[&[u8]]) -> Reply {
    s.write_all(&req(args)).unwrap();
    read_reply(s)
}

/// `(name, arity)` of every command, from the server's `COMMAND` reply
/// (built from the RESP command table, `src/protocol/redis.rs`).
fn command_table(s: &mut TcpStream) -> Vec<(String, i64)> {
    let Reply::Array(Some(entries)) = call(s, &[b"COMMAND"]) else {
        panic!("COMMAND is not an array");
    };
    entries
        .into_iter()
        .map(|e| match e {
            Reply::Array(Some(f)) => match (&f[0], &f[1]) {
                (Reply::Bulk(Some(n)), Reply::Int(a)) => {
                    (String::from_utf8(n.clone()).unwrap(), *a)
                }
                other => panic!("bad COMMAND entry {other:?}"),
            },
            other => panic!("bad COMMAND entry {other:?}"),
        })
        .collect()
}

/// Requests that exercise `name`: hand-written for commands whose
/// arguments are subcommands or must be well-formed, otherwise derived
/// from the arity (a key, then values of "1").
fn examples(name: &str, arity: i64) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match name {
        "set" => vec![v(&["SET", "k", "v"]), v(&["SET", "k", "w", "XX", "GET"])],
        "ping" => vec![v(&["PING"]), v(&["PING", "hi"])],
        "select" => vec![v(&["SELECT", "0"])],
        "client" => vec![
            v(&["CLIENT", "ID"]),
            v(&["CLIENT", "GETNAME"]),
            v(&["CLIENT", "SETNAME", "tx"]),
            v(&["CLIENT", "SETINFO", "LIB-NAME", "t"]),
            v(&["CLIENT", "LIST"]),
            v(&["CLIENT", "INFO"]),
        ],
        "command" => vec![
            v(&["COMMAND", "COUNT"]),
            v(&["COMMAND", "LIST"]),
            v(&["COMMAND", "INFO", "get"]),
            v(&["COMMAND", "DOCS", "get"]),
        ],
        "config" => vec![v(&["CONFIG", "GET", "*"]), v(&["CONFIG", "RESETSTAT"])],
        "info" => vec![v(&["INFO"]), v(&["INFO", "all"])],
        "hash" => vec![v(&["HASH"])],
        "sync" => vec![v(&["SYNC", "127.0.0.1", "1"])],
        "scan" => vec![v(&["SCAN", "0"]), v(&["SCAN", "0", "MATCH", "*"])],
        "keys" => vec![v(&["KEYS", "*"])],
        "hello" => vec![v(&["HELLO"])],
        "function" => vec![v(&["FUNCTION", "FLUSH"]), v(&["FUNCTION", "LIST"])],
        "script" => vec![v(&["SCRIPT", "LOAD", "return 1"]), v(&["SCRIPT", "KILL"])],
        "eval" | "eval_ro" => vec![v(&[&name.to_uppercase(), "return 1", "1", "k"])],
        "evalsha" | "evalsha_ro" => vec![v(&[
            &name.to_uppercase(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
            "0",
        ])],
        "fcall" | "fcall_ro" => vec![v(&[&name.to_uppercase(), "f", "0"])],
        "object" => vec![v(&["OBJECT", "ENCODING", "k"])],
        "pubsub" => vec![
            v(&["PUBSUB", "CHANNELS"]),
            v(&["PUBSUB", "NUMSUB", "k"]),
            v(&["PUBSUB", "NUMPAT"]),
        ],
        "memory" => vec![v(&["MEMORY", "USAGE", "k"]), v(&["MEMORY", "STATS"])],
        "slowlog" => vec![v(&["SLOWLOG", "LEN"]), v(&["SLOWLOG", "GET"])],
        "module" => vec![v(&["MODULE", "LIST"])],
        _ => {
            let n = if arity > 0 { arity } else { -arity } as usize - 1;
            let mut r = vec![name.to_uppercase()];
            r.extend((0..n).map(|i| if i == 0 { "k".into() } else { "1".into() }));
            vec![r]
        }
    }
}

/// Commands refused at queue time, and the start of their error.
fn refused(name: &str) -> Option<&'static str> {
    match name {
        "hash" | "sync" | "hello" | "shutdown" | "monitor" | "save" | "subscribe"
        | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe" | "sunsubscribe"
        // Scripts run on the script thread, EXEC on a worker holding
        // every shard (docs/protocol.md §15.4).
        | "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "script"
        | "function" => {
            Some("ERR Command not allowed inside a transaction")
        }
        "keys" | "scan" => Some("ERR KEYS and SCAN are not allowed inside a transaction"),
        _ => None,
    }
}

/// A fresh connection gets `+PONG` within the deadline.
fn assert_responsive(srv: &Server, after: &str) {
    let mut s = srv.connect();
    s.write_all(&req(&[b"PING"])).unwrap();
    let mut got = [0u8; 7];
    let ok = s.read_exact(&mut got).is_ok() && &got == b"+PONG\r\n";
    assert!(ok, "no PONG after {after}: the node froze");
}

#[test]
fn every_command_of_the_table_runs_inside_multi_exec() {
    let srv = Server::start(&["--threads", "2"]);
    let mut c = srv.connect();
    let table = command_table(&mut c);
    assert!(table.len() > 30, "{table:?}");
    let mut ran = 0;
    for (name, arity) in &table {
        match name.as_str() {
            // Handled by the transaction itself (byte-exact in tests/resp.rs)
            // or end the connection: covered below.
            // RESET ends the transaction at once (tests/resp_introspection.rs).
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset" => continue,
            _ => {}
        }
        for args in examples(name, *arity) {
            let what = args.join(" ");
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            let mut s = srv.connect();
            assert_eq!(call(&mut s, &[b"MULTI"]), Reply::Simple("OK".into()));
            assert_eq!(
                call(&mut s, &[b"SET", b"k", b"1"]),
                Reply::Simple("QUEUED".into())
            );
            let queued = call(&mut s, &args);
            assert_eq!(call(&mut s, &[b"PING"]), Reply::Simple("QUEUED".into()));
            let exec = call(&mut s, &[b"EXEC"]);
            match refused(name) {
                Some(err) => {
                    assert!(
                        matches!(&queued, Reply::Error(e) if e.starts_with(err)),
                        "{what}: {queued:?}"
                    );
                    assert!(
                        matches!(&exec, Reply::Error(e) if e.starts_with("EXECABORT")),
                        "{what}: {exec:?}"
                    );
                }
                None => {
                    assert_eq!(queued, Reply::Simple("QUEUED".into()), "{what}");
                    let Reply::Array(Some(items)) = &exec else {
                        panic!("{what}: EXEC answered {exec:?}");
                    };
                    assert_eq!(items.len(), 3, "{what}: {items:?}");
                    assert_eq!(items[0], Reply::Simple("OK".into()), "{what}");
                    assert_eq!(items[2], Reply::Simple("PONG".into()), "{what}");
                    ran += 1;
                }
            }
            // The connection still works, and so does a fresh one.
            assert_eq!(call(&mut s, &[b"PING"]), Reply::Simple("PONG".into()));
            assert_responsive(&srv, &what);
        }
    }
    assert!(ran > 30, "only {ran} commands ran inside EXEC");

    // The transaction commands inside MULTI.
    let mut s = srv.connect();
    let mut w = req(&[b"MULTI"]);
    w.extend(req(&[b"MULTI"]));
    w.extend(req(&[b"WATCH", b"k"]));
    w.extend(req(&[b"UNWATCH"]));
    w.extend(req(&[b"DISCARD"]));
    w.extend(req(&[b"MULTI"]));
    w.extend(req(&[b"GET", b"k"]));
    w.extend(req(&[b"EXEC"]));
    expect(
        &mut s,
        &w,
        b"+OK\r\n-ERR MULTI calls can not be nested\r\n\
          -ERR WATCH inside MULTI is not allowed\r\n+OK\r\n+OK\r\n\
          +OK\r\n+QUEUED\r\n*1\r\n$1\r\n1\r\n",
    );
    // QUIT inside MULTI closes the connection at once.
    let mut w = req(&[b"MULTI"]);
    w.extend(req(&[b"SET", b"q", b"1"]));
    w.extend(req(&[b"QUIT"]));
    s.write_all(&w).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"+OK\r\n+QUEUED\r\n+OK\r\n");
    assert_responsive(&srv, "QUIT inside MULTI");
    // SHUTDOWN is refused inside MULTI (checked above) and so the node is
    // still up.
    assert_eq!(call(&mut c, &[b"EXISTS", b"q"]), Reply::Int(0));
}

/// `MULTI`, `FLUSHDB`/`FLUSHALL`, `EXEC` used to freeze the node (EXEC
/// held every shard and the clear locked them again). They now run on
/// the held shards; commands after the clear see the empty keyspace.
#[test]
fn flushdb_and_flushall_inside_multi_exec_do_not_freeze() {
    let srv = Server::start(&["--threads", "2"]);
    for flush in [&b"FLUSHDB"[..], b"FLUSHALL"] {
        let mut s = srv.connect();
        let mut w = Vec::new();
        for i in 0..100 {
            w.extend(req(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
        }
        s.write_all(&w).unwrap();
        for _ in 0..100 {
            assert_eq!(read_reply(&mut s), Reply::Simple("OK".into()));
        }
        let mut w = req(&[b"MULTI"]);
        w.extend(req(&[b"SET", b"before", b"1"]));
        w.extend(req(&[flush]));
        w.extend(req(&[b"GET", b"k1"]));
        w.extend(req(&[b"SET", b"after", b"2"]));
        w.extend(req(&[b"DBSIZE"]));
        w.extend(req(&[b"EXEC"]));
        expect(
            &mut s,
            &w,
            b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
              *5\r\n+OK\r\n+OK\r\n$-1\r\n+OK\r\n:1\r\n",
        );
        assert_responsive(&srv, "MULTI/FLUSH/EXEC");
        let mut o = srv.connect();
        assert_eq!(call(&mut o, &[b"DBSIZE"]), Reply::Int(1));
        assert_eq!(
            call(&mut o, &[b"GET", b"after"]),
            Reply::Bulk(Some(b"2".to_vec()))
        );
    }
    // SIGTERM still stops the process (it did not once frozen).
    let mut srv = srv;
    srv.signal("TERM");
    assert!(
        wait_until(DEADLINE, || srv.child.try_wait().unwrap().is_some()),
        "SIGTERM did not stop the node"
    );
}
