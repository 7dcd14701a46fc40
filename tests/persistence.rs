//! Persistence end to end: the real binary, real files, `kill -9`.
//!
//! Every test gets its own data directory under the system temp dir and
//! starts `merklekv` on an ephemeral port with `--config` pointing at a
//! generated file (engine `sled`, the fsync policy under test).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, TempDir, bin, cmd, read_line, wait_until};

/// A node's configuration file and data directory.
struct Node {
    tmp: TempDir,
    config: PathBuf,
    threads: usize,
}

impl Node {
    fn new(tag: &str, fsync: &str, snapshot_secs: u64, threads: usize) -> Node {
        let tmp = TempDir::new(tag);
        let config = tmp.path().join("node.toml");
        let data = tmp.path().join("data");
        std::fs::write(
            &config,
            format!(
                "engine = \"sled\"\nstorage_path = \"{}\"\n\n[storage]\nfsync = \"{fsync}\"\nsnapshot_interval_seconds = {snapshot_secs}\n",
                data.display()
            ),
        )
        .unwrap();
        Node {
            tmp,
            config,
            threads,
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn start(&self) -> Server {
        let threads = self.threads.to_string();
        Server::start(&[
            "--config",
            self.config.to_str().unwrap(),
            "--node-id",
            "persist-test",
            "--threads",
            &threads,
        ])
    }

    /// Files in the data directory whose names end with `suffix`.
    fn files(&self, suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.data())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        v.sort();
        v
    }
}

/// Kills the server with SIGKILL and waits for it.
fn kill9(s: &mut Server) {
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

/// `INFO` as (name, value) pairs.
fn info(s: &mut TcpStream) -> Vec<(String, String)> {
    common::info_fields(s)
}

fn info_u64(s: &mut TcpStream, name: &str) -> u64 {
    info(s)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .1
        .parse()
        .unwrap()
}

/// GETs `keys` pipelined; returns each value (None = NOT_FOUND).
fn get_many(s: &mut TcpStream, keys: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(256) {
        let mut req = String::new();
        for k in chunk {
            req.push_str(&format!("GET {k}\r\n"));
        }
        s.write_all(req.as_bytes()).unwrap();
        for _ in chunk {
            let line = read_line(s);
            out.push(match line.strip_prefix("VALUE ") {
                Some(v) => Some(v.to_string()),
                None => {
                    assert_eq!(line, "NOT_FOUND");
                    None
                }
            });
        }
    }
    out
}

fn stderr_of(s: &Server) -> String {
    s.stderr.lock().unwrap().clone()
}

/// Writes `n` keys `k0..k{n-1}` one request at a time (each acknowledged
/// before the next), so a single worker logs them in this order.
fn write_sequential(s: &mut TcpStream, n: usize) {
    for i in 0..n {
        assert_eq!(cmd(s, &format!("SET k{i} value-{i}")), "OK");
    }
}

#[test]
fn always_kill9_keeps_every_acknowledged_write_under_concurrent_load() {
    let node = Node::new("always", "always", 300, 2);
    let mut server = node.start();
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicU64::new(0));
    // Per client: keys whose SET was acknowledged, and keys whose DEL was.
    type Acked = (Vec<String>, Vec<String>);
    let results: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut clients = Vec::new();
    for t in 0..4 {
        let mut conn = server.connect();
        let (stop, acked_total, results) = (stop.clone(), acked_total.clone(), results.clone());
        clients.push(std::thread::spawn(move || {
            let mut set = Vec::new();
            let mut deleted = Vec::new();
            let mut batch = 0usize;
            'outer: while !stop.load(Ordering::Relaxed) {
                // 16 pipelined SETs; every 4th batch also deletes an older key.
                let mut req = String::new();
                let keys: Vec<String> = (0..16).map(|i| format!("c{t}-{batch}-{i}")).collect();
                for k in &keys {
                    req.push_str(&format!("SET {k} v-{k}\r\n"));
                }
                let victim = (batch % 4 == 3 && !set.is_empty()).then(|| set.swap_remove(0));
                if let Some(v) = &victim {
                    req.push_str(&format!("DEL {v}\r\n"));
                }
                if conn.write_all(req.as_bytes()).is_err() {
                    break;
                }
                for k in keys {
                    let mut line = Vec::new();
                    let mut b = [0u8; 1];
                    while !line.ends_with(b"\r\n") {
                        if conn.read_exact(&mut b).is_err() {
                            break 'outer;
                        }
                        line.push(b[0]);
                    }
                    assert_eq!(line, b"OK\r\n");
                    set.push(k);
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(v) = victim {
                    let mut reply = [0u8; 9];
                    if conn.read_exact(&mut reply).is_err() {
                        break;
                    }
                    assert_eq!(&reply, b"DELETED\r\n");
                    deleted.push(v);
                }
                batch += 1;
            }
            results.lock().unwrap().push((set, deleted));
        }));
    }
    assert!(wait_until(DEADLINE, || acked_total.load(Ordering::Relaxed) >= 3000));
    kill9(&mut server);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let server = node.start();
    let mut s = server.connect();
    let results = results.lock().unwrap();
    let mut checked = 0;
    for (set, deleted) in results.iter() {
        let got = get_many(&mut s, set);
        for (k, v) in set.iter().zip(got) {
            assert_eq!(
                v.as_deref(),
                Some(format!("v-{k}").as_str()),
                "acknowledged {k}"
            );
        }
        let got = get_many(&mut s, deleted);
        assert!(got.iter().all(Option::is_none), "acknowledged deletes");
        checked += set.len() + deleted.len();
    }
    assert!(checked >= 3000);
    assert!(info_u64(&mut s, "persist_recovery_records") >= checked as u64);
}

#[test]
fn everysec_kill9_loses_at_most_about_the_last_second() {
    let node = Node::new("everysec", "everysec", 300, 2);
    let mut server = node.start();
    let mut s = server.connect();
    // Phase 1: these are acknowledged well over a second before the kill.
    let phase1: Vec<String> = (0..500).map(|i| format!("old{i}")).collect();
    for chunk in phase1.chunks(50) {
        let req: String = chunk.iter().map(|k| format!("SET {k} {k}\r\n")).collect();
        s.write_all(req.as_bytes()).unwrap();
        for _ in chunk {
            assert_eq!(read_line(&mut s), "OK");
        }
    }
    let phase1_done = Instant::now();
    // Phase 2: keep writing until 1.5 s have passed, then kill.
    let mut n = 0;
    assert!(wait_until(DEADLINE, || {
        assert_eq!(cmd(&mut s, &format!("SET new{n} x")), "OK");
        n += 1;
        phase1_done.elapsed() >= Duration::from_millis(1500)
    }));
    kill9(&mut server);

    let server = node.start();
    let mut s = server.connect();
    let got = get_many(&mut s, &phase1);
    for (k, v) in phase1.iter().zip(got) {
        assert_eq!(
            v.as_deref(),
            Some(k.as_str()),
            "{k} was acknowledged 1.5 s before the kill"
        );
    }
}

/// Kills a single-worker node after `n` sequential acknowledged SETs and
/// returns its only log segment.
fn crashed_node_with_one_segment(tag: &str, n: usize) -> (Node, PathBuf) {
    let node = Node::new(tag, "always", 300, 1);
    let mut server = node.start();
    let mut s = server.connect();
    write_sequential(&mut s, n);
    kill9(&mut server);
    let segs = node.files(".seg");
    assert_eq!(segs.len(), 1, "{segs:?}");
    (node, segs[0].clone())
}

#[test]
fn torn_tail_is_cut_with_one_log_line() {
    let (node, seg) = crashed_node_with_one_segment("torn", 100);
    let len = std::fs::metadata(&seg).unwrap().len();
    // An interrupted append: a frame (u32 checksum, u32le body length)
    // promising 200 body bytes, and only 10 of them.
    let mut tail = Vec::new();
    tail.extend_from_slice(&[0x5A; 4]);
    tail.extend_from_slice(&200u32.to_le_bytes());
    tail.extend_from_slice(&[0xAB; 10]);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&tail).unwrap();
    drop(f);

