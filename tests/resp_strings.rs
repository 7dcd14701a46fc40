//! RESP string and keyspace commands against the real binary, bytes
//! compared: INCRBYFLOAT, SETRANGE, GETRANGE/SUBSTR, SETBIT, GETBIT,
//! BITCOUNT, LCS, RENAME/RENAMENX, COPY, RANDOMKEY, TOUCH, OBJECT, TIME,
//! INCR overflow; and that their writes replicate as resulting values.

mod common;

use common::req;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;
use common::broker::{Broker, replicated_node, wait_connected, wait_same_hash, wait_value};

fn line(s: &mut TcpStream, out: &mut Vec<u8>) -> Vec<u8> {
    let start = out.len();
    let mut b = [0u8; 1];
    while !out[start..].ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("read reply");
        out.push(b[0]);
    }
    out[start..out.len() - 2].to_vec()
}

fn reply_into(s: &mut TcpStream, out: &mut Vec<u8>) {
    let l = line(s, out);
    let n: i64 = std::str::from_utf8(&l[1..])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    match l[0] {
        b'$' if n >= 0 => {
            let mut v = vec![0; n as usize + 2];
            s.read_exact(&mut v).expect("read bulk");
            out.extend(v);
        }
        b'*' | b'%' => {
            for _ in 0..(if l[0] == b'%' { 2 * n } else { n }).max(0) {
                reply_into(s, out);
            }
        }
        _ => {}
    }
}

/// Sends one command (words split on spaces) and returns the raw reply.
fn call(s: &mut TcpStream, words: &str) -> String {
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    call_raw(s, &args)
}

fn call_raw(s: &mut TcpStream, args: &[&[u8]]) -> String {
    s.write_all(&req(args)).unwrap();
    let mut out = Vec::new();
    reply_into(s, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn node() -> (Server, TcpStream) {
    let server = Server::start(&[]);
    let c = server.connect();
    (server, c)
}

#[test]
fn incrbyfloat_prints_like_redis() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "SET f 10.50"), "+OK\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT f 0.1"), "$4\r\n10.6\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT f -5"), "$3\r\n5.6\r\n");
    assert_eq!(call(&mut c, "SET f 5.0e3"), "+OK\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT f 2.0e2"), "$4\r\n5200\r\n");
    assert_eq!(call(&mut c, "GET f"), "$4\r\n5200\r\n");
    // Extended precision: 0.3, not 0.30000000000000004.
    assert_eq!(call(&mut c, "INCRBYFLOAT g 0.1"), "$3\r\n0.1\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT g 0.2"), "$3\r\n0.3\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT g -0.3"), "$1\r\n0\r\n");
    assert_eq!(
        call(&mut c, "INCRBYFLOAT g +inf"),
        "-ERR increment would produce NaN or Infinity\r\n"
    );
    assert_eq!(
        call(&mut c, "INCRBYFLOAT g x"),
        "-ERR value is not a valid float\r\n"
    );
    assert_eq!(call_raw(&mut c, &[b"SET", b"sp", b" 11"]), "+OK\r\n");
    assert_eq!(
        call(&mut c, "INCRBYFLOAT sp 1"),
        "-ERR value is not a valid float\r\n"
    );
    assert_eq!(call(&mut c, "GET sp"), "$3\r\n 11\r\n");
}

