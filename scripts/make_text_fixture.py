"""Writes models/testing/bag_of_words: a text model whose token attributions can be
computed by hand (tests/text.rs, explanations).

Its tokenizer is word-level (tokenizer.json, vocabulary below, [CLS] ... [SEP] around
each text); the model maps token id i to the hidden state [i, 1] (an embedding table,
one Gather), and the pipeline mean-pools without normalising. So a text's embedding is
[mean of its ids, 1], and occluding token t of n changes dimension 0 by
(id_t - mean) / (n - 1).

usage: python scripts/make_text_fixture.py   (run from the repository root)
"""
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "big", "red", "dog", "cat"]
out = pathlib.Path("models/testing/bag_of_words")
(out / "1").mkdir(parents=True, exist_ok=True)

table = np.stack([np.arange(len(VOCAB), dtype=np.float32), np.ones(len(VOCAB), np.float32)], axis=1)
graph = helper.make_graph(
    [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)],
    "bag_of_words",
    [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ],
    [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", 2])],
    [numpy_helper.from_array(table, "table")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="troupe")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out / "1/model.onnx")

special = lambda t: {"id": t, "ids": [VOCAB.index(t)], "tokens": [t]}
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "decoder": None,
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"[CLS]": special("[CLS]"), "[SEP]": special("[SEP]")},
    },
    "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {t: i for i, t in enumerate(VOCAB)}},
}
(out / "1/tokenizer.json").write_text(json.dumps(tokenizer, indent=1) + "\n")
(out / "config.toml").write_text("""# A text model with hand-computable token attributions: see scripts/make_text_fixture.py.
backend = "onnx"
max_batch_size = 64
instances = 1

[text]
pooling = "mean"
normalize = false
max_length = 32
""")
print("wrote", out)

# models/testing/unbatchable: an ONNX file whose inputs share no leading dynamic dim, so it
# cannot be auto-completed (the node refuses it, asking for a config.toml).
u = pathlib.Path("models/testing/unbatchable/1")
u.mkdir(parents=True, exist_ok=True)
g = helper.make_graph(
    [helper.make_node("Add", ["a", "b"], ["y"])],
    "unbatchable",
    [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3]),
    ],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="troupe")
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, u / "model.onnx")
print("wrote", u.parent)
