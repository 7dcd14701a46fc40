//! Replication: change events leave the workers through the [`Outbox`], a
//! bounded channel that never blocks a worker.
//!
//! Invariant: a worker never waits for the broker. When the channel is full
//! (broker slow or unreachable) the event is dropped and counted;
//! anti-entropy repairs what replication lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::store::Version;

/// Capacity of the outbox channel.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// One local write to publish: a value, or a tombstone (`value: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub version: Version,
}

/// The workers' side of replication.
pub struct Outbox {
    tx: Sender<ChangeEvent>,
    rx: Receiver<ChangeEvent>,
    enabled: AtomicBool,
    dropped: AtomicU64,
}

impl Outbox {
    /// An outbox, initially publishing iff `enabled`.
    pub fn new(enabled: bool) -> Outbox {
        let (tx, rx) = bounded(OUTBOX_CAPACITY);
        Outbox {
            tx,
            rx,
            enabled: AtomicBool::new(enabled),
            dropped: AtomicU64::new(0),
        }
    }

    /// True while local writes are published.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Starts or stops publishing local writes.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    /// Queues a local write for publication if replication is enabled.
    /// Never blocks: a full queue drops the event and counts it.
    #[inline]
    pub fn publish(&self, key: &[u8], value: Option<&[u8]>, version: Version) {
        if !self.is_enabled() {
            return;
        }
        let ev = ChangeEvent {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            version,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(ev) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The consumer side (the replication bridge thread).
    pub fn receiver(&self) -> Receiver<ChangeEvent> {
        self.rx.clone()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Events waiting to be published.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_outbox_queues_nothing_and_full_outbox_counts_drops() {
        let o = Outbox::new(false);
        o.publish(b"k", Some(b"v"), Version::default());
        assert_eq!(o.queued(), 0);
        o.set_enabled(true);
        for _ in 0..OUTBOX_CAPACITY + 3 {
            o.publish(b"k", None, Version::default());
        }
        assert_eq!(o.queued(), OUTBOX_CAPACITY);
        assert_eq!(o.dropped(), 3);
        assert_eq!(o.receiver().recv().unwrap().key, b"k");
    }
}
