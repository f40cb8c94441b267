#!/usr/bin/env bash
# The whole test suite: unit tests, backend reference tests, and integration tests that
# start real troupe-node processes on free loopback ports (plus the stock Python
# tritonclient against them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
