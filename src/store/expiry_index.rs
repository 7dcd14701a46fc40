//! [`ExpiryIndex`]: one shard's expiring records, in coarse time slots of
//! append-only vectors (a hierarchical timer wheel with lazy removal).
//! A pure data structure: it knows entries and counts, not records; the
//! shard decides whether an entry still stands for a record (`expiry.rs`).
//!
//! # Slots
//!
//! An entry `(bucket, table hash)` sits in the slot keyed by its
//! *indexed-at* time, which the record stores next to its expiry. That
//! time comes from [`slot_for`]: the expiry rounded **down** to a
//! granularity that grows with the distance to the expiry (at least
//! [`SLOT_MS`], at most a sixteenth of the distance, a power of two). So
//! indexed-at ≤ expiry, entries are spread over a few hundred slots at
//! most (about sixteen per power of two of distance), and adding an entry
//! is a lookup among those few slot keys and a push onto a vector — no
//! per-entry node allocation, no ordering among the entries of a slot.
//!
//! A slot is *due* once `now` is past its key by [`SLOT_MS`]. The active
//! cycle takes a due slot's vector whole ([`ExpiryIndex::pop_due`] then
//! hands out its entries one by one, across lock releases) and checks each
//! entry against its record: due records expire, the others are put back
//! at [`slot_for`] of their expiry, which is always a later slot that is
//! not due yet (see [`slot_for`]) and about sixteen times closer to the
//! expiry. A record is therefore visited a handful of times over its
//! lifetime (log16 of its TTL in units of [`SLOT_MS`]) and found at most
//! [`SLOT_MS`] plus one cycle period after its expiry.
//!
//! # Lazy removal and the bound on stale entries
//!
//! Entries are never searched for: when a record loses its expiry, is
//! deleted or gets an earlier one, the shard only tells the index
//! ([`ExpiryIndex::forget`]) and its entry stays behind, *stale*. A stale
//! entry is harmless: it matches no record (or a record that another entry
//! also stands for) and is dropped when its slot comes up. To keep memory
//! bounded under `SET … EX` / `DEL` churn, the shard compacts the index
//! ([`ExpiryIndex::compact`]: drops the entries that match no record and
//! duplicates) as soon as stale entries outnumber live records by more
//! than [`COMPACT_SLACK`]; each compaction costs O(entries) and follows at
//! least as many forgets as there are live entries, so its cost per write
//! is O(1) amortized (like a hash table's growth), and entries never
//! exceed twice the live records plus [`COMPACT_SLACK`].

use std::collections::BTreeMap;

/// Finest slot granularity (ms; a power of two): how late after its
/// expiry the active cycle may find a record, besides its own period.
pub const SLOT_MS: u64 = 256;

/// A slot's granularity is at most the distance to the expiry divided by
/// this (see [`slot_for`]).
const FAN: u64 = 16;

/// Stale entries beyond the live ones that trigger a compaction.
pub const COMPACT_SLACK: usize = 1024;

/// An entry as handed out: `(indexed-at ms, local bucket, table hash)`.
pub type Entry = (u64, usize, u64);

/// The indexed-at time of a record expiring at `expires` (> 0), seen at
/// `now_ms`: `expires` rounded down to a power of two ≥ [`SLOT_MS`] and
/// ≤ (`expires` − `now_ms`) / 16, never 0.
///
/// Why the cycle's deferrals never loop: a slot keyed `k` is due at
/// `k + SLOT_MS ≤ now`. For `expires > now`, with granularity `g`:
/// if `g = SLOT_MS` the key is `> expires − SLOT_MS > now − SLOT_MS`;
/// if `g > SLOT_MS` it is `> expires − g ≥ now + 15g`. Either way the new
/// slot is not due at `now`.
pub fn slot_for(expires: u64, now_ms: u64) -> u64 {
    let d = expires.saturating_sub(now_ms) / FAN;
    let g = if d < 2 * SLOT_MS {
        SLOT_MS
    } else {
        1 << (63 - d.leading_zeros())
    };
    (expires & !(g - 1)).max(1)
}

