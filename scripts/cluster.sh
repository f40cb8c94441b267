#!/usr/bin/env bash
# A whole local cluster: a real etcd, a troupe-router and N troupe-nodes on loopback, the
# example models declared through the router (placed by it on the nodes), a few calls.
#   scripts/cluster.sh            # N=3 nodes; shows the calls, then stops everything
#   scripts/cluster.sh --serve    # keeps running until Ctrl-C (router on the printed address)
# Env: NODES (default 3), BIN (default target/debug).
# Auth: node and router read a fresh tokens file (scripts/tokens.sh: anonymous inference,
# a random admin token in TROUPE_TOKEN for the CLI calls here, a router token for the
# nodes); the nodes take models from models/ (--model-root).
#   A = "A man is playing a guitar.", B = "A man plays the guitar.", C = "The stock market fell sharply today."
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-3}
BIN=${BIN:-target/debug}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 300); do [[ -s "$1" ]] && return 0; sleep 0.1; done; echo "timed out: $1" >&2; return 1; }
source scripts/tokens.sh
make_tokens "$WORK"
say "tokens file $TOKENS (the admin token: $WORK/admin.token)"

EC=$(port); EP=$(port)
etcd --name troupe --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
  --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
  --initial-cluster "troupe=http://127.0.0.1:$EP" --initial-cluster-state new >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
ETCD=http://127.0.0.1:$EC
for _ in $(seq 100); do etcdctl --endpoints "$ETCD" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
say "etcd $ETCD"

for i in $(seq "$NODES"); do
  mkdir -p "$WORK/repo$i"
  "$BIN/troupe-node" --model-repository "$WORK/repo$i" --listen 127.0.0.1:0 --etcd "$ETCD" --node-id "node$i" \
    --memory-mb 2048 --auth-tokens "$TOKENS" --model-root "$PWD/models" --store "sqlite://$WORK/store.db" \
    >"$WORK/node$i.out" 2>"$WORK/node$i.log" &
  PIDS+=($!)
done
for i in $(seq "$NODES"); do wait_line "$WORK/node$i.out"; say "node$i $(awk '{print $4}' "$WORK/node$i.out")"; done

TROUPE_NODE_TOKEN=$ROUTER_TOKEN "$BIN/troupe-router" --etcd "$ETCD" --listen 127.0.0.1:0 --router-id router1 \
  --auth-tokens "$TOKENS" --model-root "$PWD/models" --store "sqlite://$WORK/store.db" \
  >"$WORK/router.out" 2>"$WORK/router.log" &
PIDS+=($!)
wait_line "$WORK/router.out"
ROUTER=$(awk '{print $4}' "$WORK/router.out")
say "router $ROUTER"
T="$BIN/troupe --server $ROUTER"
for _ in $(seq 100); do $T health >/dev/null 2>&1 && break; sleep 0.1; done
# Every node registered before models are declared: a leader that places onto the first
# node alone fills it, and then spreads the replicas one move at a time.
for _ in $(seq 300); do
  [[ $($T --json cluster nodes 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null) == "$NODES" ]] && break
  sleep 0.1
done

M=$PWD/models/repository
$T models create mlp_onnx --backend onnx --artifact "$M/mlp_onnx/1" --input input:FP32:16 --output output:FP32:4 --max-batch-size 64 --replicas 2
$T models create mlp_torch --backend torch --artifact "$M/mlp_torch/1" --input input:FP32:16 --output output:FP32:4 --max-batch-size 64 --replicas 2
$T models create mlp_candle --backend candle --artifact "$M/mlp_candle/1" --input input:FP32:16 --output output:FP32:4 --max-batch-size 64 --replicas 1
# all-MiniLM-L6-v2 on each backend, behind the text pipeline (text in, embedding out).
ENCODER=(--input input_ids:INT64:-1 --input attention_mask:INT64:-1 --input token_type_ids:INT64:-1
  --output last_hidden_state:FP32:-1,384 --max-batch-size 32 --max-queue-delay-us 500 --text --memory-mb 512)
for b in onnx torch candle; do
  $T models create "minilm_$b" --backend "$b" --artifact "$M/minilm_$b/1" "${ENCODER[@]}"
done
# A real classifier (scikit-learn's digits MLP) whose answers are recorded in the
# prediction store ([monitoring] in its config.toml), shared here by nodes and router.
$T models create digits_onnx --backend onnx --artifact "$M/digits_onnx/1" --input X:FP32:64 \
  --output label:INT64: --output probabilities:FP32:10 --max-batch-size 64 --replicas 2 \
  --memory-mb 64 --monitor classifier --monitor-output probabilities
for _ in $(seq 300); do
  [[ $($T models list --json | python3 -c 'import json,sys; print(all(m["state"]=="READY" and m["ready_replicas"]>=1 for m in json.load(sys.stdin)))') == True ]] && break
  sleep 0.1
done
say "models, placed by the router"
$T models list
X=$(python3 -c 'print(",".join(str((i - 8) / 8) for i in range(16)))')
for m in mlp_onnx mlp_torch mlp_candle; do
  say "infer $m through the router"
  $T infer "$m" --input "input=1,16:$X"
done
A="A man is playing a guitar."; B="A man plays the guitar."; C="The stock market fell sharply today."
for b in onnx torch candle; do
  say "embed three sentences with minilm_$b through the router"
  $T infer "minilm_$b" --text "$A" --text "$B" --text "$C" --json | python3 -c '
import json, math, sys
r = json.load(sys.stdin); o = r["outputs"][0]; d = o["shape"][1]
e = [o["data"][i * d:(i + 1) * d] for i in range(o["shape"][0])]
cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
shape = o["shape"]
print(f"  embedding FP32 {shape}; cosine(A, B) = {cos(e[0], e[1]):.4f}, cosine(A, C) = {cos(e[0], e[2]):.4f}")'
done
say "the monitoring loop: 30 digits through the router, ground truth for 20 of them, live quality"
.venv/bin/python - "$ROUTER" <<'PY'
import json, subprocess, sys
router = sys.argv[1]
h = json.load(open("models/testing/digits/holdout.json"))
truths = []
for i in range(30):
    row = ",".join(f"{v:g}" for v in h["x"][i])
    out = subprocess.run(["target/debug/troupe", "--server", router, "infer", "digits_onnx", "--id", f"demo-{i}",
                          "--input", f"X=1,64:{row}", "--json"], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    p = next(o for o in r["outputs"] if o["name"] == "probabilities")["data"]
    if i < 3:
        print(f"  request {r['id']}: class {max(range(10), key=lambda c: p[c])} (p = {max(p):.3f}), truly {h['y'][i]}")
    if i < 20:
        truths.append(f"demo-{i}={h['y'][i]}")
subprocess.run(["target/debug/troupe", "--server", router, "feedback", *truths], check=True)
PY
sleep 1
$T monitor digits_onnx --once
if [[ "${1:-}" == "--serve" ]]; then
  say "serving: TROUPE_TOKEN=\$(cat $WORK/admin.token) troupe --server $ROUTER ... (Ctrl-C stops)"
  wait
fi
say "stopping the cluster"
