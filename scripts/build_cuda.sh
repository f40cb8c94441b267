#!/usr/bin/env bash
# The CUDA build: `cargo build --release --features cuda` (candle's CUDA kernels, compiled by
# nvcc) with the PyPI CUDA 13.0 toolchain in .venv (`scripts/setup.sh --gpu` installs it and
# runs this). It goes to target/cuda, apart from the CPU build in target/release.
#
# Why apart: candle-core 0.11.1 turns on cudarc with `dynamic-linking`, so the binary links
# libcuda.so.1 (the driver), cuBLAS, cuRAND, NVRTC and the CUDA runtime at build time, and
# does not start where they are missing. The CPU build loads all of CUDA at run time and
# starts everywhere.
#
# The driver library is not on PyPI (it comes with the NVIDIA driver). To link without it,
# this writes a stub libcuda.so (every driver API entry point cudarc declares, as an empty
# function, soname libcuda.so.1) in target/cuda-sdk/lib/stubs, like the CUDA toolkit's own
# lib64/stubs/libcuda.so; the binary loads the real driver at run time. The stub dir is not
# in the binary's run path; the venv's CUDA libraries are.
#   scripts/build_cuda.sh                       # for sm_90 (H100/H200)
#   CUDA_COMPUTE_CAP=80 scripts/build_cuda.sh   # another GPU (nvidia-smi is not asked)
set -euo pipefail
cd "$(dirname "$0")/.."
CU=$PWD/.venv/lib/python3.11/site-packages/nvidia/cu13
if [[ ! -x $CU/bin/nvcc || ! -e $CU/lib/libcublas.so.13 ]]; then
  echo "build_cuda: no PyPI CUDA toolchain in .venv ($CU/bin/nvcc): run scripts/setup.sh --gpu" >&2
  exit 2
fi
command -v gcc >/dev/null || { echo "build_cuda: gcc is needed (nvcc's host compiler and the stub)" >&2; exit 2; }

SDK=$PWD/target/cuda-sdk
mkdir -p "$SDK/lib/stubs"
# nvcc finds its headers and cicc next to its real path, so bin/ and include/ are links.
for d in bin include nvvm; do ln -sfn "$CU/$d" "$SDK/$d"; done
# The linker wants unversioned names; the wheels ship only the versioned ones.
for l in cudart cublas cublasLt curand nvrtc; do
  real=$(ls "$CU/lib/lib$l.so."* 2>/dev/null | sort | head -1)
  [[ -n $real ]] || { echo "build_cuda: lib$l.so.* missing in $CU/lib (scripts/setup.sh --gpu)" >&2; exit 2; }
  ln -sfn "$real" "$SDK/lib/lib$l.so"
done

# The driver stub, from cudarc's own declarations (the exact names the binary links).
CUDARC=$(cargo metadata --format-version 1 --features cuda 2>/dev/null \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
SYS=$CUDARC/src/driver/sys/mod.rs
if [[ ! -f $SDK/lib/stubs/libcuda.so || $SYS -nt $SDK/lib/stubs/libcuda.so ]]; then
  grep -oE '^ +fn (cu[A-Za-z0-9_]+)\(' "$SYS" | sed -E 's/^ +fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
    | awk '{ printf "int %s(void) { return 34; }\n", $1 }' > "$SDK/lib/stubs/cuda_stub.c"  # 34: CUDA_ERROR_STUB_LIBRARY
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$SDK/lib/stubs/libcuda.so" "$SDK/lib/stubs/cuda_stub.c"
  echo "build_cuda: stub libcuda.so with $(wc -l < "$SDK/lib/stubs/cuda_stub.c") driver entry points"
fi

export CUDA_HOME=$SDK
export PATH=$SDK/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=$PWD/target/cuda
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath,$CU/lib"
nvcc --version | tail -2
cargo build --release --features cuda --bins "$@"
ls -1 "$CARGO_TARGET_DIR"/release/troupe-node
echo "build_cuda: needs at run time: $(ldd "$CARGO_TARGET_DIR/release/troupe-node" | grep -oE 'lib(cuda|cudart|cublas|cublasLt|curand|nvrtc)\.so[.0-9]*' | sort -u | tr '\n' ' ')"
