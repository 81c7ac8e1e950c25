"""The Open Inference Protocol (KServe v2) beside TF Serving's APIs, on the same ports of one
in-process server: tritonclient (http and grpc) gets the answers v1 predict gives for the same
images; raw HTTP checks each route's JSON field names; typed gRPC contents, versions, labels,
signatures, readiness, errors and metrics. All of these fail on the code before the v2 front ends
(every /v2 route was 404, every inference.GRPCInferenceService method UNIMPLEMENTED)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import _serving_models as sm
from serving.server.model_server import ModelServer, ServerOptions

PNG = tf.io.encode_png(tf.cast(tf.random.stateless_uniform([8, 8, 1], [1, 2], 0, 255), tf.uint8)).numpy()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2_models")
    sm.write_model(str(root / "tiny"), 1, bias=1.0, seed=1)
    sm.write_model(str(root / "tiny"), 2, bias=2.0, seed=2)
    (root / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" '
        'model_version_policy { all {} } version_labels { key: "stable" value: 1 } } }')
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    with ModelServer(ServerOptions(port=0, rest_api_port=0, model_config_file=str(root / "models.config"),
                                   monitoring_config_file=str(root / "monitoring.config"),
                                   file_system_poll_wait_seconds=0)) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    client = thttp.InferenceServerClient(f"127.0.0.1:{server.rest_port}", network_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server):
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


def call(server, path, body=None, headers=None):
    """(HTTP status, parsed JSON) for a raw request to the REST port."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def v1_predict(server, x, path="/v1/models/tiny:predict", signature=None):
    body = {"inputs": {"images": x.tolist()} if signature is None else
            {"images_bytes": [{"b64": __import__("base64").b64encode(v).decode()} for v in x]}}
    if signature:
        body["signature_name"] = signature
    status, out = call(server, path, body)
    assert status == 200, out
    return out["outputs"]


def http_infer(http, x, *, binary, version="", **kw):
    tensor = thttp.InferInput("images", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [thttp.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "class_ids", "classes")]
    return http.infer("tiny", [tensor], model_version=version, outputs=outputs, **kw)


