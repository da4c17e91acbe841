#!/usr/bin/env bash
# The whole test suite: formatting and clippy's lints (warnings denied), unit
# and property tests of every crate, then the end-to-end tests against real
# PostgreSQL clusters and the real agents.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
# Formatting and lints first: they fail in seconds where the suite takes minutes.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins --tests
# Two at a time: each end-to-end test runs two clusters and two agents.
cargo test --workspace -- --test-threads 2 "$@"
