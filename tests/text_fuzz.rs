//! Property test against the real server: random streams of request lines
//! never crash it, and every complete line gets exactly one reply line
//! (commands whose replies span several lines are left out of the
//! generator, as is SHUTDOWN).

mod common;

use std::io::{BufRead, BufReader, Write};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const WORDS: &[&str] = &[
    "GET",
    "get",
    "SET",
    "DEL",
    "DELETE",
    "INC",
    "INCR",
    "DEC",
    "DECR",
    "APPEND",
    "PREPEND",
    "MSET",
    "EXISTS",
    "DBSIZE",
    "PING",
    "ECHO",
    "HASH",
    "VERSION",
    "MEMORY",
    "TRUNCATE",
    "FLUSHDB",
    "REPLICATE",
    "k",
    "key",
    "1",
    "-5",
    "9223372036854775807",
    "x y",
    "\"\"",
    "status",
    "*",
    "αβγ",
    "\t",
    " ",
    "  ",
    "\u{a0}",
    "\r",
    "abc",
    "+3",
];

/// Commands with multi-line replies, or that stop the server or defer.
fn excluded(line: &str) -> bool {
    let first = line
        .trim_matches(char::is_whitespace)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_uppercase();
    matches!(
        first.as_str(),
        "MGET" | "SCAN" | "STATS" | "INFO" | "CLIENT" | "SHUTDOWN" | "SYNC"
    )
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(WORDS), 0..6).prop_map(|w| w.join(" ")),
        "[^\n]{0,40}",
    ]
    .prop_filter("single-line replies only", |l| !excluded(l))
}

/// Runs the property with the server owned by the test (a `static` server
/// would never be dropped, leaving a process behind after `cargo test`).
#[test]
fn one_reply_line_per_request_line() {
    let server = common::Server::start(&[]);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let strategy = prop::collection::vec(line(), 1..40);
    let result = runner.run(&strategy, |lines| {
        let mut s = server.connect();
        // The first byte picks the protocol (`*` = RESP): settle on text.
        common::expect(&mut s, b"PING\r\n", b"PONG\r\n");
        let mut req = String::new();
        for l in &lines {
            req.push_str(l);
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).unwrap();
        // A marker request: its reply must be the line right after the others.
        s.write_all(b"ECHO end-of-batch\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut replies = Vec::new();
        loop {
            let mut buf = Vec::new();
            r.read_until(b'\n', &mut buf).unwrap();
            prop_assert!(
                buf.ends_with(b"\r\n"),
                "reply {:?}",
                String::from_utf8_lossy(&buf)
            );
            if buf == b"ECHO end-of-batch\r\n" {
                break;
            }
            replies.push(buf);
            prop_assert!(replies.len() <= lines.len(), "more replies than requests");
        }
        prop_assert_eq!(replies.len(), lines.len());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
