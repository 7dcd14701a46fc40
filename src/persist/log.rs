//! Per-thread append-only log writers and the shared log state.
//!
//! Every thread that applies writes owns one [`LogWriter`]: each worker,
//! and each [`crate::applier::Applier`] (replication, anti-entropy). A writer
//! appends framed records ([`super::record`]) to an in-memory buffer and
//! writes the buffer to its own segment file `log-<epoch>-<name>.seg`:
//!
//! * at least once per event-loop turn ([`LogWriter::commit`], called by
//!   the worker before it writes the turn's replies), or whenever the
//!   buffer exceeds [`WRITE_THRESHOLD`];
//! * under `always`, `commit` also fsyncs, so one fsync covers a whole
//!   turn's pipelined batch (group commit) and no reply leaves before its
//!   record is durable;
//! * under `everysec`, a background flusher ([`LogShared::flush_all`])
//!   fsyncs every file with new data once a second (and writes buffers of
//!   idle appliers); under `no`, it only writes buffers.
//!
//! # Epochs and rotation
//!
//! A global epoch numbers the segment generations. A snapshot first bumps
//! the epoch and then copies the store shard by shard. A writer reads the
//! epoch *after* the store applied the write (appends always follow the
//! store operation), and a record goes to the segment of the epoch it read;
//! on a new epoch the writer finishes its old segment and opens a new one
//! at its next append.
//!
//! Invariant: a record in a segment of epoch `e` was applied to the store
//! before the epoch moved past `e`. Proof sketch: the writer applied the
//! write under the shard lock and read the epoch afterwards; had the bump
//! happened-before that shard's snapshot copy and the copy
//! happened-before the write, the writer's read would be ordered after the
//! bump through the shard mutex and would have returned the new epoch.
//! So every record in a segment older than a snapshot's epoch is contained
//! in that snapshot, and the snapshot may delete those segments — even
//! while a writer still holds one open (its remaining writes go to an
//! unlinked file and are covered all the same).
//!
//! # Errors
//!
//! Writes are positioned: a writer writes its buffer at `written`, the
//! length of the segment's intact prefix, never at a file cursor. A failed
//! write (which may have written part of a record) is undone by cutting
//! the file back to `written`; if even that fails, the cut is retried
//! before the next write. So a retry continues exactly after the last good
//! record: never after a partial record or a run of zeros, which recovery
//! would take for corruption and cut, losing every later record of the
//! segment. The buffer is kept for the retry up to [`MAX_BUFFER`]; beyond
//! that its records are dropped and counted. Under `always` a write or fsync error
//! is fatal to the process: replies of the turn are already encoded and
//! must not be sent for writes that may not be durable.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::record::{self, FORMAT, Kind};
use crate::config::FsyncPolicy;
use crate::store::Version;
use crate::sync::lock;

/// Buffered bytes that trigger a write before the end of the turn.
pub const WRITE_THRESHOLD: usize = 256 << 10;
/// Buffered bytes kept for retry after write errors; beyond this the
/// buffer's records are dropped (and counted).
pub const MAX_BUFFER: usize = 64 << 20;
/// Magic key of a segment's header record.
pub const LOG_MAGIC: &[u8] = b"merklekv-log";
/// Minimum time between two error log lines of one writer.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// File name of a segment.
pub fn segment_name(epoch: u64, writer: &str) -> String {
    format!("log-{epoch:010}-{writer}.seg")
}

/// Epoch of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    let (epoch, writer) = rest.split_once('-')?;
    if writer.is_empty() || epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    epoch.parse().ok()
}

/// Makes a writer name safe for a file name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if s.is_empty() { "x".to_string() } else { s }
}

/// Fsyncs a directory so that created or renamed entries are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What a writer needs of a segment file: [`File`] in production; tests
/// wrap it to inject faults.
pub(crate) trait SegmentFile: Send + Sync {
    /// Writes a prefix of `buf` at `offset` (like [`io::Write::write`],
    /// but positioned), returning how many bytes it wrote.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable.
    fn sync_data(&self) -> io::Result<()>;
}

