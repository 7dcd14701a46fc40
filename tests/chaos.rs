//! Chaos: three persistent nodes replicating through a real mosquitto and
//! repairing each other with anti-entropy, while clients write and delete
//! and the test kills nodes (SIGKILL), restarts the broker and cuts, stalls
//! and heals links. Then quiet, and the checks:
//!
//! 1. every node reports the same Merkle root within two anti-entropy
//!    intervals of the last fault being healed;
//! 2. every write a client saw acknowledged is on every node, unless a
//!    later acknowledged write to that key superseded it;
//! 3. no key whose last acknowledged operation was a delete has come back.
//!
//! # Topology
//!
//! ```text
//!   writers ──direct──▶ n0  n1  n2        (ephemeral ports, new on restart)
//!   n_i ──proxy mqtt[i]──▶ mosquitto      (one proxy per node)
//!   n_i ──proxy ae[i][j]──▶ n_j           (anti-entropy peer lists name
//!                                           the proxies, retargeted when
//!                                           n_j restarts)
//! ```
//!
//! # What a writer records
//!
//! Each writer owns its keys, so the operations on a key form one sequence.
//! An operation is *acknowledged* (`OK`, `DELETED`), a *no-op* (`DEL`
//! answered `NOT_FOUND`: that node had nothing to delete) or *uncertain*
//! (the connection died first: it may or may not have taken effect). The
//! writer waits until the wall clock has moved 2 ms past the end of the
//! previous operation on a key before the next one, so with last-writer-wins
//! on hybrid-logical-clock versions (all nodes share this machine's clock) a
//! later operation always gets a larger version, on whichever node. The
//! final value of a key must then be the effect of its last acknowledged
//! operation or of an uncertain one after it.
//!
//! # Duration
//!
//! `cargo test` runs 20 s of faults (about 30 s in all). Set
//! `MERKLEKV_CHAOS_SECS` for a longer run and `MERKLEKV_CHAOS_SEED` to
//! replay a fault schedule (timing still varies); the figures printed at the
//! end (`--nocapture`) are what perf/chaos.md records.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::durable::DurableNode;
use common::proxy::{Link, Proxy};
use common::{Server, wait_until};

const NODES: usize = 3;
const WRITERS: usize = 4;
/// Keys a writer creates at most (bounds the long mode's check).
const MAX_KEYS_PER_WRITER: usize = 25_000;
/// Overwrites and deletes pick among this many recent keys half the time.
const HOT_KEYS: u64 = 64;
/// Anti-entropy interval of every node.
const AE_INTERVAL: Duration = Duration::from_secs(3);
/// Faults during a `cargo test` run.
const CI_CHAOS: Duration = Duration::from_secs(20);

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------
// Operations and their outcomes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    NoOp,
    Uncertain,
}

#[derive(Debug, Clone)]
struct Op {
    /// `Some(value)` for a write, `None` for a delete.
    value: Option<String>,
    outcome: Outcome,
    /// The node it was sent to (shown in failure messages).
    #[allow(dead_code)]
    node: usize,
}

/// Where the nodes currently listen (`None` while down).
type Directory = Arc<Mutex<Vec<Option<SocketAddr>>>>;

#[derive(Default)]
struct WriterReport {
    history: HashMap<String, Vec<Op>>,
    errors: Vec<String>,
}

