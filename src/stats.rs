//! Statistics: per-worker command counters, connection registry, and the
//! exact STATS / INFO / CLIENT LIST formats of docs/protocol.md §6.
//!
//! Counters are kept per worker and summed on read. Each [`WorkerStats`] has
//! a single writer (its worker thread), so an increment is a relaxed load
//! and store — no locked read-modify-write, no shared cache line on the
//! request path. Readers (STATS from any worker) sum relaxed loads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::monitor::{Monitors, Wake};

use crate::metrics::commands::{Totals, WorkerCommands};
use crate::sync::lock;

/// Declares [`Counter`] and its STATS field names from one table of
/// `Variant => "field_name"` rows, in STATS order.
macro_rules! counters {
    ($($variant:ident => $name:literal,)*) => {
        /// A STATS counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $($variant,)*
        }

        /// STATS field names of the counters, in [`Counter`] order.
        const COUNTER_NAMES: &[&str] = &[$($name,)*];
    };
}

counters! {
    TotalCommands => "total_commands",
    Get => "get_commands",
    Scan => "scan_commands",
    Ping => "ping_commands",
    Echo => "echo_commands",
    FlushDb => "flushdb_commands",
    Memory => "memory_commands",
    ClientList => "clientlist_commands",
    Exists => "exists_commands",
    DbSize => "dbsize_commands",
    Set => "set_commands",
    Delete => "delete_commands",
    Numeric => "numeric_commands",
    String => "string_commands",
    Bulk => "bulk_commands",
    Stat => "stat_commands",
    Sync => "sync_commands",
    Hash => "hash_commands",
    Replicate => "replicate_commands",
    Management => "management_commands",
}

const COUNTERS: usize = COUNTER_NAMES.len();

/// Counters owned by one worker (single writer).
#[repr(align(128))]
pub struct WorkerStats {
    counters: [AtomicU64; COUNTERS],
    /// Busy polling (`network.busy_poll_us`): polls without sleeping that
    /// found an event, each a sleep and a wakeup saved.
    busy_poll_hits: AtomicU64,
    /// Busy polling: microseconds of polls that found nothing.
    busy_poll_idle_us: AtomicU64,
    /// Per-command calls, time, failures and latency (INFO
    /// `commandstats`, the metrics endpoint).
    pub commands: WorkerCommands,
}

impl WorkerStats {
    /// Counters for a worker, with `slots` command slots.
    pub fn new(slots: usize) -> WorkerStats {
        WorkerStats {
            counters: Default::default(),
            busy_poll_hits: AtomicU64::new(0),
            busy_poll_idle_us: AtomicU64::new(0),
            commands: WorkerCommands::new(slots),
        }
    }

    /// Increments a counter. Must only be called by the owning worker.
    #[inline]
    pub fn incr(&self, c: Counter) {
        add(&self.counters[c as usize], 1);
    }

    fn get(&self, c: usize) -> u64 {
        self.counters[c].load(Relaxed)
    }

    /// Counts one busy poll: it found an event (`hit`), or it found none
    /// and took `idle` of the worker's time. Only the owning worker calls
    /// this.
    #[inline]
    pub fn busy_poll(&self, hit: bool, idle: std::time::Duration) {
        if hit {
            add(&self.busy_poll_hits, 1);
        } else {
            add(&self.busy_poll_idle_us, idle.as_micros() as u64);
        }
    }
}

/// Adds `n` to a counter with a single writer: a relaxed load and store,
/// no locked read-modify-write.
#[inline]
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed) + n, Relaxed);
}

/// One open client connection, as CLIENT LIST shows it.
#[derive(Debug)]
pub struct ClientInfo {
    /// Connection id, counting accepted connections from 1.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// When it was accepted.
    pub connected: Instant,
    /// Milliseconds since server start of the last parsed command.
    last_cmd_ms: AtomicU64,
    /// What a RESP client said about itself (CLIENT SETNAME / SETINFO).
    meta: Mutex<ClientMeta>,
    /// The client switched to RESP3 with `HELLO 3` (nulls and maps are
    /// encoded the RESP3 way).
    resp3: AtomicBool,
    /// `CLIENT REPLY` state ([`ReplyMode`] as a byte); only the owning
    /// worker reads or writes it.
    reply_mode: AtomicU8,
    /// `CLIENT NO-EVICT on`: never chosen by client eviction
    /// (`maxmemory_clients`).
    no_evict: AtomicBool,
    /// The worker that owns the connection.
    pub worker: usize,
    /// Local (server-side) address of the connection.
    pub laddr: Option<SocketAddr>,
    /// The connection's socket descriptor (-1: none).
    pub fd: i64,
    /// `CLIENT KILL` chose this connection: its worker closes it.
    killed: AtomicBool,
    /// What `CLIENT LIST` shows of the connection's worker-owned state,
    /// as its worker last published it ([`ConnView`]).
    view: Mutex<ConnView>,
}

