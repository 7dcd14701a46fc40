//! The wall clock: the one place that reads the time since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero if the system clock is before it).
#[inline]
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Milliseconds since the Unix epoch: the physical part of versions, and
/// the unit of every `*_unix_ms` figure.
#[inline]
pub fn unix_millis() -> u64 {
    since_epoch().as_millis() as u64
}
