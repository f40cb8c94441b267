#!/usr/bin/env bash
# Batch delays (docs/benchmarks.md, "Batch delays"): in one run, on one release
# troupe-node, the MLP and the ResNet-18-sized model (ONNX, 1 instance) with dynamic
# batching off (the baseline), on with max_queue_delay_us = 500, 2000, and "auto",
# each driven by troupe-load at concurrency 1, 8, 32 and 64 (batch 1 per call).
# Prints one table: calls/s, p50, p99 per model, setting and concurrency, and the goals
# of the performance issue checked against it.
# Env: DUR (measured time per step, default 5s), WARMUP (default 2s), THREADS (backend
# intra-op threads, default 1), MODELS (default "mlp resnet"), ROUNDS (default 1): more
# rounds run every setting again, each round in an order rotated by one (auto is not
# always last), and the table shows each step's median over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/node.sh
scripts/setup.sh --bench >/dev/null
cargo build --release -q -p troupe-node -p troupe-load --bins
DUR=${DUR:-5s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-1}
MODELS=${MODELS:-mlp resnet}
OUT=${OUT:-target/bench-batch-delays}
rm -rf "$OUT" && mkdir -p "$OUT"
REPO=$(mktemp -d)
NODE=
trap 'kill $NODE 2>/dev/null || true; rm -rf "$REPO"' EXIT

SETTINGS="off 500 2000 auto"
for m in $MODELS; do
  case $m in
    mlp) src=models/repository/mlp_onnx max=64 ;;
    resnet) src=models/bench/resnet18_onnx max=32 ;;
  esac
  for s in $SETTINGS; do
    d="$REPO/${m}_$s"
    cp -r "$src" "$d"
    [[ $s == off ]] && continue
    [[ $s == auto ]] && delay='"auto"' || delay=$s
    grep -q '^max_batch_size' "$d/config.toml" \
      && sed -i "s/^max_batch_size = .*/max_batch_size = $max/" "$d/config.toml" \
      || sed -i "1i max_batch_size = $max" "$d/config.toml"
    printf '\n[dynamic_batching]\nmax_queue_delay_us = %s\n' "$delay" >>"$d/config.toml"
  done
done

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), backend threads: $THREADS, commit $(git rev-parse --short HEAD)"
start_node "$REPO" "$OUT" "$THREADS"

ROUNDS=${ROUNDS:-1}
read -ra ORDER <<<"$SETTINGS"
for r in $(seq "$ROUNDS"); do
  for m in $MODELS; do
    for s in "${ORDER[@]}"; do
      echo "== round $r ${m}_$s"
      target/release/troupe-load --target "$ADDR" --model "${m}_$s" --sweep-concurrency 1,8,32,64 \
        --duration "$DUR" --warmup "$WARMUP" --quiet --json "$OUT/${m}_$s-r$r.json" >/dev/null
    done
  done
  ORDER=("${ORDER[@]:1}" "${ORDER[0]}")
done
kill -TERM $NODE; wait $NODE || true; NODE=

.venv/bin/python - "$OUT" "$MODELS" "$SETTINGS" "$ROUNDS" <<'PY'
import json, statistics, sys, pathlib
out, models, settings, rounds = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
delay_us = {"off": 0, "500": 500, "2000": 2000, "auto": 0}
print(f"\n(median of {rounds} round(s))" if rounds > 1 else "")
print("| model | setting | c | calls/s | p50 | p99 | errors |\n|---|---|---:|---:|---:|---:|---:|")
res = {}
for m in models:
    for s in settings:
        steps = {}
        for r in range(1, rounds + 1):
            for st in json.loads((out / f"{m}_{s}-r{r}.json").read_text())["steps"]:
                steps.setdefault(st["concurrency"], []).append(st)
        for c, sts in sorted(steps.items()):
            med = lambda f: statistics.median(f(x) for x in sts)
            st = {"throughput": med(lambda x: x["throughput"]), "errors": sum(x["errors"] for x in sts),
                  "latency": {"p50_us": round(med(lambda x: x["latency"]["p50_us"])),
                              "p99_us": round(med(lambda x: x["latency"]["p99_us"]))}}
            lat = st["latency"]
            res[m, s, c] = st
            print(f"| {m} | {s} | {c} | {st['throughput']:,.0f} | {lat['p50_us']:,} µs | {lat['p99_us']:,} µs | {st['errors']} |")
print("\ngoals:")
for m in models:
    for s in settings[1:]:
        off1, on1 = res[m, "off", 1]["latency"]["p50_us"], res[m, s, 1]["latency"]["p50_us"]
        bound = off1 + delay_us[s] + 100
        print(f"  {m} {s}: c=1 p50 {on1} µs <= off {off1} + delay {delay_us[s]} + 100 = {bound}: {'yes' if on1 <= bound else 'NO'}")
        for c in (8, 32, 64):
            a, b = res[m, s, c]["throughput"], res[m, "off", c]["throughput"]
            print(f"  {m} {s}: c={c} {a:,.0f}/s >= off {b:,.0f}/s: {'yes' if a >= b else 'NO'} (x{a / b:.2f})")
    for c in (1, 8, 32, 64):
        best = max(res[m, s, c]["throughput"] for s in ("500", "2000"))
        a = res[m, "auto", c]["throughput"]
        print(f"  {m} auto c={c}: {a:,.0f}/s against the best fixed {best:,.0f}/s: x{a / best:.2f} ({'yes' if a >= 0.95 * best else 'NO'}, goal >= 0.95)")
PY
