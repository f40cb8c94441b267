#!/usr/bin/env bash
# Text-model benchmark (docs/benchmarks.md, "Text models: all-MiniLM-L6-v2"): the real
# sentence encoder, BYTES text in, 384-float embedding out. In one run, every served figure
# from a release troupe-load in closed loop sending the same sentence, "A man is playing a
# guitar." (a fixed [1, 1] BYTES input file, so every call is one sentence):
#   a. the in-process baseline: the node's own text pipeline (tokenizer, model, mean
#      pooling + L2) with no server, at batch 1, 8, 32, for minilm_onnx, minilm_torch and
#      minilm_candle (node/examples/text_throughput.rs, release, THREADS threads);
#   b. one release troupe-node (--backend-threads THREADS) serving copies of the three
#      models as shipped (instances = 1, max_batch_size 32, [dynamic_batching]
#      max_queue_delay_us = 500), sweep at concurrency 1, 8, 32 per model;
#   c. the same with [dynamic_batching] deleted from the copies' config.toml;
#   d. MLServer 1.7.1 (in .venv-mlserver) serving the same model.onnx through
#      scripts/mlserver/text_runtime.py (tokenizers + ONNX Runtime + pooling), in one
#      server: minilm_onnx (no batching) and, per MLS_BATCH_US, minilm_onnx_batch<US>us
#      (adaptive batching, max_batch_size 32, max_batch_time US µs; by default 500 µs, as
#      Troupe's, and 5000 µs, with which MLServer's batcher does gather calls); same sweep;
#   e. a summary ($OUT/summary.md): sentences/s, p50, p99 per server/model/batching/
#      concurrency; served-with-batching / in-process best batched rate; Troupe / MLServer.
# Env: DUR (measured time per step, default 10s), BASE_SECS (seconds per in-process batch
# size, default 5), THREADS (intra-op threads per backend instance, node and MLServer alike,
# default 1), OUT (results folder, default target/bench-text), MLS_OFFLOAD, MLS_BATCH_US (below).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
DUR=${DUR:-10s}
BASE_SECS=${BASE_SECS:-5}
THREADS=${THREADS:-1}
OUT=${OUT:-target/bench-text}
TEXT="A man is playing a guitar."
MODELS=(minilm_onnx minilm_torch minilm_candle)

# This machine has 2 cores and others may compile on it: wait (up to 20 min) for no
# rustc/cargo, both before building and before measuring.
no_compile() {
  for i in $(seq 60); do
    pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || return 0
    [[ $i == 1 ]] && echo "== waiting for a running compile (rustc/cargo) to finish"
    sleep 20
  done
  echo "a compile is still running after 20 min; stopping" >&2
  exit 1
}
no_compile
cargo build --release -q -p troupe-node -p troupe-load --bins
cargo build --release -q -p troupe-node --example text_throughput
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log "$OUT"/*.out "$OUT"/*.batches "$OUT"/summary.md

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

# Every call: one sentence, the one the baseline encodes.
INPUT=$OUT/input.json
printf '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["%s"]}]}\n' "$TEXT" >"$INPUT"

for m in "${MODELS[@]}"; do cp -r "models/repository/$m" "$REPO/$m"; done
if [[ $(grep -l '^max_queue_delay_us = 500$' "$REPO"/*/config.toml | wc -l) != 3 ]] ||
  grep -L '^instances = 1$' "$REPO"/*/config.toml | grep -q . ||
  grep -L '^max_batch_size = 32$' "$REPO"/*/config.toml | grep -q .; then
  echo "expected instances = 1, max_batch_size = 32, max_queue_delay_us = 500 in every minilm config" >&2
  exit 1
fi

no_compile
# Note any compile that starts while we measure (it would share the 2 cores).
(while :; do pgrep -x rustc >/dev/null && date +%T >>"$OUT/compiles_seen.txt"; sleep 2; done) &
WATCH=$!
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads per instance: $THREADS, $DUR per step"
echo "== in-process text pipeline, batch 1, 8, 32 (baseline), $BASE_SECS s each"
for m in "${MODELS[@]}"; do
  target/release/examples/text_throughput models/repository "$m" 1,8,32 "$BASE_SECS" "$THREADS" "$TEXT" |
    tee "$OUT/inproc_$m.txt"
done

