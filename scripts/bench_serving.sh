#!/usr/bin/env bash
# Serving benchmark (docs/benchmarks.md, "Serving: each backend at concurrency 1, 8, 32, and
# MLServer"). In one run, all through a release troupe-load:
#   1. the raw in-process backends at batch 1 (the baseline): the MLP on onnx/torch/candle,
#      the ResNet-18-sized model on onnx/torch (backends/examples/raw_throughput.rs);
#   2. one release troupe-node serving those five models (one instance each, no dynamic
#      batching), closed-loop sweep at concurrency 1, 8, 32 per model;
#   3. MLServer (PyPI mlserver, in .venv-mlserver, with the small ONNX Runtime runtime in
#      scripts/mlserver/onnx_runtime.py) serving the same two .onnx files, same sweep;
#   4. a summary: throughput, p50, p99; serving overhead (in-process calls/s at batch 1 /
#      served calls/s at concurrency 1); Troupe / MLServer throughput ratio and p99.
# Env: DUR (measured time per step, default 10s), THREADS (intra-op threads per backend
# instance, for the node and for MLServer's ONNX Runtime session alike, default 1: with one
# instance per model and 2 cores, the second core is left to gRPC work and the load
# generator), OUT (results folder, default target/bench-serving).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/node.sh
scripts/setup.sh --bench
cargo build --release -q -p troupe-node -p troupe-load -p troupe-backends --bins --example raw_throughput
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
DUR=${DUR:-10s}
THREADS=${THREADS:-1}
OUT=${OUT:-target/bench-serving}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/summary.md

scripts/mlserver/install.sh

REPO=$(mktemp -d)
MLS=$(mktemp -d)
NODE=
MLSERVER=
WATCH=
cleanup() {
  [[ -n $NODE ]] && kill "$NODE" 2>/dev/null || true
  [[ -n $MLSERVER ]] && kill "$MLSERVER" 2>/dev/null || true
  [[ -n $WATCH ]] && kill "$WATCH" 2>/dev/null || true
  rm -rf "$REPO" "$MLS"
}
trap cleanup EXIT

# The node's repository: the models as shipped (instances = 1, no [dynamic_batching]).
for m in mlp_onnx mlp_torch mlp_candle; do cp -r "models/repository/$m" "$REPO/$m"; done
for m in resnet18_onnx resnet18_torch; do cp -r "models/bench/$m" "$REPO/$m"; done
if grep -q dynamic_batching "$REPO"/*/config.toml || grep -L '^instances = 1$' "$REPO"/*/config.toml | grep -q .; then
  echo "expected instances = 1 and no dynamic batching in every model config" >&2
  exit 1
fi

# This machine has 2 cores: measure only when no compile is running (up to 10 min wait).
for i in $(seq 120); do
  pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || break
  [[ $i == 1 ]] && echo "== waiting for a running compile (rustc/cargo) to finish"
  [[ $i == 120 ]] && { echo "a compile is still running after 10 min; not measuring" >&2; exit 1; }
  sleep 5
done

# Note any compile that starts while we measure (it would share the 2 cores).
(while :; do pgrep -x rustc >/dev/null && date +%T >>"$OUT/compiles_seen.txt"; sleep 2; done) &
WATCH=$!
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads per instance: $THREADS, $DUR per step"
echo "== raw in-process backends, batch 1 (baseline)"
raw() { # name backend dir in out seconds
  target/release/examples/raw_throughput "$2" "$3" "$4" "$5" 1 "$6" "$THREADS" | tee "$OUT/raw_$1.txt"
}
raw mlp_onnx onnx models/repository/mlp_onnx/1 16 4 5
raw mlp_torch torch models/repository/mlp_torch/1 16 4 5
raw mlp_candle candle models/repository/mlp_candle/1 16 4 5
raw resnet18_onnx onnx models/bench/resnet18_onnx/1 3,224,224 1000 10
raw resnet18_torch torch models/bench/resnet18_torch/1 3,224,224 1000 10

sweep() { # server model addr
  echo "== $1: troupe-load $2, concurrency 1, 8, 32"
  target/release/troupe-load --target "$3" --model "$2" --sweep-concurrency 1,8,32 --duration "$DUR" \
    --warmup 2s --quiet --json "$OUT/$1_$2.json" | tee "$OUT/$1_$2.txt"
}

start_node "$REPO" "$OUT" "$THREADS"
for m in mlp_onnx mlp_torch mlp_candle resnet18_onnx resnet18_torch; do sweep troupe "$m" "$ADDR"; done
kill -TERM $NODE; wait $NODE || true; NODE=

# MLServer: same .onnx files, same THREADS, V2 gRPC on a free loopback port. Settings:
# parallel_workers = 0 (inference in the server process: in trial runs it beat the default
# of 1 worker process, which adds a pickle + IPC hop per call, on the MLP and equalled or
# beat it on the ResNet); debug = false (debug turns on a per-call gRPC access log); the rest default.
read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
cat >"$MLS/settings.json" <<EOF
{"host": "127.0.0.1", "grpc_port": $GRPC_PORT, "http_port": $HTTP_PORT, "metrics_port": $METRICS_PORT,
 "parallel_workers": 0, "debug": false}
