//! `merklekv-bench`: a load generator for MerkleKV (text protocol or RESP)
//! and any RESP server such as redis-server.
//!
//! Design: `--threads` threads, each running one `mio` event loop over its
//! share of the `--clients` connections (no thread per connection, no async
//! runtime), so the generator's own CPU use stays low and it can saturate a
//! server on the same small machine. Each connection works in batches like
//! redis-benchmark's `-P`: it writes `--pipeline` requests in one `write`,
//! reads until all their replies arrived, then sends the next batch. The
//! latency of a request is the time from its batch's write to the read
//! that completed its reply (one clock read per `read`, not per reply).
//!
//! Requests alternate SET and GET by `--ratio S:G` (deterministically, so
//! every run sends the same mix); keys are `key:<n>` zero-padded to the
//! key space's width, chosen uniformly at random (xorshift) or
//! sequentially. Latencies go into an HDR histogram per thread, merged at
//! the end. The report ends with the generator's own CPU time (from
//! `/proc/self/stat`), so its overhead is visible next to the result.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
usage: merklekv-bench [options]
  --host H            server host (default 127.0.0.1)
  --port P            server port (default 7379)
  --protocol text|resp  wire protocol (default resp)
  --clients N         connections in total (default 50)
  --threads N         generator threads (default 1)
  --pipeline N        requests per batch per connection (default 1)
  --requests N        total requests (default 100000)
  --duration SECS     run for this long instead of a request count
  --ratio S:G         SET:GET mix (default 1:10)
  --keyspace N        number of distinct keys (default 100000)
  --pattern uniform|sequential  key choice (default uniform)
  --value-size N      bytes per SET value (default 32)
  --json              print one JSON object instead of the text report
  -h, --help          this text";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Text,
    Resp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Uniform,
    Sequential,
}

/// Resolved command line.
#[derive(Debug, Clone)]
struct Opts {
    addr: SocketAddr,
    proto: Proto,
    clients: usize,
    threads: usize,
    pipeline: usize,
    requests: u64,
    duration: Option<Duration>,
    sets: u64,
    gets: u64,
    keyspace: u64,
    pattern: Pattern,
    value_size: usize,
    json: bool,
}

/// Errors of the command line or the run.
#[derive(Debug)]
enum BenchError {
    Usage(String),
    Connect(SocketAddr, io::Error),
    Io(io::Error),
    /// The server sent something that is not a reply of the protocol.
    Protocol(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}\n{USAGE}"),
            BenchError::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            BenchError::Io(e) => write!(f, "i/o error: {e}"),
            BenchError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        BenchError::Io(e)
    }
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, BenchError> {
    let usage = |m: String| BenchError::Usage(m);
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 7379;
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 7379)),
        proto: Proto::Resp,
        clients: 50,
        threads: 1,
        pipeline: 1,
        requests: 100_000,
        duration: None,
        sets: 1,
        gets: 10,
        keyspace: 100_000,
        pattern: Pattern::Uniform,
        value_size: 32,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(None);
        }
        if a == "--json" {
            o.json = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| usage(format!("{a} needs a value")))?;
        let num = |v: &str| -> Result<u64, BenchError> {
            v.parse::<u64>()
                .map_err(|_| usage(format!("{a}: not a number: {v}")))
        };
        let pos = |v: &str| -> Result<u64, BenchError> {
            match num(v)? {
                0 => Err(usage(format!("{a} must be at least 1"))),
                n => Ok(n),
            }
        };
        match a.as_str() {
            "--host" => host = v.clone(),
            "--port" => {
                port = v
                    .parse()
                    .map_err(|_| usage(format!("--port: not a port: {v}")))?
            }
            "--protocol" => {
                o.proto = match v.as_str() {
                    "text" => Proto::Text,
                    "resp" => Proto::Resp,
                    _ => return Err(usage(format!("--protocol: text or resp, not {v}"))),
                }
            }
            "--clients" => o.clients = pos(v)? as usize,
            "--threads" => o.threads = pos(v)? as usize,
            "--pipeline" => o.pipeline = pos(v)? as usize,
            "--requests" => o.requests = pos(v)?,
            "--duration" => {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| usage(format!("--duration: not a positive number: {v}")))?;
                o.duration = Some(Duration::from_secs_f64(secs));
            }
            "--ratio" => {
                let (s, g) = v
                    .split_once(':')
                    .ok_or_else(|| usage(format!("--ratio: expected S:G, got {v}")))?;
                o.sets = num(s)?;
                o.gets = num(g)?;
                if o.sets + o.gets == 0 {
                    return Err(usage("--ratio: both sides are 0".into()));
                }
            }
            "--keyspace" => o.keyspace = pos(v)?,
            "--pattern" => {
                o.pattern = match v.as_str() {
                    "uniform" | "R" => Pattern::Uniform,
                    "sequential" | "S" => Pattern::Sequential,
                    _ => return Err(usage(format!("--pattern: uniform or sequential, not {v}"))),
                }
            }
            "--value-size" => o.value_size = num(v)? as usize,
            _ => return Err(usage(format!("unknown option {a}"))),
        }
    }
    if o.pipeline > 1 << 16 || o.clients > 1 << 16 || o.value_size > 1 << 20 {
        return Err(usage(
            "--pipeline/--clients ≤ 65536, --value-size ≤ 1 MiB".into(),
        ));
    }
    if o.proto == Proto::Text && o.value_size == 0 {
        return Err(usage("the text protocol cannot send empty values".into()));
    }
    o.threads = o.threads.min(o.clients);
    o.addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| usage(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| usage(format!("cannot resolve {host}")))?;
    Ok(Some(o))
}