    let server = node.start();
    let mut s = server.connect();
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let got = get_many(&mut s, &keys);
    assert!(
        got.iter().all(Option::is_some),
        "every acknowledged key survives"
    );
    let err = stderr_of(&server);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("torn tail")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!("dropped {} bytes and 0 records", tail.len())),
        "{}",
        lines[0]
    );
    assert_eq!(
        info_u64(&mut s, "persist_recovery_dropped_bytes"),
        tail.len() as u64
    );
    // The torn bytes were cut off the file (or the file was folded into a
    // snapshot already).
    if let Ok(m) = std::fs::metadata(&seg) {
        assert_eq!(m.len(), len);
    }
}

#[test]
fn corrupt_record_in_the_middle_stops_that_segment_and_keeps_a_copy() {
    let (node, seg) = crashed_node_with_one_segment("corrupt", 100);
    let mut bytes = std::fs::read(&seg).unwrap();
    let original_len = bytes.len();
    // Flip a byte inside the body of the record that holds the middle of
    // the file (frames start with a u32 checksum and a u32le body length).
    let mut at = 0;
    loop {
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if at + 8 + body > original_len / 2 {
            break;
        }
        at += 8 + body;
    }
    bytes[at + 8 + 12] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();

    let server = node.start();
    let mut s = server.connect();
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let got = get_many(&mut s, &keys);
    // Exactly a prefix survives: reading stopped at the damaged record.
    let m = got
        .iter()
        .position(Option::is_none)
        .expect("some keys lost");
    assert!(m > 10, "prefix of {m}");
    assert!(got[m..].iter().all(Option::is_none));
    for (i, v) in got[..m].iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("value-{i}").as_str()));
    }
    let err = stderr_of(&server);
    let line = err
        .lines()
        .find(|l| l.contains("corrupt record"))
        .unwrap_or_else(|| panic!("no corruption line in {err}"));
    assert!(
        line.contains(&format!(
            "{} records (1 damaged + {} intact after it",
            100 - m,
            99 - m
        )),
        "{line}"
    );
    let copy = PathBuf::from(format!("{}.corrupt", seg.display()));
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), original_len as u64);
    assert_eq!(
        info_u64(&mut s, "persist_recovery_dropped_records"),
        (100 - m) as u64
    );

    // The node goes on; a second restart finds nothing left to report.
    assert_eq!(cmd(&mut s, "SET after corruption"), "OK");
    drop(s);
    let mut server = server;
    kill9(&mut server);
    let server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "GET after"), "VALUE corruption");
    assert_eq!(
        cmd(&mut s, &format!("GET k{}", m - 1)),
        format!("VALUE value-{}", m - 1)
    );
    assert!(!stderr_of(&server).contains("corrupt record"));
    assert!(copy.exists(), "the copy is never deleted");
}

