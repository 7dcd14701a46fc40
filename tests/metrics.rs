//! The metrics listener (`metrics.bind`) against the real binary:
//! `/metrics` fetched over a raw socket and checked twice — by the line
//! grammar of the Prometheus text format 0.0.4 below, and by the
//! reference parser (`prometheus_client`, Python) when it is installed —
//! with exact counts after known commands; `/health`; `/ready` before and
//! after the broker connects (real mosquitto); 400, 404, 405, 431.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::broker::Broker;
use common::{DEADLINE, Server, TempDir, python_has, wait_until};

/// Starts a node with `--metrics-bind 127.0.0.1:0` and returns it with
/// the listener's address (from its log line).
fn start(args: &[&str]) -> (Server, SocketAddr) {
    let mut all = vec!["--metrics-bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let srv = Server::start(&all);
    let mut addr = None;
    let found = wait_until(DEADLINE, || {
        let log = srv.stderr.lock().unwrap();
        addr = log
            .split("metrics listening on http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    });
    assert!(found, "no metrics line: {}", srv.stderr.lock().unwrap());
    (srv, addr.unwrap())
}

/// Sends raw request bytes; returns (status, headers, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, HashMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    // The server may answer (431) and close before all of a long request
    // is written.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    assert_eq!(
        headers["content-length"].parse::<usize>().unwrap(),
        body.len(),
        "{head}"
    );
    (status, headers, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// A sample's labels.
type Labels = Vec<(String, String)>;
/// One sample: name, labels, value.
type Sample = (String, Labels, f64);

fn metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{k="v",…}` at the start of `s`: the labels and the rest.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (name, r) = rest.split_once("=\"").ok_or("no =\"")?;
        if !label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => v.push('\\'),
                    '"' => v.push('"'),
                    'n' => v.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => v.push(c),
            }
        };
        out.push((name.to_string(), v));
        rest = &r[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The Prometheus text format 0.0.4, line by line: HELP and TYPE lines
/// before their family's samples, at most once per family; samples of a
/// family together; names and labels well formed; histograms with
/// non-decreasing cumulative buckets ending at `+Inf` = `_count`.
fn validate(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut closed: Vec<String> = Vec::new();
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kind {
                "HELP" | "TYPE" => {
                    if !metric_name(name) {
                        return Err(err("bad family name".into()));
                    }
                    if closed.contains(&name.to_string()) {
                        return Err(err("family appears twice".into()));
                    }
                }
                _ => continue,
            }
            if let Some((f, _)) = &current
                && f != name
            {
                closed.push(f.clone());
            }
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                    return Err(err("bad type".into()));
                }
                if types.insert(name.to_string(), t.to_string()).is_some() {
                    return Err(err("second TYPE".into()));
                }
                current = Some((name.to_string(), t.to_string()));
            } else {
                current = Some((name.to_string(), String::new()));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?
            .split(' ');
        let v = value(fields.next().unwrap()).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        let (family, ty) = current
            .clone()
            .ok_or_else(|| err("sample before TYPE".into()))?;
        let ok = name == family
            || (ty == "histogram"
                && [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_string()));
        if !ok {
            return Err(err(format!("sample outside its family {family}")));
        }
        if ty == "counter" && (v.is_nan() || v < 0.0) {
            return Err(err("negative counter".into()));
        }
        samples.push((name.to_string(), labels, v));
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        // Group buckets by their labels other than `le`.
        let mut series: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
        for (name, labels, v) in samples.iter().filter(|s| s.0 == bucket) {
            let le = labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or(format!("{name} without le"))?;
            let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            series.entry(rest).or_default().push((value(&le.1)?, *v));
        }
        for (labels, buckets) in series {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, n) in &buckets {
                if le <= last.0 || n < last.1 {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
                last = (le, n);
            }
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let count = samples
                .iter()
                .find(|s| s.0 == format!("{family}_count") && s.1 == labels)
                .ok_or(format!("{family}{labels:?}: no _count"))?;
            if count.2 != last.1 {
                return Err(format!("{family}{labels:?}: +Inf != _count"));
            }
        }
    }
    Ok(())
}

/// The value of the sample `name` with exactly `labels`.
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.2)
}

/// Runs the reference parser over `text` when Python has it: the family
/// names it found, or `None` when `prometheus_client` is not installed.
fn python_families(text: &str) -> Option<Vec<String>> {
    if !python_has("prometheus_client") {
        eprintln!("note: prometheus_client not installed; Rust grammar check only");
        return None;
    }
    let dir = TempDir::new("metrics-py");
    let file = dir.file("metrics.txt", text);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
             \x20   print(f.name, f.type, len(f.samples))\n",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

fn resp(s: &mut TcpStream, args: &[&str], want: &[u8]) {
    s.write_all(&common::req(
        &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
    ))
    .unwrap();
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "{args:?}"
    );
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let (srv, addr) = start(&[]);
    let mut s = srv.connect();
    resp(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    resp(&mut s, &["SET", "k2", "v"], b"+OK\r\n");
    resp(&mut s, &["GET", "k"], b"$1\r\nv\r\n");
    resp(
        &mut s,
        &["GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    resp(
        &mut s,
        &["INCR", "k"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    // RESETSTAT restarts INFO's statistics, not the endpoint's counters.
    resp(&mut s, &["CONFIG", "RESETSTAT"], b"+OK\r\n");

    let (status, headers, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "{headers:?}"
    );
    let samples = validate(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let one = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing:\n{body}"))
    };
    assert_eq!(one("merklekv_commands_total", &[("command", "set")]), 2.0);
    assert_eq!(one("merklekv_commands_total", &[("command", "get")]), 1.0);
    assert_eq!(
        one("merklekv_commands_rejected_total", &[("command", "get")]),
        1.0
    );
    assert_eq!(
        one("merklekv_commands_failed_total", &[("command", "incr")]),
        1.0
    );
    assert_eq!(
        one(
            "merklekv_commands_total",
            &[("command", "config|resetstat")]
        ),
        1.0
    );
    assert_eq!(one("merklekv_error_replies_total", &[("code", "ERR")]), 2.0);
    let d = "merklekv_command_duration_seconds";
    assert_eq!(one(&format!("{d}_count"), &[("command", "set")]), 2.0);
    assert_eq!(
        one(
            &format!("{d}_bucket"),
            &[("command", "set"), ("le", "+Inf")]
        ),
        2.0
    );
    assert!(one(&format!("{d}_sum"), &[("command", "set")]) > 0.0);
    assert_eq!(one("merklekv_keys", &[]), 2.0);
    assert_eq!(one("merklekv_tombstones", &[]), 0.0);
    assert_eq!(one("merklekv_connections", &[]), 1.0);
    assert_eq!(one("merklekv_connections_accepted_total", &[]), 1.0);
    assert_eq!(
        one(
            "merklekv_connections_rejected_total",
            &[("reason", "max_connections")]
        ),
        0.0
    );
    assert!(one("merklekv_memory_rss_bytes", &[]) > 0.0);
    assert_eq!(one("merklekv_replication_broker_connected", &[]), 0.0);
    assert_eq!(one("merklekv_replication_events_published_total", &[]), 0.0);
    assert_eq!(one("merklekv_antientropy_rounds_total", &[]), 0.0);
    // Every family has HELP and TYPE, counters end in _total.
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut p = line.split(' ').skip(2);
        let (name, ty) = (p.next().unwrap(), p.next().unwrap());
        assert!(name.starts_with("merklekv_"), "{line}");
        assert!(body.contains(&format!("# HELP {name} ")), "{name}");
        assert_eq!(ty == "counter", name.ends_with("_total"), "{line}");
    }
    if let Some(families) = python_families(&body) {
        for want in [
            "merklekv_commands counter",
            "merklekv_command_duration_seconds histogram",
            "merklekv_keys gauge",
            "merklekv_connections_rejected counter",
        ] {
            assert!(
                families.iter().any(|f| f.starts_with(want)),
                "{want} not parsed: {families:?}"
            );
        }
    }
}

#[test]
fn metrics_http_errors_and_limits() {
    let (_srv, addr) = start(&["--threads", "1"]);
    let (status, _, body) = get(addr, "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/metrics/x").0, 404);
    let (status, headers, _) = http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET");
    assert_eq!(http(addr, b"HELLO\r\n\r\n").0, 400);
    assert_eq!(http(addr, b"GET /metrics HTTP/2.0\r\n\r\n").0, 400);
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 20_000));
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http(addr, &long).0, 431);
    // The query string is ignored; the listener still serves.
    let (status, _, body) = get(addr, "/metrics?x=1");
    assert_eq!(status, 200);
    validate(&body).unwrap_or_else(|e| panic!("{e}"));
    let (status, _, body) = get(addr, "/ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
}

#[test]
fn ready_waits_for_the_broker() {
    // A broker port with nothing listening yet.
    let mut broker = Broker::start();
    let port = broker.port;
    broker.kill();
    let dir = TempDir::new("metrics-ready");
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"ready-node\"\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{port}\"\n\
             topic_prefix = \"mkv-metrics\"\n"
        ),
    );
    let (_srv, addr) = start(&["--config", conf.to_str().unwrap(), "--threads", "1"]);
    let (status, _, body) = get(addr, "/ready");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(
        body.starts_with(&format!(
            "replication: broker 127.0.0.1:{port} not connected"
        )),
        "{body}"
    );
    assert_eq!(get(addr, "/health").0, 200);
    broker.restart();
    let mut last = String::new();
    let ready = wait_until(Duration::from_secs(30), || {
        let (status, _, body) = get(addr, "/ready");
        last = body;
        status == 200
    });
    assert!(ready, "never ready: {last}");
    let (_, _, body) = get(addr, "/metrics");
    let samples = validate(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(&samples, "merklekv_replication_broker_connected", &[]),
        Some(1.0)
    );
}

#[test]
fn the_grammar_check_refuses_malformed_text() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n\
              # HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
              h_sum 3\nh_count 2\n";
    assert_eq!(validate(ok).unwrap().len(), 5);
    for bad in [
        "a 1",                                              // no final newline
        "a 1\n",                                            // no TYPE
        "# TYPE a counter\na -1\n",                         // negative counter
        "# TYPE a gauge\nb 1\n",                            // outside its family
        "# TYPE a gauge\na{k=\"v} 1\n",                     // unterminated label
        "# TYPE a gauge\na{k=\"\\x\"} 1\n",                 // bad escape
        "# TYPE a gauge\na{1k=\"v\"} 1\n",                  // bad label name
        "# TYPE a gauge\na one\n",                          // bad value
        "# TYPE a gauge\n# TYPE b gauge\n# TYPE a gauge\n", // family twice
        "# TYPE a wobble\n",                                // bad type
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n", // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",
    ] {
        assert!(validate(bad).is_err(), "accepted: {bad:?}");
    }
}

#[test]
fn persistence_metrics() {
    let dir = TempDir::new("metrics-persist");
    let (srv, addr) = start(&[
        "--engine",
        "sled",
        "--storage-path",
        dir.path().to_str().unwrap(),
        "--threads",
        "1",
    ]);
    let mut s = srv.connect();
    resp(&mut s, &["SET", "k", "v"], b"+OK\r\n");
    // Under `fsync = everysec` the flush thread syncs the segment within
    // about a second.
    let mut last = String::new();
    let synced = wait_until(Duration::from_secs(20), || {
        let (_, _, body) = get(addr, "/metrics");
        let samples = validate(&body).unwrap_or_else(|e| panic!("{e}"));
        let n = sample(
            &samples,
            "merklekv_persist_fsync_duration_seconds_count",
            &[],
        );
        last = body;
        n.is_some_and(|n| n >= 1.0)
    });
    assert!(synced, "no fsync counted:\n{last}");
    let samples = validate(&last).unwrap();
    assert!(sample(&samples, "merklekv_persist_log_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&samples, "merklekv_persist_snapshot_age_seconds", &[]).is_some());

    // The Grafana dashboard charts only metrics this node exports.
    let families: Vec<&str> = last
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/grafana-dashboard.json"),
    )
    .unwrap();
    let mut charted = 0;
    for (i, _) in dashboard.match_indices("merklekv_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            families.contains(&family),
            "dashboard charts {name}, not exported"
        );
        charted += 1;
    }
    assert!(charted >= 10, "{charted}");
}
