//! [`Record`]: one key, its value (or tombstone), version and stored leaf
//! digest in a single heap allocation behind a thin pointer.
//!
//! Layout of the allocation (8-byte aligned):
//!
//! ```text
//! offset 0      hlc    u64  ┐
//! offset 8      node   u64  ├ header (24 bytes)
//! offset 16     klen   u32  │ (top bit: digest stale, see below)
//! offset 20     vlen   u32  ┘ (u32::MAX = tombstone, no value bytes)
//! offset 24     key bytes, then value bytes
//! then          digest [u8; 32]: the leaf digest XORed into the bucket
//! ```
//!
//! Why: a shard's hash table then holds 8-byte slots, and each entry costs
//! exactly one allocation. A `(Box<[u8]>, Box<[u8]>, Version)` entry would
//! cost two allocations and a 48-byte slot, which with hash-table load
//! factors roughly doubles the memory of small entries.
//!
//! # Stored digest and stale flag
//!
//! The last 32 bytes hold the Merkle leaf digest that is currently XORed
//! into the record's bucket digest ([`super::merkle`]): ZERO for a record
//! that was never hashed. The top bit of `klen` is the **stale** flag: set
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
//! at most [`MAX_KEY_LEN`] (< 2^31) bytes so the flag bit is free (the
//! protocols bound keys far lower, at a few MiB); the `Record` owns the
//! allocation uniquely (like a `Box`), so `Send`/`Sync` are sound.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

use super::Version;
use super::merkle::{Digest, ZERO};

const HEADER: usize = 24;
const DIGEST: usize = 32;
const TOMBSTONE: u32 = u32::MAX;
/// Top bit of `klen`: the stored digest may not match the contents.
const STALE: u32 = 1 << 31;

/// Largest value a record can hold (the protocol limits are far below
/// this; see `store::MAX_VALUE_LEN`).
pub const MAX_LEN: usize = (u32::MAX - 1) as usize;

/// Largest key a record can hold: `klen`'s top bit is the stale flag.
pub const MAX_KEY_LEN: usize = (STALE - 1) as usize;

#[repr(C)]
struct Header {
    hlc: u64,
    node: u64,
    /// Key length | [`STALE`].
    klen: u32,
    vlen: u32,
}

