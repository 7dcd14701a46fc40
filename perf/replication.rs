//! Replication measurements through a real local mosquitto (two real
//! `merklekv` processes, release build):
//!
//! * **lag**: a writer sends SETs to node A at a fixed rate; a sampler on
//!   node B picks the most recently acknowledged write, polls `GET` on B
//!   until it is there (polling every ~0.1 ms, about 500 samples/s), and
//!   records (visible on B) − (acknowledged by A).
//!   Reported as p50 / p90 / p99 / max per rate.
//! * **throughput**: several pipelining clients write distinct keys to A
//!   as fast as they can for a fixed count; the replicated rate is
//!   writes / (time until B has applied all of them). Drops (outbox full)
//!   are reported: a run with drops is above the sustainable rate.
//!
//! Run: `cargo bench --bench replication -- [lag] [throughput]
//!       [--rates 1000,10000] [--seconds 5] [--writes 2000000]
//!       [--clients 4] [--depth 256] [--threads 1] [--qos 1] [--broker-nodelay]`
//! Everything runs on this machine (broker included), so the numbers are
//! what a 2-core box does with the client, two nodes and mosquitto on it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::{Broker, info, info_u64, wait_connected};
use common::{Server, TempDir};

struct Args {
    lag: bool,
    throughput: bool,
    rates: Vec<u64>,
    seconds: u64,
    writes: u64,
    clients: usize,
    depth: usize,
    threads: usize,
    qos: u8,
    /// Extra mosquitto.conf lines (`--broker-nodelay`: set_tcp_nodelay true).
    broker: String,
}

