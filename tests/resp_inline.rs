//! `network.text_protocol = false`: the port speaks only RESP, so inline
//! commands are Redis inline commands answered in RESP (bytes compared),
//! and protocol errors use Redis's texts.

mod common;

use std::io::{Read, Write};

use common::{Server, expect};

fn resp_only() -> Server {
    Server::start_with(&[], &[("MERKLE_KV_NETWORK_TEXT_PROTOCOL", "false")])
}

#[test]
fn inline_commands_are_answered_in_resp() {
    let srv = resp_only();
    let mut s = srv.connect();
    expect(&mut s, b"PING\r\n", b"+PONG\r\n");
    // A leading empty line is an empty request, not a switch of protocol.
    expect(&mut s, b"\r\nSET \"a key\" 'v 1'\r\n", b"+OK\r\n");
    expect(
        &mut s,
        b"*2\r\n$3\r\nGET\r\n$5\r\na key\r\n",
        b"$3\r\nv 1\r\n",
    );
    expect(&mut s, b"GET nothing\n", b"$-1\r\n");
    // The default keeps the text protocol for 1.x clients.
    let text = Server::start(&[]);
    let mut t = text.connect();
    expect(&mut t, b"PING\r\n", b"PONG\r\n");
}

#[test]
fn unbalanced_quotes_close_with_redis_text() {
    let srv = resp_only();
    let mut s = srv.connect();
    s.write_all(b"set \"\"\"test-key\"\"\" test-value\r\nping\r\n")
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(
        got,
        b"-ERR Protocol error: unbalanced quotes in request\r\n"
    );
}
