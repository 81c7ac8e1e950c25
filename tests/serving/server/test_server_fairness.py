"""No client can starve the others, and deadlines stop the model (issue 30, defects 1, 2, 8, 9).

A real server process with 2 gRPC and 2 REST worker threads serves a tiny model and one whose
every call spends 6 s of model time; clients are real gRPC channels and HTTP connections.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_status_pb2, inference_pb2, model_pb2, predict_pb2,
                                     prediction_service_pb2_grpc, model_service_pb2_grpc)

import _reliability as rel
import _serving_models as sm

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness")
    sm.write_model(str(root / "tiny"), 1, warmup=False)
    sm.write_spinning_model(str(root / "slow"), 1, seconds=6.0)
    (root / "models.config").write_text(
        "model_config_list {\n"
        f'  config {{ name: "tiny" base_path: "{root / "tiny"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "slow" base_path: "{root / "slow"}" model_platform: "tensorflow" }}\n'
        "}\n")
    srv = rel.ServerProcess(root, [f"--model_config_file={root / 'models.config'}", "--grpc_max_threads=2",
                                   "--rest_api_num_threads=2", "--rest_api_timeout_in_ms=2000",
                                   "--rest_api_write_timeout_in_ms=1000"], name="fairness")
    with srv:
        channel = grpc.insecure_channel(srv.target)
        srv.channel = channel
        yield srv
        channel.close()


def _status(server, name: str = "tiny", timeout: float = 3.0) -> get_model_status_pb2.GetModelStatusResponse:
    stub = model_service_pb2_grpc.ModelServiceStub(server.channel)
    return stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name=name)), timeout=timeout)


def _predict_request(name: str, n: int = 1) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name))
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(sm.sample_images(n)))
    return request


def test_idle_grpc_calls_do_not_starve_a_request_that_arrived(server):
    """Defect 1: calls that never send their request message held every worker thread (fails on
    the sync grpcio server: GetModelStatus and the health check got DEADLINE_EXCEEDED)."""
    attacker = grpc.insecure_channel(server.target)
    hold = threading.Event()

    def nothing():  # a request stream that sends no message until the test ends
        hold.wait(60)
        return
        yield

    call = attacker.stream_unary(PREDICT, request_serializer=lambda m: m,
                                 response_deserializer=predict_pb2.PredictResponse.FromString)
    idle = [call.future(nothing()) for _ in range(8)]  # 4 x the worker threads
    try:
        # let the calls reach the server (nothing on the server side can be waited on instead)
        time.sleep(0.5)
        assert _status(server).model_version_status[0].state == 30
        health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
        assert stub.Predict(_predict_request("tiny"), timeout=3).outputs["probabilities"].tensor_shape.dim[0].size == 1
        assert not any(f.done() for f in idle)  # the idle calls are still open
    finally:
        hold.set()
        for f in idle:
            f.cancel()
        attacker.close()


def _rest_predict(server, name: str) -> int:
    body = json.dumps({"instances": sm.sample_images(1).tolist()}).encode()
    request = urllib.request.Request(f"{server.rest_url}/v1/models/{name}:predict", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_deadlines_stop_the_model_and_free_the_threads(server):
    """Defect 2: past its deadline a run went on for its full 6 s, holding a worker thread and a
    core; status calls behind it timed out (fails on the old code: the status call gets
    DEADLINE_EXCEEDED and the server keeps burning CPU after the clients gave up)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    with futures.ThreadPoolExecutor(4) as pool:
        grpc_calls = [pool.submit(stub.Predict, _predict_request("slow"), timeout=0.3) for _ in range(2)]
        rest_calls = [pool.submit(_rest_predict, server, "slow") for _ in range(2)]
        for f in grpc_calls:
            with pytest.raises(grpc.RpcError) as info:
                f.result(timeout=30)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # gRPC's runs were cancelled at 0.3 s: its threads answer while REST's runs still go on
        assert _status(server, timeout=1.5).model_version_status[0].state == 30
        assert [f.result(timeout=30) for f in rest_calls] == [504, 504]
    with urllib.request.urlopen(f"{server.rest_url}/v1/models/tiny", timeout=3) as response:
        assert response.status == 200
    # the cancelled runs stopped inside TensorFlow: the server is idle, not spinning 4 runs
    before = _cpu_seconds(server.pid)
    time.sleep(1.0)
    assert _cpu_seconds(server.pid) - before < 0.5


