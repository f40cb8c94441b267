#!/usr/bin/env python3
"""Reference embeddings for all-MiniLM-L6-v2, computed in plain numpy (float64).

Usage:
    python scripts/minilm_reference.py [--models models]

Reads <models>/reference/minilm_sentences.json (a JSON list of strings) and the HF
folder <models>/minilm/ (made by scripts/make_minilm.py), and writes
<models>/reference/minilm.json:

    {"model": "all-MiniLM-L6-v2", "max_length": 256,
     "sentences": [...], "token_counts": [...],   # tokens fed to the model, [CLS]/[SEP] included
     "truncated": [bool, ...],                    # the text had more than 256 tokens
     "input_ids": [[int, ...], ...],              # the ids fed to the model (unpadded)
     "embeddings": [[384 floats], ...],           # mean-pooled over the mask, L2-normalised
     "embeddings_unnormalized": [[384 floats], ...],
     "made_by": "..."}

As sentence-transformers does it: the `tokenizers` package loads tokenizer.json; the
tokenizer.json's own truncation (128) and fixed padding (128) are replaced by truncation
to max_seq_length = 256 tokens ([CLS]/[SEP] included) and padding to the longest text
of a batch. The BERT forward pass is written here from the paper's/HF's definition
(it shares no code with the ONNX graph of make_minilm.py and does not use
onnxruntime): embeddings (word + absolute position + token type, LayerNorm), 6 layers
of post-LN self-attention and GELU (erf) feed-forward, additive attention mask.
Pooling is the mean of last_hidden_state over attended tokens (sum / max(count, 1e-9));
normalisation is x / max(|x|, 1e-12), as modules.json lists a Normalize module.

All sentences are run as one padded batch and again one by one (no padding); the two
must agree to 1e-9, which checks the mask handling. Floats are rounded to 7
significant digits.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_LENGTH = 256
MADE_BY = "scripts/minilm_reference.py (numpy forward pass from model.safetensors)"


# ---------------------------------------------------------------- erf (numpy has none)

def erf(x):
    """erf in float64 to ~1e-13: Maclaurin series for |x| <= 3, continued fraction beyond."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    small = a <= 3.0
    # series: 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    z = a[small]
    term = z.copy()
    total = z.copy()
    z2 = z * z
    for n in range(1, 80):
        term = term * (-z2) / n
        total = total + term / (2 * n + 1)
    out[small] = total * (2.0 / math.sqrt(math.pi))
    # erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), z > 3
    z = a[~small]
    t = z.copy()
    for k in range(80, 0, -1):
        t = z + (k / 2.0) / t
    out[~small] = 1.0 - np.exp(-z * z) / math.sqrt(math.pi) / t
    return np.sign(x) * out


def _check_erf():
    grid = np.linspace(-8.0, 8.0, 4001)
    err = np.max(np.abs(erf(grid) - np.array([math.erf(v) for v in grid])))
    assert err < 1e-12, f"erf approximation off by {err}"


# ---------------------------------------------------------------- BERT in numpy

def load_weights(hf_dir):
    w = load_file(os.path.join(hf_dir, "model.safetensors"))
    if any(k.startswith("bert.") for k in w):
        w = {k[len("bert."):]: v for k, v in w.items() if k.startswith("bert.")}
    return {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}


def layer_norm(x, w, prefix, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]


def dense(x, w, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]  # torch Linear: [out, in]


