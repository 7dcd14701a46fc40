//! The text protocol end to end against the real binary: the byte-exact
//! session of docs/protocol.md §14, framing rules of §1, and error handling.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::{DEADLINE, Server, cmd, expect, read_line, wait_until};

/// docs/protocol.md §14, request by request, compared byte for byte.
#[test]
fn byte_exact_session() {
    let mut server = Server::start(&[]);
    let mut s = server.connect();
    let session: &[(&[u8], &[u8])] = &[
        (b"SET user:1 Alice\r\n", b"OK\r\n"),
        (b"get user:1\r\n", b"VALUE Alice\r\n"),
        (b"GET nope\r\n", b"NOT_FOUND\r\n"),
        (b"SET e \"\"\r\n", b"OK\r\n"),
        (b"GET e\r\n", b"VALUE \"\"\r\n"),
        (b"SET k2  two\r\n", b"OK\r\n"),
        (b"GET k2\r\n", b"VALUE  two\r\n"),
        (b"SET  v\r\n", b"ERROR SET command key cannot be empty\r\n"),
        (
            b"SET k\r\n",
            b"ERROR SET command requires a key and value\r\n",
        ),
        (b"SET\r\n", b"ERROR SET command requires arguments\r\n"),
        (b"\r\n", b"ERROR Empty command\r\n"),
        (b"FOO bar\r\n", b"ERROR Unknown command: FOO\r\n"),
        (
            b"GET a b\r\n",
            b"ERROR GET command accepts only one argument\r\n",
        ),
        (
            b"GET\tkey\r\n",
            b"ERROR Invalid character: tab character not allowed in command\r\n",
        ),
        (
            b"SET k\tx v\r\n",
            b"ERROR Invalid character: tab character not allowed in key\r\n",
        ),
        (b"INC c\r\n", b"VALUE 1\r\n"),
        (b"INC c 5\r\n", b"VALUE 6\r\n"),
        (b"DEC d\r\n", b"VALUE -1\r\n"),
        (
            b"INC c abc\r\n",
            b"ERROR INC command amount must be a valid number\r\n",
        ),
        (
            b"INC user:1\r\n",
            b"ERROR Value for key 'user:1' is not a valid number\r\n",
        ),
        (b"INC\r\n", b"ERROR Unknown command: INC\r\n"),
        (b"SET g Hello\r\n", b"OK\r\n"),
        (b"APPEND g  World!\r\n", b"VALUE Hello World!\r\n"),
        (b"PREPEND g Hi, \r\n", b"VALUE Hi,Hello World!\r\n"),
        (b"APPEND g \"\"\r\n", b"VALUE Hi,Hello World!\"\"\r\n"),
        (b"DEL g\r\n", b"DELETED\r\n"),
        (b"DELETE g\r\n", b"NOT_FOUND\r\n"),
        (b"TRUNCATE\r\n", b"OK\r\n"),
        (b"MSET a 1 b 2\r\n", b"OK\r\n"),
        (
            b"MGET a b zz\r\n",
            b"VALUES 2\r\na 1\r\nb 2\r\nzz NOT_FOUND\r\n",
        ),
        (b"MGET x y\r\n", b"NOT_FOUND\r\n"),
        (
            b"MSET a\r\n",
            b"ERROR MSET command requires an even number of arguments (key-value pairs)\r\n",
        ),
        (b"SCAN a\r\n", b"KEYS 1\r\na\r\n"),
        (b"SCAN nosuch\r\n", b"KEYS 0\r\n"),
        (b"EXISTS a b a zz\r\n", b"EXISTS 3\r\n"),
        (b"DBSIZE\r\n", b"DBSIZE 2\r\n"),
        (b"PING\r\n", b"PONG\r\n"),
        (b"PING hello world\r\n", b"PONG hello world\r\n"),
        (b"ECHO test\r\n", b"ECHO test\r\n"),
        (
            b"HASH nosuch\r\n",
            b"HASH nosuch 0000000000000000000000000000000000000000000000000000000000000000\r\n",
        ),
        (b"REPLICATE status\r\n", b"REPLICATION disabled\r\n"),
        (b"VERSION\r\n", b"VERSION 0.1.0\r\n"),
        (b"FLUSH\r\n", b"OK\r\n"),
        (b"DBSIZE\r\n", b"DBSIZE 0\r\n"),
        (
            b"SET a 1\r\nGET a\r\nDEL a\r\n",
            b"OK\r\nVALUE 1\r\nDELETED\r\n",
        ),
    ];
    for (req, reply) in session {
        expect(&mut s, req, reply);
    }
    expect(&mut s, b"SHUTDOWN\r\n", b"OK\r\n");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exit after SHUTDOWN");
    assert!(status.success(), "{status:?}");
}