/// A connection's worker-owned state as `CLIENT LIST` shows it, published
/// by the owning worker after each batch of requests (and before `CLIENT
/// LIST` / `CLIENT INFO` run on the connection itself).
#[derive(Debug, Clone, Copy)]
pub struct ConnView {
    /// Full name of the last command (`client|list`), lower case.
    cmd: [u8; 40],
    cmd_len: u8,
    /// Input bytes buffered (`qbuf`) and the room left in that buffer.
    pub qbuf: usize,
    pub qbuf_free: usize,
    /// Bytes of the transaction queue (`multi-mem`); commands queued, or
    /// -1 outside `MULTI` (`multi`).
    pub multi_mem: usize,
    pub multi: i64,
    /// Keys the connection watches (`watch`).
    pub watch: usize,
    /// Channels, patterns and sharded channels subscribed to (`sub`,
    /// `psub`, `ssub`; flag `P`).
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Output buffer capacity (`rbs`, `rbp`), unsent reply bytes (`obl`),
    /// output buffer bytes beyond the capacity kept between replies (`omem`).
    pub rbs: usize,
    pub obl: usize,
    pub omem: usize,
    /// Every buffer byte the connection holds (`tot-mem`).
    pub tot_mem: usize,
    /// The connection is a monitor (flag `O`), closes after its reply
    /// (`c`); is read (`events=r`) and has output to write (`w`).
    pub monitor: bool,
    pub closing: bool,
    pub readable: bool,
    pub writable: bool,
    /// The authenticated user's index (`auth::Auth::user_name`).
    pub user: Option<usize>,
}

impl Default for ConnView {
    fn default() -> ConnView {
        ConnView {
            cmd: [0; 40],
            cmd_len: 0,
            qbuf: 0,
            qbuf_free: 0,
            multi_mem: 0,
            multi: -1,
            watch: 0,
            sub: 0,
            psub: 0,
            ssub: 0,
            rbs: 0,
            obl: 0,
            omem: 0,
            tot_mem: 0,
            monitor: false,
            closing: false,
            readable: true,
            writable: false,
            user: None,
        }
    }
}

impl ConnView {
    /// Records the full name of the last command from its first two
    /// words: `name`, and `name|sub` for commands with subcommands
    /// (`client|list`), lower case, cut at 40 bytes. True when the name
    /// differs from the one recorded before.
    pub fn set_cmd(&mut self, name: &[u8], sub: Option<&[u8]>) -> bool {
        let before = self.cmd_len;
        let mut changed = 0;
        let mut n = 0;
        for &b in name.iter().take(self.cmd.len()) {
            let b = b.to_ascii_lowercase();
            changed |= self.cmd[n] ^ b;
            self.cmd[n] = b;
            n += 1;
        }
        let container = matches!(
            &self.cmd[..n],
            b"client"
                | b"config"
                | b"command"
                | b"function"
                | b"script"
                | b"object"
                | b"pubsub"
                | b"memory"
                | b"slowlog"
                | b"module"
        );
        if let (true, Some(s)) = (container, sub) {
            for &b in std::iter::once(&b'|').chain(s) {
                if n == self.cmd.len() {
                    break;
                }
                let b = b.to_ascii_lowercase();
                changed |= self.cmd[n] ^ b;
                self.cmd[n] = b;
                n += 1;
            }
        }
        self.cmd_len = n as u8;
        changed != 0 || before != self.cmd_len
    }

    /// The connection has Pub/Sub subscriptions (type `pubsub`).
    pub fn subscribed(&self) -> bool {
        self.sub + self.psub + self.ssub > 0
    }

    /// The last command's full name (`NULL` before the first, as Redis).
    pub fn cmd(&self) -> &str {
        match std::str::from_utf8(&self.cmd[..usize::from(self.cmd_len)]) {
            Ok("") => "NULL",
            Ok(s) => s,
            Err(_) => "?",
        }
    }
}

