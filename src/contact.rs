//! Cluster contact and the resurrection guard.
//!
//! A delete leaves a tombstone, and tombstones are collected after
//! `tombstone_ttl`. A node that has been out of touch with the cluster for
//! longer than that may still hold a value whose tombstone the others have
//! already collected: if a peer pulled it now, the deleted key would come
//! back everywhere. So every cluster node (replication on, or anti-entropy
//! peers configured) tracks its **last contact**: the last time it was
//! connected to the broker or finished an anti-entropy round with a peer.
//!
//! * When `now - last contact > tombstone_ttl` the node becomes **stale**
//!   (latched, logged once). A stale node refuses to serve the internal
//!   `MKV.*` commands, so no peer pulls its old records back; it still
//!   serves clients, applies replicated events and pulls from its peers
//!   (which only brings it newer data). Contact made while stale is not
//!   recorded: only an operator ends it.
//! * The operator ends it with `SYNC <peer> <port> --full` (an exact copy
//!   of a healthy peer: the node's old records are gone) or, when its data
//!   must be kept as it is (the whole cluster was down, say), with
//!   `SYNC <peer> <port> --rejoin` (ends the stale state first, then runs
//!   an ordinary round; the peer's own rounds then pull the old records).
//! * With the persistent engine the last contact is kept in the file
//!   `contact` in the data directory (rewritten at most every
//!   [`PERSIST_EVERY_MS`], atomically), so a node that was switched off for
//!   longer than the TTL is stale as soon as it starts again. A data
//!   directory without the file gets one saying "now".
//!
//! Standalone nodes (no replication, no peers) never go stale.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Error text of the `MKV.*` commands on a stale node.
pub const STALE_REFUSAL: &str = "STALE this node was out of contact with the cluster for longer \
     than tombstone_ttl and may hold deleted keys; it serves no anti-entropy until an operator \
     runs SYNC <peer> <port> --full (copy a healthy peer) or --rejoin (keep its data) on it";

/// Name of the file holding the last contact in the data directory.
pub const FILE: &str = "contact";
/// The contact file is rewritten at most this often.
pub const PERSIST_EVERY_MS: u64 = 10_000;
const MAGIC: &str = "merklekv-contact 1";

/// Last contact with the cluster and the stale latch (see module docs).
pub struct Contact {
    /// False for a standalone node: nothing is tracked.
    member: bool,
    ttl_ms: u64,
    last_ms: AtomicU64,
    stale: AtomicBool,
    /// Last value written to the file.
    persisted_ms: AtomicU64,
    file: Option<PathBuf>,
    /// Serialises file writes.
    write: Mutex<()>,
}

/// Why the contact file could not be used.
#[derive(Debug)]
pub enum ContactError {
    Io(PathBuf, io::Error),
    Corrupt(PathBuf),
}

impl std::fmt::Display for ContactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContactError::Io(p, e) => write!(f, "contact file {}: {e}", p.display()),
            ContactError::Corrupt(p) => write!(
                f,
                "contact file {}: not a contact file (delete it to start counting from now)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ContactError {}

impl Contact {
    /// A tracker for a node that is a cluster `member` (or not) with this
    /// tombstone TTL; `dir` is the persistent engine's data directory.
    /// Reads the last contact from `dir` (or records `now_ms` there) and
    /// latches stale at once if it is older than the TTL.
    pub fn open(
        member: bool,
        ttl_ms: u64,
        dir: Option<&Path>,
        now_ms: u64,
    ) -> Result<Contact, ContactError> {
        let file = dir.map(|d| d.join(FILE));
        let mut last = now_ms;
        let mut found = false;
        if let Some(p) = &file {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    last = parse(&text).ok_or_else(|| ContactError::Corrupt(p.clone()))?;
                    found = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContactError::Io(p.clone(), e)),
            }
        }
        let c = Contact {
            member,
            ttl_ms,
            last_ms: AtomicU64::new(last),
            stale: AtomicBool::new(false),
            persisted_ms: AtomicU64::new(if found { last } else { 0 }),
            file,
            write: Mutex::new(()),
        };
        if !found {
            c.persist(true)?;
        }
        c.check(now_ms);
        Ok(c)
    }

    /// Whether this node tracks contact at all.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Records a successful exchange with the cluster at `now_ms` (ignored
    /// while stale: only the operator ends that).
    pub fn touch(&self, now_ms: u64) {
        if self.member && !self.is_stale() {
            self.last_ms.fetch_max(now_ms, Relaxed);
        }
    }

    /// Latches stale when the last contact is older than the TTL; true if
    /// this call latched it (the caller logs it).
    pub fn check(&self, now_ms: u64) -> bool {
        if !self.member || self.is_stale() {
            return false;
        }
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) <= self.ttl_ms {
            return false;
        }
        let latched = !self.stale.swap(true, Relaxed);
        if latched {
            log::warn!(
                "no contact with the cluster for {} s, longer than tombstone_ttl ({} s): \
                 this node may hold keys the cluster deleted, so it no longer serves \
                 anti-entropy requests; run SYNC <peer> <port> --full to copy a healthy \
                 peer, or SYNC <peer> <port> --rejoin to keep this node's data as it is",
                now_ms.saturating_sub(last) / 1000,
                self.ttl_ms / 1000
            );
        }
        latched
    }

    /// Whether the node is stale.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Relaxed)
    }

    /// Ends the stale state (operator command or a completed full copy)
    /// and records contact at `now_ms`, on disk at once.
    pub fn rejoin(&self, now_ms: u64) -> Result<(), ContactError> {
        self.last_ms.store(now_ms, Relaxed);
        let was = self.stale.swap(false, Relaxed);
        if was {
            log::info!("stale state ended by the operator: serving anti-entropy requests again");
        }
        self.persist(true)
    }

    /// Last contact, Unix milliseconds.
    pub fn last_ms(&self) -> u64 {
        self.last_ms.load(Relaxed)
    }

    /// Writes the last contact to the data directory when it moved by at
    /// least [`PERSIST_EVERY_MS`] since the last write (always if `force`).
    /// Atomic: a temporary file renamed over the old one.
    pub fn persist(&self, force: bool) -> Result<(), ContactError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let _g = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = self.last_ms.load(Relaxed);
        if !force && last < self.persisted_ms.load(Relaxed) + PERSIST_EVERY_MS {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let io = |e| ContactError::Io(path.clone(), e);
        write_synced(&tmp, &format!("{MAGIC}\n{last}\n")).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        self.persisted_ms.store(last, Relaxed);
        Ok(())
    }

    /// INFO lines: `cluster_stale` and `cluster_last_contact_age_s`.
    pub fn write_info(&self, now_ms: u64, s: &mut String) {
        use std::fmt::Write as _;
        let age = if self.member {
            (now_ms.saturating_sub(self.last_ms()) / 1000).to_string()
        } else {
            "-1".to_string()
        };
        let _ = write!(
            s,
            "cluster_stale:{}\r\ncluster_last_contact_age_s:{age}\r\n",
            u8::from(self.is_stale())
        );
    }
}

