#!/usr/bin/env bash
# Makes the test command's Python virtual environments:
# - ${LEDGER_VENV:-~/.cache/ledger-venv}: the tests' packages, pinned in tests/python/requirements.txt
#   (their dependencies in tests/python/constraints.txt);
# - ${LEDGER_NOTEBOOK_VENV:-~/.cache/ledger-notebook-venv}: the notebooks' (polars, matplotlib,
#   nbclient), pinned in notebooks/requirements.txt and notebooks/constraints.txt; apart, so that
#   neither set of pins constrains the other.
# Does nothing for an environment that is there with its pins already. scripts/test-all.sh runs it
# before `cargo test` (tests may run Python from them) and scripts/fuzz-api.sh before the fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian splits venv (and ensurepip, which venv needs) out of python3.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "installing python3-venv (the tests' Python packages live in a virtual environment)"
  apt-get update -qq && apt-get install -y -qq python3-venv
fi

# make_venv DIR REQUIREMENTS CONSTRAINTS: installed once, again only when the pins change (their
# hash is kept in the environment).
make_venv() {
  local venv="$1" requirements="$2" constraints="$3"
  local pins
  pins="$(cat "$requirements" "$constraints" | sha256sum | cut -c1-64)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.ledger-pins" 2>/dev/null)" != "$pins" ]; then
    echo "== installing $requirements into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" -c "$constraints"
    echo "$pins" >"$venv/.ledger-pins"
  fi
}

make_venv "${LEDGER_VENV:-$HOME/.cache/ledger-venv}" \
  tests/python/requirements.txt tests/python/constraints.txt
if [ "${LEDGER_SKIP_NOTEBOOK_VENV:-}" != 1 ]; then
  make_venv "${LEDGER_NOTEBOOK_VENV:-$HOME/.cache/ledger-notebook-venv}" \
    notebooks/requirements.txt notebooks/constraints.txt
fi
