//! The Redis-style INFO sections built from the command statistics, in
//! Redis 7.0's exact line formats (docs/protocol.md, INFO):
//!
//! ```text
//! cmdstat_get:calls=2,usec=15,usec_per_call=7.50,rejected_calls=0,failed_calls=0
//! errorstat_ERR:count=1
//! latency_percentiles_usec_get:p50=7.007,p99=8.007,p99.9=8.007
//! ```

use std::fmt::Write as _;

use super::commands::Totals;

/// The percentiles INFO `latencystats` reports (Redis's default
/// `latency-tracking-info-percentiles`).
pub const PERCENTILES: [f64; 3] = [50.0, 99.0, 99.9];

/// `PERCENTILES` as `CONFIG GET latency-tracking-info-percentiles` shows
/// them.
pub fn percentiles_text() -> String {
    PERCENTILES
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces the characters Redis keeps out of INFO names (`#:\r\n`).
fn safe(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['#', ':', '\r', '\n']) {
        name.replace(['#', ':', '\r', '\n'], "_").into()
    } else {
        name.into()
    }
}

/// The body of `# Commandstats`: one line per command with any call,
/// failure or rejection, in name order.
pub fn write_commandstats(t: &Totals, s: &mut String) {
    for (name, c) in t.active() {
        let usec = c.nanos / 1000;
        let per_call = if c.calls == 0 {
            0.0
        } else {
            usec as f64 / c.calls as f64
        };
        let _ = write!(
            s,
            "cmdstat_{}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            safe(name),
            c.calls,
            c.rejected,
            c.failed
        );
    }
}

/// The body of `# Errorstats`: one line per error code, in code order.
pub fn write_errorstats(t: &Totals, s: &mut String) {
    for (code, n) in &t.errors {
        let _ = write!(s, "errorstat_{}:count={n}\r\n", safe(code));
    }
}

/// The body of `# Latencystats`: the percentiles of every timed command,
/// in microseconds with three decimals.
pub fn write_latencystats(t: &Totals, s: &mut String) {
    for (name, c) in t.active() {
        let Some(h) = c.latency.as_ref().filter(|h| h.count() > 0) else {
            continue;
        };
        let _ = write!(s, "latency_percentiles_usec_{}:", safe(name));
        for (i, p) in PERCENTILES.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "p{p}={:.3}", h.percentile(*p) as f64 / 1000.0);
        }
        s.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::commands::{Outcome, WorkerCommands};
    use crate::metrics::names::NAMES;

    #[test]
    fn redis_formats() {
        let w = WorkerCommands::new(NAMES.len());
        let get = NAMES.slot(b"get", None);
        let list = NAMES.slot(b"client", Some(b"list"));
        w.record(get, Outcome::Ok, Some(7_000));
        w.record(get, Outcome::Ok, Some(8_000));
        w.record(list, Outcome::Rejected, None);
        w.error("ERR");
        let mut t = Totals::new(NAMES.all());
        w.add_to(&mut t);
        let mut s = String::new();
        write_commandstats(&t, &mut s);
        assert_eq!(
            s,
            "cmdstat_client|list:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n\
             cmdstat_get:calls=2,usec=15,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n"
        );
        s.clear();
        write_errorstats(&t, &mut s);
        assert_eq!(s, "errorstat_ERR:count=1\r\n");
        s.clear();
        write_latencystats(&t, &mut s);
        assert_eq!(
            s,
            "latency_percentiles_usec_get:p50=7.167,p99=8.191,p99.9=8.191\r\n"
        );
        assert_eq!(percentiles_text(), "50 99 99.9");
        assert_eq!(safe("a:b#c"), "a_b_c");
    }
}
