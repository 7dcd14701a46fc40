//! Crash recovery: newest valid snapshot + every later log segment.
//!
//! 1. List the directory. Leftover temporary snapshots are deleted (they
//!    never replaced anything). Files that are not ours make startup fail
//!    when nothing of ours is there (never mistake a foreign directory,
//!    e.g. a 1.x sled directory, for an empty store).
//! 2. Pick the newest snapshot whose header is valid (an unreadable one is
//!    renamed `*.corrupt` and the next older one is tried). Segments of
//!    older epochs are covered by it and ignored.
//! 3. Pass 1 over the segments: validate every record, find the torn or
//!    corrupt tail of each, and the largest clear floor.
//! 4. Load the snapshot, then replay the segments, applying every put and
//!    tombstone stamped above the floor with last-writer-wins
//!    (`Store::apply`, which also advances the clocks). Order across
//!    segments does not matter: LWW is commutative, and the floor makes
//!    clears order independent (`store::durable`).
//! 5. Cut damage: a torn tail is truncated; a corrupt record stops its
//!    segment there (the records behind it are not replayed: resyncing
//!    could accept a forged frame inside a value), the file is kept as
//!    `<name>.corrupt`, and the segment is truncated. One warning line per
//!    damaged file says how many bytes and records were dropped.
//!
//! Startup fails only when the directory holds our files but none of them
//! is readable, or only foreign files: never silently start empty on top
//! of data.
//!
//! # Clock bound
//!
//! Replayed versions pass the same bound as received ones
//! ([`Store::accept_remote`], source `recovery`): a record dated more than
//! `max_clock_skew` ahead (say, accepted from a peer by an older release)
//! is refused and counted, never applied. The clocks are advanced past the
//! replayed stamps and clear floors, but never beyond that bound; when a
//! stamp or floor lies beyond it, [`RecoveryReport::clock_clamped`] asks
//! the caller to write a snapshot before the first new write, so that no
//! later replay sees those floors above the new writes' stamps.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::PersistError;
use super::log::{LOG_MAGIC, parse_segment_name};
use super::record::{
    Damage, FRAME, Item, Kind, Reader, count_after, decode_body, frame_len, next_frame,
};
use super::snapshot::{SNAP_MAGIC, parse_snapshot_name};
use crate::store::version::ceiling;
use crate::store::{Store, now_millis};

/// Source name of replayed records for the clock bound's counters.
const RECOVERY: &str = "recovery";

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<PathBuf>,
    /// Entries read from the snapshot.
    pub snapshot_entries: u64,
    /// Put/tombstone records read from log segments.
    pub log_records: u64,
    /// Segments replayed.
    pub segments: usize,
    /// Records skipped because a later clear (FLUSHDB) covers them.
    pub cleared: u64,
    /// Bytes and intact-looking records dropped at damage.
    pub dropped_bytes: u64,
    pub dropped_records: u64,
    /// Files with damage.
    pub damaged_files: usize,
    /// Wall time of the whole recovery.
    pub duration: Duration,
    /// First epoch the new process writes.
    pub next_epoch: u64,
    /// Bytes of the segments kept (not covered by a snapshot).
    pub log_bytes: u64,
    /// Records refused by the clock bound (module docs).
    pub refused: u64,
    /// A replayed stamp or clear floor lay beyond the clock bound: the
    /// clocks stopped at the bound, and a snapshot must be written before
    /// the first new write.
    pub clock_clamped: bool,
}

impl RecoveryReport {
    /// Data records read (snapshot entries + log records).
    pub fn records(&self) -> u64 {
        self.snapshot_entries + self.log_records
    }
}

/// Pass-1 result for one segment.
struct Segment {
    path: PathBuf,
    /// Bytes of intact records (including the header).
    valid: u64,
    len: u64,
    /// Header missing (file empty or torn while being created).
    headerless: bool,
    damage: Option<(u64, Damage, u64)>,
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> PersistError + '_ {
    move |e| PersistError::Io(p.to_path_buf(), e)
}

