//! Observability: per-command statistics recorded on the workers
//! ([`commands`], with [`histogram`] and the slots of [`names`]), the Redis-style INFO sections
//! built from them (`commandstats`, `errorstats`, `latencystats`), and
//! the optional HTTP listener ([`http`]) serving Prometheus metrics
//! ([`export`], [`prom`]) and health probes.
//!
//! The workers only record (single-writer counters, no lock, no shared
//! cache line); everything that reads — INFO on any worker, the scrape on
//! the metrics thread — merges the workers' counters on read.

pub mod commands;
pub mod export;
pub mod histogram;
pub mod http;
pub mod info;
pub mod names;
pub mod prom;