impl Header {
    #[inline]
    fn key_len(&self) -> usize {
        (self.klen & !STALE) as usize
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

fn layout(klen: usize, vlen: usize) -> Layout {
    // Cannot fail: sizes are bounded by MAX_LEN each, far below isize::MAX.
    Layout::from_size_align(HEADER + klen + vlen + DIGEST, 8).expect("record layout")
}

impl Record {
    /// Creates a record, stale and with a ZERO stored digest (never
    /// hashed). `value: None` is a tombstone.
    ///
    /// Panics only if the key exceeds [`MAX_KEY_LEN`] or the value
    /// [`MAX_LEN`] (callers bound sizes far lower).
    pub fn new(key: &[u8], value: Option<&[u8]>, version: Version) -> Record {
        Record::with_digest(key, value, version, &ZERO)
    }

    /// Creates a stale record whose stored digest is `digest`.
    fn with_digest(key: &[u8], value: Option<&[u8]>, version: Version, digest: &Digest) -> Record {
        assert!(key.len() <= MAX_KEY_LEN && value.map_or(0, <[u8]>::len) <= MAX_LEN);
        let vlen = value.map_or(0, <[u8]>::len);
        let layout = layout(key.len(), vlen);
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
                klen: key.len() as u32 | STALE,
                vlen: value.map_or(TOMBSTONE, |v| v.len() as u32),
            });
            let data = raw.add(HEADER);
            std::ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            if let Some(v) = value {
                std::ptr::copy_nonoverlapping(v.as_ptr(), data.add(key.len()), v.len());
            }
            std::ptr::copy_nonoverlapping(digest.as_ptr(), data.add(key.len() + vlen), DIGEST);
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
    pub fn digest(&self) -> &Digest {
        let h = self.header();
        // SAFETY: the digest follows the key and value bytes; [u8; 32]
        // has alignment 1.
        unsafe { &*(self.data().add(h.key_len() + h.value_len()) as *const Digest) }
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

    /// Stores `digest` (the caller computed it from the current contents)
    /// and clears the stale flag.
    #[inline]
    pub fn set_digest(&mut self, digest: &Digest) {
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
        let h = self.header();
        let same_len = match value {
            Some(v) => h.vlen != TOMBSTONE && h.vlen as usize == v.len(),
            None => h.vlen == TOMBSTONE,
        };
        if !same_len {
            *self = Record::with_digest(self.key(), value, version, self.digest());
            return;
        }
        // SAFETY: same layout (the digest stays where it is); we hold
        // &mut self so nothing else reads it.
        unsafe {
            let hp = self.ptr.as_ptr();
            (*hp).hlc = version.hlc;
            (*hp).node = version.node;
            (*hp).klen |= STALE;
            if let Some(v) = value {
                let dst = (hp as *mut u8).add(HEADER + (*hp).key_len());
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst, v.len());
            }
        }
    }

    /// Bytes of the allocation (header + key + value + digest).
    pub fn heap_size(&self) -> usize {
        let h = self.header();
        HEADER + h.key_len() + h.value_len() + DIGEST
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let h = self.header();
        let layout = layout(h.key_len(), h.value_len());
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
            .field("stale", &self.is_stale())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::merkle::leaf_digest;

    #[test]
    fn roundtrip_value_and_tombstone() {
        let v = Version::new(7, 9);
        let r = Record::new(b"key", Some(b"value"), v);
        assert_eq!(r.key(), b"key");
        assert_eq!(r.value(), Some(&b"value"[..]));
        assert_eq!(r.version(), v);
        assert!(!r.is_tombstone());
        assert_eq!(r.heap_size(), 24 + 3 + 5 + 32);

        let t = Record::new(b"k", None, v);
        assert!(t.is_tombstone());
        assert_eq!(t.value(), None);
        assert_eq!(t.key(), b"k");
        assert_eq!(t.heap_size(), 24 + 1 + 32);
    }

    #[test]
    fn empty_key_and_value() {
        let r = Record::new(b"", Some(b""), Version::default());
        assert_eq!(r.key(), b"");
        assert_eq!(r.value(), Some(&b""[..]));
        assert_eq!(r.digest(), &ZERO);
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
    fn new_records_are_stale_with_zero_digest() {
        let r = Record::new(b"key", Some(b"v"), Version::new(1, 2));
        assert!(r.is_stale());
        assert_eq!(r.digest(), &ZERO);
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
        assert_eq!(r.digest(), &d);
        assert_eq!(
            (r.key(), r.value(), r.version()),
            (&b"key"[..], Some(&b"value"[..]), v)
        );
        let mut t = Record::new(b"t", None, v);
        t.set_digest(&d);
        assert_eq!((t.digest(), t.is_stale(), t.key()), (&d, false, &b"t"[..]));
    }

    #[test]
    fn replace_marks_stale_and_carries_the_digest() {
        let mut r = Record::new(b"key", Some(b"aaaa"), Version::new(1, 1));
        let d1 = leaf_digest(r.key(), r.value(), r.version());
        r.set_digest(&d1);
        // In place (same length).
        r.replace(Some(b"bbbb"), Version::new(2, 1));
        assert!(r.is_stale());
        assert_eq!(r.digest(), &d1);
        assert_eq!(r.key(), b"key");
        // Reallocated: longer, then a tombstone, then a value again.
        let d2 = [7u8; 32];
        r.set_digest(&d2);
        r.replace(Some(b"a much longer value"), Version::new(3, 1));
        assert_eq!((r.is_stale(), r.digest()), (true, &d2));
        assert_eq!(r.value(), Some(&b"a much longer value"[..]));
        r.replace(None, Version::new(4, 1));
        assert_eq!(
            (r.is_stale(), r.digest(), r.key()),
            (true, &d2, &b"key"[..])
        );
        r.replace(Some(b""), Version::new(5, 1));
        assert_eq!((r.is_stale(), r.digest()), (true, &d2));
        assert_eq!(r.heap_size(), 24 + 3 + 32);
    }
}
