"""A small ONNX Runtime runtime for MLServer, used by scripts/bench_serving.sh to serve the
same .onnx files as Troupe (docs/benchmarks.md, "Serving: each backend at concurrency 1, 8,
32, and MLServer").

model-settings.json:
    {"name": "mlp_onnx", "implementation": "onnx_runtime.ONNXModel",
     "parameters": {"uri": "/abs/path/model.onnx", "extra": {"intra_op_threads": 1}},
     "inputs": [...], "outputs": [...]}

The session uses `intra_op_threads` intra-op threads (the bench passes the same THREADS
as `troupe-node --backend-threads`) and one inter-op thread, like Troupe's ONNX backend.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class ONNXModel(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = "output"
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        (y,) = self._session.run([self._output], {self._input: x})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(self._output, y)],
        )
