#!/usr/bin/env bash
# A PostgreSQL for humans and benchmarks, from the machine's own binaries (Debian's `postgresql`
# package; no docker, no network), to run `ledger serve --store URL` against. The tests start
# their own clusters (tests/it/postgres.rs); this script is for everything else.
#
# Usage:
#   scripts/postgres.sh start DIR [PORT]  makes a cluster in DIR/data unless DIR holds one, starts
#                                         it on 127.0.0.1:PORT (default: the port it had, else
#                                         5432) and prints its URL, the only line on stdout:
#                                           url=$(scripts/postgres.sh start /tmp/pg)
#                                           ledger serve --store "$url"
#   scripts/postgres.sh stop DIR          stops it (fast mode: disconnects clients, checkpoints)
#   scripts/postgres.sh install           installs Debian's `postgresql` if initdb is not found
#
# PostgreSQL refuses to run as root: as root, the server runs as $LEDGER_PG_USER (default
# `postgres`, which the package creates), which must be able to reach DIR (/tmp/... is fine,
# /root/... is not). Binaries are found as the tests find them: $LEDGER_PG_BIN, else the newest
# /usr/lib/postgresql/*/bin, else `pg_config --bindir`, else the PATH. The cluster trusts every
# connection to 127.0.0.1 (superuser `postgres`, no password): for test machines, not real data.
# The server logs to DIR/postgres.log.
set -euo pipefail

server_user="${LEDGER_PG_USER:-postgres}"

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

usage() {
  sed -n 's/^#   //p' "$0" | sed -n '/^scripts/p' >&2
  exit 2
}

# The directory of initdb and pg_ctl, or failure.
find_bin() {
  local dir
  if [ -n "${LEDGER_PG_BIN:-}" ]; then
    [ -x "$LEDGER_PG_BIN/initdb" ] || die "LEDGER_PG_BIN=$LEDGER_PG_BIN holds no initdb"
    echo "$LEDGER_PG_BIN"
    return
  fi
  # Newest version first, compared as versions (15 after 9.6).
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return
    fi
  done
  if dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return
  fi
  if dir=$(command -v initdb); then
    dirname "$dir"
    return
  fi
  return 1
}

running_as_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the server's user (see the header), in DIR: that user may not be allowed
# into the caller's working directory.
as_server() {
  local dir=$1
  shift
  if running_as_root; then
    (cd "$dir" && runuser -u "$server_user" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

# The port postgresql.conf sets (the last `port =` line wins, as in PostgreSQL).
configured_port() {
  sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$1/data/postgresql.conf" |
    tail -n 1
}

start() {
  if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
  local bin dir port url
  bin=$(find_bin) || die "PostgreSQL's server binaries are not installed: run $0 install"
  if [ -n "${2:-}" ]; then
    if ! [[ "$2" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$2" -gt 65535 ]; then die "bad port: $2"; fi
  fi
  if running_as_root; then
    id -u "$server_user" >/dev/null 2>&1 ||
      die "PostgreSQL refuses to run as root and the user $server_user does not exist: run $0 install, or set LEDGER_PG_USER"
  fi
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)

  if [ ! -f "$dir/data/PG_VERSION" ]; then
    # Refuse to take over a directory with other things in it (and to chown it).
    [ -z "$(ls -A "$dir")" ] || die "$dir is neither empty nor a cluster made by this script"
    if running_as_root; then
      chown "$server_user:" "$dir"
      as_server / test -w "$dir" -a -x "$dir" ||
        die "$server_user cannot reach $dir: use a directory it can reach, e.g. under /tmp"
    fi
    as_server "$dir" "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
      --encoding=UTF8 --locale=C --no-instructions >"$dir/initdb.log" 2>&1 ||
      die "initdb failed: $(cat "$dir/initdb.log")"
    # Appended, so later lines (a new port) override them, as they do in PostgreSQL.
    cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/postgres.sh
listen_addresses = '127.0.0.1'
port = ${2:-5432}
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
fsync = on
EOF
  elif [ -n "${2:-}" ] && [ "$2" != "$(configured_port "$dir")" ]; then
    echo "port = $2" >>"$dir/data/postgresql.conf"
  fi
  port=$(configured_port "$dir")
  url="postgres://postgres@127.0.0.1:${port}/postgres"

  if as_server "$dir" "$bin/pg_ctl" status --pgdata="$dir/data" >/dev/null 2>&1; then
    echo "already running in $dir (restart it to change its port): ledger serve --store $url" >&2
    echo "$url"
    return
  fi
  if ! as_server "$dir" "$bin/pg_ctl" start --pgdata="$dir/data" --log="$dir/postgres.log" \
    --wait --timeout=120 >/dev/null; then
    tail -n 20 "$dir/postgres.log" >&2 || true
    die "could not start PostgreSQL in $dir (its log is above)"
  fi
  echo "PostgreSQL is running in $dir, logging to $dir/postgres.log: ledger serve --store $url" >&2
  echo "$url"
}

stop() {
  [ $# -eq 1 ] || usage
  local bin dir
  bin=$(find_bin) || die "PostgreSQL's server binaries are not installed: run $0 install"
  dir=$(cd "$1" 2>/dev/null && pwd) || die "no directory $1"
  [ -f "$dir/data/PG_VERSION" ] || die "no cluster in $dir"
  if ! as_server "$dir" "$bin/pg_ctl" status --pgdata="$dir/data" >/dev/null 2>&1; then
    echo "PostgreSQL is not running in $dir" >&2
    return
  fi
  as_server "$dir" "$bin/pg_ctl" stop --pgdata="$dir/data" --mode=fast --wait --timeout=120 \
    >/dev/null || die "could not stop PostgreSQL in $dir (see $dir/postgres.log)"
  echo "PostgreSQL stopped in $dir" >&2
}

install() {
  [ $# -eq 0 ] || usage
  local bin
  if bin=$(find_bin); then
    echo "PostgreSQL is installed: $bin" >&2
    return
  fi
  running_as_root || die "installing PostgreSQL takes root (apt-get)"
  # Debian's package would also make a cluster `main` and start it as a service on port 5432,
  # the port `start` takes by default: ask it not to (postgresql-common reads this directory).
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/ledger.conf
  echo "installing postgresql (Debian's package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bin=$(find_bin) || die "installed the postgresql package, but still found no initdb"
  echo "PostgreSQL is installed: $bin" >&2
}

case "${1:-}" in
  start | stop | install)
    command=$1
    shift
    "$command" "$@"
    ;;
  *) usage ;;
esac
