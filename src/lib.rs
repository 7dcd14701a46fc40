//! MerkleKV: a replicated, eventually consistent key-value server.
//!
//! Every node holds a full replica. Clients speak a text protocol or RESP2
//! over TCP; writes are applied locally, answered, and published to MQTT;
//! a Merkle tree over the data lets nodes repair divergence in background
//! anti-entropy rounds. See `ARCHITECTURE.md`-style docs in each module.

pub mod cli;
pub mod config;
pub mod logging;
pub mod protocol;
