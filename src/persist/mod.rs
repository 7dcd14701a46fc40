//! Persistence for the `sled` / `storage.persistence_enabled` engine: a
//! per-thread append-only log, periodic snapshots, crash recovery.
//!
//! # Files under `storage_path`
//!
//! ```text
//! LOCK                        flock'ed while a process uses the directory
//! snap-<epoch>.snap           newest snapshot (snapshot.rs)
//! log-<epoch>-<writer>.seg    log segments, one per writing thread and epoch (log.rs)
//! *.corrupt                   damaged files kept for inspection (never read)
//! ```
//!
//! All files are sequences of checksummed records (record.rs). The format
//! is this project's own; `sled` in a configuration only selects it.
//!
//! # Write path
//!
//! Every applied write reaches the log exactly once, after the store
//! applied it: local writes through `exec::Ctx::wrote` (the worker's
//! [`LogWriter`]), remote writes through `applier::Applier` (one writer per
//! applying thread). A write is logged with its version and its *stamp*
//! (`store::durable`); FLUSHDB/TRUNCATE log a clear record with a floor.
//! Fsync policies, group commit and rotation: see [`log`].
//!
//! # Snapshots
//!
//! A background thread writes a snapshot every `snapshot_interval` when the
//! log has grown, when the log exceeds `max(64 MiB, 2 × last snapshot)`,
//! right after a recovery that replayed log segments, and once more on a
//! clean shutdown if it fits the shutdown budget. A snapshot deletes the
//! segments it covers. See [`snapshot`].
//!
//! # Recovery
//!
//! `Node::start` calls [`Persist::open`] before binding the port: it takes
//! the directory lock and recovers the store ([`recovery`]).
//!
//! # Shutdown
//!
//! After the worker and background threads stopped (each log writer writes
//! and fsyncs its buffer when dropped), [`Persist::shutdown`] flushes and
//! fsyncs whatever is left and writes a final snapshot only if the last
//! snapshot's speed says it ends before the deadline (and aborts it at the
//! deadline otherwise): the log alone already holds everything.
//!
//! Overview: docs/architecture.md, "Persistence"; the file and record
//! format: docs/protocol.md §18.

pub mod log;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod threads;

use std::fmt::Write as _;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, FsyncPolicy};
use crate::store::Store;
use crate::sync::lock;

pub use log::{LogShared, LogWriter};
pub use recovery::RecoveryReport;
pub use snapshot::{SnapshotError, SnapshotInfo};

/// Name of the lock file inside `storage_path`.
pub const LOCK_FILE: &str = "LOCK";
/// The log size that triggers a snapshot before the interval is up is
/// `max(AUTO_SNAPSHOT_MIN, 2 × last snapshot size)`.
pub const AUTO_SNAPSHOT_MIN: u64 = 64 << 20;
/// How often the `everysec` flusher runs.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed snapshot before the next attempt.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Snapshot cost per entry assumed before the first snapshot was timed.
const DEFAULT_ENTRY_COST: Duration = Duration::from_nanos(1500);

/// Errors opening the persistent engine.
#[derive(Debug)]
pub enum PersistError {
    /// `storage_path` could not be created or opened.
    Dir(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    /// An I/O error on a file during recovery.
    Io(PathBuf, io::Error),
    /// The directory is not empty but holds nothing of ours.
    NotOurs { dir: PathBuf, files: Vec<String> },
    /// Our files are there but none can be read.
    NothingValid { dir: PathBuf, files: Vec<String> },
}

fn some_files(files: &[String]) -> String {
    let mut s = files
        .iter()
        .take(5)
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > 5 {
        let _ = write!(s, " and {} more", files.len() - 5);
    }
    s
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Dir(p, e) => {
                write!(f, "cannot use storage_path \"{}\": {e}", p.display())
            }
            PersistError::Locked(p) => write!(
                f,
                "storage_path \"{}\" is in use by another merklekv process (its {LOCK_FILE} file is locked)",
                p.display()
            ),
            PersistError::Io(p, e) => write!(f, "recovery failed on \"{}\": {e}", p.display()),
            PersistError::NotOurs { dir, files } => write!(
                f,
                "storage_path \"{}\" is not empty and holds no MerkleKV data (found {}); \
                 refusing to start so that nothing there is mistaken for an empty store: \
                 choose an empty directory or move those files",
                dir.display(),
                some_files(files)
            ),
            PersistError::NothingValid { dir, files } => write!(
                f,
                "storage_path \"{}\" holds MerkleKV files but none of them is readable ({}); \
                 refusing to start with an empty store: move the damaged files away to start empty",
                dir.display(),
                some_files(files)
            ),
        }
    }
}

impl std::error::Error for PersistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistError::Dir(_, e) | PersistError::Io(_, e) => Some(e),
            PersistError::Locked(_)
            | PersistError::NotOurs { .. }
            | PersistError::NothingValid { .. } => None,
        }
    }
}