/// The type of a client for `CLIENT LIST TYPE` / `CLIENT KILL TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// Every client connection of this server.
    Normal,
    /// Replicas, masters, Pub/Sub clients: this server has none.
    Replica,
    Master,
    PubSub,
}

impl ClientType {
    /// Parses Redis's type names (`slave` is `replica`).
    pub fn parse(v: &[u8]) -> Option<ClientType> {
        let is = |n: &str| v.eq_ignore_ascii_case(n.as_bytes());
        if is("normal") {
            Some(ClientType::Normal)
        } else if is("replica") || is("slave") {
            Some(ClientType::Replica)
        } else if is("master") {
            Some(ClientType::Master)
        } else if is("pubsub") {
            Some(ClientType::PubSub)
        } else {
            None
        }
    }
}

/// `CLIENT REPLY` state of a connection (Redis semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyMode {
    /// Replies are sent.
    On = 0,
    /// `CLIENT REPLY OFF`: every reply is dropped until `CLIENT REPLY ON`.
    Off = 1,
    /// `CLIENT REPLY SKIP`: the next command's reply is dropped.
    SkipNext = 2,
    /// The command now running had `SkipNext` set: its reply is dropped.
    Skip = 3,
}

/// A client's self-description (RESP `CLIENT SETNAME` / `CLIENT SETINFO`).
/// Each field is at most [`ClientMeta::MAX_LEN`] printable non-space ASCII
/// bytes, so it fits on a `CLIENT LIST` line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientMeta {
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
}

impl ClientMeta {
    /// Longest accepted name or library string.
    pub const MAX_LEN: usize = 256;

    /// Validates a name / library field: printable ASCII without spaces
    /// (what Redis accepts), bounded length.
    pub fn valid(v: &[u8]) -> bool {
        v.len() <= Self::MAX_LEN && v.iter().all(|&b| (b'!'..=b'~').contains(&b))
    }
}

impl ClientInfo {
    /// A connection's info in its initial state (RESP2, replies on, no
    /// name, not killed).
    fn new(
        id: u64,
        addr: SocketAddr,
        connected: Instant,
        last_cmd_ms: u64,
        worker: usize,
        laddr: Option<SocketAddr>,
        fd: i64,
    ) -> ClientInfo {
        ClientInfo {
            id,
            addr,
            connected,
            last_cmd_ms: AtomicU64::new(last_cmd_ms),
            meta: Mutex::default(),
            resp3: AtomicBool::new(false),
            reply_mode: AtomicU8::new(ReplyMode::On as u8),
            no_evict: AtomicBool::new(false),
            worker,
            laddr,
            fd,
            killed: AtomicBool::new(false),
            view: Mutex::new(ConnView::default()),
        }
    }

    /// Records activity at `ms` (milliseconds since server start).
    #[inline]
    pub fn touch(&self, ms: u64) {
        self.last_cmd_ms.store(ms, Relaxed);
    }

    /// True once the client asked for RESP3 (`HELLO 3`).
    #[inline]
    pub fn is_resp3(&self) -> bool {
        self.resp3.load(Relaxed)
    }

    /// Records the protocol version chosen with `HELLO`.
    pub fn set_resp3(&self, on: bool) {
        self.resp3.store(on, Relaxed);
    }

    /// The connection's `CLIENT REPLY` state.
    #[inline]
    pub fn reply_mode(&self) -> ReplyMode {
        match self.reply_mode.load(Relaxed) {
            1 => ReplyMode::Off,
            2 => ReplyMode::SkipNext,
            3 => ReplyMode::Skip,
            _ => ReplyMode::On,
        }
    }

    /// Changes the connection's `CLIENT REPLY` state.
    #[inline]
    pub fn set_reply_mode(&self, m: ReplyMode) {
        self.reply_mode.store(m as u8, Relaxed);
    }

    /// True after `CLIENT NO-EVICT on` (until `off` or `RESET`).
    #[inline]
    pub fn no_evict(&self) -> bool {
        self.no_evict.load(Relaxed)
    }

    pub fn set_no_evict(&self, on: bool) {
        self.no_evict.store(on, Relaxed);
    }

    /// A copy of the client's self-description.
    pub fn meta(&self) -> ClientMeta {
        lock(&self.meta).clone()
    }

    /// Changes the client's self-description.
    pub fn update_meta(&self, f: impl FnOnce(&mut ClientMeta)) {
        f(&mut lock(&self.meta));
    }

    /// The connection's published worker-owned state.
    pub fn view(&self) -> ConnView {
        *lock(&self.view)
    }

