#!/usr/bin/env bash
# The benchmark: pgferry against native logical replication between two
# throwaway clusters (release build). Writes bench.json (or the path given).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --release --workspace --bins
target/release/bench "${1:-bench.json}"
