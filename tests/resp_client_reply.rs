//! `CLIENT REPLY ON | OFF | SKIP` against the real binary, bytes compared
//! with what redis-server 7.0 answers to the same pipeline.

mod common;

use std::io::{Read, Write};

use common::Server;

fn req(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

#[test]
fn client_reply_off_on_skip_match_redis() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let cmds: &[&[&str]] = &[
        &["CLIENT", "REPLY", "SKIP"],
        &["PING"],
        &["PING", "a"],
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "k", "v"],
        &["NOSUCHCOMMAND"],
        &["GET"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "k"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["CLIENT", "REPLY", "X"],
        &["CLIENT", "REPLY"],
        &["CLIENT", "REPLY", "ON", "x"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "k", "extra"],
        &["PING", "end"],
    ];
    let mut all = Vec::new();
    for c in cmds {
        all.extend_from_slice(&req(c));
    }
    s.write_all(&all).unwrap();
    // What redis-server 7.0.15 sends for the same bytes; the final PING
    // makes any extra reply shift the comparison.
    let want: &[u8] = b"$1\r\na\r\n+OK\r\n$1\r\nv\r\n+OK\r\n-ERR syntax error\r\n\
-ERR wrong number of arguments for 'client|reply' command\r\n\
-ERR wrong number of arguments for 'client|reply' command\r\n$3\r\nend\r\n";
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    // RESET turns replies back on.
    s.write_all(
        &[
            req(&["CLIENT", "REPLY", "OFF"]),
            req(&["RESET"]),
            req(&["PING"]),
        ]
        .concat(),
    )
    .unwrap();
    let want = b"+RESET\r\n+PONG\r\n";
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}

/// `CLIENT REPLY OFF` drops `MONITOR`'s `+OK` (the lines still come), but
/// not Pub/Sub confirmations, which Redis pushes whatever the reply mode.
#[test]
fn client_reply_off_with_monitor_and_subscribe() {
    let server = Server::start(&[]);
    let mut m = server.connect();
    m.write_all(&[req(&["CLIENT", "REPLY", "OFF"]), req(&["MONITOR"])].concat())
        .unwrap();
    let mut c = server.connect();
    // Once the monitor is registered, a PING from `c` reaches it.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    m.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    while !String::from_utf8_lossy(&got).contains("\"PING\"") {
        assert!(std::time::Instant::now() < deadline, "no monitor line");
        c.write_all(&req(&["PING"])).unwrap();
        let mut pong = [0u8; 7];
        c.read_exact(&mut pong).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = m.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        !got.starts_with(b"+OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut s = server.connect();
    s.write_all(&[req(&["CLIENT", "REPLY", "OFF"]), req(&["SUBSCRIBE", "ch"])].concat())
        .unwrap();
    let want = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}