/// Snapshot bookkeeping.
struct State {
    recovery: RecoveryReport,
    /// Unix seconds and details of the last snapshot written.
    last: Option<(u64, SnapshotInfo)>,
    snapshots: u64,
    /// When the last snapshot finished (or the node started).
    last_at: Instant,
    last_failure: Option<Instant>,
}

/// The persistent engine of a node.
pub struct Persist {
    log: Arc<LogShared>,
    snapshot_interval: Duration,
    state: Mutex<State>,
    /// Serialises snapshots.
    snapshot_lock: Mutex<()>,
    in_progress: AtomicBool,
    /// A snapshot was asked for (after recovery replayed the log).
    wanted: AtomicBool,
    /// Held (flock) for the life of the process.
    _lock: File,
}

impl Persist {
    /// Creates `storage_path` if needed, locks it and recovers `store`
    /// from it.
    pub fn open(config: &Config, store: &Store) -> Result<Persist, PersistError> {
        let dir = config.storage_path.clone();
        std::fs::create_dir_all(&dir).map_err(|e| PersistError::Dir(dir.clone(), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| PersistError::Dir(dir.clone(), e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(PersistError::Locked(dir)),
            Err(TryLockError::Error(e)) => return Err(PersistError::Dir(lock_path, e)),
        }
        let report = recovery::recover(&dir, store)?;
        if report.snapshot.is_some() || report.segments > 0 {
            ::log::info!(
                "persistence: recovered {} records ({} from the snapshot, {} from {} log segments{}) in {} ms",
                report.records(),
                report.snapshot_entries,
                report.log_records,
                report.segments,
                if report.cleared > 0 {
                    format!(", {} covered by FLUSHDB", report.cleared)
                } else {
                    String::new()
                },
                report.duration.as_millis()
            );
        }
        let wanted = report.segments > 0 || report.damaged_files > 0;
        let clamped = report.clock_clamped;
        let log = Arc::new(LogShared::new(
            dir.clone(),
            config.fsync,
            report.next_epoch,
            report.log_bytes,
        ));
        let p = Persist {
            log,
            snapshot_interval: config.snapshot_interval,
            state: Mutex::new(State {
                recovery: report,
                last: None,
                snapshots: 0,
                last_at: Instant::now(),
                last_failure: None,
            }),
            snapshot_lock: Mutex::new(()),
            in_progress: AtomicBool::new(false),
            wanted: AtomicBool::new(wanted),
            _lock: lock_file,
        };
        if clamped {
            // Replayed floors lie beyond the clock bound: retire the
            // segments that hold them before any new write is stamped
            // below them (recovery.rs, "Clock bound").
            p.snapshot(store, &|| false)
                .map_err(|e| PersistError::Io(dir, io::Error::other(e.to_string())))?;
        }
        Ok(p)
    }

    /// A log writer for a worker: `name` must be unique in the process
    /// (e.g. `w0`).
    pub fn worker_writer(&self, name: &str) -> LogWriter {
        self.log.writer(name, true)
    }

    /// A log writer for a background applier; a sequence number keeps the
    /// file name unique.
    pub fn applier_writer(&self, name: &str) -> LogWriter {
        self.log.writer(name, false)
    }

    /// The fsync policy.
    pub fn policy(&self) -> FsyncPolicy {
        self.log.policy
    }

    /// The fsync latency histogram of the log's segments and the total
    /// fsync time in nanoseconds.
    pub fn fsync_latency(&self) -> (crate::metrics::histogram::Snapshot, u64) {
        let mut h = crate::metrics::histogram::Snapshot::default();
        self.log.fsync_latency.add_to(&mut h);
        (h, self.log.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Bytes in log segments not yet covered by a snapshot.
    pub fn log_bytes(&self) -> u64 {
        self.log.log_bytes.load(Ordering::Relaxed)
    }

    fn should_snapshot(&self) -> bool {
        if self.wanted.load(Ordering::Acquire) {
            return true;
        }
        let bytes = self.log_bytes();
        if bytes == 0 {
            return false;
        }
        let st = lock(&self.state);
        if st
            .last_failure
            .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
        {
            return false;
        }
        let last_size = st.last.as_ref().map_or(0, |(_, i)| i.bytes);
        st.last_at.elapsed() >= self.snapshot_interval
            || bytes >= AUTO_SNAPSHOT_MIN.max(2 * last_size)
    }

    /// `BGSAVE`: asks the snapshot thread for a snapshot soon. False when
    /// one is being written; then, with `schedule`, another one is asked
    /// for after it, and without, nothing changes.
    pub fn request_snapshot(&self, schedule: bool) -> bool {
        let busy = self.in_progress.load(Ordering::Acquire);
        if !busy || schedule {
            self.wanted.store(true, Ordering::Release);
        }
        !busy
    }

    /// Unix seconds of the last successful snapshot of this process.
    pub fn last_snapshot_unix(&self) -> Option<u64> {
        lock(&self.state).last.as_ref().map(|(t, _)| *t)
    }

    /// Writes a snapshot now (serialised with any other snapshot).
    pub fn snapshot(
        &self,
        store: &Store,
        abort: &dyn Fn() -> bool,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let _one = lock(&self.snapshot_lock);
        self.in_progress.store(true, Ordering::Release);
        self.wanted.store(false, Ordering::Release);
        let res = snapshot::write(store, &self.log, abort);
        self.in_progress.store(false, Ordering::Release);
        let mut st = lock(&self.state);
        match &res {
            Ok(info) => {
                ::log::info!(
                    "persistence: snapshot of {} entries ({} bytes) in {} ms; {} log bytes freed",
                    info.entries,
                    info.bytes,
                    info.duration.as_millis(),
                    info.freed
                );
                st.last = Some((crate::clock::unix_millis() / 1000, info.clone()));
                st.snapshots += 1;
                st.last_at = Instant::now();
                st.last_failure = None;
            }
            Err(SnapshotError::Aborted) => {
                ::log::debug!("persistence: snapshot aborted");
            }
            Err(e) => {
                ::log::error!("persistence: {e}");
                st.last_failure = Some(Instant::now());
            }
        }
        res
    }

    /// Final flush at shutdown, after every writing thread stopped: write
    /// and fsync every log buffer, then write a snapshot if it can finish
    /// before `deadline` (see the module docs).
    pub fn shutdown(&self, store: &Store, deadline: Instant) {
        self.log.flush_all(self.policy() != FsyncPolicy::No);
        if self.log_bytes() == 0 && !self.wanted.load(Ordering::Acquire) {
            ::log::info!("persistence: log flushed; snapshot is current");
            return;
        }
        let per_entry = lock(&self.state)
            .last
            .as_ref()
            .filter(|(_, i)| i.entries > 0)
            .map_or(DEFAULT_ENTRY_COST, |(_, i)| {
                i.duration / i.entries.min(u32::MAX as u64) as u32
            });
        let entries = (store.len() + store.tombstones()) as u32;
        let estimate = per_entry * entries + Duration::from_millis(10);
        let now = Instant::now();
        if now + estimate > deadline {
            ::log::info!(
                "persistence: log flushed; final snapshot skipped (estimated {} ms, {} ms left)",
                estimate.as_millis(),
                deadline.saturating_duration_since(now).as_millis()
            );
            return;
        }
        match self.snapshot(store, &|| Instant::now() > deadline) {
            Ok(_) => ::log::info!("persistence: log flushed; final snapshot written"),
            Err(e) => ::log::info!("persistence: log flushed; final snapshot not written: {e}"),
        }
    }

    /// Writes the INFO lines of the persistent engine.
    pub fn write_info(&self, s: &mut String) {
        let st = lock(&self.state);
        let policy = match self.policy() {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        };
        let _ = write!(
            s,
            "persistence:1\r\npersist_fsync:{policy}\r\npersist_log_bytes:{}\r\npersist_log_records:{}\r\npersist_epoch:{}\r\n",
            self.log_bytes(),
            self.log.records.load(Ordering::Relaxed),
            self.log.epoch.load(Ordering::Relaxed),
        );
        let (unix, ms, entries, bytes) = st.last.as_ref().map_or((0, 0, 0, 0), |(t, i)| {
            (*t, i.duration.as_millis(), i.entries, i.bytes)
        });
        let _ = write!(
            s,
            "persist_snapshots:{}\r\npersist_snapshot_in_progress:{}\r\npersist_last_snapshot_unix:{unix}\r\npersist_last_snapshot_ms:{ms}\r\npersist_last_snapshot_entries:{entries}\r\npersist_last_snapshot_bytes:{bytes}\r\n",
            st.snapshots,
            self.in_progress.load(Ordering::Relaxed) as u8,
        );
        let (fsyncs, _) = self.fsync_latency();
        let _ = write!(
            s,
            "persist_fsyncs:{}\r\npersist_fsync_p99_usec:{}\r\n",
            fsyncs.count(),
            fsyncs.percentile(99.0) / 1000
        );
        let r = &st.recovery;
        let _ = write!(
            s,
            "persist_recovery_records:{}\r\npersist_recovery_ms:{}\r\npersist_recovery_dropped_bytes:{}\r\npersist_recovery_dropped_records:{}\r\npersist_write_errors:{}\r\npersist_dropped_records:{}\r\n",
            r.records(),
            r.duration.as_millis(),
            r.dropped_bytes,
            r.dropped_records,
            self.log.write_errors.load(Ordering::Relaxed),
            self.log.dropped_records.load(Ordering::Relaxed),
        );
    }
}
