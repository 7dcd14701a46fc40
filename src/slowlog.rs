//! `SLOWLOG`: the most recent commands that took longer than a threshold,
//! as Redis keeps them (`slowlog-log-slower-than` microseconds, the last
//! `slowlog-max-len` entries).
//!
//! Design: the workers already time every command when
//! `metrics.latency_tracking` is on (the default); after a command they
//! compare its time with [`SlowLog::threshold_nanos`], one relaxed atomic
//! load. Only a slow command takes the log's mutex, with its arguments
//! cut as Redis cuts them (at most [`MAX_ARGS`] arguments of at most
//! [`MAX_ARG_LEN`] bytes), so an entry is bounded, and so is the log
//! (`max_len` entries, the oldest dropped first). Without latency
//! tracking nothing is timed, so nothing is logged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::sync::lock;

/// Arguments kept per entry (the last one replaced by a count of the rest).
pub const MAX_ARGS: usize = 32;
/// Bytes kept per argument (the rest replaced by a count).
pub const MAX_ARG_LEN: usize = 128;
/// Redis's default threshold, in microseconds.
pub const DEFAULT_SLOWER_THAN_US: i64 = 10_000;
/// Redis's default number of entries kept.
pub const DEFAULT_MAX_LEN: usize = 128;
/// The largest `slowlog-max-len` accepted (bounds the log's memory:
/// at most about 4 KiB per entry).
pub const MAX_MAX_LEN: usize = 100_000;

/// One logged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// Unix seconds when it was logged.
    pub time: u64,
    pub micros: u64,
    pub args: Vec<Vec<u8>>,
    pub addr: String,
    pub name: String,
}

/// The node's slow log (see the module docs).
pub struct SlowLog {
    /// Microseconds; negative: logging off.
    slower_than_us: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

impl Default for SlowLog {
    fn default() -> SlowLog {
        SlowLog {
            slower_than_us: AtomicI64::new(DEFAULT_SLOWER_THAN_US),
            max_len: AtomicUsize::new(DEFAULT_MAX_LEN),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }
}

impl SlowLog {
    /// Commands taking at least this many nanoseconds are logged; `None`
    /// when logging is off (one relaxed load).
    #[inline]
    pub fn threshold_nanos(&self) -> Option<u64> {
        let us = self.slower_than_us.load(Relaxed);
        (us >= 0).then(|| us as u64 * 1000)
    }

    /// `slowlog-log-slower-than` (microseconds, negative: off).
    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Relaxed)
    }

    pub fn set_slower_than_us(&self, us: i64) {
        self.slower_than_us.store(us, Relaxed);
    }

    /// `slowlog-max-len`.
    pub fn max_len(&self) -> usize {
        self.max_len.load(Relaxed)
    }

    /// Sets `slowlog-max-len` (at most [`MAX_MAX_LEN`]), dropping the
    /// oldest entries beyond it.
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Relaxed);
        let mut e = lock(&self.entries);
        while e.len() > n {
            e.pop_back();
        }
    }

    /// Logs a command that took `nanos` (its arguments cut as in Redis).
    pub fn record(&self, args: &[&[u8]], nanos: u64, now_secs: u64, addr: String, name: String) {
        let max = self.max_len();
        if max == 0 {
            return;
        }
        let entry = Entry {
            id: self.next_id.fetch_add(1, Relaxed),
            time: now_secs,
            micros: nanos / 1000,
            args: cut_args(args),
            addr,
            name,
        };
        let mut e = lock(&self.entries);
        e.push_front(entry);
        e.truncate(max);
    }

    /// The `count` most recent entries (all when `None`), newest first.
    pub fn get(&self, count: Option<usize>) -> Vec<Entry> {
        let e = lock(&self.entries);
        e.iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        lock(&self.entries).clear();
    }
}

/// Redis's cut: at most [`MAX_ARGS`] arguments, the last of them then
/// `... (N more arguments)`; each at most [`MAX_ARG_LEN`] bytes, then
/// `... (N more bytes)`.
fn cut_args(args: &[&[u8]]) -> Vec<Vec<u8>> {
    let keep = if args.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        args.len()
    };
    let mut out: Vec<Vec<u8>> = args[..keep]
        .iter()
        .map(|a| {
            if a.len() > MAX_ARG_LEN {
                let mut v = a[..MAX_ARG_LEN].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_ARG_LEN).as_bytes(),
                );
                v
            } else {
                a.to_vec()
            }
        })
        .collect();
    if args.len() > MAX_ARGS {
        out.push(format!("... ({} more arguments)", args.len() - keep).into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_up_to_max_len() {
        let s = SlowLog::default();
        assert_eq!(s.threshold_nanos(), Some(10_000_000));
        s.set_max_len(2);
        for i in 0..3u64 {
            s.record(&[b"SET", b"k"], i * 1000, 7, "a:1".into(), String::new());
        }
        let e = s.get(None);
        assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(e[0].micros, 2);
        assert_eq!(s.get(Some(1)).len(), 1);
        s.set_max_len(1);
        assert_eq!(s.len(), 1);
        s.reset();
        assert!(s.is_empty());
        s.set_slower_than_us(-1);
        assert_eq!(s.threshold_nanos(), None);
    }

    #[test]
    fn arguments_are_cut_as_in_redis() {
        let long = [b'x'; 130];
        let args: Vec<&[u8]> = std::iter::repeat_n(&long[..], 40).collect();
        let cut = cut_args(&args);
        assert_eq!(cut.len(), 32);
        assert_eq!(cut[0].len(), 128 + "... (2 more bytes)".len());
        assert_eq!(cut[31], b"... (9 more arguments)");
    }
}
