//! Lazy Merkle leaf digests end to end (real binary, real sockets): writes
//! hash nothing, the background refresher hashes each written record once
//! without any tree read, and HASH then has nothing left to hash.

mod common;

use std::io::Write;

use common::{DEADLINE, Server, cmd, info_fields, read_line, wait_until};

/// INFO `merkle_leaves_hashed`.
fn hashed(c: &mut std::net::TcpStream) -> u64 {
    let fields = info_fields(c);
    let (_, v) = fields
        .iter()
        .find(|(k, _)| k == "merkle_leaves_hashed")
        .expect("INFO has merkle_leaves_hashed");
    v.parse().expect("a number")
}

/// Sends `n` pipelined requests in one write and reads `n` reply lines.
fn pipelined(c: &mut std::net::TcpStream, reqs: &[String], reply: &str) {
    c.write_all(reqs.concat().as_bytes()).unwrap();
    for _ in reqs {
        assert_eq!(read_line(c), reply);
    }
}

#[test]
fn background_refresh_hashes_each_written_record_once() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    assert_eq!(hashed(&mut c), 0);
    let sets: Vec<String> = (0..500)
        .map(|i| format!("SET key{i} value{i}\r\n"))
        .collect();
    pipelined(&mut c, &sets, "OK");
    // No HASH: the housekeeping thread alone hashes every written record,
    // each exactly once.
    assert!(wait_until(DEADLINE, || hashed(&mut c) >= 500));
    let root = cmd(&mut c, "HASH");
    assert!(root.starts_with("HASH ") && root.len() == 5 + 64, "{root}");
    assert_eq!(hashed(&mut c), 500, "nothing left for HASH to hash");
    assert_eq!(cmd(&mut c, "HASH"), root);

    // Twenty overwrites of one key cost at most one hash per refresh that
    // saw it stale, and HASH always sees the latest value.
    let overwrites: Vec<String> = (0..20).map(|i| format!("SET key7 new{i}\r\n")).collect();
    pipelined(&mut c, &overwrites, "OK");
    let after = cmd(&mut c, "HASH");
    assert_ne!(after, root);
    let n = hashed(&mut c);
    assert!((501..=520).contains(&n), "{n}");
    assert_eq!(cmd(&mut c, "DEL key7"), "DELETED");
    assert_ne!(cmd(&mut c, "HASH"), after, "a tombstone is a new leaf");
}