def grpc_infer(client, x, version="", **kw):
    tensor = tgrpc.InferInput("images", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("tiny", [tensor], model_version=version, **kw)


@pytest.mark.parametrize("how", ["http-binary", "http-json", "grpc"])
def test_v2_answers_what_v1_predict_answers_for_the_same_images(server, http, grpc_client, how):
    x = sm.sample_images(4, seed=3)
    v1 = v1_predict(server, x)
    result = grpc_infer(grpc_client, x) if how == "grpc" else http_infer(http, x, binary=how == "http-binary")
    np.testing.assert_allclose(result.as_numpy("probabilities"), v1["probabilities"], rtol=1e-6)
    assert result.as_numpy("class_ids").tolist() == v1["class_ids"]
    # (tritonclient reads BYTES sent as JSON into str, as binary data into bytes)
    assert [c.decode() if isinstance(c, bytes) else c for c in result.as_numpy("classes")] == v1["classes"]
    response = result.get_response()
    version = response["model_version"] if how != "grpc" else response.model_version
    assert version == "2"


@pytest.mark.parametrize("version, v1_path, served", [("1", "/v1/models/tiny/versions/1:predict", "1"),
                                                      ("stable", "/v1/models/tiny/labels/stable:predict", "1"),
                                                      ("2", "/v1/models/tiny/versions/2:predict", "2")])
def test_versions_and_labels_as_for_v1(server, http, grpc_client, version, v1_path, served):
    x = sm.sample_images(2, seed=4)
    v1 = v1_predict(server, x, v1_path)
    for result, got in ((grpc_infer(grpc_client, x, version), lambda r: r.get_response().model_version),
                        (http_infer(http, x, binary=True, version=version),
                         lambda r: r.get_response()["model_version"])):
        np.testing.assert_allclose(result.as_numpy("probabilities"), v1["probabilities"], rtol=1e-6)
        assert got(result) == served


def test_a_signature_named_in_the_parameters_is_served(server, http, grpc_client):
    """serving_bytes takes PNG bytes (BYTES): the signature_name parameter picks it, as v1's field."""
    v1 = v1_predict(server, [PNG, PNG], "/v1/models/tiny:predict", signature="serving_bytes")
    images = np.array([PNG, PNG], dtype=object)
    g = tgrpc.InferInput("images_bytes", [2], "BYTES")
    g.set_data_from_numpy(images)
    h = thttp.InferInput("images_bytes", [2], "BYTES")
    h.set_data_from_numpy(images)
    for result in (grpc_client.infer("tiny", [g], parameters={"signature_name": "serving_bytes"}),
                   http.infer("tiny", [h], parameters={"signature_name": "serving_bytes"})):
        np.testing.assert_allclose(result.as_numpy("probabilities"), v1["probabilities"], rtol=1e-6)


def test_metadata_and_readiness_over_both_clients(http, grpc_client):
    expected_inputs = [{"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    expected_outputs = {("probabilities", "FP32", (-1, 10)), ("class_ids", "INT64", (-1,)), ("classes", "BYTES", (-1,))}
    meta = http.get_model_metadata("tiny")
    assert (meta["name"], meta["versions"], meta["platform"]) == ("tiny", ["2", "1"], "tensorflow_savedmodel")
    assert meta["inputs"] == expected_inputs
    assert {(o["name"], o["datatype"], tuple(o["shape"])) for o in meta["outputs"]} == expected_outputs
    g = grpc_client.get_model_metadata("tiny", "1")
    assert (g.name, list(g.versions), g.platform) == ("tiny", ["2", "1"], "tensorflow_savedmodel")
    assert [(t.name, t.datatype, list(t.shape)) for t in g.inputs] == [("images", "FP32", [-1, 8, 8, 1])]
    assert {(t.name, t.datatype, tuple(t.shape)) for t in g.outputs} == expected_outputs
    for client in (http, grpc_client):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
        assert client.is_model_ready("tiny", "stable")
        assert not client.is_model_ready("tiny", "9") and not client.is_model_ready("nope")
        meta = client.get_server_metadata()
        assert (meta["name"] if client is http else meta.name) == "zoo-serve"
        with pytest.raises(InferenceServerException, match="nope"):
            client.get_model_metadata("nope")


@pytest.mark.parametrize("how", ["http", "grpc"])
@pytest.mark.parametrize("case, build, status, code, words", [
    ("unknown_model", lambda m: (m.InferInput("images", [1, 8, 8, 1], "FP32"), "nope"), "404", "NOT_FOUND", "nope"),
    ("wrong_shape", lambda m: (m.InferInput("images", [1, 8, 8], "FP32"), "tiny"), "400", "INVALID_ARGUMENT",
     "input 'images': expected shape"),
    ("wrong_datatype", lambda m: (m.InferInput("images", [1, 8, 8, 1], "FP64"), "tiny"), "400",
     "INVALID_ARGUMENT", "input 'images': datatype FP64 does not match the model's FP32"),
    ("unknown_input", lambda m: (m.InferInput("pixels", [1, 8, 8, 1], "FP32"), "tiny"), "400",
     "INVALID_ARGUMENT", "Sent extra: {pixels}"),
])
def test_errors_as_the_protocol_gives_them(http, grpc_client, how, case, build, status, code, words):
    module, client = (thttp, http) if how == "http" else (tgrpc, grpc_client)
    tensor, model = build(module)
    shape = tensor.shape()
    tensor.set_data_from_numpy(np.zeros(shape, np.float64 if tensor.datatype() == "FP64" else np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [tensor])
    assert info.value.status() == (status if how == "http" else f"StatusCode.{code}"), info.value
    assert words in info.value.message()


# ----------------------------------------------------------------------------- raw HTTP, per route
def test_raw_http_server_routes(server):
    assert call(server, "/v2") == (200, {"name": "zoo-serve", "version": __import__("cnnzoo").__version__,
                                         "extensions": ["binary_tensor_data"]})
    assert call(server, "/v2/health/live") == (200, {"live": True})
    assert call(server, "/v2/health/ready") == (200, {"ready": True})
    assert call(server, "/v2/nothing/here") == (404, {"error": "no v2 route GET /v2/nothing/here"})


@pytest.mark.parametrize("path, version", [("/v2/models/tiny", "2"), ("/v2/models/tiny/versions/1", "1")])
def test_raw_http_model_routes(server, path, version):
    status, meta = call(server, path)
    assert status == 200 and set(meta) == {"name", "versions", "platform", "inputs", "outputs"}
    assert all(set(t) == {"name", "datatype", "shape"} for t in meta["inputs"] + meta["outputs"])
    assert call(server, path + "/ready") == (200, {"name": "tiny", "ready": True})
    x = sm.sample_images(2, seed=5)
    status, out = call(server, path + "/infer", {
        "id": "req-7", "parameters": {}, "inputs": [{"name": "images", "shape": [2, 8, 8, 1], "datatype": "FP32",
                                                     "data": x.ravel().tolist()}],
        "outputs": [{"name": "class_ids"}]})
    assert status == 200, out
    assert out == {"model_name": "tiny", "model_version": version, "id": "req-7", "outputs": [
        {"name": "class_ids", "datatype": "INT64", "shape": [2], "data": out["outputs"][0]["data"]}]}
    assert all(isinstance(v, int) for v in out["outputs"][0]["data"])
    nested = call(server, path + "/infer", {"inputs": [{"name": "images", "shape": [2, 8, 8, 1], "datatype": "FP32",
                                                        "data": x.tolist()}], "outputs": [{"name": "class_ids"}]})[1]
    assert nested["outputs"] == out["outputs"] and "id" not in nested  # nested data too; no id, none echoed


def test_raw_http_errors_and_unready(server):
    assert call(server, "/v2/models/nope") == (404, {"error": "Servable not found for request: Latest(nope)"})
    assert call(server, "/v2/models/nope/ready")[0] == 404
    assert call(server, "/v2/models/tiny/versions/9/ready") == (400, {"name": "tiny", "ready": False})
    status, body = call(server, "/v2/models/tiny/infer", {"inputs": "images"})
    assert status == 400 and set(body) == {"error"} and "'inputs' must be a list" in body["error"]


def test_raw_http_binary_request_and_answer(server):
    """Triton's binary tensor data extension by hand: a JSON header of Inference-Header-Content-Length
    bytes, then the tensor's little-endian bytes; the answer likewise for a binary_data output."""
    x = sm.sample_images(3, seed=6)
    header = json.dumps({"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v2/models/tiny/infer",
                                 data=header + x.astype("<f4").tobytes(),
                                 headers={"Inference-Header-Content-Length": str(len(header))})
    with urllib.request.urlopen(req, timeout=30) as resp:
        n = int(resp.headers["Inference-Header-Content-Length"])
        raw = resp.read()
    answer = json.loads(raw[:n])
    assert answer["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [3, 10],
                                  "parameters": {"binary_data_size": 120}}]
    v1 = v1_predict(server, x)
    np.testing.assert_allclose(np.frombuffer(raw[n:], "<f4").reshape(3, 10), v1["probabilities"], rtol=1e-6)


def test_grpc_typed_contents_are_answered_in_typed_contents(server):
    """InferTensorContents in, InferTensorContents out (raw in gives raw out: tritonclient's case)."""
    x = sm.sample_images(2, seed=7)
    request = service_pb2.ModelInferRequest(model_name="tiny", id="t1")
    tensor = request.inputs.add(name="images", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    request.outputs.add(name="class_ids")
    request.outputs.add(name="classes")
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    v1 = v1_predict(server, x)
    assert not response.raw_output_contents and response.id == "t1"
    assert [o.name for o in response.outputs] == ["class_ids", "classes"]
    assert list(response.outputs[0].contents.int64_contents) == v1["class_ids"]
    assert [c.decode() for c in response.outputs[1].contents.bytes_contents] == v1["classes"]


def test_v2_requests_are_counted_with_their_protocol(server, grpc_client, http):
    grpc_infer(grpc_client, sm.sample_images(1))
    http_infer(http, sm.sample_images(1), binary=True)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    for entrypoint in ("GRPC", "REST"):
        assert f'request_latency_count{{API="v2_infer",entrypoint="{entrypoint}",model_name="tiny"}}' in text
