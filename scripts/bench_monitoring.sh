#!/usr/bin/env bash
# The cost of recording every answer (docs/benchmarks.md, "Monitoring"): in one run, a
# release troupe-node serving the digits classifier twice, `digits_plain` (no
# [monitoring]) and `digits_onnx` (every answer recorded), measured by troupe-load in
# another process: calls/s and the node's CPU time per call, with the store on SQLite,
# then on a real PostgreSQL server (started here as in the tests).
# Env: DUR (default 10s), CONC (default 8), ROUNDS (default 3: off and on alternate, and
# the summary gives each round's ratio and their median, as this machine's neighbours move
# the baseline from one round to the next).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q -p troupe-node -p troupe-load --bins
DUR=${DUR:-10s}
CONC=${CONC:-8}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d)
chown postgres "$WORK"
PIDS=()
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG=$WORK/pg
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -d $PG ]] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 300); do [[ -s "$1" ]] && return 0; sleep 0.1; done; return 1; }

PGPORT=$(port)
runuser -u postgres -- "$PGBIN/initdb" -D "$PG" -A trust -U troupe >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG" -l "$WORK/pg.log" -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1" -w start >/dev/null

mkdir -p "$WORK/repo"
cp -r models/repository/digits_onnx "$WORK/repo/digits_onnx"
cp -r models/repository/digits_onnx "$WORK/repo/digits_plain"
python3 - "$WORK/repo/digits_plain/config.toml" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
open(p, "w").write(re.sub(r"\[monitoring\][^\[]*", "", s))
PY
X=$(.venv/bin/python -c 'import json; print(json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64], "data": json.load(open("models/testing/digits/holdout.json"))["x"][0]}]}))')
echo "$X" >"$WORK/input.json"

run_node() {  # $1: store URL
  target/release/troupe-node --model-repository "$WORK/repo" --listen 127.0.0.1:0 --store "$1" \
    >"$WORK/node.out" 2>"$WORK/node.log" &
  NODE_PID=$!
  PIDS+=($NODE_PID)
  rm -f "$WORK/node.out.ready"
  wait_line "$WORK/node.out"
  NODE=$(awk '{print $4}' "$WORK/node.out")
  for _ in $(seq 100); do target/release/troupe-load --target "$NODE" --model digits_onnx --input-file "$WORK/input.json" --requests 1 --quiet >/dev/null 2>&1 && break; sleep 0.2; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {  # $1: label, $2: model
  local before after
  before=$(cpu_ticks "$NODE_PID")
  target/release/troupe-load --target "$NODE" --model "$2" --input-file "$WORK/input.json" --concurrency "$CONC" \
    --duration "$DUR" --warmup 2s --quiet --json "$WORK/$1.json" >/dev/null
  after=$(cpu_ticks "$NODE_PID")
  python3 - "$WORK/$1.json" "$1" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
ticks, hz = int(sys.argv[3]), int(sys.argv[4])
calls = s["answers"]  # warm-up calls are not counted; the CPU time includes them (2 s)
print(f"{sys.argv[2]:<28} {s['throughput']:>9.0f} calls/s  p50 {s['latency']['p50_us']:>5} µs  "
      f"p99 {s['latency']['p99_us']:>5} µs  node CPU {ticks / hz * 1e6 / max(calls, 1):.1f} µs/call  errors {s['errors']}")
PY
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); concurrency $CONC, $DUR each"
run_node "sqlite://$WORK/store.db"
for round in $(seq "$ROUNDS"); do
  measure "off-sqlite-$round" digits_plain
  measure "on-sqlite-$round" digits_onnx
done
kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true
run_node "postgres://troupe@127.0.0.1:$PGPORT/postgres"
for round in $(seq "$ROUNDS"); do
  measure "off-postgres-$round" digits_plain
  measure "on-postgres-$round" digits_onnx
done
sleep 1
python3 - "$WORK/store.db" <<'PY'
import sqlite3, sys
n = sqlite3.connect(sys.argv[1]).execute("select count(*) from predictions").fetchone()[0]
print(f"rows in the SQLite store: {n}")
PY
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def step(name):
    return json.load(open(f"{work}/{name}.json"))["steps"][0]["throughput"]
for store in ("sqlite", "postgres"):
    ratios = [step(f"on-{store}-{r}") / step(f"off-{store}-{r}") - 1 for r in range(1, rounds + 1)]
    shown = ", ".join(f"{x:+.1%}" for x in ratios)
    print(f"throughput with every answer recorded on {store}: {shown} (median {statistics.median(ratios):+.1%})")
PY
