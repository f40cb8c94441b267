"""The stock Triton client (PyPI tritonclient[grpc]) against a Troupe node, unchanged.

usage: python tritonclient_check.py HOST:PORT REFERENCE_JSON
Exits non-zero with a message on the first thing that does not work.
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

url, ref_path = sys.argv[1], sys.argv[2]
client = grpcclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server_live"
assert client.is_server_ready(), "server_ready"
ref = json.load(open(ref_path))
case = ref["cases"][0]
x = np.array(case["input"]["data"], dtype=np.float32).reshape(case["input"]["shape"])
want = np.array(case["output"]["data"], dtype=np.float32).reshape(case["output"]["shape"])
for model in ["mlp_onnx", "mlp_torch", "mlp_candle"]:
    assert client.is_model_ready(model), f"model_ready {model}"
    meta = client.get_model_metadata(model, as_json=True)
    assert meta["name"] == model, meta
    assert meta["inputs"][0]["name"] == "input" and meta["inputs"][0]["datatype"] == "FP32", meta
    assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 16], meta
    cfg = client.get_model_config(model, as_json=True)["config"]
    assert cfg["name"] == model, cfg
    assert int(cfg["max_batch_size"]) == 64, cfg
    assert cfg["input"][0]["data_type"] == "TYPE_FP32", cfg
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("output")])
    got = res.as_numpy("output")
    assert got is not None and got.shape == want.shape, (model, None if got is None else got.shape)
    assert np.allclose(got, want, atol=1e-5), (model, got, want)
    print(f"{model}: ok, max abs error {float(np.max(np.abs(got - want))):.2e}")
assert not client.is_model_ready("no_such_model")
try:
    client.infer("no_such_model", [inp])
    raise SystemExit("infer on an unknown model succeeded")
except grpcclient.InferenceServerException as e:
    assert "NOT_FOUND" in str(e.status()) or "not" in e.message(), e
stats = client.get_inference_statistics("mlp_onnx", as_json=True)
assert int(stats["model_stats"][0]["inference_count"]) >= 3, stats
print("tritonclient: all checks passed")
