#!/bin/bash
# Recovery time for N keys (default 1,000,000): load them into an everysec
# node, kill -9, restart from the log only; after the post-recovery
# snapshot, SIGTERM and restart from the snapshot only.
# LOGLEVEL=merklekv=debug also prints the per-pass timings.
B=${MERKLEKV:-target/release/merklekv}
N=${1:-1000000}; port=17960
dir=$(mktemp -d ${TMPDIR:-/tmp}/mkv-rec.XXXX)
printf 'engine = "sled"\nstorage_path = "%s/d"\n[storage]\nfsync = "everysec"\nsnapshot_interval_seconds = 3600\n' "$dir" > $dir/c.toml
start() {
  t0=$(date +%s.%N)
  RUST_LOG=${LOGLEVEL:-info} $B --port $port --threads 2 --config $dir/c.toml > $dir/out.$1 2>&1 &
  pid=$!
  until grep -q "listening on" $dir/out.$1 2>/dev/null; do sleep 0.005; done
  t1=$(date +%s.%N)
  echo "[$1] start-to-listening: $(echo "($t1-$t0)*1000" | bc -l | cut -d. -f1) ms; $(grep -o 'recovered.*' $dir/out.$1)"
}
start load
python3 "$(dirname "$0")/load.py" $port $N 16
redis-cli -p $port info | grep -E "persist_log_bytes|db_keys|used_memory_kb" | tr -d '\r'
kill -9 $pid; wait $pid 2>/dev/null
ls -la $dir/d | tail -n +2
start log-only
until redis-cli -p $port info | grep -q "persist_snapshots:1"; do sleep 0.1; done
redis-cli -p $port info | grep -E "persist_last_snapshot_(ms|entries|bytes)|db_keys" | tr -d '\r'
t0=$(date +%s.%N); kill -TERM $pid; wait $pid 2>/dev/null; t1=$(date +%s.%N)
echo "SIGTERM-to-exit: $(echo "($t1-$t0)*1000" | bc -l | cut -d. -f1) ms; $(grep -o 'persistence: log flushed.*' $dir/out.log-only)"
ls -la $dir/d | tail -n +2
start snapshot-only
redis-cli -p $port dbsize
kill -9 $pid; wait $pid 2>/dev/null
grep -h "pass 1" $dir/out.* ; rm -rf $dir
