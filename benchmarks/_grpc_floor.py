"""Reference gRPC servers for S1: what a Python gRPC server costs at the least on this machine.

    python benchmarks/_grpc_floor.py PORT sync|aio
    python benchmarks/_grpc_floor.py PORT lean SAVED_MODEL_DIR

sync/aio: a do-nothing server answering the Predict method path with a fixed 64-byte payload
without parsing the request: a round trip measures only grpcio (transport, thread or event-loop
handoff), not the model. lean: the leanest useful Predict server, S1's limit: a bare grpcio
servicer that reads `images` from tensor_content with np.frombuffer, calls the SavedModel's
serving_default signature and writes the outputs as tensor_content; no validation, no metrics,
no version management. Prints "ready" once listening.
"""
from __future__ import annotations

import asyncio
import sys
from concurrent import futures

import grpc

METHOD = "/tensorflow.serving.PredictionService/Predict"
PAYLOAD = bytes(64)


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(lambda request, context: PAYLOAD)})


def serve_sync(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


async def serve_aio(port: int) -> None:
    async def predict(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return PAYLOAD

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def serve_lean(port: int, saved_model: str) -> None:
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    fn = tf.saved_model.load(saved_model).signatures["serving_default"]

    class Lean(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request: predict_pb2.PredictRequest,
                    context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
            t = request.inputs["images"]
            x = np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])
            response = predict_pb2.PredictResponse()
            for k, v in fn(images=tf.constant(x)).items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))  # zoo-serve's default on 2 cores
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Lean(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if not ((mode in ("sync", "aio") and len(sys.argv) == 3) or (mode == "lean" and len(sys.argv) == 4)):
        sys.exit("usage: _grpc_floor.py PORT sync|aio  |  _grpc_floor.py PORT lean SAVED_MODEL_DIR")
    if mode == "sync":
        serve_sync(int(sys.argv[1]))
    elif mode == "aio":
        asyncio.run(serve_aio(int(sys.argv[1])))
    else:
        serve_lean(int(sys.argv[1]), sys.argv[3])
