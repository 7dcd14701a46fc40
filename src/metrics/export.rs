//! What `/metrics` reports (docs/protocol.md, "Metrics endpoint").
//!
//! Nothing here counts anything: the command families come from the
//! workers' command statistics ([`crate::stats::Stats::command_totals`],
//! raw totals, not reset by `CONFIG RESETSTAT`), the node families from
//! the very lines INFO prints ([`FIELDS`] maps an INFO field to a metric),
//! the replication lag from the member table, the fsync latency from the
//! persistence log. So a metric and its INFO field can never disagree.

use std::collections::HashMap;

use super::commands::CommandTotals;
use super::histogram::Snapshot;
use super::prom::{Type, Writer};
use crate::state::Shared;

/// Upper bounds (seconds) of the latency histogram buckets exported, from
/// the finer histogram kept in memory (a sample counts in a bucket when
/// the highest value of its fine bucket is at most the bound).
pub const BUCKETS_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// INFO field → (metric, type, help). Counters end in `_total`.
pub const FIELDS: &[(&str, &str, Type, &str)] = &[
    (
        "db_keys",
        "merklekv_keys",
        Type::Gauge,
        "Live keys (DBSIZE).",
    ),
    (
        "tombstones",
        "merklekv_tombstones",
        Type::Gauge,
        "Tombstones (deleted keys kept for replication and anti-entropy).",
    ),
    (
        "tombstones_oldest_age_seconds",
        "merklekv_tombstones_oldest_age_seconds",
        Type::Gauge,
        "Age of the oldest tombstone.",
    ),
    (
        "expiring_keys",
        "merklekv_expiring_keys",
        Type::Gauge,
        "Keys with an expiry.",
    ),
    (
        "expired_keys",
        "merklekv_expired_keys_total",
        Type::Counter,
        "Keys removed by expiry.",
    ),
    (
        "busy_poll_hits",
        "merklekv_busy_poll_hits_total",
        Type::Counter,
        "Polls without sleeping (network.busy_poll_us) that found an event.",
    ),
    (
        "busy_poll_idle_ms",
        "merklekv_busy_poll_idle_milliseconds_total",
        Type::Counter,
        "Time of polls without sleeping that found nothing.",
    ),
    (
        "versions_refused",
        "merklekv_versions_refused_total",
        Type::Counter,
        "Received versions refused by the clock bound (max_clock_skew_ms).",
    ),
    (
        "used_memory",
        "merklekv_memory_used_bytes",
        Type::Gauge,
        "Used-memory estimate that maxmemory applies to.",
    ),
    (
        "maxmemory",
        "merklekv_memory_max_bytes",
        Type::Gauge,
        "The maxmemory limit (0: none).",
    ),
    (
        "maxmemory_refused_writes",
        "merklekv_maxmemory_refused_writes_total",
        Type::Counter,
        "Writes refused with OOM over maxmemory.",
    ),
    (
        "clients_memory",
        "merklekv_memory_clients_bytes",
        Type::Gauge,
        "Bytes of client input and output buffers.",
    ),
    (
        "auth_failures",
        "merklekv_auth_failures_total",
        Type::Counter,
        "Failed AUTH attempts.",
    ),
    (
        "auth_noauth_refusals",
        "merklekv_auth_noauth_refusals_total",
        Type::Counter,
        "Commands refused with NOAUTH.",
    ),
    (
        "auth_noperm_refusals",
        "merklekv_auth_noperm_refusals_total",
        Type::Counter,
        "Commands refused with NOPERM.",
    ),
    (
        "replication_enabled",
        "merklekv_replication_enabled",
        Type::Gauge,
        "1 when replication is enabled.",
    ),
    (
        "replication_connects",
        "merklekv_replication_broker_connects_total",
        Type::Counter,
        "Successful connections to the MQTT broker.",
    ),
    (
        "replication_connect_failures",
        "merklekv_replication_broker_connect_failures_total",
        Type::Counter,
        "Failed or lost connections to the MQTT broker.",
    ),
    (
        "replication_events_published",
        "merklekv_replication_events_published_total",
        Type::Counter,
        "Change events acknowledged by (or written to) the broker.",
    ),
    (
        "replication_events_unpublished",
        "merklekv_replication_events_unpublished_total",
        Type::Counter,
        "Change events taken from the outbox that never reached the broker.",
    ),
    (
        "replication_dropped",
        "merklekv_replication_events_dropped_total",
        Type::Counter,
        "Change events dropped because the outbox was full.",
    ),
    (
        "replication_queued",
        "merklekv_replication_outbox_events",
        Type::Gauge,
        "Change events waiting in the outbox.",
    ),
    (
        "replication_batches_received",
        "merklekv_replication_batches_received_total",
        Type::Counter,
        "Batches received from other nodes.",
    ),
    (
        "replication_events_applied",
        "merklekv_replication_events_applied_total",
        Type::Counter,
        "Received change events applied (newer than the local version).",
    ),
    (
        "replication_events_stale",
        "merklekv_replication_events_stale_total",
        Type::Counter,
        "Received change events that lost last-writer-wins.",
    ),
    (
        "replication_events_invalid",
        "merklekv_replication_events_invalid_total",
        Type::Counter,
        "Received change events refused as invalid.",
    ),
    (
        "replication_payloads_undecodable",
        "merklekv_replication_payloads_undecodable_total",
        Type::Counter,
        "Received payloads that could not be decoded.",
    ),
    (
        "replication_events_unauthenticated",
        "merklekv_replication_batches_unauthenticated_total",
        Type::Counter,
        "Received batches refused: unsigned or signed with no configured cluster key.",
    ),
    (
        "replication_events_lost",
        "merklekv_replication_events_lost_total",
        Type::Counter,
        "Change events known lost on the way to the broker.",
    ),
    (
        "ae_rounds",
        "merklekv_antientropy_rounds_total",
        Type::Counter,
        "Anti-entropy rounds run.",
    ),
    (
        "ae_rounds_failed",
        "merklekv_antientropy_rounds_failed_total",
        Type::Counter,
        "Anti-entropy rounds that failed.",
    ),
    (
        "ae_keys_repaired",
        "merklekv_antientropy_keys_repaired_total",
        Type::Counter,
        "Keys repaired by anti-entropy.",
    ),
    (
        "ae_keys_removed",
        "merklekv_antientropy_keys_removed_total",
        Type::Counter,
        "Keys removed by anti-entropy.",
    ),
    (
        "ae_bytes_sent",
        "merklekv_antientropy_sent_bytes_total",
        Type::Counter,
        "Bytes sent in anti-entropy rounds.",
    ),
    (
        "ae_bytes_received",
        "merklekv_antientropy_received_bytes_total",
        Type::Counter,
        "Bytes received in anti-entropy rounds.",
    ),
    (
        "ae_requests_served",
        "merklekv_antientropy_requests_served_total",
        Type::Counter,
        "MKV.* requests answered for peers.",
    ),
    (
        "ae_rounds_running",
        "merklekv_antientropy_rounds_running",
        Type::Gauge,
        "Anti-entropy rounds in progress.",
    ),
    (
        "persist_log_bytes",
        "merklekv_persist_log_bytes",
        Type::Gauge,
        "Bytes of the persistence log since the last snapshot.",
    ),
    (
        "persist_snapshots",
        "merklekv_persist_snapshots_total",
        Type::Counter,
        "Snapshots written.",
    ),
    (
        "persist_write_errors",
        "merklekv_persist_write_errors_total",
        Type::Counter,
        "Persistence log write errors.",
    ),
    (
        "cluster_presence_ignored",
        "merklekv_cluster_presence_ignored_total",
        Type::Counter,
        "Presence messages ignored.",
    ),
];