/// Mixed writes from one client thread until `stop`; returns nothing —
/// the state is compared through HASH.
fn mixed_writer(mut s: TcpStream, t: usize, stop: Arc<AtomicBool>) -> u64 {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = format!("m{t}-{}", i % 300);
        let req = match i % 5 {
            0 | 1 => format!("SET {k} v{i}\r\n"),
            2 => format!("DEL {k}\r\n"),
            3 => format!("INC n{t}-{} {i}\r\n", i % 50),
            _ => format!("APPEND {k} +{i}\r\n"),
        };
        s.write_all(req.as_bytes()).unwrap();
        read_line(&mut s);
        i += 1;
    }
    i
}

#[test]
fn snapshot_while_writes_continue_then_crash_restores_the_same_root() {
    let node = Node::new("snapshot", "always", 1, 2);
    let mut server = node.start();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (c, stop) = (server.connect(), stop.clone());
            std::thread::spawn(move || mixed_writer(c, t, stop))
        })
        .collect();
    let mut s = server.connect();
    // Two snapshots while the writers run: the second one covers (and
    // deletes) segments that were written during the first.
    assert!(wait_until(DEADLINE, || info_u64(
        &mut s,
        "persist_snapshots"
    ) >= 2));
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(writes > 100);
    let root = cmd(&mut s, "HASH");
    let size = cmd(&mut s, "DBSIZE");
    assert!(!node.files(".snap").is_empty());
    kill9(&mut server);

    let server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "HASH"), root);
    assert_eq!(cmd(&mut s, "DBSIZE"), size);
    assert!(info_u64(&mut s, "persist_recovery_records") > 0);
}

