"""A do-nothing gRPC server: the floor under any Python gRPC server's batch-1 latency on this machine.

    python benchmarks/_grpc_floor.py PORT sync|aio

Answers the Predict method path with a fixed 64-byte payload without parsing the request, so a
round trip measures only grpcio (transport, thread or event-loop handoff) and not the model or
the product. bench_serving.py reports it next to S1 to show how much of the served overhead is
left to the product at all. Prints "ready" once listening.
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


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("sync", "aio"):
        sys.exit("usage: _grpc_floor.py PORT sync|aio")
    if sys.argv[2] == "sync":
        serve_sync(int(sys.argv[1]))
    else:
        asyncio.run(serve_aio(int(sys.argv[1])))