    /// Publishes the connection's worker-owned state (owning worker only).
    pub fn set_view(&self, v: &ConnView) {
        *lock(&self.view) = *v;
    }

    /// True once `CLIENT KILL` chose this connection.
    #[inline]
    pub fn is_killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    /// Seconds since the connection was accepted.
    pub fn age(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.connected).as_secs()
    }

    /// Writes this client's Redis-style `CLIENT LIST` / `CLIENT INFO` line
    /// (terminated by `\n`, as Redis does), with Redis 7.4's fields (7.0's,
    /// `watch` after `multi`, `lib-name` and `lib-ver` at the end). `user`
    /// names the connection's user.
    pub fn write_redis_line(&self, out: &mut String, now: Instant, now_ms: u64, user: &str) {
        let m = self.meta();
        let v = self.view();
        let age = self.age(now);
        let idle = now_ms.saturating_sub(self.last_cmd_ms.load(Relaxed)) / 1000;
        let mut flags = String::new();
        if v.monitor {
            flags.push('O');
        }
        if v.subscribed() {
            flags.push('P');
        }
        if v.multi >= 0 {
            flags.push('x');
        }
        if self.no_evict() {
            flags.push('e');
        }
        if v.closing {
            flags.push('c');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let events = match (v.readable, v.writable) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "",
        };
        let laddr = self.laddr.map_or_else(String::new, |a| a.to_string());
        let _ = writeln!(
            out,
            "id={} addr={} laddr={laddr} fd={} name={} age={age} idle={idle} flags={flags} db=0 \
             sub={} psub={} ssub={} multi={} watch={} qbuf={} qbuf-free={} argv-mem=0 multi-mem={} \
             rbs={} rbp={} obl={} oll=0 omem={} tot-mem={} events={events} cmd={} user={user} \
             redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.fd,
            m.name,
            v.sub,
            v.psub,
            v.ssub,
            v.multi,
            v.watch,
            v.qbuf,
            v.qbuf_free,
            v.multi_mem,
            v.rbs,
            v.rbs,
            v.obl,
            v.omem,
            v.tot_mem,
            v.cmd(),
            if self.is_resp3() { 3 } else { 2 },
            m.lib_name,
            m.lib_ver
        );
    }
}

/// What the node keeps per worker for other threads: its waker, and
/// whether `CLIENT KILL` chose one of its connections.
#[derive(Default)]
struct WorkerLink {
    waker: OnceLock<Arc<dyn Wake>>,
    kills: AtomicBool,
}

/// Process-wide statistics.
pub struct Stats {
    workers: Vec<Arc<WorkerStats>>,
    started: Instant,
    total_connections: AtomicU64,
    /// Connections refused at `max_connections`.
    rejected_connections: AtomicU64,
    /// Names of the command slots.
    command_names: &'static [String],
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    links: Vec<WorkerLink>,
    /// The `MONITOR` connections (`crate::monitor`).
    pub monitors: Monitors,
    /// The command totals at the last `CONFIG RESETSTAT` (INFO shows the
    /// counts since; see `metrics::commands`).
    baseline: Mutex<Option<Totals>>,
}

impl Stats {
    /// Statistics for `workers` worker threads, counting commands in the
    /// slots named `commands` (`metrics::names`).
    pub fn new(workers: usize, commands: &'static [String]) -> Stats {
        Stats {
            workers: (0..workers.max(1))
                .map(|_| Arc::new(WorkerStats::new(commands.len())))
                .collect(),
            command_names: commands,
            started: Instant::now(),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            clients: Mutex::new(BTreeMap::new()),
            links: (0..workers.max(1)).map(|_| WorkerLink::default()).collect(),
            monitors: Monitors::default(),
            baseline: Mutex::new(None),
        }
    }

    /// Registers worker `i`'s waker (used by `CLIENT KILL`).
    pub fn set_waker(&self, i: usize, waker: Arc<dyn Wake>) {
        if let Some(l) = self.links.get(i) {
            let _ = l.waker.set(waker);
        }
    }

    /// True (once) when `CLIENT KILL` chose connections of worker `i`
    /// since the last call: the worker then closes its killed connections.
    pub fn take_kills(&self, i: usize) -> bool {
        self.links
            .get(i)
            .is_some_and(|l| l.kills.load(Relaxed) && l.kills.swap(false, Relaxed))
    }

