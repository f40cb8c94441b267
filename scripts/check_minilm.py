#!/usr/bin/env python3
"""Checks the MiniLM ONNX model against the numpy reference.

Usage:
    python scripts/check_minilm.py [--models models] [--min-cos 0.9999]

Loads <models>/repository/minilm_onnx/1/model.onnx with onnxruntime (CPU), tokenizes
<models>/reference/minilm.json's sentences with the `tokenizers` package (truncation to
256, padding to the longest text of each batch), runs them in batches of 1, 3 and all
at once, mean-pools over the mask, L2-normalises, and compares each embedding with the
reference (scripts/minilm_reference.py) by cosine. Also checks that the token ids match
the reference's, and prints the max |diff| of last_hidden_state between onnxruntime and
the numpy forward pass for one sentence. Exits 1 when any cosine is below --min-cos.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm_reference as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="models", help="models folder (default: models)")
    ap.add_argument("--min-cos", type=float, default=0.9999)
    args = ap.parse_args()
    hf = os.path.join(args.models, "minilm")
    onnx_dir = os.path.join(args.models, "repository", "minilm_onnx", "1")
    data = json.load(open(os.path.join(args.models, "reference", "minilm.json"), encoding="utf-8"))
    sentences = data["sentences"]
    expected = np.array(data["embeddings"], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    tok = ref.load_tokenizer(onnx_dir, data["max_length"])  # the tokenizer.json served with the model
    sess = ort.InferenceSession(os.path.join(onnx_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert sorted(names) == ["attention_mask", "input_ids", "token_type_ids"], names

    def run(texts):
        ids, mask, tt = ref.encode_batch(tok, texts)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
        (h,) = sess.run(["last_hidden_state"], feed)
        return ids, mask, tt, h

    failures, worst = 0, (2.0, None, None)
    for bs in (1, 3, len(sentences)):
        for start in range(0, len(sentences), bs):
            texts = sentences[start:start + bs]
            ids, mask, _, h = run(texts)
            emb = ref.l2_normalize(ref.mean_pool(h.astype(np.float64), mask))
            for j, s in enumerate(texts):
                i = start + j
                n = int(mask[j].sum())
                if [int(t) for t in ids[j, :n]] != data["input_ids"][i]:
                    print(f"batch {bs}: token ids differ for sentence {i} {s[:40]!r}")
                    failures += 1
                cos = float(emb[j] @ expected[i])
                if cos < worst[0]:
                    worst = (cos, bs, i)
                if cos < args.min_cos:
                    print(f"batch {bs}: sentence {i} {s[:40]!r}: cosine {cos:.7f} < {args.min_cos}")
                    failures += 1

    # last_hidden_state of one sentence, onnxruntime (float32) vs numpy (float64).
    probe = "A man is playing a guitar."
    ids, mask, tt, h = run([probe])
    cfg = json.load(open(os.path.join(hf, "config.json")))
    h_np = ref.bert_forward(ref.load_weights(hf), cfg, ids, mask, tt)
    print(f"last_hidden_state {probe!r} {list(h.shape)}: max |onnx - numpy| = "
          f"{np.max(np.abs(h - h_np)):.3e} (max |h| = {np.max(np.abs(h_np)):.3f})")

    cos, bs, i = worst
    print(f"worst cosine {cos:.9f} (1 - cos = {1 - cos:.1e}; batch size {bs}, sentence {i}: {sentences[i][:40]!r}); "
          f"{len(sentences)} sentences x batch sizes 1, 3, {len(sentences)}")
    if failures:
        print(f"FAILED: {failures} mismatches")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