#[test]
fn incr_overflow_is_an_error_on_resp() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "SET n 9223372036854775807"), "+OK\r\n");
    assert_eq!(
        call(&mut c, "INCR n"),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(call(&mut c, "GET n"), "$19\r\n9223372036854775807\r\n");
    assert_eq!(
        call(&mut c, "DECRBY n -9223372036854775808"),
        "-ERR decrement would overflow\r\n"
    );
    assert_eq!(call(&mut c, "SET m -9223372036854775808"), "+OK\r\n");
    assert_eq!(
        call(&mut c, "DECR m"),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(call(&mut c, "INCRBY m 5"), ":-9223372036854775803\r\n");
}

#[test]
fn ranges() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "SETRANGE k 1 foo"), ":4\r\n");
    assert_eq!(call(&mut c, "GET k"), "$4\r\n\0foo\r\n");
    assert_eq!(call(&mut c, "SET k HelloWorld"), "+OK\r\n");
    assert_eq!(call(&mut c, "SETRANGE k 5 Redis"), ":10\r\n");
    assert_eq!(call(&mut c, "GETRANGE k 0 4"), "$5\r\nHello\r\n");
    assert_eq!(call(&mut c, "GETRANGE k -5 -1"), "$5\r\nRedis\r\n");
    assert_eq!(call(&mut c, "SUBSTR k 5 1000"), "$5\r\nRedis\r\n");
    assert_eq!(call(&mut c, "GETRANGE k 5 3"), "$0\r\n\r\n");
    // Redis 7.4: an end before the start of the string is an empty range.
    assert_eq!(call(&mut c, "GETRANGE k 0 -100"), "$0\r\n\r\n");
    assert_eq!(call(&mut c, "GETRANGE k -100 0"), "$1\r\nH\r\n");
    assert_eq!(call(&mut c, "GETRANGE missing 0 -1"), "$0\r\n\r\n");
    assert_eq!(call_raw(&mut c, &[b"SETRANGE", b"k", b"0", b""]), ":10\r\n");
    assert_eq!(
        call_raw(&mut c, &[b"SETRANGE", b"none", b"3", b""]),
        ":0\r\n"
    );
    assert_eq!(call(&mut c, "EXISTS none"), ":0\r\n");
    assert_eq!(
        call(&mut c, "SETRANGE k -1 x"),
        "-ERR offset is out of range\r\n"
    );
    assert_eq!(
        call(&mut c, "SETRANGE k 9223372036854775807 x"),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    );
    assert_eq!(
        call(&mut c, "GETRANGE k a 1"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        call(&mut c, "GETRANGE k 1"),
        "-ERR wrong number of arguments for 'getrange' command\r\n"
    );
}

#[test]
fn bits() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "SETBIT b 1 1"), ":0\r\n");
    assert_eq!(call(&mut c, "SETBIT b 1 1"), ":1\r\n");
    assert_eq!(call(&mut c, "GET b"), "$1\r\n@\r\n");
    assert_eq!(call(&mut c, "GETBIT b 1"), ":1\r\n");
    assert_eq!(call(&mut c, "GETBIT b 100"), ":0\r\n");
    assert_eq!(call(&mut c, "GETBIT nothing 0"), ":0\r\n");
    assert_eq!(
        call(&mut c, "SETBIT b 4294967296 1"),
        "-ERR bit offset is not an integer or out of range\r\n"
    );
    assert_eq!(
        call(&mut c, "SETBIT b 0 2"),
        "-ERR bit is not an integer or out of range\r\n"
    );
    assert_eq!(call(&mut c, "SET mykey foobar"), "+OK\r\n");
    assert_eq!(call(&mut c, "BITCOUNT mykey"), ":26\r\n");
    assert_eq!(call(&mut c, "BITCOUNT mykey 1 1"), ":6\r\n");
    assert_eq!(call(&mut c, "BITCOUNT mykey 5 30 BIT"), ":17\r\n");
    assert_eq!(
        call(&mut c, "BITCOUNT mykey 1 1 bits"),
        "-ERR syntax error\r\n"
    );
    assert_eq!(call(&mut c, "BITCOUNT mykey 1"), "-ERR syntax error\r\n");
    assert_eq!(call(&mut c, "BITCOUNT missing 1"), ":0\r\n");
}

#[test]
fn lcs() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "MSET k1 ohmytext k2 mynewtext"), "+OK\r\n");
    assert_eq!(call(&mut c, "LCS k1 k2"), "$6\r\nmytext\r\n");
    assert_eq!(call(&mut c, "LCS k1 k2 LEN"), ":6\r\n");
    assert_eq!(
        call(&mut c, "LCS k1 k2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
        "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n"
    );
    assert_eq!(
        call(&mut c, "LCS k1 k2 IDX LEN"),
        "-ERR If you want both the length and indexes, please just use IDX.\r\n"
    );
    assert_eq!(call(&mut c, "LCS k1 k2 FOO"), "-ERR syntax error\r\n");
    assert_eq!(call(&mut c, "LCS k1 nothing"), "$0\r\n\r\n");
}

