//! RESP introspection against the real binary, bytes compared:
//! `COMMAND LIST [FILTERBY …]`, `COMMAND GETKEYS`, `COMMAND
//! GETKEYSANDFLAGS`, `COMMAND COUNT`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;

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
        ["config", "config|get", "config|set", "config|resetstat"]
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
    exchange(
        &mut s,
        &["CONFIG", "SET", "maxmemory", "10"],
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - can't set immutable config (MerkleKV reads it at startup only)\r\n",
    );
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
