//! Smoke run of the `merklekv-bench` load generator against the real
//! server, over both protocols: it must finish, report, see no error
//! replies, and its writes must really land in the store.

mod common;

use std::process::Command;

use common::{Server, cmd};

fn bench(srv: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_merklekv-bench"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &srv.addr.port().to_string(),
        ])
        .args(args)
        .output()
        .expect("run merklekv-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    stdout
}

#[test]
fn load_generator_smoke_run_both_protocols() {
    let srv = Server::start(&[]);
    for (proto, ratio) in [("resp", "1:0"), ("text", "1:1")] {
        let out = bench(
            &srv,
            &[
                "--protocol",
                proto,
                "--requests",
                "3000",
                "--clients",
                "4",
                "--threads",
                "2",
                "--pipeline",
                "8",
                "--ratio",
                ratio,
                "--keyspace",
                "500",
                "--pattern",
                "sequential",
                "--json",
            ],
        );
        assert!(out.contains("\"requests\":3000"), "{out}");
        assert!(out.contains("\"errors\":0"), "{out}");
        assert!(out.contains("\"p99_us\":"), "{out}");
    }
    // Sequential SETs (ratio 1:0) over a 500-key space from 4 connections:
    // every key was written at least once.
    let mut s = srv.connect();
    assert_eq!(cmd(&mut s, "DBSIZE"), "DBSIZE 500");
    assert_eq!(cmd(&mut s, "GET key:000").len(), "VALUE ".len() + 32);
    // Duration mode and the human-readable report.
    let out = bench(&srv, &["--duration", "0.3", "--clients", "2"]);
    assert!(out.contains("ops/s") && out.contains("p99.9"), "{out}");
    // Bad options are refused with the usage text.
    let bad = Command::new(env!("CARGO_BIN_EXE_merklekv-bench"))
        .args(["--clients", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage:"));
}
