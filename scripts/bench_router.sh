#!/usr/bin/env bash
# The latency the router hop adds (docs/benchmarks.md): in one run, a release troupe-node
# in a cluster (real etcd) serving the MLP, measured by troupe-load at concurrency 1,
# directly and through a release troupe-router.  Env: DUR (default 15s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p troupe-node -p troupe-router -p troupe-load -p troupe-client --bins
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
DUR=${DUR:-15s}
OUT=${OUT:-target/bench-router}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 300); do [[ -s "$1" ]] && return 0; sleep 0.1; done; return 1; }
source scripts/tokens.sh
make_tokens "$WORK"   # anonymous inference (troupe-load sends no token); TROUPE_TOKEN for the create
EC=$(port); EP=$(port)
etcd --name b --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
  --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
  --initial-cluster "b=http://127.0.0.1:$EP" --initial-cluster-state new >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
ETCD=http://127.0.0.1:$EC
for _ in $(seq 100); do etcdctl --endpoints "$ETCD" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$WORK/repo"
target/release/troupe-node --model-repository "$WORK/repo" --listen 127.0.0.1:0 --etcd "$ETCD" --node-id n1 \
  --auth-tokens "$TOKENS" --model-root "$PWD/models" >"$WORK/node.out" 2>"$WORK/node.log" &
PIDS+=($!)
TROUPE_NODE_TOKEN=$ROUTER_TOKEN target/release/troupe-router --etcd "$ETCD" --listen 127.0.0.1:0 \
  --auth-tokens "$TOKENS" >"$WORK/router.out" 2>"$WORK/router.log" &
PIDS+=($!)
wait_line "$WORK/node.out"; wait_line "$WORK/router.out"
NODE=$(awk '{print $4}' "$WORK/node.out"); ROUTER=$(awk '{print $4}' "$WORK/router.out")
T="target/release/troupe --server $ROUTER"
for _ in $(seq 100); do $T health >/dev/null 2>&1 && break; sleep 0.1; done
$T models create mlp_onnx --backend onnx --artifact "$PWD/models/repository/mlp_onnx/1" \
  --input input:FP32:16 --output output:FP32:4 --max-batch-size 64 --replicas 1 >/dev/null
for _ in $(seq 300); do target/release/troupe --server "$NODE" health --json 2>/dev/null | grep -q READY && break; sleep 0.1; done
for _ in $(seq 100); do target/release/troupe-load --target "$ROUTER" --model mlp_onnx --requests 1 --quiet >/dev/null 2>&1 && break; sleep 0.1; done
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for i in 1 2; do  # alternate, twice each, so drift hits both alike
  target/release/troupe-load --target "$NODE" --model mlp_onnx --concurrency 1 --duration "$DUR" --warmup 2s --quiet --json "$OUT/direct$i.json" | tail -1
  target/release/troupe-load --target "$ROUTER" --model mlp_onnx --concurrency 1 --duration "$DUR" --warmup 2s --quiet --json "$OUT/router$i.json" | tail -1
done
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def p50(name):
    s = json.loads((out / name).read_text())["steps"][0]
    return s["latency"]["p50_us"], s["latency"]["p99_us"], s["throughput"], s["errors"]
for i in (1, 2):
    d, r = p50(f"direct{i}.json"), p50(f"router{i}.json")
    print(f"round {i}: direct p50 {d[0]} µs p99 {d[1]} µs ({d[2]:.0f}/s, {d[3]} errors) | "
          f"via router p50 {r[0]} µs p99 {r[1]} µs ({r[2]:.0f}/s, {r[3]} errors) | router hop adds {r[0] - d[0]} µs (median)")
PY
