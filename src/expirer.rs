//! The `expiry` thread: runs the store's active expiry cycle
//! ([`Store::expire_due`](crate::store::Store::expire_due), `store/expiry.rs`).
//!
//! It sleeps until the first slot of any shard's expiry index is due
//! ([`Store::next_expiry_due`](crate::store::Store::next_expiry_due)), at
//! most [`MAX_SLEEP`], then runs one pass: at most
//! [`EXPIRE_BATCH`](crate::store::expiry::EXPIRE_BATCH) entries per shard
//! lock acquisition, with a `sched_yield` between batches so that a
//! waiting worker gets the lock and the CPU. With no expiring key it
//! looks at each shard's first slot after [`MAX_SLEEP`], then backs off,
//! doubling its sleep up to [`IDLE_SLEEP`] while it still finds none (an
//! idle node: one wakeup a second, not ten). A key written meanwhile with
//! a short TTL is then found at most [`IDLE_SLEEP`] plus the index's
//! 256 ms slot after its expiry; it is invisible from its expiry on
//! regardless (lazy expiry), so only the memory waits.
//!
//! # Why a thread of its own, at normal priority
//!
//! The cycle used to run on the `housekeeping` thread, which runs at
//! nice 10 so that SHA-256 leaf refresh never competes with the workers
//! (`housekeeping.rs`). On a loaded 2-CPU box such a thread gets about a
//! tenth of a CPU: freeing a million expired values took 5–13 s of wall
//! time for ~0.75 s of CPU (perf/expiry.md). Expiry is what returns
//! memory, and its work is proportional to what clients wrote, so it runs
//! at the workers' priority; the scheduler then gives it a fair share
//! while it has work, the bounded batches and the yields keep each
//! worker's wait for a shard lock to one small batch, and it costs
//! nothing while nothing is due. (Running it on the workers instead, as
//! Redis does, would put the batches between requests of an event loop
//! that has no timer today; a separate thread keeps the workers' loop
//! unchanged.)

use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;

/// Longest sleep between two looks at the expiry index while it holds
/// entries.
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Longest sleep while the index is empty (backed off to from
/// [`MAX_SLEEP`], doubling).
pub const IDLE_SLEEP: Duration = Duration::from_secs(1);

/// Starts the `expiry` thread; it stops at shutdown.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stop = shared.shutdown.subscribe();
    std::thread::Builder::new()
        .name("expiry".into())
        .spawn(move || {
            crate::failfast::checkpoint();
            let mut idle = MAX_SLEEP;
            loop {
                let now = crate::clock::unix_millis();
                let due = shared.store.next_expiry_due();
                let sleep = sleep_until(due, now, idle);
                idle = next_idle(due, idle);
                if !sleep.is_zero() && stop.recv_timeout(sleep).is_ok() {
                    break;
                }
                if shared.shutdown.is_triggered() {
                    break;
                }
                crate::failfast::checkpoint();
                let n = shared.store.expire_due(crate::clock::unix_millis(), || {
                    std::thread::yield_now();
                    !shared.shutdown.is_triggered()
                });
                if n > 0 {
                    log::trace!("expired {n} keys");
                }
            }
        })
}

/// How long to sleep at `now_ms` when the first index entry is due at
/// `due` (None: no entry, then the current idle sleep): until then, at
/// most [`MAX_SLEEP`]; zero if it is due already.
fn sleep_until(due: Option<u64>, now_ms: u64, idle: Duration) -> Duration {
    match due {
        None => idle,
        Some(t) => Duration::from_millis(t.saturating_sub(now_ms)).min(MAX_SLEEP),
    }
}

/// The idle sleep after a look that found `due`: doubled (at most
/// [`IDLE_SLEEP`]) while the index stays empty, [`MAX_SLEEP`] again as
/// soon as it holds an entry.
fn next_idle(due: Option<u64>, idle: Duration) -> Duration {
    match due {
        None => (idle * 2).min(IDLE_SLEEP),
        Some(_) => MAX_SLEEP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_first_due_slot_at_most_the_max() {
        let idle = Duration::from_millis(400);
        assert_eq!(sleep_until(None, 1000, idle), idle);
        assert_eq!(
            sleep_until(Some(1030), 1000, idle),
            Duration::from_millis(30)
        );
        assert_eq!(sleep_until(Some(90_000), 1000, idle), MAX_SLEEP);
        assert_eq!(sleep_until(Some(0), 1000, idle), Duration::ZERO);
        assert_eq!(sleep_until(Some(1000), 1000, idle), Duration::ZERO);
    }

    #[test]
    fn backs_off_while_empty_and_resets_on_an_entry() {
        let mut idle = MAX_SLEEP;
        let mut seen = vec![];
        for _ in 0..6 {
            idle = next_idle(None, idle);
            seen.push(idle.as_millis());
        }
        assert_eq!(seen, [200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(next_idle(Some(5), idle), MAX_SLEEP);
    }
}
