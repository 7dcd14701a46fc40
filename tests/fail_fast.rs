//! Fail fast: a panic in any of the node's threads stops the whole process
//! with exit status 70 and an ERROR line naming the thread, instead of
//! leaving a half-dead process (a dead worker's listener would still take
//! its share of new connections, and hang them).
//!
//! The panics are injected with `MERKLEKV_DEBUG_PANIC=<thread>[:<ms>]`,
//! which only debug builds (what `cargo test` runs) look at.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, TempDir, bin, wait_until};

/// Exit status of a node stopped by a panic (`failfast::EXIT_STATUS`).
const PANIC_STATUS: i32 = 70;

/// Runs the binary with `MERKLEKV_DEBUG_PANIC=<thread>` until it exits;
/// its exit code and stderr.
fn run_panicking(thread: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("MERKLEKV_DEBUG_PANIC", thread)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running {DEADLINE:?} after {thread} panicked; stderr:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), reader.join().unwrap())
}

fn assert_stopped_by(thread: &str, code: Option<i32>, stderr: &str) {
    assert_eq!(code, Some(PANIC_STATUS), "{thread}: stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&format!("thread '{thread}' panicked")))
        .unwrap_or_else(|| panic!("no ERROR line naming {thread}:\n{stderr}"));
    assert!(line.contains("stopping the process"), "{line}");
    assert!(
        line.contains(&format!("MERKLEKV_DEBUG_PANIC={thread}")),
        "{line}"
    );
}

#[test]
fn a_worker_that_panics_while_serving_stops_the_process() {
    // One worker, told to panic 300 ms after it started: it serves first.
    let mut s = Server::start_with(
        &["--threads", "1"],
        &[("MERKLEKV_DEBUG_PANIC", "worker-0:300")],
    );
    let mut c = s.connect();
    c.write_all(b"PING\r\n").unwrap();
    assert_eq!(common::read_line(&mut c), "PONG");
    // Every request wakes the worker; one after the 300 ms makes it panic.
    let exited = wait_until(DEADLINE, || {
        let _ = c.write_all(b"PING\r\n");
        let mut buf = [0u8; 64];
        let _ = c.read(&mut buf);
        s.child.try_wait().unwrap().is_some()
    });
    assert!(exited, "the node kept running after its worker panicked");
    let status = s.wait_exit(DEADLINE).unwrap();
    let stderr = s.stderr.lock().unwrap().clone();
    assert_stopped_by("worker-0", status.code(), &stderr);
    // Nothing listens any more: new connections are refused, not hung.
    assert!(std::net::TcpStream::connect(s.addr).is_err());
}

#[test]
fn a_panic_in_any_background_thread_stops_the_process() {
    let (closed_broker, closed_peer) = (common::ClosedPort::new(), common::ClosedPort::new());
    let dir = TempDir::new("failfast");
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"ff\"\n[storage]\npersistence_enabled = true\nstorage_path = \"{}\"\n\
             fsync = \"everysec\"\n\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{}\"\n\n\
             [anti_entropy]\nenabled = true\ninterval_seconds = 1\npeer_list = [\"127.0.0.1:{}\"]\n",
            dir.path().join("data").display(),
            closed_broker.port(),
            closed_peer.port()
        ),
    );
    let args = ["--config", conf.to_str().unwrap(), "--threads", "2"];
    for thread in [
        "worker-1",
        "housekeeping",
        "expiry",
        "mqtt-bridge",
        "mqtt-publish",
        "anti-entropy",
        "ae-round",
        "persist-flush",
        "persist-snapshot",
    ] {
        let (code, stderr) = run_panicking(thread, &args);
        assert_stopped_by(thread, code, &stderr);
    }
}
