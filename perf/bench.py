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

With --pin it also runs every load with the servers pinned to one set of
cores and redis-benchmark to a disjoint set (taskset), and reports pinned
and unpinned tables. With --keys N[,N...] it preloads N keys (16-byte
keys in redis-benchmark's own `key:%012d` format, 32-byte values) into
fresh instances of both servers and reports RSS per key and GET/SET
throughput over that key space (-r N), for each N: key-space scaling.
With --rss-only it runs only the RSS test, optionally for a second
MerkleKV binary (--baseline) in the same run.

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


def taskset(cpus):
    """Command prefix pinning a process to `cpus` (None: no pinning)."""
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []


def split_cpus():
    """Disjoint (server, client) core sets: the first half of the cores
    this process may use for the servers (at least one), the rest for
    redis-benchmark."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 cores")
    half = max(1, len(cpus) // 2)
    return cpus[:half], cpus[half:]


def start_merklekv(binary, threads, cpus=None, name="MerkleKV", busy_poll_us=0):
    # Pinned, MerkleKV's default worker count follows the allowed cores
    # (available_parallelism honours the affinity mask).
    args = taskset(cpus) + [binary, "--bind", "127.0.0.1", "--port", "0"]
    if threads:
        args += ["--threads", str(threads)]
    env = dict(os.environ, RUST_LOG="warn")
    if busy_poll_us:
        env["MERKLE_KV_NETWORK_BUSY_POLL_US"] = str(busy_poll_us)
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
            return Server(name, proc, port)
    proc.kill()
    raise RuntimeError("MerkleKV did not report its port")


def start_redis(cpus=None):
    port = free_port()
    proc = subprocess.Popen(
        taskset(cpus) + ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
         "--logfile", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ping(port)
    return Server("Redis", proc, port)


def redis_benchmark(srv, test, clients, pipeline, requests, keyspace, cpus=None, size=None):
    """Runs one redis-benchmark test (pinned to `cpus` if given; `size`:
    -d, the SET value size); returns (rps, p50_ms, p99_ms, server CPU µs
    per request, client CPU µs per request, cores the client used)."""
    cpu0 = srv.cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(
        taskset(cpus)
        + ["redis-benchmark", "-h", "127.0.0.1", "-p", str(srv.port), "-c", str(clients),
           "-P", str(pipeline), "-n", str(requests), "-r", str(keyspace), "-t", test,
           "--csv"]
        + (["-d", str(size)] if size else []),
        capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_us = (srv.cpu_seconds() - cpu0) * 1e6 / requests
    client_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    client_us = client_s * 1e6 / requests
    for line in out.splitlines():
        cols = [c.strip('"') for c in line.split('","')]
        if cols and cols[0] != "test" and len(cols) >= 7:
            # test, rps, avg, min, p50, p95, p99, max
            return (float(cols[1]), float(cols[4]), float(cols[6]), server_us, client_us,
                    client_s / wall)
    raise RuntimeError(f"cannot parse redis-benchmark output:\n{out}")


def load_keys(port, n, key_fmt=b"k:%014d"):
    """SETs n keys (key_fmt % i, 16 bytes; 32-byte values) with
    redis-cli --pipe, streaming the commands (no payload file: 10M keys
    would be ~700 MB)."""
    proc = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    klen = len(key_fmt % 0)
    for lo in range(0, n, 10000):
        proc.stdin.write(b"".join(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\nv:%030d\r\n" % (klen, key_fmt % i, i)
            for i in range(lo, min(n, lo + 10000))))
    proc.stdin.close()
    out = proc.stdout.read().decode()
    proc.wait()
    if "errors: 0" not in out:
        raise RuntimeError(f"load failed: {out}")


def dbsize(port):
    return int(subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"],
                              capture_output=True, text=True, check=True).stdout.strip())


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


def ab_rounds(a, binary, tests, pipelines, server_cpus=None, client_cpus=None):
    """The alternating A/B runs on one pair of servers; returns
    {(pipeline, test, server name): [(rps, p50, p99, server µs, client µs,
    client cores)]}."""
    results = {}
    tag = " pinned" if server_cpus else ""
    mkv = start_merklekv(binary, a.threads, server_cpus, busy_poll_us=a.busy_poll_us)
    red = start_redis(server_cpus)
    try:
        for r in range(a.rounds):
            for pi, p in enumerate(pipelines):
                n = a.requests_p1 if p == 1 else a.requests_pn
                for ti, t in enumerate(tests):
                    order = [mkv, red] if (r + pi + ti) % 2 == 0 else [red, mkv]
                    for srv in order:
                        res = redis_benchmark(srv, t, a.clients, p, n, a.keyspace, client_cpus)
                        results.setdefault((p, t, srv.name), []).append(res)
                        log(f"round {r + 1}/{a.rounds}{tag} -P {p:<3} {t:<11} {srv.name:<9} "
                            f"{fmt_ops(res[0]):>10} ops/s  p50 {res[1]:.3f} ms  p99 {res[2]:.3f} ms  "
                            f"server {res[3]:.2f} µs/req  client {res[4]:.2f} µs/req "
                            f"({res[5]:.2f} cores)")
    finally:
        mkv.stop()
        red.stop()
    return results


# A load generator using at least this much of its one core is the
# bottleneck of the run.
CLIENT_BOUND = 0.95


def med(results, key, i):
    return statistics.median(x[i] for x in results[key])


def ab_table(a, results, tests, pipelines):
    lines = ["| -P | test | MerkleKV ops/s | Redis ops/s | ratio | MerkleKV p50/p99 ms | "
             "Redis p50/p99 ms | server CPU µs/req MerkleKV / Redis | "
             "redis-benchmark cores MerkleKV / Redis |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    bound = []
    for p in pipelines:
        for t in tests:
            m = [med(results, (p, t, "MerkleKV"), i) for i in range(6)]
            rr = [med(results, (p, t, "Redis"), i) for i in range(6)]
            lines.append(f"| {p} | {t.upper()} | {fmt_ops(m[0])} | {fmt_ops(rr[0])} | "
                         f"**{m[0] / rr[0]:.2f}x** | {m[1]:.3f} / {m[2]:.3f} | {rr[1]:.3f} / {rr[2]:.3f} | "
                         f"{m[3]:.2f} / {rr[3]:.2f} | {m[5]:.2f} / {rr[5]:.2f} |")
            if min(m[5], rr[5]) >= CLIENT_BOUND:
                bound.append(f"-P {p} {t.upper()}")
    lines.append("")
    lines.append("redis-benchmark cores: the load generator's own user+system CPU time divided by "
                 "the run's wall time (it is one thread: 1.00 is all it can do).")
    if bound:
        lines.append(f"Load-generator bound (redis-benchmark at >= {CLIENT_BOUND:.2f} cores against "
                     f"both servers): {', '.join(bound)}. There the ratio measures how much of "
                     "redis-benchmark's own CPU each server's behaviour costs it, not the servers' "
                     "capacity: compare server CPU µs/req.")
    lines.append("")
    ping = next((t for t in tests if t.startswith("ping")), None)
    if ping and "get" in tests:
        fr = ", ".join(
            f"-P {p}: {med(results, (p, 'get', 'MerkleKV'), 0) / med(results, (p, ping, 'MerkleKV'), 0):.2f}"
            for p in pipelines)
        lines.append(f"MerkleKV GET throughput as a fraction of its own {ping.upper()} throughput: {fr}.\n")
    return lines


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
    ap.add_argument("--busy-poll-us", type=int, default=0,
                    help="MerkleKV's network.busy_poll_us (default 0: its default, off)")
    ap.add_argument("--pin", action="store_true",
                    help="also run every load pinned: servers on the first half of the cores, "
                         "redis-benchmark on the rest (taskset); reports both tables")
    ap.add_argument("--keys", default="",
                    help="key-space scaling: comma-separated key counts (e.g. 100000,1000000,10000000); "
                         "preloads each into fresh servers, reports RSS/key and GET/SET -r N")
    ap.add_argument("--rss-only", action="store_true", help="only the RSS test (no A/B loads)")
    ap.add_argument("--baseline", default="",
                    help="with --rss-only: a second MerkleKV binary measured in the same run")
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
    loads = []

    lines = [f"## Results {started:%Y-%m-%d %H:%M} UTC\n"]
    if not a.rss_only and not a.keys:
        lines.append(f"Machine: {host}. redis-benchmark -c {a.clients} -r {a.keyspace}, "
                     f"-n {a.requests_p1} at -P 1 and {a.requests_pn} otherwise; "
                     f"median of {a.rounds} alternating A/B round(s). "
                     f"MerkleKV threads: {a.threads or 'default (one per core)'}"
                     f"{f', busy_poll_us {a.busy_poll_us}' if a.busy_poll_us else ''}; "
                     f"Redis {redis_version()} (persistence off).\n")
        loads.append(os.getloadavg()[0])
        results = ab_rounds(a, binary, tests, pipelines)
        loads.append(os.getloadavg()[0])
        if a.pin:
            lines.append("### Unpinned\n")
        lines.extend(ab_table(a, results, tests, pipelines))
        lines.append("Server CPU µs/req is the server process's user+system CPU time during the run "
                     "divided by the requests: less sensitive to other load on the machine than ops/s.\n")
        if a.pin:
            sc, cc = split_cpus()
            results = ab_rounds(a, binary, tests, pipelines, sc, cc)
            loads.append(os.getloadavg()[0])
            lines.append(f"### Pinned: servers on cores {sc}, redis-benchmark on cores {cc}\n")
            lines.append("(MerkleKV's default worker count follows its allowed cores.)\n")
            lines.extend(ab_table(a, results, tests, pipelines))
    if a.keys:
        lines.extend(scaling(a, binary, host, [int(k) for k in a.keys.split(",")]))
        loads.append(os.getloadavg()[0])
    if a.rss_keys > 0 and not a.keys:
        bins = [(binary, "MerkleKV")]
        if a.baseline:
            bins.append((a.baseline, "MerkleKV baseline"))
        lines.extend(rss_test(bins, a.threads, a.rss_keys))
        loads.append(os.getloadavg()[0])
    lines.append(f"Load average (1 min) sampled during the run: "
                 f"{', '.join(f'{x:.2f}' for x in loads)}.\n")

    text = "\n".join(lines) + "\n"
    print(text)
    with open(a.out, "w") as f:
        f.write(text)
    log(f"written to {a.out}")


def redis_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def measure_load(srv, n, key_fmt=b"k:%014d"):
    """Loads n keys into srv; returns (keys, RSS KiB empty, loaded, secs)."""
    empty = srv.rss_kib()
    t0 = time.time()
    load_keys(srv.port, n, key_fmt)
    secs = time.time() - t0
    keys = dbsize(srv.port)
    # Let lazy frees / background work (MerkleKV hashes the new leaves) settle.
    time.sleep(1.0)
    full = srv.rss_kib()
    log(f"{srv.name}: {keys} keys, RSS {empty} KiB empty, {full} KiB loaded, load {secs:.1f} s")
    return keys, empty, full, secs


def rss_test(binaries, threads, n):
    """RSS after loading n keys into fresh instances: each MerkleKV binary
    of `binaries` [(path, name)], then Redis."""
    rows = []
    starts = [lambda b=b, nm=nm: start_merklekv(b, threads, name=nm) for b, nm in binaries]
    for start in starts + [start_redis]:
        srv = start()
        try:
            rows.append((srv.name,) + measure_load(srv, n))
        finally:
            srv.stop()
    out = [f"RSS after loading {n:,} keys (16-byte keys, 32-byte values) with redis-cli --pipe:\n",
           "| server | keys | RSS empty | RSS loaded | loaded - empty | per key | load time | RSS vs Redis |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    redis_full = rows[-1][3]
    for name, keys, empty, full, secs in rows:
        per = (full - empty) * 1024 / max(keys, 1)
        out.append(f"| {name} | {keys:,} | {empty / 1024:.1f} MiB | {full / 1024:.1f} MiB | "
                   f"{(full - empty) / 1024:.1f} MiB | {per:.0f} B | {secs:.1f} s | "
                   f"**{full / redis_full:.2f}x** |")
    out.append("")
    return out


def scaling(a, binary, host, counts):
    """Key-space scaling: for each key count N, fresh servers, N keys
    preloaded (redis-benchmark's key format, 32-byte values), RSS per key,
    then GET and SET -r N (SET with -d 32, so sizes stay) at each depth,
    alternating which server goes first."""
    sc, cc = split_cpus() if a.pin else (None, None)
    out = [f"### Key-space scaling{' (pinned: servers on cores ' + str(sc) + ', client on ' + str(cc) + ')' if sc else ''}\n",
           f"Machine: {host}. Keys `key:%012d` (16 B), values 32 B, preloaded with redis-cli --pipe; "
           f"then redis-benchmark -c {a.clients} -r N (GET hits every key; SET -d 32), "
           f"-n {a.requests_p1} at -P 1 and {a.requests_pn} otherwise, median of {a.rounds} alternating round(s). "
           f"MerkleKV threads: {a.threads or 'default'}.\n",
           "| keys | MerkleKV RSS/key | Redis RSS/key | RSS ratio | -P | test | MerkleKV ops/s | Redis ops/s | "
           "ratio | server CPU µs/req MerkleKV / Redis |",
           "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for n in counts:
        mkv = start_merklekv(binary, a.threads, sc)
        red = start_redis(sc)
        try:
            rss = {}
            for srv in (mkv, red):
                keys, empty, full, _ = measure_load(srv, n, b"key:%012d")
                rss[srv.name] = ((full - empty) * 1024 / max(keys, 1), full)
            results = {}
            for r in range(a.rounds):
                for pi, p in enumerate(a.pipelines.split(",")):
                    p = int(p)
                    reqs = a.requests_p1 if p == 1 else a.requests_pn
                    for ti, t in enumerate(("get", "set")):
                        order = [mkv, red] if (r + pi + ti) % 2 == 0 else [red, mkv]
                        for srv in order:
                            res = redis_benchmark(srv, t, a.clients, p, reqs, n, cc, size=32)
                            results.setdefault((p, t, srv.name), []).append(res)
                            log(f"keys {n} round {r + 1} -P {p} {t} {srv.name}: {fmt_ops(res[0])} ops/s, "
                                f"server {res[3]:.2f} µs/req")
            first = True
            for p in (int(x) for x in a.pipelines.split(",")):
                for t in ("get", "set"):
                    m = [med(results, (p, t, "MerkleKV"), i) for i in (0, 3)]
                    rr = [med(results, (p, t, "Redis"), i) for i in (0, 3)]
                    head = (f"| {n:,} | {rss['MerkleKV'][0]:.0f} B | {rss['Redis'][0]:.0f} B | "
                            f"{rss['MerkleKV'][1] / rss['Redis'][1]:.2f}x |" if first else "| | | | |")
                    first = False
                    out.append(f"{head} {p} | {t.upper()} | {fmt_ops(m[0])} | {fmt_ops(rr[0])} | "
                               f"**{m[0] / rr[0]:.2f}x** | {m[1]:.2f} / {rr[1]:.2f} |")
        finally:
            mkv.stop()
            red.stop()
    out.append("")
    return out


if __name__ == "__main__":
    main()
