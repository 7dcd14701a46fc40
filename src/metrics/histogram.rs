//! A log-linear latency histogram with a single writer.
//!
//! Values are nanoseconds. Below [`SUB`] every value has its own bucket;
//! above, each power of two is split into [`SUB`] equal buckets, so a
//! bucket's width is at most 1/[`SUB`] (6.25 %) of its lower edge — the
//! precision HdrHistogram gives with about 1.2 significant digits, which is
//! what percentiles of command latency need. Values from 2^[`MAX_EXP`] ns
//! (about 37 minutes) up land in the last bucket.
//!
//! Why not the `hdrhistogram` crate: its `Histogram` is not shareable
//! between a recording thread and a reading thread without a lock or a
//! channel, and recording through either on every command would cost the
//! hot path more than this whole module. Here a sample is one
//! `leading_zeros`, two relaxed loads and two relaxed stores on memory
//! only the owning worker writes (no locked read-modify-write); readers on
//! other threads sum relaxed loads into a plain [`Snapshot`], and
//! snapshots of several workers add up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two (a power of two itself).
pub const SUB: u64 = 16;
const SUB_BITS: u32 = SUB.trailing_zeros();
/// Largest exponent with its own buckets.
const MAX_EXP: u32 = 41;
/// Number of buckets.
pub const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) * SUB as usize;

/// Bucket index of a value.
#[inline]
pub fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// Smallest value of bucket `i`.
pub fn lower(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB - 1 + u64::from(SUB_BITS);
    (1 << exp) + (i % SUB) * (1 << (exp - u64::from(SUB_BITS)))
}

/// Largest value of bucket `i` (the "highest equivalent value").
pub fn upper(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return u64::MAX;
    }
    lower(i + 1) - 1
}

/// The recording side: bucket counters written by one thread only.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    /// Records one value. Only the owning thread may call it.
    #[inline]
    pub fn record(&self, v: u64) {
        let c = &self.counts[index(v)];
        c.store(c.load(Relaxed) + 1, Relaxed);
    }

    /// Records one value from any thread (a locked add: for rare events
    /// such as an fsync, not for the command path).
    pub fn record_shared(&self, v: u64) {
        self.counts[index(v)].fetch_add(1, Relaxed);
    }

    /// Adds the current counts to `into` (any thread).
    pub fn add_to(&self, into: &mut Snapshot) {
        for (s, c) in into.counts.iter_mut().zip(self.counts.iter()) {
            *s += c.load(Relaxed);
        }
    }
}

/// A plain copy of bucket counts (one histogram, or several merged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    counts: Vec<u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Snapshot {
    /// Records `n` samples of `v` (tests, merging by hand).
    pub fn add(&mut self, v: u64, n: u64) {
        self.counts[index(v)] += n;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `self - base`, bucket by bucket (saturating): the samples since
    /// `base` was taken.
    pub fn since(&self, base: &Snapshot) -> Snapshot {
        Snapshot {
            counts: self
                .counts
                .iter()
                .zip(&base.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// The value at percentile `p` (0–100): the highest equivalent value
    /// of the bucket holding the sample of that rank, as HdrHistogram
    /// reports it. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * total as f64)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }

    /// Samples whose bucket lies entirely at or below `v` (a Prometheus
    /// `le` bucket, to this histogram's resolution).
    pub fn count_at_most(&self, v: u64) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .take_while(|&(i, _)| upper(i) <= v)
            .map(|(_, c)| c)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        assert_eq!(lower(0), 0);
        for i in 0..BUCKETS - 1 {
            assert_eq!(upper(i) + 1, lower(i + 1), "bucket {i}");
            assert_eq!(index(lower(i)), i, "bucket {i}");
            assert_eq!(index(upper(i)), i, "bucket {i}");
            let width = upper(i) - lower(i) + 1;
            assert!(lower(i) < SUB || width * SUB <= lower(i), "bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(index(1 << 60), BUCKETS - 1);
    }

    #[test]
    fn percentiles_and_merging() {
        let a = Histogram::default();
        let b = Histogram::default();
        for v in 1..=100u64 {
            a.record(v * 1000);
        }
        b.record(5_000_000);
        let mut s = Snapshot::default();
        a.add_to(&mut s);
        b.add_to(&mut s);
        assert_eq!(s.count(), 101);
        let p50 = s.percentile(50.0);
        assert!((50_000..=54_000).contains(&p50), "{p50}");
        let p100 = s.percentile(100.0);
        assert!((5_000_000..=5_400_000).contains(&p100), "{p100}");
        assert!(s.percentile(0.0) >= 1000 && s.percentile(0.0) < 1100);
        assert_eq!(Snapshot::default().percentile(99.0), 0);
        // Whole buckets only: 1..=9 µs are at most 9_999 ns.
        assert_eq!(s.count_at_most(9_999), 9);
        assert_eq!(s.count_at_most(u64::MAX), 101);
        let mut base = Snapshot::default();
        a.add_to(&mut base);
        assert_eq!(s.since(&base).count(), 1);
    }
}
