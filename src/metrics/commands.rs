//! Per-command statistics: calls, time, failures, rejections, a latency
//! histogram per command, and error replies by their code.
//!
//! Every command has a fixed slot (`metrics::names`: the RESP command
//! table with its `parent|sub` subcommands, then the text protocol's own
//! words); this module only knows slot numbers and, for reading, the
//! slots' names handed to [`Totals::new`]. Each worker owns one
//! [`WorkerCommands`]: its counters have a single writer (relaxed load +
//! store, no locked instruction, no cache line written by two threads);
//! readers (INFO, the metrics scrape) merge all workers into [`Totals`].
//! A histogram is allocated the first time its command is timed.
//!
//! `CONFIG RESETSTAT` never writes a worker's counters (that would race
//! with its single writer): it stores the current totals as a baseline
//! that INFO subtracts. The metrics endpoint reports the raw totals, so
//! its counters only ever grow, as Prometheus expects.
//!
//! What counts where (docs/protocol.md, INFO `commandstats`): a command
//! that ran and answered an error is a *failed* call (and a call); one
//! refused before running (wrong arity or syntax found by the parser,
//! `NOAUTH`, `NOPERM`, `OOM`, `READONLY`, refused inside `MULTI`) is a
//! *rejected* call and not a call. Every error reply counts once in
//! [`Totals::errors`] under its code: the first word of a RESP error, and
//! `ERR` for the text protocol's `ERROR …` lines.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use super::histogram::{Histogram, Snapshot};
use crate::protocol::reply::Proto;
use crate::sync::lock;

/// Most distinct error codes tracked (as Redis: codes are chosen by the
/// server, but the bound keeps a bug from growing the table).
pub const MAX_ERROR_CODES: usize = 128;

/// One command's counters in one worker.
#[derive(Default)]
struct Slot {
    calls: AtomicU64,
    nanos: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    latency: OnceLock<Histogram>,
}

/// How a command ended, for [`WorkerCommands::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and did not answer an error.
    Ok,
    /// It ran and answered an error.
    Failed,
    /// It was refused before running.
    Rejected,
}

/// One worker's command statistics (single writer: the worker).
pub struct WorkerCommands {
    slots: Box<[Slot]>,
    error_replies: AtomicU64,
    /// Error replies by code; touched only when an error is answered.
    errors: Mutex<Vec<(Box<str>, u64)>>,
}

impl WorkerCommands {
    /// Counters for `slots` commands.
    pub fn new(slots: usize) -> WorkerCommands {
        WorkerCommands {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            error_replies: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }
}

#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed) + n, Relaxed);
}

impl WorkerCommands {
    /// Records one command in slot `slot`; `nanos` is its run time when
    /// latency tracking is on. Only the owning worker may call it.
    #[inline]
    pub fn record(&self, slot: usize, outcome: Outcome, nanos: Option<u64>) {
        let s = &self.slots[slot];
        match outcome {
            Outcome::Ok => bump(&s.calls, 1),
            Outcome::Failed => {
                bump(&s.calls, 1);
                bump(&s.failed, 1);
            }
            Outcome::Rejected => {
                bump(&s.rejected, 1);
                return;
            }
        }
        if let Some(ns) = nanos {
            bump(&s.nanos, ns);
            s.latency.get_or_init(Histogram::default).record(ns);
        }
    }

    /// Records a command that ran (or was refused by the connection's
    /// gate) from its reply: an error reply makes it a failed call, or a
    /// rejection for the codes of [`is_rejection`], and counts under its
    /// code. Only the owning worker may call it.
    #[inline]
    pub fn account(&self, slot: usize, reply: &[u8], nanos: Option<u64>) {
        if matches!(reply.first(), Some(b'-' | b'E'))
            && let Some(code) = error_code(reply)
        {
            self.error(code);
            let outcome = if is_rejection(code) {
                Outcome::Rejected
            } else {
                Outcome::Failed
            };
            self.record(slot, outcome, nanos);
            return;
        }
        self.record(slot, Outcome::Ok, nanos);
    }

