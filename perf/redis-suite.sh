#!/usr/bin/env bash
# Runs Redis's own Tcl test suite against a MerkleKV node (or, for the
# baseline, against redis-server) as an external server, and prints the
# pass/fail counts and the names of the failing tests.
#
# Usage:
#   perf/redis-suite.sh <redis-checkout> [--server merklekv|redis] [--bin PATH]
#                       [--units "unit/a unit/b"] [extra runtest args…]
#
# <redis-checkout> is a checkout of https://github.com/redis/redis (the
# figures in docs/redis-compat.md are for the 7.0.15 tag and for a newer
# snapshot of the unstable branch; only runtest and tests/ are used, no
# build); it is not part of this repository. By default the release
# binary is built (cargo build --release) and started on an ephemeral
# port; --bin uses another binary. --units replaces issue 17's file list
# (e.g. --units unit/pubsub). Needs tclsh (apt-get install tcl). The full
# runtest output goes to target/redis-suite.log.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
REDIS_SRC=$(cd "$1" && pwd); shift
SERVER=merklekv
BIN=
EXTRA=()
UNITS_ARG=()
while [ $# -gt 0 ]; do
    case "$1" in
        --server) SERVER=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --units) read -r -a UNITS_ARG <<<"$2"; shift 2 ;;
        -h|--help) usage ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
[ -x "$REDIS_SRC/runtest" ] || { echo "no runtest in $REDIS_SRC" >&2; exit 2; }
command -v tclsh >/dev/null || { echo "tclsh missing (apt-get install tcl)" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
LOG="$REPO/target/redis-suite.log"
SERVER_LOG="$REPO/target/redis-suite-server.log"
mkdir -p "$REPO/target"

# The units of issue 17 and the tags that need a server the harness
# started itself (DEBUG, replication, local files, …).
UNITS=(unit/type/incr unit/type/string unit/expire unit/keyspace unit/multi
       unit/scan unit/protocol unit/info-command unit/quit unit/introspection
       unit/introspection-2 unit/other)
[ ${#UNITS_ARG[@]} -gt 0 ] && UNITS=("${UNITS_ARG[@]}")
TAGS="-needs:debug -needs:repl -needs:config-maxmemory -needs:config-resetstat"
TAGS="$TAGS -needs:save -needs:pfdebug -needs:local-process"

PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; true; }
trap cleanup EXIT

case "$SERVER" in
    merklekv)
        if [ -z "$BIN" ]; then
            (cd "$REPO" && cargo build --release --bin merklekv >&2)
            BIN="$REPO/target/release/merklekv"
        fi
        # A drop-in Redis port: inline commands are RESP (README).
        MERKLE_KV_NETWORK_TEXT_PROTOCOL=false \
            "$BIN" --bind 127.0.0.1 --port 0 >"$SERVER_LOG" 2>&1 &
        PID=$!
        PORT=
        for _ in $(seq 1 200); do
            PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$SERVER_LOG" | head -1)
            [ -n "$PORT" ] && break
            kill -0 "$PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
            sleep 0.05
        done
        ;;
    redis)
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
            >"$SERVER_LOG" 2>&1 &
        PID=$!
        for _ in $(seq 1 200); do
            redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
            sleep 0.05
        done
        ;;
    *) usage ;;
esac
[ -n "$PORT" ] || { echo "server did not start; log: $SERVER_LOG" >&2; exit 1; }
echo "server: $SERVER on 127.0.0.1:$PORT" >&2

ARGS=(--host 127.0.0.1 --port "$PORT" --singledb --durable --clients 1
      --timeout 300 --tags "$TAGS")
for u in "${UNITS[@]}"; do ARGS+=(--single "$u"); done
echo "command: ./runtest ${ARGS[*]} ${EXTRA[*]:-}" >&2
(cd "$REDIS_SRC" && ./runtest "${ARGS[@]}" "${EXTRA[@]}") 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' >"$LOG" || true

PASSED=$(grep -c '^\[ok\]: ' "$LOG" || true)
FAILED=$(grep -c '^\[err\]: \|^\[exception\]: ' "$LOG" || true)
echo "failing tests:"
grep '^\[err\]: \|^\[exception\]: ' "$LOG" | sed 's/^/  /' || true
echo "passed: $PASSED  failed: $FAILED  (log: $LOG)"
