#!/bin/bash
# Write throughput: redis-benchmark SET (50 clients, EXTRA, default -P 16,
# random keys out of 1M) against a fresh node per run, alternating the
# modes; prints requests/s and the server's CPU time per request (less
# sensitive to other load on a shared machine than throughput).
# usage: bench.sh ROUNDS N [MODES]   (MODES: memory everysec always no)
B=${MERKLEKV:-target/release/merklekv}
ROUNDS=${1:-3}; N=${2:-1000000}; MODES=${3:-"memory everysec always no"}; EXTRA=${EXTRA:-"-P 16"}
TCK=$(getconf CLK_TCK)
run() {
  mode=$1; port=$2
  dir=$(mktemp -d ${TMPDIR:-/tmp}/mkv-bench.XXXX)
  if [ "$mode" = memory ]; then
    args="--engine rwlock"
  else
    printf 'engine = "sled"\nstorage_path = "%s/d"\n[storage]\nfsync = "%s"\n' "$dir" "$mode" > $dir/c.toml
    args="--config $dir/c.toml"
  fi
  RUST_LOG=warn $B --port $port --threads 2 $args > $dir/out 2>&1 &
  pid=$!
  for i in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
  c0=$(awk '{print $14+$15}' /proc/$pid/stat)
  r=$(redis-benchmark -p $port -t set -n $N -c 50 $EXTRA -r 1000000 -q 2>/dev/null | grep -o "SET: [0-9.]* requests per second" | grep -o "[0-9.]*" | head -1)
  c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  kill -TERM $pid; wait $pid 2>/dev/null
  cpu=$(echo "($c1-$c0)*1000000/$TCK/$N" | bc -l)
  printf "%-9s %10.0f req/s  %5.2f us cpu/req\n" $mode $r $cpu
  rm -rf $dir
}
for r in $(seq $ROUNDS); do
  for m in $MODES; do run $m 17950; done
done
