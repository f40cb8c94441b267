#!/usr/bin/env bash
# Cost of tracing and of call hooks (docs/benchmarks.md, "Tracing and hooks"). In one run,
# all through a release troupe-load, closed loop, against one release troupe-node serving
# the MLP (ONNX, one instance):
#   1. tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT), on at 1 % sampling
#      (parentbased_traceidratio 0.01) and on at 100 %, exporting over OTLP/gRPC to
#      COLLECTOR: `sink` (default; telemetry/examples/otlp_sink.rs, a one-thread collector
#      that counts and drops spans, so what is measured is the node's own cost) or
#      `phoenix` (a real Arize Phoenix on the same 2 cores, each run after it went idle);
#      ROUNDS rounds of the three in turn (medians reported); also the node's CPU per call;
#   2. hooks, tracing off, ROUNDS rounds in turn on one node: the MLP with explanations
#      turned off ([hooks] explain = false), as shipped (explanations allowed, none asked
#      for), and with audit on.
# Env: DUR (measured time per step, default 10s), CONC (calls in flight, default 8),
# COLLECTOR (sink | phoenix, default sink), ROUNDS (default 5), LOG (the node's --log,
# default info as shipped), OUT (results folder, default target/bench-tracing-COLLECTOR).
set -euo pipefail
cd "$(dirname "$0")/.."
COLLECTOR=${COLLECTOR:-sink}
scripts/setup.sh
if [[ $COLLECTOR == phoenix ]]; then scripts/phoenix.sh install; fi
cargo build --release -q -p troupe-node -p troupe-load --bins
cargo build --release -q -p troupe-telemetry --example otlp_sink
SP=$PWD/.venv/lib/python3.11/site-packages
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$SP/onnxruntime/capi/libonnxruntime.so.1.31.1}
DUR=${DUR:-10s}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-5}
LOG=${LOG:-info}
OUT=${OUT:-target/bench-tracing-$COLLECTOR}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/summary.md

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REPO=$(mktemp -d)
PHX=$(mktemp -d)
NODE=
PHOENIX=
cleanup() {
  [[ -n $NODE ]] && kill "$NODE" 2>/dev/null || true
  [[ -n $PHOENIX ]] && kill "$PHOENIX" 2>/dev/null || true
  rm -rf "$REPO" "$PHX"
}
trap cleanup EXIT

cp -r models/repository/mlp_onnx "$REPO/mlp"
cp -r models/repository/mlp_onnx "$REPO/mlp_no_hooks"
printf '\n[hooks]\nexplain = false\n' >>"$REPO/mlp_no_hooks/config.toml"
cp -r models/repository/mlp_onnx "$REPO/mlp_audit"
printf '\n[hooks]\naudit = true\n' >>"$REPO/mlp_audit/config.toml"

if [[ $COLLECTOR == phoenix ]]; then
  HTTP=$(free_port)
  GRPC=$(free_port)
  scripts/phoenix.sh serve "$HTTP" "$GRPC" "$PHX/work" >"$PHX/phoenix.log" 2>&1 &
  PHOENIX=$!
  for i in $(seq 120); do
    curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break
    [[ $i == 120 ]] && { echo "phoenix did not start; log:"; cat "$PHX/phoenix.log"; exit 1; } >&2
    sleep 1
  done
else
  target/release/examples/otlp_sink 127.0.0.1:0 >"$PHX/sink.out" &
  PHOENIX=$!
  for i in $(seq 100); do grep -q "listening on" "$PHX/sink.out" 2>/dev/null && break; sleep 0.1; done
  GRPC=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$PHX/sink.out")
fi

start_node() { # env assignments...
  local port
  port=$(free_port)
  env "$@" target/release/troupe-node --model-repository "$REPO" --listen "127.0.0.1:$port" \
    --audit-log "$PHX/audit.jsonl" --log "$LOG" >"$PHX/node.out" 2>"$PHX/node.log" &
  NODE=$!
  for i in $(seq 100); do
    grep -q "listening on" "$PHX/node.out" 2>/dev/null && break
    sleep 0.1
  done
  ADDR=127.0.0.1:$port
  sleep 1
}
stop_node() { kill "$NODE"; wait "$NODE" 2>/dev/null || true; NODE=; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # name model: the load, plus the node's CPU seconds during it
  local before after
  before=$(cpu_ticks "$NODE")
  target/release/troupe-load --target "$ADDR" --model "$2" --concurrency "$CONC" \
    --duration "$DUR" --warmup 2s --seed 1 --quiet --json "$OUT/$1.json"
  after=$(cpu_ticks "$NODE")
  echo "$(( after - before ))" >"$OUT/$1.cpu_ticks"
}
phoenix_idle() { # wait until the collector uses under 5 % of a core (at most 90 s)
  local a b
  for i in $(seq 90); do
    a=$(cpu_ticks "$PHOENIX"); sleep 1; b=$(cpu_ticks "$PHOENIX")
    (( (b - a) * 100 / $(getconf CLK_TCK) < 5 )) && return 0
  done
  return 0
}

