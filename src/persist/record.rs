//! The record framing shared by log segments and snapshots, and a
//! streaming reader that tells a torn tail from corruption.
//!
//! # Frame
//!
//! ```text
//! u32le crc    CRC32C over the length and the body (the rest of the frame)
//! u32le len    length of the body
//! body:
//!   u8    kind   1 put, 2 tombstone, 3 clear, 4 header, 5 end,
//!                6 put with expiry (format 2)
//!   u64le hlc    version timestamp (clear: floor; header: epoch; end: count)
//!   u64le node   version origin    (header: format version)
//!   u64le stamp  replay stamp (see `store::durable`)
//!   u32le klen   key length
//!   key bytes, then value bytes (the rest of the body); kind 6 has
//!   u64le expiry (Unix ms) between key and value
//! ```
//!
//! Format 2 added kind 6; a format-1 file has none and reads unchanged.
//! A put of a record without an expiry is still written as kind 1.
//!
//! The checksum covers the length, so a flipped length bit is caught as
//! well. A file is a header record followed by data records (and, for a
//! snapshot, an end record).
//!
//! # Damage
//!
//! Reading stops at the first record that is not intact. It is a **torn
//! tail** — the expected result of a crash in the middle of an append —
//! when the record runs past the end of the file, when it is the last record
//! and fails its checksum, or when everything from it to the end is zero
//! (a file extended but never written). Anything else (bad checksum or
//! impossible length with more data behind it) is **corruption**. Reading
//! never resynchronises past damage by searching for a plausible frame: a
//! value may itself contain bytes that look like a valid record, and
//! accepting one would replay a write nobody made.
//!
//! Reference: docs/protocol.md §18.

use std::io::{self, Read};

use crate::store::Version;

/// Bytes before the body: length and checksum.
pub const FRAME: usize = 8;
/// Fixed part of a body: kind, hlc, node, stamp, klen.
pub const FIXED: usize = 29;
/// Largest body accepted; a larger length field is damage.
pub const MAX_BODY: usize = 64 << 20;
/// Version of the record format (in header records); readers accept
/// every version from 1 up to this one.
pub const FORMAT: u64 = 2;

/// Kind byte of a put with an expiry (decoded as [`Kind::Put`] with
/// [`Rec::expires`] set).
const PUT_EXPIRING: u8 = 6;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value at a version.
    Put,
    /// A deletion at a version.
    Tombstone,
    /// FLUSHDB/TRUNCATE: drops every record stamped at or below `hlc`.
    Clear,
    /// First record of a file: magic in the key, epoch in `hlc`.
    Header,
    /// Last record of a snapshot: entry count in `hlc`.
    End,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Put => 1,
            Kind::Tombstone => 2,
            Kind::Clear => 3,
            Kind::Header => 4,
            Kind::End => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Put,
            2 => Kind::Tombstone,
            3 => Kind::Clear,
            4 => Kind::Header,
            5 => Kind::End,
            _ => return None,
        })
    }
}

/// A decoded record borrowing from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec<'a> {
    pub kind: Kind,
    pub version: Version,
    pub stamp: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Absolute expiry of a put (Unix ms), 0 if none.
    pub expires: u64,
}

impl Rec<'_> {
    /// The value as the store sees it (`None` for a tombstone).
    pub fn store_value(&self) -> Option<&[u8]> {
        (self.kind == Kind::Put).then_some(self.value)
    }
}

/// Appends one framed record to `out`. Returns false (and appends nothing)
/// when the body would exceed [`MAX_BODY`].
pub fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    version: Version,
    stamp: u64,
    key: &[u8],
    value: &[u8],
) -> bool {
    encode_expiring(out, kind, version, stamp, key, value, 0)
}