/// The same session sent as one write: every reply, in order, no more.
#[test]
fn pipelined_session_in_one_write() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..10_000 {
        match i % 4 {
            0 => {
                req.extend_from_slice(format!("SET k{i} v{i}\r\n").as_bytes());
                want.extend_from_slice(b"OK\r\n");
            }
            1 => {
                req.extend_from_slice(format!("GET k{}\r\n", i - 1).as_bytes());
                want.extend_from_slice(format!("VALUE v{}\r\n", i - 1).as_bytes());
            }
            2 => {
                req.extend_from_slice(b"INC counter\r\n");
                want.extend_from_slice(format!("VALUE {}\r\n", i / 4 + 1).as_bytes());
            }
            _ => {
                req.extend_from_slice(b"BOGUS\r\n");
                want.extend_from_slice(b"ERROR Unknown command: BOGUS\r\n");
            }
        }
    }
    expect(&mut s, &req, &want);
    // Nothing extra follows.
    expect(&mut s, b"PING\r\n", b"PONG\r\n");
}

#[test]
fn lf_only_lone_cr_and_trimming() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    expect(&mut s, b"SET a 1\n", b"OK\r\n");
    expect(&mut s, b"GET a\n", b"VALUE 1\r\n");
    expect(&mut s, b"SET k x\ry\r\n", b"OK\r\n");
    expect(&mut s, b"GET k\r\n", b"VALUE x\ry\r\n");
    expect(&mut s, b"SET k v   \r\n", b"OK\r\n");
    expect(&mut s, b"GET k\r\n", b"VALUE v\r\n");
    expect(&mut s, b"  get k  \r\n", b"VALUE v\r\n");
    expect(&mut s, b"SET t a\tb\r\n", b"OK\r\n");
    expect(&mut s, b"GET t\r\n", b"VALUE a\tb\r\n");
    expect(&mut s, "SET proj:αβγ 1\r\n".as_bytes(), b"OK\r\n");
    expect(&mut s, "GET proj:αβγ\r\n".as_bytes(), b"VALUE 1\r\n");
    // LF inside a request ends it: two requests.
    expect(
        &mut s,
        b"SET k a\nb\r\n",
        b"OK\r\nERROR Unknown command: b\r\n",
    );
}

#[test]
fn numeric_edges_wrap_instead_of_failing() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    expect(&mut s, b"SET k 9223372036854775807\r\n", b"OK\r\n");
    expect(&mut s, b"INC k\r\n", b"VALUE -9223372036854775808\r\n");
    expect(&mut s, b"SET k -9223372036854775808\r\n", b"OK\r\n");
    expect(&mut s, b"DEC k\r\n", b"VALUE 9223372036854775807\r\n");
    expect(
        &mut s,
        b"DEC new -9223372036854775808\r\n",
        b"VALUE -9223372036854775808\r\n",
    );
    expect(
        &mut s,
        b"INC 5\r\n",
        b"ERROR INC command requires a key\r\n",
    );
    expect(&mut s, b"INC 5 3\r\n", b"VALUE 3\r\n");
    expect(&mut s, b"SET p +12\r\n", b"OK\r\n");
    expect(&mut s, b"INCR p\r\n", b"VALUE 13\r\n");
    expect(&mut s, b"INC q +5\r\n", b"VALUE 5\r\n");
    expect(
        &mut s,
        b"INC q 1.5\r\n",
        b"ERROR INC command amount must be a valid number\r\n",
    );
    expect(
        &mut s,
        b"INC q 99999999999999999999\r\n",
        b"ERROR INC command amount must be a valid number\r\n",
    );
    // Still serving every command afterwards.
    expect(&mut s, b"GET k\r\n", b"VALUE 9223372036854775807\r\n");
}

