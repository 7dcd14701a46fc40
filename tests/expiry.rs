//! Key expiry (TTL) against the real binary: every expiry command's RESP
//! and text replies, byte for byte (texts as redis-server 7.0 sends them),
//! visibility of expired keys in reads (SCAN's is unit-tested in the
//! store), the active expiry cycle, and
//! INFO's counters.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{DEADLINE, Server, cmd, expect, info_fields, wait_until};

/// Encodes a request as a RESP array of bulk strings.
fn req(line: &str) -> Vec<u8> {
    let args: Vec<&str> = line.split(' ').collect();
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Sends a space-separated RESP request and compares the exact reply.
fn resp(s: &mut TcpStream, line: &str, expected: &str) {
    expect(s, &req(line), expected.as_bytes());
}

/// An integer reply `:n\r\n`, read whole.
fn int_reply(s: &mut TcpStream, line: &str) -> i64 {
    s.write_all(&req(line)).unwrap();
    let l = common::read_line(s);
    assert!(l.starts_with(':'), "{line}: {l}");
    l[1..].parse().unwrap()
}

/// A RESP bulk string reply.
fn bulk(body: &str) -> String {
    format!("${}\r\n{body}\r\n", body.len())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const INVALID_SET: &str = "-ERR invalid expire time in 'set' command\r\n";
const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";

#[test]
fn set_with_expiry_options_replies_like_redis() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    for (line, reply) in [
        ("SET k v EX 0", INVALID_SET),
        ("SET k v ex -1", INVALID_SET),
        ("SET k v PX 0", INVALID_SET),
        ("SET k v EXAT 0", INVALID_SET),
        ("SET k v PXAT -1", INVALID_SET),
        ("SET k v EX 9223372036854775807", INVALID_SET),
        ("SET k v PX 9223372036854775807", INVALID_SET),
        ("SET k v EX 9223372036854775", INVALID_SET),
        ("SET k v EX abc", NOT_INT),
        ("SET k v EX +5", NOT_INT),
        ("SET k v EX 10 PX 10", SYNTAX),
        ("SET k v EX 10 KEEPTTL", SYNTAX),
        ("SET k v KEEPTTL EX 10", SYNTAX),
        ("SET k v EX", SYNTAX),
        ("SET k v EX abc foo", SYNTAX),
        ("SET k v PERSIST", SYNTAX),
        ("SET k v NX XX EX 1", SYNTAX),
        ("SET k v KEEPTTL", "+OK\r\n"),
        ("TTL k", ":-1\r\n"),
        ("SET k v EX 10 NX", "$-1\r\n"),
        ("SET k v2 EX 100 GET", "$1\r\nv\r\n"),
        ("TTL k", ":100\r\n"),
        ("SET k v3 KEEPTTL", "+OK\r\n"),
        ("TTL k", ":100\r\n"),
        ("GET k", "$2\r\nv3\r\n"),
        ("SET k v4 XX PX 50000 GET", "$2\r\nv3\r\n"),
        ("SET k v5", "+OK\r\n"),
        ("TTL k", ":-1\r\n"),
        ("SET n v EX 10 XX", "$-1\r\n"),
        ("SET n v EX 10 EX 20", "+OK\r\n"),
        ("TTL n", ":20\r\n"),
        // A time already past: set, and gone at once.
        ("SET k v PXAT 1", "+OK\r\n"),
        ("GET k", "$-1\r\n"),
        ("EXISTS k", ":0\r\n"),
        ("SET k v EXAT 1 GET", "$-1\r\n"),
    ] {
        resp(&mut s, line, reply);
    }
    let pttl = int_reply(&mut s, "PTTL n");
    assert!((19_000..=20_000).contains(&pttl), "{pttl}");
    let at = int_reply(&mut s, "PEXPIRETIME n");
    assert!((at - now_ms() - 20_000).abs() < 2_000, "{at}");
    assert_eq!(int_reply(&mut s, "EXPIRETIME n"), at / 1000);
}

#[test]
fn setex_psetex_getex_reply_like_redis() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    for (line, reply) in [
        (
            "SETEX k 0 v",
            "-ERR invalid expire time in 'setex' command\r\n",
        ),
        (
            "SETEX k -5 v",
            "-ERR invalid expire time in 'setex' command\r\n",
        ),
        ("SETEX k abc v", NOT_INT),
        (
            "SETEX k 10",
            "-ERR wrong number of arguments for 'setex' command\r\n",
        ),
        (
            "PSETEX k 0 v",
            "-ERR invalid expire time in 'psetex' command\r\n",
        ),
        ("SETEX k 100 v", "+OK\r\n"),
        ("TTL k", ":100\r\n"),
        ("APPEND k x", ":2\r\n"),
        ("TTL k", ":100\r\n"),
        ("GETEX k", "$2\r\nvx\r\n"),
        ("TTL k", ":100\r\n"),
        (
            "GETEX k EX 0",
            "-ERR invalid expire time in 'getex' command\r\n",
        ),
        ("GETEX k PERSIST EX 10", SYNTAX),
        ("GETEX k foo", SYNTAX),
        ("GETEX k EX", SYNTAX),
        ("GETEX k EX 50", "$2\r\nvx\r\n"),
        ("TTL k", ":50\r\n"),
        ("GETEX k PERSIST", "$2\r\nvx\r\n"),
        ("TTL k", ":-1\r\n"),
        ("GETEX nokey EX 10", "$-1\r\n"),
        ("GETEX nokey EX 0", "$-1\r\n"),
        ("GETEX k PXAT 1", "$2\r\nvx\r\n"),
        ("EXISTS k", ":0\r\n"),
        (
            "GETEX",
            "-ERR wrong number of arguments for 'getex' command\r\n",
        ),
        ("SET c 5 EX 100", "+OK\r\n"),
        ("INCR c", ":6\r\n"),
        ("TTL c", ":100\r\n"),
        ("INCRBY c 4", ":10\r\n"),
        ("TTL c", ":100\r\n"),
        // RENAME and COPY carry the expiry; MSET and GETSET clear it.
        ("RENAME c d", "+OK\r\n"),
        ("TTL d", ":100\r\n"),
        ("COPY d e", ":1\r\n"),
        ("TTL e", ":100\r\n"),
        ("MSET d 1 x 2", "+OK\r\n"),
        ("TTL d", ":-1\r\n"),
        ("GETSET e 3", "$2\r\n10\r\n"),
        ("TTL e", ":-1\r\n"),
    ] {
        resp(&mut s, line, reply);
    }
}

