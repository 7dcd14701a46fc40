//! Memory and output limits for clients: the shared accounting behind
//! `maxmemory`, `maxmemory_clients` and `client_output_buffer_limit`.
//!
//! * **Used memory** ([`Memory::used`]) is an estimate, not RSS (which an
//!   allocator does not give back promptly, so deleting keys would not get
//!   a full node writable again): the store's key and value bytes plus a
//!   fixed per-record overhead ([`RECORD_OVERHEAD`]), refreshed by the
//!   housekeeping thread every 100 ms ([`Memory::refresh_store`]); plus the
//!   bytes of local writes since that refresh ([`Memory::grew`], counted as
//!   growth even when they overwrite, so the estimate errs high between
//!   refreshes); plus the client buffers. Only when `maxmemory` is set do
//!   writes pay for the accounting (one relaxed atomic add).
//! * **Client buffers** ([`Memory::clients`]): every worker adds the change
//!   of each connection's buffer capacity (input, output, transaction
//!   queue) after it served the connection. When the total passes the
//!   budget, the workers holding more than their share disconnect their
//!   largest clients first (`server::worker`).
//! * The limits themselves are settings (`config`, table `limits`).
//! * **Counters** for INFO: writes refused, clients evicted, connections
//!   closed by the output limits.
//!
//! Invariant: nothing here blocks or allocates; every method is a few
//! atomic operations, callable from any thread.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::config::types::LimitsConfig;

/// Estimated bytes per live record beyond its key and value (record
/// header, hash-table slot, Merkle leaf bookkeeping, allocator rounding).
pub const RECORD_OVERHEAD: u64 = 64;

/// The refusal of a write above `maxmemory` (Redis's text; RESP sends it
/// as `-OOM …`, the text protocol as `ERROR OOM …`).
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The resolved limits (from the configuration). Those `CONFIG SET`
/// changes are the `*_at_start` values: the values in force are read from
/// [`Memory`]'s atomics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unsent reply bytes at which a connection is closed (0: none), as
    /// configured ([`Memory::output_hard`]).
    pub output_hard_at_start: usize,
    /// Unsent reply bytes a connection may stay above for at most
    /// `output_soft_time` (0: none), as configured ([`Memory::output_soft`]).
    pub output_soft_at_start: usize,
    pub output_soft_time_at_start: Duration,
    /// Used memory above which client writes are refused (0: none), as
    /// configured: `CONFIG SET` changes it at run time, so the value in
    /// force is [`Memory::maxmemory`].
    pub maxmemory_at_start: u64,
    /// Total client buffer bytes above which the largest clients are
    /// disconnected, as configured ([`Memory::clients_budget`]).
    pub clients_budget_at_start: u64,
    /// Largest RESP bulk string a client may send, as configured
    /// ([`Memory::proto_max_bulk_len`]).
    pub proto_max_bulk_len_at_start: usize,
    /// Fall of the used-memory estimate that triggers a heap trim
    /// (`heap.rs`; 0: never).
    pub heap_trim_threshold: u64,
}

impl Limits {
    /// The limits a configuration sets (docs/protocol.md §17).
    pub fn from_config(c: &LimitsConfig) -> Limits {
        Limits {
            output_hard_at_start: c.output_hard,
            output_soft_at_start: c.output_soft,
            output_soft_time_at_start: c.output_soft_time,
            maxmemory_at_start: c.maxmemory,
            clients_budget_at_start: c.maxmemory_clients,
            proto_max_bulk_len_at_start: c.proto_max_bulk_len,
            heap_trim_threshold: c.heap_trim_threshold,
        }
    }
}

/// Shared memory accounting and limit counters.
#[derive(Debug)]
pub struct Memory {
    pub limits: Limits,
    /// `maxmemory` in force (settable at run time: `CONFIG SET`).
    maxmemory: AtomicU64,
    /// `maxmemory_clients` in force (settable at run time).
    clients_budget: AtomicU64,
    /// Output limits in force: hard, soft (bytes), soft time (seconds).
    output_hard: AtomicUsize,
    output_soft: AtomicUsize,
    output_soft_secs: AtomicU64,
    /// `proto_max_bulk_len` in force.
    proto_max_bulk_len: AtomicUsize,
    /// Store bytes (estimate) at the last refresh.
    store: AtomicU64,
    /// Bytes written locally since the last refresh.
    growth: AtomicU64,
    /// Client buffer bytes, all workers.
    clients: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    output_closed: AtomicU64,
    /// Connections closed for a bulk string over `proto_max_bulk_len`.
    bulk_refused: AtomicU64,
    /// Last time (ms since start) a limit was logged, per kind.
    logged: [AtomicU64; 3],
    /// Heap trims by the housekeeping thread (`heap.rs`).
    pub trims: crate::heap::TrimStats,
}

