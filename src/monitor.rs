//! `MONITOR`: every command any client runs, streamed to the clients that
//! asked for it, in Redis's format.
//!
//! Design:
//!
//! * [`Monitors`] (in [`crate::stats::Stats`]) holds one [`Feed`] per
//!   monitoring connection and a count of them. A worker checks the count
//!   after each command with one relaxed load ([`Monitors::active`]); only
//!   when it is not zero does it format the command's line
//!   ([`format_line`], from `exec::monitor::feed`) and hand it to
//!   [`Monitors::publish`]. Without a monitor the feature costs that load
//!   and nothing else.
//! * A feed belongs to the worker that owns the monitoring connection.
//!   Publishing (from any worker) appends the line to the feed's buffer
//!   under its mutex and wakes the owning worker once (`wake_pending`
//!   coalesces wakes until that worker drained the feed). The owning
//!   worker moves the buffer into the connection's output buffer, where
//!   the ordinary output limits apply (`server::worker`).
//! * Bounded: a feed holds at most its `cap` bytes (the hard output limit,
//!   or [`DEFAULT_CAP`] without one). A line that does not fit marks the
//!   feed overflowed; the owning worker then disconnects the monitor as
//!   for a client over the hard output limit, and counts it there. A slow
//!   monitor therefore never makes other clients wait or grow memory
//!   beyond the cap.
//! * Order: lines from one worker reach a feed in execution order; lines
//!   from different workers interleave in the order they were published.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::lock;

/// Bytes a feed buffers for its monitor when no hard output limit is set.
pub const DEFAULT_CAP: usize = 64 << 20;

/// Arguments shown as this text instead of their value (passwords).
pub const REDACTED: &[u8] = b"(redacted)";

/// Something that wakes the worker owning a feed.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        let _ = mio::Waker::wake(self);
    }
}

/// The pending output of one monitoring connection.
pub struct Feed {
    /// The monitoring connection's id.
    pub conn_id: u64,
    buf: Mutex<Vec<u8>>,
    cap: usize,
    overflow: AtomicBool,
    /// A wake was sent and the owner has not drained the feed since.
    wake_pending: AtomicBool,
    waker: Arc<dyn Wake>,
}

impl Feed {
    /// An empty feed of connection `conn_id`, woken through `waker`,
    /// buffering at most `cap` bytes ([`DEFAULT_CAP`] when 0). Also the
    /// feed of a Pub/Sub subscriber (`crate::pubsub`).
    pub fn new(conn_id: u64, cap: usize, waker: Arc<dyn Wake>) -> Feed {
        Feed {
            conn_id,
            buf: Mutex::new(Vec::new()),
            cap: if cap == 0 { DEFAULT_CAP } else { cap },
            overflow: AtomicBool::new(false),
            wake_pending: AtomicBool::new(false),
            waker,
        }
    }

    /// Appends `bytes` (dropped, and the feed marked overflowed, when they
    /// do not fit in the cap) and wakes the owner unless a wake is pending.
    pub fn push(&self, bytes: &[u8]) {
        {
            let mut b = lock(&self.buf);
            if self.overflow.load(Relaxed) {
                return;
            }
            if b.len() + bytes.len() > self.cap {
                self.overflow.store(true, Relaxed);
            } else {
                b.extend_from_slice(bytes);
            }
        }
        if !self.wake_pending.swap(true, Relaxed) {
            self.waker.wake();
        }
    }

    /// Takes the buffered lines (appending them to `out`); returns false
    /// when lines were dropped because the feed was full (the monitor is
    /// to be disconnected).
    pub fn drain_into(&self, out: &mut Vec<u8>) -> bool {
        self.wake_pending.store(false, Relaxed);
        let mut b = lock(&self.buf);
        if out.is_empty() {
            std::mem::swap(out, &mut b);
        } else {
            out.extend_from_slice(&b);
            b.clear();
        }
        !self.overflow.load(Relaxed)
    }
}

/// Every monitoring connection of the node.
#[derive(Default)]
pub struct Monitors {
    active: AtomicUsize,
    feeds: Mutex<Vec<Arc<Feed>>>,
}

impl Monitors {
    /// True when at least one connection is monitoring (one relaxed load).
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Relaxed) != 0
    }

    /// Registers connection `conn_id` as a monitor; its worker is woken
    /// through `waker` when lines arrive. `cap`: the most bytes buffered.
    pub fn add(&self, conn_id: u64, cap: usize, waker: Arc<dyn Wake>) -> Arc<Feed> {
        let feed = Arc::new(Feed::new(conn_id, cap, waker));
        let mut feeds = lock(&self.feeds);
        feeds.push(feed.clone());
        self.active.store(feeds.len(), Relaxed);
        feed
    }

    /// Unregisters a monitor (closed, or `RESET`).
    pub fn remove(&self, conn_id: u64) {
        let mut feeds = lock(&self.feeds);
        feeds.retain(|f| f.conn_id != conn_id);
        self.active.store(feeds.len(), Relaxed);
    }

    /// Appends `line` to every feed (see the module docs for the bound).
    pub fn publish(&self, line: &[u8]) {
        let feeds = lock(&self.feeds);
        for f in feeds.iter() {
            f.push(line);
        }
    }
}

