#!/usr/bin/env bash
# The browser end-to-end tests' toolchain (tests/browser), without browser downloads: Debian's
# `chromium` (/usr/bin/chromium, driven by playwright-core through its executablePath, see
# tests/browser/lib.mjs) and tests/browser/node_modules, installed with `npm ci` from the pinned
# tests/browser/package-lock.json.
#
# Usage: scripts/browser-env.sh
#
# Idempotent and quiet when everything is there: installs chromium (and a font, so that pages are
# not drawn in tofu boxes) with apt-get when /usr/bin/chromium is missing, running `apt-get update`
# only if the first attempt fails; runs `npm ci` when node_modules is missing or older than
# package.json or package-lock.json. With $CHROMIUM set (the browser lib.mjs launches), checks
# that browser instead of installing Debian's. Needs Node 20+ and npm; apt-get needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "browser-env.sh: $*" >&2
  exit 1
}

apt_packages=(chromium fonts-dejavu-core)

install_chromium() {
  [ "$(id -u)" -eq 0 ] || die "/usr/bin/chromium is missing and installing it takes root: apt-get install ${apt_packages[*]}"
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and there is no apt-get to install it with"
  echo "== installing ${apt_packages[*]} (Debian's packages; playwright's browser downloads are not used)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null; then
    echo "== apt-get install failed: updating the package lists and trying again"
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null ||
      die "apt-get install ${apt_packages[*]} failed"
  fi
}

# The browser.
if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] || die "CHROMIUM=$CHROMIUM is not an executable"
  chromium=$CHROMIUM
else
  chromium=/usr/bin/chromium
  [ -x "$chromium" ] || install_chromium
  [ -x "$chromium" ] || die "installed ${apt_packages[*]}, but there is still no $chromium"
fi
version=$("$chromium" --version 2>/dev/null) || die "$chromium --version failed: is the browser broken?"

# The Node packages.
command -v node >/dev/null || die "node is not installed (the browser tests need Node 20 or newer)"
command -v npm >/dev/null || die "npm is not installed (it comes with Node)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node $(node --version) is too old: playwright-core needs Node 20 or newer"

cd tests/browser
# npm ci writes node_modules/.package-lock.json last: its absence means an install that did not
# finish.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "== installing tests/browser/node_modules (npm ci, pinned by tests/browser/package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error ||
    die "npm ci failed in tests/browser (is the npm registry reachable? is package-lock.json in step with package.json?)"
  touch "$stamp"
fi
[ -f node_modules/axe-core/axe.min.js ] && [ -f node_modules/playwright-core/package.json ] ||
  die "tests/browser/node_modules lacks playwright-core or axe-core after npm ci"

echo "browser toolchain ready: $version ($chromium), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version'), axe-core $(node -p 'require("./node_modules/axe-core/package.json").version')"
