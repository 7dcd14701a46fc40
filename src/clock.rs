//! The wall clock: the one place that reads the time since the Unix epoch;
//! and the monotonic nanosecond timer of per-command latency.

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

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`, the clock
/// `Instant` reads) as one integer: the per-command latency timer, two
/// reads and a subtraction per command with none of `Instant`'s
/// `Duration` arithmetic (measured in perf/README.md).
#[inline]
pub fn mono_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and CLOCK_MONOTONIC
    // exists on every Linux (it cannot fail with these arguments).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_nanos_follows_instant() {
        let a = mono_nanos();
        let i = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let spent = i.elapsed().as_nanos() as u64;
        let b = mono_nanos();
        assert!(b >= a + spent, "{a} {b} {spent}");
    }
}