// ---- reply framing ------------------------------------------------------------

/// What one reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// A value (or `OK`, an integer, …).
    Value,
    /// A missing key (`$-1`, `_`, `NOT_FOUND`).
    Miss,
    /// An error reply.
    Error,
}

fn line(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf).map(|i| i + 1)
}

fn resp_int(digits: &[u8]) -> Result<i64, BenchError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.trim_end().parse().ok())
        .ok_or_else(|| {
            BenchError::Protocol(format!("bad length {:?}", String::from_utf8_lossy(digits)))
        })
}

/// Frames one RESP reply at the front of `buf`: `Ok(None)` if incomplete.
fn resp_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, BenchError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = line(buf) else {
        return Ok(None);
    };
    let head = &buf[1..end.saturating_sub(2).max(1)];
    match t {
        b'+' | b':' | b',' | b'#' | b'(' => Ok(Some((Reply::Value, end))),
        b'-' => Ok(Some((Reply::Error, end))),
        b'_' => Ok(Some((Reply::Miss, end))),
        b'$' | b'=' => {
            let n = resp_int(head)?;
            if n < 0 {
                return Ok(Some((Reply::Miss, end)));
            }
            let total = end + n as usize + 2;
            Ok((buf.len() >= total).then_some((Reply::Value, total)))
        }
        b'*' | b'%' | b'~' => {
            let n = resp_int(head)?;
            if n < 0 {
                return Ok(Some((Reply::Miss, end)));
            }
            let items = if t == b'%' { 2 * n } else { n };
            let mut pos = end;
            for _ in 0..items {
                match resp_reply(&buf[pos..])? {
                    Some((_, used)) => pos += used,
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Value, pos)))
        }
        _ => Err(BenchError::Protocol(format!(
            "unexpected reply byte {:?}",
            t as char
        ))),
    }
}

/// Frames one text-protocol reply (one line for SET and GET).
fn text_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let end = line(buf)?;
    let l = &buf[..end];
    let r = if l.starts_with(b"ERROR") {
        Reply::Error
    } else if l.starts_with(b"NOT_FOUND") {
        Reply::Miss
    } else {
        Reply::Value
    };
    Some((r, end))
}

// ---- request generation ----------------------------------------------------------

/// Builds requests for one connection.
struct Gen {
    proto: Proto,
    sets: u64,
    cycle: u64,
    n: u64,
    rng: u64,
    seq: u64,
    keyspace: u64,
    width: usize,
    pattern: Pattern,
    value: Vec<u8>,
    key: Vec<u8>,
}