fn open(p: &Path) -> Result<(File, u64), PersistError> {
    let f = File::open(p).map_err(io_at(p))?;
    let len = f.metadata().map_err(io_at(p))?.len();
    Ok((f, len))
}

/// Outcome of reading a file's header record.
enum Header {
    Ok(u64),
    /// The file ends before its header is complete.
    Torn,
    Invalid(String),
}

fn read_header<R: Read>(r: &mut Reader<R>, magic: &[u8]) -> io::Result<Header> {
    Ok(match r.next_item()? {
        Item::End => Header::Torn,
        Item::Damaged {
            damage: Damage::Torn,
            ..
        } => Header::Torn,
        Item::Damaged {
            damage: Damage::Corrupt(why),
            ..
        } => Header::Invalid(why.to_string()),
        Item::Rec(h) if h.kind == Kind::Header && h.key == magic => {
            if !(1..=super::record::FORMAT).contains(&h.version.node) {
                Header::Invalid(format!("unsupported format version {}", h.version.node))
            } else {
                Header::Ok(h.version.hlc)
            }
        }
        Item::Rec(_) => Header::Invalid("not a MerkleKV file header".to_string()),
    })
}

/// Directory contents by kind.
#[derive(Default)]
struct Listing {
    snapshots: Vec<(u64, PathBuf)>,
    segments: Vec<(u64, PathBuf)>,
    foreign: Vec<String>,
}

fn list(dir: &Path) -> Result<Listing, PersistError> {
    let mut l = Listing::default();
    for e in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            l.foreign.push(name.to_string_lossy().into_owned());
            continue;
        };
        if let Some(ep) = parse_snapshot_name(name) {
            l.snapshots.push((ep, e.path()));
        } else if let Some(ep) = parse_segment_name(name) {
            l.segments.push((ep, e.path()));
        } else if name.starts_with("snap-") && name.ends_with(".tmp") {
            // An unfinished snapshot: it never replaced anything.
            let _ = std::fs::remove_file(e.path());
        } else if name == super::LOCK_FILE
            || name.ends_with(".corrupt")
            || name == "lost+found"
            // The node's last cluster contact (`crate::contact`).
            || name == "contact"
            || name == "contact.tmp"
        {
        } else {
            l.foreign.push(name.to_string());
        }
    }
    l.snapshots.sort();
    l.segments.sort();
    Ok(l)
}

fn rename_corrupt(p: &Path) -> PathBuf {
    let mut target = p.as_os_str().to_owned();
    target.push(".corrupt");
    let target = PathBuf::from(target);
    if let Err(e) = std::fs::rename(p, &target) {
        log::warn!("persistence: cannot rename {}: {e}", p.display());
    }
    target
}

fn copy_corrupt(p: &Path) -> PathBuf {
    let mut target = p.as_os_str().to_owned();
    target.push(".corrupt");
    let target = PathBuf::from(target);
    if let Err(e) = std::fs::copy(p, &target) {
        log::warn!("persistence: cannot keep a copy of {}: {e}", p.display());
    }
    target
}

/// Pass 1 over one segment (no changes to the file).
fn scan_segment(
    path: &Path,
    floor: &mut Option<u64>,
) -> Result<Result<Segment, String>, PersistError> {
    let (f, len) = open(path)?;
    let mut seg = Segment {
        path: path.to_path_buf(),
        valid: 0,
        len,
        headerless: false,
        damage: None,
    };
    let res = scan_log(&mut Reader::new(f, len), floor, &mut seg).map_err(io_at(path))?;
    Ok(res.map(|()| seg))
}