/// What [`Memory::log_gate`] rate-limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    OutputLimit = 0,
    Evicted = 1,
    Refused = 2,
}

/// At most one log line per kind per this period.
const LOG_PERIOD_MS: u64 = 10_000;

impl Memory {
    pub fn new(limits: Limits) -> Memory {
        Memory {
            limits,
            maxmemory: AtomicU64::new(limits.maxmemory_at_start),
            clients_budget: AtomicU64::new(limits.clients_budget_at_start),
            output_hard: AtomicUsize::new(limits.output_hard_at_start),
            output_soft: AtomicUsize::new(limits.output_soft_at_start),
            output_soft_secs: AtomicU64::new(limits.output_soft_time_at_start.as_secs()),
            proto_max_bulk_len: AtomicUsize::new(limits.proto_max_bulk_len_at_start),
            store: AtomicU64::new(0),
            growth: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            output_closed: AtomicU64::new(0),
            bulk_refused: AtomicU64::new(0),
            logged: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            trims: crate::heap::TrimStats::default(),
        }
    }

    /// Estimated used memory: store + writes since the refresh + clients.
    pub fn used(&self) -> u64 {
        self.store.load(Relaxed) + self.growth.load(Relaxed) + self.clients.load(Relaxed)
    }

    /// Used memory above which client writes are refused (0: none).
    #[inline]
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Relaxed)
    }

    /// Changes `maxmemory` (`CONFIG SET maxmemory`).
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Relaxed);
    }

    /// Client buffer bytes above which the largest clients are disconnected.
    #[inline]
    pub fn clients_budget(&self) -> u64 {
        self.clients_budget.load(Relaxed)
    }

    /// Changes the client buffer budget (`CONFIG SET maxmemory-clients`).
    pub fn set_clients_budget(&self, bytes: u64) {
        self.clients_budget.store(bytes, Relaxed);
    }

    /// Unsent reply bytes at which a connection is closed (0: none).
    #[inline]
    pub fn output_hard(&self) -> usize {
        self.output_hard.load(Relaxed)
    }

    /// Unsent reply bytes a connection may stay above for at most
    /// [`Memory::output_soft_time`] (0: none).
    #[inline]
    pub fn output_soft(&self) -> usize {
        self.output_soft.load(Relaxed)
    }

    /// How long a connection may stay above the soft output limit.
    #[inline]
    pub fn output_soft_time(&self) -> Duration {
        Duration::from_secs(self.output_soft_secs.load(Relaxed))
    }

    /// Changes the output limits (`CONFIG SET client-output-buffer-limit`).
    pub fn set_output_limits(&self, hard: usize, soft: usize, soft_secs: u64) {
        self.output_hard.store(hard, Relaxed);
        self.output_soft.store(soft, Relaxed);
        self.output_soft_secs.store(soft_secs, Relaxed);
    }

    /// Largest RESP bulk string a client may send (each connection takes
    /// it when accepted, and again at its worker's next sweep).
    #[inline]
    pub fn proto_max_bulk_len(&self) -> usize {
        self.proto_max_bulk_len.load(Relaxed)
    }

    /// Changes `proto_max_bulk_len` (`CONFIG SET proto-max-bulk-len`).
    pub fn set_proto_max_bulk_len(&self, bytes: usize) {
        self.proto_max_bulk_len.store(bytes, Relaxed);
    }

    /// True when a client write must be refused ([`OOM`]).
    #[inline]
    pub fn refuse_writes(&self) -> bool {
        let max = self.maxmemory();
        max != 0 && self.used() > max
    }

    /// Counts a connection closed for a bulk string over the limit.
    pub fn count_bulk_refused(&self) {
        self.bulk_refused.fetch_add(1, Relaxed);
    }

    /// Connections closed for a bulk string over `proto_max_bulk_len`.
    pub fn bulk_refused(&self) -> u64 {
        self.bulk_refused.load(Relaxed)
    }

    /// Counts a refused write.
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// Reports a local write of `bytes` (key + value). Free without
    /// `maxmemory`.
    #[inline]
    pub fn grew(&self, bytes: usize) {
        if self.maxmemory() != 0 {
            self.growth
                .fetch_add(bytes as u64 + RECORD_OVERHEAD, Relaxed);
        }
    }

    /// Sets the store estimate from `(live records, key + value bytes)`,
    /// measured after `growth_before` (the growth read before measuring)
    /// was taken: that much growth is now part of the store figure.
    pub fn refresh_store(&self, (records, bytes): (usize, usize), growth_before: u64) {
        self.store
            .store(records as u64 * RECORD_OVERHEAD + bytes as u64, Relaxed);
        let _ = self
            .growth
            .fetch_update(Relaxed, Relaxed, |g| Some(g.saturating_sub(growth_before)));
    }

    /// The growth counter, read before a [`Memory::refresh_store`].
    pub fn growth(&self) -> u64 {
        self.growth.load(Relaxed)
    }

    /// Applies a change of client buffer bytes.
    #[inline]
    pub fn clients_changed(&self, before: usize, after: usize) {
        if after > before {
            self.clients.fetch_add((after - before) as u64, Relaxed);
        } else if before > after {
            self.clients.fetch_sub((before - after) as u64, Relaxed);
        }
    }

    /// Client buffer bytes, all workers.
    pub fn clients(&self) -> u64 {
        self.clients.load(Relaxed)
    }

    /// True when client buffers exceed their budget.
    #[inline]
    pub fn clients_over_budget(&self) -> bool {
        self.clients() > self.clients_budget()
    }

    pub fn count_evicted(&self) {
        self.evicted.fetch_add(1, Relaxed);
    }

    pub fn count_output_closed(&self) {
        self.output_closed.fetch_add(1, Relaxed);
    }

    /// `(refused writes, evicted clients, output-limit disconnections)`.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.refused.load(Relaxed),
            self.evicted.load(Relaxed),
            self.output_closed.load(Relaxed),
        )
    }

    /// True when a line about `kind` may be logged now (`now_ms`: any
    /// monotonic milliseconds): at most one per kind per 10 s, so a flood
    /// of limit hits cannot flood the log. The counters say how many.
    pub fn log_gate(&self, kind: LogKind, now_ms: u64) -> bool {
        let slot = &self.logged[kind as usize];
        let last = slot.load(Relaxed);
        (last == u64::MAX || now_ms >= last + LOG_PERIOD_MS)
            && slot
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(maxmemory: u64) -> Limits {
        Limits::from_config(&LimitsConfig {
            maxmemory,
            maxmemory_clients: 1 << 20,
            output_hard: 0,
            output_soft: 0,
            output_soft_time: Duration::ZERO,
            proto_max_bulk_len: 8 << 20,
            heap_trim_threshold: 0,
        })
    }

    #[test]
    fn output_and_bulk_limits_change_at_run_time() {
        let m = Memory::new(limits(0));
        assert_eq!((m.output_hard(), m.output_soft()), (0, 0));
        assert_eq!(m.proto_max_bulk_len(), 8 << 20);
        m.set_output_limits(1000, 500, 3);
        m.set_proto_max_bulk_len(4096);
        assert_eq!((m.output_hard(), m.output_soft()), (1000, 500));
        assert_eq!(m.output_soft_time(), Duration::from_secs(3));
        assert_eq!(m.proto_max_bulk_len(), 4096);
        assert_eq!(m.limits.proto_max_bulk_len_at_start, 8 << 20);
    }

    #[test]
    fn writes_are_refused_above_maxmemory_only() {
        let m = Memory::new(limits(10_000));
        assert!(!m.refuse_writes());
        m.refresh_store((10, 8_000), 0);
        assert_eq!(m.used(), 10 * RECORD_OVERHEAD + 8_000);
        assert!(!m.refuse_writes());
        // Writes since the refresh count until the next one.
        m.grew(1_500);
        assert!(m.refuse_writes());
        let g = m.growth();
        m.refresh_store((10, 8_000), g);
        assert!(!m.refuse_writes());
        // Client buffers count too.
        m.clients_changed(0, 2_000);
        assert!(m.refuse_writes());
        m.clients_changed(2_000, 100);
        assert_eq!(m.clients(), 100);
        assert!(!m.refuse_writes());
        // Unlimited: never refused, and growth is not even counted.
        let u = Memory::new(limits(0));
        u.grew(1 << 40);
        assert_eq!(u.used(), 0);
        assert!(!u.refuse_writes());
        // Changed at run time.
        u.clients_changed(0, 5_000);
        u.set_maxmemory(4_000);
        assert_eq!(u.maxmemory(), 4_000);
        assert!(u.refuse_writes());
        u.set_maxmemory(0);
        assert!(!u.refuse_writes());
        assert!(!u.clients_over_budget());
        u.set_clients_budget(4_000);
        assert_eq!(u.clients_budget(), 4_000);
        assert!(u.clients_over_budget());
    }

    #[test]
    fn growth_during_a_refresh_is_kept() {
        let m = Memory::new(limits(1 << 20));
        m.grew(100);
        let before = m.growth();
        m.grew(50); // arrives while the store is measured
        m.refresh_store((1, 100), before);
        assert_eq!(m.growth(), 50 + RECORD_OVERHEAD);
    }

    #[test]
    fn log_gate_lets_one_line_per_period() {
        let m = Memory::new(limits(0));
        assert!(m.log_gate(LogKind::Evicted, 0));
        assert!(!m.log_gate(LogKind::Evicted, 5_000));
        assert!(m.log_gate(LogKind::OutputLimit, 5_000));
        assert!(m.log_gate(LogKind::Evicted, 10_000));
        assert!(!m.log_gate(LogKind::Evicted, 19_999));
    }
}