/// Capacity of a new slot's vector: one allocation holds the first
/// entries of a slot (a slot rarely has fewer than a few).
const SLOT_CAPACITY: usize = 16;

/// Index of a shard's expiring records (see the module docs).
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    /// Indexed-at time → the slot's vector in `vecs`.
    slots: BTreeMap<u64, usize>,
    /// The slots' vectors of `(bucket, table hash)`; those listed in
    /// `free` belong to no slot (and are empty).
    vecs: Vec<Vec<(u32, u64)>>,
    free: Vec<usize>,
    /// The slot written last and its vector (`hot_at` 0: none), so that a
    /// run of writes into one slot skips the map.
    hot_at: u64,
    hot: usize,
    /// The due slot the active cycle is handing out, and its key.
    draining: Vec<(u32, u64)>,
    draining_at: u64,
    /// Entries held (in slots and `draining`), stale ones included.
    entries: usize,
    /// Live records with an expiry (each has at least one entry).
    live: usize,
}

impl ExpiryIndex {
    /// Adds an entry for a record that now has an expiry, indexed at `at`.
    #[inline]
    pub fn insert(&mut self, at: u64, bucket: usize, hash: u64) {
        self.push(at, bucket, hash);
        self.live += 1;
    }

    /// Adds another entry for a record that still has one (its expiry
    /// moved earlier than its indexed-at time, or the cycle deferred it):
    /// the old entry is stale from now on.
    #[inline]
    pub fn reinsert(&mut self, at: u64, bucket: usize, hash: u64) {
        self.push(at, bucket, hash);
    }

    #[inline]
    fn push(&mut self, at: u64, bucket: usize, hash: u64) {
        if at != self.hot_at {
            self.heat(at);
        }
        self.vecs[self.hot].push((bucket as u32, hash));
        self.entries += 1;
    }

    /// Makes the slot at `at` (created if new) the hot one.
    fn heat(&mut self, at: u64) {
        let vecs = &mut self.vecs;
        let free = &mut self.free;
        self.hot = *self.slots.entry(at).or_insert_with(|| match free.pop() {
            Some(i) => {
                vecs[i].reserve_exact(SLOT_CAPACITY);
                i
            }
            None => {
                vecs.push(Vec::with_capacity(SLOT_CAPACITY));
                vecs.len() - 1
            }
        });
        self.hot_at = at;
    }

    /// Removes slot `at` (its vector is `i`) and returns its entries.
    fn take(&mut self, at: u64, i: usize) -> Vec<(u32, u64)> {
        self.slots.remove(&at);
        self.free.push(i);
        if self.hot_at == at {
            self.hot_at = 0;
        }
        std::mem::take(&mut self.vecs[i])
    }

    /// A record lost its expiry (deleted, persisted, expired): its entry
    /// stays, stale.
    #[inline]
    pub fn forget(&mut self) {
        self.live -= 1;
    }

    /// Live records with an expiry.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no record has an expiry.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries held, stale ones included.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// True when stale entries outnumber live records by more than
    /// [`COMPACT_SLACK`]: time to [`ExpiryIndex::compact`].
    #[inline]
    pub fn needs_compaction(&self) -> bool {
        self.entries > 2 * self.live + COMPACT_SLACK
    }

    /// Keeps only the entries for which `stands(at, bucket, hash)` holds,
    /// one per `(at, bucket, hash)`, and releases unused capacity.
    pub fn compact(&mut self, mut stands: impl FnMut(u64, usize, u64) -> bool) {
        let mut kept = 0;
        let mut keep = |at: u64, v: &mut Vec<(u32, u64)>| {
            v.retain(|&(b, h)| stands(at, b as usize, h));
            v.sort_unstable();
            v.dedup();
            if v.capacity() > 2 * v.len() + SLOT_CAPACITY {
                v.shrink_to_fit();
            }
            kept += v.len();
        };
        let mut emptied = Vec::new();
        for (&at, &i) in self.slots.iter() {
            keep(at, &mut self.vecs[i]);
            if self.vecs[i].is_empty() {
                emptied.push((at, i));
            }
        }
        for (at, i) in emptied {
            self.take(at, i);
        }
        keep(self.draining_at, &mut self.draining);
        self.entries = kept;
    }

