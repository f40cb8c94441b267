#!/usr/bin/env bash
# Quick start: set up, build, start a node serving models/repository (the same MLP as
# ONNX, TorchScript and candle, plus a linear model), and call each backend.
#   scripts/quickstart.sh           # shows the calls, then stops the node (SIGTERM)
#   scripts/quickstart.sh --serve   # keeps serving on 127.0.0.1:8001 until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
printf '\033[1m==> building\033[0m\n'
cargo build -q --workspace --bins --examples
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
if [[ "${1:-}" == "--serve" ]]; then
  exec target/debug/troupe-node --model-repository models/repository --listen 127.0.0.1:8001
fi
LOG=$(mktemp)
target/debug/troupe-node --model-repository models/repository --listen 127.0.0.1:0 >"$LOG.out" 2>"$LOG" &
NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s "$LOG.out" ]] && break; sleep 0.1; done
ADDR=$(awk '{print $4}' "$LOG.out")
printf '\033[1m==> node %s serving models/repository\033[0m\n' "$ADDR"
for _ in $(seq 200); do grep -q "node ready" "$LOG" && break; sleep 0.1; done
grep -E "model loaded|load failed" "$LOG" | sed -E 's/\x1b\[[0-9;]*m//g; s/^.*(model loaded|load failed)/  \1/'
target/debug/examples/quickstart "$ADDR"
kill -TERM $NODE; wait $NODE && printf '\033[1m==> node stopped cleanly (SIGTERM)\033[0m\n'
trap - EXIT
