//! MerkleKV: a replicated, eventually consistent key-value server.
//!
//! Every node holds a full replica. Clients speak a text protocol or RESP2
//! over TCP; writes are applied locally, answered, and published to MQTT;
//! a Merkle tree over the data lets nodes repair divergence in background
//! anti-entropy rounds.
//!
//! Module map, bottom up (no file imports one above it; `tests/import_graph.rs`
//! checks that the file-level import graph has no cycle):
//!
//! * Leaves: [`clock`] (the wall clock), [`sync`] (the lock helper),
//!   [`monitor`] (MONITOR feeds),
//!   [`config`]/[`cli`] (settings), [`logging`], [`stats`], [`store`]
//!   (records, versions, Merkle tree), [`protocol`] (parsers into
//!   [`protocol::Command`]s, and every reply byte in [`protocol::reply`]),
//!   [`client`] (the RESP client anti-entropy uses).
//! * Parts of the shared state: [`replication`]'s outbox, [`persist`]'s
//!   engine and log writers, [`antientropy`]'s counters; [`jobs`] (work
//!   deferred off a worker, SYNC).
//! * [`state`]: [`state::Shared`], what every thread holds, and the INFO
//!   section interface.
//! * Users of the shared state: [`exec`] (commands → store → reply, the
//!   one funnel of local writes), [`applier`] (the funnel of remote
//!   writes), [`server`] (per-core event loops), the threads of
//!   [`replication::bridge`], [`persist::threads`],
//!   [`antientropy::scheduler`], [`housekeeping`] and [`expirer`].
//! * [`node`]: the composition root; builds the state, starts the threads.
//!
//! Design for a newcomer: `docs/architecture.md`; the byte-exact wire
//! protocol: `docs/protocol.md`.

pub mod antientropy;
pub mod applier;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod contact;
pub mod exec;
pub mod expirer;
pub mod failfast;
pub mod fuzz;
pub mod heap;
pub mod housekeeping;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod persist;
pub mod protocol;
pub mod pubsub;
pub mod readonly;
pub mod replication;
pub mod script;
pub mod server;
pub mod slowlog;
pub mod state;
pub mod stats;
pub mod store;
pub mod strings;
pub mod sync;
pub mod typeparams;

#[cfg(test)]
mod testutil;
