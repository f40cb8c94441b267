#!/usr/bin/env bash
# The serving benchmark (node/benches/serving.rs) of another revision and of this tree, in
# one run, alternating: BASE, this tree, BASE, this tree. Prints each round's medians and
# the change of this tree against BASE. For refactors that must not move the figures.
#
#   scripts/bench_compare.sh REV [ROUNDS]      (default ROUNDS = 2)
#
# REV is checked out in a git worktree under target/bench-base (its generated models
# linked from this tree); both builds share target/, so dependencies build once.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/bench_compare.sh REV [ROUNDS]}
rounds=${2:-2}
scripts/setup.sh >/dev/null
here=$(pwd)
wt="$here/target/bench-base/src"
rm -rf "$wt"
git worktree prune
git worktree add --detach -f "$wt" "$base" >/dev/null
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
ln -s "$here/.venv" "$wt/.venv"
# The same native libraries as this tree, so the shared dependencies are not rebuilt.
export LIBTORCH="$here/.venv/lib/python3.11/site-packages/torch"
export ORT_DYLIB_PATH="$here/.venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1"
export CARGO_TARGET_DIR="$here/target"
bench() { # DIR NAME
  # The two trees' workspace crates share names, artifact files and fingerprints in
  # target/ (the fingerprints list the other tree's sources): dropping the workspace
  # crates' fingerprints makes each build compile its own, else one links the other's.
  rm -rf "$CARGO_TARGET_DIR"/release/.fingerprint/troupe-*
  (cd "$1" && cargo bench -q -p troupe-node --bench serving -- --noplot --save-baseline "$2" >/dev/null)
}
medians() { # NAME -> "case median_us" lines
  for est in target/criterion/*/*/"$1"/estimates.json; do
    case_=$(basename "$(dirname "$(dirname "$est")")")
    group=$(basename "$(dirname "$(dirname "$(dirname "$est")")")")
    printf '%s/%s %s\n' "$group" "$case_" \
      "$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"]/1e3)' "$est")"
  done
}
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  echo "round $r: $base" >&2
  bench "$wt" base
  medians base >"$out/base.$r"
  echo "round $r: this tree" >&2
  bench "$here" current
  medians current >"$out/current.$r"
done
.venv/bin/python - "$out" "$rounds" "$base" <<'PY'
import pathlib, statistics, sys
out, rounds, base = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def read(kind):
    rows = {}
    for r in range(1, rounds + 1):
        for line in (out / f"{kind}.{r}").read_text().split("\n"):
            if line:
                case, v = line.split()
                rows.setdefault(case, []).append(float(v))
    return rows
b, c = read("base"), read("current")
print(f"medians, µs (each round; {base} against this tree)")
print(f"{'case':34} {'base':>22} {'this tree':>22} {'change':>8}")
for case in sorted(b):
    if case not in c:
        continue
    mb, mc = statistics.median(b[case]), statistics.median(c[case])
    fmt = lambda v: " ".join(f"{x:6.1f}" for x in v)
    print(f"{case:34} {fmt(b[case]):>22} {fmt(c[case]):>22} {100 * (mc - mb) / mb:+7.1f}%")
PY