    /// Every open connection, ordered by id.
    pub fn clients(&self) -> Vec<Arc<ClientInfo>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// `CLIENT KILL`: marks `c` killed and removes it from the registry at
    /// once (so the counts and lists that follow no longer show it); its
    /// worker is woken to close the socket. Returns false when `c` was
    /// already killed.
    pub fn kill(&self, c: &ClientInfo) -> bool {
        if c.killed.swap(true, Relaxed) {
            return false;
        }
        lock(&self.clients).remove(&c.id);
        if let Some(l) = self.links.get(c.worker) {
            l.kills.store(true, Relaxed);
            if let Some(w) = l.waker.get() {
                w.wake();
            }
        }
        true
    }

    /// Every worker's command statistics merged, since start (the metrics
    /// endpoint: counters that only grow).
    pub fn command_totals(&self) -> Totals {
        let mut t = Totals::new(self.command_names);
        for w in &self.workers {
            w.commands.add_to(&mut t);
        }
        t
    }

    /// The command statistics since the last `CONFIG RESETSTAT` (INFO).
    pub fn command_totals_since_reset(&self) -> Totals {
        let t = self.command_totals();
        match &*lock(&self.baseline) {
            Some(base) => t.since(base),
            None => t,
        }
    }

    /// `CONFIG RESETSTAT`: INFO's command and error statistics start again
    /// from zero (the workers' counters are not written).
    pub fn reset_command_stats(&self) {
        let t = self.command_totals();
        *lock(&self.baseline) = Some(t);
    }

    /// The counters of worker `i`.
    pub fn worker(&self, i: usize) -> Arc<WorkerStats> {
        self.workers[i % self.workers.len()].clone()
    }

    /// Sum of a counter over all workers.
    pub fn sum(&self, c: Counter) -> u64 {
        self.workers.iter().map(|w| w.get(c as usize)).sum()
    }

    /// Server start.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since start.
    pub fn elapsed_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Registers a connection (without a worker or local address: tests).
    pub fn connect(&self, addr: SocketAddr, now: Instant) -> Arc<ClientInfo> {
        self.accepted(0, addr, None, -1, now)
    }

    /// Registers a connection accepted by `worker` and returns its info.
    pub fn accepted(
        &self,
        worker: usize,
        addr: SocketAddr,
        laddr: Option<SocketAddr>,
        fd: i64,
        now: Instant,
    ) -> Arc<ClientInfo> {
        let id = self.total_connections.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo::new(
            id,
            addr,
            now,
            self.elapsed_ms(now),
            worker,
            laddr,
            fd,
        ));
        lock(&self.clients).insert(id, info.clone());
        info
    }

    /// The client scripts run their commands as: id 0, address `lua`
    /// in MONITOR, never listed by `CLIENT LIST`.
    pub fn script_client(&self) -> Arc<ClientInfo> {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Arc::new(ClientInfo::new(
            0,
            unspecified,
            Instant::now(),
            0,
            usize::MAX,
            None,
            -1,
        ))
    }

    /// Removes a closed connection.
    pub fn disconnect(&self, id: u64) {
        lock(&self.clients).remove(&id);
    }

    /// Open connections.
    pub fn active_connections(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Counts a connection refused at `max_connections`.
    pub fn reject_connection(&self) {
        self.rejected_connections.fetch_add(1, Relaxed);
    }

    /// Connections refused at `max_connections` since start.
    pub fn rejected_connections(&self) -> u64 {
        self.rejected_connections.load(Relaxed)
    }

    /// Busy polling, summed over the workers: polls without sleeping that
    /// found an event, and the milliseconds of those that found none.
    pub fn busy_poll(&self) -> (u64, u64) {
        let (hits, idle_us) = self.workers.iter().fold((0, 0), |(h, i), w| {
            (
                h + w.busy_poll_hits.load(Relaxed),
                i + w.busy_poll_idle_us.load(Relaxed),
            )
        });
        (hits, idle_us / 1000)
    }

    /// Connections accepted since start.
    pub fn total_connections(&self) -> u64 {
        self.total_connections.load(Relaxed)
    }

    /// Writes the STATS reply body (after the `STATS` line).
    pub fn write_stats(&self, out: &mut String) {
        let up = self.started.elapsed().as_secs();
        let _ = write!(out, "uptime_seconds:{up}\r\nuptime:{}\r\n", uptime(up));
        let _ = write!(
            out,
            "total_connections:{}\r\nactive_connections:{}\r\n",
            self.total_connections(),
            self.active_connections()
        );
        for (i, name) in COUNTER_NAMES.iter().enumerate() {
            let v: u64 = self.workers.iter().map(|w| w.get(i)).sum();
            let _ = write!(out, "{name}:{v}\r\n");
        }
        let _ = write!(out, "used_memory_kb:{}\r\n", rss_kb());
    }

    /// Writes the CLIENT LIST lines (without the header and `END`).
    pub fn write_client_list(&self, out: &mut String, now: Instant) {
        let now_ms = self.elapsed_ms(now);
        let clients = lock(&self.clients);
        for c in clients.values() {
            let age = now.saturating_duration_since(c.connected).as_secs();
            let idle = now_ms.saturating_sub(c.last_cmd_ms.load(Relaxed)) / 1000;
            let _ = write!(out, "id={} addr={} age={age} idle={idle}\r\n", c.id, c.addr);
        }
    }
}