def test_multi_inference_with_an_unsupported_method_is_unimplemented(server):
    """Defect 8: TF Serving's multi_inference.cc answers UNIMPLEMENTED (was INVALID_ARGUMENT)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add(model_spec=model_pb2.ModelSpec(name="tiny", signature_name="classify"),
                      method_name="tensorflow/serving/predict")
    example = request.input.example_list.examples.add()
    example.features.feature["images"].float_list.value.extend(np.zeros(sm.H * sm.W * sm.C).tolist())
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == "Unsupported signature method_name: tensorflow/serving/predict"


def test_rest_threads_default_to_grpc_max_threads(tmp_path):
    """Defect 9: --rest_api_num_threads=0 says "as gRPC", but REST kept its own default when
    --grpc_max_threads was set (fails on the old code: 8 REST threads with --grpc_max_threads=1)."""
    from serving.server.model_server import ModelServer, ServerOptions

    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    with ModelServer(ServerOptions(model_name="tiny", model_base_path=str(tmp_path / "tiny"), port=0,
                                   rest_api_port=0, grpc_max_threads=1)) as server:
        assert server._executor._max_workers == 1


def test_sigterm_with_batching_exits_within_the_grace(tmp_path):
    """Defect 3: with --enable_batching, SIGTERM during a long request waited the batcher's fixed
    30 s on top of the 10 s grace (fails on the old code: the process is still alive at 16 s)."""
    sm.write_spinning_model(str(tmp_path / "slow"), 1, seconds=60.0)
    rel.batching_file(tmp_path / "batching.txt", max_batch_size=4, timeout_micros=0, threads=1)
    srv = rel.ServerProcess(tmp_path, ["--model_name=slow", f"--model_base_path={tmp_path / 'slow'}",
                                       "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.txt'}"],
                            rest=False, name="sigterm")
    with srv:
        channel = grpc.insecure_channel(srv.target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        call = stub.Predict.future(_predict_request("slow"))  # no deadline: 60 s of model time
        sm.wait_for(lambda: _cpu_seconds(srv.pid) > 0 and "Running gRPC" in srv.log() and
                    _busy(srv.pid), timeout=30)
        start = time.monotonic()
        srv.proc.terminate()
        try:
            srv.proc.wait(timeout=16)  # the 10 s grace + the documented 5 s margin (+1 s slack)
        except Exception:
            pytest.fail(f"still running {time.monotonic() - start:.1f} s after SIGTERM")
        assert srv.proc.returncode == 0
        call.cancel()
        channel.close()


def _busy(pid: int) -> bool:
    """The process used CPU in the last 0.2 s (its model run has started)."""
    before = _cpu_seconds(pid)
    time.sleep(0.2)
    return _cpu_seconds(pid) - before > 0.1


def test_an_answer_its_client_does_not_read_is_dropped(server):
    """Defect 4: a client that never reads pinned a 20 MB answer in memory, readable for as long
    as it liked (fails on the old code: no such close, and the whole answer can still be read)."""
    body = json.dumps({"signature_name": "fill", "instances": [5_000_000]}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.rest_port))
    try:
        sock.sendall(b"POST /v1/models/slow:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sm.wait_for(lambda: "did not take its answer" in server.log(), timeout=20)
        sock.settimeout(10)
        received, ended = 0, False
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
            ended = True  # EOF
        except ConnectionResetError:
            ended = True
        except socket.timeout:
            pass
        assert ended and received < 20_000_000, (ended, received)
    finally:
        sock.close()
