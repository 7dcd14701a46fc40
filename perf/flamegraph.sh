#!/usr/bin/env bash
# CPU profile of a release MerkleKV under redis-benchmark load, rendered as
# a flamegraph.
#
#   perf/flamegraph.sh [-s SECONDS] [-P PIPELINE] [-t TESTS] [-o OUT.svg] [--skip-build]
#
# Samples with the software event cpu-clock (these machines expose no
# hardware counters) at 499 Hz with DWARF call graphs (the release profile
# keeps line-table debug info), while redis-benchmark -c 50 runs TESTS
# (default set,get) against the server on an ephemeral port.
# Needs linux-perf, redis-benchmark, and inferno (cargo install inferno) for
# inferno-collapse-perf / inferno-flamegraph. The tests run concurrently,
# one redis-benchmark each, 50 connections in total. Writes OUT.svg (default
# perf/out/flamegraph.svg) and the folded stacks next to it, and prints the
# hottest functions (self time).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=8 pipeline=16 tests=set,get out=perf/out/flamegraph.svg build=1
while [ $# -gt 0 ]; do
  case "$1" in
    -s) secs=$2; shift 2 ;;
    -P) pipeline=$2; shift 2 ;;
    -t) tests=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --skip-build) build=0; shift ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
for tool in perf redis-benchmark inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

target=${CARGO_TARGET_DIR:-target}
[ "$build" = 1 ] && cargo build --release --bin merklekv
bin=$target/release/merklekv
mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
server_pid= bench_pid=
cleanup() {
  # shellcheck disable=SC2086
  [ -n "$bench_pid" ] && kill $bench_pid 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn "$bin" --bind 127.0.0.1 --port 0 >"$work/server.out" 2>&1 &
server_pid=$!
port=
for _ in $(seq 100); do
  port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$work/server.out" | head -1 | sed 's/.*://') || true
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "server did not start" >&2; cat "$work/server.out" >&2; exit 1; }

# Load: one redis-benchmark per test, concurrently (redis-benchmark runs
# its -t list one test after the other, so a single process would only
# exercise the first test during the recording); 50 connections in total.
IFS=, read -r -a test_list <<<"$tests"
per=$(( (50 + ${#test_list[@]} - 1) / ${#test_list[@]} ))
bench_pids=()
for t in "${test_list[@]}"; do
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$per" -P "$pipeline" -r 100000 -t "$t" \
    -n 100000000 -q >/dev/null 2>&1 &
  bench_pids+=($!)
done
bench_pid="${bench_pids[*]}"
sleep 1

echo "recording ${secs}s of pid $server_pid (-P $pipeline, $tests) ..." >&2
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$server_pid" \
  -o "$work/perf.data" -- sleep "$secs" 2>"$work/perf.log" || { cat "$work/perf.log" >&2; exit 1; }
# shellcheck disable=SC2086
kill $bench_pid 2>/dev/null || true
bench_pid=

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"${out%.svg}.folded"
inferno-flamegraph --title "MerkleKV, redis-benchmark -c 50 -P $pipeline -t $tests" \
  <"${out%.svg}.folded" >"$out"
echo "flamegraph: $out" >&2
echo "top self time:" >&2
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | head -25