/// One client: random SET / DEL / MSET on its own keys until `stop`.
///
/// Keys: a growing set (up to [`MAX_KEYS_PER_WRITER`]). Many writes go to
/// a fresh key, so the final check covers many "last writes" made during
/// faults, not only the last few of a handful of hot keys; the rest
/// overwrite or delete a recent key (often) or any earlier one.
fn writer(w: usize, seed: u64, dir: Directory, stop: Arc<AtomicBool>) -> WriterReport {
    let mut rng = Rng(seed | 1);
    let mut keys: Vec<String> = Vec::new();
    // Per key: home node, wall time the last operation on it ended.
    let mut home: Vec<usize> = Vec::new();
    let mut last_done: Vec<u64> = Vec::new();
    let mut conns: HashMap<usize, (SocketAddr, BufReader<TcpStream>)> = HashMap::new();
    let mut report = WriterReport::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let dice = rng.below(20);
        let mut pick = |rng: &mut Rng, fresh: bool| -> usize {
            if (fresh || keys.is_empty()) && keys.len() < MAX_KEYS_PER_WRITER {
                keys.push(format!("chaos:w{w}:k{}", keys.len()));
                home.push(rng.below(NODES as u64) as usize);
                last_done.push(0);
                return keys.len() - 1;
            }
            let n = keys.len() as u64;
            if rng.below(2) == 0 {
                (n - 1 - rng.below(n.min(HOT_KEYS))) as usize
            } else {
                rng.below(n) as usize
            }
        };
        // 8/20 fresh SET, 7/20 overwrite, 3/20 DEL, 2/20 MSET of 3 keys.
        let mut batch = vec![pick(&mut rng, dice < 8)];
        if dice >= 18 {
            for fresh in [true, false] {
                let o = pick(&mut rng, fresh);
                if !batch.contains(&o) {
                    batch.push(o);
                }
            }
        }
        let k = batch[0];
        // Pick the key's home node, or another live one if it is down.
        let addrs = dir.lock().unwrap().clone();
        let mut node = home[k];
        if addrs[node].is_none() {
            let up: Vec<usize> = (0..NODES).filter(|&i| addrs[i].is_some()).collect();
            if up.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            node = up[rng.below(up.len() as u64) as usize];
        }
        let addr = addrs[node].unwrap();
        for &b in &batch {
            home[b] = node;
        }
        // Per-key order across nodes: see the module docs.
        let after = batch.iter().map(|&b| last_done[b]).max().unwrap() + 2;
        while now_ms() <= after {
            std::thread::sleep(Duration::from_millis(1));
        }
        seq += 1;
        let (line, values): (String, Vec<Option<String>>) = if batch.len() > 1 {
            let vals: Vec<String> = batch.iter().map(|b| format!("w{w}k{b}s{seq}")).collect();
            let mut l = String::from("MSET");
            for (b, v) in batch.iter().zip(&vals) {
                l.push_str(&format!(" {} {v}", keys[*b]));
            }
            (l, vals.into_iter().map(Some).collect())
        } else if !(15..18).contains(&dice) {
            let v = format!("w{w}k{k}s{seq}");
            (format!("SET {} {v}", keys[k]), vec![Some(v)])
        } else {
            (format!("DEL {}", keys[k]), vec![None])
        };
        let reply = request(&mut conns, node, addr, &line);
        let outcome = match (reply.as_deref(), values[0].is_some()) {
            (Some("OK"), true) | (Some("DELETED"), false) => Outcome::Acked,
            (Some("NOT_FOUND"), false) => Outcome::NoOp,
            (None, _) => Outcome::Uncertain,
            (Some(other), _) => {
                report
                    .errors
                    .push(format!("{line:?} on n{node}: {other:?}"));
                Outcome::Uncertain
            }
        };
        let done = now_ms();
        for (&b, v) in batch.iter().zip(values) {
            last_done[b] = done;
            report.history.entry(keys[b].clone()).or_default().push(Op {
                value: v,
                outcome,
                node,
            });
        }
        if outcome == Outcome::Uncertain {
            conns.remove(&node);
        }
    }
    report
}

/// Sends one request line on the writer's connection to `node` (opened
/// on demand) and returns the reply line, or None if the connection failed.
fn request(
    conns: &mut HashMap<usize, (SocketAddr, BufReader<TcpStream>)>,
    node: usize,
    addr: SocketAddr,
    line: &str,
) -> Option<String> {
    if conns.get(&node).is_none_or(|(a, _)| *a != addr) {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        conns.insert(node, (addr, BufReader::new(s)));
    }
    let r = conns.get_mut(&node).unwrap();
    let sent = r.1.get_mut().write_all(format!("{line}\r\n").as_bytes());
    let mut reply = String::new();
    if sent.is_err() || r.1.read_line(&mut reply).unwrap_or(0) == 0 || !reply.ends_with("\r\n") {
        conns.remove(&node);
        return None;
    }
    reply.truncate(reply.len() - 2);
    Some(reply)
}

// ---------------------------------------------------------------------------
// The cluster and its faults
// ---------------------------------------------------------------------------

struct Cluster {
    broker: Broker,
    nodes: Vec<DurableNode>,
    /// Node i's link to the broker.
    mqtt: Vec<Proxy>,
    /// `ae[i][j]`: node i's anti-entropy link to node j (None for i == j).
    ae: Vec<Vec<Option<Proxy>>>,
    dir: Directory,
    broker_up: bool,
}

