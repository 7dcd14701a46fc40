#!/usr/bin/env python3
"""Side-by-side benchmark: MerkleKV (release build) vs redis-server.

Starts both servers on ephemeral loopback ports, drives them with the same
redis-benchmark loads in alternating A/B order (the order flips every
round, so drift in machine load hits both), takes the median of each
metric over the rounds, and prints and writes a markdown table with
ops/s, p50/p99 latency and the MerkleKV/Redis ratios, plus MerkleKV's GET
throughput as a fraction of its own PING throughput (how close the data
path is to the syscall floor). Then it loads 1,000,000 keys (16-byte keys,
32-byte values) into fresh instances of both and reports their RSS.

Usage: perf/bench.py [--rounds N] [--quick] [--out FILE] [--skip-build] ...
(see --help). Not part of `cargo test`. Needs redis-server,
redis-benchmark and redis-cli (Debian: redis-server, redis-tools).
"""

import argparse
import datetime
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ping(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no PONG from port {port}")


class Server:
    def __init__(self, name, proc, port):
        self.name, self.proc, self.port = name, proc, port

    def cpu_seconds(self):
        """User + system CPU time of the server process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_merklekv(binary, threads):
    args = [binary, "--bind", "127.0.0.1", "--port", "0"]
    if threads:
        args += ["--threads", str(threads)]
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on [^ ]*:(\d+)", line)
        if m:
            port = int(m.group(1))
            wait_ping(port)
            # Keep draining stdout so the server never blocks on it.
            subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            return Server("MerkleKV", proc, port)
    proc.kill()
    raise RuntimeError("MerkleKV did not report its port")


def start_redis():
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
         "--logfile", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ping(port)
    return Server("Redis", proc, port)


def redis_benchmark(srv, test, clients, pipeline, requests, keyspace):
    """Runs one redis-benchmark test; returns (rps, p50_ms, p99_ms,
    server CPU µs per request, client CPU µs per request)."""
    cpu0 = srv.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(srv.port), "-c", str(clients),
         "-P", str(pipeline), "-n", str(requests), "-r", str(keyspace), "-t", test,
         "--csv"],
        capture_output=True, text=True, check=True).stdout
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_us = (srv.cpu_seconds() - cpu0) * 1e6 / requests
    client_us = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * 1e6 / requests
    for line in out.splitlines():
        cols = [c.strip('"') for c in line.split('","')]
        if cols and cols[0] != "test" and len(cols) >= 7:
            # test, rps, avg, min, p50, p95, p99, max
            return float(cols[1]), float(cols[4]), float(cols[6]), server_us, client_us
    raise RuntimeError(f"cannot parse redis-benchmark output:\n{out}")


def load_keys(port, payload_path):
    with open(payload_path, "rb") as f:
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                             stdin=f, capture_output=True, text=True, check=True).stdout
    if "errors: 0" not in out:
        raise RuntimeError(f"load failed: {out}")


def dbsize(port):
    return int(subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"],
                              capture_output=True, text=True, check=True).stdout.strip())


def make_payload(n, path):
    """n SET commands, 16-byte keys and 32-byte values, as raw RESP."""
    with open(path, "wb") as f:
        chunk = []
        for i in range(n):
            key = b"k:%014d" % i            # 16 bytes
            val = b"v:%030d" % i            # 32 bytes
            chunk.append(b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$32\r\n%s\r\n" % (key, val))
            if len(chunk) == 10000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, "
            f"load average {load:.2f} at start")


def fmt_ops(x):
    return f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (median over rounds), default 3")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--tests", default="set,get,incr,mset,ping_mbulk",
                    help="redis-benchmark -t names (PING_INLINE is the text protocol here: use ping_mbulk)")
    ap.add_argument("--requests-p1", type=int, default=200_000)
    ap.add_argument("--requests-pn", type=int, default=1_000_000, help="requests per run when -P > 1")
    ap.add_argument("--keyspace", type=int, default=100_000, help="redis-benchmark -r")
    ap.add_argument("--rss-keys", type=int, default=1_000_000, help="0 skips the RSS test")
    ap.add_argument("--threads", type=int, default=0, help="MerkleKV worker threads (default: its own default)")
    ap.add_argument("--quick", action="store_true", help="1 round, 10x fewer requests, 100k keys for RSS")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results.md"))
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.requests_p1, a.requests_pn = 1, a.requests_p1 // 10, a.requests_pn // 10
        a.rss_keys = min(a.rss_keys, 100_000)

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "release", "merklekv")
    if not a.skip_build:
        log("building release binary ...")
        subprocess.run(["cargo", "build", "--release", "--bin", "merklekv"], cwd=ROOT, check=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    pipelines = [int(p) for p in a.pipelines.split(",")]
    tests = a.tests.split(",")

    results = {}  # (pipeline, test, server) -> list of (rps, p50, p99)
    mkv, red = start_merklekv(binary, a.threads), start_redis()
    try:
        for r in range(a.rounds):
            for pi, p in enumerate(pipelines):
                n = a.requests_p1 if p == 1 else a.requests_pn
                for ti, t in enumerate(tests):
                    order = [mkv, red] if (r + pi + ti) % 2 == 0 else [red, mkv]
                    for srv in order:
                        res = redis_benchmark(srv, t, a.clients, p, n, a.keyspace)
                        results.setdefault((p, t, srv.name), []).append(res)
                        log(f"round {r + 1}/{a.rounds} -P {p:<3} {t:<11} {srv.name:<9} "
                            f"{fmt_ops(res[0]):>10} ops/s  p50 {res[1]:.3f} ms  p99 {res[2]:.3f} ms  "
                            f"server {res[3]:.2f} µs/req  client {res[4]:.2f} µs/req")
    finally:
        mkv.stop()
        red.stop()

    def med(p, t, name, i):
        return statistics.median(x[i] for x in results[(p, t, name)])

    lines = []
    lines.append(f"## Results {started:%Y-%m-%d %H:%M} UTC\n")
    lines.append(f"Machine: {host}. redis-benchmark -c {a.clients} -r {a.keyspace}, "
                 f"-n {a.requests_p1} at -P 1 and {a.requests_pn} otherwise; "
                 f"median of {a.rounds} alternating A/B round(s). "
                 f"MerkleKV threads: {a.threads or 'default (one per core)'}; "
                 f"Redis {redis_version()} (persistence off).\n")
    lines.append("| -P | test | MerkleKV ops/s | Redis ops/s | ratio | MerkleKV p50/p99 ms | "
                 "Redis p50/p99 ms | server CPU µs/req MerkleKV / Redis |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for p in pipelines:
        for t in tests:
            label = t.upper()
            m = [med(p, t, "MerkleKV", i) for i in range(5)]
            rr = [med(p, t, "Redis", i) for i in range(5)]
            lines.append(f"| {p} | {label} | {fmt_ops(m[0])} | {fmt_ops(rr[0])} | "
                         f"**{m[0] / rr[0]:.2f}x** | {m[1]:.3f} / {m[2]:.3f} | {rr[1]:.3f} / {rr[2]:.3f} | "
                         f"{m[3]:.2f} / {rr[3]:.2f} |")
    lines.append("")
    lines.append("Server CPU µs/req is the server process's user+system CPU time during the run "
                 "divided by the requests: less sensitive to other load on the machine than ops/s.\n")
    ping = next((t for t in tests if t.startswith("ping")), None)
    if ping and "get" in tests:
        fr = ", ".join(
            f"-P {p}: {med(p, 'get', 'MerkleKV', 0) / med(p, ping, 'MerkleKV', 0):.2f}"
            for p in pipelines)
        lines.append(f"MerkleKV GET throughput as a fraction of its own {ping.upper()} throughput: {fr}.\n")

    if a.rss_keys > 0:
        lines.extend(rss_test(binary, a.threads, a.rss_keys))

    text = "\n".join(lines) + "\n"
    print(text)
    with open(a.out, "w") as f:
        f.write(text)
    log(f"written to {a.out}")


def redis_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def rss_test(binary, threads, n):
    log(f"RSS test: generating {n} SET commands ...")
    with tempfile.TemporaryDirectory() as d:
        payload = os.path.join(d, "load.resp")
        make_payload(n, payload)
        rows = []
        for start in (lambda: start_merklekv(binary, threads), start_redis):
            srv = start()
            try:
                empty = srv.rss_kib()
                t0 = time.time()
                load_keys(srv.port, payload)
                secs = time.time() - t0
                keys = dbsize(srv.port)
                # Let lazy frees / background work settle, then measure.
                time.sleep(0.5)
                full = srv.rss_kib()
                rows.append((srv.name, keys, empty, full, secs))
                log(f"{srv.name}: {keys} keys, RSS {empty} KiB empty, {full} KiB loaded, load {secs:.1f} s")
            finally:
                srv.stop()
    out = [f"RSS after loading {n:,} keys (16-byte keys, 32-byte values) with redis-cli --pipe:\n",
           "| server | keys | RSS empty | RSS loaded | loaded - empty | per key | load time |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, keys, empty, full, secs in rows:
        per = (full - empty) * 1024 / max(keys, 1)
        out.append(f"| {name} | {keys:,} | {empty / 1024:.1f} MiB | {full / 1024:.1f} MiB | "
                   f"{(full - empty) / 1024:.1f} MiB | {per:.0f} B | {secs:.1f} s |")
    if len(rows) == 2:
        out.append(f"\nMerkleKV/Redis RSS (loaded): **{rows[0][3] / rows[1][3]:.2f}x**\n")
    return out


if __name__ == "__main__":
    main()
