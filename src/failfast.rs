//! Fail fast: a panic in any thread stops the whole process.
//!
//! The node is a set of cooperating threads (workers, MQTT bridge and
//! publisher, anti-entropy scheduler and rounds, persistence flusher and
//! snapshotter, housekeeping, expiry). One of them dying alone leaves a process
//! that looks alive but is not: a dead worker's `SO_REUSEPORT` listener
//! stays in the kernel's group, so about one new connection in N hangs;
//! a dead bridge silently stops replication; a dead flusher stops
//! `fsync = always` acknowledgements. Nothing inside the process can
//! restart them safely (the panicking thread may hold locks or half-made
//! changes), so [`install`] sets a panic hook that logs the thread's name,
//! the message and the location, flushes the log, prints Rust's usual
//! panic report and ends the process with status [`EXIT_STATUS`] without
//! running anything else — a supervisor (systemd `Restart=on-failure`,
//! Kubernetes, …) restarts it, and recovery and anti-entropy bring it back
//! to the cluster's state. With `fsync = always` nothing acknowledged is
//! lost; with `everysec` at most the last second, as for a crash.
//!
//! # Testing
//!
//! Debug builds only: [`checkpoint`] panics the calling thread when the
//! environment variable `MERKLEKV_DEBUG_PANIC` names it (`worker-0`,
//! `housekeeping`, `mqtt-bridge`, …, optionally `:<ms>` to wait that long
//! first). Every long-lived thread calls it when it starts, workers also
//! on every event-loop turn, housekeeping and expiry on every tick; release builds
//! compile it to nothing, so no input can reach it.

/// Exit status of a process stopped by a panic (`EX_SOFTWARE`).
pub const EXIT_STATUS: i32 = 70;

/// Installs the panic hook (the binary does, before starting the node).
pub fn install() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string panic payload>");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!(
            "thread '{name}' panicked at {location}: {msg}; stopping the process \
             (exit status {EXIT_STATUS}) so that it can be restarted"
        );
        log::logger().flush();
        report(info);
        // SAFETY: `_exit` only ends the process; it runs no destructors or
        // atexit handlers that could touch state the panic left behind.
        unsafe { libc::_exit(EXIT_STATUS) }
    }));
}

/// Debug builds: panics if `MERKLEKV_DEBUG_PANIC` names the calling thread
/// (`<thread name>`, or `<thread name>:<ms>` to wait until that many
/// milliseconds after the first checkpoint of the process).
#[cfg(debug_assertions)]
pub fn checkpoint() {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};
    static START: OnceLock<Instant> = OnceLock::new();
    static TARGET: OnceLock<Option<(String, Duration)>> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("MERKLEKV_DEBUG_PANIC").ok()?;
        Some(match v.split_once(':') {
            Some((name, ms)) => (
                name.to_string(),
                Duration::from_millis(ms.parse().unwrap_or(0)),
            ),
            None => (v, Duration::ZERO),
        })
    });
    if let Some((name, after)) = target
        && std::thread::current().name() == Some(name.as_str())
        && start.elapsed() >= *after
    {
        panic!("MERKLEKV_DEBUG_PANIC={name}");
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn checkpoint() {}
