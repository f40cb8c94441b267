#!/usr/bin/env bash
# MLServer in its own venv (.venv-mlserver; its dependencies must not touch .venv), for the
# peer in scripts/bench_serving.sh and scripts/bench_text.sh. Idempotent. uvloop is pinned:
# with uvloop 0.23, mlserver 1.7.1 cannot start its inference workers ("There is no
# current event loop"), and 0.21 was the release current with mlserver 1.7.1. tokenizers
# is for the text runtime (text_runtime.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
MLS_REQS=(mlserver==1.7.1 onnxruntime==1.31.1 numpy uvloop==0.21.0 tokenizers)
if ! .venv-mlserver/bin/python -c '
import importlib.metadata as m
assert m.version("mlserver") == "1.7.1" and m.version("onnxruntime") == "1.31.1" and m.version("uvloop") == "0.21.0"
import tokenizers
' 2>/dev/null; then
  echo "==> installing MLServer into .venv-mlserver"
  [[ -x .venv-mlserver/bin/python ]] || python3 -m venv .venv-mlserver
  .venv-mlserver/bin/pip install -q --disable-pip-version-check "${MLS_REQS[@]}"
fi