fn write_synced(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 60_000;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "merklekv-contact-{tag}-{}-{}",
            std::process::id(),
            crate::store::now_millis()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn contact_within_the_ttl_keeps_a_member_fresh() {
        let c = Contact::open(true, TTL, None, 1_000).unwrap();
        assert!(!c.check(1_000 + TTL));
        c.touch(50_000);
        assert!(!c.check(50_000 + TTL));
        assert!(!c.is_stale());
    }

    #[test]
    fn a_gap_longer_than_the_ttl_latches_stale_until_rejoin() {
        let c = Contact::open(true, TTL, None, 1_000).unwrap();
        assert!(c.check(1_001 + TTL), "latches once");
        assert!(!c.check(2_000 + TTL), "logged once");
        assert!(c.is_stale());
        // Contact while stale does not end it.
        c.touch(5_000 + TTL);
        c.check(5_000 + TTL);
        assert!(c.is_stale());
        assert_eq!(c.last_ms(), 1_000);
        c.rejoin(6_000 + TTL).unwrap();
        assert!(!c.is_stale());
        assert!(!c.check(6_000 + 2 * TTL));
    }

    #[test]
    fn standalone_nodes_never_go_stale() {
        let c = Contact::open(false, TTL, None, 1_000).unwrap();
        assert!(!c.check(u64::MAX));
        assert!(!c.is_stale());
        let mut s = String::new();
        c.write_info(10_000, &mut s);
        assert_eq!(s, "cluster_stale:0\r\ncluster_last_contact_age_s:-1\r\n");
    }

    #[test]
    fn the_last_contact_survives_a_restart_and_an_old_one_is_stale_at_once() {
        let d = tmpdir("restart");
        let c = Contact::open(true, TTL, Some(&d), 1_000).unwrap();
        c.touch(5_000);
        c.persist(false).unwrap();
        // Not yet PERSIST_EVERY_MS later: the file still says 1 000.
        let again = Contact::open(true, TTL, Some(&d), 5_000).unwrap();
        assert_eq!(again.last_ms(), 1_000);
        c.touch(1_000 + PERSIST_EVERY_MS);
        c.persist(false).unwrap();
        let again = Contact::open(true, TTL, Some(&d), 20_000).unwrap();
        assert_eq!(again.last_ms(), 1_000 + PERSIST_EVERY_MS);
        assert!(!again.is_stale());
        // Switched off for longer than the TTL.
        let late = Contact::open(true, TTL, Some(&d), 2 * TTL + PERSIST_EVERY_MS).unwrap();
        assert!(late.is_stale());
        let mut s = String::new();
        late.write_info(2 * TTL + PERSIST_EVERY_MS, &mut s);
        assert!(s.starts_with("cluster_stale:1\r\n"), "{s}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_foreign_contact_file_is_refused() {
        let d = tmpdir("corrupt");
        std::fs::write(d.join(FILE), "hello\n").unwrap();
        let e = Contact::open(true, TTL, Some(&d), 1).err().unwrap();
        assert!(e.to_string().contains("not a contact file"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
