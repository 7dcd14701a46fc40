//! Live settings: the configuration values `CONFIG SET` may change while
//! the node runs (`exec::config`), read where they are used.
//!
//! Each value is one atomic, written by the connection that ran `CONFIG
//! SET` and read by every worker (and the housekeeping threads) with a
//! relaxed load where a constant from [`crate::config::Config`] was read
//! before: no value depends on another being seen at the same instant, so
//! no ordering between them is needed, and a reader sees the new value at
//! the latest on its next read. `CONFIG SET` checks every value before it
//! stores any (all or nothing); readers may observe the stores of one
//! `CONFIG SET` one after the other.
//!
//! The output and bulk-string limits live with the other client limits in
//! [`crate::limits::Memory`], `security.max_auth_failures` in
//! [`crate::auth::Auth`], the scripts' busy threshold in
//! [`crate::script::shared::Scripting`]; the log level is the `log` crate's global
//! maximum level (itself an atomic).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::Config;

/// The live settings (see the module docs).
#[derive(Debug)]
pub struct Live {
    /// Seconds a client may stay idle (`network.connection_timeout`,
    /// Redis `timeout`); 0: no limit.
    timeout_secs: AtomicU64,
    /// Simultaneous client connections (`network.max_connections`, Redis
    /// `maxclients`).
    max_connections: AtomicUsize,
    /// Time every command (`metrics.latency_tracking`).
    latency_tracking: AtomicBool,
    /// Delay of a failed AUTH's reply (`security.auth_failure_delay_ms`).
    auth_failure_delay_ms: AtomicU64,
    /// Seconds between anti-entropy rounds (`anti_entropy.interval_seconds`).
    ae_interval_secs: AtomicU64,
    /// Wakes the anti-entropy scheduler when the interval changed (one
    /// pending wake is enough: it reads the value in force).
    ae_interval_changed: (Sender<()>, Receiver<()>),
    /// Fall of the used-memory estimate that triggers a heap trim
    /// (`limits.heap_trim_threshold`; 0: never).
    heap_trim_threshold: AtomicU64,
    /// Microseconds a worker polls without sleeping after it last found
    /// an event (`network.busy_poll_us`; 0: never).
    busy_poll_us: AtomicU64,
}

impl Live {
    /// The live settings as `config` sets them at startup.
    pub fn new(config: &Config) -> Live {
        Live {
            timeout_secs: AtomicU64::new(config.connection_timeout.map_or(0, |d| d.as_secs())),
            max_connections: AtomicUsize::new(config.max_connections),
            latency_tracking: AtomicBool::new(config.metrics.latency_tracking),
            auth_failure_delay_ms: AtomicU64::new(
                config.security.auth_failure_delay.as_millis() as u64
            ),
            ae_interval_secs: AtomicU64::new(config.anti_entropy.interval.as_secs()),
            ae_interval_changed: bounded(1),
            heap_trim_threshold: AtomicU64::new(config.limits.heap_trim_threshold),
            busy_poll_us: AtomicU64::new(config.busy_poll_us),
        }
    }

    /// Idle time after which a client is disconnected (`None`: never).
    #[inline]
    pub fn timeout(&self) -> Option<Duration> {
        match self.timeout_secs.load(Relaxed) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    /// The idle timeout in seconds (0: none).
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs.load(Relaxed)
    }

    pub fn set_timeout_secs(&self, secs: u64) {
        self.timeout_secs.store(secs, Relaxed);
    }

    /// Most simultaneous client connections.
    #[inline]
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Relaxed)
    }

    pub fn set_max_connections(&self, n: usize) {
        self.max_connections.store(n, Relaxed);
    }

    /// True when commands are timed.
    #[inline]
    pub fn latency_tracking(&self) -> bool {
        self.latency_tracking.load(Relaxed)
    }

    pub fn set_latency_tracking(&self, on: bool) {
        self.latency_tracking.store(on, Relaxed);
    }

    /// How long a failed AUTH's connection is held.
    #[inline]
    pub fn auth_failure_delay(&self) -> Duration {
        Duration::from_millis(self.auth_failure_delay_ms.load(Relaxed))
    }

    pub fn set_auth_failure_delay_ms(&self, ms: u64) {
        self.auth_failure_delay_ms.store(ms, Relaxed);
    }

    /// Time between anti-entropy rounds.
    pub fn ae_interval(&self) -> Duration {
        Duration::from_secs(self.ae_interval_secs.load(Relaxed))
    }

    /// Changes the anti-entropy interval and wakes the scheduler.
    pub fn set_ae_interval_secs(&self, secs: u64) {
        self.ae_interval_secs.store(secs, Relaxed);
        let _ = self.ae_interval_changed.0.try_send(());
    }

    /// Ready when the anti-entropy interval changed (the scheduler's
    /// `select!` arm).
    pub fn ae_interval_changed(&self) -> &Receiver<()> {
        &self.ae_interval_changed.1
    }

    /// Bytes the used-memory estimate must fall before a heap trim.
    pub fn heap_trim_threshold(&self) -> u64 {
        self.heap_trim_threshold.load(Relaxed)
    }

    pub fn set_heap_trim_threshold(&self, bytes: u64) {
        self.heap_trim_threshold.store(bytes, Relaxed);
    }

    /// How long a worker polls without sleeping after it last found an
    /// event; zero: it sleeps at once.
    pub fn busy_poll(&self) -> Duration {
        Duration::from_micros(self.busy_poll_us.load(Relaxed))
    }

    pub fn set_busy_poll_us(&self, us: u64) {
        self.busy_poll_us.store(us, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_the_configuration_and_changes() {
        let mut c = Config {
            connection_timeout: Some(Duration::from_secs(7)),
            max_connections: 5,
            busy_poll_us: 40,
            ..Config::default()
        };
        c.metrics.latency_tracking = true;
        c.security.auth_failure_delay = Duration::from_millis(200);
        let live = Live::new(&c);
        assert_eq!(live.timeout(), Some(Duration::from_secs(7)));
        assert_eq!(live.max_connections(), 5);
        assert!(live.latency_tracking());
        assert_eq!(live.auth_failure_delay(), Duration::from_millis(200));
        assert_eq!(live.busy_poll(), Duration::from_micros(40));
        live.set_busy_poll_us(0);
        assert_eq!(live.busy_poll(), Duration::ZERO);
        live.set_timeout_secs(0);
        live.set_max_connections(9);
        live.set_latency_tracking(false);
        live.set_auth_failure_delay_ms(0);
        assert_eq!(live.timeout(), None);
        assert_eq!(live.timeout_secs(), 0);
        assert_eq!(live.max_connections(), 9);
        assert!(!live.latency_tracking());
        assert_eq!(live.auth_failure_delay(), Duration::ZERO);
    }

    #[test]
    fn an_interval_change_wakes_the_scheduler_once() {
        let live = Live::new(&Config::default());
        assert!(live.ae_interval_changed().try_recv().is_err());
        live.set_ae_interval_secs(3);
        live.set_ae_interval_secs(4);
        assert_eq!(live.ae_interval(), Duration::from_secs(4));
        assert!(live.ae_interval_changed().try_recv().is_ok());
        assert!(live.ae_interval_changed().try_recv().is_err());
    }
}
