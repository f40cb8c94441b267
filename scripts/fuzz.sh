#!/usr/bin/env bash
# A long fuzz of the node's request decoding and validation (tests/fuzz.rs, the same test
# the suite runs briefly): runs it again and again, each run with a fresh seed, a real
# node and at most two minutes, until MINUTES (default 10) are up. Prints the number of
# cases and every distinct finding; exits 1 if there was one. Logs of runs with findings
# stay in target/fuzz/.
#   scripts/fuzz.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
if ! [[ "$MINUTES" =~ ^[0-9]+$ ]] || ((MINUTES < 1)); then
  echo "usage: scripts/fuzz.sh [MINUTES]   (whole minutes, default 10)" >&2
  exit 2
fi
scripts/setup.sh
cargo build -q --workspace --bins
cargo test -q -p troupe-tests --test fuzz --no-run

OUT=target/fuzz
mkdir -p "$OUT"
FINDINGS=$(mktemp)
trap 'rm -f "$FINDINGS"' EXIT
end=$(($(date +%s) + MINUTES * 60))
cases=0 calls=0 runs=0
echo "==> fuzzing for $MINUTES minutes"
while now=$(date +%s) && ((now + 5 < end)); do
  seed=$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')
  secs=$((end - now))
  ((secs > 120)) && secs=120
  log="$OUT/run-$seed.log"
  set +e
  TROUPE_FUZZ_SEED=$seed TROUPE_FUZZ_CASES=1000000000 TROUPE_FUZZ_SECONDS=$secs \
    cargo test -q -p troupe-tests --test fuzz -- --nocapture >"$log" 2>&1
  status=$?
  set -e
  runs=$((runs + 1))
  # "fuzz: seed S: N cases (M calls) in ..."
  summary=$(grep -aE '^fuzz: seed [0-9]+: [0-9]+ cases' "$log" | tail -1 || true)
  if [[ -n "$summary" ]]; then
    n=$(sed -E 's/^fuzz: seed [0-9]+: ([0-9]+) cases \(([0-9]+) calls\).*/\1 \2/' <<<"$summary")
    cases=$((cases + ${n% *}))
    calls=$((calls + ${n#* }))
  fi
  printf 'run %d (seed %s): %s\n' "$runs" "$seed" "${summary:-no summary}"
  if ((status == 0)); then
    rm -f "$log"
    continue
  fi
  found=$(grep -a '^==== finding' "$log" || true)
  if [[ -z "$found" ]]; then
    # Failed without a report (the node did not start, the test crashed, ...).
    echo "  failed without a finding report: see $log"
    printf '%s\t%s\t%s\n' 1 "the run failed without a finding report" "$log" >>"$FINDINGS"
    continue
  fi
  while IFS= read -r line; do
    # ==== finding (seen K times; first with TROUPE_FUZZ_SEED=S, chunk C): REASON
    times=$(sed -E 's/^==== finding \(seen ([0-9]+) times.*/\1/' <<<"$line")
    reason=$(sed -E 's/^==== finding \([^)]*\): //' <<<"$line")
    echo "  finding: $reason"
    printf '%s\t%s\t%s\n' "$times" "$reason" "$log" >>"$FINDINGS"
  done <<<"$found"
done

echo "==> $cases cases ($calls calls) in $runs runs over $MINUTES minutes"
if [[ ! -s "$FINDINGS" ]]; then
  echo "==> no findings"
  exit 0
fi
# One line per distinct finding (numbers aside): how often, what, the first run's log.
kinds=$(awk -F'\t' '{ key = $2; sub(/; expected.*/, "", key); gsub(/[0-9]+/, "N", key); seen[key] += $1; if (!(key in first)) { first[key] = $2; log_[key] = $3 } }
  END { for (k in seen) printf "  [seen %d times] %s\n      first in %s\n", seen[k], first[k], log_[k] }' "$FINDINGS")
echo "==> distinct findings: $(grep -c "^  \[seen" <<<"$kinds")"
echo "$kinds"
exit 1
