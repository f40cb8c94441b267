"""Calling Troupe from Python with plain grpcio stubs generated from proto/.

    python examples/python/infer.py HOST:PORT [MODEL]

The stubs are generated into a temporary directory on each run (grpcio-tools), so any
client in any language can do the same from the .proto files alone.
"""
import os
import struct
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def generate_stubs(out):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={out}", f"--grpc_python_out={out}",
         os.path.join(PROTO, "inference.proto"), os.path.join(PROTO, "troupe.proto")],
        check=True,
    )
    sys.path.insert(0, out)


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8001"
    model = sys.argv[2] if len(sys.argv) > 2 else "mlp_onnx"
    with tempfile.TemporaryDirectory() as out:
        generate_stubs(out)
        import inference_pb2 as pb
        import inference_pb2_grpc as pb_grpc
        import troupe_pb2 as tpb
        import troupe_pb2_grpc as tpb_grpc

        channel = grpc.insecure_channel(addr)
        infer = pb_grpc.GRPCInferenceServiceStub(channel)
        models = tpb_grpc.ModelsStub(channel)

        assert infer.ServerReady(pb.ServerReadyRequest()).ready, "server not ready"
        listed = models.List(tpb.ListModelsRequest())
        print("models:", ", ".join(sorted(m.spec.name for m in listed.models)))

        meta = infer.ModelMetadata(pb.ModelMetadataRequest(name=model))
        inp = meta.inputs[0]
        width = int(inp.shape[-1])
        print(f"{model}: input {inp.name} {inp.datatype} {list(inp.shape)}, platform {meta.platform}")

        x = [((i % 7) - 3) / 4.0 for i in range(2 * width)]
        req = pb.ModelInferRequest(model_name=model)
        req.inputs.add(name=inp.name, datatype="FP32", shape=[2, width])
        req.raw_input_contents.append(struct.pack(f"<{len(x)}f", *x))
        resp = infer.ModelInfer(req, timeout=10)
        out0 = resp.outputs[0]
        values = struct.unpack(f"<{len(resp.raw_output_contents[0]) // 4}f", resp.raw_output_contents[0])
        print(f"{out0.name} {out0.datatype} {list(out0.shape)}: {[round(v, 5) for v in values]}")

        try:
            infer.ModelInfer(pb.ModelInferRequest(model_name="no_such_model"), timeout=10)
            raise SystemExit("an unknown model was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
            print("unknown model:", e.code().name, "-", e.details())
    print("python example: ok")


if __name__ == "__main__":
    main()
