//! Deferred jobs: requests a worker must not run itself (SYNC, SAVE) and the
//! way their answer finds its connection again.
//!
//! A worker turns such a request into a [`Job`]: the [`Task`] plus a
//! [`Responder`] that knows the connection (worker token and connection
//! id) and the worker's completion channel and waker. The thread that runs
//! the task answers through the responder exactly once; the worker writes
//! the [`Completion`]'s bytes to the connection if it still exists.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::protocol::reply::{Proto, error, ok};

/// Work that must not run on a worker thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Run one anti-entropy round with a peer (SYNC).
    Sync {
        host: String,
        port: u16,
        full: bool,
        verify: bool,
        /// Let `--full` remove more than half of the local records.
        force: bool,
        /// End the stale state before the round (`crate::contact`).
        rejoin: bool,
    },
    /// Write a snapshot now (`SAVE`; persistent engine).
    Save,
    /// Run or manage a Lua script (`EVAL`, `FCALL`, `SCRIPT LOAD`, …): the
    /// worker sends it to the script thread, not to the jobs thread.
    Script(crate::script::Call),
}

/// A reply produced off the worker, routed back to its connection.
#[derive(Debug)]
pub struct Completion {
    /// Worker-local connection token.
    pub token: usize,
    /// Connection id (guards against a reused token).
    pub conn_id: u64,
    /// Encoded reply.
    pub bytes: Vec<u8>,
}

/// Answers a deferred request exactly once.
pub struct Responder {
    /// The worker's completion channel.
    pub(crate) completions: Sender<Completion>,
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) token: usize,
    pub(crate) conn_id: u64,
    pub(crate) proto: Proto,
}

impl Responder {
    /// Sends `OK` (or `+OK`) or `ERROR <msg>` (or `-ERR <msg>`).
    pub fn respond(self, result: Result<(), String>) {
        let mut bytes = Vec::new();
        match result {
            Ok(()) => ok(&mut bytes, self.proto),
            Err(e) => error(&mut bytes, self.proto, &e),
        }
        let _ = self.completions.send(Completion {
            token: self.token,
            conn_id: self.conn_id,
            bytes,
        });
        let _ = self.waker.wake();
    }
}

impl Responder {
    /// Sends an encoded reply.
    pub fn send(self, bytes: Vec<u8>) {
        let _ = self.completions.send(Completion {
            token: self.token,
            conn_id: self.conn_id,
            bytes,
        });
        let _ = self.waker.wake();
    }
}

/// A deferred task and where its answer goes.
pub struct Job {
    pub task: Task,
    pub responder: Responder,
}
