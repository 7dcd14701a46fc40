//! Snapshots: a consistent copy of the store, written shard by shard.
//!
//! A snapshot file `snap-<epoch>.snap` is a header record (magic
//! [`SNAP_MAGIC`], its epoch), one put/tombstone record per entry, and an
//! end record holding the entry count. Every entry's stamp is its shard's
//! clock at copy time, an upper bound of the stamps of the entries copied
//! with it, so a clear floor replayed from the log drops exactly the
//! shards copied before that clear (see `store::durable`).
//!
//! Writing one ([`write()`]):
//!
//! 1. bump the log epoch: writers move to new segments at their next
//!    append; every record in an older segment is already in the store;
//! 2. copy shard by shard, holding one shard lock at a time only while the
//!    shard's records are encoded into a buffer (no I/O under the lock);
//! 3. write to `snap-<epoch>.tmp`, fsync, rename to `snap-<epoch>.snap`,
//!    fsync the directory: a crash leaves either the old or the new
//!    snapshot, never a partial one under the final name;
//! 4. delete segments and snapshots of older epochs (all covered).
//!
//! Consistency: the result is the state the store would have if every
//! write applied before step 1 was applied, plus some writes applied during
//! step 2. Those extra writes are also in the new-epoch segments, and
//! replaying them again is harmless (last-writer-wins is idempotent).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::log::{LogShared, parse_segment_name, sync_dir};
use super::record::{self, FORMAT, Kind};
use crate::store::{Store, Version};

/// Magic key of a snapshot's header record.
pub const SNAP_MAGIC: &[u8] = b"merklekv-snapshot";

/// File name of a snapshot.
pub fn snapshot_name(epoch: u64) -> String {
    format!("snap-{epoch:010}.snap")
}

/// File name of a snapshot being written.
pub fn temp_name(epoch: u64) -> String {
    format!("snap-{epoch:010}.tmp")
}

/// Epoch of a snapshot file name, if it is one.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let e = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    e.parse().ok()
}

/// What a finished snapshot wrote.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub epoch: u64,
    pub entries: u64,
    pub bytes: u64,
    pub duration: Duration,
    /// Log bytes deleted because the snapshot covers them.
    pub freed: u64,
}

/// Why a snapshot was not written.
#[derive(Debug)]
pub enum SnapshotError {
    /// Stopped on request (shutdown, deadline); nothing was replaced.
    Aborted,
    /// An I/O error on the given path; nothing was replaced.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Aborted => write!(f, "snapshot aborted"),
            SnapshotError::Io(p, e) => write!(f, "snapshot {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(_, e) => Some(e),
            SnapshotError::Aborted => None,
        }
    }
}

/// Writes a snapshot of `store` (see the module docs). `abort` is polled
/// between shards; when it returns true the temporary file is removed.
pub fn write(
    store: &Store,
    log: &LogShared,
    abort: &dyn Fn() -> bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let started = Instant::now();
    let dir = &log.dir;
    let epoch = log.epoch.fetch_add(1, Ordering::AcqRel) + 1;
    let tmp = dir.join(temp_name(epoch));
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| SnapshotError::Io(p, e)
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut buf = Vec::with_capacity(1 << 20);
        record::encode(
            &mut buf,
            Kind::Header,
            Version::new(epoch, FORMAT),
            0,
            SNAP_MAGIC,
            &[],
        );
        let mut entries = 0u64;
        let mut bytes = 0u64;
        for i in 0..store.shard_count() {
            if abort() {
                return Err(SnapshotError::Aborted);
            }
            let now = crate::store::now_millis();
            store.snapshot_shard(i, |clock, r| {
                // An expired record is written as the tombstone of its
                // version (what it is on every node from now on).
                let (kind, value, expires) = match r.value_at(now) {
                    Some(v) => (Kind::Put, v, r.expires()),
                    None => (Kind::Tombstone, &[][..], 0),
                };
                // Store limits keep records far below the frame limit.
                record::encode_expiring(
                    &mut buf,
                    kind,
                    r.version(),
                    clock,
                    r.key(),
                    value,
                    expires,
                );
                entries += 1;
            });
            out.write_all(&buf).map_err(io_err(&tmp))?;
            bytes += buf.len() as u64;
            buf.clear();
        }
        record::encode(&mut buf, Kind::End, Version::new(entries, 0), 0, &[], &[]);
        out.write_all(&buf).map_err(io_err(&tmp))?;
        bytes += buf.len() as u64;
        let file = out
            .into_inner()
            .map_err(|e| SnapshotError::Io(tmp.clone(), e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        if abort() {
            return Err(SnapshotError::Aborted);
        }
        let path = dir.join(snapshot_name(epoch));
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(dir).map_err(io_err(dir))?;
        Ok((entries, bytes))
    })();
    let (entries, bytes) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let (freed, kept) = remove_covered(dir, epoch);
    // Re-base the counter on what is on disk (writes that raced with the
    // deletion into already unlinked segments would otherwise linger).
    log.log_bytes.store(kept, Ordering::Release);
    Ok(SnapshotInfo {
        epoch,
        entries,
        bytes,
        duration: started.elapsed(),
        freed,
    })
}

/// Deletes segments and snapshots older than `epoch`; returns the segment
/// bytes freed and the bytes of the segments kept. Failures are logged: a
/// leftover file is only disk space, since recovery ignores files older
/// than the newest snapshot.
pub fn remove_covered(dir: &Path, epoch: u64) -> (u64, u64) {
    let (mut freed, mut kept) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let (old, is_log) = match (parse_segment_name(name), parse_snapshot_name(name)) {
            (Some(s), _) => (s < epoch, true),
            (_, Some(s)) => (s < epoch, false),
            _ => continue,
        };
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        if !old {
            if is_log {
                kept += len;
            }
            continue;
        }
        match std::fs::remove_file(e.path()) {
            Ok(()) => {
                if is_log {
                    freed += len;
                }
            }
            Err(err) => log::warn!(
                "persistence: cannot remove covered file {}: {err}",
                e.path().display()
            ),
        }
    }
    (freed, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_roundtrip() {
        assert_eq!(snapshot_name(3), "snap-0000000003.snap");
        assert_eq!(parse_snapshot_name("snap-0000000003.snap"), Some(3));
        assert_eq!(parse_snapshot_name("snap-0000000003.tmp"), None);
        assert_eq!(parse_snapshot_name("snap-.snap"), None);
        assert_eq!(parse_snapshot_name("snap-1a.snap"), None);
    }
}
