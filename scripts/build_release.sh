#!/usr/bin/env bash
# The release binaries (troupe-node, troupe-router, troupe, troupe-load) in target/release,
# and nothing else kept from the build (what the Dockerfile runs after scripts/setup.sh).
#   scripts/build_release.sh           # build
#   scripts/build_release.sh --slim    # build, then drop the intermediate files (~GBs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
if [[ "${1:-}" == "--slim" ]]; then
  rm -rf target/release/build target/release/deps target/release/incremental target/debug
fi
ls -1 target/release/troupe-node target/release/troupe-router target/release/troupe target/release/troupe-load
