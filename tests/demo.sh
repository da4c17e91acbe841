#!/usr/bin/env bash
# The demo: two throwaway local clusters, both agents, the seed scenario
# replayed, both sides' checksums printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --workspace --bins
cargo run --quiet -p pgferry-tests --bin demo
