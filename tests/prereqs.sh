# Sourced by tests/test.sh and tests/demo.sh: makes sure a PostgreSQL server
# (13 or newer) is installed, installing Debian's when we are root and none is.
set -euo pipefail

find_pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/pg_ctl" ]; then
        echo "$PG_BINDIR"
        return 0
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(find_pg_bindir)" ] || [ ! -x "$(find_pg_bindir)/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "no PostgreSQL server found: installing Debian's postgresql" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        # The tests start their own clusters; the packaged one is not needed.
        (command -v service >/dev/null && service postgresql stop) >/dev/null 2>&1 || true
    else
        echo "no PostgreSQL server found: install postgresql (13 or newer) or set PG_BINDIR" >&2
        exit 1
    fi
fi
export PG_BINDIR="$(find_pg_bindir)"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