# One troupe-load run per concurrency (the same as --sweep-concurrency 1,8,32: each step its
# own warm-up), so that the server's batch sizes can be read between steps: troupe-node's
# troupe_batch_size histogram (--metrics-listen) and the MLServer runtime's counters
# (SIGUSR1, see text_runtime.py). They count the warm-up calls too.
sweep() { # server tag model addr
  echo "== $1 $2: troupe-load $3, concurrency 1, 8, 32"
  for c in 1 8 32; do
    target/release/troupe-load --target "$4" --model "$3" --input-file "$INPUT" --concurrency "$c" \
      --duration "$DUR" --warmup 2s --quiet --json "$OUT/$1_$2_$3_c$c.json" | tee "$OUT/$1_$2_$3_c$c.txt"
    if [[ $1 == troupe ]]; then
      curl -s "http://$METRICS_ADDR/metrics" | grep "^troupe_batch_size_\(sum\|count\){model=\"$3\"" \
        >"$OUT/$1_$2_$3_c$c.batches" || true
    else
      echo "step $2 $3 $c" >>"$MLS_STATS"; kill -USR1 "$MLSERVER"; sleep 0.5
    fi
  done
}

node_run() { # tag
  METRICS_ADDR=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  target/release/troupe-node --model-repository "$REPO" --listen 127.0.0.1:0 --backend-threads "$THREADS" \
    --metrics-listen "$METRICS_ADDR" >"$OUT/node_$1.out" 2>"$OUT/node_$1.log" &
  NODE=$!
  for _ in $(seq 100); do [[ -s "$OUT/node_$1.out" ]] && break; sleep 0.1; done
  local addr
  addr=$(awk '{print $4}' "$OUT/node_$1.out")
  for _ in $(seq 600); do grep -q "node ready" "$OUT/node_$1.log" && break; sleep 0.1; done
  grep -q "node ready" "$OUT/node_$1.log" || { echo "troupe-node not ready; see $OUT/node_$1.log" >&2; exit 1; }
  for m in "${MODELS[@]}"; do sweep troupe "$1" "$m" "$addr"; done
  kill -TERM $NODE; wait $NODE || true; NODE=
}
node_run batching
# c. dynamic batching off: delete the [dynamic_batching] table and its one line.
sed -i '/^\[dynamic_batching\]$/d; /^max_queue_delay_us = /d' "$REPO"/*/config.toml
if grep -q dynamic_batching "$REPO"/*/config.toml; then echo "dynamic batching still in a config" >&2; exit 1; fi
node_run off

# MLServer: same model.onnx, same THREADS, V2 gRPC on a free loopback port; settings as in
# scripts/bench_serving.sh (parallel_workers 0, debug false). RAYON_NUM_THREADS=THREADS for
# the tokenizers package, as troupe-node sets it for its own. MLS_OFFLOAD (default 1): the
# runtime's `offload` (inference on one worker thread per model, so the event loop keeps
# taking calls; 0: in the event loop, as scripts/mlserver/onnx_runtime.py does).
# MLS_BATCH_US (default "500 5000"): one adaptive-batching model per max_batch_time, in µs.
MLS_OFFLOAD=${MLS_OFFLOAD:-1}
MLS_BATCH_US=${MLS_BATCH_US:-500 5000}
MLS_STATS=$(realpath -m "$OUT")/mlserver_batches.txt
read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
cat >"$MLS/settings.json" <<EOF
{"host": "127.0.0.1", "grpc_port": $GRPC_PORT, "http_port": $HTTP_PORT, "metrics_port": $METRICS_PORT,
 "parallel_workers": 0, "debug": false}
