//! The bound on versions received from elsewhere, and the count of those
//! refused.
//!
//! Every path that applies a version it did not make — an MQTT event, an
//! entry fetched by an anti-entropy round or `SYNC`, a record replayed from
//! disk — asks [`Store::accept_remote`] first. It applies the one rule,
//! [`check_remote`] (at most `max_clock_skew` ahead of the local wall
//! clock; see `version.rs`, "Bounds"), with this store's setting, and for a
//! refusal counts it under the source's name and logs it the first time
//! that source is refused.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are named; refusals
//! from any further source are counted under [`OTHER`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::version::{DEFAULT_MAX_SKEW_MS, Refused, check_remote};
use super::{Store, Version, now_millis};
use crate::sync::lock;

/// Most sources counted by name.
pub const MAX_SOURCES: usize = 64;
/// Name under which refusals beyond [`MAX_SOURCES`] sources are counted.
pub const OTHER: &str = "other";
/// Longest source name kept (longer ones are cut at a char boundary).
const MAX_NAME: usize = 96;

/// Refusals from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRefusals {
    /// Versions refused.
    pub count: u64,
    /// The last version refused.
    pub last: Version,
    /// How far ahead of the local clock it was, in milliseconds.
    pub ahead_ms: u64,
}

/// The bound's setting and counters (a field of [`Store`]).
pub struct Bound {
    max_skew_ms: AtomicU64,
    total: AtomicU64,
    sources: Mutex<BTreeMap<String, SourceRefusals>>,
}

impl Default for Bound {
    fn default() -> Self {
        Bound {
            max_skew_ms: AtomicU64::new(DEFAULT_MAX_SKEW_MS),
            total: AtomicU64::new(0),
            sources: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Bound {
    /// Counts a refusal from `source`; true if it is that source's first.
    fn note(&self, source: &str, version: Version, why: Refused) -> bool {
        self.total.fetch_add(1, Relaxed);
        let mut name = source;
        if name.len() > MAX_NAME {
            let mut end = MAX_NAME;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name = &name[..end];
        }
        let mut m = lock(&self.sources);
        if !m.contains_key(name) && m.len() >= MAX_SOURCES {
            name = OTHER;
        }
        let first = !m.contains_key(name);
        let e = m.entry(name.to_string()).or_insert(SourceRefusals {
            count: 0,
            last: version,
            ahead_ms: 0,
        });
        e.count += 1;
        e.last = version;
        e.ahead_ms = why.ahead_ms;
        first
    }
}

impl Store {
    /// Sets `max_clock_skew`: how far ahead of the local wall clock a
    /// received version may be, in milliseconds.
    pub fn set_max_clock_skew(&self, ms: u64) {
        self.bound.max_skew_ms.store(ms, Relaxed);
    }

    /// The current `max_clock_skew`, in milliseconds.
    pub fn max_clock_skew(&self) -> u64 {
        self.bound.max_skew_ms.load(Relaxed)
    }

    /// Whether a version received from `source` (e.g. `mqtt node2`,
    /// `sync 10.0.0.2:7379`, `recovery`) may be applied. A refusal is
    /// counted for `source` and logged the first time per source.
    pub fn accept_remote(&self, version: Version, source: &str) -> bool {
        let now = now_millis();
        let skew = self.max_clock_skew();
        match check_remote(version, now, skew) {
            Ok(()) => true,
            Err(why) => {
                if self.bound.note(source, version, why) {
                    log::warn!(
                        "refused version {version} from {source}: {why} (max_clock_skew \
                         {skew} ms); further refusals from it are only counted \
                         (INFO versions_refused)"
                    );
                }
                false
            }
        }
    }

    /// Versions refused so far, from every source.
    pub fn versions_refused(&self) -> u64 {
        self.bound.total.load(Relaxed)
    }

    /// Refusals per source, by name.
    pub fn refusals(&self) -> Vec<(String, SourceRefusals)> {
        lock(&self.bound.sources)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::version::LOGICAL_BITS;
    use super::*;

    #[test]
    fn refusals_are_counted_per_source_and_bounded() {
        let s = Store::with_defaults("n1");
        let now = now_millis();
        let ok = Version::new(now << LOGICAL_BITS, 1);
        let poison = Version::new(u64::MAX, u64::MAX);
        assert!(s.accept_remote(ok, "mqtt a"));
        assert!(!s.accept_remote(poison, "mqtt a"));
        assert!(!s.accept_remote(poison, "mqtt a"));
        let ahead = Version::new((now + 120_000) << LOGICAL_BITS, 1);
        assert!(!s.accept_remote(ahead, "sync b"));
        s.set_max_clock_skew(600_000);
        assert!(s.accept_remote(ahead, "sync b"), "the setting applies");
        assert_eq!(s.versions_refused(), 3);
        let r = s.refusals();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0.as_str(), r[0].1.count), ("mqtt a", 2));
        assert_eq!(r[0].1.last, poison);
        assert_eq!((r[1].0.as_str(), r[1].1.count), ("sync b", 1));
        assert!(r[1].1.ahead_ms >= 119_000);
        s.accept_remote(poison, &"é".repeat(100));
        assert!(s.refusals().iter().all(|(k, _)| k.len() <= MAX_NAME));
        for i in 0..2 * MAX_SOURCES {
            s.accept_remote(poison, &format!("peer{i}"));
        }
        let r = s.refusals();
        assert_eq!(r.len(), MAX_SOURCES + 1, "named sources are bounded");
        let other = r.iter().find(|(k, _)| k == OTHER).unwrap();
        assert_eq!(other.1.count, (MAX_SOURCES + 3) as u64);
    }
}