    /// Records a command refused before it ran, from its error reply.
    /// Only the owning worker may call it.
    #[cold]
    pub fn refused(&self, slot: usize, reply: &[u8]) {
        self.record(slot, Outcome::Rejected, None);
        self.error(error_code(reply).unwrap_or("ERR"));
    }

    /// Records a request the parser refused (`msg`: its error text, as
    /// handed to the reply encoder): a rejected call of `slot` when the
    /// command is known, and an error reply under the code the reply
    /// will carry. Only the owning worker may call it.
    #[cold]
    pub fn reject(&self, slot: Option<usize>, msg: &str, proto: Proto) {
        if let Some(slot) = slot {
            self.record(slot, Outcome::Rejected, None);
        }
        let code = match proto {
            Proto::Text => "ERR",
            Proto::Resp => msg_code(msg),
        };
        self.error(code);
    }

    /// Counts one error reply under its code (`ERR`, `WRONGTYPE`, …).
    /// Only the owning worker may call it.
    #[cold]
    pub fn error(&self, code: &str) {
        bump(&self.error_replies, 1);
        let mut errors = lock(&self.errors);
        if let Some(e) = errors.iter_mut().find(|(c, _)| &**c == code) {
            e.1 += 1;
        } else if errors.len() < MAX_ERROR_CODES {
            errors.push((code.into(), 1));
        }
    }

    /// Adds this worker's counters to `t`.
    pub fn add_to(&self, t: &mut Totals) {
        for (i, s) in self.slots.iter().enumerate() {
            let c = &mut t.commands[i];
            c.calls += s.calls.load(Relaxed);
            c.nanos += s.nanos.load(Relaxed);
            c.failed += s.failed.load(Relaxed);
            c.rejected += s.rejected.load(Relaxed);
            if let Some(h) = s.latency.get() {
                h.add_to(c.latency.get_or_insert_with(Snapshot::default));
            }
        }
        t.error_replies += self.error_replies.load(Relaxed);
        for (code, n) in lock(&self.errors).iter() {
            *t.errors.entry(code.to_string()).or_default() += n;
        }
    }
}

/// The error code of an error reply: the first word of a RESP error
/// (`-WRONGTYPE …` → `WRONGTYPE`), `ERR` for the text protocol's
/// `ERROR …`. `None` when `reply` is not an error.
pub fn error_code(reply: &[u8]) -> Option<&str> {
    if reply.starts_with(b"ERROR") {
        return Some("ERR");
    }
    let body = reply.strip_prefix(b"-")?;
    let end = body
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(body.len());
    std::str::from_utf8(&body[..end.min(64)])
        .ok()
        .filter(|c| !c.is_empty())
}

/// The code a RESP error reply of message `msg` carries (the reply
/// encoder's rule, `protocol::reply::error`): its first word when that is
/// a Redis error code, else `ERR`.
fn msg_code(msg: &str) -> &str {
    match msg.split_once(' ') {
        Some((code, _)) if crate::protocol::reply::has_code(msg) => code,
        _ => "ERR",
    }
}

/// Whether an error code means "refused before running" (Redis counts
/// these as rejected calls).
pub fn is_rejection(code: &str) -> bool {
    matches!(
        code,
        "NOAUTH" | "NOPERM" | "OOM" | "READONLY" | "MISCONF" | "LOADING"
    )
}

/// One command's counters merged over the workers.
#[derive(Clone, Debug, Default)]
pub struct CommandTotals {
    pub calls: u64,
    pub nanos: u64,
    pub failed: u64,
    pub rejected: u64,
    /// `None` until the command was timed once.
    pub latency: Option<Snapshot>,
}

/// Every worker's counters merged (a scrape, or an INFO reply).
#[derive(Clone, Debug)]
pub struct Totals {
    /// The slots' names.
    names: &'static [String],
    /// Indexed by slot.
    pub commands: Vec<CommandTotals>,
    pub error_replies: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    /// Zero totals for the slots named `names`.
    pub fn new(names: &'static [String]) -> Totals {
        Totals {
            names,
            commands: vec![CommandTotals::default(); names.len()],
            error_replies: 0,
            errors: Default::default(),
        }
    }

