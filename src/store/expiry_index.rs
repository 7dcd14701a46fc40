//! [`ExpiryIndex`]: one shard's live records with an expiry, ordered by
//! the time each was *indexed at* (see `expiry.rs` for how the store keeps
//! one entry per record, at or before its expiry, and uses it). A pure data
//! structure: it knows entries, not records.

use std::collections::BTreeMap;

/// An index entry: `(indexed-at ms, local bucket, table hash)`.
pub type Entry = (u64, usize, u64);

/// Index of a shard's expiring records (see the module docs).
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    /// `(indexed-at ms, local bucket, table hash)` → number of records
    /// (more than one only for a full-hash collision in a bucket).
    map: BTreeMap<(u64, u32, u64), u32>,
    /// Σ of the counts: live records with an expiry.
    len: usize,
}

impl ExpiryIndex {
    /// Adds a record's entry at `at`.
    pub fn insert(&mut self, at: u64, bucket: usize, hash: u64) {
        *self.map.entry((at, bucket as u32, hash)).or_insert(0) += 1;
        self.len += 1;
    }

    /// Removes a record's entry; false if it was not there.
    pub fn remove(&mut self, at: u64, bucket: usize, hash: u64) -> bool {
        let k = (at, bucket as u32, hash);
        match self.map.get_mut(&k) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.map.remove(&k);
            }
            None => return false,
        }
        self.len -= 1;
        true
    }

    /// Number of entries (records with an expiry).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no record has an expiry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest entry at or before `now_ms`, if any.
    pub fn first_due(&self, now_ms: u64) -> Option<Entry> {
        let (&(t, b, h), _) = self.map.first_key_value()?;
        (t <= now_ms).then_some((t, b as usize, h))
    }

    /// Every entry at or before `now_ms`, with its count, earliest first.
    pub fn due(&self, now_ms: u64) -> impl Iterator<Item = (Entry, u32)> + '_ {
        self.map
            .range(..=(now_ms, u32::MAX, u64::MAX))
            .map(|(&(t, b, h), &n)| ((t, b as usize, h), n))
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_counts_duplicates_and_orders_by_time() {
        let mut ix = ExpiryIndex::default();
        ix.insert(30, 1, 7);
        ix.insert(10, 2, 8);
        ix.insert(10, 2, 8);
        ix.insert(20, 0, 9);
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.first_due(5), None);
        assert_eq!(ix.first_due(10), Some((10, 2, 8)));
        assert_eq!(ix.due(10).collect::<Vec<_>>(), [((10, 2, 8), 2)]);
        assert_eq!(ix.due(25).map(|(_, n)| n).sum::<u32>(), 3);
        assert_eq!(ix.due(u64::MAX).count(), 3);
        assert!(ix.remove(10, 2, 8));
        assert_eq!(ix.first_due(10), Some((10, 2, 8)));
        assert!(ix.remove(10, 2, 8));
        assert!(!ix.remove(10, 2, 8));
        assert_eq!(ix.first_due(100), Some((20, 0, 9)));
        assert_eq!(ix.len(), 2);
        ix.clear();
        assert!(ix.is_empty());
        assert_eq!(ix.first_due(u64::MAX), None);
    }
}
