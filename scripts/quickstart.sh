#!/usr/bin/env bash
# Quick start: set up, build, then run a whole local cluster (a real etcd, a troupe-router
# and three troupe-nodes on loopback), declare the example models through the router (it
# places them on the nodes), and call each backend through it.
#   scripts/quickstart.sh           # shows the calls, then stops the cluster
#   scripts/quickstart.sh --serve   # keeps the cluster running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
printf '\033[1m==> building\033[0m\n'
cargo build -q --workspace --bins
exec scripts/cluster.sh "$@"
