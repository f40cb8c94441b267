"""A sentence-encoder runtime for MLServer, used by scripts/bench_text.sh to serve the same
all-MiniLM-L6-v2 model.onnx as Troupe's minilm_onnx (docs/benchmarks.md, "Text models:
all-MiniLM-L6-v2"): BYTES text in, FP32 L2-normalised mean-pooled embedding out, the same
steps as Troupe's text pipeline (node/src/pipeline.rs).

model-settings.json:
    {"name": "minilm", "implementation": "text_runtime.TextModel",
     "max_batch_size": 32, "max_batch_time": 0.0005,       # adaptive batching (optional)
     "parameters": {"uri": "/abs/path/1/model.onnx", "extra": {"intra_op_threads": 1, "offload": true}},
     "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
     "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]}

The tokenizer is the PyPI `tokenizers` package reading the tokenizer.json beside the model,
with its truncation set to `max_length` (extra, default 256 as in sentence_bert_config.json)
and padding to the longest row of the batch, overriding the file's fixed 128-token padding
(as Troupe does). The ONNX Runtime session uses `intra_op_threads` intra-op threads and one
inter-op thread, like Troupe's ONNX backend. With MLServer's adaptive batching on, the
calls queued within max_batch_time are joined along the first dimension before `predict`
and the answer split back per call by MLServer.

`offload` (extra, default true): run tokenizing, the session and pooling on one worker
thread of this model's own (like one Troupe instance), so that the server's event loop
keeps receiving and decoding calls meanwhile and adaptive batching can gather them (with
`parallel_workers = 0` and `offload` false, `predict` blocks the event loop and no call
arrives while a batch runs).

Batch sizes: each model counts its `predict` calls and rows. With the environment variable
TEXT_RUNTIME_STATS=FILE, SIGUSR1 appends one line per model to FILE: "name calls rows"
(totals since load; rows / calls = mean batch size), which scripts/bench_text.sh reads.
"""

import asyncio
import os
import signal
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from tokenizers import Tokenizer

# Every loaded TextModel, for the SIGUSR1 stats. MLServer imports this file anew for each
# model, so the list is kept in a module of its own that outlives those imports.
_STATS = sys.modules.setdefault("_text_runtime_stats", types.ModuleType("_text_runtime_stats"))
if not hasattr(_STATS, "models"):
    _STATS.models = []
_MODELS = _STATS.models


def _dump_stats():
    with open(os.environ["TEXT_RUNTIME_STATS"], "a") as f:
        for m in _MODELS:
            f.write(f"{m.name} {m._calls} {m._rows}\n")


class TextModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self._feeds = [i.name for i in self._session.get_inputs()]
        tok = Tokenizer.from_file(os.path.join(os.path.dirname(path), "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=int(extra.get("max_length", 256)))
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # longest
        self._tokenizer = tok
        self._input = self.settings.inputs[0].name if self.settings.inputs else "text"
        offload = extra.get("offload", True)
        self._pool = ThreadPoolExecutor(1) if offload not in (False, "false", "0", 0) else None
        self._calls = self._rows = 0
        if not _MODELS and os.environ.get("TEXT_RUNTIME_STATS"):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_stats)
        _MODELS.append(self)
        return True

    def _texts(self, payload: InferenceRequest) -> list:
        inp = next((i for i in payload.inputs if i.name == self._input), payload.inputs[0])
        return StringCodec.decode_input(inp)  # BYTES [n, 1] -> n str (utf-8)

    def embed(self, texts: list) -> np.ndarray:
        encs = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        types = np.array([e.type_ids for e in encs], dtype=np.int64)
        by_name = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (hidden,) = self._session.run(["last_hidden_state"], {n: by_name[n] for n in self._feeds})
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norm, 1e-12, None)).astype(np.float32)

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = self._texts(payload)
        self._calls += 1
        self._rows += len(texts)
        if self._pool is None:
            y = self.embed(texts)
        else:
            y = await asyncio.get_running_loop().run_in_executor(self._pool, self.embed, texts)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("embedding", y)],
        )
