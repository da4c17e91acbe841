#!/usr/bin/env bash
# The benchmark: pgferry against native logical replication and Slony-I
# between two throwaway clusters (release build). Writes bench.json (or the path given).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
# The compiled capture, as the tests use it; and Slony-I, the trigger-based
# peer, measured beside pgferry and native when it can be installed.
source-agent/capture-extension/build.sh
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v slon >/dev/null; then
    major=$("$PG_BINDIR/postgres" --version | sed -E 's/.* ([0-9]+)[.].*/\1/')
    apt-get install -y -qq "postgresql-$major-slony1-2" slony1-2-bin >/dev/null ||
        echo "Slony-I could not be installed: the benchmark skips it" >&2
fi
cargo build --release --workspace --bins
target/release/bench "${1:-bench.json}"
