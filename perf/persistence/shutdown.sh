#!/bin/bash
# SIGTERM-to-exit with N freshly written keys whose log no snapshot covers.
B=${MERKLEKV:-target/release/merklekv}
N=${1:-1000000}; port=17970
dir=$(mktemp -d ${TMPDIR:-/tmp}/mkv-sd.XXXX)
printf 'engine = "sled"\nstorage_path = "%s/d"\n[storage]\nfsync = "everysec"\nsnapshot_interval_seconds = 3600\n' "$dir" > $dir/c.toml
RUST_LOG=info $B --port $port --threads 2 --config $dir/c.toml > $dir/out 2>&1 &
pid=$!
until grep -q "listening on" $dir/out 2>/dev/null; do sleep 0.005; done
python3 "$(dirname "$0")/load.py" $port $N 16 > /dev/null
t0=$(date +%s.%N); kill -TERM $pid; wait $pid; rc=$?; t1=$(date +%s.%N)
echo "N=$N SIGTERM-to-exit: $(echo "($t1-$t0)*1000" | bc -l | cut -d. -f1) ms (exit $rc); $(grep -o 'persistence: log flushed.*' $dir/out)"
rm -rf $dir
