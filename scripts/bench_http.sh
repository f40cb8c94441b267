#!/usr/bin/env bash
# REST against gRPC (docs/benchmarks.md, "HTTP"): in one run, on the MLP (ONNX, 1
# instance, no batching) of one release troupe-node, at concurrency 1, 8 and 32:
#   1. Triton's perf_analyzer over gRPC, over HTTP with binary tensors (tritonclient's
#      default) and with JSON tensors;
#   2. troupe-load over REST with JSON tensors against the node and against MLServer's
#      REST (PyPI mlserver, .venv-mlserver, same .onnx file; JSON, as it lacks the binary
#      extension, and perf_analyzer cannot drive it: it has no /config endpoint).
# Prints one line per step: calls/s, p50, p99.
# Env: WINDOW_MS (perf_analyzer's measurement interval, default 3000), DUR (troupe-load's
# step, default 8s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/perf_analyzer.sh install
scripts/mlserver/install.sh
# The same package set as the other benchmarks, so their release builds are reused.
cargo build --release -q -p troupe-node -p troupe-load --bins
WINDOW_MS=${WINDOW_MS:-3000}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')

mkdir -p "$WORK/repo" "$WORK/mls/mlp_onnx"
cp -r models/repository/mlp_onnx "$WORK/repo/"
target/release/troupe-node --model-repository "$WORK/repo" --listen 127.0.0.1:0 --backend-threads 1 \
  >"$WORK/node.out" 2>"$WORK/node.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/node.out" ]] && break; sleep 0.1; done
NODE=$(awk '{print $4}' "$WORK/node.out")
for _ in $(seq 300); do grep -q "node ready" "$WORK/node.log" && break; sleep 0.1; done

cat >"$WORK/mls/settings.json" <<JSON
{"host": "127.0.0.1", "grpc_port": $GRPC_PORT, "http_port": $HTTP_PORT, "metrics_port": $METRICS_PORT,
 "parallel_workers": 0, "debug": false}
JSON
cat >"$WORK/mls/mlp_onnx/model-settings.json" <<JSON
{"name": "mlp_onnx", "implementation": "onnx_runtime.ONNXModel",
 "parameters": {"uri": "$PWD/models/repository/mlp_onnx/1/model.onnx", "extra": {"intra_op_threads": 1}},
 "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
 "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]}
JSON
ROOT=$PWD
(cd "$WORK/mls" && PYTHONPATH="$ROOT/scripts/mlserver" exec "$ROOT/.venv-mlserver/bin/mlserver" start .) \
  >"$WORK/mlserver.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 240); do
  curl -sf "127.0.0.1:$HTTP_PORT/v2/models/mlp_onnx/ready" >/dev/null && break
  sleep 0.5
done

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); perf_analyzer 2.41, ${WINDOW_MS} ms windows, MLP 16-32-4 batch 1"
run() {  # label url protocol format concurrency
  local csv="$WORK/$1-$5.csv"
  scripts/perf_analyzer.sh -m mlp_onnx -u "$2" -i "$3" --shape input:1,16 \
    --input-tensor-format "$4" --output-tensor-format "$4" \
    --measurement-interval "$WINDOW_MS" --concurrency-range "$5" --stability-percentage 20 \
    -f "$csv" >"$WORK/$1-$5.log" 2>&1 || { echo "$1 c=$5 failed:"; tail -5 "$WORK/$1-$5.log"; return 0; }
  python3 - "$csv" "$1" "$5" <<'PY'
import csv, sys
row = next(csv.DictReader(open(sys.argv[1])))
print(f"{sys.argv[2]:<22} c={sys.argv[3]:>2}  {float(row['Inferences/Second']):>8.0f} calls/s  "
      f"p50 {int(row['p50 latency']):>6} µs  p99 {int(row['p99 latency']):>6} µs")
PY
}
for c in 1 8 32; do
  run troupe-grpc "$NODE" grpc binary "$c"
  run troupe-http-binary "$NODE" http binary "$c"
  run troupe-http-json "$NODE" http json "$c"
done
load() {  # label target
  target/release/troupe-load --target "$2" --model mlp_onnx --protocol http-json --sweep-concurrency 1,8,32 \
    --duration "${DUR:-8s}" --warmup 2s --quiet --json "$WORK/$1.json" >/dev/null
  python3 - "$WORK/$1.json" "$1" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))["steps"]:
    l = s["latency"]
    print(f"{sys.argv[2]:<22} c={s['concurrency']:>2}  {s['throughput']:>8.0f} calls/s  "
          f"p50 {l['p50_us']:>6} µs  p99 {l['p99_us']:>6} µs  errors {s['errors']}")
PY
}
echo "== troupe-load, REST with JSON tensors, ${DUR:-8s} per step"
load troupe-load-http-json "$NODE"
load mlserver-load-http-json "127.0.0.1:$HTTP_PORT"