#[test]
fn expire_family_replies_like_redis() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let nx_xx = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
    for (line, reply) in [
        ("SET k v", "+OK\r\n"),
        ("EXPIRE k 100 NX XX", nx_xx),
        ("EXPIRE k 100 nx gt", nx_xx),
        (
            "EXPIRE k 100 GT LT",
            "-ERR GT and LT options at the same time are not compatible\r\n",
        ),
        ("EXPIRE k 100 foo", "-ERR Unsupported option foo\r\n"),
        ("EXPIRE k abc foo", "-ERR Unsupported option foo\r\n"),
        ("EXPIRE k 10 10", "-ERR Unsupported option 10\r\n"),
        ("EXPIRE k abc", NOT_INT),
        (
            "EXPIRE k 9223372036854775807",
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        (
            "EXPIRE k 9223372036854775",
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        (
            "PEXPIRE k 9223372036854775807",
            "-ERR invalid expire time in 'pexpire' command\r\n",
        ),
        (
            "EXPIREAT k 9223372036854775807",
            "-ERR invalid expire time in 'expireat' command\r\n",
        ),
        (
            "EXPIRE k",
            "-ERR wrong number of arguments for 'expire' command\r\n",
        ),
        (
            "TTL",
            "-ERR wrong number of arguments for 'ttl' command\r\n",
        ),
        ("EXPIRE k 10 GT", ":0\r\n"),
        ("EXPIRE k 100", ":1\r\n"),
        ("EXPIRE k 200 NX", ":0\r\n"),
        ("EXPIRE k 200 XX", ":1\r\n"),
        ("EXPIRE k 50 GT", ":0\r\n"),
        ("EXPIRE k 500 GT", ":1\r\n"),
        ("EXPIRE k 50 LT", ":1\r\n"),
        ("EXPIRE k 40 XX GT", ":0\r\n"),
        ("EXPIRE k 60 XX GT", ":1\r\n"),
        ("TTL k", ":60\r\n"),
        ("PERSIST k", ":1\r\n"),
        ("PERSIST k", ":0\r\n"),
        ("EXPIRETIME k", ":-1\r\n"),
        ("PEXPIRETIME k", ":-1\r\n"),
        ("EXPIRE k 10 LT", ":1\r\n"),
        ("EXPIRE k -1", ":1\r\n"),
        ("EXISTS k", ":0\r\n"),
        ("EXPIRE nokey 10", ":0\r\n"),
        ("PERSIST nokey", ":0\r\n"),
        ("TTL nokey", ":-2\r\n"),
        ("PTTL nokey", ":-2\r\n"),
        ("EXPIRETIME nokey", ":-2\r\n"),
        ("SET k v", "+OK\r\n"),
        ("PEXPIREAT k 0", ":1\r\n"),
        ("GET k", "$-1\r\n"),
        ("SET k v", "+OK\r\n"),
        ("EXPIREAT k 1", ":1\r\n"),
        ("DBSIZE", ":0\r\n"),
    ] {
        resp(&mut s, line, reply);
    }
    let at = now_ms() / 1000 + 1000;
    resp(&mut s, &format!("EXPIREAT n {at}"), ":0\r\n");
    resp(&mut s, "SET n v", "+OK\r\n");
    resp(&mut s, &format!("EXPIREAT n {at}"), ":1\r\n");
    resp(&mut s, "EXPIRETIME n", &format!(":{at}\r\n"));
}

#[test]
fn text_protocol_expiry_commands() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    for (line, reply) in [
        ("SET a 1", "OK"),
        ("TTL a", "TTL -1"),
        ("PTTL a", "PTTL -1"),
        ("TTL nokey", "NOT_FOUND"),
        ("EXPIRE a 100", "OK"),
        ("TTL a", "TTL 100"),
        ("PERSIST a", "OK"),
        ("TTL a", "TTL -1"),
        ("PERSIST a", "OK"),
        ("PERSIST nokey", "NOT_FOUND"),
        ("EXPIRE nokey 5", "NOT_FOUND"),
        ("PEXPIRE nokey 5", "NOT_FOUND"),
        ("SETEX s 100 hello  world", "OK"),
        ("GET s", "VALUE hello  world"),
        ("TTL s", "TTL 100"),
        ("EXPIRE s 0", "OK"),
        ("GET s", "NOT_FOUND"),
        (
            "SETEX s x v",
            "ERROR SETEX command seconds must be a valid integer",
        ),
        (
            "SETEX s 0 v",
            "ERROR SETEX command seconds must be a positive integer",
        ),
        (
            "SETEX s 5",
            "ERROR SETEX command requires a key, seconds and value",
        ),
        ("SETEX", "ERROR SETEX command requires arguments"),
        ("EXPIRE a", "ERROR EXPIRE command requires a key and a time"),
        (
            "EXPIRE a x",
            "ERROR EXPIRE command time must be a valid integer",
        ),
        (
            "EXPIRE a 99999999999999999",
            "ERROR EXPIRE command time is out of range",
        ),
        ("TTL a b", "ERROR TTL command accepts only one argument"),
        ("TTL", "ERROR TTL command requires arguments"),
        ("PEXPIRE a -1", "OK"),
        ("GET a", "NOT_FOUND"),
    ] {
        assert_eq!(cmd(&mut s, line), reply, "{line}");
    }
    assert_eq!(cmd(&mut s, "SET p v"), "OK");
    assert_eq!(cmd(&mut s, "PEXPIRE p 50000"), "OK");
    let pttl: i64 = cmd(&mut s, "PTTL p")[5..].parse().unwrap();
    assert!((49_000..=50_000).contains(&pttl), "{pttl}");
}