#[test]
fn flushdb_survives_snapshots_and_crashes() {
    let node = Node::new("flush", "always", 1, 2);
    let mut server = node.start();
    let mut s = server.connect();
    write_sequential(&mut s, 50);
    assert!(wait_until(DEADLINE, || info_u64(
        &mut s,
        "persist_snapshots"
    ) >= 1));
    // More writes after the snapshot, then a flush, then new data: the
    // snapshot, the pre-flush log records and the flush must combine to
    // exactly the new data.
    assert_eq!(cmd(&mut s, "SET k3 changed"), "OK");
    assert_eq!(cmd(&mut s, "DEL k4"), "DELETED");
    assert_eq!(cmd(&mut s, "FLUSHDB"), "OK");
    assert_eq!(cmd(&mut s, "SET fresh 1"), "OK");
    assert_eq!(cmd(&mut s, "INC counter 7"), "VALUE 7");
    let root = cmd(&mut s, "HASH");
    kill9(&mut server);

    let mut server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "DBSIZE"), "DBSIZE 2");
    assert_eq!(cmd(&mut s, "GET k3"), "NOT_FOUND");
    assert_eq!(cmd(&mut s, "HASH"), root);
    // Writes after the restart are not mistaken for pre-flush records.
    assert_eq!(cmd(&mut s, "SET later 1"), "OK");
    let root = cmd(&mut s, "HASH");
    kill9(&mut server);
    let server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "HASH"), root);
    assert_eq!(cmd(&mut s, "DBSIZE"), "DBSIZE 3");
}

#[test]
fn clean_shutdown_writes_a_final_snapshot_and_exits() {
    let node = Node::new("clean", "everysec", 300, 2);
    let mut server = node.start();
    let mut s = server.connect();
    write_sequential(&mut s, 200);
    assert_eq!(cmd(&mut s, "DEL k0"), "DELETED");
    let root = cmd(&mut s, "HASH");
    server.signal("TERM");
    let status = server.wait_exit(DEADLINE).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(stderr_of(&server).contains("final snapshot written"));
    assert_eq!(node.files(".snap").len(), 1);
    assert!(
        node.files(".seg").is_empty(),
        "the snapshot covers every segment"
    );

    let mut server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "HASH"), root);
    assert_eq!(info_u64(&mut s, "persist_recovery_records"), 200);
    // SHUTDOWN flushes the same way.
    assert_eq!(cmd(&mut s, "SET k0 back"), "OK");
    let root = cmd(&mut s, "HASH");
    assert_eq!(cmd(&mut s, "SHUTDOWN"), "OK");
    assert!(server.wait_exit(DEADLINE).expect("exits").success());
    let server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "HASH"), root);
}

#[test]
fn in_memory_engine_never_touches_storage_path() {
    let tmp = TempDir::new("rwlock");
    let path = tmp.path().join("never").join("created");
    let server = Server::start(&[
        "--engine",
        "rwlock",
        "--storage-path",
        path.to_str().unwrap(),
    ]);
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "SET a 1"), "OK");
    assert_eq!(cmd(&mut s, "FLUSHDB"), "OK");
    assert!(info(&mut s).contains(&("persistence".to_string(), "0".to_string())));
    assert!(!tmp.path().join("never").exists());
}

