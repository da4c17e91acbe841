#!/usr/bin/env bash
# Builds pgferry's compiled capture (extension pgferry_capture, pgrx) for the
# PostgreSQL server of $PG_BINDIR (default: the newest under
# /usr/lib/postgresql) and installs it into that server's directories, which
# takes root on Debian. As root it first installs what the build needs:
# Debian's server headers of the running server's exact version, and
# libclang. `source-agent install` then uses it (see docs/reference.md).
set -euo pipefail
cd "$(dirname "$0")"
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
major=$("$bindir/postgres" --version | sed -E 's/.* ([0-9]+)[.].*/\1/')
pg_config="$bindir/pg_config"
headers=$("$pg_config" --includedir-server 2>/dev/null || true)
clang_missing() {
    command -v dpkg-query >/dev/null &&
        ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q "ok installed"
}
if [ ! -f "$headers/postgres.h" ] || clang_missing; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # The headers of the server's own version: a newer candidate would
        # upgrade the client packages too.
        version=$(dpkg-query -W -f='${Version}' "postgresql-$major")
        packages=("postgresql-server-dev-$major=$version" libclang-dev)
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
    else
        echo "building the compiled capture needs postgresql-server-dev-$major and libclang-dev" >&2
        exit 1
    fi
fi
target=${CARGO_TARGET_DIR:-../../target/capture-extension}
PGRX_PG_CONFIG_PATH="$pg_config" CARGO_TARGET_DIR="$target" \
    cargo build --release --locked --no-default-features --features "pg$major"
install -m 755 "$target/release/libpgferry_capture.so" "$("$pg_config" --pkglibdir)/pgferry_capture.so"
install -m 644 pgferry_capture.control pgferry_capture--*.sql "$("$pg_config" --sharedir)/extension/"
echo "pgferry_capture installed for PostgreSQL $major ($("$pg_config" --pkglibdir))"