#[test]
fn over_long_line_gets_an_error_then_close() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    // Exactly 1,048,576 bytes including LF is accepted.
    let mut ok_line = b"SET big ".to_vec();
    ok_line.resize(1_048_575, b'x');
    ok_line.push(b'\n');
    expect(&mut s, &ok_line, b"OK\r\n");
    let mut long = b"SET big ".to_vec();
    long.resize(1_048_577, b'y');
    long.extend_from_slice(b"\r\nPING\r\n");
    let _ = s.write_all(&long);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"ERROR line too long\r\n");
    // The server lives on, and kept the accepted value.
    let mut c = server.connect();
    let reply = cmd(&mut c, "GET big");
    assert_eq!(reply.len(), "VALUE ".len() + 1_048_575 - 8);
}

#[test]
fn invalid_utf8_closes_only_that_connection_after_earlier_replies() {
    let server = Server::start(&[]);
    let mut other = server.connect();
    expect(&mut other, b"SET a 1\r\n", b"OK\r\n");
    let mut s = server.connect();
    s.write_all(b"PING\r\nGET \xff\xfe\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"PONG\r\n");
    expect(&mut other, b"GET a\r\n", b"VALUE 1\r\n");
}

#[test]
fn half_close_executes_the_unterminated_last_line() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(b"SET a 1\r\nGET a").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"OK\r\nVALUE 1\r\n");
}

#[test]
fn garbage_never_kills_the_server() {
    let server = Server::start(&[]);
    let mut seed = 0x2545F4914F6CDD1Du64;
    for _ in 0..20 {
        let mut s = server.connect();
        let mut junk = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push((seed >> 24) as u8);
        }
        let _ = s.write_all(&junk);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let mut s = server.connect();
    expect(&mut s, b"PING\r\n", b"PONG\r\n");
}

#[test]
fn idle_connection_stays_open_by_default_and_stats_count_it() {
    // One worker: `b` is accepted before `a`'s PING is read (its listener
    // event is older), so STATS counts it. With several workers, `b` may
    // still sit in another worker's accept queue when STATS runs.
    let server = Server::start(&["--threads", "1"]);
    let mut a = server.connect();
    let mut b = server.connect();
    expect(&mut a, b"PING\r\n", b"PONG\r\n");
    a.write_all(b"STATS\r\n").unwrap();
    assert_eq!(read_line(&mut a), "STATS");
    let mut fields = std::collections::HashMap::new();
    for _ in 0..25 {
        let l = read_line(&mut a);
        let (k, v) = l.split_once(':').unwrap();
        fields.insert(k.to_string(), v.to_string());
    }
    assert_eq!(fields["active_connections"], "2");
    assert_eq!(fields["total_commands"], "2");
    assert_eq!(fields["ping_commands"], "1");
    b.write_all(b"CLIENT LIST\r\n").unwrap();
    assert_eq!(read_line(&mut b), "CLIENT LIST");
    let l1 = read_line(&mut b);
    let l2 = read_line(&mut b);
    assert!(
        l1.starts_with("id=1 addr=127.0.0.1:") && l2.starts_with("id=2 "),
        "{l1} / {l2}"
    );
    assert_eq!(read_line(&mut b), "END");
    drop(b);
    assert!(wait_until(DEADLINE, || {
        let mut c = server.connect();
        c.write_all(b"CLIENT LIST\r\n").unwrap();
        let mut lines = Vec::new();
        loop {
            let l = read_line(&mut c);
            if l == "END" {
                break;
            }
            lines.push(l);
        }
        lines.len() == 3 // header + `a` + this one
    }));
}

#[test]
fn connection_timeout_closes_idle_connections_when_configured() {
    let server = Server::start_with(&[], &[("MERKLE_KV_NETWORK_CONNECTION_TIMEOUT", "1")]);
    let mut s = server.connect();
    expect(&mut s, b"PING\r\n", b"PONG\r\n");
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "server closes the idle connection"
    );
}