/// Runs the binary to completion (it is expected to fail at startup).
fn run_failing(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(bin())
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let node = Node::new("lock", "everysec", 300, 1);
    let server = node.start();
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "SET a 1"), "OK");
    let (code, err) = run_failing(&["--config", node.config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is in use by another merklekv process"),
        "{err}"
    );
    // The first one is unharmed.
    assert_eq!(cmd(&mut s, "GET a"), "VALUE 1");
}

#[test]
fn unreadable_or_foreign_directories_are_refused_and_missing_ones_created() {
    let tmp = TempDir::new("refuse");
    let dir = |name: &str| tmp.path().join(name);
    let start =
        |d: &Path| run_failing(&["--engine", "sled", "--storage-path", d.to_str().unwrap()]);

    // Foreign files only (e.g. a 1.x sled directory).
    std::fs::create_dir_all(dir("foreign")).unwrap();
    std::fs::write(dir("foreign").join("conf"), b"sled conf").unwrap();
    let (code, err) = start(&dir("foreign"));
    assert_eq!(code, 1);
    assert!(
        err.contains("holds no MerkleKV data (found \"conf\")"),
        "{err}"
    );

    // Our file names, nothing readable.
    std::fs::create_dir_all(dir("garbage")).unwrap();
    std::fs::write(dir("garbage").join("snap-0000000001.snap"), [7u8; 300]).unwrap();
    std::fs::write(dir("garbage").join("log-0000000002-w0.seg"), [9u8; 300]).unwrap();
    let (code, err) = start(&dir("garbage"));
    assert_eq!(code, 1);
    assert!(err.contains("none of them is readable"), "{err}");
    assert!(
        dir("garbage").join("snap-0000000001.snap").exists(),
        "nothing is renamed"
    );

    // A missing directory is created with its parents.
    let deep = dir("a").join("b").join("c");
    let server = Server::start(&["--engine", "sled", "--storage-path", deep.to_str().unwrap()]);
    let mut s = server.connect();
    assert_eq!(cmd(&mut s, "SET a 1"), "OK");
    assert!(deep.join("LOCK").exists());
}

/// Configuration of an in-process node on `dir` (always fsync, one worker).
fn lib_config(dir: &Path) -> merklekv::config::Config {
    merklekv::config::Config {
        engine: merklekv::config::Engine::Persistent,
        storage_path: dir.to_path_buf(),
        fsync: merklekv::config::FsyncPolicy::Always,
        host: "127.0.0.1".into(),
        port: 0,
        threads: 1,
        node_id: "local".into(),
        ..Default::default()
    }
}

const APPLIER_CHILD: &str = "MERKLEKV_TEST_APPLIER_CHILD";

