//! Versions: hybrid logical clock timestamps plus an origin tie-breaker.
//!
//! A [`Version`] is `(hlc, node)`:
//!
//! * `hlc` packs physical Unix milliseconds in the upper 48 bits and a
//!   logical counter in the lower 16 ([`Hlc`]). A clock never goes
//!   backwards and is advanced past every version it observes, so a write
//!   made after seeing version `v` always gets a version greater than `v`.
//! * `node` is [`node_hash`] of the origin node id: a stable, specified
//!   64-bit hash (XXH3-64, seed 0) of the id's bytes. Comparing the hashes
//!   instead of the strings keeps versions fixed-size (16 bytes per entry)
//!   and still gives the same total order on every node.
//!
//! Versions are totally ordered by `(hlc, node)`; the larger one wins
//! everywhere (last-writer-wins). Applying the same set of writes in any
//! order therefore yields the same state on every node.
//!
//! Overview: docs/architecture.md, "Versions and conflicts".
//!
//! # Bounds
//!
//! Applying a version advances the shard's clock past it, so that a later
//! local write wins over it. A version from far in the future would drag
//! every later write of the shard along — and at `u64::MAX` the clock could
//! not advance at all: every later write would get the same version, and
//! peers would drop it as stale. Hence:
//!
//! * every version received from outside (an MQTT event, an entry fetched
//!   by anti-entropy or `SYNC`, a record replayed from disk) passes
//!   [`check_remote`] first: its timestamp may be at most [`ceiling`]`(now,
//!   max_clock_skew)`, i.e. its physical part at most `max_clock_skew`
//!   ahead of the local wall clock (any counter within that millisecond);
//! * a clock never goes past [`MAX_HLC`] (`observe` clamps, for versions no
//!   check vetted, e.g. in tests), and a tick adds one: with `2^63` below
//!   it, neither `tick` nor a clear's `floor + 1` can overflow. Ticks stay
//!   strictly monotonic.

/// Number of bits of the logical counter inside an HLC timestamp.
pub const LOGICAL_BITS: u32 = 16;
/// Mask of the logical counter.
pub const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest value a clock reaches by observing: half the range, so that
/// local ticks (one per write) can never overflow after it.
pub const MAX_HLC: u64 = 1 << 63;
/// Largest wall-clock time a clock uses, in Unix milliseconds (year 6429).
pub const MAX_MILLIS: u64 = MAX_HLC >> LOGICAL_BITS;
/// Default for `max_clock_skew`: how far ahead of the local wall clock a
/// received version may be.
pub const DEFAULT_MAX_SKEW_MS: u64 = 60_000;

/// Why a received version was refused ([`check_remote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How far the version's physical part is ahead of the local wall
    /// clock, in milliseconds.
    pub ahead_ms: u64,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms ahead of the local clock", self.ahead_ms)
    }
}

/// The largest timestamp accepted from outside at wall time `now_ms`:
/// physical part `now_ms + max_skew_ms`, any counter; never above
/// [`MAX_HLC`].
pub fn ceiling(now_ms: u64, max_skew_ms: u64) -> u64 {
    let millis = now_ms.saturating_add(max_skew_ms).min(MAX_MILLIS - 1);
    (millis << LOGICAL_BITS) | LOGICAL_MASK
}

/// The one check every received version passes before it is applied (see
/// "Bounds" in the module docs).
pub fn check_remote(version: Version, now_ms: u64, max_skew_ms: u64) -> Result<(), Refused> {
    if version.hlc <= ceiling(now_ms, max_skew_ms) {
        Ok(())
    } else {
        Err(Refused {
            ahead_ms: version.millis().saturating_sub(now_ms),
        })
    }
}

/// The version of an entry or tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version {
    /// Hybrid logical clock timestamp (ms << 16 | logical).
    pub hlc: u64,
    /// Stable hash of the origin node id ([`node_hash`]).
    pub node: u64,
}

impl Version {
    /// Creates a version.
    pub const fn new(hlc: u64, node: u64) -> Self {
        Version { hlc, node }
    }

    /// Physical part of the timestamp, in Unix milliseconds.
    pub const fn millis(&self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}@{:016x}",
            self.millis(),
            self.hlc & ((1 << LOGICAL_BITS) - 1),
            self.node
        )
    }
}

/// Stable 64-bit hash of a node id, used as the version tie-breaker.
pub fn node_hash(node_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(node_id.as_bytes())
}

/// Current wall-clock time in Unix milliseconds.
pub use crate::clock::unix_millis as now_millis;

