#!/usr/bin/env bash
# Batching benchmark (docs/benchmarks.md): in one run, the raw in-process ONNX backend by
# batch size (the baseline), then a release troupe-node measured with troupe-load:
#   ResNet-18-sized ONNX at concurrency 32, dynamic batching off and on;
#   the MLP at concurrency 64, batching off and on.
# Env: DUR (measured time per step, default 15s), THREADS (backend intra-op threads, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/node.sh
scripts/setup.sh --bench
cargo build --release -q -p troupe-node -p troupe-load -p troupe-backends --bins --example raw_throughput
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
DUR=${DUR:-15s}
THREADS=${THREADS:-2}
OUT=${OUT:-target/bench-batching}
mkdir -p "$OUT"
REPO=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$REPO"' EXIT
NODE=

# Models: the same artifact with batching off and on.
batched() { # dir top-level-lines delay_us preferred
  sed -i "s/^instances = 1$/$2/" "$1/config.toml"
  printf '\n[dynamic_batching]\nmax_queue_delay_us = %s\npreferred_batch_sizes = [%s]\n' "$3" "$4" >>"$1/config.toml"
}
cp -r models/bench/resnet18_onnx "$REPO/resnet_off"
cp -r models/bench/resnet18_onnx "$REPO/resnet_on"
batched "$REPO/resnet_on" "instances = 1" 2000 32
cp -r models/repository/mlp_onnx "$REPO/mlp_off"
cp -r models/repository/mlp_onnx "$REPO/mlp_on"
batched "$REPO/mlp_on" "instances = 1" 500 64

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads per instance: $THREADS"
echo "== raw in-process backend (baseline)"
target/release/examples/raw_throughput onnx models/bench/resnet18_onnx/1 3,224,224 1000 1,8,16,32 10 "$THREADS" | tee "$OUT/raw_resnet.txt"
target/release/examples/raw_throughput onnx models/repository/mlp_onnx/1 16 4 1,64 5 "$THREADS" | tee "$OUT/raw_mlp.txt"

start_node "$REPO" "$OUT" "$THREADS"

load() { # model concurrency
  echo "== troupe-load $1 concurrency $2"
  target/release/troupe-load --target "$ADDR" --model "$1" --concurrency "$2" --duration "$DUR" \
    --warmup 3s --quiet --json "$OUT/$1_c$2.json" | tail -n +1
}
load resnet_off 32
load resnet_on 32
load mlp_off 64
load mlp_on 64
kill -TERM $NODE; wait $NODE || true; NODE=

.venv/bin/python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def raw(name):
    rows = {}
    for line in (out / name).read_text().splitlines()[2:]:
        b, rps, _ = line.split()
        rows[int(b)] = float(rps)
    return rows
def step(name):
    return json.loads((out / name).read_text())["steps"][0]
rr, rm = raw("raw_resnet.txt"), raw("raw_mlp.txt")
best_b = max(rr, key=rr.get)
print("\nsummary (rows/s; every call is batch 1 from the client)")
for label, f in [("resnet batching off, c=32", "resnet_off_c32.json"), ("resnet batching on,  c=32", "resnet_on_c32.json")]:
    s = step(f)
    lat = s["latency"]
    print(f"  {label}: {s['throughput']:8.1f}/s  p50 {lat['p50_us'] / 1e3:.1f} ms  p99 {lat['p99_us'] / 1e3:.1f} ms  errors {s['errors']}  "
          f"= {100 * s['throughput'] / rr[best_b]:.0f}% of raw best ({rr[best_b]:.1f}/s at batch {best_b})")
off, on = step("mlp_off_c64.json"), step("mlp_on_c64.json")
print(f"  mlp c=64: off {off['throughput']:.0f}/s (p99 {off['latency']['p99_us'] / 1e3:.2f} ms), on {on['throughput']:.0f}/s "
      f"(p99 {on['latency']['p99_us'] / 1e3:.2f} ms): gain x{on['throughput'] / off['throughput']:.2f}; raw batch 64: {rm[64]:.0f} rows/s")
PY
