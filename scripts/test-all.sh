#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace
# (the pure core's given/when/then and property tests, the log's conformance, crash and tamper
# tests, the CLI and the server on a real socket, the web page in headless Chromium, and the
# independent Python reader of the file format), then the API fuzz run (scripts/fuzz-api.sh:
# Schemathesis against a live server, one test per role). Installs what it needs; builds into a target directory outside the
# checkout so that later runs reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need python3; then
  echo "installing python3 (the independent format reader runs on it)"
  apt-get update -qq && apt-get install -y -qq python3
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
# The PostgreSQL backend's tests start their own clusters from the machine's binaries.
bash scripts/postgres.sh install

# The tests' Python packages (Schemathesis for the fuzz run, and what tests run from Python), and
# the notebooks' (polars, matplotlib, nbclient), in two virtual environments; tests find them
# through LEDGER_VENV and LEDGER_NOTEBOOK_VENV.
export LEDGER_VENV="${LEDGER_VENV:-$HOME/.cache/ledger-venv}"
export LEDGER_NOTEBOOK_VENV="${LEDGER_NOTEBOOK_VENV:-$HOME/.cache/ledger-notebook-venv}"
bash scripts/python-env.sh
# The web page's browser tests: Debian's Chromium, and playwright-core and axe-core from npm
# (pinned in tests/browser/package-lock.json).
bash scripts/browser-env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked --features ledger/parquet -- -D warnings
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# With Parquet (polars, through tables/): the export and the notebooks are tested too.
cargo test --workspace --locked --features ledger/parquet 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# KurrentDB cannot be installed here: its conformance run is an ignored test, run only against a
# server the caller names (README: "KurrentDB").
if [ -n "${LEDGER_TEST_KURRENTDB_URL:-}" ]; then
  echo "== KurrentDB conformance against $LEDGER_TEST_KURRENTDB_URL"
  cargo test --locked --features ledger/parquet --test it kurrent -- --ignored 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "NOT RUN: the KurrentDB conformance suite (set LEDGER_TEST_KURRENTDB_URL=esdb://host:2113?tls=false to run it)" | tee -a "$log"
fi
# The fuzz run reuses the debug binary cargo test has just built (~3 minutes: 40 s per role).
echo "== API fuzz run"
bash scripts/fuzz-api.sh 2>&1 | tee -a "$log"
fuzz_status=${PIPESTATUS[0]}
set -e
[ "$fuzz_status" -eq 0 ] || status=1
# One closing line for the whole suite, summed over the test binaries and the fuzz run's roles.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) n += $i } }
     /^fuzz: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed, %d not run\n", p, f, n }' "$log"
exit "$status"
