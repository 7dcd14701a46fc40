#!/usr/bin/env python3
"""Idle wakeups per second per thread of a running merklekv process.

Samples /proc/<pid>/task/*/status (voluntary + nonvoluntary context
switches) twice, SECONDS apart, and prints the per-thread rate. Counts
are independent of machine load (a sleeping thread switches once per
wakeup whether or not the CPU is busy), so this is valid on a shared box.

    perf/idle_wakeups.py <pid> [seconds]
"""
import os
import sys
import time


def sample(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            n = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
            out[tid] = (name, n)
        except FileNotFoundError:
            pass
    return out


def main():
    pid = int(sys.argv[1])
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    a = sample(pid)
    time.sleep(secs)
    b = sample(pid)
    rows = {}
    for tid, (name, n) in b.items():
        before = a.get(tid, (name, n))[1]
        rows.setdefault(name, []).append((n - before) / secs)
    total = 0.0
    for name in sorted(rows):
        for r in rows[name]:
            total += r
            print(f"{name:20s} {r:8.1f}/s")
    print(f"{'total':20s} {total:8.1f}/s")


if __name__ == "__main__":
    main()