def bert_forward(w, cfg, input_ids, attention_mask, token_type_ids):
    """last_hidden_state [b, s, hidden] (float64) for int arrays [b, s]."""
    b, s = input_ids.shape
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d = hidden // heads
    eps = cfg["layer_norm_eps"]
    x = (w["embeddings.word_embeddings.weight"][input_ids]
         + w["embeddings.position_embeddings.weight"][np.arange(s)][None]
         + w["embeddings.token_type_embeddings.weight"][token_type_ids])
    x = layer_norm(x, w, "embeddings.LayerNorm", eps)
    bias = (1.0 - attention_mask.astype(np.float64))[:, None, None, :] * np.finfo(np.float64).min

    def split(t):  # [b, s, hidden] -> [b, heads, s, d]
        return t.reshape(b, s, heads, d).transpose(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = split(dense(x, w, p + ".attention.self.query"))
        k = split(dense(x, w, p + ".attention.self.key"))
        v = split(dense(x, w, p + ".attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x = layer_norm(dense(ctx, w, p + ".attention.output.dense") + x, w,
                       p + ".attention.output.LayerNorm", eps)
        h = dense(x, w, p + ".intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(dense(h, w, p + ".output.dense") + x, w, p + ".output.LayerNorm", eps)
    return x


def mean_pool(h, mask):
    m = mask.astype(h.dtype)[:, :, None]
    return (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- tokenization

def load_tokenizer(hf_dir, max_length=MAX_LENGTH):
    """tokenizer.json with sentence-transformers' settings: truncate to max_length, pad
    to the longest text in a batch (the file itself says 128 / fixed 128)."""
    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
    return tok


def encode_batch(tok, texts):
    """int64 arrays input_ids, attention_mask, token_type_ids, each [len(texts), longest]."""
    encs = tok.encode_batch(list(texts))
    arr = lambda f: np.array([f(e) for e in encs], dtype=np.int64)
    return arr(lambda e: e.ids), arr(lambda e: e.attention_mask), arr(lambda e: e.type_ids)


# ---------------------------------------------------------------- main

def r7(values):
    return [float(f"{v:.7g}") for v in values]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="models", help="models folder (default: models)")
    args = ap.parse_args()
    hf = os.path.join(args.models, "minilm")
    ref_dir = os.path.join(args.models, "reference")
    sentences = json.load(open(os.path.join(ref_dir, "minilm_sentences.json"), encoding="utf-8"))
    assert isinstance(sentences, list) and all(isinstance(s, str) for s in sentences)

    _check_erf()
    cfg = json.load(open(os.path.join(hf, "config.json")))
    max_length = json.load(open(os.path.join(hf, "sentence_bert_config.json")))["max_seq_length"]
    assert max_length == MAX_LENGTH, max_length
    modules = json.load(open(os.path.join(hf, "modules.json")))
    normalize = any(m["type"].endswith(".Normalize") for m in modules)
    w = load_weights(hf)
    tok = load_tokenizer(hf, max_length)
    full = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    full.no_truncation()
    full.no_padding()

    ids, mask, tt = encode_batch(tok, sentences)
    pooled = mean_pool(bert_forward(w, cfg, ids, mask, tt), mask)
    # Again one by one, unpadded: must agree with the padded batch.
    for i, s in enumerate(sentences):
        one = encode_batch(tok, [s])
        p1 = mean_pool(bert_forward(w, cfg, *one), one[1])[0]
        diff = np.max(np.abs(p1 - pooled[i]))
        assert diff < 1e-9, f"sentence {i}: padded vs unpadded differ by {diff}"
    normed = l2_normalize(pooled)

    counts = [int(m.sum()) for m in mask]
    out = {
        "model": "all-MiniLM-L6-v2",
        "max_length": max_length,
        "normalize": normalize,
        "sentences": sentences,
        "token_counts": counts,
        "truncated": [len(full.encode(s).ids) > max_length for s in sentences],
        "input_ids": [[int(t) for t in row[:n]] for row, n in zip(ids, counts)],
        "embeddings": [r7(v) for v in (normed if normalize else pooled)],
        "embeddings_unnormalized": [r7(v) for v in pooled],
        "made_by": MADE_BY,
    }
    path = os.path.join(ref_dir, "minilm.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    by = {s: v for s, v in zip(sentences, normed)}
    sim = lambda a, b: float(by[a] @ by[b])
    if "A man is playing a guitar." in by and "A man plays the guitar." in by:
        print(f"cos(guitar, guitar') = {sim('A man is playing a guitar.', 'A man plays the guitar.'):.4f}")
        if "The stock market fell sharply today." in by:
            print(f"cos(guitar, stock)   = {sim('A man is playing a guitar.', 'The stock market fell sharply today.'):.4f}")
    print(f"wrote {path}: {len(sentences)} sentences, token counts {min(counts)}..{max(counts)}, "
          f"{sum(out['truncated'])} truncated, normalize={normalize}")


if __name__ == "__main__":
    sys.exit(main())
