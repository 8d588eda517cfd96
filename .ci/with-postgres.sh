#!/usr/bin/env bash
# Run a command beside a throwaway PostgreSQL server: `.ci/with-postgres.sh pytest -q`.
#
# The tests of the PostgreSQL database layer (serving/stores.py) need a real server. This installs
# Debian's `postgresql` when it is missing (needs root, as in CI), creates a cluster in a temporary
# directory, starts it as an unprivileged user (PostgreSQL refuses to run as root: `postgres` when we
# are root, else ourselves), listening only on a Unix socket in that directory (no TCP port to collide
# with another run), exports its URL as PARTNERMATCH_TEST_POSTGRES_URL, runs the command, then stops
# the server and removes the directory however the command ended. Starting takes ~2 s.
set -euo pipefail

command -v pg_ctlcluster >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# Debian installs the server binaries per major version, outside PATH; take the newest.
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
cluster="$(mktemp -d /tmp/partnermatch-pg.XXXXXX)"
owner=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$cluster"
    owner=(runuser -u postgres --)
fi

stop() {
    "${owner[@]}" "$bin/pg_ctl" -D "$cluster/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$cluster"
}
trap stop EXIT

# trust: only local socket connections exist, in a directory only the owner (and root) can enter.
"${owner[@]}" "$bin/initdb" -D "$cluster/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
"${owner[@]}" "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories=$cluster -c max_connections=200" start >/dev/null

export PARTNERMATCH_TEST_POSTGRES_URL="postgresql://postgres@/postgres?host=$cluster"
"$@"
