#!/usr/bin/env bash
# The hardening issue's explain call, on the ResNet-18-sized ONNX model (docs/benchmarks.md,
# "Hardening"): occlusion with window 16 of one 1x3x224x224 input (9,408 evaluations), sent
# by the troupe CLI to a release troupe-node with an explanation budget, while another
# process calls the MLP; the node's resident memory is sampled every 10 ms.
# Env: BUDGET_MB (default 256), CALL_MB (default 64), WINDOW (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
cargo build --release -q -p troupe-node -p troupe-client -p troupe-load --bins
BUDGET_MB=${BUDGET_MB:-256}
CALL_MB=${CALL_MB:-64}
WINDOW=${WINDOW:-16}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/repo"
cp -r models/bench/resnet18_onnx "$WORK/repo/"
cp -r models/repository/mlp_onnx "$WORK/repo/"
target/release/troupe-node --model-repository "$WORK/repo" --listen 127.0.0.1:0 \
  --explain-memory-mb "$BUDGET_MB" --explain-call-memory-mb "$CALL_MB" >"$WORK/node.out" 2>"$WORK/node.log" &
NODE_PID=$!
PIDS+=($NODE_PID)
for _ in $(seq 600); do [[ -s "$WORK/node.out" ]] && break; sleep 0.1; done
NODE=$(awk '{print $4}' "$WORK/node.out")
for _ in $(seq 600); do target/release/troupe --server "$NODE" health 2>/dev/null | grep -q resnet18_onnx && break; sleep 0.2; done
.venv/bin/python -c "
import numpy as np
np.save('$WORK/x.npy', np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== node budget --explain-memory-mb $BUDGET_MB --explain-call-memory-mb $CALL_MB; occlusion window $WINDOW"
# Warm up: one call and one coarse explanation.
target/release/troupe --server "$NODE" infer resnet18_onnx --input "input=@$WORK/x.npy" >/dev/null
target/release/troupe --server "$NODE" explain resnet18_onnx --method occlusion --window 150528 --input "input=@$WORK/x.npy" >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$NODE_PID/status"; }
BEFORE=$(rss)
# Another process calls the MLP throughout.
target/release/troupe-load --target "$NODE" --model mlp_onnx --concurrency 1 --duration 600s --warmup 0s --quiet \
  --json "$WORK/others.json" >/dev/null 2>&1 &
LOAD=$!
PIDS+=($LOAD)
START=$(date +%s.%N)
target/release/troupe --server "$NODE" --timeout 1800 explain resnet18_onnx --method occlusion --window "$WINDOW" \
  --input "input=@$WORK/x.npy" --json >"$WORK/explain.json" 2>"$WORK/explain.err" &
EXPLAIN=$!
PEAK=$BEFORE
while kill -0 "$EXPLAIN" 2>/dev/null; do
  R=$(rss); (( R > PEAK )) && PEAK=$R
  sleep 0.01
done
set +e; wait "$EXPLAIN"; RC=$?; set -e
END=$(date +%s.%N)
kill -INT "$LOAD" 2>/dev/null || true; wait "$LOAD" 2>/dev/null || true
python3 - "$BEFORE" "$PEAK" "$RC" "$START" "$END" "$WORK/explain.err" "$WORK/others.json" <<'PY'
import json, sys, os
before, peak, rc, start, end, err, others = sys.argv[1:]
mib = lambda kb: int(kb) / 1024
answered = "?"
if os.path.exists(others) and os.path.getsize(others):
    answered = json.load(open(others))["steps"][0]["answers"]
print(f"resident memory {mib(before):.0f} MiB before, peak {mib(peak):.0f} MiB during (+{mib(peak) - mib(before):.0f} MiB); "
      f"explanation {'served' if rc == '0' else 'refused: ' + open(err).read().strip()} in {float(end) - float(start):.1f} s; "
      f"{answered} MLP calls answered meanwhile by another process")
PY