    /// `self - base` (the counters since `CONFIG RESETSTAT` took `base`).
    pub fn since(&self, base: &Totals) -> Totals {
        let commands = self
            .commands
            .iter()
            .zip(&base.commands)
            .map(|(a, b)| CommandTotals {
                calls: a.calls.saturating_sub(b.calls),
                nanos: a.nanos.saturating_sub(b.nanos),
                failed: a.failed.saturating_sub(b.failed),
                rejected: a.rejected.saturating_sub(b.rejected),
                latency: match (&a.latency, &b.latency) {
                    (Some(x), Some(y)) => Some(x.since(y)).filter(|s| s.count() > 0),
                    (x, _) => x.clone(),
                },
            })
            .collect();
        let errors = self
            .errors
            .iter()
            .map(|(c, n)| {
                (
                    c.clone(),
                    n.saturating_sub(*base.errors.get(c).unwrap_or(&0)),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        Totals {
            names: self.names,
            commands,
            error_replies: self.error_replies.saturating_sub(base.error_replies),
            errors,
        }
    }

    /// The slots with any activity, in name order, with their names.
    pub fn active(&self) -> Vec<(&str, &CommandTotals)> {
        let mut v: Vec<_> = self
            .commands
            .iter()
            .enumerate()
            .filter(|(_, c)| c.calls + c.failed + c.rejected > 0)
            .map(|(i, c)| (self.names[i].as_str(), c))
            .collect();
        v.sort_by_key(|&(n, _)| n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::NAMES;

    #[test]
    fn error_codes() {
        assert_eq!(error_code(b"-ERR wrong\r\n"), Some("ERR"));
        assert_eq!(error_code(b"-WRONGTYPE Operation\r\n"), Some("WRONGTYPE"));
        assert_eq!(error_code(b"-NOAUTH\r\n"), Some("NOAUTH"));
        assert_eq!(error_code(b"ERROR not a number\r\n"), Some("ERR"));
        assert_eq!(error_code(b"+OK\r\n"), None);
        assert_eq!(error_code(b"-\r\n"), None);
        assert_eq!(error_code(b""), None);
        assert!(is_rejection("NOPERM") && !is_rejection("ERR"));
    }

    #[test]
    fn record_merge_and_reset() {
        let a = WorkerCommands::new(NAMES.len());
        let b = WorkerCommands::new(NAMES.len());
        let get = NAMES.slot(b"get", None);
        let set = NAMES.slot(b"set", None);
        a.record(get, Outcome::Ok, Some(1_500));
        b.record(get, Outcome::Failed, Some(2_500));
        b.record(set, Outcome::Rejected, None);
        b.error("ERR");
        b.error("ERR");
        a.error("WRONGTYPE");
        let mut t = Totals::new(NAMES.all());
        a.add_to(&mut t);
        b.add_to(&mut t);
        let g = &t.commands[get];
        assert_eq!((g.calls, g.nanos, g.failed, g.rejected), (2, 4_000, 1, 0));
        assert_eq!(g.latency.as_ref().map(Snapshot::count), Some(2));
        assert_eq!(t.commands[set].rejected, 1);
        assert!(t.commands[set].latency.is_none());
        assert_eq!(t.error_replies, 3);
        assert_eq!(t.errors["ERR"], 2);
        let names: Vec<&str> = t.active().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["get", "set"]);
        let base = t.clone();
        a.record(get, Outcome::Ok, None);
        let mut now = Totals::new(NAMES.all());
        a.add_to(&mut now);
        b.add_to(&mut now);
        let d = now.since(&base);
        assert_eq!(d.commands[get].calls, 1);
        assert!(d.commands[get].latency.is_none());
        assert!(d.errors.is_empty());
        assert_eq!(d.active().len(), 1);
    }

    #[test]
    fn error_codes_are_bounded() {
        let w = WorkerCommands::new(NAMES.len());
        for i in 0..MAX_ERROR_CODES + 10 {
            w.error(&format!("E{i}"));
        }
        let mut t = Totals::new(NAMES.all());
        w.add_to(&mut t);
        assert_eq!(t.errors.len(), MAX_ERROR_CODES);
        assert_eq!(t.error_replies, (MAX_ERROR_CODES + 10) as u64);
    }
}