EOF
mls_model() { # name onnx-file in-shape out-shape
  mkdir -p "$MLS/$1"
  cat >"$MLS/$1/model-settings.json" <<EOF
{"name": "$1", "implementation": "onnx_runtime.ONNXModel",
 "parameters": {"uri": "$PWD/$2", "extra": {"intra_op_threads": $THREADS}},
 "inputs": [{"name": "input", "datatype": "FP32", "shape": $3}],
 "outputs": [{"name": "output", "datatype": "FP32", "shape": $4}]}
EOF
}
mls_model mlp_onnx models/repository/mlp_onnx/1/model.onnx "[-1, 16]" "[-1, 4]"
mls_model resnet18_onnx models/bench/resnet18_onnx/1/model.onnx "[-1, 3, 224, 224]" "[-1, 1000]"
MLS_ADDR=127.0.0.1:$GRPC_PORT
ROOT=$PWD
(cd "$MLS" && PYTHONPATH="$ROOT/scripts/mlserver" exec "$ROOT/.venv-mlserver/bin/mlserver" start .) \
  >"$OUT/mlserver.log" 2>&1 &
MLSERVER=$!
ready=0
for _ in $(seq 240); do
  if target/release/troupe-load --target "$MLS_ADDR" --model mlp_onnx --requests 1 --warmup 0s --quiet >/dev/null 2>&1 &&
    target/release/troupe-load --target "$MLS_ADDR" --model resnet18_onnx --requests 1 --warmup 0s --quiet >/dev/null 2>&1; then
    ready=1; break
  fi
  kill -0 $MLSERVER 2>/dev/null || break
  sleep 0.5
done
[[ $ready == 1 ]] || { echo "MLServer not ready; see $OUT/mlserver.log" >&2; exit 1; }
echo "== MLServer $(.venv-mlserver/bin/python -c 'import mlserver; print(mlserver.__version__)') at $MLS_ADDR (parallel_workers 0, $THREADS intra-op thread(s))"
for m in mlp_onnx resnet18_onnx; do sweep mlserver "$m" "$MLS_ADDR"; done
kill -TERM $MLSERVER; wait $MLSERVER || true; MLSERVER=
kill "$WATCH"; wait "$WATCH" 2>/dev/null || true; WATCH=

.venv/bin/python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
lines = []
def p(s=""):
    print(s); lines.append(s)
def raw(m):
    b, rps, ms = (out / f"raw_{m}.txt").read_text().splitlines()[2].split()
    return float(rps), float(ms)
def steps(server, m):
    return {s["concurrency"]: s for s in json.loads((out / f"{server}_{m}.json").read_text())["steps"]}
def num(x):  # 3 significant digits, like troupe-load's table
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}" if x < 100 else f"{x:,.0f}"
def ms(us):
    return num(us / 1e3) + " ms"
models = ["mlp_onnx", "mlp_torch", "mlp_candle", "resnet18_onnx", "resnet18_torch"]
C = [1, 8, 32]
bad = []
p("| server | model | in-process, batch 1 | c=1 answers/s | p50 | p99 | c=8 answers/s | p50 | p99 | c=32 answers/s | p50 | p99 | overhead (in-process / c=1) |")
p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for server, ms_ in [("troupe", models), ("mlserver", ["mlp_onnx", "resnet18_onnx"])]:
    for m in ms_:
        st = steps(server, m)
        rps, _ = raw(m)
        cells = []
        for c in C:
            s = st[c]
            if s["errors"]:
                bad.append(f"{server} {m} c={c}: {s['errors']} errors")
            cells += [num(s["throughput"]),
                      ms(s["latency"]["p50_us"]), ms(s["latency"]["p99_us"])]
        p(f"| {'Troupe' if server == 'troupe' else 'MLServer'} | {m} | {num(rps)}/s | " + " | ".join(cells)
          + f" | ×{rps / st[1]['throughput']:.2f} |")
p()
p("| model | concurrency | Troupe answers/s | MLServer answers/s | Troupe / MLServer | Troupe p99 | MLServer p99 |")
p("|---|---:|---:|---:|---:|---:|---:|")
for m in ["mlp_onnx", "resnet18_onnx"]:
    t, s = steps("troupe", m), steps("mlserver", m)
    for c in C:
        p(f"| {m} | {c} | {num(t[c]['throughput'])} | {num(s[c]['throughput'])} | ×{t[c]['throughput'] / s[c]['throughput']:.2f} "
          f"| {ms(t[c]['latency']['p99_us'])} | {ms(s[c]['latency']['p99_us'])} |")
p()
p("errors: " + ("; ".join(bad) if bad else "none"))
seen = out / "compiles_seen.txt"
p("compiles seen while measuring: " + (f"yes, at {len(seen.read_text().split())} samples (2 s apart)" if seen.exists() else "none"))
(out / "summary.md").write_text("\n".join(lines) + "\n")
PY
