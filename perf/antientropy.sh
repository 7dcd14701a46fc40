#!/usr/bin/env bash
# Merkle tree and anti-entropy measurements; results and discussion in
# perf/antientropy.md. Keep runs short: the machine is shared.
#
#   perf/antientropy.sh            # both benches
#   AE_KEYS=100000 perf/antientropy.sh round
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
if [ "$what" = all ] || [ "$what" = write ]; then
  # Write cost with the tree vs the raw table, leaf hashing, root after one
  # write into 1,000,000 keys (criterion).
  cargo bench --bench merkle -- --warm-up-time 1 --measurement-time 4
fi
if [ "$what" = all ] || [ "$what" = round ]; then
  # A round between two nodes of AE_KEYS keys (default 1,000,000) with
  # AE_DIFF (default 100) differing, vs a full copy into an empty node.
  cargo bench --bench antientropy
fi
