#!/usr/bin/env bash
# The whole test suite: unit tests, backend reference tests, and integration tests that
# start real troupe-node / troupe-router / etcd processes on free loopback ports (plus the
# stock Python tritonclient and a grpcio example against them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A real OpenTelemetry backend for tests/tracing.rs (Arize Phoenix, ~850 MB, once).
scripts/phoenix.sh install
# Triton's perf_analyzer for tests/http.rs (PyPI tritonclient 2.41.0, ~30 MB, once).
scripts/perf_analyzer.sh install
# Debian's Chromium, headless, for the dashboard test (tests/dashboard.rs).
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
# What the developers' guide promises: formatted, and clippy-clean with warnings as errors.
cargo fmt --all -- --check
cargo clippy -q --workspace --all-targets -- -D warnings
# No unused dependencies (cargo-machete, from crates.io, once).
command -v cargo-machete >/dev/null || cargo install -q --locked cargo-machete
cargo machete
cargo build --workspace --bins
LOG=$(mktemp)
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
# The GPU check's steps on the CPU (the same script a GPU machine runs on cuda:0).
scripts/gpu_check.sh --dry-run --bin target/debug || status=1
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$LOG"
rm -f "$LOG"
exit "$status"
