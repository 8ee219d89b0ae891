#!/usr/bin/env bash
# Makes the test command's Python virtual environment at ${LEDGER_VENV:-~/.cache/ledger-venv}
# with the packages pinned in tests/python/requirements.txt (their dependencies pinned in
# tests/python/constraints.txt); does nothing when it is there with those pins already.
# scripts/test-all.sh runs it before `cargo test` (tests may run Python from it) and
# scripts/fuzz-api.sh before the fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LEDGER_VENV:-$HOME/.cache/ledger-venv}"

# Debian splits venv (and ensurepip, which venv needs) out of python3.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "installing python3-venv (the tests' Python packages live in a virtual environment)"
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
# Installed once, again only when the pins change (their hash is kept in the environment).
pins="$(cat tests/python/requirements.txt tests/python/constraints.txt | sha256sum | cut -c1-64)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.ledger-pins" 2>/dev/null)" != "$pins" ]; then
  echo "== installing the tests' Python packages into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r tests/python/requirements.txt -c tests/python/constraints.txt
  echo "$pins" >"$venv/.ledger-pins"
fi