for i in $(seq 120); do
  pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null || break
  [[ $i == 1 ]] && echo "== waiting for a running compile (rustc/cargo) to finish"
  sleep 5
done
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), concurrency $CONC, $DUR per step"

OTLP=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$GRPC" OTEL_SERVICE_NAME=troupe-node-bench)
for r in $(seq "$ROUNDS"); do
  phoenix_idle
  echo "== round $r: tracing off"
  start_node OTEL_SDK_DISABLED=false; load "off_$r" mlp; stop_node
  phoenix_idle
  echo "== round $r: tracing on, 1 % sampled"
  start_node "${OTLP[@]}" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
  load "1pct_$r" mlp; stop_node
  phoenix_idle
  echo "== round $r: tracing on, 100 % sampled"
  start_node "${OTLP[@]}" OTEL_TRACES_SAMPLER=parentbased_always_on
  load "100pct_$r" mlp; stop_node
done
phoenix_idle
start_node OTEL_SDK_DISABLED=false
for r in $(seq "$ROUNDS"); do
  echo "== round $r: hooks (tracing off): explain off / as shipped / audit on"
  load "hooks_none_$r" mlp_no_hooks
  load "hooks_default_$r" mlp
  load "hooks_audit_$r" mlp_audit
done
stop_node
echo "audit lines written: $(wc -l <"$PHX/audit.jsonl")"

COLLECTOR=$COLLECTOR python3 - "$OUT" "$ROUNDS" "$(getconf CLK_TCK)" <<'EOF' | tee "$OUT/summary.md"
import json, sys, os, statistics
out, rounds, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def step(name):
    s = json.load(open(os.path.join(out, name + ".json")))["steps"][0]
    ticks = int(open(os.path.join(out, name + ".cpu_ticks")).read())
    s["cpu_us_per_call"] = ticks / tck * 1e6 / max(s["answers"], 1)
    return s
def med(prefix, key):
    return statistics.median(step(f"{prefix}_{r}")[key] for r in range(1, rounds + 1))
def medlat(prefix, key):
    return statistics.median(step(f"{prefix}_{r}")["latency"][key] for r in range(1, rounds + 1))
base = med("off", "throughput")
print(f"Collector: {os.environ.get('COLLECTOR', 'sink')}. Median of {rounds} rounds (each configuration once per round, in turn):")
print()
def paired(p, b, key):
    """Median over rounds of the change from the baseline run of the same round."""
    return statistics.median(step(f"{p}_{r}")[key] / step(f"{b}_{r}")[key] - 1 for r in range(1, rounds + 1))
print("| tracing | calls/s (median) | vs. off (medians) | vs. off (median of per-round changes) | every round, calls/s | p50 ms | p99 ms | node CPU µs per call (median; per-round change) |")
print("|---|---|---|---|---|---|---|---|")
for p, label in [("off", "off"), ("1pct", "on, 1 % sampled"), ("100pct", "on, 100 % sampled")]:
    thr = med(p, "throughput")
    each = ", ".join(f"{step(f'{p}_{r}')['throughput']:,.0f}" for r in range(1, rounds + 1))
    errs = sum(step(f"{p}_{r}")["errors"] for r in range(1, rounds + 1))
    assert errs == 0, f"{p}: {errs} errors"
    print(f"| {label} | {thr:,.0f} | {thr / base - 1:+.1%} | {paired(p, 'off', 'throughput'):+.1%} | {each} | {medlat(p, 'p50_us') / 1000:.3f} | {medlat(p, 'p99_us') / 1000:.3f} | {med(p, 'cpu_us_per_call'):.1f}; {paired(p, 'off', 'cpu_us_per_call'):+.1%} |")
print()
hb = med("hooks_none", "throughput")
print(f"Hooks, tracing off, one node serving the three models; median of {rounds} rounds:")
print()
print("| hooks | calls/s (median) | vs. no hooks (medians) | vs. no hooks (median of per-round changes) | every round, calls/s | p50 ms | p99 ms | node CPU µs per call (median; per-round change) |")
print("|---|---|---|---|---|---|---|---|")
for p, label in [("hooks_none", "explain = false (no hook runs)"), ("hooks_default", "as shipped (explain allowed, not asked)"),
                 ("hooks_audit", "audit = true (a JSON line per call)")]:
    thr = med(p, "throughput")
    each = ", ".join(f"{step(f'{p}_{r}')['throughput']:,.0f}" for r in range(1, rounds + 1))
    print(f"| {label} | {thr:,.0f} | {thr / hb - 1:+.1%} | {paired(p, 'hooks_none', 'throughput'):+.1%} | {each} | {medlat(p, 'p50_us') / 1000:.3f} | {medlat(p, 'p99_us') / 1000:.3f} | {med(p, 'cpu_us_per_call'):.1f}; {paired(p, 'hooks_none', 'cpu_us_per_call'):+.1%} |")
EOF
