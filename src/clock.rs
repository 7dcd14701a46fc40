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

/// Milliseconds since the Unix epoch (zero if the system clock is before
/// it): the physical part of versions, and the unit of every `*_unix_ms`
/// figure. Read on every write, so it reads `CLOCK_REALTIME` (the clock
/// `SystemTime` reads) straight into integers: no `Duration` and no
/// 128-bit division (`as_millis`).
#[inline]
pub fn unix_millis() -> u64 {
    let (secs, nanos) = read(libc::CLOCK_REALTIME);
    if secs < 0 {
        return 0;
    }
    (secs as u64)
        .wrapping_mul(1000)
        .wrapping_add(nanos as u64 / 1_000_000)
}

/// Seconds and nanoseconds of clock `id`.
#[inline]
fn read(id: libc::clockid_t) -> (libc::time_t, libc::c_long) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and the clocks read here
    // (CLOCK_REALTIME, CLOCK_MONOTONIC) exist on every Linux: with these
    // arguments clock_gettime cannot fail.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`, the clock
/// `Instant` reads) as one integer: the per-command latency timer, two
/// reads and a subtraction per command with none of `Instant`'s
/// `Duration` arithmetic (measured in perf/README.md).
#[inline]
pub fn mono_nanos() -> u64 {
    let (secs, nanos) = read(libc::CLOCK_MONOTONIC);
    (secs as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(nanos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_millis_is_system_time_in_milliseconds() {
        let before = since_epoch().as_millis() as u64;
        let ms = unix_millis();
        let after = since_epoch().as_millis() as u64;
        assert!(before <= ms && ms <= after, "{before} {ms} {after}");
    }

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