#[test]
fn keyspace() {
    let (_s, mut c) = node();
    assert_eq!(call(&mut c, "RANDOMKEY"), "$-1\r\n");
    assert_eq!(call(&mut c, "SET a 1"), "+OK\r\n");
    assert_eq!(call(&mut c, "RANDOMKEY"), "$1\r\na\r\n");
    assert_eq!(call(&mut c, "RENAME a b"), "+OK\r\n");
    assert_eq!(call(&mut c, "MGET a b"), "*2\r\n$-1\r\n$1\r\n1\r\n");
    assert_eq!(call(&mut c, "RENAME a b"), "-ERR no such key\r\n");
    assert_eq!(call(&mut c, "RENAME b b"), "+OK\r\n");
    assert_eq!(call(&mut c, "SET c 3"), "+OK\r\n");
    assert_eq!(call(&mut c, "RENAMENX b c"), ":0\r\n");
    assert_eq!(call(&mut c, "RENAMENX b d"), ":1\r\n");
    assert_eq!(call(&mut c, "COPY d c"), ":0\r\n");
    assert_eq!(call(&mut c, "COPY d c REPLACE"), ":1\r\n");
    assert_eq!(call(&mut c, "GET c"), "$1\r\n1\r\n");
    assert_eq!(call(&mut c, "COPY d e DB 0"), ":1\r\n");
    assert_eq!(
        call(&mut c, "COPY d f DB 1"),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        call(&mut c, "COPY d f DB x"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        call(&mut c, "COPY d d"),
        "-ERR source and destination objects are the same\r\n"
    );
    assert_eq!(call(&mut c, "COPY nothing f"), ":0\r\n");
    assert_eq!(call(&mut c, "TOUCH c d nothing c"), ":3\r\n");
    assert_eq!(call(&mut c, "OBJECT ENCODING c"), "$3\r\nint\r\n");
    assert_eq!(call(&mut c, "SET s hello"), "+OK\r\n");
    assert_eq!(call(&mut c, "OBJECT ENCODING s"), "$6\r\nembstr\r\n");
    assert_eq!(call(&mut c, "OBJECT REFCOUNT s"), ":1\r\n");
    assert_eq!(call(&mut c, "OBJECT IDLETIME s"), ":0\r\n");
    assert_eq!(call(&mut c, "OBJECT ENCODING nothing"), "$-1\r\n");
    assert_eq!(
        call(&mut c, "OBJECT FOO s"),
        "-ERR unknown subcommand 'FOO'. Try OBJECT HELP.\r\n"
    );
    assert!(
        call(&mut c, "OBJECT FREQ s").starts_with("-ERR An LFU maxmemory policy is not selected")
    );
    assert_eq!(call(&mut c, "FUNCTION FLUSH"), "+OK\r\n");
    let t = call(&mut c, "TIME");
    assert!(t.starts_with("*2\r\n$10\r\n"), "{t}");
}

/// `OBJECT ENCODING` after the sequences of Redis's own tests
/// (`unit/type/string`: "SETRANGE against integer-encoded key", "APPEND
/// modifies the encoding from int to raw"; `unit/type/incr`: "incr|decr|
/// incrby|decrby operation should update encoding from raw to int"), and
/// the other ways a value is produced; checked against redis-server 7.0.
#[test]
fn object_encoding_follows_how_the_value_was_produced() {
    let (_s, mut c) = node();
    let enc = |c: &mut TcpStream, key: &str| call(c, &format!("OBJECT ENCODING {key}"));
    const INT: &str = "$3\r\nint\r\n";
    const RAW: &str = "$3\r\nraw\r\n";
    const EMBSTR: &str = "$6\r\nembstr\r\n";

    // SETRANGE against integer-encoded key.
    assert_eq!(call(&mut c, "SET mykey 1234"), "+OK\r\n");
    assert_eq!(enc(&mut c, "mykey"), INT);
    assert_eq!(call(&mut c, "SETRANGE mykey 0 2"), ":4\r\n");
    assert_eq!(enc(&mut c, "mykey"), RAW);
    assert_eq!(call(&mut c, "GET mykey"), "$4\r\n2234\r\n");
    // ... but not when nothing is set.
    assert_eq!(call(&mut c, "SET mykey 1234"), "+OK\r\n");
    assert_eq!(
        call_raw(&mut c, &[b"SETRANGE", b"mykey", b"0", b""]),
        ":4\r\n"
    );
    assert_eq!(enc(&mut c, "mykey"), INT);
    assert_eq!(call(&mut c, "SET mykey 1234"), "+OK\r\n");
    assert_eq!(call(&mut c, "SETRANGE mykey 1 3"), ":4\r\n");
    assert_eq!(enc(&mut c, "mykey"), RAW);
    assert_eq!(call(&mut c, "GET mykey"), "$4\r\n1334\r\n");
    assert_eq!(call(&mut c, "SET mykey 1234"), "+OK\r\n");
    assert_eq!(call(&mut c, "SETRANGE mykey 5 2"), ":6\r\n");
    assert_eq!(enc(&mut c, "mykey"), RAW);
    assert_eq!(call(&mut c, "GET mykey"), "$6\r\n1234\x002\r\n");

    // APPEND modifies the encoding from int to raw; a new SET is int again.
    assert_eq!(call(&mut c, "SET foo 1"), "+OK\r\n");
    assert_eq!(enc(&mut c, "foo"), INT);
    assert_eq!(call(&mut c, "APPEND foo 2"), ":2\r\n");
    assert_eq!(call(&mut c, "GET foo"), "$2\r\n12\r\n");
    assert_eq!(enc(&mut c, "foo"), RAW);
    assert_eq!(call(&mut c, "SET bar 12"), "+OK\r\n");
    assert_eq!(enc(&mut c, "bar"), INT);

    // INCR, DECR, INCRBY, DECRBY update the encoding from raw to int.
    for (cmd, want) in [
        ("INCR foo", ":13\r\n"),
        ("DECR foo", ":11\r\n"),
        ("INCRBY foo 1", ":13\r\n"),
        ("DECRBY foo 1", ":11\r\n"),
    ] {
        assert_eq!(call(&mut c, "SET foo 1"), "+OK\r\n");
        assert_eq!(call(&mut c, "APPEND foo 2"), ":2\r\n");
        assert_eq!(enc(&mut c, "foo"), RAW, "{cmd}");
        assert_eq!(call(&mut c, cmd), want);
        assert_eq!(enc(&mut c, "foo"), INT, "{cmd}");
    }

    // APPEND creating a key stores it as SET does; appending nothing to an
    // existing value still edits it.
    assert_eq!(call(&mut c, "APPEND fresh 12"), ":2\r\n");
    assert_eq!(enc(&mut c, "fresh"), INT);
    assert_eq!(call_raw(&mut c, &[b"APPEND", b"fresh", b""]), ":2\r\n");
    assert_eq!(enc(&mut c, "fresh"), RAW);
    // SETRANGE creating a key, SETBIT (even of a bit already set): raw.
    assert_eq!(call(&mut c, "SETRANGE made 0 1"), ":1\r\n");
    assert_eq!(enc(&mut c, "made"), RAW);
    assert_eq!(call(&mut c, "SET b 1"), "+OK\r\n");
    assert_eq!(call(&mut c, "SETBIT b 2 1"), ":1\r\n");
    assert_eq!(call(&mut c, "GET b"), "$1\r\n1\r\n");
    assert_eq!(enc(&mut c, "b"), RAW);
    // INCRBYFLOAT builds a fresh string: never int, raw past 44 bytes.
    assert_eq!(call(&mut c, "SET f 1"), "+OK\r\n");
    assert_eq!(call(&mut c, "INCRBYFLOAT f 2"), "$1\r\n3\r\n");
    assert_eq!(enc(&mut c, "f"), EMBSTR);
    assert!(call(&mut c, "INCRBYFLOAT f 1e300").starts_with("$301\r\n"));
    assert_eq!(enc(&mut c, "f"), RAW);
    // EXPIRE, PERSIST, GETEX, RENAME and COPY keep the value, and so its
    // encoding, as Redis keeps the object.
    assert_eq!(call(&mut c, "APPEND foo 3"), ":3\r\n");
    assert_eq!(call(&mut c, "EXPIRE foo 100"), ":1\r\n");
    assert_eq!(enc(&mut c, "foo"), RAW);
    assert_eq!(call(&mut c, "GETEX foo PERSIST"), "$3\r\n113\r\n");
    assert_eq!(enc(&mut c, "foo"), RAW);
    assert_eq!(call(&mut c, "RENAME foo moved"), "+OK\r\n");
    assert_eq!(call(&mut c, "COPY moved copied"), ":1\r\n");
    assert_eq!(enc(&mut c, "moved"), RAW);
    assert_eq!(enc(&mut c, "copied"), RAW);
    // Inside MULTI/EXEC too.
    assert_eq!(call(&mut c, "SET m 1"), "+OK\r\n");
    assert_eq!(call(&mut c, "MULTI"), "+OK\r\n");
    assert_eq!(call(&mut c, "APPEND m 2"), "+QUEUED\r\n");
    assert_eq!(call(&mut c, "OBJECT ENCODING m"), "+QUEUED\r\n");
    assert_eq!(call(&mut c, "EXEC"), "*2\r\n:2\r\n$3\r\nraw\r\n");
}

#[test]
fn string_writes_replicate_as_values() {
    let broker = Broker::start();
    let a = replicated_node("a", broker.port, "");
    let b = replicated_node("b", broker.port, "");
    wait_connected(&a);
    wait_connected(&b);
    let mut c = a.connect();
    assert_eq!(call(&mut c, "INCRBYFLOAT f 0.1"), "$3\r\n0.1\r\n");
    assert_eq!(call(&mut c, "SETRANGE r 2 xy"), ":4\r\n");
    assert_eq!(call(&mut c, "SETBIT bits 7 1"), ":0\r\n");
    assert_eq!(call(&mut c, "SET old v"), "+OK\r\n");
    assert_eq!(call(&mut c, "RENAME old new"), "+OK\r\n");
    assert_eq!(call(&mut c, "COPY new copied"), ":1\r\n");
    wait_value(&b, "f", "VALUE 0.1");
    wait_value(&b, "copied", "VALUE v");
    wait_value(&b, "old", "NOT_FOUND");
    wait_value(&b, "new", "VALUE v");
    // The encoding is node-local: the replica stores the resulting value
    // as given (docs/protocol.md, OBJECT ENCODING).
    assert_eq!(call(&mut c, "SET n 1"), "+OK\r\n");
    assert_eq!(call(&mut c, "APPEND n 2"), ":2\r\n");
    wait_value(&b, "n", "VALUE 12");
    assert_eq!(call(&mut c, "OBJECT ENCODING n"), "$3\r\nraw\r\n");
    let mut cb = b.connect();
    assert_eq!(call(&mut cb, "OBJECT ENCODING n"), "$3\r\nint\r\n");
    assert_eq!(call(&mut cb, "OBJECT ENCODING f"), "$6\r\nembstr\r\n");
    wait_same_hash(&[&a.server, &b.server], "");
}

#[test]
fn values_up_to_the_store_limit_pass_over_resp() {
    let (_s, mut c) = node();
    let big = vec![b'x'; 4_000_000];
    assert_eq!(call_raw(&mut c, &[b"SET", b"big", &big]), "+OK\r\n");
    let got = call_raw(&mut c, &[b"GET", b"big"]);
    assert_eq!(got.len(), 4_000_000 + "$4000000\r\n\r\n".len());
    // Over the limit: refused from the header, connection closed.
    let head = format!(
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n",
        merklekv::store::MAX_VALUE_LEN + 1
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"-ERR Protocol error: invalid bulk length\r\n");
}