EOF
mls_model() { # name batching-settings
  mkdir -p "$MLS/$1"
  cat >"$MLS/$1/model-settings.json" <<EOF
{"name": "$1", "implementation": "text_runtime.TextModel", $2
 "parameters": {"uri": "$PWD/models/repository/minilm_onnx/1/model.onnx", "extra": {"intra_op_threads": $THREADS, "offload": $([[ $MLS_OFFLOAD == 1 ]] && echo true || echo false)}},
 "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
 "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]}
EOF
}
MLS_MODELS=(minilm_onnx)
for us in $MLS_BATCH_US; do
  mls_model "minilm_onnx_batch${us}us" "\"max_batch_size\": 32, \"max_batch_time\": $(python3 -c "print($us / 1e6)"),"
  MLS_MODELS+=("minilm_onnx_batch${us}us")
done
mls_model minilm_onnx ''
MLS_ADDR=127.0.0.1:$GRPC_PORT
ROOT=$PWD
(cd "$MLS" && TEXT_RUNTIME_STATS=$MLS_STATS RAYON_NUM_THREADS=$THREADS PYTHONPATH="$ROOT/scripts/mlserver" exec "$ROOT/.venv-mlserver/bin/mlserver" start .) \
  >"$OUT/mlserver.log" 2>&1 &
MLSERVER=$!
ready=0
for _ in $(seq 240); do
  # Without --input-file troupe-load asks ModelMetadata first (exit 2 until the model is
  # loaded), which also checks that MLServer declares `text` BYTES [-1, 1].
  ready=1
  for m in "${MLS_MODELS[@]}"; do
    target/release/troupe-load --target "$MLS_ADDR" --model "$m" --requests 1 --warmup 0s --quiet >/dev/null 2>&1 || { ready=0; break; }
  done
  [[ $ready == 1 ]] && break
  kill -0 $MLSERVER 2>/dev/null || break
  sleep 0.5
done
[[ $ready == 1 ]] || { echo "MLServer not ready; see $OUT/mlserver.log" >&2; exit 1; }
echo "== MLServer $(.venv-mlserver/bin/python -c 'import mlserver; print(mlserver.__version__)') at $MLS_ADDR (parallel_workers 0, $THREADS intra-op thread(s), offload $MLS_OFFLOAD)"
for us in $MLS_BATCH_US; do sweep mlserver "batch${us}us" "minilm_onnx_batch${us}us" "$MLS_ADDR"; done
sweep mlserver off minilm_onnx "$MLS_ADDR"
kill -TERM $MLSERVER; wait $MLSERVER || true; MLSERVER=
kill "$WATCH"; wait "$WATCH" 2>/dev/null || true; WATCH=

.venv/bin/python - "$OUT" "$MLS_BATCH_US" <<'PY'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
mls_us = [int(u) for u in sys.argv[2].split()]
lines = []
models = ["minilm_onnx", "minilm_torch", "minilm_candle"]
C = [1, 8, 32]
def p(s=""):
    print(s); lines.append(s)
def num(x):  # 3 significant digits, like troupe-load's table
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}" if x < 100 else f"{x:,.0f}"
def ms(us):
    return num(us / 1e3) + " ms"
def inproc(m):  # {batch: sentences/s}
    r = {}
    for l in (out / f"inproc_{m}.txt").read_text().splitlines():
        g = re.search(r"batch +(\d+): +([\d.]+) sentences/s", l)
        if g:
            r[int(g[1])] = float(g[2])
    return r
def steps(server, tag, m):
    return {c: json.loads((out / f"{server}_{tag}_{m}_c{c}.json").read_text())["steps"][0] for c in C}
def node_batches(tag, m):  # {c: mean rows per backend call during that step (warm-up included)}
    r, prev = {}, (0.0, 0.0)
    for c in C:
        f = out / f"troupe_{tag}_{m}_c{c}.batches"
        v = {l.split("{")[0]: float(l.split()[-1]) for l in f.read_text().splitlines()} if f.exists() else {}
        cur = (v.get("troupe_batch_size_sum", 0.0), v.get("troupe_batch_size_count", 0.0))
        r[c] = (cur[0] - prev[0]) / (cur[1] - prev[1]) if cur[1] > prev[1] else None
        prev = cur
    return r
def mls_batches(tag, m):  # from the runtime's SIGUSR1 lines, after each step
    r, prev, step = {}, (0, 0), None
    f = out / "mlserver_batches.txt"
    for l in (f.read_text().splitlines() if f.exists() else []):
        w = l.split()
        if w[0] == "step":
            step = (w[1], w[2], int(w[3]))
        elif step and step[:2] == (tag, m) and w[0] == m:
            cur = (int(w[1]), int(w[2]))
            r[step[2]] = (cur[1] - prev[1]) / (cur[0] - prev[0]) if cur[0] > prev[0] else None
            prev, step = cur, None
    return r
def bnum(x):
    return "-" if x is None else f"{x:.1f}"
bad = []
base = {m: inproc(m) for m in models}
p("In-process text pipeline (baseline), sentences/s:")
p()
p("| model | batch 1 | batch 8 | batch 32 |")
p("|---|---:|---:|---:|")
for m in models:
    p(f"| {m} | " + " | ".join(num(base[m][b]) for b in [1, 8, 32]) + " |")
