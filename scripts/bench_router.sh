#!/usr/bin/env bash
# The latency the router hop adds (docs/benchmarks.md): in one run, a release troupe-node
# in a cluster (real etcd) serving the MLP, measured by troupe-load at each concurrency
# of CONC, directly and through a release troupe-router, alternating, twice each.
# Env: DUR (default 15s); CONC (default "1 32"); BASE_ROUTER, another troupe-router
# binary (an older build, say) run beside this one in the same cluster and measured in
# the same rounds; PIN=1 runs the router on core 1 and the rest on core 0;
# ROUTER_WORKERS / NODE_WORKERS, the tokio worker threads of the routers / the node
# (TOKIO_WORKER_THREADS; default: one per core); MODEL: mlp (default; 64-byte inputs) or
# wide (models/testing/wide_onnx: a 602 KB image-sized input, 8-byte answers, next to no
# compute: what decoding and encoding a request costs the router); RELAY=1 also measures,
# in front of the node, loadtest/examples/relay.rs: `tcp` (a process that only copies TCP
# bytes: the floor of any process hop on this machine) and `h2` (HTTP/2 served and sent
# on by hyper, nothing else: the floor of an HTTP/2 hop).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p troupe-node -p troupe-router -p troupe-load -p troupe-client --bins
if [[ ${RELAY:-0} == 1 ]]; then cargo build --release -q -p troupe-load --example relay; fi
CONC=${CONC:-1 32}
BASE_ROUTER=${BASE_ROUTER:-}
if [[ ${PIN:-0} == 1 ]]; then ON_ROUTER="taskset -c 1"; ON_REST="taskset -c 0"; else ON_ROUTER=""; ON_REST=""; fi
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
env ${NODE_WORKERS:+TOKIO_WORKER_THREADS=$NODE_WORKERS} $ON_REST target/release/troupe-node --model-repository "$WORK/repo" --listen 127.0.0.1:0 --etcd "$ETCD" --node-id n1 \
  --auth-tokens "$TOKENS" --model-root "$PWD/models" >"$WORK/node.out" 2>"$WORK/node.log" &
PIDS+=($!)
TROUPE_NODE_TOKEN=$ROUTER_TOKEN env ${ROUTER_WORKERS:+TOKIO_WORKER_THREADS=$ROUTER_WORKERS} $ON_ROUTER target/release/troupe-router --etcd "$ETCD" --listen 127.0.0.1:0 \
  --auth-tokens "$TOKENS" >"$WORK/router.out" 2>"$WORK/router.log" &
PIDS+=($!)
wait_line "$WORK/node.out"; wait_line "$WORK/router.out"
NODE=$(awk '{print $4}' "$WORK/node.out"); ROUTER=$(awk '{print $4}' "$WORK/router.out")
TARGETS="direct=$NODE router=$ROUTER"
if [[ -n $BASE_ROUTER ]]; then
  TROUPE_NODE_TOKEN=$ROUTER_TOKEN env ${ROUTER_WORKERS:+TOKIO_WORKER_THREADS=$ROUTER_WORKERS} $ON_ROUTER "$BASE_ROUTER" --etcd "$ETCD" --listen 127.0.0.1:0 \
    --auth-tokens "$TOKENS" --router-id base >"$WORK/base.out" 2>"$WORK/base.log" &
  PIDS+=($!)
  wait_line "$WORK/base.out"
  TARGETS="$TARGETS base=$(awk '{print $4}' "$WORK/base.out")"
fi
if [[ ${RELAY:-0} == 1 ]]; then
  for mode in tcp h2; do
    name=relay; [[ $mode == h2 ]] && name=h2relay
    $ON_ROUTER target/release/examples/relay "$mode" "$NODE" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    wait_line "$WORK/$name.out"
    TARGETS="$TARGETS $name=$(awk '{print $4}' "$WORK/$name.out")"
  done
fi
T="target/release/troupe --server $ROUTER"
for _ in $(seq 100); do $T health >/dev/null 2>&1 && break; sleep 0.1; done
case ${MODEL:-mlp} in
  mlp) M=mlp_onnx; $T models create mlp_onnx --backend onnx --artifact "$PWD/models/repository/mlp_onnx/1" \
    --input input:FP32:16 --output output:FP32:4 --max-batch-size 64 --replicas 1 >/dev/null ;;
  wide) M=wide_onnx; $T models create wide_onnx --backend onnx --artifact "$PWD/models/testing/wide_onnx/1" \
    --input x:FP32:150528 --output y:FP32:2 --max-batch-size 8 --replicas 1 >/dev/null ;;
  *) echo "MODEL is mlp or wide" >&2; exit 2 ;;
esac
for _ in $(seq 300); do target/release/troupe --server "$NODE" health --json 2>/dev/null | grep -q READY && break; sleep 0.1; done
for t in $TARGETS; do
  for _ in $(seq 100); do $ON_REST target/release/troupe-load --target "${t#*=}" --model "$M" --requests 1 --quiet >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); pinned: ${PIN:-0}; model: $M"
for c in $CONC; do
  for i in 1 2; do  # alternate, twice each, so drift hits all alike
    for t in $TARGETS; do
      $ON_REST target/release/troupe-load --target "${t#*=}" --model "$M" --concurrency "$c" --duration "$DUR" \
        --warmup 2s --quiet --json "$OUT/${t%%=*}-c$c-$i.json" | tail -1
    done
  done
done
python3 - "$OUT" "$CONC" "$TARGETS" <<'PY'
import json, sys, pathlib
out, concs = pathlib.Path(sys.argv[1]), sys.argv[2].split()
names = [t.split("=")[0] for t in sys.argv[3].split()]
def step(name):
    s = json.loads((out / name).read_text())["steps"][0]
    return s["latency"]["p50_us"], s["latency"]["p99_us"], s["throughput"], s["errors"]
for c in concs:
    for i in (1, 2):
        f = {n: step(f"{n}-c{c}-{i}.json") for n in names}
        d = f["direct"]
        line = [f"c={c} round {i}: direct p50 {d[0]} µs p99 {d[1]} µs ({d[2]:.0f}/s, {d[3]} errors)"]
        for n in names[1:]:
            r = f[n]
            line.append(f"{n} p50 {r[0]} µs p99 {r[1]} µs ({r[2]:.0f}/s, {r[3]} errors), "
                        f"hop adds {r[0] - d[0]} µs (median), {100 * r[2] / d[2]:.0f}% of direct calls/s")
        print(" | ".join(line))
PY
