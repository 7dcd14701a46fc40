#!/usr/bin/env bash
# Expiry measurements (issue 14). Needs the release binary
# (cargo build --release), redis-server, redis-cli, redis-benchmark.
#
# 1. SET with an expiry vs plain SET, merklekv and redis-server in one run.
# 2. 1,000,000 keys with a 1 s TTL: time until DBSIZE is 0 and RSS before,
#    loaded and after; GET p99 on other keys while they expire, and the
#    same GET run without expiring keys.
#
# TOMBSTONE_TTL=<seconds> runs merklekv with that storage.tombstone_ttl:
# with 1, an expired record's tombstone is already past it at conversion,
# so the record is removed outright (default 86400: tombstones are kept).
# HEAP_TRIM=<bytes> sets limits.heap_trim_threshold (0: no heap trim; unset:
# the binary's default, and no such line, so older binaries run too).
# ONLY_EXPIRY=1 skips part 1.
set -euo pipefail
BIN=${BIN:-target/release/merklekv}
N=${N:-1000000}
TMP=$(mktemp -d /tmp/expiry-perf.XXXXXX)
MKV=$((20000 + RANDOM % 20000)); RDS=$((MKV + 1))
printf '[storage]\ntombstone_ttl_seconds = %s\n' "${TOMBSTONE_TTL:-86400}" > "$TMP/node.toml"
[ -n "${HEAP_TRIM:-}" ] && printf '[limits]\nheap_trim_threshold = %s\n' "$HEAP_TRIM" >> "$TMP/node.toml"
echo "$(lscpu | grep 'Model name' | tr -s ' '); $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); tombstone_ttl ${TOMBSTONE_TTL:-86400} s; heap_trim_threshold ${HEAP_TRIM:-default}; $BIN"
"$BIN" --config "$TMP/node.toml" --bind 127.0.0.1 --port $MKV --threads 2 >/dev/null 2>&1 & MPID=$!
redis-server --port $RDS --save '' --appendonly no >/dev/null 2>&1 & RPID=$!
trap 'kill $MPID $RPID 2>/dev/null; rm -rf "$TMP"' EXIT
until redis-cli -p $MKV ping >/dev/null 2>&1 && redis-cli -p $RDS ping >/dev/null 2>&1; do sleep 0.1; done
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
# CPU ms (user + system) of one of merklekv's threads so far.
tid() { { grep -lx "$1" /proc/$MPID/task/*/comm || true; } | head -1 | cut -d/ -f5; }
HK=$(tid housekeeping)
# The expiry thread (binaries before it ran the cycle on housekeeping).
EX=$(tid expiry)
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' /proc/$MPID/task/$1/stat; }
hk_cpu() { cpu $HK; }
ex_cpu() { if [ -n "$EX" ]; then cpu $EX; else echo 0; fi; }
summary() { grep -A2 'latency summary' | tail -1; }
# The final line of a -q run (the progress lines end in \r, not \n).
quiet() { tr '\r' '\n' | grep 'requests per second' | tail -1; }
info() { redis-cli -p $MKV info | tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2}'; }

echo "== 1. SET vs SET EX (redis-benchmark -n 300000 -P 16 -r 1000000 -c 50)"
for port in $([ -n "${ONLY_EXPIRY:-}" ] || echo $MKV $RDS); do
  name=$([ $port = $MKV ] && echo merklekv || echo redis-server)
  p=$(redis-benchmark -p $port -n 300000 -P 16 -r 1000000 -c 50 -q SET key:__rand_int__ xxx | quiet)
  e=$(redis-benchmark -p $port -n 300000 -P 16 -r 1000000 -c 50 -q SET key:__rand_int__ xxx EX 3600 | quiet)
  echo "$name  SET: $p"
  echo "$name  SET EX 3600: $e"
  redis-cli -p $port flushall >/dev/null
done

echo "== 2. $N keys with PX 1000 (merklekv)"
redis-cli -p $MKV flushall >/dev/null
redis-benchmark -p $MKV -n 100000 -r 100000 -P 16 -q SET other:__rand_int__ v >/dev/null
OTHER=$(redis-cli -p $MKV dbsize)
echo "other keys: $OTHER"
base_rss=$(rss $MPID)
echo "baseline GET p99 (no expiring keys):"
redis-benchmark -p $MKV -n 400000 -r 100000 -c 20 -P 1 GET other:__rand_int__ | summary
python3 - "$N" > $TMP/load.resp <<'PY'
import sys
n=int(sys.argv[1]); w=sys.stdout.write
for i in range(n):
    k=f"exp:{i}"
    w(f"*5\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$16\r\nvvvvvvvvvvvvvvvv\r\n$2\r\nPX\r\n$4\r\n1000\r\n")
PY
t0=$(date +%s%N)
redis-cli -p $MKV --pipe < $TMP/load.resp | tail -1
t1=$(date +%s%N); c1=$(hk_cpu); e1=$(ex_cpu)
loaded_rss=$(rss $MPID)
echo "load took $(( (t1 - t0) / 1000000 )) ms; dbsize right after: $(redis-cli -p $MKV dbsize)"
redis-benchmark -p $MKV -n 400000 -r 100000 -c 20 -P 1 GET other:__rand_int__ > $TMP/get.txt &
BPID=$!
while [ "$(redis-cli -p $MKV dbsize)" -gt "$OTHER" ]; do sleep 0.05; done
t2=$(date +%s%N)
echo "DBSIZE back to the other keys $(( (t2 - t1) / 1000000 )) ms after the load ended (keys expire 1000 ms after their SET)"
# Every record converted (value freed) by the active cycle or a read:
# INFO expired_keys counts them.
for _ in $(seq 6000); do [ "$(info expired_keys)" -ge "$N" ] && break; sleep 0.05; done
t3=$(date +%s%N)
ex_used=$([ -n "$EX" ] && echo "$(( $(ex_cpu) - e1 )) ms" || echo "(no such thread)")
echo "all $N converted (values freed) $(( (t3 - t1) / 1000000 )) ms after the load ended; CPU meanwhile: housekeeping thread $(( $(hk_cpu) - c1 )) ms, expiry thread $ex_used"
# RSS back below half-way between the baseline and the loaded RSS (gives
# up after 30 s: without a heap trim it does not come down).
half=$(( (base_rss + loaded_rss) / 2 ))
for _ in $(seq 600); do [ "$(rss $MPID)" -le "$half" ] && break; sleep 0.05; done
t4=$(date +%s%N)
if [ "$(rss $MPID)" -le "$half" ]; then
  echo "RSS below $half KiB (half-way back) $(( (t4 - t1) / 1000000 )) ms after the load ended"
else
  echo "RSS still above $half KiB (half-way back) $(( (t4 - t1) / 1000000 )) ms after the load ended"
fi
wait $BPID
echo "GET p99 while they expired:"; summary < $TMP/get.txt
echo "RSS KiB: baseline $base_rss, loaded $loaded_rss, after expiry $(rss $MPID)"
redis-cli -p $MKV info | tr -d '\r' | grep -E '^(expired_keys|expiring_keys|tombstones|db_keys|used_memory_kb|heap_trims|heap_trim_returned_kb|heap_trim_ms):'
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