/// Pass 1 over the segment `r` reads: fills `seg`'s `valid`, `headerless`
/// and `damage`, and raises `floor` to the segment's largest clear floor.
/// `Err(why)` when the file is not a log segment.
fn scan_log<R: Read>(
    r: &mut Reader<R>,
    floor: &mut Option<u64>,
    seg: &mut Segment,
) -> io::Result<Result<(), String>> {
    match read_header(r, LOG_MAGIC)? {
        Header::Ok(_) => {}
        Header::Torn => {
            seg.headerless = true;
            if !r.is_empty() {
                seg.damage = Some((0, Damage::Torn, 0));
            }
            return Ok(Ok(()));
        }
        Header::Invalid(why) => return Ok(Err(why)),
    }
    loop {
        seg.valid = r.offset();
        match r.next_item()? {
            Item::Rec(rec) => match rec.kind {
                Kind::Put | Kind::Tombstone => {}
                Kind::Clear => *floor = (*floor).max(Some(rec.version.hlc)),
                Kind::Header | Kind::End => {
                    seg.damage = Some((seg.valid, Damage::Corrupt("unexpected record"), 0));
                    return Ok(Ok(()));
                }
            },
            Item::End => return Ok(Ok(())),
            Item::Damaged {
                offset,
                damage,
                frame,
            } => {
                let after = match damage {
                    Damage::Corrupt(_) => count_after(r, frame),
                    Damage::Torn => 0,
                };
                seg.damage = Some((offset, damage, after));
                return Ok(Ok(()));
            }
        }
    }
}

/// Which records a replay thread applies: those whose shard is
/// `index` modulo `count` (threads touch disjoint shards).
#[derive(Debug, Clone, Copy)]
struct Part {
    index: usize,
    count: usize,
}

impl Part {
    fn owns(&self, store: &Store, key: &[u8]) -> bool {
        self.count == 1 || store.shard_of(key) % self.count == self.index
    }
}

/// Totals of one replay thread.
#[derive(Default)]
struct Replay {
    /// Data records read, whoever owns them (a snapshot's end record
    /// counts them all).
    seen: u64,
    /// Data records owned by this thread.
    records: u64,
    /// Owned records dropped because a clear covers them.
    cleared: u64,
    /// Owned records refused by the clock bound.
    refused: u64,
    max_stamp: u64,
}

type Stop = Option<(u64, Damage, Option<u64>)>;

/// Applies the puts and tombstones of `r` owned by `part` and stamped
/// above `floor`. Returns the damage that stopped it, if any (snapshots
/// only: segments are replayed up to their validated length).
fn replay<R: Read>(
    r: &mut Reader<R>,
    store: &Store,
    floor: Option<u64>,
    snapshot: bool,
    part: Part,
    out: &mut Replay,
) -> io::Result<Stop> {
    let mut seen = 0u64;
    let res = loop {
        let at = r.offset();
        match r.next_item()? {
            Item::Rec(rec) => match rec.kind {
                Kind::Put | Kind::Tombstone => {
                    seen += 1;
                    out.max_stamp = out.max_stamp.max(rec.stamp);
                    if !part.owns(store, rec.key) {
                        continue;
                    }
                    out.records += 1;
                    if floor.is_some_and(|f| rec.stamp <= f) {
                        out.cleared += 1;
                    } else if !store.accept_remote(rec.version, RECOVERY) {
                        out.refused += 1;
                    } else {
                        store.apply_expiring(rec.key, rec.store_value(), rec.version, rec.expires);
                    }
                }
                Kind::Clear if !snapshot => {}
                Kind::End if snapshot => {
                    if rec.version.hlc != seen {
                        break Some((at, Damage::Corrupt("entry count mismatch"), None));
                    }
                    break match r.next_item()? {
                        Item::End => None,
                        _ => Some((r.offset(), Damage::Corrupt("data after end record"), None)),
                    };
                }
                _ => break Some((at, Damage::Corrupt("unexpected record"), None)),
            },
            Item::End if snapshot => break Some((at, Damage::Corrupt("missing end record"), None)),
            Item::End => break None,
            Item::Damaged {
                offset,
                damage,
                frame,
            } => break Some((offset, damage, frame)),
        }
    };
    out.seen += seen;
    Ok(res)
}

/// What one replay thread did.
#[derive(Default)]
struct PartResult {
    snapshot: Replay,
    /// Damage in the snapshot and the intact records after it (reported by
    /// thread 0 only).
    snapshot_damage: Option<(u64, Damage, u64)>,
    log: Replay,
}