/// Per-peer anti-entropy fields of the INFO `ae_peer<i>` lines.
const PEER_FIELDS: &[(&str, &str, &str)] = &[
    (
        "rounds",
        "merklekv_antientropy_peer_rounds_total",
        "Anti-entropy rounds with this peer.",
    ),
    (
        "failed",
        "merklekv_antientropy_peer_rounds_failed_total",
        "Failed anti-entropy rounds with this peer.",
    ),
    (
        "keys_repaired",
        "merklekv_antientropy_peer_keys_repaired_total",
        "Keys repaired from this peer.",
    ),
    (
        "bytes_sent",
        "merklekv_antientropy_peer_sent_bytes_total",
        "Bytes sent to this peer in anti-entropy rounds.",
    ),
    (
        "bytes_received",
        "merklekv_antientropy_peer_received_bytes_total",
        "Bytes received from this peer in anti-entropy rounds.",
    ),
];

/// The whole exposition.
pub fn render(shared: &Shared) -> String {
    let mut w = Writer::default();
    commands(shared, &mut w);
    let mut info = String::new();
    shared.write_info(shared.store.db(), &mut info);
    node(shared, &info, &mut w);
    w.finish()
}

fn histogram(w: &mut Writer, name: &str, labels: &[(&str, &str)], h: &Snapshot, sum_ns: u64) {
    let bucket = format!("{name}_bucket");
    for &le in BUCKETS_SECONDS {
        let mut l = labels.to_vec();
        let le_text = le.to_string();
        l.push(("le", &le_text));
        let n = h.count_at_most((le * 1e9) as u64);
        w.sample(&bucket, &l, n as f64);
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    w.sample(&bucket, &l, h.count() as f64);
    w.sample(&format!("{name}_sum"), labels, sum_ns as f64 / 1e9);
    w.sample(&format!("{name}_count"), labels, h.count() as f64);
}

/// One counter of a command's totals.
type Field = fn(&CommandTotals) -> u64;

fn commands(shared: &Shared, w: &mut Writer) {
    let t = shared.stats.command_totals();
    let active = t.active();
    let families: [(&str, &str, Field); 3] = [
        (
            "merklekv_commands_total",
            "Commands run, by command (failed ones included).",
            |c| c.calls,
        ),
        (
            "merklekv_commands_failed_total",
            "Commands that ran and answered an error, by command.",
            |c| c.failed,
        ),
        (
            "merklekv_commands_rejected_total",
            "Commands refused before running (arity, syntax, NOAUTH, NOPERM, OOM, READONLY, refused inside MULTI), by command.",
            |c| c.rejected,
        ),
    ];
    for (name, help, get) in families {
        w.family(name, Type::Counter, help);
        for (cmd, c) in &active {
            w.sample(name, &[("command", cmd)], get(c) as f64);
        }
    }
    w.family(
        "merklekv_error_replies_total",
        Type::Counter,
        "Error replies, by error code (ERR, WRONGTYPE, NOAUTH, ...).",
    );
    for (code, n) in &t.errors {
        w.sample("merklekv_error_replies_total", &[("code", code)], *n as f64);
    }
    let name = "merklekv_command_duration_seconds";
    w.family(
        name,
        Type::Histogram,
        "Command run time (execution only), by command; empty with metrics.latency_tracking = false.",
    );
    for (cmd, c) in &active {
        if let Some(h) = &c.latency {
            histogram(w, name, &[("command", cmd)], h, c.nanos);
        }
    }
}

fn node(shared: &Shared, info: &str, w: &mut Writer) {
    let fields: HashMap<&str, &str> = info
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .collect();
    let num = |f: &str| fields.get(f).and_then(|v| v.parse::<f64>().ok());
    let stats = &shared.stats;
    w.single(
        "merklekv_uptime_seconds",
        Type::Gauge,
        "Seconds since the node started.",
        stats.started().elapsed().as_secs_f64(),
    );
    w.single(
        "merklekv_connections",
        Type::Gauge,
        "Open client connections.",
        stats.active_connections() as f64,
    );
    w.single(
        "merklekv_connections_accepted_total",
        Type::Counter,
        "Client connections accepted.",
        stats.total_connections() as f64,
    );
    let (_, evicted, output) = shared.memory.counters();
    w.family(
        "merklekv_connections_rejected_total",
        Type::Counter,
        "Client connections refused or closed by a limit, by reason.",
    );
    for (reason, n) in [
        ("max_connections", stats.rejected_connections()),
        ("maxmemory_clients", evicted),
        ("output_buffer_limit", output),
    ] {
        w.sample(
            "merklekv_connections_rejected_total",
            &[("reason", reason)],
            n as f64,
        );
    }
    w.single(
        "merklekv_memory_rss_bytes",
        Type::Gauge,
        "Resident set size of the process.",
        (crate::stats::rss_kb() * 1024) as f64,
    );
    for &(field, name, ty, help) in FIELDS {
        if let Some(v) = num(field) {
            w.single(name, ty, help, v);
        }
    }
    let connected = fields.get("replication_broker_state") == Some(&"connected");
    w.single(
        "merklekv_replication_broker_connected",
        Type::Gauge,
        "1 while connected to the MQTT broker.",
        f64::from(u8::from(connected)),
    );
    if let Some(unix) = num("persist_last_snapshot_unix") {
        let age = if unix > 0.0 {
            (crate::clock::unix_millis() as f64 / 1000.0 - unix).max(0.0)
        } else {
            stats.started().elapsed().as_secs_f64()
        };
        w.single(
            "merklekv_persist_snapshot_age_seconds",
            Type::Gauge,
            "Seconds since the last snapshot (since start when none was written yet).",
            age,
        );
    }
    if let Some(p) = &shared.persist {
        let (h, sum_ns) = p.fsync_latency();
        let name = "merklekv_persist_fsync_duration_seconds";
        w.family(name, Type::Histogram, "Time of one fsync of a log segment.");
        histogram(w, name, &[], &h, sum_ns);
    }
    peers(info, w);
    lag(shared, w);
}

/// The `ae_peer<i>:addr=…,rounds=…,…` lines as labelled counters.
fn peers(info: &str, w: &mut Writer) {
    let rows: Vec<HashMap<&str, &str>> = info
        .split("\r\n")
        .filter(|l| l.starts_with("ae_peer") && l.as_bytes().get(7).is_some_and(u8::is_ascii_digit))
        .filter_map(|l| l.split_once(':'))
        .map(|(_, v)| v.split(',').filter_map(|kv| kv.split_once('=')).collect())
        .collect();
    for &(field, name, help) in PEER_FIELDS {
        w.family(name, Type::Counter, help);
        for r in &rows {
            let (Some(addr), Some(v)) = (
                r.get("addr"),
                r.get(field).and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            w.sample(name, &[("peer", addr)], v);
        }
    }
}

/// Replication lag from each origin (member table: recent p50 / p99).
fn lag(shared: &Shared, w: &mut Writer) {
    let name = "merklekv_replication_lag_seconds";
    w.family(
        name,
        Type::Gauge,
        "Replication lag of recent events from an origin (local apply time minus the event's clock), by quantile.",
    );
    for r in shared.outbox.members.rows(&shared.config.node_id) {
        let Some((p50, p99)) = r.lag else { continue };
        for (q, ms) in [("0.5", p50), ("0.99", p99)] {
            w.sample(
                name,
                &[("origin", &r.node_id), ("quantile", q)],
                ms as f64 / 1000.0,
            );
        }
    }
}
