//! [`ExpiryIndex`]: one shard's live records with an expiry, ordered by
//! expiry time (see `expiry.rs` for how the store keeps it exact and
//! uses it). A pure data structure: it knows entries, not records.

use std::collections::BTreeMap;

/// Exact index of a shard's expiring records (see the module docs).
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    /// `(expiry ms, local bucket, table hash)` → number of records.
    map: BTreeMap<(u64, u32, u64), u32>,
    /// Σ of the counts: live records with an expiry.
    len: usize,
}

impl ExpiryIndex {
    /// Adds a record's entry.
    pub fn insert(&mut self, expires: u64, bucket: usize, hash: u64) {
        *self.map.entry((expires, bucket as u32, hash)).or_insert(0) += 1;
        self.len += 1;
    }

    /// Removes a record's entry; false if it was not there.
    pub fn remove(&mut self, expires: u64, bucket: usize, hash: u64) -> bool {
        let k = (expires, bucket as u32, hash);
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

    /// Number of records with an expiry.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no record has an expiry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest entry due at `now_ms` (expiry ≤ now), if any.
    pub fn first_due(&self, now_ms: u64) -> Option<(u64, usize, u64)> {
        let (&(e, b, h), _) = self.map.first_key_value()?;
        (e <= now_ms).then_some((e, b as usize, h))
    }

    /// Number of records due at `now_ms` (linear in that number).
    pub fn due(&self, now_ms: u64) -> usize {
        self.map
            .range(..=(now_ms, u32::MAX, u64::MAX))
            .map(|(_, &n)| n as usize)
            .sum()
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
    fn index_counts_duplicates_and_orders_by_expiry() {
        let mut ix = ExpiryIndex::default();
        ix.insert(30, 1, 7);
        ix.insert(10, 2, 8);
        ix.insert(10, 2, 8);
        ix.insert(20, 0, 9);
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.first_due(5), None);
        assert_eq!(ix.first_due(10), Some((10, 2, 8)));
        assert_eq!(ix.due(10), 2);
        assert_eq!(ix.due(25), 3);
        assert_eq!(ix.due(u64::MAX), 4);
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
