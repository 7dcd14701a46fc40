//! [`Record`]: one key, its value (or tombstone), version and stored leaf
//! digest in a single heap allocation behind a thin pointer.
//!
//! Layout of the allocation (8-byte aligned):
//!
//! ```text
//! offset 0      hlc    u64  ┐
//! offset 8      node   u64  ├ header (24 bytes)
//! offset 16     klen   u32  │ (bits 31..28: flags, see below)
//! offset 20     vlen   u32  ┘ (u32::MAX = tombstone, no value bytes)
//! offset 24     key bytes, then value bytes
//! then          digest [u8; 16]: the leaf digest XORed into the bucket
//! then          expiry u64, indexed-at u64 (unaligned), only if the
//!                EXPIRES flag is set
//! ```
//!
//! # Expiry
//!
//! A record may carry one absolute expiry time (Unix milliseconds; 0 means
//! none). It costs 16 bytes only on the records that have one: bit 30 of
//! `klen` says whether the trailing fields exist. Besides the expiry they
//! hold the *indexed-at* time: where the shard's expiry index holds the
//! record, at or before its expiry (`store/expiry.rs`), so a write that
//! moves the expiry later need not move the index entry. A tombstone never
//! has either. A record whose expiry is at or before `now` is *expired*: it
//! reads as absent ([`Record::value_at`]), exactly like the tombstone of
//! the same version that it later becomes (`store/expiry.rs`). For that
//! reason the leaf digest of a record with an expiry is the digest of that
//! tombstone ([`Record::digest_value`]): the Merkle tree does not change
//! when an expiring record turns into its tombstone, on any node.
//!
//! # Flags in `klen`
//!
//! The key length needs 28 bits ([`MAX_KEY_LEN`]); the top four bits of
//! `klen` are flags, masked off by one AND wherever the key length is
//! read:
//!
//! ```text
//! bit 31      stale: the stored digest may not match (see below)
//! bit 30      expires: the 16 expiry bytes follow the digest
//! bits 29..28 encoding: how the value was produced (`Encoding`)
//! ```
//!
//! # Encoding
//!
//! Two bits say how the value was produced, which is what decides the
//! encoding Redis would report for it (`OBJECT ENCODING`): stored as
//! given ([`Encoding::Auto`], every write but the ones below), built as a
//! fresh string (`INCRBYFLOAT`, [`Encoding::Str`]) or edited in place
//! (`APPEND`, `SETRANGE`, `SETBIT`, [`Encoding::Raw`]). It is node-local
//! metadata, as in Redis: not part of the version, the leaf digest or the
//! stale flag, not replicated and not persisted (a record received,
//! repaired or loaded is [`Encoding::Auto`]). Writing it costs the
//! `klen` store a write does anyway; a tombstone's bits are always zero
//! ([`Encoding::Auto`]).
//!
//! Why: a shard's hash table then holds 8-byte slots, and each entry costs
//! exactly one allocation. A `(Box<[u8]>, Box<[u8]>, Version)` entry would
//! cost two allocations and a 48-byte slot, which with hash-table load
//! factors roughly doubles the memory of small entries.
//!
//! # Stored digest and stale flag
//!
//! The 16 bytes after the value hold the Merkle leaf digest that is
//! currently XORed into the record's bucket digest ([`super::merkle`]):
//! ZERO for a record that was never hashed. A leaf digest is 128 bits (a
//! [`Digest`] whose upper 16 bytes are zero, see [`super::merkle::leaf_digest`]),
//! so only its lower half is stored: 16 bytes per record, which with
//! 16-byte keys and 32-byte values keeps the allocation at 88 bytes (one
//! 96-byte malloc chunk instead of 112). The top bit of `klen` is the **stale** flag: set
//! when the contents may differ from what the stored digest was computed
//! from (every new record, every [`Record::replace`]); cleared only by
//! [`Record::set_digest`]. So a record that is not stale has
//! `digest == leaf_digest(key, value, version)`. Writes never hash: the
//! store rehashes stale records when a digest is next read (see
//! `store/mod.rs`). The digest sits after the value, not in the header,
//! so GET and SET touch the same bytes (and cache lines) as before it
//! existed; only refresh and removal read it.
//!
//! Invariants: `ptr` always points to a live allocation of exactly
//! `layout(klen, vlen)` bytes whose header matches its contents; keys are
//! at most [`MAX_KEY_LEN`] (< 2^28) bytes so the flag bits are free (the
//! protocols bound keys far lower, at a few MiB); a tombstone has no
//! expiry and encoding bits zero; the `Record` owns the
//! allocation uniquely (like a `Box`), so `Send`/`Sync` are sound.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