/// Replays the snapshot and then every segment, applying `part`'s records.
fn replay_part(
    store: &Store,
    floor: Option<u64>,
    snapshot: Option<&Path>,
    segments: &[Segment],
    part: Part,
    window: usize,
) -> Result<PartResult, PersistError> {
    let mut res = PartResult::default();
    if let Some(path) = snapshot {
        let (f, len) = open(path)?;
        let mut r = Reader::new(f, len);
        let _ = r.next_item().map_err(io_at(path))?; // header, checked before
        let stop =
            replay(&mut r, store, floor, true, part, &mut res.snapshot).map_err(io_at(path))?;
        if let Some((offset, damage, frame)) = stop
            && part.index == 0
        {
            let after = match damage {
                Damage::Corrupt(_) => count_after(&mut r, frame),
                Damage::Torn => 0,
            };
            res.snapshot_damage = Some((offset, damage, after));
        }
    }
    for seg in segments.iter().filter(|s| !s.headerless) {
        let valid = seg.damage.map_or(seg.len, |(offset, ..)| offset);
        replay_segment(&seg.path, valid, store, floor, part, window, &mut res.log)?;
    }
    Ok(res)
}

/// Bytes of a segment replayed at a time.
const WINDOW: usize = 16 << 20;

/// Replays the first `valid` bytes of a segment (verified by pass 1) in
/// windows: the records of a window are applied in bucket order rather than
/// log order, which LWW allows and which keeps consecutive inserts in the
/// same shard tables (random order costs cache misses on every insert).
fn replay_segment(
    path: &Path,
    valid: u64,
    store: &Store,
    floor: Option<u64>,
    part: Part,
    window: usize,
    out: &mut Replay,
) -> Result<(), PersistError> {
    let f = File::open(path).map_err(io_at(path))?;
    replay_log(f, valid, store, floor, part, window, out).map_err(io_at(path))
}

/// [`replay_segment`] over any reader holding at least `valid` bytes.
fn replay_log(
    mut f: impl Read,
    valid: u64,
    store: &Store,
    floor: Option<u64>,
    part: Part,
    window: usize,
    out: &mut Replay,
) -> io::Result<()> {
    let changed = |what: &str| io::Error::other(format!("{what} on second read: the file changed"));
    let mut remaining = valid;
    let mut buf: Vec<u8> = Vec::new();
    let mut order: Vec<(u32, u32)> = Vec::new();
    let mut header = true;
    loop {
        // Top up to a window (more if one frame is larger).
        let target = window.max(frame_len(&buf).unwrap_or(FRAME));
        let want = (target.saturating_sub(buf.len()) as u64).min(remaining) as usize;
        let old = buf.len();
        buf.resize(old + want, 0);
        f.read_exact(&mut buf[old..])?;
        remaining -= want as u64;

        let mut pos = 0;
        order.clear();
        while let Some((body, n)) = next_frame(&buf[pos..]) {
            let rec = decode_body(body).map_err(changed)?;
            match rec.kind {
                Kind::Header if header => header = false,
                Kind::Put | Kind::Tombstone if !header => {
                    out.seen += 1;
                    out.max_stamp = out.max_stamp.max(rec.stamp);
                    if part.owns(store, rec.key) {
                        out.records += 1;
                        if floor.is_some_and(|fl| rec.stamp <= fl) {
                            out.cleared += 1;
                        } else if !store.accept_remote(rec.version, RECOVERY) {
                            out.refused += 1;
                        } else {
                            order.push((store.bucket_of_key(rec.key) as u32, pos as u32));
                        }
                    }
                }
                Kind::Clear if !header => {}
                _ => return Err(changed("unexpected record")),
            }
            pos += n;
        }
        order.sort_unstable();
        for &(_, p) in &order {
            let (body, _) = next_frame(&buf[p as usize..]).expect("parsed above");
            let rec = decode_body(body).expect("parsed above");
            store.apply_expiring(rec.key, rec.store_value(), rec.version, rec.expires);
        }
        buf.drain(..pos);
        if remaining == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(changed("incomplete record"))
            };
        }
    }
}

/// Threads used to replay (each applies the records of its own shards).
fn replay_threads(store: &Store) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_REPLAY_THREADS)
        .min(store.shard_count())
}