/// Appends `arg` quoted as Redis's `sdscatrepr` does: in double quotes,
/// `\\ \" \n \r \t \a \b` escaped, other non-printable bytes as `\xHH`.
pub fn repr(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(b),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
    }
    out.push(b'"');
}

/// Which arguments of a command are secrets shown as `(redacted)`, as
/// Redis does: both arguments of `AUTH`, and the user and password after
/// `AUTH` in `HELLO`.
pub fn redacted(args: &[&[u8]], i: usize) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if name.eq_ignore_ascii_case(b"AUTH") {
        return i >= 1;
    }
    if name.eq_ignore_ascii_case(b"HELLO") {
        // HELLO protover [AUTH user pass] [SETNAME name]
        let mut j = 2;
        while j < args.len() {
            if args[j].eq_ignore_ascii_case(b"AUTH") {
                if i == j + 1 || i == j + 2 {
                    return true;
                }
                j += 3;
            } else {
                j += 2;
            }
        }
    }
    false
}

/// True for the commands Redis never shows to monitors (administrative
/// ones, `CMD_ADMIN`), and this server's own node-administration and
/// internal commands. `sub` is the second argument, if any.
pub fn hidden(name: &[u8], sub: Option<&[u8]>) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    let sub_is = |names: &[&str]| {
        sub.is_some_and(|s| names.iter().any(|n| s.eq_ignore_ascii_case(n.as_bytes())))
    };
    [
        "MONITOR",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "SHUTDOWN",
        "SYNC",
        "PSYNC",
        "DEBUG",
        "REPLICAOF",
        "SLAVEOF",
        "REPLCONF",
        "FAILOVER",
        "CONFIG",
        "LATENCY",
        "SLOWLOG",
        "ACL",
        "REPLICATE",
        "TRUNCATE",
    ]
    .iter()
    .any(|n| is(n))
        || (is("CLIENT") && sub_is(&["KILL", "LIST", "NO-EVICT", "PAUSE", "UNBLOCK", "UNPAUSE"]))
        || name.len() > 4 && name[..4].eq_ignore_ascii_case(b"MKV.")
}

/// Formats one monitor line: `+<secs>.<usec> [0 <addr>] "arg" "arg"…\r\n`.
pub fn format_line(out: &mut Vec<u8>, now: Duration, addr: &dyn std::fmt::Display, args: &[&[u8]]) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "+{}.{:06} [0 {addr}]",
        now.as_secs(),
        now.subsec_micros()
    );
    for (i, a) in args.iter().enumerate() {
        out.push(b' ');
        repr(out, if redacted(args, i) { REDACTED } else { a });
    }
    out.extend_from_slice(b"\r\n");
}

/// Test helper: a [`Wake`] that counts its wakeups (the feed tests of
/// this module, Pub/Sub and MONITOR's executor use it).
#[cfg(test)]
pub(crate) struct CountWakes(pub AtomicUsize);

#[cfg(test)]
impl Wake for CountWakes {
    fn wake(&self) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let addr: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        format_line(&mut out, Duration::new(1700000000, 5_000), &addr, args);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_in_redis_format() {
        assert_eq!(
            line(&[b"set", b"foo", b"bar"]),
            "+1700000000.000005 [0 127.0.0.1:5000] \"set\" \"foo\" \"bar\"\r\n"
        );
        assert_eq!(
            line(&[b"set", b"a\"b\\", b"\r\n\t\x07\x08\x00\xff "]),
            "+1700000000.000005 [0 127.0.0.1:5000] \"set\" \"a\\\"b\\\\\" \"\\r\\n\\t\\a\\b\\x00\\xff \"\r\n"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        assert!(line(&[b"auth", b"pw"]).ends_with("\"auth\" \"(redacted)\"\r\n"));
        assert!(line(&[b"AUTH", b"u", b"pw"]).ends_with("\"(redacted)\" \"(redacted)\"\r\n"));
        assert!(
            line(&[b"hello", b"2", b"AUTH", b"u", b"p", b"SETNAME", b"n"]).ends_with(
                "\"hello\" \"2\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
            )
        );
        assert!(line(&[b"get", b"auth", b"x"]).ends_with("\"get\" \"auth\" \"x\"\r\n"));
    }

    #[test]
    fn admin_commands_are_hidden() {
        assert!(hidden(b"config", Some(b"set")));
        assert!(hidden(b"CLIENT", Some(b"kill")));
        assert!(!hidden(b"client", Some(b"setname")));
        assert!(!hidden(b"set", Some(b"k")));
        assert!(hidden(b"mkv.root", None));
        assert!(!hidden(b"mkv", None));
    }

    #[test]
    fn feeds_are_bounded_and_wake_once() {
        let m = Monitors::default();
        assert!(!m.active());
        let w = Arc::new(CountWakes(AtomicUsize::new(0)));
        let f = m.add(7, 10, w.clone());
        assert!(m.active());
        m.publish(b"12345");
        m.publish(b"678");
        assert_eq!(w.0.load(Relaxed), 1, "wakes coalesce until drained");
        let mut out = Vec::new();
        assert!(f.drain_into(&mut out));
        assert_eq!(out, b"12345678");
        m.publish(b"abcdefghijk");
        assert_eq!(w.0.load(Relaxed), 2);
        out.clear();
        assert!(!f.drain_into(&mut out), "overflowed");
        assert!(out.is_empty());
        m.remove(7);
        assert!(!m.active());
    }
}