use super::Version;
use super::merkle::{self, Digest, ZERO};

const HEADER: usize = 24;
/// Stored bytes of the leaf digest (its non-zero half).
const DIGEST: usize = merkle::LEAF_BYTES;
const TOMBSTONE: u32 = u32::MAX;
/// Top bit of `klen`: the stored digest may not match the contents.
const STALE: u32 = 1 << 31;
/// Bit 30 of `klen`: an 8-byte expiry and an 8-byte indexed-at time
/// follow the digest.
const EXPIRES: u32 = 1 << 30;
const EXPIRY: usize = 16;
/// Bits 29..28 of `klen`: the value's [`Encoding`].
const ENCODING_SHIFT: u32 = 28;
const ENCODING: u32 = 0b11 << ENCODING_SHIFT;
/// Every flag bit of `klen`.
const FLAGS: u32 = STALE | EXPIRES | ENCODING;

/// How a record's value was produced: what decides the encoding Redis
/// would report for it (`OBJECT ENCODING`; see the module docs). Node-local
/// metadata: not versioned, hashed, replicated or persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Encoding {
    /// Stored as given (`SET`, `INCR`, and every replicated, repaired or
    /// loaded write): Redis's `int` for a canonical 64-bit integer, else
    /// `embstr`/`raw` by length.
    #[default]
    Auto = 0,
    /// Built as a fresh string (`INCRBYFLOAT`): `embstr`/`raw` by length,
    /// never `int`.
    Str = 1,
    /// Edited in place (`APPEND` to an existing value, `SETRANGE`,
    /// `SETBIT`): always `raw`.
    Raw = 2,
}

impl Encoding {
    #[inline]
    fn bits(self) -> u32 {
        (self as u32) << ENCODING_SHIFT
    }

    #[inline]
    fn from_klen(klen: u32) -> Encoding {
        match (klen & ENCODING) >> ENCODING_SHIFT {
            0 => Encoding::Auto,
            1 => Encoding::Str,
            _ => Encoding::Raw,
        }
    }
}

/// Largest value a record can hold (the protocol limits are far below
/// this; see `store::MAX_VALUE_LEN`).
pub const MAX_LEN: usize = (u32::MAX - 1) as usize;

/// Largest key a record can hold (2^28 - 1): `klen`'s top four bits are
/// flags.
pub const MAX_KEY_LEN: usize = (1 << ENCODING_SHIFT) - 1;

#[repr(C)]
struct Header {
    hlc: u64,
    node: u64,
    /// Key length | flags ([`STALE`], [`EXPIRES`], [`ENCODING`]).
    klen: u32,
    vlen: u32,
}

impl Header {
    #[inline]
    fn key_len(&self) -> usize {
        (self.klen & !FLAGS) as usize
    }

    #[inline]
    fn has_expiry(&self) -> bool {
        self.klen & EXPIRES != 0
    }

    #[inline]
    fn value_len(&self) -> usize {
        if self.vlen == TOMBSTONE {
            0
        } else {
            self.vlen as usize
        }
    }
}

/// An owned key/value/version record (see the module docs).
pub struct Record {
    ptr: NonNull<Header>,
}

// SAFETY: a Record uniquely owns its allocation, like Box<[u8]>.
unsafe impl Send for Record {}
// SAFETY: shared access only reads.
unsafe impl Sync for Record {}

fn layout(klen: usize, vlen: usize, expires: bool) -> Layout {
    let extra = if expires { EXPIRY } else { 0 };
    // Cannot fail: sizes are bounded by MAX_LEN each, far below isize::MAX.
    Layout::from_size_align(HEADER + klen + vlen + DIGEST + extra, 8).expect("record layout")
}

