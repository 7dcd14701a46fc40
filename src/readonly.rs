//! Read-only mode (docs/protocol.md §21): a node that refuses client writes
//! while it keeps applying the cluster's.
//!
//! The mode starts from the `read_only` setting and is switched at run time
//! by `READONLY on|off` (text), `MKV.READONLY ON|OFF` or `CONFIG SET
//! read-only yes|no` (RESP). The executor asks [`ReadOnly::refuses`] before
//! a command runs (and `exec::tx` when one is queued in `MULTI`); a refused
//! command gets [`READONLY`] and changes nothing.
//!
//! What counts as a client write ([`is_write`]): every command of
//! [`Class::Write`] (SET and its variants, DEL, INCR/DECR, APPEND, the
//! expiry commands, RENAME, COPY, …), the clears (`FLUSHDB`, `FLUSHALL`,
//! `TRUNCATE`) and `SYNC --full`, which deletes local records under fresh
//! local versions that then spread to the cluster. A plain `SYNC` only pulls
//! newer versions from a peer, like background anti-entropy, and still runs.
//! Writes received over MQTT and repairs by anti-entropy never pass through
//! the executor, so they apply in read-only mode: a read-only node stays a
//! faithful replica.
//!
//! Invariant: switching is one atomic store; a command sees the mode once,
//! when it is checked, so a command that started before a switch finishes
//! under the old mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::auth::class::{self, Class};
use crate::protocol::Command;

/// The refusal (Redis's text for a read-only replica; RESP sends it as
/// `-READONLY …`, the text protocol as `ERROR READONLY …`).
pub const READONLY: &str = "READONLY You can't write against a read only replica.";

/// The mode and its counters (in `Shared`).
#[derive(Debug, Default)]
pub struct ReadOnly {
    on: AtomicBool,
    /// Client commands refused.
    refused: AtomicU64,
    /// Run-time switches that changed the mode.
    switches: AtomicU64,
}

impl ReadOnly {
    /// The mode as configured.
    pub fn new(on: bool) -> ReadOnly {
        ReadOnly {
            on: AtomicBool::new(on),
            ..ReadOnly::default()
        }
    }

    /// True while client writes are refused.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Switches the mode; logs and counts a change.
    pub fn set(&self, on: bool) {
        if self.on.swap(on, Relaxed) != on {
            self.switches.fetch_add(1, Relaxed);
            log::info!(
                "read-only mode {}",
                if on {
                    "on: client writes are refused"
                } else {
                    "off"
                }
            );
        }
    }

    /// True (and counted) when `cmd` must be refused now. One relaxed
    /// load while the mode is off.
    #[inline]
    pub fn refuses(&self, cmd: &Command<'_>) -> bool {
        if self.is_on() && is_write(cmd) {
            self.refused.fetch_add(1, Relaxed);
            return true;
        }
        false
    }

    /// Counts a refusal decided elsewhere (an `EXEC` of queued writes).
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// Client commands refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Run-time switches so far.
    pub fn switches(&self) -> u64 {
        self.switches.load(Relaxed)
    }

    /// The INFO lines (docs/protocol.md §6).
    pub fn write_info(&self, s: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            s,
            "read_only:{}\r\nread_only_refused_writes:{}\r\nread_only_switches:{}\r\n",
            u8::from(self.is_on()),
            self.refused(),
            self.switches()
        );
    }
}

/// True for the commands read-only mode refuses (module docs).
pub fn is_write(cmd: &Command<'_>) -> bool {
    match cmd {
        Command::Truncate | Command::FlushDb => true,
        Command::Sync { full, .. } => *full,
        _ => class::of(cmd) == Class::Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Parsed, resp, text};

    fn resp_cmd(args: &[&str], f: impl FnOnce(&Command<'_>)) {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut spans = Vec::new();
        match resp::parse(req.as_bytes(), &mut spans) {
            Parsed::Request(cmd, _) => f(&cmd),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn text_write(line: &str) -> bool {
        match text::parse(format!("{line}\r\n").as_bytes()) {
            Parsed::Request(cmd, _) => is_write(&cmd),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn writes_are_the_write_class_clears_and_full_sync() {
        for (args, want) in [
            (&["SET", "k", "v"][..], true),
            (&["SET", "k", "v", "EX", "5"], true),
            (&["DEL", "k"], true),
            (&["INCR", "k"], true),
            (&["EXPIRE", "k", "5"], true),
            (&["PERSIST", "k"], true),
            (&["GETEX", "k"], true),
            (&["RENAME", "a", "b"], true),
            (&["FLUSHALL"], true),
            (&["FLUSHDB"], true),
            (&["GET", "k"], false),
            (&["MGET", "a"], false),
            (&["TTL", "k"], false),
            (&["INFO"], false),
            (&["MULTI"], false),
            (&["EXEC"], false),
            (&["MKV.READONLY", "OFF"], false),
            (&["CONFIG", "SET", "read-only", "no"], false),
            (&["SYNC", "h", "1"], false),
            (&["SYNC", "h", "1", "--full"], true),
        ] {
            resp_cmd(args, |c| assert_eq!(is_write(c), want, "{args:?}"));
        }
        assert!(text_write("TRUNCATE"));
        assert!(text_write("SET k v"));
        assert!(text_write("PREPEND k v"));
        assert!(text_write("SETEX k 5 v"));
        assert!(!text_write("GET k"));
        assert!(!text_write("READONLY off"));
        assert!(!text_write("SYNC h 1 --rejoin"));
    }

    #[test]
    fn refusals_and_switches_are_counted() {
        let ro = ReadOnly::new(false);
        resp_cmd(&["SET", "k", "v"], |c| assert!(!ro.refuses(c)));
        ro.set(true);
        ro.set(true);
        assert_eq!(ro.switches(), 1, "setting the same mode is not a switch");
        resp_cmd(&["SET", "k", "v"], |c| assert!(ro.refuses(c)));
        resp_cmd(&["GET", "k"], |c| assert!(!ro.refuses(c)));
        assert_eq!(ro.refused(), 1);
        ro.set(false);
        resp_cmd(&["SET", "k", "v"], |c| assert!(!ro.refuses(c)));
        let mut s = String::new();
        ro.write_info(&mut s);
        assert_eq!(
            s,
            "read_only:0\r\nread_only_refused_writes:1\r\nread_only_switches:2\r\n"
        );
    }
}
