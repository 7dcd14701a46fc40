//! The script gate: a running script sees the keyspace alone, and the
//! workers stay responsive while it runs.
//!
//! A script runs on the script thread (`script::engine`), not on a worker,
//! so that the worker keeps serving its other connections (one of them may
//! send `SCRIPT KILL`). Isolation comes from two things:
//!
//! * **The gate.** Before it runs a script the engine *closes* the gate:
//!   it sets `state` to `RUNNING`, then waits until no worker is *inside*
//!   (each worker has its own `inside` flag, set for the duration of one
//!   batch of requests of one connection). A worker *enters* before it
//!   runs requests: it sets its flag, then reads `state`; if a script runs
//!   it clears the flag again and does not touch the keyspace. Both sides
//!   store then load with `SeqCst` (Dekker's pattern): either the worker
//!   sees `RUNNING`, or the engine sees the worker inside and waits for
//!   its batch to end. So while the gate is closed no worker runs a
//!   command that reads or writes keys.
//! * **The exclusive hold.** The engine then runs the script inside
//!   `Store::exclusive`, like `EXEC`: replication, anti-entropy and the
//!   expiry thread wait on the shard locks until it ends.
//!
//! A worker that finds the gate closed waits (the whole worker, like every
//! client of a single-threaded Redis) until the script ends or has run
//! for `busy-reply-threshold`; from then on the script is *busy* and the
//! worker answers `-BUSY …` to every request except the few that touch no
//! key ([`allowed_while_busy`](super::allowed_while_busy)): `SCRIPT KILL`,
//! `FUNCTION KILL|STATS`, `SHUTDOWN`, `MULTI`, `DISCARD`, …
//!
//! Invariants: `inside[w]` is written only by worker `w`; `state` is
//! written only by the engine thread (and by the Lua hook on that thread);
//! a worker that saw `state != IDLE` after setting its flag never touches
//! the keyspace until it has entered again. A worker that panics with its
//! flag set would stop the next script forever, but a worker panic stops
//! the node anyway (`crate::failfast`).

use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// No script runs.
const IDLE: u8 = 0;
/// A script runs, for less than the busy threshold.
const RUNNING: u8 = 1;
/// A script has run for longer than the busy threshold.
const BUSY: u8 = 2;

/// One worker's flag, alone on its cache line (only its worker writes it).
#[repr(align(64))]
#[derive(Default)]
struct Inside(AtomicBool);

/// What a worker that found the gate closed may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The script ended meanwhile: enter again.
    Ended,
    /// The script is busy: answer `-BUSY` (or run an allowed command).
    Busy,
}

/// Whether the running script may still be killed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Kill requested; the script stops at its next hook call.
    Requested,
    /// No script runs (`-NOTBUSY`).
    NotBusy,
    /// The script wrote: killing it would break its atomicity.
    Unkillable,
    /// `SCRIPT KILL` of a function, or `FUNCTION KILL` of an `EVAL`.
    WrongKind,
}

/// The gate between the workers and the script thread (module docs).
pub struct Gate {
    state: AtomicU8,
    inside: Box<[Inside]>,
    /// The running script is a function (`FCALL`), not an `EVAL`.
    function: AtomicBool,
    /// `SCRIPT KILL` / `FUNCTION KILL` asked the running script to stop.
    kill: AtomicBool,
    /// The running script executed a write.
    wrote: AtomicBool,
    /// When the running script started (monotonic nanoseconds).
    started: AtomicU64,
    /// Wakes workers waiting for the script to end or become busy.
    lock: Mutex<()>,
    cond: Condvar,
}

