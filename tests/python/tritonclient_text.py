"""The stock Triton client sending text (np.object_ arrays of bytes) to Troupe's text
models, and reading embeddings (and a BYTES echo of the metadata) back.

usage: python tritonclient_text.py HOST:PORT MODEL[,MODEL...]
Exits non-zero with a message on the first thing that does not work.
"""
import json
import pathlib
import sys

import numpy as np
import tritonclient.grpc as grpcclient

url, models = sys.argv[1], sys.argv[2].split(",")
root = pathlib.Path(__file__).resolve().parents[2]
ref = json.load(open(root / "models/reference/minilm.json"))
sentences = ref["sentences"]
want = np.array(ref["embeddings"], dtype=np.float32)
client = grpcclient.InferenceServerClient(url=url)
for model in models:
    meta = client.get_model_metadata(model, as_json=True)
    assert meta["inputs"][0]["datatype"] == "BYTES", meta
    cfg = client.get_model_config(model, as_json=True)["config"]
    assert cfg["input"][0]["data_type"] == "TYPE_STRING", cfg
    # Text as tritonclient users send it: an object array of UTF-8 bytes, [batch, 1].
    batch = np.array([[s.encode("utf-8")] for s in sentences], dtype=np.object_)
    inp = grpcclient.InferInput("text", list(batch.shape), "BYTES")
    inp.set_data_from_numpy(batch)
    res = client.infer(model, [inp])
    got = res.as_numpy("embedding")
    assert got is not None and got.shape == want.shape, (model, None if got is None else got.shape)
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.9999, (model, float(cos.min()), int(cos.argmin()))
    truncated = res.get_response().parameters["truncated"].int64_param
    assert truncated == sum(ref["truncated"]), (model, truncated)
    # str objects work too (tritonclient encodes them).
    one = np.array([["A man is playing a guitar."]], dtype=np.object_)
    inp = grpcclient.InferInput("text", [1, 1], "BYTES")
    inp.set_data_from_numpy(one)
    e = client.infer(model, [inp]).as_numpy("embedding")[0]
    assert float(np.dot(e, want[0])) >= 0.9999, model
    print(f"{model}: ok, worst cosine {float(cos.min()):.6f} over {len(sentences)} sentences")