impl Cluster {
    fn start() -> Cluster {
        let broker = Broker::start();
        let mqtt: Vec<Proxy> = (0..NODES)
            .map(|_| Proxy::start(Some(([127, 0, 0, 1], broker.port).into())))
            .collect();
        let ae: Vec<Vec<Option<Proxy>>> = (0..NODES)
            .map(|i| {
                (0..NODES)
                    .map(|j| (i != j).then(|| Proxy::start(None)))
                    .collect()
            })
            .collect();
        let nodes = (0..NODES)
            .map(|i| {
                let peers: Vec<String> = ae[i]
                    .iter()
                    .flatten()
                    .map(|p| format!("\"{}\"", p.addr))
                    .collect();
                DurableNode::new(
                    &format!("chaos-n{i}"),
                    2,
                    2,
                    &format!(
                        "[mqtt]\nbroker_address = \"tcp://{}\"\ntopic_prefix = \"chaos\"\n\
                         keep_alive = 5\nqos = 1\n\n\
                         [anti_entropy]\nenabled = true\ninterval_seconds = {}\npeer_list = [{}]\n",
                        mqtt[i].addr,
                        AE_INTERVAL.as_secs(),
                        peers.join(", ")
                    ),
                )
            })
            .collect();
        let mut c = Cluster {
            broker,
            nodes,
            mqtt,
            ae,
            dir: Arc::new(Mutex::new(vec![None; NODES])),
            broker_up: true,
        };
        for i in 0..NODES {
            c.start_node(i);
        }
        c
    }

    fn start_node(&mut self, i: usize) {
        let addr = self.nodes[i].start();
        for j in 0..NODES {
            if let Some(p) = &self.ae[j][i] {
                p.retarget(Some(addr));
            }
        }
        self.dir.lock().unwrap()[i] = Some(addr);
    }

    fn kill_node(&mut self, i: usize) {
        self.dir.lock().unwrap()[i] = None;
        self.nodes[i].kill9();
    }

    fn up(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|&i| self.nodes[i].running().is_some())
            .collect()
    }

    fn servers(&self) -> Vec<&Server> {
        self.nodes.iter().map(DurableNode::server).collect()
    }

    fn links(&self) -> Vec<&Proxy> {
        self.mqtt
            .iter()
            .chain(self.ae.iter().flatten().flatten())
            .collect()
    }

    /// Every node's warnings and errors so far, and the last lines of its
    /// log (for failure messages).
    fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let all = format!("{}{}", n.past_stderr, n.stderr());
            let lines: Vec<&str> = all.lines().collect();
            out.push_str(&format!("=== {} ===\n", n.id));
            for l in lines
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(100)
            {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("... last lines:\n");
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// Undoing a fault, at a given time.
#[derive(Debug)]
enum Heal {
    StartNode(usize),
    StartBroker,
    /// Index into `Cluster::links()`.
    Link(usize),
}

#[derive(Default, Debug)]
struct FaultCounts {
    kill9: u64,
    broker_restart: u64,
    broker_down: u64,
    mqtt_reset: u64,
    mqtt_stall: u64,
    ae_reset: u64,
    ae_stall: u64,
    partition: u64,
}

impl FaultCounts {
    fn total(&self) -> u64 {
        self.kill9
            + self.broker_restart
            + self.broker_down
            + self.mqtt_reset
            + self.mqtt_stall
            + self.ae_reset
            + self.ae_stall
            + self.partition
    }
}

/// Injects one random fault, scheduling its healing in `heals`.
fn inject(c: &mut Cluster, rng: &mut Rng, heals: &mut Vec<(Instant, Heal)>, n: &mut FaultCounts) {
    let now = Instant::now();
    let links = c.links().len();
    match rng.below(8) {
        0 | 1 => {
            // At most two nodes down at once: writers always have one.
            let up = c.up();
            if up.len() > 1 {
                let i = up[rng.below(up.len() as u64) as usize];
                c.kill_node(i);
                heals.push((now + rng.millis(200, 2500), Heal::StartNode(i)));
                n.kill9 += 1;
            }
        }
        2 => {
            if c.broker_up {
                if rng.below(2) == 0 {
                    c.broker.restart();
                    n.broker_restart += 1;
                } else {
                    c.broker.kill();
                    c.broker_up = false;
                    heals.push((now + rng.millis(200, 2000), Heal::StartBroker));
                    n.broker_down += 1;
                }
            }
        }
        3 | 4 => {
            let i = rng.below(NODES as u64) as usize;
            let stall = rng.below(2) == 0;
            c.mqtt[i].set(if stall { Link::Stalled } else { Link::Reset });
            heals.push((now + rng.millis(200, 3000), Heal::Link(i)));
            if stall {
                n.mqtt_stall += 1;
            } else {
                n.mqtt_reset += 1;
            }
        }
        5 | 6 => {
            let l = NODES + rng.below((links - NODES) as u64) as usize;
            let stall = rng.below(2) == 0;
            c.links()[l].set(if stall { Link::Stalled } else { Link::Reset });
            heals.push((now + rng.millis(200, 4000), Heal::Link(l)));
            if stall {
                n.ae_stall += 1;
            } else {
                n.ae_reset += 1;
            }
        }
        _ => {
            // Partition one node from everything (it keeps serving clients).
            let i = rng.below(NODES as u64) as usize;
            let heal_at = now + rng.millis(500, 4000);
            let links = c.links();
            let mut cut = vec![i];
            for j in 0..NODES {
                if j != i {
                    for (a, b) in [(i, j), (j, i)] {
                        let p = c.ae[a][b].as_ref().unwrap();
                        cut.push(links.iter().position(|l| std::ptr::eq(*l, p)).unwrap());
                    }
                }
            }
            for l in cut {
                links[l].set(Link::Reset);
                heals.push((heal_at, Heal::Link(l)));
            }
            n.partition += 1;
        }
    }
}

fn heal(c: &mut Cluster, h: Heal) {
    match h {
        Heal::StartNode(i) => {
            if c.nodes[i].running().is_none() {
                c.start_node(i);
            }
        }
        Heal::StartBroker => {
            if !c.broker_up {
                c.broker.restart();
                c.broker_up = true;
            }
        }
        Heal::Link(l) => c.links()[l].set(Link::Up),
    }
}

// ---------------------------------------------------------------------------
// Reading the final state
// ---------------------------------------------------------------------------

/// The values of `keys` on `s` (None = not found), by MGET in chunks.
fn read_all(s: &Server, keys: &[String]) -> Vec<Option<String>> {
    let mut r = BufReader::new(s.connect());
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        r.get_mut()
            .write_all(format!("MGET {}\r\n", chunk.join(" ")).as_bytes())
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim_end() == "NOT_FOUND" {
            out.extend(chunk.iter().map(|_| None));
            continue;
        }
        assert!(line.starts_with("VALUES "), "MGET reply {line:?}");
        for k in chunk {
            line.clear();
            r.read_line(&mut line).unwrap();
            let (key, v) = line.trim_end().split_once(' ').unwrap();
            assert_eq!(key, k);
            out.push((v != "NOT_FOUND").then(|| v.to_string()));
        }
    }
    out
}