/// Bytes the record of a key of `klen` bytes with a value of `vlen`
/// bytes (and an expiry, if `expires`) allocates (`MEMORY USAGE`).
pub fn footprint(klen: usize, vlen: usize, expires: bool) -> usize {
    layout(klen, vlen, expires).pad_to_align().size()
}

impl Record {
    /// Creates a record, stale and with a ZERO stored digest (never
    /// hashed). `value: None` is a tombstone.
    ///
    /// Panics only if the key exceeds [`MAX_KEY_LEN`] or the value
    /// [`MAX_LEN`] (callers bound sizes far lower).
    pub fn new(key: &[u8], value: Option<&[u8]>, version: Version) -> Record {
        Record::with_digest(key, value, version, (0, 0), Encoding::Auto, &ZERO)
    }

    /// Like [`Record::new`], with an absolute expiry (Unix ms, 0 = none;
    /// ignored for a tombstone) and its indexed-at time (≤ the expiry).
    pub fn new_expiring(
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        (expires, indexed_at): (u64, u64),
    ) -> Record {
        Record::new_encoded(key, value, version, (expires, indexed_at), Encoding::Auto)
    }

    /// Like [`Record::new_expiring`], with the value's [`Encoding`]
    /// (ignored for a tombstone).
    pub fn new_encoded(
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        (expires, indexed_at): (u64, u64),
        encoding: Encoding,
    ) -> Record {
        Record::with_digest(key, value, version, (expires, indexed_at), encoding, &ZERO)
    }

    /// Creates a stale record whose stored digest is `digest`, with
    /// `(expiry, indexed-at)` and `encoding` (all ignored for a tombstone;
    /// the times also with no expiry).
    fn with_digest(
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        (expires, indexed_at): (u64, u64),
        encoding: Encoding,
        digest: &Digest,
    ) -> Record {
        assert!(key.len() <= MAX_KEY_LEN && value.map_or(0, <[u8]>::len) <= MAX_LEN);
        let vlen = value.map_or(0, <[u8]>::len);
        let (expires, encoding) = match value {
            Some(_) => (expires, encoding),
            None => (0, Encoding::Auto),
        };
        let layout = layout(key.len(), vlen, expires != 0);
        debug_assert!(
            digest[DIGEST..].iter().all(|&b| b == 0),
            "not a leaf digest"
        );
        // SAFETY: layout has non-zero size (>= HEADER + DIGEST).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut Header) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation is large enough for the header, key,
        // value and digest, and properly aligned for Header.
        unsafe {
            ptr.as_ptr().write(Header {
                hlc: version.hlc,
                node: version.node,
                klen: key.len() as u32
                    | STALE
                    | if expires != 0 { EXPIRES } else { 0 }
                    | encoding.bits(),
                vlen: value.map_or(TOMBSTONE, |v| v.len() as u32),
            });
            let data = raw.add(HEADER);
            std::ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            if let Some(v) = value {
                std::ptr::copy_nonoverlapping(v.as_ptr(), data.add(key.len()), v.len());
            }
            std::ptr::copy_nonoverlapping(digest.as_ptr(), data.add(key.len() + vlen), DIGEST);
            if expires != 0 {
                let at = data.add(key.len() + vlen + DIGEST) as *mut u64;
                at.write_unaligned(expires);
                at.add(1).write_unaligned(indexed_at);
            }
        }
        Record { ptr }
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: ptr is a live, initialised allocation (invariant).
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    fn data(&self) -> *const u8 {
        // SAFETY: HEADER is within the allocation.
        unsafe { (self.ptr.as_ptr() as *const u8).add(HEADER) }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        let klen = self.header().key_len();
        // SAFETY: klen key bytes follow the header.
        unsafe { std::slice::from_raw_parts(self.data(), klen) }
    }

    /// The value, or `None` for a tombstone.
    #[inline]
    pub fn value(&self) -> Option<&[u8]> {
        let h = self.header();
        if h.vlen == TOMBSTONE {
            return None;
        }
        // SAFETY: vlen value bytes follow the key.
        unsafe {
            Some(std::slice::from_raw_parts(
                self.data().add(h.key_len()),
                h.vlen as usize,
            ))
        }
    }

    /// The absolute expiry (Unix ms), 0 if none.
    #[inline]
    pub fn expires(&self) -> u64 {
        let h = self.header();
        if !h.has_expiry() {
            return 0;
        }
        // SAFETY: the flag says 8 expiry bytes follow the digest.
        unsafe {
            (self.data().add(h.key_len() + h.value_len() + DIGEST) as *const u64).read_unaligned()
        }
    }

    /// Where the shard's expiry index holds the record (Unix ms, ≤ the
    /// expiry; `store/expiry.rs`), 0 if it has no expiry.
    #[inline]
    pub fn indexed_at(&self) -> u64 {
        let h = self.header();
        if !h.has_expiry() {
            return 0;
        }
        // SAFETY: the flag says 16 expiry bytes follow the digest.
        unsafe {
            (self.data().add(h.key_len() + h.value_len() + DIGEST + 8) as *const u64)
                .read_unaligned()
        }
    }

    /// Sets the indexed-at time of a record with an expiry (no effect on
    /// one without).
    #[inline]
    pub fn set_indexed_at(&mut self, at: u64) {
        let h = self.header();
        if !h.has_expiry() {
            return;
        }
        let off = HEADER + h.key_len() + h.value_len() + DIGEST + 8;
        // SAFETY: as in `indexed_at`, through the unique &mut self.
        unsafe { ((self.ptr.as_ptr() as *mut u8).add(off) as *mut u64).write_unaligned(at) }
    }

    /// True if the record has an expiry and it is at or before `now_ms`.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        let e = self.expires();
        e != 0 && e <= now_ms
    }

