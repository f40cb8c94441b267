#!/usr/bin/env bash
# Triton's own load tool, perf_analyzer, from the last tritonclient wheel that carries it
# (2.41), in .venv/perf_analyzer:
#   scripts/perf_analyzer.sh install    # once: libb64 (apt), the binary and the CUDA
#                                       # runtime library it links (PyPI wheels; no GPU used)
#   scripts/perf_analyzer.sh ARGS...    # runs it, e.g. -m mlp_onnx -u 127.0.0.1:8001 -i http
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.venv/perf_analyzer
if [[ "${1:-}" == "install" ]]; then
  if [[ -x $DIR/perf_analyzer && -f $DIR/lib/libcudart.so.12 ]] && ldconfig -p | grep -q libb64.so.0d; then
    exit 0
  fi
  if ! ldconfig -p | grep -q libb64.so.0d; then
    echo "==> installing libb64 (apt), which perf_analyzer links"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
  fi
  echo "==> fetching perf_analyzer (PyPI tritonclient 2.41.0) and libcudart (nvidia-cuda-runtime-cu12)"
  mkdir -p "$DIR/lib" .whl
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps \
    tritonclient==2.41.0 nvidia-cuda-runtime-cu12==12.9.79 -d .whl
  .venv/bin/python - "$DIR" <<'PY'
import glob, os, shutil, sys, zipfile
out = sys.argv[1]
with zipfile.ZipFile(glob.glob(".whl/tritonclient-2.41.0-*.whl")[0]) as z:
    with z.open("tritonclient-2.41.0.data/data/bin/perf_analyzer") as f, open(f"{out}/perf_analyzer", "wb") as o:
        shutil.copyfileobj(f, o)
with zipfile.ZipFile(glob.glob(".whl/nvidia_cuda_runtime_cu12-12.9.79-*.whl")[0]) as z:
    with z.open("nvidia/cuda_runtime/lib/libcudart.so.12") as f, open(f"{out}/lib/libcudart.so.12", "wb") as o:
        shutil.copyfileobj(f, o)
os.chmod(f"{out}/perf_analyzer", 0o755)
PY
  exit 0
fi
[[ -x $DIR/perf_analyzer ]] || { echo "perf_analyzer is not installed: scripts/perf_analyzer.sh install" >&2; exit 2; }
LD_LIBRARY_PATH="$PWD/$DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$DIR/perf_analyzer" "$@"