p()
runs = [("Troupe", "troupe", "batching", m, m) for m in models] + \
       [("Troupe", "troupe", "off", m, m) for m in models] + \
       [("MLServer", "mlserver", f"batch{u}us", f"minilm_onnx_batch{u}us", "minilm_onnx") for u in mls_us] + \
       [("MLServer", "mlserver", "off", "minilm_onnx", "minilm_onnx")]
def label(tag):
    if tag == "off":
        return "off"
    us = 500 if tag == "batching" else int(tag[5:-2])
    return f"on, {us:,} µs"
S = {}
p("Served, one sentence per call (rows/batch: mean rows per backend call in that step, warm-up included):")
p()
p("| server | model | batching | c=1 sentences/s | p50 | p99 | c=8 sentences/s | p50 | p99 | rows/batch | c=32 sentences/s | p50 | p99 | rows/batch |")
p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, server, tag, served, m in runs:
    st = steps(server, tag, served)
    S[(server, tag, m)] = st
    rb = node_batches(tag, m) if server == "troupe" else mls_batches(tag, served)
    cells = []
    for c in C:
        s = st[c]
        if s["errors"]:
            bad.append(f"{name} {m} {tag} c={c}: {s['errors']} errors {s.get('errors_by_code')}")
        cells += [num(s["throughput"]), ms(s["latency"]["p50_us"]), ms(s["latency"]["p99_us"])]
        if c > 1:
            cells.append(bnum(rb.get(c)))
    p(f"| {name} | {m} | {label(tag)} | " + " | ".join(cells) + " |")
p()
p("Served with batching / in-process best batched rate (goal ≥ 0.9):")
p()
p("| model | in-process best | Troupe batching, best c | ratio | Troupe batching off, best c | ratio |")
p("|---|---:|---:|---:|---:|---:|")
for m in models:
    bb = max(base[m], key=base[m].get)
    row = f"| {m} | {num(base[m][bb])} (batch {bb}) |"
    for tag in ["batching", "off"]:
        st = S[("troupe", tag, m)]
        c = max(st, key=lambda c: st[c]["throughput"])
        row += f" {num(st[c]['throughput'])} (c={c}) | ×{st[c]['throughput'] / base[m][bb]:.2f} |"
    p(row)
bb = max(base["minilm_onnx"], key=base["minilm_onnx"].get)
for u in mls_us:
    st = S[("mlserver", f"batch{u}us", "minilm_onnx")]
    c = max(st, key=lambda c: st[c]["throughput"])
    p(f"| minilm_onnx on MLServer, adaptive batching {u:,} µs | {num(base['minilm_onnx'][bb])} (batch {bb}) | {num(st[c]['throughput'])} (c={c}) | ×{st[c]['throughput'] / base['minilm_onnx'][bb]:.2f} | | |")
p()
p("Troupe / MLServer, minilm_onnx, same model.onnx (goal at c=8: ≥ ×2 and a lower p99):")
p()
p("| Troupe batching | MLServer batching | concurrency | Troupe sentences/s | MLServer sentences/s | Troupe / MLServer | Troupe p99 | MLServer p99 |")
p("|---|---|---:|---:|---:|---:|---:|---:|")
for tt, mt in [("batching", f"batch{u}us") for u in mls_us] + [("off", "off")]:
    t, s = S[("troupe", tt, "minilm_onnx")], S[("mlserver", mt, "minilm_onnx")]
    for c in C:
        p(f"| {label(tt)} | {label(mt)} | {c} | {num(t[c]['throughput'])} | {num(s[c]['throughput'])} | ×{t[c]['throughput'] / s[c]['throughput']:.2f} "
          f"| {ms(t[c]['latency']['p99_us'])} | {ms(s[c]['latency']['p99_us'])} |")
p()
p("errors: " + ("; ".join(bad) if bad else "none"))
for tag in ["batching", "off"]:
    log = (out / f"node_{tag}.log").read_text()
    n = sum(1 for l in log.splitlines() if re.search(r"\b(WARN|ERROR)\b", l))
    p(f"node log ({tag}): {n} WARN/ERROR lines")
seen = out / "compiles_seen.txt"
p("compiles seen while measuring: " + (f"yes, at {len(seen.read_text().split())} samples (2 s apart)" if seen.exists() else "none"))
(out / "summary.md").write_text("\n".join(lines) + "\n")
PY
