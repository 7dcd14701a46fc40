//! Scripting's state shared by every thread (`Shared::scripting`): the
//! script gate, the busy threshold in force, the running function, and the
//! counters INFO `# Scripting` shows. Kept apart from the script thread
//! (`engine.rs`), which needs the executor, so that `state.rs` does not
//! depend on it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::gate::Gate;

/// Counters the script thread keeps (INFO `# Scripting`).
#[derive(Debug, Default)]
pub struct Counters {
    pub scripts_run: AtomicU64,
    pub scripts_killed: AtomicU64,
    pub scripts_failed: AtomicU64,
    pub busy_replies: AtomicU64,
    pub memory_limit_hits: AtomicU64,
    pub cache_full_refusals: AtomicU64,
    /// Scripts `EVAL` cached and evicted again (`MAX_EVAL_SCRIPTS`, or a
    /// full heap).
    pub evicted_scripts: AtomicU64,
    pub cached_scripts: AtomicU64,
    pub libraries: AtomicU64,
    pub functions: AtomicU64,
    pub lua_memory: AtomicU64,
    pub source_bytes: AtomicU64,
}

impl Counters {
    /// The scripts' lines of INFO `# Memory`, where Redis 7.0 reports
    /// their memory and counts.
    pub fn write_memory_info(&self, s: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            s,
            "used_memory_lua:{}\r\nnumber_of_cached_scripts:{}\r\nnumber_of_functions:{}\r\n\
             number_of_libraries:{}\r\n",
            self.lua_memory.load(Relaxed),
            self.cached_scripts.load(Relaxed),
            self.functions.load(Relaxed),
            self.libraries.load(Relaxed),
        );
    }
}

/// Scripting's shared state: the gate and the counters.
pub struct Scripting {
    pub gate: Gate,
    pub counters: Counters,
    /// Live `busy-reply-threshold` in milliseconds.
    threshold_ms: AtomicU64,
    /// The function running now and its command (`FUNCTION STATS`).
    running: std::sync::Mutex<Option<(String, Vec<Vec<u8>>)>>,
}

impl Scripting {
    pub fn new(workers: usize, threshold: Duration) -> Scripting {
        Scripting {
            gate: Gate::new(workers),
            counters: Counters::default(),
            threshold_ms: AtomicU64::new(threshold.as_millis() as u64),
            running: Default::default(),
        }
    }

    /// The busy threshold in force.
    pub fn threshold(&self) -> Duration {
        Duration::from_millis(self.threshold_ms.load(Relaxed))
    }

    pub fn set_threshold_ms(&self, ms: u64) {
        self.threshold_ms.store(ms, Relaxed);
    }

    /// The running function's name and command, if a function runs.
    pub fn running(&self) -> Option<(String, Vec<Vec<u8>>)> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_running(&self, r: Option<(String, Vec<Vec<u8>>)>) {
        *self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = r;
    }
}