/// [`encode`] with an expiry (Unix ms, 0 = none; only a put keeps one).
pub fn encode_expiring(
    out: &mut Vec<u8>,
    kind: Kind,
    version: Version,
    stamp: u64,
    key: &[u8],
    value: &[u8],
    expires: u64,
) -> bool {
    let expiring = kind == Kind::Put && expires != 0;
    let body = FIXED + key.len() + value.len() + if expiring { 8 } else { 0 };
    if body > MAX_BODY {
        return false;
    }
    let start = out.len();
    out.reserve(FRAME + body);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    out.push(if expiring { PUT_EXPIRING } else { kind.byte() });
    out.extend_from_slice(&version.hlc.to_le_bytes());
    out.extend_from_slice(&version.node.to_le_bytes());
    out.extend_from_slice(&stamp.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if expiring {
        out.extend_from_slice(&expires.to_le_bytes());
    }
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    true
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Why reading stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// An interrupted append at the end of the file.
    Torn,
    /// A damaged record with more data behind it.
    Corrupt(&'static str),
}

/// One step of a [`Reader`].
#[derive(Debug)]
pub enum Item<'a> {
    /// An intact record.
    Rec(Rec<'a>),
    /// The end of the file, right after an intact record.
    End,
    /// Damage at `offset`; nothing from there on was returned. `frame` is
    /// the damaged record's claimed frame length when that length was
    /// plausible and within the file (see [`Reader::skip`]).
    Damaged {
        offset: u64,
        damage: Damage,
        frame: Option<u64>,
    },
}

/// Reads framed records from a file of known length, buffering in place:
/// a record is handed out as slices of the internal buffer.
pub struct Reader<R> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Total length of the file.
    len: u64,
}

const CHUNK: usize = 1 << 20;

impl<R: Read> Reader<R> {
    /// A reader over `src`, which holds exactly `len` bytes.
    pub fn new(src: R, len: u64) -> Reader<R> {
        Reader {
            src,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            len,
        }
    }

    /// File offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Total length of the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes at least `n` bytes available at `buf[start..]` (the caller
    /// checked that the file holds them).
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let remaining = self.len - self.offset;
        let want = (n.max(CHUNK) as u64).min(remaining) as usize;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < n {
            let cap = want.min(self.buf.len());
            let got = self.src.read(&mut self.buf[self.end..cap])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            self.end += got;
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// True if every byte from the current offset to the end is zero.
    fn rest_is_zero(&mut self) -> io::Result<bool> {
        loop {
            let avail = self.end - self.start;
            if avail == 0 {
                let remaining = self.len - self.offset;
                if remaining == 0 {
                    return Ok(true);
                }
                self.fill((remaining as usize).min(CHUNK))?;
                continue;
            }
            if self.buf[self.start..self.end].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            self.consume(avail);
        }
    }

    /// The next record, the end, or the damage that stops reading.
    pub fn next_item(&mut self) -> io::Result<Item<'_>> {
        let at = self.offset;
        let remaining = self.len - at;
        if remaining == 0 {
            return Ok(Item::End);
        }
        let damaged = |damage, frame| Item::Damaged {
            offset: at,
            damage,
            frame,
        };
        if remaining < FRAME as u64 {
            return Ok(damaged(Damage::Torn, None));
        }
        self.fill(FRAME)?;
        let head = &self.buf[self.start..self.start + FRAME];
        let crc = u32_at(head, 0);
        let body = u32_at(head, 4) as usize;
        if !(FIXED..=MAX_BODY).contains(&body) {
            let zero = self.rest_is_zero()?;
            // rest_is_zero may have consumed bytes: the reader is finished
            // either way, so park it at the end.
            self.offset = self.len;
            self.start = self.end;
            return Ok(if zero {
                damaged(Damage::Torn, None)
            } else {
                damaged(Damage::Corrupt("impossible record length"), None)
            });
        }
        let frame = (FRAME + body) as u64;
        if frame > remaining {
            return Ok(damaged(Damage::Torn, None));
        }
        self.fill(FRAME + body)?;
        let b = &self.buf[self.start..self.start + FRAME + body];
        if crc32c::crc32c(&b[4..]) != crc {
            return Ok(if frame == remaining {
                damaged(Damage::Torn, Some(frame))
            } else {
                damaged(Damage::Corrupt("checksum mismatch"), Some(frame))
            });
        }
        if let Err(why) = decode_body(&b[FRAME..]) {
            return Ok(damaged(Damage::Corrupt(why), Some(frame)));
        }
        let s = self.start;
        self.consume(FRAME + body);
        let rec = decode_body(&self.buf[s + FRAME..s + FRAME + body]).expect("checked above");
        Ok(Item::Rec(rec))
    }

    /// Skips `frame` bytes (a damaged record whose length was plausible) to
    /// look at what follows; used only to report what damage cost.
    pub fn skip(&mut self, frame: u64) -> io::Result<()> {
        let frame = frame.min(self.len - self.offset);
        let avail = (self.end - self.start) as u64;
        if frame <= avail {
            self.consume(frame as usize);
            return Ok(());
        }
        let mut left = frame - avail;
        self.consume(avail as usize);
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            self.fill(n)?;
            self.consume(n);
            left -= n as u64;
        }
        Ok(())
    }
}

