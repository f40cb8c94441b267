#!/usr/bin/env bash
# The GPU check (docs/benchmarks.md, issue: GPU): serves the example MLP on `cuda:0` on
# each backend it can, next to the same model on the CPU, runs a short load on each GPU
# model, checks its outputs against the CPU's, and prints one summary line. A backend whose
# native library cannot run here (no CUDA execution provider in the loaded ONNX Runtime, a
# libtorch without CUDA, a candle built without `--features cuda`) is skipped with the
# node's reason. Made for the GPU machines reachable from here (no network, no Rust, at
# most 64 MiB carried): it needs only prebuilt binaries and the small models.
#   scripts/gpu_check.sh [--dry-run] [--bin DIR]
#     --dry-run  the same steps on `cpu` (CI runs this); every backend must pass
#     --bin DIR  troupe-node, troupe and troupe-load (default: target/release)
#   scripts/gpu_check.sh --bundle DIR
#     builds and writes the three release binaries, stripped and xz-compressed, to DIR,
#     with troupe-node-cuda (candle's CUDA kernels) when scripts/build_cuda.sh has built
#     target/cuda: about 26 MiB; with the checkout's models and this script, what a GPU
#     machine needs (then, there: scripts/gpu_check.sh --bin DIR). A DIR holding `.xz`
#     binaries is unpacked first (xz, else Python's lzma). troupe-node-cuda serves when the
#     NVIDIA driver's libcuda.so.1 loads, troupe-node otherwise.
# Exit status 0 when every backend that ran passed and at least one ran.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=gpu
BIN=target/release
while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DEVICE=cpu ;;
    --bin) BIN=$2; shift ;;
    --bundle)
      cargo build --release -q -p troupe-node -p troupe-client -p troupe-load --bins
      mkdir -p "$2"
      for b in troupe-node troupe troupe-load; do strip -o "$2/$b" "target/release/$b"; done
      [[ -x target/cuda/release/troupe-node ]] && strip -o "$2/troupe-node-cuda" target/cuda/release/troupe-node
      xz -T0 -f "$2"/troupe*
      du -sh "$2"; exit 0 ;;
    *) echo "usage: scripts/gpu_check.sh [--dry-run] [--bin DIR] | --bundle DIR" >&2; exit 2 ;;
  esac
  shift
done
W=$(mktemp -d)
NODE=
trap 'kill $NODE 2>/dev/null || true; rm -rf "$W"' EXIT
if compgen -G "$BIN/troupe*.xz" >/dev/null; then
  mkdir -p "$W/bin"
  for f in "$BIN"/troupe*.xz; do
    out=$W/bin/$(basename "$f" .xz)
    if command -v xz >/dev/null; then xz -dc "$f" >"$out"
    else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$out"; fi
    chmod +x "$out"
  done
  BIN=$W/bin
fi
for b in troupe-node troupe troupe-load; do
  [[ -x $BIN/$b ]] || { echo "gpu_check: $BIN/$b missing (cargo build --release, or --bin DIR)" >&2; exit 2; }
done
# Native libraries: the project's venv when there is one, else the machine's torch and
# onnxruntime Python packages (the GPU image has its own).
SP=.venv/lib/python3.11/site-packages
if [[ ! -d $SP ]]; then SP=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); fi
# (nvidia/cu13/lib: PyPI's CUDA 13 libraries, which troupe-node-cuda links.)
export LD_LIBRARY_PATH=$SP/torch/lib:$SP/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# ONNX Runtime with the CUDA execution provider where setup --gpu put it, else the venv's.
ORT=$(ls .venv/onnxruntime-gpu/onnxruntime/capi/libonnxruntime.so.* "$SP"/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -1 || true)
NODE_BIN=$BIN/troupe-node
if [[ $DEVICE == gpu && -x $BIN/troupe-node-cuda ]]; then
  if "$BIN/troupe-node-cuda" --version >/dev/null 2>"$W/cuda-start"; then
    NODE_BIN=$BIN/troupe-node-cuda
  else
    echo "gpu_check: troupe-node-cuda cannot start here ($(head -1 "$W/cuda-start")); serving with troupe-node, whose candle has no CUDA kernels"
  fi
fi
mkdir -p "$W/repo"
# Each backend's MLP twice: `_cpu` (the reference) and `_dev`, on the device under test.
for b in onnx torch candle; do
  for v in cpu dev; do
    cp -r "models/repository/mlp_$b" "$W/repo/mlp_${b}_$v"
    d=cpu; [[ $v == dev ]] && d=$DEVICE
    sed -i "s/^device = .*/device = \"$d\"/" "$W/repo/mlp_${b}_$v/config.toml"
  done
done
"$NODE_BIN" --model-repository "$W/repo" --listen 127.0.0.1:0 ${ORT:+--onnxruntime-lib "$ORT"} \
  >"$W/node.out" 2>"$W/node.log" &
NODE=$!
for _ in $(seq 300); do [[ -s $W/node.out ]] && break; kill -0 $NODE 2>/dev/null || break; sleep 0.1; done
if [[ ! -s $W/node.out ]]; then
  echo "gpu_check: FAIL troupe-node did not start: $(tail -3 "$W/node.log" | tr '\n' ' ')"
  exit 1
fi
ADDR=$(awk '{print $4}' "$W/node.out")
for _ in $(seq 600); do grep -q "node ready" "$W/node.log" && break; sleep 0.1; done
T="$BIN/troupe --server $ADDR"
INPUT=input=1,16:$(python3 -c 'print(",".join(str((i % 7) / 7 - 0.4) for i in range(16)))')
summary=(); ran=0; failed=0
for b in onnx torch candle; do
  dev=mlp_${b}_dev
  state=$($T --json models list 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == sys.argv[1]:
        print(m["state"] if m["state"] == "READY" else (m.get("reason") or m["state"])); break' "$dev" || true)
  if [[ $state != READY ]]; then
    summary+=("$b=skipped(${state:-not listed})")
    [[ $DEVICE == cpu ]] && failed=1
    continue
  fi
  ran=1
  want=$($T --json infer "mlp_${b}_cpu" --input "$INPUT")
  got=$($T --json infer "$dev" --input "$INPUT")
  diff=$(python3 -c '
import json, sys
a, b = (json.loads(x)["outputs"][0]["data"] for x in sys.argv[1:3])
print(max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else "length")' "$want" "$got")
  load=$("$BIN/troupe-load" --target "$ADDR" --model "$dev" --concurrency 4 --duration 3s --warmup 1s \
    --quiet --json "$W/load-$b.json" >/dev/null 2>&1 && python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
print("%.0f/s p50 %sus errors %s" % (s["throughput"], s["latency"]["p50_us"], s["errors"]))' "$W/load-$b.json" || echo "load failed")
  if [[ $diff != length ]] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 1e-4 else 1)' "$diff" \
     && [[ $load == *"errors 0" ]]; then
    summary+=("$b=ok(max|diff| $diff, $load)")
  else
    summary+=("$b=FAIL(max|diff| $diff, $load)"); failed=1
  fi
done
verdict=PASS
[[ $failed == 1 || $ran == 0 ]] && verdict=FAIL
echo "gpu_check: device=$([[ $DEVICE == cpu ]] && echo "cpu (dry run)" || echo cuda:0) node=$(basename "$NODE_BIN") ${summary[*]} $verdict"
[[ $verdict == PASS ]]
