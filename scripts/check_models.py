#!/usr/bin/env python3
"""Self-check of the models written by scripts/make_models.py.

Usage:
    python scripts/check_models.py --models models [--bench]

Needs numpy, onnx, safetensors and onnxruntime. Checks that:
  * every expected file exists and every config.toml parses;
  * onnx.checker passes on every model.onnx;
  * onnxruntime reproduces models/reference/{mlp,linear}.json within 1e-5;
  * the safetensors weights (candle/torch) give the same outputs in numpy and
    match the ONNX initializers and the weights listed in linear.json.
Exits non-zero on the first failure.
"""

import argparse
import json
import os
import sys
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from safetensors.numpy import load_file

TOL = 1e-5


def ok(msg):
    print(f"ok   {msg}")


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def run_onnx(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x})[0]


def mlp_numpy(tensors, activations, x):
    h = x
    for i, act in enumerate(activations):
        h = h @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
        if act == "relu":
            h = np.maximum(h, 0)
    return h.astype(np.float32)


def check_cases(label, ref, fn):
    for i, case in enumerate(ref["cases"]):
        x = np.array(case["input"]["data"], np.float32).reshape(case["input"]["shape"])
        want = np.array(case["output"]["data"], np.float32).reshape(case["output"]["shape"])
        got = fn(x)
        if got.shape != want.shape:
            fail(f"{label} case {i}: shape {got.shape} != {want.shape}")
        err = float(np.max(np.abs(got - want)))
        if err > TOL:
            fail(f"{label} case {i}: max abs error {err:.3g} > {TOL}")
        ok(f"{label} case {i} (batch {x.shape[0]}): max abs error {err:.3g}")


def check_config(path, backend, in_dims, out_dims):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    if "sha256" in open(path).read():
        fail(f"{path}: contains sha256")
    if (cfg["backend"], cfg["inputs"][0]["dims"], cfg["outputs"][0]["dims"]) != (backend, in_dims, out_dims):
        fail(f"{path}: unexpected contents {cfg}")
    ok(f"{path} parses (backend={backend}, max_batch_size={cfg['max_batch_size']})")


def check_onnx(path):
    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path)
    if m.ir_version != 8 or [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] != [17]:
        fail(f"{path}: ir_version/opset")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
        fail(f"{path}: external data")
    ok(f"{path}: onnx.checker passes, ir 8, opset 17, {os.path.getsize(path)} bytes")
    return m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="models")
    p.add_argument("--bench", action="store_true")
    a = p.parse_args()
    repo = os.path.join(a.models, "repository")
    r = lambda *xs: os.path.join(repo, *xs)

    # MLP
    check_config(r("mlp_onnx", "config.toml"), "onnx", [16], [4])
    check_config(r("mlp_candle", "config.toml"), "candle", [16], [4])
    check_config(r("mlp_torch", "config.toml"), "torch", [16], [4])
    m = check_onnx(r("mlp_onnx", "1", "model.onnx"))
    ref = json.load(open(os.path.join(a.models, "reference", "mlp.json")))
    check_cases("mlp_onnx (onnxruntime)", ref, lambda x: run_onnx(r("mlp_onnx", "1", "model.onnx"), x))
    st = load_file(r("mlp_candle", "1", "model.safetensors"))
    meta = json.load(open(r("mlp_candle", "1", "model.json")))
    if meta != {"architecture": "mlp", "sizes": [16, 32, 4], "activations": ["relu", "none"]}:
        fail(f"mlp_candle model.json: {meta}")
    shapes = {k: list(v.shape) for k, v in st.items()}
    if shapes != {"layers.0.weight": [32, 16], "layers.0.bias": [32], "layers.1.weight": [4, 32], "layers.1.bias": [4]}:
        fail(f"mlp_candle tensors: {shapes}")
    ok(f"mlp_candle safetensors tensors {shapes}")
    for init in m.graph.initializer:
        if not np.array_equal(numpy_helper.to_array(init), st[init.name]):
            fail(f"ONNX initializer {init.name} differs from safetensors")
    ok("mlp_onnx initializers == mlp_candle safetensors")
    st_t = load_file(r("mlp_torch", "1", "weights.safetensors"))
    if st_t.keys() != st.keys() or not all(np.array_equal(st[k], st_t[k]) for k in st):
        fail("mlp_torch weights.safetensors differs from mlp_candle")
    ok("mlp_torch/1/weights.safetensors == mlp_candle/1/model.safetensors")
    check_cases("mlp_candle (numpy)", ref, lambda x: mlp_numpy(st, meta["activations"], x))

    # Linear
    check_config(r("linear_onnx", "config.toml"), "onnx", [8], [1])
    check_config(r("linear_candle", "config.toml"), "candle", [8], [1])
    check_onnx(r("linear_onnx", "1", "model.onnx"))
    ref = json.load(open(os.path.join(a.models, "reference", "linear.json")))
    check_cases("linear_onnx (onnxruntime)", ref, lambda x: run_onnx(r("linear_onnx", "1", "model.onnx"), x))
    w = np.array(ref["w"], np.float32).reshape(8, 1)
    b = np.float32(ref["b"])
    check_cases("linear.json w/b (numpy)", ref, lambda x: (x @ w + b).astype(np.float32))
    st = load_file(r("linear_candle", "1", "model.safetensors"))
    meta = json.load(open(r("linear_candle", "1", "model.json")))
    if meta != {"architecture": "mlp", "sizes": [8, 1], "activations": ["none"]}:
        fail(f"linear_candle model.json: {meta}")
    if list(st["layers.0.weight"].shape) != [1, 8] or list(st["layers.0.bias"].shape) != [1]:
        fail("linear_candle tensor shapes")
    if not (np.array_equal(st["layers.0.weight"], w.T) and st["layers.0.bias"][0] == b):
        fail("linear_candle weights differ from linear.json")
    ok("linear_candle safetensors == linear.json w/b")
    check_cases("linear_candle (numpy)", ref, lambda x: mlp_numpy(st, meta["activations"], x))

    if a.bench:
        d = os.path.join(a.models, "bench", "resnet18_onnx")
        check_config(os.path.join(d, "config.toml"), "onnx", [3, 224, 224], [1000])
        path = os.path.join(d, "1", "model.onnx")
        check_onnx(path)
        for batch in (1, 4):
            x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
            y = run_onnx(path, x)
            if list(y.shape) != [batch, 1000] or not np.isfinite(y).all():
                fail(f"resnet18 batch {batch}: shape {y.shape}")
            ok(f"resnet18_onnx batch {batch}: output {list(y.shape)}, finite, std {float(y.std()):.3g}")
    print("all checks passed")


if __name__ == "__main__":
    main()