    /// The value as readers see it at `now_ms`: `None` for a tombstone or
    /// an expired record.
    #[inline]
    pub fn value_at(&self, now_ms: u64) -> Option<&[u8]> {
        if self.is_expired(now_ms) {
            None
        } else {
            self.value()
        }
    }

    /// The value as readers see it now: reads the clock only for a record
    /// with an expiry.
    #[inline]
    pub fn live_value(&self) -> Option<&[u8]> {
        if self.header().has_expiry() {
            self.value_at(super::now_millis())
        } else {
            self.value()
        }
    }

    /// True if the record has a value that has not expired at `now_ms`.
    #[inline]
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.value_at(now_ms).is_some()
    }

    /// What the leaf digest covers besides key and version: the value, or
    /// `None` for a tombstone *and for a record with an expiry* — such a
    /// record hashes like the tombstone it becomes when it expires (see
    /// the module docs); its version alone names the write.
    #[inline]
    pub fn digest_value(&self) -> Option<&[u8]> {
        if self.header().has_expiry() {
            None
        } else {
            self.value()
        }
    }

    /// How the value was produced ([`Encoding::Auto`] for a tombstone).
    #[inline]
    pub fn encoding(&self) -> Encoding {
        Encoding::from_klen(self.header().klen)
    }

    /// Sets the value's [`Encoding`] in place, changing nothing else (it
    /// is neither versioned nor hashed). No effect on a tombstone.
    #[inline]
    pub fn set_encoding(&mut self, encoding: Encoding) {
        if self.is_tombstone() {
            return;
        }
        // SAFETY: the header is live; we hold &mut self.
        unsafe {
            let hp = self.ptr.as_ptr();
            (*hp).klen = ((*hp).klen & !ENCODING) | encoding.bits();
        }
    }

    /// True for a tombstone (a deleted key kept for its version).
    #[inline]
    pub fn is_tombstone(&self) -> bool {
        self.header().vlen == TOMBSTONE
    }

    /// The version.
    #[inline]
    pub fn version(&self) -> Version {
        let h = self.header();
        Version::new(h.hlc, h.node)
    }

    /// The stored leaf digest: what is XORed into the bucket for this
    /// record (ZERO if never hashed). Equals the leaf digest of the
    /// contents unless [`Record::is_stale`].
    #[inline]
    pub fn digest(&self) -> Digest {
        let h = self.header();
        let mut d = ZERO;
        // SAFETY: DIGEST stored bytes follow the key and value bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data().add(h.key_len() + h.value_len()),
                d.as_mut_ptr(),
                DIGEST,
            );
        }
        d
    }

    /// Starts loading the record's header into the cache (a hint).
    #[inline]
    pub fn prefetch(&self) {
        super::merkle::prefetch(self.ptr.as_ptr());
    }

    /// True if the contents changed since the stored digest was computed.
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.header().klen & STALE != 0
    }

    /// Stores `digest` (the caller computed it from the current contents:
    /// a leaf digest, whose upper half is zero) and clears the stale flag.
    #[inline]
    pub fn set_digest(&mut self, digest: &Digest) {
        debug_assert!(
            digest[DIGEST..].iter().all(|&b| b == 0),
            "not a leaf digest"
        );
        // SAFETY: as in `digest`, through the unique &mut self.
        unsafe {
            let hp = self.ptr.as_ptr();
            let off = HEADER + (*hp).key_len() + (*hp).value_len();
            std::ptr::copy_nonoverlapping(digest.as_ptr(), (hp as *mut u8).add(off), DIGEST);
            (*hp).klen &= !STALE;
        }
    }

    /// Replaces value and version, reusing the allocation when the value
    /// length is unchanged (the common overwrite of a fixed-size value).
    /// The record becomes stale; its stored digest is kept (also when it
    /// is reallocated), since that is what its bucket still contains.
    pub fn replace(&mut self, value: Option<&[u8]>, version: Version) {
        self.replace_expiring(value, version, 0, 0);
    }

    /// [`Record::replace`] with an expiry (Unix ms, 0 = none; ignored for
    /// a tombstone) and its indexed-at time.
    pub fn replace_expiring(
        &mut self,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
        indexed_at: u64,
    ) {
        self.replace_encoded(value, version, (expires, indexed_at), Encoding::Auto);
    }

    /// [`Record::replace_expiring`] with the new value's [`Encoding`]
    /// (ignored for a tombstone). Costs no branch over it: the encoding
    /// bits are masked into the `klen` store that marks the record stale.
    pub fn replace_encoded(
        &mut self,
        value: Option<&[u8]>,
        version: Version,
        (expires, indexed_at): (u64, u64),
        encoding: Encoding,
    ) {
        let h = self.header();
        let (expires, encoding) = match value {
            Some(_) => (expires, encoding),
            None => (0, Encoding::Auto),
        };
        let same_len = match value {
            Some(v) => h.vlen != TOMBSTONE && h.vlen as usize == v.len(),
            None => h.vlen == TOMBSTONE,
        } && h.has_expiry() == (expires != 0);
        if !same_len {
            *self = Record::with_digest(
                self.key(),
                value,
                version,
                (expires, indexed_at),
                encoding,
                &self.digest(),
            );
            return;
        }
        // SAFETY: same layout (the digest stays where it is); we hold
        // &mut self so nothing else reads it.
        unsafe {
            let hp = self.ptr.as_ptr();
            (*hp).hlc = version.hlc;
            (*hp).node = version.node;
            (*hp).klen = ((*hp).klen & !ENCODING) | STALE | encoding.bits();
            let at = (hp as *mut u8).add(HEADER + (*hp).key_len());
            if let Some(v) = value {
                std::ptr::copy_nonoverlapping(v.as_ptr(), at, v.len());
            }
            if expires != 0 {
                let e = at.add((*hp).value_len() + DIGEST) as *mut u64;
                e.write_unaligned(expires);
                e.add(1).write_unaligned(indexed_at);
            }
        }
    }

    /// Bytes of the allocation (header + key + value + digest + expiry).
    pub fn heap_size(&self) -> usize {
        let h = self.header();
        HEADER + h.key_len() + h.value_len() + DIGEST + if h.has_expiry() { EXPIRY } else { 0 }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let h = self.header();
        let layout = layout(h.key_len(), h.value_len(), h.has_expiry());
        // SAFETY: allocated in Record::with_digest with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value", &self.value().map(String::from_utf8_lossy))
            .field("version", &self.version())
            .field("expires", &self.expires())
            .field("stale", &self.is_stale())
            .field("encoding", &self.encoding())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::merkle::leaf_digest;

    /// A leaf-shaped digest (upper half zero) filled with `b`.
    fn leaf(b: u8) -> Digest {
        let mut d = ZERO;
        d[..DIGEST].fill(b);
        d
    }

    #[test]
    fn stores_only_the_leaf_half_of_the_digest() {
        let mut r = Record::new(b"key", Some(b"value"), Version::new(1, 2));
        let d = leaf_digest(r.key(), r.value(), r.version());
        assert_eq!(&d[DIGEST..], &[0u8; 32 - DIGEST][..]);
        assert_ne!(d, ZERO);
        r.set_digest(&d);
        assert_eq!((r.digest(), r.heap_size()), (d, 24 + 3 + 5 + 16));
    }

    #[test]
    fn roundtrip_value_and_tombstone() {
        let v = Version::new(7, 9);
        let r = Record::new(b"key", Some(b"value"), v);
        assert_eq!(r.key(), b"key");
        assert_eq!(r.value(), Some(&b"value"[..]));
        assert_eq!(r.version(), v);
        assert!(!r.is_tombstone());
        assert_eq!(r.heap_size(), 24 + 3 + 5 + 16);

        let t = Record::new(b"k", None, v);
        assert!(t.is_tombstone());
        assert_eq!(t.value(), None);
        assert_eq!(t.key(), b"k");
        assert_eq!(t.heap_size(), 24 + 1 + 16);
    }

    #[test]
    fn empty_key_and_value() {
        let r = Record::new(b"", Some(b""), Version::default());
        assert_eq!(r.key(), b"");
        assert_eq!(r.value(), Some(&b""[..]));
        assert_eq!(r.digest(), ZERO);
    }

    #[test]
    fn replace_in_place_and_resized() {
        let mut r = Record::new(b"k", Some(b"aaaa"), Version::new(1, 1));
        r.replace(Some(b"bbbb"), Version::new(2, 1));
        assert_eq!(r.value(), Some(&b"bbbb"[..]));
        assert_eq!(r.version(), Version::new(2, 1));
        r.replace(Some(b"longer value"), Version::new(3, 1));
        assert_eq!(r.value(), Some(&b"longer value"[..]));
        assert_eq!(r.key(), b"k");
        r.replace(None, Version::new(4, 1));
        assert!(r.is_tombstone());
        r.replace(None, Version::new(5, 1));
        assert_eq!(r.version(), Version::new(5, 1));
        r.replace(Some(b""), Version::new(6, 1));
        assert_eq!(r.value(), Some(&b""[..]));
    }

    #[test]
    fn expiry_roundtrip_and_visibility() {
        let v = Version::new(7, 9);
        let r = Record::new_expiring(b"key", Some(b"value"), v, (1_000, 768));
        assert_eq!((r.key(), r.expires(), r.version()), (&b"key"[..], 1_000, v));
        assert_eq!(r.indexed_at(), 768);
        assert_eq!(r.heap_size(), 24 + 3 + 5 + 16 + 16);
        assert_eq!(r.value_at(999), Some(&b"value"[..]));
        assert_eq!(r.value_at(1_000), None);
        assert!(r.is_expired(1_000) && !r.is_expired(999));
        assert!(r.is_live(999) && !r.is_live(1_000));
        // Hashes like the tombstone of its version.
        assert_eq!(r.digest_value(), None);
        assert_eq!(r.value(), Some(&b"value"[..]));
        // A tombstone never keeps an expiry.
        let t = Record::new_expiring(b"k", None, v, (1_000, 1_000));
        assert_eq!(
            (t.expires(), t.indexed_at(), t.heap_size()),
            (0, 0, 24 + 1 + 16)
        );
        let p = Record::new(b"k", Some(b"v"), v);
        assert_eq!((p.expires(), p.digest_value()), (0, Some(&b"v"[..])));
        assert!(!p.is_expired(u64::MAX));
    }

    #[test]
    fn replace_sets_keeps_and_clears_expiry() {
        let mut r = Record::new(b"key", Some(b"aaaa"), Version::new(1, 1));
        let d = leaf(3);
        r.set_digest(&d);
        // Gains an expiry: reallocated, digest carried.
        r.replace_expiring(Some(b"bbbb"), Version::new(2, 1), 50, 50);
        assert_eq!(
            (r.expires(), r.value(), &r.digest()),
            (50, Some(&b"bbbb"[..]), &d)
        );
        // Same shape: in place.
        r.replace_expiring(Some(b"cccc"), Version::new(3, 1), 60, 60);
        assert_eq!(
            (r.expires(), r.value(), r.key()),
            (60, Some(&b"cccc"[..]), &b"key"[..])
        );
        // Longer value, keeps an expiry.
        r.replace_expiring(Some(b"a longer value"), Version::new(4, 1), 70, 70);
        assert_eq!((r.expires(), r.value()), (70, Some(&b"a longer value"[..])));
        assert_eq!(r.indexed_at(), 70);
        // The indexed-at time is kept in place and moved on reallocation.
        r.replace_expiring(Some(b"a longer valuE"), Version::new(4, 1), 75, 40);
        assert_eq!((r.expires(), r.indexed_at()), (75, 40));
        r.set_indexed_at(75);
        assert_eq!((r.expires(), r.indexed_at()), (75, 75));
        r.replace_expiring(Some(b"short"), Version::new(4, 1), 80, 75);
        assert_eq!(
            (r.expires(), r.indexed_at(), r.value()),
            (80, 75, Some(&b"short"[..]))
        );
        // Tombstone drops it; plain replace clears it.
        r.replace_expiring(None, Version::new(5, 1), 80, 80);
        assert_eq!((r.expires(), r.is_tombstone(), &r.digest()), (0, true, &d));
        r.replace_expiring(Some(b"x"), Version::new(6, 1), 90, 90);
        r.replace(Some(b"y"), Version::new(7, 1));
        assert_eq!(
            (r.expires(), r.value(), r.heap_size()),
            (0, Some(&b"y"[..]), 24 + 3 + 1 + 16)
        );
        assert_eq!(r.key(), b"key");
    }

    #[test]
    fn new_records_are_stale_with_zero_digest() {
        let r = Record::new(b"key", Some(b"v"), Version::new(1, 2));
        assert!(r.is_stale());
        assert_eq!(r.digest(), ZERO);
        // The flag is not part of the key length.
        assert_eq!(r.key(), b"key");
    }

    #[test]
    fn set_digest_clears_stale_and_keeps_contents() {
        let v = Version::new(3, 4);
        let mut r = Record::new(b"key", Some(b"value"), v);
        let d = leaf_digest(r.key(), r.value(), r.version());
        r.set_digest(&d);
        assert!(!r.is_stale());
        assert_eq!(r.digest(), d);
        assert_eq!(
            (r.key(), r.value(), r.version()),
            (&b"key"[..], Some(&b"value"[..]), v)
        );
        let mut t = Record::new(b"t", None, v);
        t.set_digest(&d);
        assert_eq!((&t.digest(), t.is_stale(), t.key()), (&d, false, &b"t"[..]));
    }

    #[test]
    fn replace_marks_stale_and_carries_the_digest() {
        let mut r = Record::new(b"key", Some(b"aaaa"), Version::new(1, 1));
        let d1 = leaf_digest(r.key(), r.value(), r.version());
        r.set_digest(&d1);
        // In place (same length).
        r.replace(Some(b"bbbb"), Version::new(2, 1));
        assert!(r.is_stale());
        assert_eq!(r.digest(), d1);
        assert_eq!(r.key(), b"key");
        // Reallocated: longer, then a tombstone, then a value again.
        let d2 = leaf(7);
        r.set_digest(&d2);
        r.replace(Some(b"a much longer value"), Version::new(3, 1));
        assert_eq!((r.is_stale(), &r.digest()), (true, &d2));
        assert_eq!(r.value(), Some(&b"a much longer value"[..]));
        r.replace(None, Version::new(4, 1));
        assert_eq!(
            (r.is_stale(), &r.digest(), r.key()),
            (true, &d2, &b"key"[..])
        );
        r.replace(Some(b""), Version::new(5, 1));
        assert_eq!((r.is_stale(), &r.digest()), (true, &d2));
        assert_eq!(r.heap_size(), 24 + 3 + 16);
    }

    #[test]
    fn encoding_is_kept_apart_from_key_length_and_other_flags() {
        // The longest key still fits under the flag bits.
        assert_eq!(MAX_KEY_LEN, (1 << 28) - 1);
        assert_eq!(MAX_KEY_LEN as u32 & FLAGS, 0);
        let v = Version::new(1, 1);
        for enc in [Encoding::Auto, Encoding::Str, Encoding::Raw] {
            let r = Record::new_encoded(b"key", Some(b"12"), v, (50, 40), enc);
            assert_eq!(
                (
                    r.encoding(),
                    r.key(),
                    r.value(),
                    r.expires(),
                    r.indexed_at()
                ),
                (enc, &b"key"[..], Some(&b"12"[..]), 50, 40)
            );
            assert!(r.is_stale());
            assert_eq!(r.heap_size(), 24 + 3 + 2 + 16 + 16);
            // The leaf digest covers key, value and version only.
            let plain = Record::new_expiring(b"key", Some(b"12"), v, (50, 40));
            assert_eq!(r.digest_value(), plain.digest_value());
        }
        assert_eq!(Record::new(b"k", Some(b"1"), v).encoding(), Encoding::Auto);
        // A tombstone never keeps one.
        let t = Record::new_encoded(b"k", None, v, (0, 0), Encoding::Raw);
        assert_eq!((t.encoding(), t.key()), (Encoding::Auto, &b"k"[..]));
    }

    #[test]
    fn replace_sets_the_encoding_in_place_and_resized() {
        let mut r = Record::new(b"key", Some(b"1234"), Version::new(1, 1));
        let d = leaf(5);
        r.set_digest(&d);
        // In place (same length): the encoding changes, the record turns
        // stale and keeps its digest.
        r.replace_encoded(Some(b"2234"), Version::new(2, 1), (0, 0), Encoding::Raw);
        assert_eq!(
            (r.encoding(), r.is_stale(), &r.digest(), r.key()),
            (Encoding::Raw, true, &d, &b"key"[..])
        );
        // Every plain replace goes back to Auto, in place and resized.
        r.replace(Some(b"2235"), Version::new(3, 1));
        assert_eq!(
            (r.encoding(), r.value()),
            (Encoding::Auto, Some(&b"2235"[..]))
        );
        r.replace_encoded(Some(b"22345"), Version::new(4, 1), (0, 0), Encoding::Raw);
        assert_eq!(
            (r.encoding(), r.value()),
            (Encoding::Raw, Some(&b"22345"[..]))
        );
        r.replace_encoded(Some(b"3.5"), Version::new(5, 1), (70, 70), Encoding::Str);
        assert_eq!(
            (r.encoding(), r.expires(), &r.digest()),
            (Encoding::Str, 70, &d)
        );
        r.replace_expiring(Some(b"4.5"), Version::new(6, 1), 70, 70);
        assert_eq!((r.encoding(), r.expires()), (Encoding::Auto, 70));
        // A tombstone drops it, in place too.
        r.replace_encoded(Some(b"x"), Version::new(7, 1), (0, 0), Encoding::Raw);
        r.replace_encoded(None, Version::new(8, 1), (0, 0), Encoding::Raw);
        assert_eq!((r.encoding(), r.is_tombstone()), (Encoding::Auto, true));
        r.replace_encoded(None, Version::new(9, 1), (0, 0), Encoding::Raw);
        assert_eq!((r.encoding(), r.key()), (Encoding::Auto, &b"key"[..]));
    }

    #[test]
    fn set_encoding_changes_nothing_else() {
        let v = Version::new(3, 4);
        let mut r = Record::new_expiring(b"key", Some(b"value"), v, (90, 80));
        let d = leaf_digest(r.key(), r.digest_value(), r.version());
        r.set_digest(&d);
        r.set_encoding(Encoding::Raw);
        assert_eq!(
            (r.encoding(), r.is_stale(), r.digest(), r.version()),
            (Encoding::Raw, false, d, v)
        );
        assert_eq!(
            (r.key(), r.value(), r.expires(), r.indexed_at()),
            (&b"key"[..], Some(&b"value"[..]), 90, 80)
        );
        // Setting digests and stale flags leaves it alone.
        r.replace_encoded(Some(b"VALUE"), v, (90, 80), Encoding::Str);
        r.set_digest(&d);
        assert_eq!((r.encoding(), r.is_stale()), (Encoding::Str, false));
        r.set_encoding(Encoding::Auto);
        assert_eq!(
            (r.encoding(), r.value()),
            (Encoding::Auto, Some(&b"VALUE"[..]))
        );
        let mut t = Record::new(b"t", None, v);
        t.set_encoding(Encoding::Raw);
        assert_eq!(t.encoding(), Encoding::Auto);
    }
}