impl Gate {
    /// A gate for `workers` worker threads (numbered from 0; a worker
    /// number past that panics in [`Gate::enter`]).
    pub fn new(workers: usize) -> Gate {
        Gate {
            state: AtomicU8::new(IDLE),
            inside: (0..workers.max(1)).map(|_| Inside::default()).collect(),
            function: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
            started: AtomicU64::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    // ---- worker side ------------------------------------------------------

    /// Worker `w` wants to run requests: true when it may (it is inside
    /// until [`Gate::leave`]); false when a script runs (it is not inside).
    #[inline]
    pub fn enter(&self, w: usize) -> bool {
        let flag = &self.inside[w].0;
        flag.store(true, SeqCst);
        if self.state.load(SeqCst) == IDLE {
            return true;
        }
        flag.store(false, SeqCst);
        false
    }

    /// Worker `w` ends its batch. A release store is enough here: the
    /// engine's `SeqCst` load that sees it also sees every write of the
    /// batch (only [`Gate::enter`]'s store must not pass its load).
    #[inline]
    pub fn leave(&self, w: usize) {
        self.inside[w].0.store(false, Release);
    }

    /// A worker that could not enter waits until the script ends or is
    /// busy (at most until `threshold` after its start).
    pub fn wait(&self, threshold: Duration) -> Closed {
        let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match self.state.load(SeqCst) {
                IDLE => return Closed::Ended,
                BUSY => return Closed::Busy,
                _ => {}
            }
            let ran = Duration::from_nanos(
                crate::clock::mono_nanos().saturating_sub(self.started.load(Relaxed)),
            );
            let Some(left) = threshold.checked_sub(ran).filter(|d| !d.is_zero()) else {
                // The engine's hook marks the script busy at its next
                // call; the worker need not wait for that.
                return Closed::Busy;
            };
            g = self
                .cond
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// True while a script runs (for `FUNCTION STATS`).
    pub fn running(&self) -> bool {
        self.state.load(Relaxed) != IDLE
    }

    /// True when the running script is a function.
    pub fn running_function(&self) -> bool {
        self.function.load(Relaxed)
    }

    /// How long the running script has run.
    pub fn ran(&self) -> Duration {
        Duration::from_nanos(crate::clock::mono_nanos().saturating_sub(self.started.load(Relaxed)))
    }

    /// `SCRIPT KILL` (`function`: `FUNCTION KILL`), Redis's rules.
    pub fn kill(&self, function: bool) -> Kill {
        if self.state.load(SeqCst) == IDLE {
            return Kill::NotBusy;
        }
        if self.wrote.load(SeqCst) {
            return Kill::Unkillable;
        }
        if self.function.load(SeqCst) != function {
            return Kill::WrongKind;
        }
        self.kill.store(true, SeqCst);
        Kill::Requested
    }

    // ---- engine side ------------------------------------------------------

    /// Closes the gate for a batch of scripts and waits until no worker
    /// is inside; each script then starts with [`Gate::next`].
    pub fn close(&self) {
        self.started.store(crate::clock::mono_nanos(), SeqCst);
        self.state.store(RUNNING, SeqCst);
        for flag in self.inside.iter() {
            let mut spins = 0u32;
            while flag.0.load(SeqCst) {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        }
    }

    /// The next script of a batch starts under the same closed gate: its
    /// kind, its clock, its kill and write flags are its own, and it is
    /// not busy before its own threshold.
    pub fn next(&self, function: bool) {
        let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.function.store(function, SeqCst);
        self.kill.store(false, SeqCst);
        self.wrote.store(false, SeqCst);
        self.started.store(crate::clock::mono_nanos(), SeqCst);
        self.state.store(RUNNING, SeqCst);
    }

    /// True once the running script passed the busy threshold.
    #[inline]
    pub fn busy(&self) -> bool {
        self.state.load(SeqCst) == BUSY
    }

    /// Opens the gate after the script ended; wakes waiting workers.
    pub fn open(&self) {
        let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.state.store(IDLE, SeqCst);
        self.kill.store(false, SeqCst);
        self.cond.notify_all();
    }

    /// The running script wrote (it can no longer be killed).
    pub fn wrote(&self) {
        self.wrote.store(true, SeqCst);
    }

    /// Called by the Lua hook: marks the script busy once it has run for
    /// `threshold`, and says whether it must stop now.
    pub fn check(&self, threshold: Duration) -> Option<&'static str> {
        if self.kill.load(Relaxed) {
            return Some(KILLED);
        }
        if self.state.load(Relaxed) == RUNNING && self.ran() >= threshold {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.state.store(BUSY, SeqCst);
            self.cond.notify_all();
            log::warn!(
                "a script has run for {} ms: other clients get -BUSY until it ends or SCRIPT KILL",
                self.ran().as_millis()
            );
        }
        None
    }
}

/// The error of a script stopped by `SCRIPT KILL` / `FUNCTION KILL`.
pub const KILLED: &str = "Script killed by user with SCRIPT KILL...";
/// The error of a script stopped because the node shuts down.
pub const SHUTTING_DOWN: &str = "Script stopped: the node is shutting down";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_worker_inside_holds_the_script_back_until_it_leaves() {
        let gate = Arc::new(Gate::new(2));
        assert!(gate.enter(0));
        let g = gate.clone();
        let closer = std::thread::spawn(move || g.close());
        // The engine waits for worker 0; worker 1 cannot enter meanwhile
        // once the state is set.
        while !gate.running() {
            std::thread::yield_now();
        }
        assert!(!gate.enter(1));
        assert!(!closer.is_finished());
        gate.leave(0);
        closer.join().unwrap();
        assert!(!gate.enter(0));
        gate.open();
        assert!(gate.enter(0));
        gate.leave(0);
    }

    #[test]
    fn kill_follows_redis_rules() {
        let gate = Gate::new(1);
        assert_eq!(gate.kill(false), Kill::NotBusy);
        gate.close();
        gate.next(true);
        assert_eq!(gate.kill(false), Kill::WrongKind);
        assert_eq!(gate.kill(true), Kill::Requested);
        let t = Duration::from_secs(60);
        assert_eq!(gate.check(t), Some(KILLED));
        gate.open();
        gate.close();
        gate.next(false);
        gate.wrote();
        assert_eq!(gate.kill(false), Kill::Unkillable);
        assert_eq!(gate.check(t), None);
        gate.open();
    }

    #[test]
    fn waiting_workers_learn_the_script_is_busy_after_the_threshold() {
        let gate = Gate::new(1);
        gate.close();
        assert_eq!(gate.wait(Duration::ZERO), Closed::Busy);
        assert_eq!(gate.check(Duration::ZERO), None);
        assert_eq!(gate.wait(Duration::from_secs(60)), Closed::Busy);
        gate.open();
        assert_eq!(gate.wait(Duration::from_secs(60)), Closed::Ended);
    }
}
