#!/usr/bin/env bash
# Two troupe-node binaries end to end, alternating: A, B, A, B, ... each serving the MLP
# (ONNX, 1 instance, 1 backend thread) on a fresh port, driven by troupe-load over gRPC
# at concurrency 1, 8 and 32 (5 s per step, 2 s warm-up). One line per round and step.
#   scripts/bench_ab_load.sh NODE_A NODE_B [ROUNDS]      (default ROUNDS = 3)
# MODEL=wide serves models/testing/wide_onnx instead (a 602 KB image-sized input, 8-byte
# answers, next to no compute: what moving a large request costs).
# Build A from another revision with e.g. `git worktree add ../a REV` and
# `CARGO_TARGET_DIR=$PWD/target cargo build --release -p troupe-node` there, then copy
# target/release/troupe-node aside before building B.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: scripts/bench_ab_load.sh NODE_A NODE_B [ROUNDS]}
b=${2:?usage: scripts/bench_ab_load.sh NODE_A NODE_B [ROUNDS]}
rounds=${3:-3}
cargo build --release -q -p troupe-load --bins
W=$(mktemp -d)
P=
trap 'kill $P 2>/dev/null || true; rm -rf "$W"' EXIT
case ${MODEL:-mlp} in
  mlp) M=mlp_onnx; mkdir -p "$W/repo" && cp -r models/repository/mlp_onnx "$W/repo/" ;;
  wide) M=wide_onnx; mkdir -p "$W/repo" && cp -r models/testing/wide_onnx "$W/repo/" ;;
  *) echo "MODEL is mlp or wide" >&2; exit 2 ;;
esac
for round in $(seq "$rounds"); do
  for v in A B; do
    bin=$a; [[ $v == B ]] && bin=$b
    : >"$W/out"
    "$bin" --model-repository "$W/repo" --listen 127.0.0.1:0 --backend-threads 1 >"$W/out" 2>"$W/log" &
    P=$!
    for _ in $(seq 100); do [[ -s "$W/out" ]] && break; sleep 0.1; done
    addr=$(awk '{print $4}' "$W/out")
    for _ in $(seq 300); do grep -q "node ready" "$W/log" && break; sleep 0.1; done
    target/release/troupe-load --target "$addr" --model "$M" --sweep-concurrency 1,8,32 \
      --duration 5s --warmup 2s --quiet --json "$W/r.json" >/dev/null
    python3 - "$W/r.json" "$v" "$round" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))["steps"]:
    l = s["latency"]
    print(f"{sys.argv[2]} round {sys.argv[3]} c={s['concurrency']:>2} {s['throughput']:>8.0f} calls/s p50 {l['p50_us']:>5} µs p99 {l['p99_us']:>5} µs")
PY
    kill "$P"; wait "$P" 2>/dev/null || true; P=
  done
done
