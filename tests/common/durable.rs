//! Persistent nodes that a test can kill -9 and restart on the same data.
//!
//! A [`DurableNode`] owns its configuration file and data directory
//! (persistence on, `fsync = "always"`, so every acknowledged write is on
//! disk) and the current process, if any. A restarted process listens on a
//! new ephemeral port: whoever must reach it across restarts goes through a
//! [`super::proxy::Proxy`] and is retargeted.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Server, TempDir};

/// A persistent node across process restarts.
pub struct DurableNode {
    pub id: String,
    dir: TempDir,
    config: PathBuf,
    threads: usize,
    server: Option<Server>,
    /// Processes started so far.
    pub starts: u64,
    /// stderr of the processes that were killed, oldest first.
    pub past_stderr: String,
}

impl DurableNode {
    /// Writes the node's configuration: nested layout, `node_id = id`,
    /// persistence with `fsync = "always"` and snapshots every
    /// `snapshot_secs`, then `extra` (more TOML tables, e.g. `[mqtt]` and
    /// `[anti_entropy]`). Does not start it.
    pub fn new(id: &str, threads: usize, snapshot_secs: u64, extra: &str) -> DurableNode {
        let dir = TempDir::new(id);
        let config = dir.file(
            "node.toml",
            &format!(
                "node_id = \"{id}\"\n\n[storage]\npersistence_enabled = true\n\
                 storage_path = \"{}\"\nfsync = \"always\"\nsnapshot_interval_seconds = {snapshot_secs}\n\n{extra}\n",
                dir.path().join("data").display()
            ),
        );
        DurableNode {
            id: id.to_string(),
            dir,
            config,
            threads,
            server: None,
            starts: 0,
            past_stderr: String::new(),
        }
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the process (recovering whatever the data directory holds)
    /// and waits until it listens; its client address.
    pub fn start(&mut self) -> SocketAddr {
        assert!(self.server.is_none(), "{} is already running", self.id);
        let threads = self.threads.to_string();
        let s = Server::start(&[
            "--config",
            self.config.to_str().unwrap(),
            "--threads",
            &threads,
        ]);
        let addr = s.addr;
        self.server = Some(s);
        self.starts += 1;
        addr
    }

    /// SIGKILL: no shutdown path runs, unflushed state is lost.
    pub fn kill9(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill9();
            let err = s.stderr.lock().unwrap().clone();
            self.past_stderr.push_str(&format!(
                "--- {} run {} (killed) ---\n{err}",
                self.id, self.starts
            ));
        }
    }

    /// The running process (panics if it is down).
    pub fn server(&self) -> &Server {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("{} is down", self.id))
    }

    /// The running process, if any.
    pub fn running(&self) -> Option<&Server> {
        self.server.as_ref()
    }

    /// Everything the current process wrote to stderr.
    pub fn stderr(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.stderr.lock().unwrap().clone())
            .unwrap_or_default()
    }
}
