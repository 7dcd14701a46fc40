//! The command slots of the statistics: every command name a request can
//! carry, as Redis names it in INFO (`get`, `client|list`), numbered.
//!
//! Built once from the RESP command table (`protocol::redis::COMMANDS`,
//! with each command's subcommands) and the words of the text protocol,
//! the expiry and the internal commands that are not in it. A request is
//! named by its first word (and, for commands with subcommands, its
//! second), looked up without allocating; a word the table lacks counts
//! under [`UNKNOWN`], which INFO shows, so a missing name is visible.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::protocol::redis::{COMMANDS, subcommands};

/// Command words of the text protocol, the expiry and internal commands
/// that are not in the RESP command table.
const EXTRA: &[&str] = &[
    "delete",
    "prepend",
    "inc",
    "dec",
    "truncate",
    "flush",
    "version",
    "replicate",
    "nodes",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "expiretime",
    "pexpiretime",
    "setex",
    "psetex",
    "getex",
    "mkv.root",
    "mkv.nodes",
    "mkv.buckets",
    "mkv.entries",
    "mkv.fetch",
    "mkv.members",
];

/// The slot of a command word the table does not know (counted, shown as
/// `cmdstat_unknown`, so a missing name is visible rather than lost).
pub const UNKNOWN: usize = 0;

/// The command slots: full names (`get`, `client|list`) and their index.
pub struct Names {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Parents with subcommands (`client`, `config`, …).
    containers: Vec<bool>,
}

/// The one table of command slots.
pub static NAMES: LazyLock<Names> = LazyLock::new(Names::build);

/// Slots of the hot commands, resolved once ([`Names::hot`]).
#[derive(Debug, Clone, Copy)]
pub struct Hot {
    pub get: usize,
    pub set: usize,
    pub mget: usize,
    pub mset: usize,
    pub exists: usize,
    pub ping: usize,
    pub echo: usize,
    pub strlen: usize,
}

impl Names {
    fn build() -> Names {
        let mut n = Names {
            names: vec!["unknown".into()],
            index: HashMap::new(),
            containers: vec![false],
        };
        for c in COMMANDS {
            let subs = subcommands(c.name);
            n.add(c.name.to_string(), !subs.is_empty());
            for s in subs {
                n.add(format!("{}|{s}", c.name), false);
            }
        }
        for w in EXTRA {
            n.add((*w).to_string(), false);
        }
        n
    }

    fn add(&mut self, name: String, container: bool) {
        if !self.index.contains_key(&name) {
            self.index.insert(name.clone(), self.names.len());
            self.names.push(name);
            self.containers.push(container);
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false (the `unknown` slot exists).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The full name of slot `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Every slot's name, by slot.
    pub fn all(&self) -> &[String] {
        &self.names
    }

    /// The slot of a command word (any case) and, for commands with
    /// subcommands, its second word: `client|list`, or `client` itself for
    /// a subcommand it does not know. [`UNKNOWN`] for an unknown word.
    pub fn slot(&self, word: &[u8], sub: Option<&[u8]>) -> usize {
        self.lookup(word, sub).unwrap_or(UNKNOWN)
    }

    /// [`Names::slot`], `None` for an unknown word.
    pub fn lookup(&self, word: &[u8], sub: Option<&[u8]>) -> Option<usize> {
        let mut buf = [0u8; 48];
        let lower = |w: &[u8], buf: &mut [u8; 48]| -> Option<usize> {
            if w.len() > 32 {
                return None;
            }
            for (d, s) in buf.iter_mut().zip(w) {
                *d = s.to_ascii_lowercase();
            }
            Some(w.len())
        };
        let n = lower(word, &mut buf)?;
        let name = std::str::from_utf8(&buf[..n]).ok()?;
        let top = *self.index.get(name)?;
        if !self.containers[top] {
            return Some(top);
        }
        let Some(sub) = sub.filter(|s| s.len() <= 15) else {
            return Some(top);
        };
        buf[n] = b'|';
        for (d, s) in buf[n + 1..].iter_mut().zip(sub) {
            *d = s.to_ascii_lowercase();
        }
        let full = std::str::from_utf8(&buf[..n + 1 + sub.len()]).ok();
        Some(full.and_then(|f| self.index.get(f).copied()).unwrap_or(top))
    }

    /// The hot commands' slots.
    pub fn hot(&self) -> Hot {
        let s = |w: &str| self.slot(w.as_bytes(), None);
        Hot {
            get: s("get"),
            set: s("set"),
            mget: s("mget"),
            mset: s("mset"),
            exists: s("exists"),
            ping: s("ping"),
            echo: s("echo"),
            strlen: s("strlen"),
        }
    }
}

/// The first two words of a request's raw bytes (RESP array or text
/// line): the command word and the possible subcommand. Only for naming a
/// slot: no validation beyond staying in bounds.
pub fn words(frame: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    if frame.first() == Some(&b'*') {
        let mut rest = frame;
        let mut out = [None, None];
        // Skip `*N\r\n`, then read up to two `$len\r\nbytes\r\n`.
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return (None, None);
        };
        rest = &rest[nl + 1..];
        for slot in &mut out {
            if rest.first() != Some(&b'$') {
                break;
            }
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                break;
            };
            let len = crate::protocol::parse_int::<usize>(rest[1..nl].trim_ascii_end());
            let Some(len) = len.filter(|&l| nl + 1 + l <= rest.len()) else {
                break;
            };
            *slot = Some(&rest[nl + 1..nl + 1 + len]);
            rest = &rest[(nl + 3 + len).min(rest.len())..];
        }
        return (out[0], out[1]);
    }
    let line = &frame[..memchr::memchr(b'\n', frame).unwrap_or(frame.len())];
    let mut it = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    (it.next(), it.next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_slots() {
        let n = &*NAMES;
        assert_eq!(n.name(n.slot(b"GET", None)), "get");
        assert_eq!(n.name(n.slot(b"client", Some(b"LIST"))), "client|list");
        assert_eq!(n.name(n.slot(b"CLIENT", Some(b"nope"))), "client");
        assert_eq!(
            n.name(n.slot(b"config", Some(b"resetstat"))),
            "config|resetstat"
        );
        assert_eq!(n.name(n.slot(b"Delete", Some(b"k"))), "delete");
        assert_eq!(n.slot(b"asdf", None), UNKNOWN);
        assert_eq!(n.lookup(b"asdf", None), None);
        assert_eq!(n.lookup(&[b'a'; 100], None), None);
        let hot = n.hot();
        assert_eq!(n.name(hot.get), "get");
        assert_eq!(n.name(hot.strlen), "strlen");
    }

    #[test]
    fn words_of_frames() {
        assert_eq!(
            words(b"*3\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n$1\r\nx\r\n"),
            (Some(&b"CLIENT"[..]), Some(&b"LIST"[..]))
        );
        assert_eq!(words(b"*1\r\n$4\r\nPING\r\n"), (Some(&b"PING"[..]), None));
        assert_eq!(words(b"*1\r\n$40\r\nPI\r\n"), (None, None));
        assert_eq!(words(b"*1\r\n"), (None, None));
        assert_eq!(
            words(b"  SET  k v\r\n"),
            (Some(&b"SET"[..]), Some(&b"k"[..]))
        );
        assert_eq!(words(b""), (None, None));
    }
}