/// The crashing half of the applier test, run in a child process: remote
/// writes through an `Applier` (values, tombstones, stale duplicates), a
/// local FLUSHDB, remote writes with versions older than the flush, then
/// print the root and wait to be killed.
fn applier_child(dir: &Path) {
    use merklekv::node::{Applier, Node};
    use merklekv::store::{Applied, Version, node_hash, now_millis};
    let node = Node::start(lib_config(dir)).unwrap();
    let mut a = Applier::new(node.shared().clone(), "replication");
    let (p1, p2) = (node_hash("peer1"), node_hash("peer2"));
    let now = now_millis() << 16;
    for i in 0..300u64 {
        let k = format!("r{i}");
        assert_eq!(
            a.apply(k.as_bytes(), Some(b"one"), Version::new(now + i, p1)),
            Applied::Stored
        );
    }
    let mut s = TcpStream::connect(node.addr()).unwrap();
    assert_eq!(cmd(&mut s, "SET local-before 1"), "OK");
    assert_eq!(cmd(&mut s, "FLUSHDB"), "OK");
    // Older than everything the flush removed, but applied after it: the
    // in-memory store keeps them, so recovery must too.
    for i in 0..100u64 {
        let k = format!("late{i}");
        assert_eq!(
            a.apply(k.as_bytes(), Some(b"late"), Version::new(1000 + i, p2)),
            Applied::Stored
        );
    }
    for i in 0..50u64 {
        let k = format!("late{i}");
        let v = Version::new(now + 10_000 + i, p2);
        assert_eq!(a.apply(k.as_bytes(), None, v), Applied::Stored);
        assert_eq!(
            a.apply(k.as_bytes(), Some(b"stale"), Version::new(now, p1)),
            Applied::Stale
        );
    }
    assert_eq!(cmd(&mut s, "SET local-after 2"), "OK");
    a.commit();
    let root = merklekv::store::merkle::hex(&node.shared().store.root());
    println!("ROOT {root} LEN {}", node.shared().store.len());
    let mut buf = [0u8; 1];
    let _ = std::io::stdin().read(&mut buf); // killed here
}

#[test]
fn remote_writes_through_the_applier_are_recovered_exactly() {
    if let Ok(dir) = std::env::var(APPLIER_CHILD) {
        applier_child(Path::new(&dir));
        return;
    }
    let tmp = TempDir::new("applier");
    let dir = tmp.path().join("data");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "remote_writes_through_the_applier_are_recovered_exactly",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(APPLIER_CHILD, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(line) = line else { break };
            // libtest may print "test <name> ... " in front of it.
            if let Some(rest) = line.trim().split("ROOT ").nth(1) {
                let (root, len) = rest.split_once(" LEN ").unwrap();
                let _ = tx.send((root.to_string(), len.parse::<usize>().unwrap()));
            }
        }
    });
    let reported = rx.recv_timeout(DEADLINE);
    child.kill().unwrap();
    let (root, len) = reported.expect("the child reports its root");
    child.wait().unwrap();
    assert_eq!(len, 100 - 50 + 1);

    let node = merklekv::node::Node::start(lib_config(&dir)).unwrap();
    let store = &node.shared().store;
    assert_eq!(merklekv::store::merkle::hex(&store.root()), root);
    assert_eq!(store.len(), len);
    assert_eq!(store.tombstones(), 50);
    assert!(store.entry(b"r1").is_none() && store.entry(b"local-before").is_none());
    assert_eq!(
        store.entry(b"late70").unwrap().value.as_deref(),
        Some(&b"late"[..])
    );
    node.shutdown();
}

