#!/usr/bin/env bash
# Serving overhead benchmark (criterion): in-process backend call vs. end-to-end gRPC on
# loopback, in the same run. Prints medians; criterion's reports are in target/criterion.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo bench -p troupe-node --bench serving -- --noplot "$@"
.venv/bin/python - <<'PY'
import json, pathlib
base = pathlib.Path("target/criterion/mlp_batch1")
rows = {}
for est in sorted(base.glob("*/new/estimates.json")):
    kind, _, backend = est.parts[-3].rpartition("_")
    rows.setdefault(backend, {})[kind] = json.loads(est.read_text())["median"]["point_estimate"] / 1e3
print("medians, µs")
print(f"{'backend':8} {'in-process':>10} {'node, no network':>17} {'gRPC e2e':>9} {'added by node':>14}")
for b, r in rows.items():
    ip, nn, g = r.get("in_process"), r.get("node_no_network"), r.get("grpc")
    if None not in (ip, nn, g):
        print(f"{b:8} {ip:10.1f} {nn:17.1f} {g:9.1f} {g - ip:14.1f}")
if "live" in rows:
    print(f"gRPC ServerLive round trip (transport floor): {rows['live']['grpc_server']:.1f}")
PY