/// A hybrid logical clock.
///
/// Invariant: every value returned by [`Hlc::tick`] is strictly greater
/// than every earlier return value and than every timestamp passed to
/// [`Hlc::observe`]. The store keeps one clock per shard, guarded by the
/// shard's lock: versions are only ever compared per key, and a key lives
/// in exactly one shard, so per-shard clocks give the same guarantees as a
/// node-wide one without a contended atomic on the write path.
#[derive(Debug, Default, Clone)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A clock that has seen nothing yet.
    pub const fn new() -> Self {
        Hlc { last: 0 }
    }

    /// Returns a fresh timestamp for a local write at wall time `now_ms`:
    /// greater than every earlier one.
    #[inline]
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        let physical = now_ms.min(MAX_MILLIS) << LOGICAL_BITS;
        // `last` is at most MAX_HLC plus one per earlier tick (2^63 of
        // headroom): the increment cannot overflow.
        self.last = physical.max(self.last + 1);
        self.last
    }

    /// Advances the clock to a timestamp received from elsewhere (which
    /// [`check_remote`] vetted), and never past [`MAX_HLC`].
    #[inline]
    pub fn observe(&mut self, hlc: u64) {
        let hlc = hlc.min(MAX_HLC);
        if hlc > self.last {
            self.last = hlc;
        }
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_strictly_monotonic_even_if_wall_clock_goes_back() {
        let mut c = Hlc::new();
        let a = c.tick(1_000);
        let b = c.tick(1_000);
        let d = c.tick(999);
        assert!(a < b && b < d);
        assert_eq!(a, 1_000 << LOGICAL_BITS);
        let e = c.tick(2_000);
        assert_eq!(e, 2_000 << LOGICAL_BITS);
    }

    #[test]
    fn observe_moves_clock_past_remote_versions() {
        let mut c = Hlc::new();
        c.observe(5_000 << LOGICAL_BITS | 7);
        let t = c.tick(1_000);
        assert!(t > (5_000 << LOGICAL_BITS | 7));
        c.observe(1);
        assert!(c.tick(1_000) > t);
    }

    #[test]
    fn the_clock_never_saturates_or_wraps() {
        // The poison of issue 12: a peer's (u64::MAX, u64::MAX). Even
        // unchecked, it cannot stop the clock.
        let mut c = Hlc::new();
        c.observe(u64::MAX);
        assert_eq!(c.last(), MAX_HLC);
        let mut prev = c.last();
        for now in [0, 1_000, u64::MAX] {
            let t = c.tick(now);
            assert!(t > prev, "ticks stay strictly monotonic");
            prev = t;
        }
        // A wall clock past the representable range does not shift bits out.
        let mut c = Hlc::new();
        assert_eq!(c.tick(u64::MAX), MAX_HLC);
    }

    #[test]
    fn remote_versions_are_bounded_by_the_skew() {
        let now = 1_700_000_000_000;
        let skew = DEFAULT_MAX_SKEW_MS;
        let at = |ms: u64, counter: u64| Version::new(ms << LOGICAL_BITS | counter, 7);
        assert_eq!(check_remote(at(now, 0), now, skew), Ok(()));
        assert_eq!(
            check_remote(at(now + skew, LOGICAL_MASK), now, skew),
            Ok(())
        );
        assert_eq!(
            check_remote(at(now + skew + 1, 0), now, skew),
            Err(Refused { ahead_ms: skew + 1 })
        );
        // Anything older is fine: LWW decides.
        assert_eq!(check_remote(Version::new(0, 0), now, skew), Ok(()));
        // The poison, and bounds that would overflow.
        assert!(check_remote(Version::new(u64::MAX, u64::MAX), now, skew).is_err());
        assert!(check_remote(Version::new(u64::MAX, 0), u64::MAX, u64::MAX).is_err());
        assert!(ceiling(u64::MAX, u64::MAX) < MAX_HLC);
        assert_eq!(ceiling(now, 0), at(now, LOGICAL_MASK).hlc);
    }

    #[test]
    fn versions_order_by_clock_then_node() {
        let a = Version::new(10, 5);
        let b = Version::new(10, 6);
        let c = Version::new(11, 0);
        assert!(a < b && b < c);
        assert_eq!(a.max(b), b);
    }

    #[test]
    fn node_hash_is_stable() {
        // XXH3-64 with seed 0 is specified; this value must never change,
        // or nodes of different builds would order ties differently.
        assert_eq!(node_hash(""), 0x2d06800538d394c2);
        assert_ne!(node_hash("node1"), node_hash("node2"));
    }
}
