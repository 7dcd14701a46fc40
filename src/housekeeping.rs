//! The housekeeping thread: background maintenance of the store.
//!
//! Every `DIGEST_REFRESH_PERIOD` (100 ms) while there is work it
//! rehashes stale Merkle leaves, in small paced chunks, so that tree reads
//! (HASH, anti-entropy) find little to do (among them the leaves that
//! expiry's conversions leave stale; the active expiry cycle itself runs
//! on the `expiry` thread at normal priority, `expirer.rs`); every
//! `tombstone_ttl / 4` (clamped to 100 ms … 60 s) it collects expired
//! tombstones; every tick it refreshes the used-memory estimate
//! (`limits::Memory`) and, when that estimate fell far enough below its
//! peak, returns free heap memory to the system (`heap.rs`; here, with no
//! shard lock held, never on a worker). It runs at nice 10 (see
//! `lower_priority` for why not `SCHED_IDLE`).

use std::sync::Arc;

use crate::state::Shared;

/// How often the housekeeping thread rehashes stale Merkle leaves, so that
/// tree reads (HASH, anti-entropy) find little to do and hold each shard
/// lock only briefly (see `store/mod.rs`, "Lazy leaf digests").
const DIGEST_REFRESH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// Longest sleep of an idle housekeeping thread (see "Idle backoff").
const IDLE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Sleep between two refresh chunks of the background refresher.
const REFRESH_PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// Background maintenance: Merkle leaf refresh (every
/// `DIGEST_REFRESH_PERIOD`) and tombstone collection.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stop = shared.shutdown.subscribe();
    let ttl = shared.config.tombstone_ttl;
    let period = (ttl / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    std::thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || {
            lower_priority();
            let mut next_gc = std::time::Instant::now() + period;
            let mut sleep = DIGEST_REFRESH_PERIOD;
            let mut last_usage = (usize::MAX, usize::MAX);
            let mut trimmer = crate::heap::Trimmer::new(shared.live.heap_trim_threshold());
            loop {
                let until_gc = next_gc.saturating_duration_since(std::time::Instant::now());
                if stop.recv_timeout(sleep.min(until_gc)).is_ok() {
                    break;
                }
                crate::failfast::checkpoint();
                keep_contact(&shared);
                // Used-memory estimate for `maxmemory` and INFO.
                let growth = shared.memory.growth();
                let usage = shared.store.usage();
                shared.memory.refresh_store(usage, growth);
                trimmer.set_threshold(shared.live.heap_trim_threshold());
                if trimmer.due(shared.memory.used(), std::time::Instant::now()) {
                    shared.memory.trims.trim_now();
                }
                // Chunks of ≤ 256 records (~0.1-0.2 ms of work), each
                // followed by a short sleep: one long burst per tick
                // measurably raised the workers' p99 on a busy machine.
                let refreshed = shared.store.refresh_digests_paced(|| {
                    std::thread::sleep(REFRESH_PAUSE);
                    !shared.shutdown.is_triggered()
                });
                // (Expiry's conversions change `usage` and leave stale
                // leaves, so a tick during a mass expiry counts as busy.)
                let busy = refreshed > 0 || growth > 0 || usage != last_usage;
                last_usage = usage;
                sleep = next_sleep(sleep, busy);
                if std::time::Instant::now() >= next_gc {
                    let (n, _) = shared.store.collect_tombstones(crate::clock::unix_millis());
                    if n > 0 {
                        log::debug!("collected {n} tombstones");
                    }
                    next_gc = std::time::Instant::now() + period;
                }
            }
        })
}

/// The sleep after a tick: [`DIGEST_REFRESH_PERIOD`] after a tick that
/// found work, else the previous sleep doubled, at most [`IDLE_PERIOD`].
fn next_sleep(prev: std::time::Duration, busy: bool) -> std::time::Duration {
    if busy {
        DIGEST_REFRESH_PERIOD
    } else {
        (prev * 2).min(IDLE_PERIOD)
    }
}

/// Records contact while the broker session is up, latches the stale
/// state when the last contact is older than `tombstone_ttl`, and keeps
/// the contact file current (`contact.rs`).
fn keep_contact(shared: &Shared) {
    let c = &shared.contact;
    if !c.is_member() {
        return;
    }
    let now = crate::clock::unix_millis();
    if shared.outbox.metrics.state() == crate::replication::BrokerState::Connected {
        c.touch(now);
    }
    c.check(now);
    if let Err(e) = c.persist(false) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!("cannot record the last cluster contact: {e}");
        }
    }
}

/// Lowers the calling thread's priority to nice [`HOUSEKEEPING_NICE`], so
/// that background digest refresh and tombstone collection yield the CPU
/// to the workers when both want it.
///
/// Not `SCHED_IDLE`: that was tried and measured. The housekeeping thread
/// holds a shard lock (briefly) and a shard's refresh mutex (while hashing
/// a chunk), which tree readers (HASH, anti-entropy) and writers wait for.
/// An idle-class thread on a saturated machine gets almost no CPU while
/// holding them, so a worker waited for seconds on it (priority inversion;
/// a HASH took over 10 s with both cores busy). At nice 10 the thread still
/// gets about a tenth of a contended core, which bounds such a wait to a
/// few times the ~1 ms a chunk takes.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; `gettid` cannot fail
    // and `setpriority` on our own thread id only affects this thread.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, HOUSEKEEPING_NICE)
    };
    if rc != 0 {
        log::debug!(
            "housekeeping: cannot lower priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Nice value of the housekeeping thread (see [`lower_priority`]).
const HOUSEKEEPING_NICE: libc::c_int = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_ticks_back_off_to_the_idle_period_and_work_resets_them() {
        let mut s = DIGEST_REFRESH_PERIOD;
        let mut seen = vec![s];
        for _ in 0..6 {
            s = next_sleep(s, false);
            seen.push(s);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(next_sleep(IDLE_PERIOD, true), DIGEST_REFRESH_PERIOD);
    }
}
