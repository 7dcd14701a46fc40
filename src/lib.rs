//! MerkleKV: a replicated, eventually consistent key-value server.
//!
//! Every node holds a full replica. Clients speak a text protocol or RESP2
//! over TCP; writes are applied locally, answered, and published to MQTT;
//! a Merkle tree over the data lets nodes repair divergence in background
//! anti-entropy rounds.
//!
//! Module map: [`config`]/[`cli`] resolve settings; [`server`] runs the
//! per-core event loops; [`protocol`] parses requests into
//! [`protocol::Command`]s; [`exec`] executes them against the
//! [`store::Store`]; [`replication`] carries change events; [`persist`]
//! logs and snapshots them; [`node`] wires it all together.

pub mod antientropy;
pub mod applier;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod exec;
pub mod fuzz;
pub mod housekeeping;
pub mod jobs;
pub mod logging;
pub mod node;
pub mod persist;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod strings;
pub mod sync;

#[cfg(test)]
mod testutil;
