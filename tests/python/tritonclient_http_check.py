"""The stock Triton HTTP client (PyPI tritonclient[http]) against a Troupe server, unchanged.

usage: python tritonclient_http_check.py HOST:PORT [MODEL ...]
With no models named, every model the server's repository index lists as READY.

For each model: model_ready, model_metadata, model_config, then the same input inferred
over gRPC (the reference), over HTTP with binary tensors (tritonclient's default), with
JSON tensors, and gzip-compressed both ways; the answers must agree. Exits non-zero with
a message on the first thing that does not work.
"""
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

url = sys.argv[1]
http = httpclient.InferenceServerClient(url=url)
grpc = grpcclient.InferenceServerClient(url=url)
assert http.is_server_live(), "server_live"
assert http.is_server_ready(), "server_ready"
meta = http.get_server_metadata()
assert meta["name"] in ("troupe", "troupe-router"), meta
models = sys.argv[2:] or [m["name"] for m in http.get_model_repository_index() if m.get("state") == "READY"]
assert models, "no model is READY"

NP = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
      "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_, "BYTES": np.object_}
rng = np.random.default_rng(7)


def example(t):
    shape = [1 if i == 0 and d < 0 else (4 if d < 0 else d) for i, d in enumerate(t["shape"])]
    if t["datatype"] == "BYTES":
        words = ["the cat sat on the mat", "a dog runs", "serving models"]
        return np.array([words[i % 3].encode() for i in range(int(np.prod(shape)))], dtype=np.object_).reshape(shape)
    if t["datatype"].startswith("FP"):
        return rng.random(shape).astype(NP[t["datatype"]])
    return np.zeros(shape, dtype=NP[t["datatype"]])


def infer(client, mod, model, inputs, outputs, **kw):
    ins = []
    for name, dtype, x in inputs:
        i = mod.InferInput(name, list(x.shape), dtype)
        if mod is httpclient:
            i.set_data_from_numpy(x, binary_data=kw.get("binary", True))
        else:
            i.set_data_from_numpy(x)
        ins.append(i)
    if mod is httpclient:
        outs = [mod.InferRequestedOutput(o, binary_data=kw.get("binary", True)) for o in outputs]
        args = {k: v for k, v in kw.items() if k != "binary"}
        return client.infer(model, ins, outputs=outs, **args)
    return client.infer(model, ins, outputs=[mod.InferRequestedOutput(o) for o in outputs])


def same(a, b, what):
    assert a is not None and b is not None, what
    assert a.shape == b.shape, (what, a.shape, b.shape)
    if a.dtype == np.object_:
        assert list(a.ravel()) == list(b.ravel()), what
    else:
        assert np.allclose(a.astype(np.float64), b.astype(np.float64), atol=1e-5, rtol=1e-5), (what, a, b)


for model in models:
    assert http.is_model_ready(model), f"model_ready {model}"
    m = http.get_model_metadata(model)
    assert m["name"] == model, m
    cfg = http.get_model_config(model)
    assert cfg["name"] == model, cfg
    assert len(cfg["input"]) == len(m["inputs"]), (cfg, m)
    inputs = [(t["name"], t["datatype"], example(t)) for t in m["inputs"]]
    outputs = [t["name"] for t in m["outputs"]]
    want = infer(grpc, grpcclient, model, inputs, outputs)
    for label, kw in [("binary", {}), ("json", {"binary": False}),
                      ("gzip", {"request_compression_algorithm": "gzip", "response_compression_algorithm": "gzip"}),
                      ("deflate", {"binary": False, "request_compression_algorithm": "deflate",
                                   "response_compression_algorithm": "deflate"})]:
        got = infer(http, httpclient, model, inputs, outputs, **kw)
        for o in outputs:
            same(got.as_numpy(o), want.as_numpy(o), f"{model} {label} {o}")
    print(f"{model}: ok ({len(inputs)} inputs, {len(outputs)} outputs, binary/json/gzip/deflate)")

try:
    http.get_model_metadata("no_such_model")
    raise SystemExit("metadata of an unknown model succeeded")
except httpclient.InferenceServerException as e:
    assert e.status() == "404" or "not" in e.message(), (e.status(), e.message())
stats = http.get_inference_statistics(models[0])
s = stats["model_stats"][0]["inference_stats"]
assert s["compute_input"]["count"] == s["compute_infer"]["count"] == s["compute_output"]["count"] > 0, s
print("tritonclient.http: all checks passed")
