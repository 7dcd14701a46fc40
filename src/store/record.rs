//! [`Record`]: one key, its value (or tombstone) and version in a single
//! heap allocation behind a thin pointer.
//!
//! Layout of the allocation (8-byte aligned):
//!
//! ```text
//! offset 0   hlc   u64  ┐
//! offset 8   node  u64  ├ header (24 bytes)
//! offset 16  klen  u32  │
//! offset 20  vlen  u32  ┘ (u32::MAX = tombstone, no value bytes)
//! offset 24  key bytes, then value bytes
//! ```
//!
//! Why: a shard's hash table then holds 8-byte slots, and each entry costs
//! exactly one allocation. A `(Box<[u8]>, Box<[u8]>, Version)` entry would
//! cost two allocations and a 48-byte slot, which with hash-table load
//! factors roughly doubles the memory of small entries.
//!
//! Invariants: `ptr` always points to a live allocation of exactly
//! `layout(klen, vlen)` bytes whose header matches its contents; the
//! `Record` owns it uniquely (like a `Box`), so `Send`/`Sync` are sound.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

use super::Version;

const HEADER: usize = 24;
const TOMBSTONE: u32 = u32::MAX;

/// Largest key or value a record can hold (the protocol limits are far
/// below this; see `store::MAX_VALUE_LEN`).
pub const MAX_LEN: usize = (u32::MAX - 1) as usize;

#[repr(C)]
struct Header {
    hlc: u64,
    node: u64,
    klen: u32,
    vlen: u32,
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
    Layout::from_size_align(HEADER + klen + vlen, 8).expect("record layout")
}

impl Record {
    /// Creates a record. `value: None` is a tombstone.
    ///
    /// Panics only if a length exceeds [`MAX_LEN`] (callers bound sizes).
    pub fn new(key: &[u8], value: Option<&[u8]>, version: Version) -> Record {
        assert!(key.len() <= MAX_LEN && value.map_or(0, <[u8]>::len) <= MAX_LEN);
        let vlen = value.map_or(0, <[u8]>::len);
        let layout = layout(key.len(), vlen);
        // SAFETY: layout has non-zero size (>= HEADER).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut Header) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation is large enough for the header, key and
        // value, and properly aligned for Header.
        unsafe {
            ptr.as_ptr().write(Header {
                hlc: version.hlc,
                node: version.node,
                klen: key.len() as u32,
                vlen: value.map_or(TOMBSTONE, |v| v.len() as u32),
            });
            let data = raw.add(HEADER);
            std::ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            if let Some(v) = value {
                std::ptr::copy_nonoverlapping(v.as_ptr(), data.add(key.len()), v.len());
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
        let klen = self.header().klen as usize;
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
                self.data().add(h.klen as usize),
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

    /// Replaces value and version, reusing the allocation when the value
    /// length is unchanged (the common overwrite of a fixed-size value).
    pub fn replace(&mut self, value: Option<&[u8]>, version: Version) {
        let h = self.header();
        let same_len = match value {
            Some(v) => h.vlen != TOMBSTONE && h.vlen as usize == v.len(),
            None => h.vlen == TOMBSTONE,
        };
        if !same_len {
            *self = Record::new(self.key(), value, version);
            return;
        }
        // SAFETY: same layout; we hold &mut self so nothing else reads it.
        unsafe {
            let hp = self.ptr.as_ptr();
            (*hp).hlc = version.hlc;
            (*hp).node = version.node;
            if let Some(v) = value {
                let dst = (hp as *mut u8).add(HEADER + (*hp).klen as usize);
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst, v.len());
            }
        }
    }

    /// Bytes of the allocation (header + key + value).
    pub fn heap_size(&self) -> usize {
        let h = self.header();
        let vlen = if h.vlen == TOMBSTONE { 0 } else { h.vlen };
        HEADER + h.klen as usize + vlen as usize
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let h = self.header();
        let vlen = if h.vlen == TOMBSTONE { 0 } else { h.vlen };
        let layout = layout(h.klen as usize, vlen as usize);
        // SAFETY: allocated in Record::new with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value", &self.value().map(String::from_utf8_lossy))
            .field("version", &self.version())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_value_and_tombstone() {
        let v = Version::new(7, 9);
        let r = Record::new(b"key", Some(b"value"), v);
        assert_eq!(r.key(), b"key");
        assert_eq!(r.value(), Some(&b"value"[..]));
        assert_eq!(r.version(), v);
        assert!(!r.is_tombstone());
        assert_eq!(r.heap_size(), 24 + 3 + 5);

        let t = Record::new(b"k", None, v);
        assert!(t.is_tombstone());
        assert_eq!(t.value(), None);
        assert_eq!(t.key(), b"k");
    }

    #[test]
    fn empty_key_and_value() {
        let r = Record::new(b"", Some(b""), Version::default());
        assert_eq!(r.key(), b"");
        assert_eq!(r.value(), Some(&b""[..]));
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
}
