//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps the chunks a program frees in its arenas for
//! reuse and returns memory to the system only from the top of the main
//! heap, so after a mass expiry, a large `DEL` or a `FLUSHALL` the
//! process's RSS stays at its peak although the memory is free: reusable
//! by the node, unusable by anything else on the machine. `malloc_trim(0)`
//! walks the arenas and releases every free page (`MADV_DONTNEED`).
//!
//! [`Trimmer`] decides when: the housekeeping thread (never a worker, and
//! never while it holds a shard lock) feeds it the store's used-memory
//! estimate every tick; once the estimate has fallen
//! `limits.heap_trim_threshold` bytes below its peak since the last trim,
//! and the last trim is at least [`MIN_INTERVAL`] ago, it trims. A trim
//! walks every arena under its lock, so a worker that allocates meanwhile
//! waits: the threshold makes each trim pay for a large release, the
//! interval bounds how often that can happen. [`TrimStats`] counts trims,
//! the RSS they returned and the time they took (INFO `heap_trims`,
//! `heap_trim_returned_kb`, `heap_trim_ms`).
//!
//! RESP `MEMORY PURGE` trims on demand through [`TrimStats::trim_now`]
//! (counted alike). On other C libraries [`trim`] does nothing and the
//! counters stay 0.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Least time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When to trim (module docs). Pure: the caller measures and trims.
#[derive(Debug)]
pub struct Trimmer {
    /// Bytes the estimate must fall below `peak` by (0: never trim).
    threshold: u64,
    /// Highest estimate since the last trim (or the start).
    peak: u64,
    /// When the last trim was, if any.
    last: Option<Instant>,
}

impl Trimmer {
    /// A trimmer with `threshold` bytes (0: never).
    pub fn new(threshold: u64) -> Trimmer {
        Trimmer {
            threshold,
            peak: 0,
            last: None,
        }
    }

    /// Changes the threshold (`CONFIG SET limits.heap_trim_threshold`).
    pub fn set_threshold(&mut self, threshold: u64) {
        self.threshold = threshold;
    }

    /// Takes the estimate `used` at `now`; true if the caller should trim
    /// now (then the peak restarts from `used`).
    pub fn due(&mut self, used: u64, now: Instant) -> bool {
        self.peak = self.peak.max(used);
        if self.threshold == 0 || self.peak - used < self.threshold {
            return false;
        }
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < MIN_INTERVAL)
        {
            return false;
        }
        self.peak = used;
        self.last = Some(now);
        true
    }
}

/// Trim counters for INFO.
#[derive(Debug, Default)]
pub struct TrimStats {
    trims: AtomicU64,
    returned_kb: AtomicU64,
    micros: AtomicU64,
}

impl TrimStats {
    /// Trims so far, RSS KiB they returned, milliseconds they took.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.trims.load(Relaxed),
            self.returned_kb.load(Relaxed),
            self.micros.load(Relaxed) / 1000,
        )
    }

    /// Trims the heap now ([`trim`]) and counts it; returns the RSS KiB
    /// it returned.
    pub fn trim_now(&self) -> u64 {
        let before = crate::stats::rss_kb();
        let t = Instant::now();
        if !trim() {
            return 0;
        }
        let micros = t.elapsed().as_micros() as u64;
        let returned = before.saturating_sub(crate::stats::rss_kb());
        self.trims.fetch_add(1, Relaxed);
        self.returned_kb.fetch_add(returned, Relaxed);
        self.micros.fetch_add(micros, Relaxed);
        log::debug!("heap trim returned {returned} KiB in {micros} µs");
        returned
    }
}

/// Returns free heap pages to the system; false where the C library has
/// no `malloc_trim` (not glibc).
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only inspects and shrinks the allocator's
        // own free lists, under the allocator's locks; any thread may
        // call it at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        true
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_drop_of_the_threshold_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Trimmer::new(100);
        assert!(!t.due(1000, t0));
        assert!(!t.due(950, t0)); // 50 below the peak
        assert!(t.due(900, t0)); // 100 below: trim, peak restarts at 900
        assert!(!t.due(850, t0));
        // 100 below the new peak, but within the interval of the last trim.
        assert!(!t.due(790, t0 + MIN_INTERVAL / 2));
        assert!(t.due(790, t0 + MIN_INTERVAL));
        // Growth then a drop back: measured from the new peak.
        assert!(!t.due(5000, t0 + 3 * MIN_INTERVAL));
        assert!(!t.due(4950, t0 + 4 * MIN_INTERVAL));
        assert!(t.due(4900, t0 + 4 * MIN_INTERVAL));
        // Threshold 0: never.
        let mut off = Trimmer::new(0);
        assert!(!off.due(1 << 40, t0));
        assert!(!off.due(0, t0 + 10 * MIN_INTERVAL));
    }

    #[test]
    fn a_trim_is_counted_on_glibc() {
        let s = TrimStats::default();
        s.trim_now();
        let (n, _, _) = s.get();
        assert_eq!(n, u64::from(cfg!(target_env = "gnu")));
    }
}