    /// True when an entry is due at `now_ms`.
    pub fn has_due(&self, now_ms: u64) -> bool {
        !self.draining.is_empty()
            || self
                .slots
                .first_key_value()
                .is_some_and(|(&at, _)| at + SLOT_MS <= now_ms)
    }

    /// When the first entry becomes due (Unix ms; `now` or earlier if one
    /// is due already), None when the index holds no entry.
    pub fn due_at(&self) -> Option<u64> {
        if !self.draining.is_empty() {
            return Some(0);
        }
        self.slots.first_key_value().map(|(&at, _)| at + SLOT_MS)
    }

    /// Takes one due entry (module docs), if any.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<Entry> {
        if self.draining.is_empty() {
            let (&at, &i) = self.slots.first_key_value()?;
            if at + SLOT_MS > now_ms {
                return None;
            }
            self.draining = self.take(at, i);
            self.draining_at = at;
        }
        let (b, h) = self.draining.pop()?;
        self.entries -= 1;
        if self.draining.is_empty() {
            self.draining = Vec::new();
        }
        Some((self.draining_at, b as usize, h))
    }

    /// Every entry indexed at or before `now_ms` (stale ones and
    /// duplicates included): every record due at `now_ms` has one.
    pub fn upto(&self, now_ms: u64) -> impl Iterator<Item = Entry> + '_ {
        let at = self.draining_at;
        self.draining
            .iter()
            .map(move |&(b, h)| (at, b as usize, h))
            .chain(
                self.slots.range(..=now_ms).flat_map(|(&at, &i)| {
                    self.vecs[i].iter().map(move |&(b, h)| (at, b as usize, h))
                }),
            )
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        *self = ExpiryIndex::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_at_or_before_the_expiry_and_coarser_further_out() {
        let now = 1_000_000_000;
        for d in [0, 1, 255, 256, 8191, 8192, 1 << 20, 3_600_000, 86_400_000] {
            let e = now + d;
            let at = slot_for(e, now);
            assert!(at <= e && at > 0, "{d}");
            assert_eq!(at % SLOT_MS, 0, "{d}");
            assert!(e - at < SLOT_MS.max(d / FAN), "{d}");
        }
        // A day out: a slot of 2^22 ms (~70 minutes).
        assert_eq!(slot_for(now + 86_400_000, now) % (1 << 22), 0);
        // Far-out expiries share few slots: an hour of expiries set within
        // one second land in at most two.
        let mut keys: Vec<u64> = (0..1000)
            .map(|j| slot_for(now + 3_600_000 + j, now))
            .collect();
        keys.dedup();
        assert!(keys.len() <= 2, "{keys:?}");
        // An expiry in the past or at 1 ms still gets a non-zero slot.
        assert_eq!(slot_for(1, now), 1);
    }

    #[test]
    fn a_deferred_entry_never_lands_in_a_due_slot() {
        // The cycle's deferral: for every expiry after `now`, the new slot
        // is not due at `now`, and it is later than any due slot.
        for now in [10_000u64, 1_000_000_007, 1 << 40] {
            for d in (1..200_000).step_by(97).chain([1 << 30, 1 << 35]) {
                let at = slot_for(now + d, now);
                assert!(at + SLOT_MS > now, "now {now} d {d}");
            }
        }
    }

    #[test]
    fn due_slots_are_handed_out_whole_and_counts_follow() {
        let mut ix = ExpiryIndex::default();
        ix.insert(1000, 1, 7);
        ix.insert(1000, 2, 8);
        ix.insert(5000, 0, 9);
        assert_eq!((ix.len(), ix.entries()), (3, 3));
        assert_eq!(ix.due_at(), Some(1000 + SLOT_MS));
        assert!(!ix.has_due(1000 + SLOT_MS - 1));
        assert_eq!(ix.pop_due(1000 + SLOT_MS - 1), None);
        assert!(ix.has_due(1000 + SLOT_MS));
        let mut got = vec![ix.pop_due(1000 + SLOT_MS).unwrap()];
        // The slot being drained stays due and visible until empty, even
        // when a later `now` is not given.
        assert!(ix.has_due(0));
        assert_eq!(ix.due_at(), Some(0));
        assert_eq!(ix.upto(0).count(), 1);
        got.push(ix.pop_due(0).unwrap());
        got.sort_unstable();
        assert_eq!(got, [(1000, 1, 7), (1000, 2, 8)]);
        assert_eq!(ix.pop_due(1000 + SLOT_MS), None);
        assert_eq!(ix.due_at(), Some(5000 + SLOT_MS));
        assert_eq!(ix.entries(), 1);
        assert_eq!(ix.upto(4999).count(), 0);
        assert_eq!(ix.upto(5000).collect::<Vec<_>>(), [(5000, 0, 9)]);
        // A reinsert adds an entry, not a record; forget the reverse.
        ix.reinsert(6000, 0, 9);
        ix.forget();
        assert_eq!((ix.len(), ix.entries()), (2, 2));
        ix.clear();
        assert!(ix.is_empty());
        assert_eq!((ix.entries(), ix.has_due(u64::MAX)), (0, false));
        assert_eq!(ix.due_at(), None);
    }

    #[test]
    fn writes_alternating_between_slots_keep_every_entry() {
        // The hot slot switches back and forth; slots taken by the cycle
        // give their vector back to be reused.
        let mut ix = ExpiryIndex::default();
        for i in 0..100u64 {
            ix.insert(if i % 2 == 0 { 1024 } else { 2048 }, i as usize, i);
        }
        assert_eq!(ix.upto(1024).count(), 50);
        assert_eq!(ix.upto(2048).count(), 100);
        let first: Vec<_> = std::iter::from_fn(|| ix.pop_due(1024 + SLOT_MS)).collect();
        assert_eq!(first.len(), 50);
        assert!(
            first
                .iter()
                .all(|&(at, b, h)| at == 1024 && b % 2 == 0 && b as u64 == h)
        );
        // The slot just emptied is written again: a new slot, same key.
        ix.insert(1024, 7, 7);
        ix.insert(4096, 8, 8);
        assert_eq!(ix.upto(2048).count(), 51);
        let rest: Vec<_> = std::iter::from_fn(|| ix.pop_due(u64::MAX)).collect();
        assert_eq!(rest.len(), 52);
        assert_eq!((ix.entries(), ix.upto(u64::MAX).count()), (0, 0));
        assert_eq!(ix.slots.len(), 0);
        assert!(ix.vecs.len() <= 3, "{}", ix.vecs.len());
    }

    #[test]
    fn churn_is_bounded_by_compaction() {
        // SET k EX / DEL k in a loop on 100 keys: every DEL leaves a stale
        // entry; the owner compacts when asked, keeping what still stands.
        let mut ix = ExpiryIndex::default();
        let mut live = std::collections::HashSet::new();
        let mut compactions = 0;
        for i in 0..100_000u64 {
            let k = i % 100;
            if live.remove(&k) {
                ix.forget();
            } else {
                live.insert(k);
                ix.insert(4096, k as usize, k);
            }
            if ix.needs_compaction() {
                ix.compact(|at, b, h| at == 4096 && b as u64 == h && live.contains(&h));
                compactions += 1;
                assert_eq!(ix.entries(), live.len());
            }
            assert!(ix.entries() <= 2 * ix.len() + COMPACT_SLACK);
        }
        assert!(compactions > 40, "{compactions}");
        assert_eq!(ix.len(), live.len());
        // Duplicates of an entry that stands (the key was deleted and set
        // again into the same slot) collapse to one.
        let mut ix = ExpiryIndex::default();
        for _ in 0..5 {
            ix.insert(4096, 3, 3);
            ix.forget();
        }
        ix.insert(4096, 3, 3);
        ix.compact(|_, _, _| true);
        assert_eq!((ix.entries(), ix.len()), (1, 1));
        // Compaction also covers the slot being drained.
        ix.insert(4096, 4, 4);
        assert!(ix.pop_due(u64::MAX).is_some());
        ix.compact(|_, b, _| b == 4);
        assert_eq!(ix.entries(), 0);
        assert_eq!(ix.pop_due(u64::MAX), None);
    }
}
