#!/usr/bin/env python3
"""User-space instructions per request of a server, under callgrind.

    python3 perf/callgrind.py [--bin PATH|redis] [--tests ping_mbulk,get,set]
                              [--pipelines 1,16] [--threads N] [--keep DIR]

Starts the server (a MerkleKV binary, default target/release/merklekv, or
redis-server) under `valgrind --tool=callgrind` on a free loopback port,
warms it with 20,000 SETs, zeroes the counters (`callgrind_control -z`),
runs one `redis-benchmark -c 50 -r 100000 -P p -t test` load of a fixed
request count (50,000 at -P 1, 400,000 otherwise), dumps
(`callgrind_control -d`) and prints instructions per request: the whole
process, and for MerkleKV the worker threads alone (`Worker::run`
inclusive). The rest is background threads: under valgrind the sha2
crate cannot use the SHA extensions, so the Merkle refresher's hashing
is counted at its software cost, which the real CPU does not pay.

Instruction counts do not depend on the machine's load, unlike ops/s
and CPU time; they do not show the kernel (at -P 1 most of the time)
nor cache misses. Not part of `cargo test`. Needs valgrind and
redis-tools; `--keep DIR` keeps the dumps for `callgrind_annotate`.
"""
import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_pong(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if "PONG" in r.stdout:
            return
        time.sleep(0.2)
    raise SystemExit(f"no PONG from port {port}")


def measure(binary, threads, test, pipeline, requests, outdir):
    port = free_port()
    out = os.path.join(outdir, f"callgrind.{os.path.basename(binary)}.{test}.P{pipeline}")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if binary == "redis":
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    else:
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(port)]
        if threads:
            cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(vg + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_pong(port)
        bench = ["redis-benchmark", "-p", str(port), "-c", "50", "-r", "100000", "-q"]
        subprocess.run(bench + ["-t", "set", "-n", "20000"], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        subprocess.run(bench + ["-P", str(pipeline), "-t", test, "-n", str(requests)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.terminate()
        proc.wait()
    total = workers = 0
    for f in glob.glob(out + "*"):
        text = open(f).read()
        if "Trigger: dump" not in text:
            continue
        total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", f], capture_output=True, text=True).stdout
        for line in ann.splitlines():
            if "Worker::run [" in line:
                workers = int(line.split()[0].replace(",", ""))
        return total / requests, workers / requests, f
    raise SystemExit("no callgrind dump found")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--bin", default=os.path.join(target, "release", "merklekv"))
    ap.add_argument("--tests", default="ping_mbulk,get,set")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--keep", help="directory to keep the callgrind dumps in")
    a = ap.parse_args()
    outdir = a.keep or tempfile.mkdtemp(prefix="merklekv-callgrind-")
    os.makedirs(outdir, exist_ok=True)
    print("| test | -P | instructions/request (process) | of which worker threads |")
    print("|---|---:|---:|---:|")
    try:
        for test in a.tests.split(","):
            for p in (int(x) for x in a.pipelines.split(",")):
                n = 50_000 if p == 1 else 400_000
                total, workers, _ = measure(a.bin, a.threads, test, p, n, outdir)
                w = f"{workers:,.0f}" if workers else "-"
                print(f"| {test} | {p} | {total:,.0f} | {w} |", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(outdir, ignore_errors=True)


if __name__ == "__main__":
    main()
