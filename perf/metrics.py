#!/usr/bin/env python3
"""The hot-path cost of metrics: redis-benchmark against two MerkleKV nodes
of the same release binary, in the same run:

  on   metrics.bind set (the HTTP listener scraped once a second during
       the run) and metrics.latency_tracking = true (two clock reads and a
       histogram sample per command);
  off  no listener and metrics.latency_tracking = false.

Per-command counters (calls, failures, error codes) are recorded in both:
they have no switch. Loads: SET and GET with -P 1 and -P 16; the order of
the two nodes flips every round so drift in machine load hits both; the
median of each is reported with the on/off throughput ratio, and the
table is appended to perf/metrics.md with the CPU model and load average.

Usage: perf/metrics.py [--rounds N] [--skip-build] [--threads N]
Not part of `cargo test`. Needs redis-benchmark.
"""

import argparse
import datetime
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "perf", "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def start(binary, threads, on):
    env = dict(os.environ, RUST_LOG="info")
    args = [binary, "--bind", "127.0.0.1", "--port", "0", "--threads", str(threads)]
    if on:
        args += ["--metrics-bind", "127.0.0.1:0"]
        env["MERKLE_KV_METRICS_LATENCY_TRACKING"] = "true"
    else:
        env["MERKLE_KV_METRICS_LATENCY_TRACKING"] = "false"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    port = metrics = None
    deadline = time.time() + 20
    while time.time() < deadline and port is None:
        line = proc.stdout.readline()
        m = re.search(r"listening on [^ ]*:(\d+)", line or "")
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        raise RuntimeError("no listening line")
    if on:
        while time.time() < deadline and metrics is None:
            line = proc.stderr.readline()
            m = re.search(r"metrics listening on http://([^/]+)/metrics", line or "")
            if m:
                metrics = m.group(1)
    for stream in (proc.stdout, proc.stderr):
        subprocess.Popen(["cat"], stdin=stream, stdout=subprocess.DEVNULL)
    bench.wait_ping(port)
    srv = bench.Server("on" if on else "off", proc, port)
    srv.metrics = metrics
    return srv


def scraper(addr, stop, count):
    """GET /metrics once a second until `stop` is set."""
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
            r.read()
        count[0] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="server worker threads (default 1: the benchmark client gets the other core)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "metrics.md"))
    a = ap.parse_args()
    binary = os.path.join(ROOT, "target", "release", "merklekv")
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "merklekv"], cwd=ROOT, check=True)
    machine = bench.machine()
    loads = [("set", 1, 200_000), ("get", 1, 200_000), ("set", 16, 1_000_000), ("get", 16, 1_000_000)]
    on, off = start(binary, a.threads, True), start(binary, a.threads, False)
    stop, scrapes = threading.Event(), [0]
    t = threading.Thread(target=scraper, args=(on.metrics, stop, scrapes), daemon=True)
    t.start()
    results, cpu = {}, {}
    try:
        for r in range(a.rounds):
            order = (on, off) if r % 2 == 0 else (off, on)
            for test, pipeline, n in loads:
                for srv in order:
                    rps, _, _, server_us, _ = bench.redis_benchmark(
                        srv, test, a.clients, pipeline, n, 100_000)
                    results.setdefault((test, pipeline, srv.name), []).append(rps)
                    cpu.setdefault((test, pipeline, srv.name), []).append(server_us)
            bench.log(f"round {r + 1}/{a.rounds} done")
    finally:
        stop.set()
        on.stop()
        off.stop()
    rows = []
    for test, pipeline, _ in loads:
        m_on = statistics.median(results[(test, pipeline, "on")])
        m_off = statistics.median(results[(test, pipeline, "off")])
        c_on = statistics.median(cpu[(test, pipeline, "on")])
        c_off = statistics.median(cpu[(test, pipeline, "off")])
        rows.append(f"| {test.upper()} -P {pipeline} | {m_on:,.0f} | {m_off:,.0f} | {m_on / m_off:.3f} "
                    f"| {c_on:.2f} | {c_off:.2f} | {c_on / c_off:.3f} |")
    load_end = os.getloadavg()[0]
    table = "\n".join([
        f"### {datetime.date.today()} — {a.rounds} rounds, {a.clients} clients, --threads {a.threads}",
        "",
        f"{machine}; load average {load_end:.2f} at the end; /metrics scraped {scrapes[0]} times during the run.",
        "",
        "| Load | on (ops/s) | off (ops/s) | on / off | on: server CPU µs/req | off: server CPU µs/req | CPU on / off |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(table)
    with open(a.out, "a") as f:
        f.write("\n" + table)


if __name__ == "__main__":
    sys.exit(main())
