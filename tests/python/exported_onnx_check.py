"""An ONNX model exported by torch (not written by this project) served by Troupe from a
folder with nothing but model.onnx: its auto-completed config, and its outputs against
ONNX Runtime run here, in process, on the same file.

usage: python exported_onnx_check.py HOST:PORT MODEL ONNX_FILE
"""
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

url, model, path = sys.argv[1:4]
client = grpcclient.InferenceServerClient(url=url)
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
cfg = client.get_model_config(model, as_json=True)["config"]
meta = client.get_model_metadata(model, as_json=True)
want_in = {i.name: i for i in sess.get_inputs()}
got_in = {i["name"]: i for i in meta["inputs"]}
assert set(got_in) == set(want_in), (got_in, want_in)
for name in want_in:
    assert got_in[name]["datatype"] == "INT64", got_in[name]
    assert [int(d) for d in got_in[name]["shape"]] == [-1, -1], got_in[name]
outs = [o.name for o in sess.get_outputs()]
assert [o["name"] for o in meta["outputs"]] == outs, (meta["outputs"], outs)
assert int(cfg.get("max_batch_size", 0)) > 0, cfg
rng = np.random.default_rng(7)
for batch, seq in [(1, 5), (3, 11), (2, 40)]:
    ids = rng.integers(1000, 20000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[-1, seq // 2 :] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    want = dict(zip(outs, sess.run(outs, feeds)))
    inputs = []
    for name, arr in feeds.items():
        i = grpcclient.InferInput(name, list(arr.shape), "INT64")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    res = client.infer(model, inputs)
    for name in outs:
        got = res.as_numpy(name)
        assert got is not None and got.shape == want[name].shape, (name, got, want[name].shape)
        if got.dtype.kind == "f":
            err = float(np.max(np.abs(got - want[name])))
            assert err <= 1e-5, (name, err)
        else:
            assert (got == want[name]).all(), name
    print(f"{model} [{batch}, {seq}]: every output equals ONNX Runtime's in process")
