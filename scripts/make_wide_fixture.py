"""Writes models/testing/wide_onnx: an image-sized input (150,528 features, as a
1x3x224x224 picture flattened) and nearly free compute, so what an explanation of it
holds in memory is its perturbed inputs alone (tests/hardening.rs measures the node's
resident memory during one). y = [sum of x, max of x], per row.

usage: python scripts/make_wide_fixture.py   (run from the repository root)
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 3 * 224 * 224
out = pathlib.Path("models/testing/wide_onnx")
(out / "1").mkdir(parents=True, exist_ok=True)
graph = helper.make_graph(
    [
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
        helper.make_node("ReduceMax", ["x"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["s", "m"], ["y"], axis=1),
    ],
    "wide",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out / "1" / "model.onnx")
print(f"wrote {out}/1/model.onnx")
