#!/usr/bin/env python3
"""Deterministic generator of Troupe's example and benchmark models.

Usage:
    python scripts/make_models.py --out models [--bench]

Always writes the small example models (committed to git):

    <out>/repository/mlp_onnx/      MLP 16 -> 32 -> 4 as ONNX
    <out>/repository/mlp_candle/    same weights as safetensors + model.json
    <out>/repository/mlp_torch/     config.toml + 1/weights.safetensors
                                    (1/model.pt is produced later by a Rust program)
    <out>/repository/linear_onnx/   y = x @ w + b, 8 -> 1, as ONNX
    <out>/repository/linear_candle/ same linear model for the candle backend
    <out>/reference/mlp.json        reference inputs/outputs for the MLP
    <out>/reference/linear.json     weights and reference inputs/outputs for the linear model

With --bench it also writes (large, ignored by git):

    <out>/bench/resnet18_onnx/      ResNet-18-shaped CNN with random weights as ONNX

Only numpy, onnx and safetensors are needed. All randomness comes from
numpy Generators with fixed seeds, so reruns produce byte-identical files.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

OPSET = 17
IR_VERSION = 8
PRODUCER = "troupe-make_models"

MLP_SIZES = [16, 32, 4]
MLP_ACTIVATIONS = ["relu", "none"]
MLP_SEED = 42
MLP_INPUT_SEED = 7

LINEAR_IN = 8
LINEAR_SEED = 43
LINEAR_INPUT_SEED = 8

RESNET_SEED = 1


# ---------------------------------------------------------------- helpers

def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def floats(a):
    """Flatten a float32 array to a list of python floats (exact float32 values)."""
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def config_toml(backend, in_dims, out_dims, max_batch_size=64, memory_mb=64,
                input_name="input", output_name="output"):
    def dims(d):
        return "[" + ", ".join(str(x) for x in d) + "]"

    def line(text, comment):
        return text.ljust(25) + " # " + comment + "\n"

    return (
        "# Troupe model config: see docs/models.md\n"
        + line(f'backend = "{backend}"', "torch | onnx | candle")
        + line(f"max_batch_size = {max_batch_size}", "> 0: dim 0 is a variable batch dim, not listed in dims")
        + "instances = 1\n"
        'device = "cpu"            # cpu | gpu | any\n'
        "\n"
        "[[inputs]]\n"
        f'name = "{input_name}"\n'
        'data_type = "FP32"\n'
        f"dims = {dims(in_dims)}\n"
        "\n"
        "[[outputs]]\n"
        f'name = "{output_name}"\n'
        'data_type = "FP32"\n'
        f"dims = {dims(out_dims)}\n"
        "\n"
        "[resources]\n"
        "cpu = 1.0\n"
        f"memory_mb = {memory_mb}\n"
        "gpu_memory_mb = 0\n"
    )


def save_safetensors(tensors, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path)
    os.chmod(path, 0o644)  # safetensors creates 0600 files


def save_onnx(model, path):
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Everything (initializers included) stays in the single .onnx file.
    onnx.save_model(model, path, save_as_external_data=False)
    # Re-check from disk.
    onnx.checker.check_model(path, full_check=True)


def make_model(graph, doc):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    return model


def init(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name)


# ---------------------------------------------------------------- MLP

def mlp_weights():
    rng = np.random.default_rng(MLP_SEED)
    tensors = {}
    for i, (n_in, n_out) in enumerate(zip(MLP_SIZES[:-1], MLP_SIZES[1:])):
        # torch Linear layout: weight [out, in], y = x @ W.T + b
        tensors[f"layers.{i}.weight"] = rng.normal(0.0, 0.5, size=(n_out, n_in)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = rng.normal(0.0, 0.1, size=(n_out,)).astype(np.float32)
    return tensors


def mlp_forward(tensors, x, activations):
    h = np.asarray(x, dtype=np.float32)
    for i, act in enumerate(activations):
        w = tensors[f"layers.{i}.weight"]
        b = tensors[f"layers.{i}.bias"]
        h = (h @ w.T + b).astype(np.float32)
        if act == "relu":
            h = np.maximum(h, np.float32(0.0))
        elif act != "none":
            raise ValueError(act)
    return h


def mlp_onnx(tensors):
    n_in, n_hidden, n_out = MLP_SIZES
    nodes = [
        helper.make_node("Gemm", ["input", "layers.0.weight", "layers.0.bias"], ["hidden"],
                         name="fc0", transB=1),
        helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu0"),
        helper.make_node("Gemm", ["hidden_relu", "layers.1.weight", "layers.1.bias"], ["output"],
                         name="fc1", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "troupe_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", n_out])],
        initializer=[init(k, tensors[k]) for k in
                     ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]],
    )
    return make_model(graph, "Troupe example MLP 16 -> 32 -> 4 (ReLU), generated by scripts/make_models.py")


def write_mlp(out):
    repo = os.path.join(out, "repository")
    tensors = mlp_weights()
    n_in, _, n_out = MLP_SIZES

    # 1. ONNX
    write_text(os.path.join(repo, "mlp_onnx", "config.toml"), config_toml("onnx", [n_in], [n_out]))
    save_onnx(mlp_onnx(tensors), os.path.join(repo, "mlp_onnx", "1", "model.onnx"))

    # 2. candle
    d = os.path.join(repo, "mlp_candle")
    write_text(os.path.join(d, "config.toml"), config_toml("candle", [n_in], [n_out]))
    save_safetensors(tensors, os.path.join(d, "1", "model.safetensors"))
    write_json(os.path.join(d, "1", "model.json"),
               {"architecture": "mlp", "sizes": MLP_SIZES, "activations": MLP_ACTIVATIONS})

    # 3. torch: config + source weights; 1/model.pt is produced later by a Rust program.
    d = os.path.join(repo, "mlp_torch")
    write_text(os.path.join(d, "config.toml"), config_toml("torch", [n_in], [n_out]))
    save_safetensors(tensors, os.path.join(d, "1", "weights.safetensors"))

    # 4. reference cases (batch 3, batch 1)
    rng = np.random.default_rng(MLP_INPUT_SEED)
    cases = []
    for batch in (3, 1):
        x = rng.normal(0.0, 1.0, size=(batch, n_in)).astype(np.float32)
        y = mlp_forward(tensors, x, MLP_ACTIVATIONS)
        cases.append({
            "input": {"shape": list(x.shape), "data": floats(x)},
            "output": {"shape": list(y.shape), "data": floats(y)},
        })
    write_json(os.path.join(out, "reference", "mlp.json"), {"cases": cases})


# ---------------------------------------------------------------- linear

def write_linear(out):
    repo = os.path.join(out, "repository")
    rng = np.random.default_rng(LINEAR_SEED)
    w = rng.normal(0.0, 0.5, size=(LINEAR_IN, 1)).astype(np.float32)  # y = x @ w + b
    b = rng.normal(0.0, 0.1, size=(1,)).astype(np.float32)

    # ONNX: MatMul + Add
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "b"], ["output"], name="add"),
        ],
        "troupe_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", LINEAR_IN])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        initializer=[init("w", w), init("b", b)],
    )
    model = make_model(graph, "Troupe linear model y = x @ w + b (8 -> 1), generated by scripts/make_models.py")
    write_text(os.path.join(repo, "linear_onnx", "config.toml"), config_toml("onnx", [LINEAR_IN], [1]))
    save_onnx(model, os.path.join(repo, "linear_onnx", "1", "model.onnx"))

    # candle: mlp with sizes [8, 1], torch Linear layout weight [1, 8]
    tensors = {"layers.0.weight": np.ascontiguousarray(w.T), "layers.0.bias": b.copy()}
    d = os.path.join(repo, "linear_candle")
    write_text(os.path.join(d, "config.toml"), config_toml("candle", [LINEAR_IN], [1]))
    save_safetensors(tensors, os.path.join(d, "1", "model.safetensors"))
    write_json(os.path.join(d, "1", "model.json"),
               {"architecture": "mlp", "sizes": [LINEAR_IN, 1], "activations": ["none"]})

    # torch: config + source weights; 1/model.pt is traced by export_torchscript (Rust).
    d = os.path.join(repo, "linear_torch")
    write_text(os.path.join(d, "config.toml"), config_toml("torch", [LINEAR_IN], [1]))
    save_safetensors(tensors, os.path.join(d, "1", "weights.safetensors"))

    rng = np.random.default_rng(LINEAR_INPUT_SEED)
    cases = []
    for batch in (3, 1):
        x = rng.normal(0.0, 1.0, size=(batch, LINEAR_IN)).astype(np.float32)
        y = (x @ w + b).astype(np.float32)
        cases.append({
            "input": {"shape": list(x.shape), "data": floats(x)},
            "output": {"shape": list(y.shape), "data": floats(y)},
        })
    write_json(os.path.join(out, "reference", "linear.json"),
               {"w": floats(w), "b": float(b[0]), "cases": cases})


# ---------------------------------------------------------------- ResNet-18

class ResNetBuilder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []

    def _he(self, shape):
        fan_in = int(np.prod(shape[1:]))
        return self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)

    def conv_bn(self, x, name, c_in, c_out, k, stride, relu):
        pad = k // 2
        w = f"{name}.weight"
        self.inits.append(init(w, self._he((c_out, c_in, k, k))))
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [f"{name}.out"], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad]))
        bn = f"{name}.bn"
        # Inference-mode BatchNormalization with (near) identity statistics.
        self.inits += [
            init(f"{bn}.scale", np.ones(c_out, np.float32)),
            init(f"{bn}.bias", np.zeros(c_out, np.float32)),
            init(f"{bn}.mean", np.zeros(c_out, np.float32)),
            init(f"{bn}.var", np.ones(c_out, np.float32)),
        ]
        self.nodes.append(helper.make_node(
            "BatchNormalization",
            [f"{name}.out", f"{bn}.scale", f"{bn}.bias", f"{bn}.mean", f"{bn}.var"],
            [f"{bn}.out"], name=bn, epsilon=1e-5))
        y = f"{bn}.out"
        if relu:
            self.nodes.append(helper.make_node("Relu", [y], [f"{name}.relu"], name=f"{name}.relu"))
            y = f"{name}.relu"
        return y

    def basic_block(self, x, name, c_in, c_out, stride):
        y = self.conv_bn(x, f"{name}.conv1", c_in, c_out, 3, stride, relu=True)
        y = self.conv_bn(y, f"{name}.conv2", c_out, c_out, 3, 1, relu=False)
        if stride != 1 or c_in != c_out:
            x = self.conv_bn(x, f"{name}.downsample", c_in, c_out, 1, stride, relu=False)
        self.nodes.append(helper.make_node("Add", [y, x], [f"{name}.add"], name=f"{name}.add"))
        self.nodes.append(helper.make_node("Relu", [f"{name}.add"], [f"{name}.out"], name=f"{name}.relu"))
        return f"{name}.out"

    def build(self):
        x = self.conv_bn("input", "conv1", 3, 64, 7, 2, relu=True)
        self.nodes.append(helper.make_node(
            "MaxPool", [x], ["maxpool.out"], name="maxpool",
            kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        x = "maxpool.out"
        c_in = 64
        for stage, c_out in enumerate([64, 128, 256, 512], start=1):
            for block in range(2):
                stride = 2 if (stage > 1 and block == 0) else 1
                x = self.basic_block(x, f"layer{stage}.{block}", c_in, c_out, stride)
                c_in = c_out
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["avgpool.out"], name="avgpool"))
        self.nodes.append(helper.make_node("Flatten", ["avgpool.out"], ["flatten.out"], name="flatten", axis=1))
        fc_w = self.rng.normal(0.0, np.sqrt(1.0 / 512), size=(1000, 512)).astype(np.float32)
        fc_b = np.zeros(1000, np.float32)
        self.inits += [init("fc.weight", fc_w), init("fc.bias", fc_b)]
        self.nodes.append(helper.make_node(
            "Gemm", ["flatten.out", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1))
        graph = helper.make_graph(
            self.nodes,
            "troupe_resnet18",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1000])],
            initializer=self.inits,
        )
        return make_model(graph, "ResNet-18-shaped CNN with random He-normal weights (benchmark only), "
                                 "generated by scripts/make_models.py")


def write_resnet18(out):
    d = os.path.join(out, "bench", "resnet18_onnx")
    model = ResNetBuilder(RESNET_SEED).build()
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    write_text(os.path.join(d, "config.toml"),
               config_toml("onnx", [3, 224, 224], [1000], max_batch_size=32, memory_mb=256))
    path = os.path.join(d, "1", "model.onnx")
    save_onnx(model, path)
    print(f"resnet18_onnx: {len(model.graph.node)} nodes, {n_params} parameters, "
          f"{os.path.getsize(path)} bytes")
    return path


def selfcheck_resnet18(path):
    try:
        import onnxruntime as ort  # optional
    except ImportError:
        print("onnxruntime not importable; skipping resnet18 self-check")
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    sess.run(None, {"input": x})  # warm-up
    t0 = time.perf_counter()
    (y,) = sess.run(None, {"input": x})
    dt = time.perf_counter() - t0
    print(f"resnet18_onnx self-check: output shape {list(y.shape)}, finite={bool(np.isfinite(y).all())}, "
          f"batch-1 inference {dt * 1000:.1f} ms (onnxruntime {ort.__version__}, CPU)")


# ---------------------------------------------------------------- main

# ---------------------------------------------------------------- slow identity (tests)

SLOW_DIM, SLOW_LAYERS = 256, 2000


def write_slow(out):
    """A deliberately slow model for queueing tests: y = x through SLOW_LAYERS MatMuls
    with the identity matrix (exact, so answers are checkable), ~260 MFLOP per row."""
    eye = init("eye", np.eye(SLOW_DIM, dtype=np.float32))
    nodes, prev = [], "input"
    for i in range(SLOW_LAYERS):
        name = "output" if i == SLOW_LAYERS - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "eye"], [name]))
        prev = name
    graph = helper.make_graph(
        nodes, "slow_identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", SLOW_DIM])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", SLOW_DIM])],
        initializer=[eye],
    )
    d = os.path.join(out, "testing", "slow_onnx")
    save_onnx(make_model(graph, "slow identity for queueing tests"), os.path.join(d, "1", "model.onnx"))
    write_text(os.path.join(d, "config.toml"), config_toml("onnx", [SLOW_DIM], [SLOW_DIM], max_batch_size=8))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="models", help="output directory (default: models)")
    p.add_argument("--bench", action="store_true",
                   help="also write the large benchmark models to <out>/bench/ (not committed)")
    args = p.parse_args(argv)

    write_mlp(args.out)
    write_linear(args.out)
    write_slow(args.out)
    print(f"wrote example models and references under {args.out}/repository and {args.out}/reference")
    if args.bench:
        path = write_resnet18(args.out)
        selfcheck_resnet18(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