impl SegmentFile for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Writes all of `buf` at `offset`. On error, part of it may be written.
fn write_all_at(f: &dyn SegmentFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Turns a freshly created segment file into a writer's handle.
type WrapSegment = Box<dyn Fn(File) -> Arc<dyn SegmentFile> + Send + Sync>;

/// State shared by every writer of a node and the background threads.
pub struct LogShared {
    pub(crate) dir: PathBuf,
    pub(crate) policy: FsyncPolicy,
    /// Current epoch; segments are named by the epoch they belong to.
    pub(crate) epoch: AtomicU64,
    writers: Mutex<Vec<Weak<Mutex<WriterState>>>>,
    next_writer: AtomicU64,
    /// Bytes in live segment files (not yet covered by a snapshot).
    pub(crate) log_bytes: AtomicU64,
    /// A segment was created since the directory was last fsynced.
    dir_dirty: AtomicBool,
    pub(crate) write_errors: AtomicU64,
    pub(crate) dropped_records: AtomicU64,
    pub(crate) records: AtomicU64,
    /// Time of each segment fsync (any thread) and their total.
    pub(crate) fsync_latency: crate::metrics::histogram::Histogram,
    pub(crate) fsync_nanos: AtomicU64,
    wrap: WrapSegment,
}

impl LogShared {
    /// Shared state for the log in `dir`, starting at `epoch`, with
    /// `log_bytes` already on disk from before.
    pub fn new(dir: PathBuf, policy: FsyncPolicy, epoch: u64, log_bytes: u64) -> LogShared {
        LogShared {
            dir,
            policy,
            epoch: AtomicU64::new(epoch),
            writers: Mutex::new(Vec::new()),
            next_writer: AtomicU64::new(0),
            log_bytes: AtomicU64::new(log_bytes),
            dir_dirty: AtomicBool::new(false),
            write_errors: AtomicU64::new(0),
            dropped_records: AtomicU64::new(0),
            records: AtomicU64::new(0),
            fsync_latency: Default::default(),
            fsync_nanos: AtomicU64::new(0),
            wrap: Box::new(|f| Arc::new(f)),
        }
    }

    /// Wraps every segment file a writer opens (fault injection in tests).
    #[cfg(test)]
    pub(crate) fn with_wrapper(
        mut self,
        wrap: impl Fn(File) -> Arc<dyn SegmentFile> + Send + Sync + 'static,
    ) -> LogShared {
        self.wrap = Box::new(wrap);
        self
    }

    /// A new writer named `name` (unique per process: appliers get a
    /// sequence number in front).
    pub fn writer(self: &Arc<Self>, name: &str, unique: bool) -> LogWriter {
        let name = if unique {
            sanitize(name)
        } else {
            let n = self.next_writer.fetch_add(1, Ordering::Relaxed);
            format!("a{n}_{}", sanitize(name))
        };
        let state = Arc::new(Mutex::new(WriterState {
            name,
            epoch: 0,
            file: None,
            written: 0,
            dirty_tail: false,
            synced: 0,
            new_file: false,
            buf: Vec::new(),
            buf_records: 0,
            retired: Vec::new(),
            last_error_log: None,
        }));
        let mut ws = lock(&self.writers);
        ws.retain(|w| w.strong_count() > 0);
        ws.push(Arc::downgrade(&state));
        drop(ws);
        LogWriter {
            state,
            shared: self.clone(),
            uncommitted: Cell::new(false),
        }
    }

    /// Writes every writer's buffer and, with `sync`, fsyncs every file
    /// with unsynced data (the `everysec` flusher; also used at shutdown).
    /// Fsyncs run outside the writers' locks.
    pub fn flush_all(&self, sync: bool) {
        let writers: Vec<_> = lock(&self.writers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for w in writers {
            let (file, target, retired) = {
                let mut st = lock(&w);
                let _ = st.write_out(self);
                let file = (st.synced < st.written).then(|| st.file.clone()).flatten();
                (file, st.written, std::mem::take(&mut st.retired))
            };
            if !sync {
                continue;
            }
            for f in &retired {
                self.sync_or_count(&**f);
            }
            if let Some(f) = file
                && self.sync_or_count(&*f)
            {
                let mut st = lock(&w);
                if st.file.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &f)) {
                    st.synced = st.synced.max(target);
                }
            }
        }
        if sync && self.dir_dirty.swap(false, Ordering::AcqRel) && sync_dir(&self.dir).is_err() {
            self.dir_dirty.store(true, Ordering::Release);
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `f.sync_data()`, timed into the fsync latency histogram.
    fn timed_sync(&self, f: &dyn SegmentFile) -> io::Result<()> {
        let start = std::time::Instant::now();
        let r = f.sync_data();
        let ns = start.elapsed().as_nanos() as u64;
        self.fsync_latency.record_shared(ns);
        self.fsync_nanos.fetch_add(ns, Ordering::Relaxed);
        r
    }

    fn sync_or_count(&self, f: &dyn SegmentFile) -> bool {
        match self.timed_sync(f) {
            Ok(()) => true,
            Err(e) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("persistence: fsync of a log segment failed: {e}");
                false
            }
        }
    }
}

/// One writer's mutable state (behind a mutex shared with the flusher).
struct WriterState {
    name: String,
    /// Epoch of `file` (or of the next file to open).
    epoch: u64,
    /// Current segment; opened lazily at the first write of an epoch.
    file: Option<Arc<dyn SegmentFile>>,
    /// Bytes successfully written to `file`: its intact prefix, where the
    /// next write goes.
    written: u64,
    /// A failed write may have left bytes after `written` that could not
    /// be cut yet: cut them before writing again.
    dirty_tail: bool,
    /// Prefix of `file` known to be fsynced.
    synced: u64,
    /// `file` was created and the directory not yet fsynced for it.
    new_file: bool,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    buf_records: u64,
    /// Finished segments of older epochs still to be fsynced (`everysec`).
    retired: Vec<Arc<dyn SegmentFile>>,
    last_error_log: Option<Instant>,
}

impl WriterState {
    fn open_segment(&mut self, shared: &LogShared) -> io::Result<()> {
        let mut header = Vec::new();
        record::encode(
            &mut header,
            Kind::Header,
            Version::new(self.epoch, FORMAT),
            0,
            LOG_MAGIC,
            self.name.as_bytes(),
        );
        let mut attempt = 0;
        let (file, path) = loop {
            let name = if attempt == 0 {
                segment_name(self.epoch, &self.name)
            } else {
                segment_name(self.epoch, &format!("{}_{attempt}", self.name))
            };
            let path = shared.dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let file = (shared.wrap)(file);
        if let Err(e) = write_all_at(&*file, &header, 0) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.file = Some(file);
        self.written = header.len() as u64;
        self.dirty_tail = false;
        self.synced = 0;
        self.new_file = true;
        shared
            .log_bytes
            .fetch_add(header.len() as u64, Ordering::Relaxed);
        shared.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the buffer to the current segment (opening it if needed).
    fn write_out(&mut self, shared: &LogShared) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.try_write(shared);
        if let Err(e) = &res {
            shared.write_errors.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            if self
                .last_error_log
                .is_none_or(|t| now.duration_since(t) >= ERROR_LOG_EVERY)
            {
                self.last_error_log = Some(now);
                log::error!(
                    "persistence: writing log segment {} failed: {e} ({} bytes buffered)",
                    segment_name(self.epoch, &self.name),
                    self.buf.len()
                );
            }
            if self.buf.len() > MAX_BUFFER {
                shared
                    .dropped_records
                    .fetch_add(self.buf_records, Ordering::Relaxed);
                log::error!(
                    "persistence: dropped {} buffered log records after repeated write errors",
                    self.buf_records
                );
                self.buf = Vec::new();
                self.buf_records = 0;
            }
        }
        res
    }

    fn try_write(&mut self, shared: &LogShared) -> io::Result<()> {
        if self.file.is_none() {
            self.open_segment(shared)?;
        }
        let file = self.file.as_ref().expect("segment is open");
        if self.dirty_tail {
            file.set_len(self.written)?;
            self.dirty_tail = false;
        }
        if let Err(e) = write_all_at(&**file, &self.buf, self.written) {
            // Undo a partial write: the segment ends at its last intact
            // record again, and the retry writes there.
            self.dirty_tail = file.set_len(self.written).is_err();
            return Err(e);
        }
        let n = self.buf.len() as u64;
        self.written += n;
        shared.log_bytes.fetch_add(n, Ordering::Relaxed);
        shared
            .records
            .fetch_add(self.buf_records, Ordering::Relaxed);
        self.buf.clear();
        self.buf_records = 0;
        if self.buf.capacity() > 4 * WRITE_THRESHOLD {
            self.buf.shrink_to(WRITE_THRESHOLD);
        }
        Ok(())
    }

    /// Makes everything written durable (file, and its directory entry).
    fn sync(&mut self, shared: &LogShared) -> io::Result<()> {
        if let Some(f) = &self.file
            && self.synced < self.written
        {
            shared.timed_sync(&**f)?;
            self.synced = self.written;
        }
        for f in std::mem::take(&mut self.retired) {
            shared.timed_sync(&*f)?;
        }
        if self.new_file {
            sync_dir(&shared.dir)?;
            self.new_file = false;
        }
        Ok(())
    }

    /// Finishes the current segment and moves to `epoch`.
    fn rotate(&mut self, shared: &LogShared, epoch: u64) -> io::Result<()> {
        let mut res = Ok(());
        if self.file.is_some() {
            // Records buffered so far were read under the old epoch; they
            // may go to either file (see the module docs), so a failed
            // write simply carries them into the new segment.
            res = self.write_out(shared);
            match shared.policy {
                FsyncPolicy::Always => {
                    if res.is_ok() {
                        res = self.sync(shared);
                    }
                }
                FsyncPolicy::EverySec => {
                    if self.synced < self.written
                        && let Some(f) = self.file.clone()
                    {
                        self.retired.push(f);
                    }
                }
                FsyncPolicy::No => {}
            }
            self.file = None;
        }
        self.epoch = epoch;
        self.written = 0;
        self.dirty_tail = false;
        self.synced = 0;
        res
    }
}

/// A thread's handle on its own log segment.
pub struct LogWriter {
    state: Arc<Mutex<WriterState>>,
    shared: Arc<LogShared>,
    /// Records were appended since the last commit.
    uncommitted: Cell<bool>,
}

impl LogWriter {
    /// Appends one applied write: `value: None` is a tombstone; `stamp` is
    /// the write's replay stamp (`store::durable`).
    pub fn append(&self, key: &[u8], value: Option<&[u8]>, version: Version, stamp: u64) {
        self.append_expiring(key, value, version, stamp, 0);
    }

    /// [`LogWriter::append`] of a record with an expiry (Unix ms, 0 = none).
    pub fn append_expiring(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        stamp: u64,
        expires: u64,
    ) {
        let kind = if value.is_some() {
            Kind::Put
        } else {
            Kind::Tombstone
        };
        self.push(kind, version, stamp, key, value.unwrap_or(&[]), expires);
    }

    /// Appends a clear (FLUSHDB/TRUNCATE) with its floor.
    pub fn append_clear(&self, floor: u64) {
        self.push(Kind::Clear, Version::new(floor, 0), floor, &[], &[], 0);
    }

    fn push(
        &self,
        kind: Kind,
        version: Version,
        stamp: u64,
        key: &[u8],
        value: &[u8],
        expires: u64,
    ) {
        // Read after the store operation: see "Epochs and rotation".
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let mut st = lock(&self.state);
        if st.epoch != epoch {
            let res = st.rotate(&self.shared, epoch);
            self.check(res);
        }
        if !record::encode_expiring(&mut st.buf, kind, version, stamp, key, value, expires) {
            self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
            self.shared.dropped_records.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "persistence: a record of {} bytes exceeds the log's limit and was not logged",
                key.len() + value.len()
            );
            return;
        }
        st.buf_records += 1;
        self.uncommitted.set(true);
        if st.buf.len() >= WRITE_THRESHOLD {
            let res = st.write_out(&self.shared);
            self.check(res);
        }
    }

    /// True when records were appended since the last [`commit`]: under
    /// `always`, replies must wait for the commit.
    ///
    /// [`commit`]: LogWriter::commit
    #[inline]
    pub fn must_commit_before_reply(&self) -> bool {
        self.uncommitted.get() && self.shared.policy == FsyncPolicy::Always
    }

    /// Ends a batch (an event-loop turn, or an applier's batch): writes the
    /// buffer, and under `always` fsyncs it. Errors are logged (and counted);
    /// under `always` they end the process, since the batch's replies must
    /// not be sent.
    pub fn commit(&self) {
        if !self.uncommitted.get() {
            return;
        }
        let res = {
            let mut st = lock(&self.state);
            let mut res = st.write_out(&self.shared);
            if res.is_ok() && self.shared.policy == FsyncPolicy::Always {
                res = st.sync(&self.shared);
            }
            res
        };
        self.check(res);
        self.uncommitted.set(false);
    }

    fn check(&self, res: io::Result<()>) {
        if let Err(e) = res
            && self.shared.policy == FsyncPolicy::Always
        {
            log::error!(
                "persistence: cannot make the log durable ({e}) with fsync = always; \
                 exiting so that no write is acknowledged without being durable"
            );
            std::process::exit(1);
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        let mut res = st.write_out(&self.shared);
        if res.is_ok() && self.shared.policy != FsyncPolicy::No {
            res = st.sync(&self.shared);
        }
        if let Err(e) = res {
            log::error!(
                "persistence: final write of log segment {} failed: {e}",
                segment_name(st.epoch, &st.name)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::record::{Item, Reader};
    use crate::testutil::TempDir;

    /// Keys of the data records in a segment file.
    fn keys_in(path: &Path) -> Vec<String> {
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        let mut r = Reader::new(f, len);
        let mut keys = Vec::new();
        loop {
            match r.next_item().unwrap() {
                Item::Rec(rec) if rec.kind == Kind::Header => assert_eq!(rec.key, LOG_MAGIC),
                Item::Rec(rec) => keys.push(String::from_utf8(rec.key.to_vec()).unwrap()),
                Item::End => return keys,
                Item::Damaged { .. } => panic!("damaged segment {}", path.display()),
            }
        }
    }

    fn put(w: &LogWriter, k: &str) {
        w.append(k.as_bytes(), Some(b"v"), Version::new(1, 1), 1);
    }

    #[test]
    fn records_reach_the_file_on_commit_and_flusher_and_rotate_by_epoch() {
        let d = TempDir::new("log-rotate");
        let log = Arc::new(LogShared::new(d.0.clone(), FsyncPolicy::EverySec, 1, 0));
        let w = log.writer("w0", true);
        let seg1 = d.0.join(segment_name(1, "w0"));
        put(&w, "a");
        assert!(
            !seg1.exists(),
            "segments are created lazily, at the first write"
        );
        assert!(!w.must_commit_before_reply(), "only under always");
        w.commit();
        assert_eq!(keys_in(&seg1), ["a"]);
        // An appended but uncommitted record is written by the flusher.
        put(&w, "b");
        log.flush_all(true);
        assert_eq!(keys_in(&seg1), ["a", "b"]);
        // A new epoch: the buffered record of the old epoch goes to the old
        // segment, the next one to a new segment.
        put(&w, "c");
        log.epoch.store(2, Ordering::Release);
        put(&w, "d");
        w.commit();
        assert_eq!(keys_in(&seg1), ["a", "b", "c"]);
        assert_eq!(keys_in(&d.0.join(segment_name(2, "w0"))), ["d"]);
        assert_eq!(log.records.load(Ordering::Relaxed), 4);
        // Appliers get unique names; dropping a writer writes its buffer.
        let a = log.writer("anti-entropy", false);
        let b = log.writer("anti-entropy", false);
        put(&a, "x");
        put(&b, "y");
        drop((a, b));
        assert_eq!(
            keys_in(&d.0.join(segment_name(2, "a0_anti_entropy"))),
            ["x"]
        );
        assert_eq!(
            keys_in(&d.0.join(segment_name(2, "a1_anti_entropy"))),
            ["y"]
        );
    }

    #[test]
    fn write_errors_keep_the_buffer_and_a_later_retry_succeeds() {
        let d = TempDir::new("log-errors");
        let gone = d.0.join("missing");
        let log = Arc::new(LogShared::new(gone.clone(), FsyncPolicy::No, 1, 0));
        let w = log.writer("w0", true);
        put(&w, "a");
        w.commit(); // the directory does not exist: the open fails
        assert_eq!(log.write_errors.load(Ordering::Relaxed), 1);
        put(&w, "b");
        std::fs::create_dir_all(&gone).unwrap();
        w.commit();
        assert_eq!(keys_in(&gone.join(segment_name(1, "w0"))), ["a", "b"]);
        assert_eq!(log.dropped_records.load(Ordering::Relaxed), 0);
    }

    /// Faults to inject into a segment's next operations.
    #[derive(Default)]
    struct Faults {
        /// Bytes the next writes may still write before one fails.
        fail_after: Option<usize>,
        /// Number of `set_len` calls still to fail.
        fail_set_len: u32,
    }

    /// A segment file whose writes fail mid-record when told to.
    struct Faulty {
        file: File,
        faults: Arc<Mutex<Faults>>,
    }

    impl SegmentFile for Faulty {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let mut f = lock(&self.faults);
            match f.fail_after {
                Some(0) => {
                    f.fail_after = None;
                    Err(io::Error::other("injected write failure"))
                }
                Some(budget) => {
                    // A short write: the caller must come back for the rest.
                    let n = FileExt::write_at(&self.file, &buf[..budget.min(buf.len())], offset)?;
                    f.fail_after = Some(budget - n);
                    Ok(n)
                }
                None => FileExt::write_at(&self.file, buf, offset),
            }
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            let mut f = lock(&self.faults);
            if f.fail_set_len > 0 {
                f.fail_set_len -= 1;
                return Err(io::Error::other("injected set_len failure"));
            }
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.file.sync_data()
        }
    }

    #[test]
    fn a_write_failing_mid_record_loses_nothing_acknowledged_before_or_after() {
        use crate::store::{Store, StoreOptions};
        let d = TempDir::new("log-fault");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f2 = faults.clone();
        let log = Arc::new(
            LogShared::new(d.0.clone(), FsyncPolicy::EverySec, 1, 0).with_wrapper(move |file| {
                Arc::new(Faulty {
                    file,
                    faults: f2.clone(),
                })
            }),
        );
        let opts = || StoreOptions {
            shards: 4,
            tree_bits: 12,
            node_id: "n1".into(),
            tombstone_ttl_ms: 3_600_000,
        };
        let live = Store::new(opts()).unwrap();
        let w = log.writer("w0", true);
        // Applies a write and logs it; under `everysec` its reply leaves at
        // the end of the turn, whether or not the write reached the file.
        let set = |k: &str, v: &str| {
            let ver = live.set(k.as_bytes(), v.as_bytes());
            w.append(k.as_bytes(), Some(v.as_bytes()), ver, ver.hlc);
        };
        set("a", "1");
        set("b", "2");
        w.commit();
        // 30 bytes reach the file, ending inside the first record; then
        // the write fails.
        lock(&faults).fail_after = Some(30);
        set("c", "3");
        set("d", "4");
        w.commit();
        assert_eq!(log.write_errors.load(Ordering::Relaxed), 1);
        // Fails again after 5 bytes, and so does the cut of those bytes: the
        // next write cuts them first.
        *lock(&faults) = Faults {
            fail_after: Some(5),
            fail_set_len: 1,
        };
        set("a", "5");
        w.commit();
        assert_eq!(log.write_errors.load(Ordering::Relaxed), 2);
        set("e", "6");
        w.commit();
        set("f", "7");
        w.commit();
        assert_eq!(log.write_errors.load(Ordering::Relaxed), 2);
        assert_eq!(log.dropped_records.load(Ordering::Relaxed), 0);
        let seg = d.0.join(segment_name(1, "w0"));
        assert_eq!(keys_in(&seg), ["a", "b", "c", "d", "a", "e", "f"]);
        drop(w);

        let back = Store::new(opts()).unwrap();
        let r = super::super::recovery::recover(&d.0, &back).unwrap();
        assert_eq!((r.damaged_files, r.dropped_bytes), (0, 0), "{r:?}");
        assert_eq!(r.log_records, 7);
        for (k, v) in [
            ("a", "5"),
            ("b", "2"),
            ("c", "3"),
            ("d", "4"),
            ("e", "6"),
            ("f", "7"),
        ] {
            let got = back.get(k.as_bytes(), |v| v.map(<[u8]>::to_vec));
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "key {k}");
        }
        assert_eq!(back.root(), live.root());
    }

    #[test]
    fn always_asks_for_a_commit_before_replies() {
        let d = TempDir::new("log-always");
        let log = Arc::new(LogShared::new(d.0.clone(), FsyncPolicy::Always, 1, 0));
        let w = log.writer("w0", true);
        assert!(!w.must_commit_before_reply());
        put(&w, "a");
        assert!(w.must_commit_before_reply());
        w.commit();
        assert!(!w.must_commit_before_reply());
        let st = lock(&w.state);
        assert_eq!(st.synced, st.written, "commit fsynced everything");
        assert!(!st.new_file, "and the directory entry");
    }

    #[test]
    fn segment_names_roundtrip() {
        assert_eq!(segment_name(42, "w0"), "log-0000000042-w0.seg");
        assert_eq!(parse_segment_name("log-0000000042-w0.seg"), Some(42));
        assert_eq!(parse_segment_name("log-7-a3_replication.seg"), Some(7));
        for bad in [
            "log-x-w0.seg",
            "log-1.seg",
            "log-1-.seg",
            "snap-1.snap",
            "log-1-w0.seg.corrupt",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
        assert_eq!(sanitize("anti-entropy/1"), "anti_entropy_1");
        assert_eq!(sanitize(""), "x");
    }
}