/// Decodes a record body (the part of a frame after the checksum and
/// length).
pub fn decode_body(body: &[u8]) -> Result<Rec<'_>, &'static str> {
    if body.len() < FIXED {
        return Err("record too short");
    }
    let expiring = body[0] == PUT_EXPIRING;
    let kind = if expiring {
        Kind::Put
    } else {
        Kind::from_byte(body[0]).ok_or("unknown record kind")?
    };
    let klen = u32_at(body, 25) as usize;
    if klen > body.len() - FIXED {
        return Err("key length past record");
    }
    let mut value = FIXED + klen;
    let mut expires = 0;
    if expiring {
        if body.len() - value < 8 {
            return Err("expiry past record");
        }
        expires = u64_at(body, value);
        value += 8;
    }
    Ok(Rec {
        kind,
        version: Version::new(u64_at(body, 1), u64_at(body, 9)),
        stamp: u64_at(body, 17),
        key: &body[FIXED..FIXED + klen],
        value: &body[value..],
        expires,
    })
}

/// The first frame of `buf`, whose checksum was verified before: its body
/// and its total length, or `None` if `buf` does not hold all of it.
/// [`frame_len`] tells how many bytes it needs.
pub fn next_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    let n = frame_len(buf)?;
    (buf.len() >= n).then(|| (&buf[FRAME..n], n))
}

/// Total length of the frame at the start of `buf` (`None` until its
/// length field is there).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= FRAME).then(|| FRAME + u32_at(buf, 4) as usize)
}