#[test]
fn expired_keys_vanish_from_every_read_and_memory_comes_back() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    resp(&mut s, "SET keep v", "+OK\r\n");
    resp(&mut s, "SET long v EX 1000", "+OK\r\n");
    for i in 0..500 {
        resp(&mut s, &format!("SET tmp:{i} value-{i} PX 300"), "+OK\r\n");
    }
    resp(&mut s, "DBSIZE", ":502\r\n");
    resp(
        &mut s,
        "INFO keyspace",
        &bulk("# Keyspace\r\ndb0:keys=502,expires=501,avg_ttl=0\r\n"),
    );
    // Expiry is visible from the expiry time on: no read shows them.
    assert!(wait_until(DEADLINE, || int_reply(&mut s, "DBSIZE") == 2));
    resp(&mut s, "EXISTS tmp:7 tmp:499 keep", ":1\r\n");
    resp(&mut s, "GET tmp:3", "$-1\r\n");
    resp(&mut s, "MGET tmp:1 keep", "*2\r\n$-1\r\n$1\r\nv\r\n");
    resp(&mut s, "KEYS tmp:*", "*0\r\n");
    // The active cycle frees them (counted), with no client touching them.
    let mut t = server.connect();
    assert!(wait_until(DEADLINE, || {
        let info = info_fields(&mut t);
        let get = |k: &str| info.iter().find(|(n, _)| n == k).unwrap().1.clone();
        get("expired_keys").parse::<u64>().unwrap() >= 500 && get("expiring_keys") == "1"
    }));
    resp(
        &mut s,
        "INFO keyspace",
        &bulk("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n"),
    );
}