/// `<d>d <h>h <m>m <s>s`.
pub fn uptime(secs: u64) -> String {
    format!(
        "{}d {}h {}m {}s",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// Resident set size of this process in KiB (0 if unknown).
pub fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_has_25_fields_in_order() {
        let s = Stats::new(2, crate::metrics::names::NAMES.all());
        s.worker(0).incr(Counter::Get);
        s.worker(1).incr(Counter::Get);
        s.worker(1).incr(Counter::TotalCommands);
        let mut out = String::new();
        s.write_stats(&mut out);
        let names: Vec<&str> = out
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(names.len(), 25);
        assert_eq!(names[0], "uptime_seconds");
        assert_eq!(names[4], "total_commands");
        assert_eq!(names[24], "used_memory_kb");
        assert!(out.contains("get_commands:2\r\n"));
        assert!(out.len() < 1024);
    }

    #[test]
    fn uptime_format() {
        assert_eq!(uptime(134), "0d 0h 2m 14s");
        assert_eq!(uptime(90061), "1d 1h 1m 1s");
    }

    #[test]
    fn client_registry() {
        let s = Stats::new(1, crate::metrics::names::NAMES.all());
        let now = Instant::now();
        let a = s.connect("127.0.0.1:5000".parse().unwrap(), now);
        let b = s.connect("[::1]:6000".parse().unwrap(), now);
        assert_eq!((a.id, b.id), (1, 2));
        let mut out = String::new();
        s.write_client_list(&mut out, now);
        assert!(
            out.contains("id=2 addr=[::1]:6000 age=0 idle=0\r\n"),
            "{out}"
        );
        b.update_meta(|m| m.name = "worker-1".into());
        let mut redis = String::new();
        for c in s.clients() {
            c.write_redis_line(&mut redis, now, 0, "default");
        }
        assert!(
            redis.starts_with("id=1 addr=127.0.0.1:5000 laddr= fd=-1 name= age=0"),
            "{redis}"
        );
        assert!(
            redis.contains("id=2 addr=[::1]:6000 laddr= fd=-1 name=worker-1 "),
            "{redis}"
        );
        assert_eq!(redis.matches('\n').count(), 2);
        assert!(
            redis.contains(" flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 "),
            "{redis}"
        );
        assert!(redis.contains(" events=r cmd=NULL user=default redir=-1 resp=2 "));
        let mut v = b.view();
        assert!(v.set_cmd(b"GET", Some(b"k")));
        assert_eq!(v.cmd(), "get");
        // The same name again is no change; a longer or shorter one is.
        assert!(!v.set_cmd(b"get", Some(b"other")));
        assert!(v.set_cmd(b"getex", None));
        assert!(v.set_cmd(b"get", None));
        assert!(v.set_cmd(b"CLIENT", Some(b"List")));
        assert!(!v.set_cmd(b"client", Some(b"LIST")));
        v.monitor = true;
        b.set_view(&v);
        assert_eq!(b.view().cmd(), "client|list");
        // CLIENT KILL: gone from the registry at once, killed only once.
        assert!(s.kill(&b));
        assert!(!s.kill(&b));
        assert!(b.is_killed());
        assert!(s.take_kills(0));
        assert!(!s.take_kills(0));
        assert_eq!(s.active_connections(), 1);
        s.disconnect(2);
        assert!(ClientMeta::valid(b"redis-py"));
        assert!(!ClientMeta::valid(b"a b"));
        assert!(!ClientMeta::valid(b"a\nb"));
        s.disconnect(1);
        assert_eq!(s.active_connections(), 0);
        assert_eq!(s.total_connections(), 2);
    }
}