/// What the final value of a key may be, given its history: the effect of
/// the last acknowledged operation (absent if none) or of any uncertain
/// operation after it.
fn allowed(history: &[Op]) -> (Vec<Option<String>>, Option<&Op>) {
    let last = history.iter().rposition(|o| o.outcome == Outcome::Acked);
    let mut ok = vec![last.and_then(|i| history[i].value.clone())];
    let from = last.map_or(0, |i| i + 1);
    for o in &history[from..] {
        if o.outcome == Outcome::Uncertain {
            ok.push(o.value.clone());
        }
    }
    (ok, last.map(|i| &history[i]))
}

#[test]
fn chaos_three_nodes_lose_nothing_and_converge() {
    let chaos = std::env::var("MERKLEKV_CHAOS_SECS")
        .ok()
        .map(|s| Duration::from_secs(s.parse().expect("MERKLEKV_CHAOS_SECS: seconds")))
        .unwrap_or(CI_CHAOS);
    let seed = std::env::var("MERKLEKV_CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("MERKLEKV_CHAOS_SEED: a number"))
        .unwrap_or_else(|| now_ms() ^ (u64::from(std::process::id()) << 32));
    eprintln!("chaos: seed {seed}, {} s of faults", chaos.as_secs());
    let started = Instant::now();
    let mut rng = Rng(seed | 1);
    let mut c = Cluster::start();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (dir, stop, s) = (c.dir.clone(), stop.clone(), rng.next());
            std::thread::spawn(move || writer(w, s, dir, stop))
        })
        .collect();

    let mut faults = FaultCounts::default();
    let mut heals: Vec<(Instant, Heal)> = Vec::new();
    let chaos_end = Instant::now() + chaos;
    let mut next_fault = Instant::now() + rng.millis(300, 900);
    while Instant::now() < chaos_end {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = heals.drain(..).partition(|(t, _)| *t <= now);
        heals = later;
        for (_, h) in due {
            heal(&mut c, h);
        }
        if now >= next_fault {
            inject(&mut c, &mut rng, &mut heals, &mut faults);
            next_fault = now + rng.millis(200, 900);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<WriterReport> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    // Quiet: heal everything, then every root must agree. Two anti-entropy
    // rounds suffice on an idle machine (the time is printed; perf/chaos.md
    // records it); the deadline is generous so a loaded CI machine does not
    // turn a slow round into a failure. Convergence is the property tested,
    // not its speed.
    for (_, h) in heals.drain(..) {
        heal(&mut c, h);
    }
    for i in 0..NODES {
        heal(&mut c, Heal::StartNode(i));
    }
    heal(&mut c, Heal::StartBroker);
    for l in c.links() {
        l.set(Link::Up);
    }
    let quiet = Instant::now();
    let mut roots = Vec::new();
    let converged = wait_until(20 * AE_INTERVAL, || {
        roots = c
            .servers()
            .iter()
            .map(|s| common::broker::hash(s, ""))
            .collect();
        roots.windows(2).all(|w| w[0] == w[1])
    });
    let converge_time = quiet.elapsed();
    eprintln!("chaos: roots equal {converge_time:?} after the quiet period began");
    assert!(
        converged,
        "roots differ {:?} after the quiet period: {roots:?}\nlogs:\n{}",
        converge_time,
        c.logs()
    );

    // Every node: each key's value is allowed by its history.
    let mut history: HashMap<String, Vec<Op>> = HashMap::new();
    let mut errors = Vec::new();
    for r in reports {
        history.extend(r.history);
        errors.extend(r.errors);
    }
    let mut keys: Vec<String> = history.keys().cloned().collect();
    keys.sort();
    let (mut acked, mut uncertain, mut noop) = (0u64, 0u64, 0u64);
    for h in history.values().flatten() {
        match h.outcome {
            Outcome::Acked => acked += 1,
            Outcome::Uncertain => uncertain += 1,
            Outcome::NoOp => noop += 1,
        }
    }
    let mut problems = Vec::new();
    for s in c.servers() {
        let got = read_all(s, &keys);
        for (k, v) in keys.iter().zip(got) {
            let (ok, last) = allowed(&history[k]);
            if ok.contains(&v) {
                continue;
            }
            let what = match (last.map(|o| o.value.is_some()), &v) {
                (Some(false), Some(_)) => "deleted key came back",
                (Some(true), _) => "acknowledged write lost",
                _ => "unexpected value",
            };
            problems.push(format!(
                "{what}: {k} on {}: {v:?}, allowed {ok:?}, last acked {last:?}, history {:?}",
                s.addr, history[k]
            ));
        }
    }
    eprintln!(
        "chaos: {:.1} s in all, {} faults {faults:?}; writes {} acked, {} uncertain, \
         {} delete no-ops, {} keys x {NODES} nodes checked; converged {:.2} s after quiet; \
         {} node starts",
        started.elapsed().as_secs_f64(),
        faults.total(),
        acked,
        uncertain,
        noop,
        keys.len(),
        converge_time.as_secs_f64(),
        c.nodes.iter().map(|n| n.starts).sum::<u64>(),
    );
    assert!(errors.is_empty(), "error replies: {errors:#?}");
    assert!(
        problems.is_empty(),
        "{} problems, the first ones:\n{}\nlogs:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n"),
        c.logs()
    );
    assert!(faults.total() > 0 && acked > 0, "nothing was tested");
}

#[test]
fn the_checker_allows_the_last_acknowledged_effect_or_a_later_uncertain_one() {
    let op = |v: Option<&str>, outcome| Op {
        value: v.map(str::to_string),
        outcome,
        node: 0,
    };
    let s = |v: &str| Some(v.to_string());
    // Nothing acknowledged: absent, or what an uncertain write did.
    let h = [op(Some("a"), Outcome::Uncertain), op(None, Outcome::NoOp)];
    assert_eq!(allowed(&h).0, vec![None, s("a")]);
    // A later acknowledged write supersedes; a later no-op delete does not.
    let h = [
        op(Some("a"), Outcome::Acked),
        op(Some("b"), Outcome::Acked),
        op(None, Outcome::NoOp),
        op(Some("c"), Outcome::Uncertain),
    ];
    assert_eq!(allowed(&h).0, vec![s("b"), s("c")]);
    // An acknowledged delete: the key must stay gone.
    let h = [op(Some("a"), Outcome::Acked), op(None, Outcome::Acked)];
    let (ok, last) = allowed(&h);
    assert_eq!(ok, vec![None]);
    assert_eq!(last.unwrap().value, None);
}