/// Counts the intact data records (puts, tombstones, clears) that follow
/// a damaged one, up to the next damage (reporting only).
pub fn count_after<R: Read>(reader: &mut Reader<R>, frame: Option<u64>) -> u64 {
    let Some(frame) = frame else { return 0 };
    if reader.skip(frame).is_err() {
        return 0;
    }
    let mut n = 0;
    while let Ok(Item::Rec(r)) = reader.next_item() {
        if matches!(r.kind, Kind::Put | Kind::Tombstone | Kind::Clear) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn rec(out: &mut Vec<u8>, i: u64, value: &[u8]) {
        assert!(encode(
            out,
            if value.is_empty() {
                Kind::Tombstone
            } else {
                Kind::Put
            },
            Version::new(i << 16, 7),
            i << 16,
            format!("key{i}").as_bytes(),
            value,
        ));
    }

    type Owned = (Kind, Vec<u8>, Vec<u8>, u64);

    fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<(u64, Damage)>) {
        let mut r = Reader::new(Cursor::new(bytes), bytes.len() as u64);
        let mut out = Vec::new();
        loop {
            match r.next_item().unwrap() {
                Item::Rec(x) => out.push((x.kind, x.key.to_vec(), x.value.to_vec(), x.stamp)),
                Item::End => return (out, None),
                Item::Damaged { offset, damage, .. } => return (out, Some((offset, damage))),
            }
        }
    }

    fn sample(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut b = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(b.len());
            let v = if i % 5 == 4 {
                Vec::new()
            } else {
                vec![b'a' + (i % 26) as u8; (i * 37 % 300) as usize + 1]
            };
            rec(&mut b, i, &v);
        }
        (b, offsets)
    }

    #[test]
    fn roundtrip_records_of_every_kind() {
        let mut b = Vec::new();
        assert!(encode(
            &mut b,
            Kind::Header,
            Version::new(9, FORMAT),
            0,
            b"MKVLOG",
            b"w0"
        ));
        rec(&mut b, 1, b"hello");
        rec(&mut b, 2, b"");
        assert!(encode(
            &mut b,
            Kind::Clear,
            Version::new(55, 0),
            55,
            b"",
            b""
        ));
        assert!(encode(&mut b, Kind::End, Version::new(3, 0), 0, b"", b""));
        let (recs, dmg) = read_all(&b);
        assert_eq!(dmg, None);
        let kinds: Vec<Kind> = recs.iter().map(|r| r.0).collect();
        assert_eq!(
            kinds,
            [
                Kind::Header,
                Kind::Put,
                Kind::Tombstone,
                Kind::Clear,
                Kind::End
            ]
        );
        assert_eq!(recs[1].1, b"key1");
        assert_eq!(recs[1].2, b"hello");
        assert_eq!(recs[3].3, 55);
        assert_eq!(b.len(), 5 * (FRAME + FIXED) + 6 + 2 + 4 + 5 + 4);
    }

    #[test]
    fn oversized_record_is_refused() {
        let mut b = Vec::new();
        let big = vec![0u8; MAX_BODY];
        assert!(!encode(
            &mut b,
            Kind::Put,
            Version::default(),
            0,
            b"k",
            &big
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn every_truncation_is_a_torn_tail_after_the_intact_prefix() {
        let (b, offsets) = sample(40);
        for cut in 0..b.len() {
            let (recs, dmg) = read_all(&b[..cut]);
            let whole = offsets.iter().filter(|&&o| o < cut).count();
            let complete = offsets
                .iter()
                .enumerate()
                .filter(|&(i, _)| offsets.get(i + 1).copied().unwrap_or(b.len()) <= cut)
                .count();
            assert_eq!(recs.len(), complete, "cut {cut}");
            if offsets.contains(&cut) {
                assert_eq!(dmg, None, "cut {cut} on a boundary");
            } else {
                assert_eq!(
                    dmg,
                    Some((offsets[whole - 1] as u64, Damage::Torn)),
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_stops_reading_at_that_record() {
        let (b, offsets) = sample(12);
        for pos in 0..b.len() {
            for bit in [0u8, 3, 7] {
                let mut c = b.clone();
                c[pos] ^= 1 << bit;
                let (recs, dmg) = read_all(&c);
                let victim = offsets.iter().rposition(|&o| o <= pos).unwrap();
                assert_eq!(recs.len(), victim, "pos {pos} bit {bit}");
                let (at, d) = dmg.expect("damage detected");
                assert_eq!(at, offsets[victim] as u64);
                if victim + 1 < offsets.len() {
                    // Damage with intact records behind it is corruption,
                    // except when a length flip pushes past the end.
                    if let Damage::Torn = d {
                        let len_field = offsets[victim] + 4..offsets[victim] + FRAME;
                        assert!(len_field.contains(&pos), "pos {pos}: {d:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn corrupt_middle_reports_the_records_behind_it() {
        let (mut b, offsets) = sample(20);
        b[offsets[7] + FRAME + 3] ^= 0x40; // inside record 7's body
        let mut r = Reader::new(Cursor::new(&b[..]), b.len() as u64);
        let mut n = 0;
        loop {
            match r.next_item().unwrap() {
                Item::Rec(_) => n += 1,
                Item::End => panic!("damage not found"),
                Item::Damaged {
                    offset,
                    damage,
                    frame,
                } => {
                    assert_eq!(n, 7);
                    assert_eq!(offset, offsets[7] as u64);
                    assert_eq!(damage, Damage::Corrupt("checksum mismatch"));
                    assert_eq!(count_after(&mut r, frame), 12);
                    break;
                }
            }
        }
    }

    #[test]
    fn zero_filled_tail_is_torn_and_garbage_tail_is_corrupt() {
        let (b, _) = sample(5);
        let mut z = b.clone();
        z.extend_from_slice(&[0; 4096]);
        assert_eq!(read_all(&z).1, Some((b.len() as u64, Damage::Torn)));
        let mut g = b.clone();
        g.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        let (recs, dmg) = read_all(&g);
        assert_eq!(recs.len(), 5);
        assert_eq!(
            dmg,
            Some((b.len() as u64, Damage::Corrupt("impossible record length")))
        );
    }

    #[test]
    fn large_records_cross_buffer_refills() {
        let mut b = Vec::new();
        let big = vec![b'x'; 3 * CHUNK + 17];
        rec(&mut b, 1, b"small");
        rec(&mut b, 2, &big);
        rec(&mut b, 3, b"after");
        let (recs, dmg) = read_all(&b);
        assert_eq!(dmg, None);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].2.len(), big.len());
        assert_eq!(recs[2].2, b"after");
    }

    #[test]
    fn frames_of_a_verified_buffer_decode_without_a_reader() {
        let (b, offsets) = sample(6);
        let mut pos = 0;
        let mut seen = Vec::new();
        while let Some((body, n)) = next_frame(&b[pos..]) {
            let rec = decode_body(body).unwrap();
            seen.push((pos, rec.key.to_vec()));
            pos += n;
        }
        assert_eq!(pos, b.len());
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), offsets);
        assert_eq!(seen[3].1, b"key3");
        // A partial frame is not returned; its length is known once the
        // length field is there.
        assert!(next_frame(&b[..offsets[1] - 1]).is_none());
        assert_eq!(frame_len(&b[..7]), None);
        assert_eq!(frame_len(&b[..8]), Some(offsets[1]));
        assert_eq!(decode_body(&[9; FIXED]).err(), Some("unknown record kind"));
    }

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 test vector: CRC32C("123456789") = 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }
}
