//! The funnel for writes received from peers (replication events,
//! anti-entropy repairs): last-writer-wins apply, plus everything an
//! applied write must also reach (persistence).

use std::sync::Arc;

use crate::persist::LogWriter;
use crate::state::Shared;
use crate::store::{Applied, Version};

/// A background thread's funnel for writes received from peers
/// (replication events, anti-entropy repairs): last-writer-wins apply,
/// plus everything an applied write must also reach (persistence).
/// Each applying thread owns one.
pub struct Applier {
    shared: Arc<Shared>,
    /// This thread's log segment (persistent engine only).
    log: Option<LogWriter>,
    /// A `replace_if`/`remove_if` changed the store since the last commit.
    forced: bool,
}

impl Applier {
    /// An applier for one thread (`name` identifies it, e.g. in logs and
    /// in its log segment's file name).
    pub fn new(shared: Arc<Shared>, name: &str) -> Applier {
        let log = shared.persist.as_ref().map(|p| p.applier_writer(name));
        Applier {
            shared,
            log,
            forced: false,
        }
    }

    /// An applier that goes on with a log writer handed back by
    /// [`Applier::into_writer`] (so that a pool of them keeps one log
    /// segment each instead of opening one per use).
    pub fn with_writer(shared: Arc<Shared>, log: LogWriter) -> Applier {
        Applier {
            shared,
            log: Some(log),
            forced: false,
        }
    }

    /// Ends this applier's use, handing back its log writer (persistent
    /// engine only). Call [`Applier::commit`] first.
    pub fn into_writer(self) -> Option<LogWriter> {
        self.log
    }

    /// Applies a remote write with LWW. Remote writes are never re-published.
    /// A stored write is appended to this thread's log.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>, version: Version) -> Applied {
        self.apply_expiring(key, value, version, 0)
    }

    /// [`Applier::apply`] of a record with an expiry (Unix ms, 0 = none).
    /// A record already expired is applied as the tombstone of its
    /// version (and logged as one).
    pub fn apply_expiring(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> Applied {
        let Some(log) = &self.log else {
            return self
                .shared
                .store
                .apply_expiring(key, value, version, expires);
        };
        let (applied, stamp) = self
            .shared
            .store
            .apply_stamped_expiring(key, value, version, expires);
        if applied == Applied::Stored {
            // Logged as received: replay applies the same rule again.
            log.append_expiring(key, value, version, stamp, expires);
        }
        applied
    }

    /// Ends a batch of applies: writes this thread's log buffer and, with
    /// `fsync = always`, makes it durable. Call it after each received
    /// batch / repair round (before answering SYNC); without it the
    /// background flusher writes and fsyncs within a second.
    ///
    /// After forced changes (`SYNC --full` storing older versions), which
    /// last-writer-wins replay of a log cannot reproduce, a snapshot is
    /// written before this returns.
    pub fn commit(&mut self) {
        if let Some(log) = &self.log {
            log.commit();
        }
        if std::mem::take(&mut self.forced)
            && let Some(p) = &self.shared.persist
        {
            let shutdown = &self.shared.shutdown;
            if let Err(e) = p.snapshot(&self.shared.store, &|| shutdown.is_triggered()) {
                log::warn!("snapshot after SYNC --full failed: {e}");
            }
        }
    }

    /// `SYNC --full`: stores exactly this record (even an older version) if
    /// the local record is still `expected`
    /// ([`crate::store::Store::replace_if`]); expiry 0 = none.
    pub fn replace_if_expiring(
        &mut self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> bool {
        let done = self
            .shared
            .store
            .replace_if_expiring(key, expected, value, version, expires);
        self.forced |= done;
        done
    }

    /// `SYNC --full`: deletes a local-only record (a tombstone at a fresh
    /// local version, logged like any delete) if it is still a live value
    /// at `expected` ([`crate::store::Store::delete_if`]).
    pub fn delete_if(&mut self, key: &[u8], expected: Version) -> bool {
        let Some(v) = self.shared.store.delete_if(key, expected) else {
            return false;
        };
        if let Some(log) = &self.log {
            // A local write: its stamp is its version's clock.
            log.append(key, None, v, v.hlc);
        }
        true
    }
}
