#!/usr/bin/env python3
"""TLS against plaintext throughput on one node, in one run (perf/tls.md).

Generates a throw-away CA and server certificate with openssl, starts the
release binary with [tls] on an OS-chosen port, and runs the same
redis-benchmark load in plaintext and with --tls, alternating which goes
first each round, at -P 1 and -P 16. Reports the median ops/s per mode,
the TLS/plain ratio and the server's CPU microseconds per request.

    cargo build --release
    python3 perf/tls.py [--binary target/release/merklekv] [--rounds 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

TICKS = os.sysconf("SC_CLK_TCK")


def sh(args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh(["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", "ca.key", "-out", "ca.pem"], d)
    sh(["openssl", "req", *ec, "-subj", "/CN=bench", "-keyout", "server.key",
        "-out", "server.csr"], d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    sh(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
        "ca.key", "-set_serial", "1", "-days", "2", "-extfile", "server.ext",
        "-out", "server.pem"], d)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def bench(port, tls, ca, pipeline, n, clients, pid):
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
            "-n", str(n), "-c", str(clients), "-r", "100000", "-P", str(pipeline), "-q"]
    if tls:
        args[1:1] = ["--tls", "--cacert", ca]
    before = cpu_ticks(pid)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    used = cpu_ticks(pid) - before
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"(SET|GET): ([\d.]+) requests per second", line.strip())
        if m:
            rates[m.group(1)] = float(m.group(2))
    us_per_req = used / TICKS * 1e6 / (2 * n)
    return rates, us_per_req


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="target/release/merklekv")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0: cores)")
    args = ap.parse_args()

    d = tempfile.mkdtemp(prefix="merklekv-tls-bench-")
    make_certs(d)
    conf = os.path.join(d, "node.toml")
    with open(conf, "w") as f:
        f.write(f'[tls]\ncert_file = "{d}/server.pem"\nkey_file = "{d}/server.key"\n')
    cmd = [args.binary, "--config", conf, "--bind", "127.0.0.1", "--port", "0"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    node = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = node.stdout.readline()
        port = int(re.search(r"listening on [^ ]+:(\d+)", line).group(1))
        ca = os.path.join(d, "ca.pem")
        results = {}
        for pipeline, n in ((1, 200_000), (16, 1_000_000)):
            for r in range(args.rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for tls in order:
                    rates, us = bench(port, tls, ca, pipeline, n, args.clients, node.pid)
                    for test, v in rates.items():
                        results.setdefault((pipeline, test, tls), []).append((v, us))
        print(f"{'pipeline':>8} {'test':>4} {'plain ops/s':>12} {'tls ops/s':>12} "
              f"{'tls/plain':>9} {'plain us/req':>12} {'tls us/req':>10}")
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                p = results.get((pipeline, test, False), [])
                t = results.get((pipeline, test, True), [])
                if not p or not t:
                    continue
                pr = statistics.median(v for v, _ in p)
                tr = statistics.median(v for v, _ in t)
                pu = statistics.median(u for _, u in p)
                tu = statistics.median(u for _, u in t)
                print(f"{'-P ' + str(pipeline):>8} {test:>4} {pr:>12.0f} {tr:>12.0f} "
                      f"{tr / pr:>9.2f} {pu:>12.2f} {tu:>10.2f}")
    finally:
        node.terminate()
        node.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
