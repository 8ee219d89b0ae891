#!/usr/bin/env bash
# The API fuzz run: Schemathesis (pinned in tests/python/requirements.txt, installed into a
# virtual environment) against a live `ledger serve` on a random loopback port, in a scratch data
# directory, once with each role's token, checking every answer against the server's own OpenAPI
# document (status codes, content types, headers, body schemas) and failing on any 5xx.
# tests/python/fuzz_api.py does the work once the server is up; this script prepares the Python
# environment (scripts/python-env.sh) and the binary, and starts and stops the server.
#
# Its last line is `fuzz: N passed, M failed`, one test per role. Settings:
#   LEDGER_VENV          the virtual environment (default ~/.cache/ledger-venv)
#   LEDGER_BIN           the ledger binary to run (default: the debug build in $CARGO_TARGET_DIR,
#                        built here if cargo test has not built it already)
#   LEDGER_FUZZ_SECONDS  the time budget of each role's run (default 40)
#   LEDGER_FUZZ_SEED     Hypothesis's seed (default: a new one, printed, so a failure reproduces)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
venv="${LEDGER_VENV:-$HOME/.cache/ledger-venv}"

scratch="$(mktemp -d)"
server_pid=""
summarized=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
  # Whatever stopped the run early (no environment, no binary, no server) counts as a failure.
  [ -n "$summarized" ] || echo "fuzz: 0 passed, 1 failed"
}
trap cleanup EXIT

bash scripts/python-env.sh

binary="${LEDGER_BIN:-}"
if [ -z "$binary" ]; then
  # Nothing to do when `cargo test` has just built it (it builds the binary for the CLI tests).
  cargo build --locked --quiet --bin ledger
  binary="$CARGO_TARGET_DIR/debug/ledger"
fi

admin_token="fuzz-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
LEDGER_ADMIN_TOKEN="$admin_token" LEDGER_LOG="${LEDGER_LOG:-warn}" \
  "$binary" serve --listen 127.0.0.1:0 --data-dir "$scratch/data" --callback-allow 127.0.0.1/32 \
  >"$scratch/server.out" 2>"$scratch/server.err" &
server_pid=$!
base=""
for _ in $(seq 1 200); do
  base="$(sed -n 's/^listening on \(http:\/\/.*\)$/\1/p' "$scratch/server.out")"
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "the server did not start:"; cat "$scratch/server.out" "$scratch/server.err"
  exit 1
fi
echo "== fuzzing $base with Schemathesis"

set +e
LEDGER_ADMIN_TOKEN="$admin_token" "$venv/bin/python" tests/python/fuzz_api.py "$base" "$scratch"
status=$?
set -e
# A panic or any error the server logged is worth seeing even when every check passed.
if grep -qE 'panicked at|ERROR' "$scratch/server.err"; then
  echo "== the server's log: panics and errors"
  grep -E -A1 'panicked at|ERROR' "$scratch/server.err" | grep -vE '^(--|stack backtrace:)$' | head -20
fi
if [ -s "$scratch/summary" ]; then
  tail -n 1 "$scratch/summary"
  summarized=yes
fi
exit "$status"
