#!/usr/bin/env bash
# Installs what Troupe needs on a fresh Debian 12 machine with Rust and Python 3.11:
# a project-local venv (.venv) with libtorch (PyPI torch, CPU use), ONNX Runtime and the
# Python tools used by the tests, then generates the example models. Idempotent.
#   scripts/setup.sh           # what the node, tests and quick start need
#   scripts/setup.sh --bench   # also the ResNet-18-sized benchmark models (~90 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=0
[[ "${1:-}" == "--bench" ]] && BENCH=1

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# etcd (cluster membership and its tests; Debian's etcd-server, started by the tests) and
# protoc (the etcd-client crate's build script runs it).
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; then
  log "installing etcd and protoc (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client protobuf-compiler >/dev/null
  # Debian may start a system etcd on 2379; Troupe's tests start their own on free ports.
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "Python 3.9+ is needed (python3 not found or too old)" >&2; exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian's python3 needs python3-venv for ensurepip.
    log "installing python3-venv (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$PY" -m venv .venv
  fi
fi

REQS=(torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 onnxruntime==1.31.1)
TOOLS=(numpy onnx safetensors "tritonclient[grpc]" grpcio-tools)
if ! .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as m
want = {"torch": "2.13.0", "onnxruntime": "1.31.1", "nvidia-cuda-runtime": "13.0.96"}
for k, v in want.items():
    assert m.version(k) == v, k
import numpy, onnx, safetensors, tritonclient.grpc, grpc_tools  # noqa
PY
then
  log "installing libtorch (PyPI torch, no CUDA wheels), ONNX Runtime and test tools into .venv (~600 MB download)"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps "${REQS[@]}"
  .venv/bin/pip install -q --disable-pip-version-check "${TOOLS[@]}"
fi

SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
EXPECTED_SP="$PWD/.venv/lib/python3.11/site-packages"
if [[ "$SP" != "$EXPECTED_SP" ]]; then
  # .cargo/config.toml points at python3.11's site-packages; say what to set otherwise.
  echo "note: .venv is not Python 3.11; export LIBTORCH=$SP/torch ORT_DYLIB_PATH=$SP/onnxruntime/capi/libonnxruntime.so.1.31.1" >&2
fi

if [[ ! -f models/repository/mlp_onnx/1/model.onnx || ! -f models/repository/linear_torch/1/weights.safetensors || ! -f models/reference/mlp.json ]]; then
  log "generating example models"
  .venv/bin/python scripts/make_models.py --out models
fi
if [[ $BENCH == 1 && ! -f models/bench/resnet18_onnx/1/model.onnx ]]; then
  log "generating the ResNet-18-sized benchmark models"
  .venv/bin/python scripts/make_models.py --out models --bench
fi
if [[ ! -f models/repository/mlp_torch/1/model.pt || ! -f models/repository/linear_torch/1/model.pt || ( $BENCH == 1 && ! -f models/bench/resnet18_torch/1/model.pt ) ]]; then
  log "exporting TorchScript models"
  cargo run -q -p troupe-backends --example export_torchscript -- models $([[ $BENCH == 1 ]] && echo --bench)
fi
log "setup done"
