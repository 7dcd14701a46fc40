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