/// Upper bound on replay threads.
const MAX_REPLAY_THREADS: usize = 8;

fn describe(damage: Damage) -> String {
    match damage {
        Damage::Torn => "torn tail (interrupted append)".to_string(),
        Damage::Corrupt(why) => format!("corrupt record ({why})"),
    }
}

/// Recovers `store` from `dir` (see the module docs).
pub fn recover(dir: &Path, store: &Store) -> Result<RecoveryReport, PersistError> {
    recover_with(dir, store, WINDOW)
}

/// [`recover`] with a given replay window (tests use tiny ones).
fn recover_with(dir: &Path, store: &Store, window: usize) -> Result<RecoveryReport, PersistError> {
    let started = Instant::now();
    let listing = list(dir)?;
    let mut report = RecoveryReport::default();
    let max_epoch = listing
        .snapshots
        .iter()
        .chain(&listing.segments)
        .map(|(e, _)| *e)
        .max()
        .unwrap_or(0);
    report.next_epoch = max_epoch + 1;
    if listing.snapshots.is_empty() && listing.segments.is_empty() {
        if !listing.foreign.is_empty() {
            return Err(PersistError::NotOurs {
                dir: dir.to_path_buf(),
                files: listing.foreign,
            });
        }
        report.duration = started.elapsed();
        return Ok(report);
    }

    // Newest snapshot with a valid header.
    let mut invalid: Vec<(PathBuf, String)> = Vec::new();
    let mut chosen: Option<(u64, PathBuf)> = None;
    for (epoch, path) in listing.snapshots.iter().rev() {
        let (f, len) = open(path)?;
        let mut r = Reader::new(f, len);
        match read_header(&mut r, SNAP_MAGIC).map_err(io_at(path))? {
            Header::Ok(e) if e == *epoch => {
                chosen = Some((*epoch, path.clone()));
                break;
            }
            Header::Ok(e) => invalid.push((path.clone(), format!("header says epoch {e}"))),
            Header::Torn => invalid.push((path.clone(), "truncated header".to_string())),
            Header::Invalid(why) => invalid.push((path.clone(), why)),
        }
    }
    let snap_epoch = chosen.as_ref().map_or(0, |c| c.0);

    // Pass 1 over the segments the snapshot does not cover.
    let mut floor: Option<u64> = None;
    let mut segments = Vec::new();
    for (epoch, path) in &listing.segments {
        if *epoch < snap_epoch {
            continue;
        }
        match scan_segment(path, &mut floor)? {
            Ok(seg) => segments.push(seg),
            Err(why) => invalid.push((path.clone(), why)),
        }
    }
    if chosen.is_none() && segments.is_empty() {
        return Err(PersistError::NothingValid {
            dir: dir.to_path_buf(),
            files: invalid
                .iter()
                .map(|(p, why)| format!("{}: {why}", p.display()))
                .collect(),
        });
    }
    for (path, why) in &invalid {
        let kept = rename_corrupt(path);
        report.damaged_files += 1;
        log::warn!(
            "persistence: {} is unreadable ({why}); ignored, kept as {}",
            path.display(),
            kept.display()
        );
    }

    // Cut damaged segments before replaying them.
    for seg in &segments {
        let Some((offset, damage, after)) = seg.damage else {
            continue;
        };
        report.damaged_files += 1;
        let dropped = seg.len - offset;
        report.dropped_bytes += dropped;
        let records = match damage {
            Damage::Torn => 0,
            Damage::Corrupt(_) => 1 + after,
        };
        report.dropped_records += records;
        let kept = matches!(damage, Damage::Corrupt(_)).then(|| copy_corrupt(&seg.path));
        log::warn!(
            "persistence: log segment {}: {} at offset {offset}: dropped {dropped} bytes and {records} records{}",
            seg.path.display(),
            describe(damage),
            kept.map(|k| format!(
                " (1 damaged + {after} intact after it; original kept as {})",
                k.display()
            ))
            .unwrap_or_default()
        );
        let res = if seg.headerless {
            std::fs::remove_file(&seg.path)
        } else {
            OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .and_then(|f| f.set_len(offset).and_then(|()| f.sync_all()))
        };
        res.map_err(io_at(&seg.path))?;
    }

    // Pass 2: snapshot, then segments, one thread per group of shards.
    let pass2 = Instant::now();
    let count = replay_threads(store);
    let snap_path = chosen.as_ref().map(|c| c.1.clone());
    let parts: Vec<Result<PartResult, PersistError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..count)
            .map(|index| {
                let part = Part { index, count };
                let (snap, segments) = (snap_path.as_deref(), &segments[..]);
                sc.spawn(move || replay_part(store, floor, snap, segments, part, window))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a replay thread panicked"))
            .collect()
    });
    log::debug!(
        "persistence: recovery pass 1 {} ms, pass 2 {} ms ({count} threads)",
        (pass2 - started).as_millis(),
        pass2.elapsed().as_millis()
    );
    let mut totals = Replay::default();
    let mut snap_records = 0;
    let mut snap_damage = None;
    for part in parts {
        let part = part?;
        snap_records += part.snapshot.records;
        report.log_records += part.log.records;
        snap_damage = snap_damage.or(part.snapshot_damage);
        for r in [&part.snapshot, &part.log] {
            totals.cleared += r.cleared;
            totals.refused += r.refused;
            totals.max_stamp = totals.max_stamp.max(r.max_stamp);
        }
    }
    if let Some(path) = snap_path {
        if let Some((offset, damage, after)) = snap_damage {
            let len = std::fs::metadata(&path).map_or(offset, |m| m.len());
            let dropped = len.saturating_sub(offset);
            report.damaged_files += 1;
            report.dropped_bytes += dropped;
            report.dropped_records += after;
            let kept = copy_corrupt(&path);
            log::warn!(
                "persistence: snapshot {}: {} at offset {offset}: loaded {snap_records} entries before it, dropped {dropped} bytes and {after} intact-looking entries after it; original kept as {}",
                path.display(),
                describe(damage),
                kept.display()
            );
        }
        report.snapshot = Some(path);
    }
    report.snapshot_entries = snap_records;
    for seg in segments.iter().filter(|s| !s.headerless) {
        report.segments += 1;
        report.log_bytes += seg.damage.map_or(seg.len, |(offset, ..)| offset);
    }
    report.cleared = totals.cleared;
    report.refused = totals.refused;
    // New writes must be stamped above every replayed clear floor, and no
    // clock may leave the bound (module docs).
    let past_floor = floor.map_or(Some(0), |f| f.checked_add(1));
    let bound = ceiling(now_millis(), store.max_clock_skew());
    let advance = match past_floor {
        Some(p) if p.max(totals.max_stamp) <= bound => p.max(totals.max_stamp),
        _ => {
            report.clock_clamped = true;
            bound
        }
    };
    if advance > 0 {
        store.advance_clocks(advance);
    }
    if report.refused > 0 || report.clock_clamped {
        log::warn!(
            "persistence: recovery refused {} records dated more than max_clock_skew \
             ({} ms) ahead{}",
            report.refused,
            store.max_clock_skew(),
            if report.clock_clamped {
                "; stamps or FLUSHDB floors beyond it: the clocks stop at the bound \
                 and a snapshot is written before the first new write"
            } else {
                ""
            }
        );
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Recovery's two passes over `data` as one log segment, into `store`
/// (the fuzzing entry `crate::fuzz::log_segment`). Returns the records
/// replayed, or `None` if `data` is not a log segment. Panics if pass 2
/// cannot read what pass 1 validated.
pub fn replay_segment_bytes(data: &[u8], store: &Store, window: usize) -> Option<u64> {
    let len = data.len() as u64;
    let mut seg = Segment {
        path: PathBuf::new(),
        valid: 0,
        len,
        headerless: false,
        damage: None,
    };
    let mut floor = None;
    let res = scan_log(&mut Reader::new(data, len), &mut floor, &mut seg);
    if res.expect("reading a slice cannot fail").is_err() {
        return None;
    }
    let valid = seg.damage.map_or(len, |(offset, ..)| offset);
    assert!(valid <= len && seg.valid <= valid);
    if seg.headerless {
        return Some(0);
    }
    let mut out = Replay::default();
    let part = Part { index: 0, count: 1 };
    replay_log(data, valid, store, floor, part, window, &mut out)
        .expect("pass 2 reads what pass 1 validated");
    assert_eq!(out.seen, out.records);
    Some(out.records)
}

/// Recovery's snapshot reader over `data`, into `store` (the fuzzing entry
/// `crate::fuzz::snapshot`). Returns the entries read before the end or
/// the damage, or `None` if `data` has no valid snapshot header.
pub fn load_snapshot_bytes(data: &[u8], store: &Store) -> Option<u64> {
    let len = data.len() as u64;
    let mut r = Reader::new(data, len);
    match read_header(&mut r, SNAP_MAGIC).expect("reading a slice cannot fail") {
        Header::Ok(_) => {}
        Header::Torn | Header::Invalid(_) => return None,
    }
    let mut out = Replay::default();
    let part = Part { index: 0, count: 1 };
    let stop = replay(&mut r, store, None, true, part, &mut out).expect("reading a slice");
    match stop {
        None => assert_eq!(r.offset(), len, "a clean read ends at the end of the file"),
        Some((offset, damage, frame)) => {
            assert!(offset <= len);
            if let Damage::Corrupt(_) = damage {
                count_after(&mut r, frame);
            }
        }
    }
    Some(out.records)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::FsyncPolicy;
    use crate::persist::log::LogShared;
    use crate::persist::snapshot;
    use crate::store::{Applied, StoreOptions, Version, node_hash, now_millis};
    use crate::testutil::TempDir;

    fn store(shards: usize) -> Store {
        Store::new(StoreOptions {
            shards,
            tree_bits: 16,
            node_id: "n1".into(),
            tombstone_ttl_ms: 3_600_000,
        })
        .unwrap()
    }

    /// Local and remote writes, deletes, a snapshot in the middle, a clear
    /// and remote writes older than the clear after it, across three
    /// writers; returns the live store and the clear's floor.
    fn history(d: &Path) -> (Store, u64) {
        let live = store(16);
        let log = Arc::new(LogShared::new(d.to_path_buf(), FsyncPolicy::No, 1, 0));
        let (w0, w1) = (log.writer("w0", true), log.writer("w1", true));
        let remote = log.writer("replication", false);
        let peer = node_hash("peer");
        let now = now_millis() << 16;
        let local = |w: &crate::persist::LogWriter, k: &str, v: Option<&[u8]>| match v {
            Some(v) => {
                let ver = live.set(k.as_bytes(), v);
                w.append(k.as_bytes(), Some(v), ver, ver.hlc);
            }
            None => {
                if let Some(ver) = live.delete(k.as_bytes()) {
                    w.append(k.as_bytes(), None, ver, ver.hlc);
                }
            }
        };
        let apply = |k: &str, v: Option<&[u8]>, hlc: u64| {
            let (r, stamp) = live.apply_stamped(k.as_bytes(), v, Version::new(hlc, peer));
            if r == Applied::Stored {
                remote.append(k.as_bytes(), v, Version::new(hlc, peer), stamp);
            }
        };
        let big = vec![b'B'; 5000];
        for i in 0..300u64 {
            let w = if i % 2 == 0 { &w0 } else { &w1 };
            local(
                w,
                &format!("k{}", i % 120),
                Some(format!("v{i}").as_bytes()),
            );
            if i % 7 == 0 {
                local(w, &format!("k{}", (i * 3) % 120), None);
            }
            apply(&format!("r{}", i % 80), Some(b"remote"), now + i);
            if i == 150 {
                local(&w0, "big", Some(&big));
                snapshot::write(&live, &log, &|| false).unwrap();
            }
        }
        // A peer clock half a minute ahead (within max_clock_skew) puts the
        // clear's floor in the future: only advancing the clocks at
        // recovery keeps new writes above it.
        apply("future", Some(b"f"), now + (30_000 << 16));
        let floor = live.clear_versioned();
        w1.append_clear(floor);
        for i in 0..100u64 {
            // Older than the clear, applied after it: kept.
            apply(&format!("old{i}"), Some(b"old"), 1000 + i);
            local(&w0, &format!("after{}", i % 30), Some(b"x"));
            if i % 9 == 0 {
                apply(&format!("old{i}"), None, now + 5000 + i);
            }
        }
        drop((w0, w1, remote));
        (live, floor)
    }

    #[test]
    fn snapshot_plus_segments_replay_to_the_same_state_with_any_window() {
        let d = TempDir::new("recovery-replay");
        let (live, floor) = history(&d.0);
        // A window smaller than a frame header once made replay spin (found
        // by fuzzing).
        for (window, shards) in [(WINDOW, 16), (64, 1), (300, 64), (1, 4), (7, 2)] {
            let back = store(shards);
            let r = recover_with(&d.0, &back, window).unwrap();
            assert!(r.snapshot.is_some() && r.segments == 3, "{r:?}");
            assert!(r.cleared > 0, "{r:?}");
            assert_eq!(back.root(), live.root(), "window {window}");
            assert_eq!(
                (back.len(), back.tombstones()),
                (live.len(), live.tombstones())
            );
            assert_eq!(r.dropped_bytes, 0);
            // New writes are stamped above the replayed clear.
            for i in 0..50 {
                assert!(back.set(format!("new{i}").as_bytes(), b"1").hlc > floor);
            }
        }
    }

    #[test]
    fn versions_and_floors_past_the_clock_bound_are_refused_and_clamped() {
        // What an older release could have logged after a peer served
        // (u64::MAX, u64::MAX): the poisoned record, writes stamped at the
        // stuck clock, and a FLUSHDB whose floor is u64::MAX.
        let d = TempDir::new("recovery-bound");
        let log = Arc::new(LogShared::new(d.0.clone(), FsyncPolicy::No, 1, 0));
        let w = log.writer("w0", true);
        let now = now_millis() << 16;
        w.append(b"ok", Some(b"1"), Version::new(now, 1), now);
        w.append(
            b"poison",
            Some(b"x"),
            Version::new(u64::MAX, u64::MAX),
            u64::MAX,
        );
        w.append(
            b"ahead",
            Some(b"x"),
            Version::new(now + (3_600_000 << 16), 2),
            now,
        );
        drop(w);
        let s = store(4);
        let r = recover(&d.0, &s).unwrap();
        assert_eq!((r.refused, r.log_records), (2, 3), "{r:?}");
        assert!(r.clock_clamped, "the poisoned stamp lies beyond the bound");
        assert!(!s.contains(b"poison"));
        assert!(s.contains(b"ok"));
        assert_eq!(s.versions_refused(), 2);
        // The clocks stopped at the bound: new writes are dated (about) now.
        let v = s.set(b"new", b"1");
        assert!(v.millis() <= now_millis() + 61_000, "{v}");

        // A clear floor at u64::MAX: `floor + 1` must not wrap to 0.
        let d = TempDir::new("recovery-floor");
        let log = Arc::new(LogShared::new(d.0.clone(), FsyncPolicy::No, 1, 0));
        let w = log.writer("w0", true);
        w.append(b"before", Some(b"1"), Version::new(now, 1), now);
        w.append_clear(u64::MAX);
        drop(w);
        let s = store(4);
        let r = recover(&d.0, &s).unwrap();
        assert!(r.clock_clamped && r.cleared == 1, "{r:?}");
        assert!(s.set(b"new", b"1").millis() <= now_millis() + 61_000);
    }

    #[test]
    fn empty_directory_recovers_nothing_and_foreign_files_are_refused() {
        let d = TempDir::new("recovery-empty");
        let s = store(4);
        let r = recover(&d.0, &s).unwrap();
        assert_eq!((r.records(), r.next_epoch), (0, 1));
        std::fs::write(d.0.join("notes.txt"), b"hi").unwrap();
        assert!(matches!(
            recover(&d.0, &s),
            Err(PersistError::NotOurs { files, .. }) if files == ["notes.txt"]
        ));
    }
}
