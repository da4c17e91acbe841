#!/usr/bin/env bash
# The whole test suite: formatting and clippy's lints (warnings denied), unit
# and property tests of every crate, then the end-to-end tests against real
# PostgreSQL clusters and the real agents. As root it installs what it needs
# (a PostgreSQL server, and the headers and libclang that the compiled
# capture extension builds with).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prereqs.sh
# Formatting and lints first: they fail in seconds where the suite takes minutes.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo fmt --manifest-path source-agent/capture-extension/Cargo.toml --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins --tests
# The compiled capture, into the server the tests start: `install` then
# uses it, and tests/capture.rs checks it queues what PL/pgSQL does.
source-agent/capture-extension/build.sh
# Two at a time: each end-to-end test runs two clusters and two agents.
cargo test --workspace -- --test-threads 2 "$@"
