//! Smoke run of the `merklekv-bench` load generator against the real
//! server, over both protocols: it must finish, report, see no error
//! replies, and its writes must really land in the store.
//!
//! The load generator needs the `bench-tools` feature (its histogram crate
//! is no dependency of the server), so this test builds it once with that
//! feature through the `cargo` that runs the tests.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{Server, cmd};

/// The load generator's executable, built on first use.
fn bench_exe() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--features",
                "bench-tools",
                "--bin",
                "merklekv-bench",
                "--message-format",
                "json",
                "--manifest-path",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            ])
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cannot build merklekv-bench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The compiler-artifact message of the binary names its executable.
        let json = String::from_utf8_lossy(&out.stdout);
        let exe = json
            .lines()
            .filter(|l| l.contains("\"name\":\"merklekv-bench\""))
            .find_map(|l| {
                let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
                let len = l[at..].find('"')?;
                Some(PathBuf::from(&l[at..at + len]))
            })
            .expect("no executable in cargo's output");
        assert!(exe.exists(), "{exe:?}");
        exe
    })
}

fn bench(srv: &Server, args: &[&str]) -> String {
    let out = Command::new(bench_exe())
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
    let bad = Command::new(bench_exe())
        .args(["--clients", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage:"));
}
