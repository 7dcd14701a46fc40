//! RESP introspection against the real binary, bytes compared:
//! `COMMAND LIST [FILTERBY …]`, `COMMAND GETKEYS`, `COMMAND
//! GETKEYSANDFLAGS`, `COMMAND COUNT`, INFO sections and the command,
//! error and latency statistics (`commandstats`, `errorstats`,
//! `latencystats`, `CONFIG RESETSTAT`).

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

/// The body of a RESP bulk-string reply to `args`.
fn bulk_reply(s: &mut TcpStream, args: &[&str]) -> String {
    s.write_all(&req(args)).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert_eq!(head[0], b'$', "{}", String::from_utf8_lossy(&head));
    let n: usize = String::from_utf8_lossy(&head[1..head.len() - 2])
        .parse()
        .unwrap();
    let mut body = vec![0; n + 2];
    s.read_exact(&mut body).unwrap();
    body.truncate(n);
    String::from_utf8(body).unwrap()
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
