#!/usr/bin/env bash
# The analytics benchmark of issue 12 (BENCHMARKS.md, "Analytics"): seeds a demo ledger of about
# 10 million events once (ITEMS items, ~5 events each), then times `ledger analytics report --by
# model,kind` and `ledger export parquet` over it, RUNS times each, printing wall time and peak
# RSS (GNU time). Needs a release build with Parquet:
#   cargo build --release --features parquet
# Usage: bash scripts/bench-analytics.sh [DATA_DIR] (default /tmp/ledger-bench-analytics)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
ledger="${LEDGER_BIN:-$target/release/ledger}"
data="${1:-/tmp/ledger-bench-analytics}"
items="${ITEMS:-2000000}"
runs="${RUNS:-3}"
if [ ! -d "$data" ]; then
  echo "== seeding $items items into $data"
  "$ledger" --data-dir "$data" demo seed --items "$items" --seed 1 --weeks 12 \
    --until 2026-11-30T12:00:00Z >/dev/null
fi
measure() {
  local name="$1"; shift
  for run in $(seq "$runs"); do
    /usr/bin/time -f "$name run $run: %e s wall, %M KB peak RSS" "$@" >/dev/null
  done
}
measure "analytics report --by model,kind" "$ledger" --data-dir "$data" analytics report --by model,kind
rm -rf "$data.parquet"
measure "export parquet" "$ledger" --data-dir "$data" export parquet "$data.parquet"
ls -l "$data.parquet"