#[test]
fn corrupt_snapshot_loads_its_intact_prefix_and_says_what_was_lost() {
    let node = Node::new("badsnap", "everysec", 300, 2);
    let mut server = node.start();
    let mut s = server.connect();
    write_sequential(&mut s, 400);
    assert_eq!(cmd(&mut s, "SHUTDOWN"), "OK");
    assert!(server.wait_exit(DEADLINE).expect("exits").success());
    let snaps = node.files(".snap");
    assert_eq!(snaps.len(), 1);
    let mut bytes = std::fs::read(&snaps[0]).unwrap();
    let original_len = bytes.len();
    let mid = bytes.len() / 2;
    // Inside a record's body somewhere in the middle: a value byte.
    let at = mid + bytes[mid..].iter().position(|&b| b == b'-').unwrap() + 1;
    bytes[at] ^= 0x01;
    std::fs::write(&snaps[0], &bytes).unwrap();

    let server = node.start();
    let mut s = server.connect();
    // The log line may reach the capture thread after the port opened.
    let damage = |err: &str| {
        err.lines()
            .find(|l| l.contains("snapshot") && l.contains("corrupt record"))
            .map(str::to_string)
    };
    wait_until(DEADLINE, || damage(&stderr_of(&server)).is_some());
    let err = stderr_of(&server);
    let line = damage(&err).unwrap_or_else(|| panic!("no snapshot damage line in {err}"));
    let num = |after: &str| -> usize {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{line}")) + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let loaded = num("loaded ");
    let lost_after = num("bytes and ");
    assert_eq!(loaded + 1 + lost_after, 400, "{line}");
    assert!(loaded > 50 && lost_after > 50, "{line}");
    assert_eq!(cmd(&mut s, "DBSIZE"), format!("DBSIZE {loaded}"));
    let copy = PathBuf::from(format!("{}.corrupt", snaps[0].display()));
    assert_eq!(std::fs::metadata(copy).unwrap().len(), original_len as u64);
}

#[test]
fn a_restarted_cluster_node_recovers_locally_then_anti_entropy_brings_it_current() {
    // Peer A: in memory, no anti-entropy of its own. Node B: persistent
    // (`always`), pulls from A every second.
    let a = Server::start(&["--node-id", "peer-a"]);
    let tmp = TempDir::new("cluster-restart");
    let config = tmp.file(
        "b.toml",
        &format!(
            "engine = \"sled\"\nstorage_path = \"{}\"\n\n[storage]\nfsync = \"always\"\n\n\
             [anti_entropy]\nenabled = true\ninterval_seconds = 1\npeer_list = [\"{}\"]\n",
            tmp.path().join("data").display(),
            a.addr
        ),
    );
    let start_b = || Server::start(&["--config", config.to_str().unwrap(), "--node-id", "node-b"]);
    let dbsize = |s: &mut TcpStream| cmd(s, "DBSIZE");
    let mut b = start_b();
    let (mut ca, mut cb) = (a.connect(), b.connect());
    for i in 0..500 {
        assert_eq!(cmd(&mut ca, &format!("SET shared{i} v{i}")), "OK");
    }
    // Keys only B has: after the crash they can come from B's disk alone.
    let local: Vec<String> = (0..100).map(|i| format!("local{i}")).collect();
    for k in &local {
        assert_eq!(cmd(&mut cb, &format!("SET {k} mine")), "OK");
    }
    assert!(
        wait_until(DEADLINE, || dbsize(&mut cb) == "DBSIZE 600"),
        "B never pulled A's keys: {}",
        dbsize(&mut cb)
    );
    kill9(&mut b);

    // While B is down, A moves on: deletes, new keys, an overwrite.
    for i in 0..100 {
        assert_eq!(cmd(&mut ca, &format!("DEL shared{i}")), "DELETED");
    }
    for i in 500..800 {
        assert_eq!(cmd(&mut ca, &format!("SET shared{i} v{i}")), "OK");
    }
    assert_eq!(cmd(&mut ca, "SET shared200 changed"), "OK");

    let b = start_b();
    let mut cb = b.connect();
    assert!(info_u64(&mut cb, "persist_recovery_records") >= 600);
    assert!(
        get_many(&mut cb, &local)
            .iter()
            .all(|v| v.as_deref() == Some("mine")),
        "B lost keys it had acknowledged"
    );
    assert!(
        wait_until(DEADLINE, || {
            dbsize(&mut cb) == "DBSIZE 800" && cmd(&mut cb, "GET shared200") == "VALUE changed"
        }),
        "anti-entropy did not bring B current: {}",
        dbsize(&mut cb)
    );
    let deleted: Vec<String> = (0..100).map(|i| format!("shared{i}")).collect();
    assert!(get_many(&mut cb, &deleted).iter().all(Option::is_none));
    let kept: Vec<String> = (100..800).map(|i| format!("shared{i}")).collect();
    let got = get_many(&mut cb, &kept);
    assert!(got.iter().all(Option::is_some));
    // And B's view of A's keys is exactly A's: same digest over `shared`.
    assert_eq!(
        cmd(&mut cb, "HASH shared"),
        cmd(&mut ca, "HASH shared"),
        "B's shared keys differ from A's"
    );
}