impl Gen {
    fn new(o: &Opts, conn: usize) -> Gen {
        Gen {
            proto: o.proto,
            sets: o.sets,
            cycle: o.sets + o.gets,
            // Stagger the SET/GET phase across connections.
            n: conn as u64,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (conn as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            seq: (conn as u64).wrapping_mul(o.keyspace / o.clients.max(1) as u64) % o.keyspace,
            keyspace: o.keyspace,
            width: (o.keyspace - 1).max(1).ilog10() as usize + 1,
            pattern: o.pattern,
            value: (0..o.value_size)
                .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
                .collect(),
            key: Vec::with_capacity(32),
        }
    }

    fn next_key(&mut self) -> u64 {
        match self.pattern {
            Pattern::Uniform => {
                // xorshift64*
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.keyspace
            }
            Pattern::Sequential => {
                let k = self.seq;
                self.seq = (self.seq + 1) % self.keyspace;
                k
            }
        }
    }

    /// Appends one request to `out`; returns true for a SET.
    fn push(&mut self, out: &mut Vec<u8>) -> bool {
        let set = self.n % self.cycle < self.sets;
        self.n += 1;
        let k = self.next_key();
        self.key.clear();
        self.key.extend_from_slice(b"key:");
        let digits = itoa::Buffer::new().format(k).len();
        self.key
            .extend(std::iter::repeat_n(b'0', self.width.saturating_sub(digits)));
        self.key
            .extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
        let mut len = itoa::Buffer::new();
        match (self.proto, set) {
            (Proto::Text, true) => {
                out.extend_from_slice(b"SET ");
                out.extend_from_slice(&self.key);
                out.push(b' ');
                out.extend_from_slice(&self.value);
                out.extend_from_slice(b"\r\n");
            }
            (Proto::Text, false) => {
                out.extend_from_slice(b"GET ");
                out.extend_from_slice(&self.key);
                out.extend_from_slice(b"\r\n");
            }
            (Proto::Resp, true) => {
                out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$");
                out.extend_from_slice(len.format(self.key.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.key);
                out.extend_from_slice(b"\r\n$");
                out.extend_from_slice(len.format(self.value.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.value);
                out.extend_from_slice(b"\r\n");
            }
            (Proto::Resp, false) => {
                out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$");
                out.extend_from_slice(len.format(self.key.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.key);
                out.extend_from_slice(b"\r\n");
            }
        }
        set
    }
}

// ---- one thread ----------------------------------------------------------------------

/// Counts of one thread (merged at the end).
struct Tally {
    hist: Histogram<u64>,
    sets: u64,
    gets: u64,
    misses: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 µs .. 60 s at 3 significant digits (values in µs).
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            sets: 0,
            gets: 0,
            misses: 0,
            errors: 0,
            first_error: None,
        }
    }
}

struct Conn {
    sock: TcpStream,
    reqs: Gen,
    out: Vec<u8>,
    wpos: usize,
    inbuf: Vec<u8>,
    /// Replies still expected for the current batch, and whether each of
    /// its requests was a SET (to count GET hits and misses).
    kinds: Vec<bool>,
    next_reply: usize,
    batch_start: Instant,
    /// Requests this connection may still send (request-count mode).
    left: u64,
    done: bool,
}

fn run_thread(o: &Opts, conns_ids: Vec<usize>, quota: Vec<u64>) -> Result<Tally, BenchError> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(conns_ids.len());
    for (i, (&id, &left)) in conns_ids.iter().zip(&quota).enumerate() {
        let std =
            std::net::TcpStream::connect(o.addr).map_err(|e| BenchError::Connect(o.addr, e))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(std);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn {
            sock,
            reqs: Gen::new(o, id),
            out: Vec::with_capacity(o.pipeline * (o.value_size + 64)),
            wpos: 0,
            inbuf: Vec::with_capacity(64 << 10),
            kinds: Vec::with_capacity(o.pipeline),
            next_reply: 0,
            batch_start: Instant::now(),
            left,
            done: left == 0,
        });
    }
    let mut tally = Tally::new();
    let deadline = o.duration.map(|d| Instant::now() + d);
    let mut active = conns.iter().filter(|c| !c.done).count();
    for c in conns.iter_mut().filter(|c| !c.done) {
        start_batch(o, c, deadline);
        flush(c)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 << 10];
    while active > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(30)))?;
        if events.is_empty() {
            return Err(BenchError::Protocol("no reply for 30 s".into()));
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.done {
                continue;
            }
            if ev.is_writable() {
                flush(c)?;
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            loop {
                match c.sock.read(&mut scratch) {
                    Ok(0) => {
                        return Err(BenchError::Protocol("server closed the connection".into()));
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        c.inbuf.extend_from_slice(&scratch[..n]);
                        if consume(o, c, &mut tally, now)? {
                            if batch_finished(o, c, deadline, now) {
                                c.done = true;
                                active -= 1;
                                break;
                            }
                            start_batch(o, c, deadline);
                            flush(c)?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(tally)
}

/// True when the connection sends no further batch.
fn batch_finished(_o: &Opts, c: &Conn, deadline: Option<Instant>, now: Instant) -> bool {
    match deadline {
        Some(d) => now >= d,
        None => c.left == 0,
    }
}

fn start_batch(o: &Opts, c: &mut Conn, deadline: Option<Instant>) {
    let n = match deadline {
        Some(_) => o.pipeline as u64,
        None => c.left.min(o.pipeline as u64),
    };
    c.left = c.left.saturating_sub(n);
    c.out.clear();
    c.wpos = 0;
    c.kinds.clear();
    c.next_reply = 0;
    for _ in 0..n {
        let set = c.reqs.push(&mut c.out);
        c.kinds.push(set);
    }
    c.batch_start = Instant::now();
}

fn flush(c: &mut Conn) -> Result<(), BenchError> {
    while c.wpos < c.out.len() {
        match c.sock.write(&c.out[c.wpos..]) {
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Takes the complete replies out of `c.inbuf`; true when the batch is
/// fully answered.
fn consume(o: &Opts, c: &mut Conn, t: &mut Tally, now: Instant) -> Result<bool, BenchError> {
    let mut pos = 0;
    let lat = now.duration_since(c.batch_start).as_micros().max(1) as u64;
    while c.next_reply < c.kinds.len() {
        let r = match o.proto {
            Proto::Resp => resp_reply(&c.inbuf[pos..])?,
            Proto::Text => text_reply(&c.inbuf[pos..]),
        };
        let Some((reply, used)) = r else { break };
        let was_set = c.kinds[c.next_reply];
        if reply == Reply::Error && t.first_error.is_none() {
            let end = line(&c.inbuf[pos..]).unwrap_or(used);
            t.first_error = Some(
                String::from_utf8_lossy(&c.inbuf[pos..pos + end])
                    .trim()
                    .into(),
            );
        }
        pos += used;
        c.next_reply += 1;
        t.hist.saturating_record(lat);
        match reply {
            Reply::Error => t.errors += 1,
            Reply::Miss if !was_set => t.misses += 1,
            _ => {}
        }
        if was_set {
            t.sets += 1;
        } else {
            t.gets += 1;
        }
    }
    c.inbuf.drain(..pos);
    if c.next_reply == c.kinds.len() && !c.inbuf.is_empty() {
        return Err(BenchError::Protocol(format!(
            "{} unexpected bytes after the replies",
            c.inbuf.len()
        )));
    }
    Ok(c.next_reply == c.kinds.len())
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at ')'.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux configuration in use.
    Some(Duration::from_millis(ticks * 10))
}

fn run(o: &Opts) -> Result<(), BenchError> {
    // Split connections over threads, and requests over connections.
    let per_conn = o.requests / o.clients as u64;
    let extra = (o.requests % o.clients as u64) as usize;
    let mut plans: Vec<(Vec<usize>, Vec<u64>)> = vec![(Vec::new(), Vec::new()); o.threads];
    for id in 0..o.clients {
        let quota = if o.duration.is_some() {
            u64::MAX
        } else {
            per_conn + u64::from(id < extra)
        };
        plans[id % o.threads].0.push(id);
        plans[id % o.threads].1.push(quota);
    }
    let cpu0 = cpu_time();
    let start = Instant::now();
    let results: Vec<Result<Tally, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .into_iter()
            .map(|(ids, quota)| s.spawn(move || run_thread(o, ids, quota)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Protocol("thread panicked".into())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    let mut total = Tally::new();
    for r in results {
        let t = r?;
        total
            .hist
            .add(&t.hist)
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
        total.sets += t.sets;
        total.gets += t.gets;
        total.misses += t.misses;
        total.errors += t.errors;
        total.first_error = total.first_error.or(t.first_error);
    }
    report(o, &total, elapsed, cpu);
    if total.errors > 0 {
        return Err(BenchError::Protocol(format!(
            "{} error replies, first: {}",
            total.errors,
            total.first_error.unwrap_or_default()
        )));
    }
    Ok(())
}

fn report(o: &Opts, t: &Tally, elapsed: Duration, cpu: Option<Duration>) {
    let n = t.sets + t.gets;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ops = n as f64 / secs;
    let h = &t.hist;
    let (p50, p99, p999, max) = (
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    );
    let cpu_s = cpu.map_or(f64::NAN, |c| c.as_secs_f64());
    let proto = match o.proto {
        Proto::Text => "text",
        Proto::Resp => "resp",
    };
    if o.json {
        println!(
            "{{\"protocol\":\"{proto}\",\"clients\":{},\"threads\":{},\"pipeline\":{},\"requests\":{n},\"seconds\":{secs:.3},\"ops_per_sec\":{ops:.0},\"sets\":{},\"gets\":{},\"misses\":{},\"errors\":{},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"max_us\":{max},\"client_cpu_s\":{cpu_s:.2}}}",
            o.clients, o.threads, o.pipeline, t.sets, t.gets, t.misses, t.errors
        );
        return;
    }
    println!(
        "merklekv-bench: {proto} {}, {} clients on {} thread(s), pipeline {}, SET:GET {}:{}, {} keys {}, {}-byte values",
        o.addr,
        o.clients,
        o.threads,
        o.pipeline,
        o.sets,
        o.gets,
        o.keyspace,
        match o.pattern {
            Pattern::Uniform => "uniform",
            Pattern::Sequential => "sequential",
        },
        o.value_size
    );
    println!(
        "{n} requests in {secs:.2} s: {ops:.0} ops/s (SET {}, GET {}: {} misses; {} errors)",
        t.sets, t.gets, t.misses, t.errors
    );
    println!("latency µs: p50 {p50}  p99 {p99}  p99.9 {p999}  max {max}");
    if let Some(c) = cpu {
        let c = c.as_secs_f64();
        println!(
            "generator CPU: {c:.2} s = {:.0}% of one core ({:.2} µs per request)",
            100.0 * c / secs,
            1e6 * c / n.max(1) as f64
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_replies_frame_at_every_split() {
        let buf = b"+OK\r\n$5\r\nhello\r\n$-1\r\n:12\r\n-ERR x\r\n*2\r\n$1\r\na\r\n$-1\r\n_\r\n";
        let want = [
            Reply::Value,
            Reply::Value,
            Reply::Miss,
            Reply::Value,
            Reply::Error,
            Reply::Value,
            Reply::Miss,
        ];
        let mut pos = 0;
        for w in want {
            let rest = &buf[pos..];
            let (r, n) = resp_reply(rest).unwrap().unwrap();
            assert_eq!(r, w);
            for cut in 0..n {
                assert_eq!(resp_reply(&rest[..cut]).unwrap(), None, "cut {cut}");
            }
            pos += n;
        }
        assert_eq!(pos, buf.len());
        assert!(resp_reply(b"?\r\n").is_err());
    }

    #[test]
    fn text_replies() {
        assert_eq!(text_reply(b"OK\r\n"), Some((Reply::Value, 4)));
        assert_eq!(text_reply(b"NOT_FOUND\r\nOK"), Some((Reply::Miss, 11)));
        assert_eq!(text_reply(b"ERROR x\r\n"), Some((Reply::Error, 9)));
        assert_eq!(text_reply(b"VALUE abc"), None);
    }

    #[test]
    fn generator_mix_and_keys() {
        let args: Vec<String> = [
            "--ratio",
            "1:3",
            "--keyspace",
            "1000",
            "--clients",
            "1",
            "--protocol",
            "text",
            "--pattern",
            "sequential",
            "--value-size",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse_args(&args).unwrap().unwrap();
        let mut g = Gen::new(&o, 0);
        let mut out = Vec::new();
        let sets: Vec<bool> = (0..8).map(|_| g.push(&mut out)).collect();
        assert_eq!(sets, [true, false, false, false, true, false, false, false]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("SET key:000 abc\r\nGET key:001\r\n"),
            "{text}"
        );
        assert!(parse_args(&["--clients".to_string(), "0".to_string()]).is_err());
        assert!(parse_args(&["--bogus".to_string(), "1".to_string()]).is_err());
    }
}