fn args() -> Args {
    let mut a = Args {
        lag: false,
        throughput: false,
        rates: vec![1000, 10_000],
        seconds: 5,
        writes: 2_000_000,
        clients: 4,
        depth: 256,
        threads: 1,
        qos: 1,
        broker: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().expect("option value");
        match x.as_str() {
            "lag" => a.lag = true,
            "throughput" => a.throughput = true,
            "--rates" => a.rates = val().split(',').map(|r| r.parse().unwrap()).collect(),
            "--seconds" => a.seconds = val().parse().unwrap(),
            "--writes" => a.writes = val().parse().unwrap(),
            "--clients" => a.clients = val().parse().unwrap(),
            "--depth" => a.depth = val().parse().unwrap(),
            "--threads" => a.threads = val().parse().unwrap(),
            "--qos" => a.qos = val().parse().unwrap(),
            "--broker-nodelay" => a.broker.push_str("set_tcp_nodelay true\n"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if !a.lag && !a.throughput {
        a.lag = true;
        a.throughput = true;
    }
    a
}

struct Cluster {
    _broker: Broker,
    a: Server,
    b: Server,
    _dirs: Vec<TempDir>,
}

fn cluster(a: &Args) -> Cluster {
    let (threads, qos) = (a.threads, a.qos);
    let broker = Broker::start_with(&a.broker);
    let mut dirs = Vec::new();
    let mut start = |id: &str| {
        let dir = TempDir::new(id);
        let conf = dir.file(
            "node.toml",
            &format!(
                "node_id = \"{id}\"\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{}\"\n\
                 topic_prefix = \"perf\"\nqos = {qos}\n",
                broker.port
            ),
        );
        let threads = threads.to_string();
        let s = Server::start(&["--config", conf.to_str().unwrap(), "--threads", &threads]);
        dirs.push(dir);
        s
    };
    let a = start("perf-a");
    let b = start("perf-b");
    wait_connected(&a);
    wait_connected(&b);
    Cluster {
        _broker: broker,
        a,
        b,
        _dirs: dirs,
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(s: &Server) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.child.id())).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are
    // the 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fixed-rate writer on A, sampler on B.
fn lag(rate: u64, a: &Args) {
    let seconds = a.seconds;
    let c = cluster(a);
    let total = (rate * seconds) as usize;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let last = Arc::new(AtomicUsize::new(usize::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writer = {
        let (acked, last, done) = (acked.clone(), last.clone(), done.clone());
        let s = TcpStream::connect(c.a.addr).unwrap();
        s.set_nodelay(true).unwrap();
        std::thread::spawn(move || {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut line = Vec::new();
            // Send in 1 ms ticks: rate/1000 writes per tick (at least 1).
            let per_tick = (rate / 1000).max(1) as usize;
            let tick = Duration::from_micros(1_000_000 * per_tick as u64 / rate);
            let mut next = Instant::now();
            let mut i = 0;
            let mut req = Vec::new();
            while i < total {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                next += tick;
                let n = per_tick.min(total - i);
                req.clear();
                for j in i..i + n {
                    let _ = write!(req, "SET lag:{j} {j}\r\n");
                }
                w.write_all(&req).unwrap();
                for j in i..i + n {
                    line.clear();
                    r.read_until(b'\n', &mut line).unwrap();
                    assert_eq!(line, b"OK\r\n");
                    acked[j].store(t0.elapsed().as_nanos() as u64, Ordering::Release);
                    last.store(j, Ordering::Release);
                }
                i += n;
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut samples = Vec::new();
    {
        let s = TcpStream::connect(c.b.addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = Vec::new();
        let mut sampled = usize::MAX;
        while !done.load(Ordering::Acquire) || last.load(Ordering::Acquire) != sampled {
            let j = last.load(Ordering::Acquire);
            if j == usize::MAX || j == sampled {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            sampled = j;
            let at = acked[j].load(Ordering::Acquire);
            let want = format!("VALUE {j}\r\n");
            let req = format!("GET lag:{j}\r\n");
            loop {
                w.write_all(req.as_bytes()).unwrap();
                line.clear();
                r.read_until(b'\n', &mut line).unwrap();
                if line == want.as_bytes() {
                    break;
                }
                // Poll gently: a busy loop would steal a core from the
                // nodes and the broker (resolution ~0.1 ms).
                std::thread::sleep(Duration::from_micros(50));
            }
            let seen = t0.elapsed().as_nanos() as u64;
            samples.push(Duration::from_nanos(seen.saturating_sub(at)));
            // About 500 samples per second are plenty.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    writer.join().unwrap();
    let elapsed = t0.elapsed();
    samples.sort();
    let ia = info(&c.a);
    println!(
        "lag @ {rate} writes/s for {seconds} s ({} writes in {:.2} s, {} samples): \
         p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  \
         (A: {} batches, {} events published, {} dropped)",
        total,
        elapsed.as_secs_f64(),
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(percentile(&samples, 1.0)),
        ia["replication_batches_published"],
        ia["replication_events_published"],
        ia["replication_dropped"],
    );
}

/// As fast as possible: `clients` connections × `depth` pipelined SETs.
fn throughput(a: &Args) {
    let (writes, clients, depth) = (a.writes, a.clients, a.depth);
    let c = cluster(a);
    let per_client = writes / clients as u64;
    let total = per_client * clients as u64;
    let t0 = Instant::now();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let addr = c.a.addr;
            let finished = finished.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::with_capacity(1 << 16, s);
                let mut req = Vec::new();
                let mut line = Vec::new();
                let mut i = 0;
                while i < per_client {
                    let n = (depth as u64).min(per_client - i);
                    req.clear();
                    for j in i..i + n {
                        let _ = write!(req, "SET t{k}:{j} value-{j}\r\n");
                    }
                    w.write_all(&req).unwrap();
                    for _ in 0..n {
                        line.clear();
                        r.read_until(b'\n', &mut line).unwrap();
                        assert_eq!(line, b"OK\r\n");
                    }
                    i += n;
                }
                finished.lock().unwrap().push(t0.elapsed());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let written = t0.elapsed();
    // B has everything A published once its applied count stops short of
    // nothing; A's drops are the writes that never left.
    let dropped = info_u64(&c.a, "replication_dropped");
    let want = total - dropped;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut applied;
    loop {
        applied = info_u64(&c.b, "replication_events_applied");
        if applied >= want || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let replicated = t0.elapsed();
    let (cpu_a, cpu_b) = (cpu_seconds(&c.a), cpu_seconds(&c.b));
    let ia = info(&c.a);
    let batches: u64 = ia["replication_batches_published"].parse().unwrap();
    let published: u64 = ia["replication_events_published"].parse().unwrap();
    println!(
        "throughput: {total} writes by {clients} clients x {depth} pipelined; \
         written on A in {:.2} s ({:.0}/s); all applied on B after {:.2} s \
         => {:.0} replicated writes/s; applied {applied}, dropped {dropped}, \
         unpublished {}, {batches} batches (avg {:.0} events); \
         CPU: A {cpu_a:.2} s ({:.2} us/write), B {cpu_b:.2} s ({:.2} us/applied event)",
        written.as_secs_f64(),
        total as f64 / written.as_secs_f64(),
        replicated.as_secs_f64(),
        applied as f64 / replicated.as_secs_f64(),
        ia["replication_events_unpublished"],
        published as f64 / batches.max(1) as f64,
        cpu_a * 1e6 / total as f64,
        cpu_b * 1e6 / applied.max(1) as f64,
    );
}

fn main() {
    let a = args();
    if a.lag {
        for &r in &a.rates {
            lag(r, &a);
        }
    }
    if a.throughput {
        throughput(&a);
    }
}
