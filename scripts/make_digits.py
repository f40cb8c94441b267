#!/usr/bin/env python3
"""A real classifier for the monitoring loop: scikit-learn's bundled digits data set (8x8
images of handwritten digits, 1,797 rows, 10 classes; nothing is downloaded), an
MLPClassifier (64 -> 32 relu -> 10 softmax) trained on 1,200 rows with a fixed seed, served
on two backends with the same weights:

    <out>/repository/digits_onnx/1/model.onnx          exported by skl2onnx (zipmap off):
                                                       outputs `label` INT64 [n] and
                                                       `probabilities` FP32 [n, 10]
    <out>/repository/digits_candle/1/model.safetensors  the same layers in Troupe's candle
    <out>/repository/digits_candle/1/model.json         `mlp` layout (relu, softmax)
    <out>/testing/digits/holdout.json                   the 597 held-out rows and labels,
                                                       with scikit-learn's own
                                                       probabilities for them

Usage: python scripts/make_digits.py --out models
"""

import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

SEED = 0
TRAIN = 1200


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models")
    out = ap.parse_args().out

    digits = load_digits()
    # Pixels 0..16 scaled to 0..1: the model takes what a client sends.
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    train, hold = order[:TRAIN], order[TRAIN:]

    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=SEED)
    clf.fit(x[train], y[train])
    acc = clf.score(x[hold], y[hold])

    onnx_dir = os.path.join(out, "repository", "digits_onnx", "1")
    os.makedirs(onnx_dir, exist_ok=True)
    onx = to_onnx(
        clf,
        x[:1],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # A variable batch dimension, named as the repository's configs expect.
    for t in list(onx.graph.input) + list(onx.graph.output):
        t.type.tensor_type.shape.dim[0].dim_param = "batch"
    with open(os.path.join(onnx_dir, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())

    candle_dir = os.path.join(out, "repository", "digits_candle", "1")
    os.makedirs(candle_dir, exist_ok=True)
    tensors = {}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        # torch Linear layout: weight [out, in].
        tensors[f"layers.{i}.weight"] = np.ascontiguousarray(w.T.astype(np.float32))
        tensors[f"layers.{i}.bias"] = b.astype(np.float32)
    save_file(tensors, os.path.join(candle_dir, "model.safetensors"))
    sizes = [clf.coefs_[0].shape[0]] + [w.shape[1] for w in clf.coefs_]
    with open(os.path.join(candle_dir, "model.json"), "w") as f:
        json.dump({"architecture": "mlp", "sizes": sizes, "activations": ["relu", "softmax"]}, f)

    test_dir = os.path.join(out, "testing", "digits")
    os.makedirs(test_dir, exist_ok=True)
    with open(os.path.join(test_dir, "holdout.json"), "w") as f:
        json.dump(
            {
                "x": x[hold].round(6).tolist(),
                "y": y[hold].tolist(),
                "probabilities": clf.predict_proba(x[hold]).round(7).tolist(),
            },
            f,
        )
    print(f"make_digits: MLP 64-32-10 trained on {TRAIN} rows, held-out accuracy {acc:.4f}; "
          f"wrote {onnx_dir}, {candle_dir}, {test_dir}/holdout.json")


if __name__ == "__main__":
    main()
