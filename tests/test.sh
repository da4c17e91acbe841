#!/usr/bin/env bash
# The whole test suite: unit and property tests of every crate, then the
# end-to-end tests against real PostgreSQL clusters and the real agents.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
cargo build --workspace --bins --tests
# Two at a time: each end-to-end test runs two clusters and two agents.
cargo test --workspace -- --test-threads 2 "$@"
