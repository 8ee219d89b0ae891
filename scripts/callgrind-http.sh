#!/usr/bin/env bash
# Instructions the server executes per HTTP request (claim or approve), counted by callgrind:
# repeatable to a few hundredths of a percent for the same binary, where decisions per second on
# this shared 2-core machine move by ±15% from one minute to the next. Used to judge changes to
# the request path before measuring them with `ledger bench http` (BENCHMARKS.md).
#
# Usage: scripts/callgrind-http.sh [LEDGER_BINARY]   (default: the release build)
# Needs valgrind and python3. Fills a 20,000-item ledger once per call in a scratch directory,
# starts `ledger serve` under callgrind with instrumentation off, decides 300 items to warm up,
# then counts 1,500 decisions (3,000 requests) from 16 connections.
#
# Caveat: under valgrind the CPU has no SHA extensions, so sha2 falls back to its portable code
# and SHA-256 weighs several times what it does on the machine (~1/3 of the count). Compare counts
# with each other, not with the machine's time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-${CARGO_TARGET_DIR:-$here/../target}/release/ledger}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ledger-callgrind.XXXXXX")
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
"$binary" --data-dir "$scratch/filled" bench http-fill --pending 20000 --reviewers 16 \
    > "$scratch/filled.json" 2>/dev/null
rm -f "$scratch/filled/LOCK"
LEDGER_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$scratch/callgrind.out" \
    "$binary" --data-dir "$scratch/filled" serve --listen 127.0.0.1:0 \
    > "$scratch/serve.out" 2> "$scratch/serve.err" &
server=$!
for _ in $(seq 1 600); do
    grep -q "listening on" "$scratch/serve.out" 2>/dev/null && break
    sleep 0.5
done
address=$(grep -o "127.0.0.1:[0-9]*" "$scratch/serve.out")
python3 "$here/callgrind-http.py" "$address" "$scratch/filled" 0 300 16
callgrind_control -i on "$server" > /dev/null
python3 "$here/callgrind-http.py" "$address" "$scratch/filled" 300 1500 16
callgrind_control -d "$server" > /dev/null
callgrind_control -k "$server" > /dev/null 2>&1 || true
wait "$server" 2>/dev/null || true
server=""
total=$(awk "/^summary:/ { print \$2 }" "$scratch/callgrind.out.1")
echo "$total instructions for 3000 requests: $((total / 3000)) per request ($binary)"
if [ -n "${KEEP_PROFILE:-}" ]; then
    cp "$scratch"/callgrind.out* "$KEEP_PROFILE"/ && echo "profiles copied to $KEEP_PROFILE"
fi
