"""The bad-input matrix's v2 twin: every case over the Open Inference Protocol (gRPC ModelInfer
and REST /v2) gets its expected status, and afterwards the same server process (the v1 matrix's
setup: `tiny` and `pair`, batching on, --max_request_bytes 65536) still answers a good request
with the model's answer and has logged no traceback. On the code before the v2 front ends every
case failed (UNIMPLEMENTED / aiohttp's text 404)."""
from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tritonclient.grpc import service_pb2, service_pb2_grpc

import _reliability as rel
import _serving_models as sm
from test_reliability_bad_input import MAX_BATCH, MAX_REQUEST_BYTES, PNG, server  # noqa: F401  (one setup)

CODE = grpc.StatusCode
GOOD = sm.sample_images(1)


# ----------------------------------------------------------------------------- gRPC
def infer(model="tiny", version="", inputs=None, raw=None, outputs=(), **params):
    req = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for k, v in params.items():
        req.parameters[k].string_param = v
    for name, datatype, shape in (inputs if inputs is not None else [("images", "FP32", GOOD.shape)]):
        req.inputs.add(name=name, datatype=datatype, shape=shape)
    req.raw_input_contents.extend([GOOD.tobytes()] if raw is None else raw)
    for name in outputs:
        req.outputs.add(name=name)
    return req


def typed(name, datatype, shape, field, values):
    req = service_pb2.ModelInferRequest(model_name="tiny")
    t = req.inputs.add(name=name, datatype=datatype, shape=shape)
    getattr(t.contents, field).extend(values)
    return req


def bytes_elements(*items, cut=0):
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    return raw[:len(raw) - cut]


GRPC_CASES = [
    ("unknown_model", lambda: infer("nope"), CODE.NOT_FOUND),
    ("unknown_model_bad_body", lambda: infer("nope", raw=[b"x"]), CODE.NOT_FOUND),
    ("unknown_version", lambda: infer(version="9"), CODE.NOT_FOUND),
    ("unknown_label", lambda: infer(version="canary"), CODE.INVALID_ARGUMENT),
    ("version_past_int64", lambda: infer(version="9" * 30), CODE.INVALID_ARGUMENT),
    ("unknown_signature", lambda: infer(signature_name="nope"), CODE.FAILED_PRECONDITION),
    ("no_inputs", lambda: infer(inputs=[], raw=[]), CODE.INVALID_ARGUMENT),
    ("unknown_input", lambda: infer(inputs=[("pixels", "FP32", GOOD.shape)]), CODE.INVALID_ARGUMENT),
    ("duplicate_input", lambda: infer(inputs=[("images", "FP32", GOOD.shape)] * 2, raw=[GOOD.tobytes()] * 2),
     CODE.INVALID_ARGUMENT),
    ("wrong_datatype", lambda: infer(inputs=[("images", "FP64", GOOD.shape)], raw=[GOOD.astype("f8").tobytes()]),
     CODE.INVALID_ARGUMENT),
    ("made_up_datatype", lambda: infer(inputs=[("images", "FP33", GOOD.shape)]), CODE.INVALID_ARGUMENT),
    ("wrong_rank", lambda: infer(inputs=[("images", "FP32", [1, 64])]), CODE.INVALID_ARGUMENT),
    ("raw_too_short", lambda: infer(raw=[GOOD.tobytes()[:-4]]), CODE.INVALID_ARGUMENT),
    ("raw_count_mismatch", lambda: infer(raw=[GOOD.tobytes()] * 2), CODE.INVALID_ARGUMENT),
    ("negative_dim", lambda: infer(inputs=[("images", "FP32", [-1, 8, 8, 1])]), CODE.INVALID_ARGUMENT),
    ("dims_product_overflows", lambda: infer(inputs=[("images", "FP32", [0, 2**62, 2**62, 1])], raw=[b""]),
     CODE.INVALID_ARGUMENT),
    ("too_many_dims", lambda: infer(inputs=[("images", "FP32", [1] * 65)]), CODE.INVALID_ARGUMENT),
    ("over_max_batch", lambda: infer(inputs=[("images", "FP32", [MAX_BATCH + 1, 8, 8, 1])],
                                     raw=[sm.sample_images(MAX_BATCH + 1).tobytes()]), CODE.INVALID_ARGUMENT),
    ("typed_too_few_values", lambda: typed("images", "FP32", [1, 8, 8, 1], "fp32_contents", [0.5] * 10),
     CODE.INVALID_ARGUMENT),
    ("typed_fp16_has_no_field", lambda: typed("images", "FP16", [1, 8, 8, 1], "fp32_contents", [0.5]),
     CODE.INVALID_ARGUMENT),
    ("typed_int_out_of_range", lambda: typed("images", "INT8", [1], "int_contents", [300]), CODE.INVALID_ARGUMENT),
    ("bytes_length_past_end", lambda: infer(inputs=[("images_bytes", "BYTES", [1])],
                                            raw=[bytes_elements(PNG, cut=3)], signature_name="serving_bytes"),
     CODE.INVALID_ARGUMENT),
    ("bytes_count_mismatch", lambda: infer(inputs=[("images_bytes", "BYTES", [2])], raw=[bytes_elements(PNG)],
                                           signature_name="serving_bytes"), CODE.INVALID_ARGUMENT),
    ("bytes_not_png", lambda: infer(inputs=[("images_bytes", "BYTES", [1])], raw=[bytes_elements(b"nope")],
                                    signature_name="serving_bytes"), CODE.INVALID_ARGUMENT),
    ("unknown_output", lambda: infer(outputs=["nope"]), CODE.INVALID_ARGUMENT),
    ("pair_batch_mismatch", lambda: infer("pair", inputs=[("a", "FP32", [1, 2]), ("b", "FP32", [2, 2])],
                                          raw=[np.ones((1, 2), "f4").tobytes(), np.ones((2, 2), "f4").tobytes()]),
     CODE.INVALID_ARGUMENT),
    ("over_max_request_bytes", lambda: infer(raw=[b"\0" * (MAX_REQUEST_BYTES + 1)]), CODE.RESOURCE_EXHAUSTED),
]


@pytest.mark.parametrize("case, build, code", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_v2_grpc_bad_input(server, case, build, code):  # noqa: F811
    stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
    try:
        stub.ModelInfer(build(), timeout=30)
        got, details = CODE.OK, ""
    except grpc.RpcError as err:
        got, details = err.code(), err.details()
    assert got == code, f"{case}: got {got.name} {details!r}"
    assert len(details) <= 1024


# ----------------------------------------------------------------------------- REST
def body(inputs=None, **extra):
    tensor = {"name": "images", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": GOOD.ravel().tolist()}
    return {"inputs": [tensor] if inputs is None else inputs, **extra}


def tensor(**fields):
    return {"name": "images", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": GOOD.ravel().tolist(), **fields}


INFER = "/v2/models/tiny/infer"
REST_CASES = [
    ("unknown_model", "/v2/models/nope/infer", body(), {}, 404),
    ("unknown_model_bad_body", "/v2/models/nope/infer", {"inputs": 7}, {}, 404),
    ("unknown_version", "/v2/models/tiny/versions/9/infer", body(), {}, 404),
    ("unknown_label", "/v2/models/tiny/versions/canary/infer", body(), {}, 400),
    ("version_past_int64", "/v2/models/tiny/versions/" + "9" * 30 + "/infer", body(), {}, 400),
    ("not_json", INFER, b"{not json", {}, 400),
    ("json_not_object", INFER, b"[1, 2]", {}, 400),
    ("inputs_not_list", INFER, {"inputs": {"images": []}}, {}, 400),
    ("input_not_object", INFER, {"inputs": [7]}, {}, 400),
    ("input_without_name", INFER, body([{"shape": [1], "datatype": "FP32", "data": [1]}]), {}, 400),
    ("datatype_not_string", INFER, body([tensor(datatype=32)]), {}, 400),
    ("made_up_datatype", INFER, body([tensor(datatype="FP33")]), {}, 400),
    ("wrong_datatype", INFER, body([tensor(datatype="INT32")]), {}, 400),
    ("shape_not_list", INFER, body([tensor(shape="1x8x8x1")]), {}, 400),
    ("negative_dim", INFER, body([tensor(shape=[-1, 8, 8, 1])]), {}, 400),
    ("bool_dim", INFER, body([tensor(shape=[True, 8, 8, 1])]), {}, 400),
    ("wrong_rank", INFER, body([tensor(shape=[1, 64])]), {}, 400),
    ("data_count_mismatch", INFER, body([tensor(shape=[2, 8, 8, 1])]), {}, 400),
    ("ragged_data", INFER, body([tensor(data=[[1.0], [1.0, 2.0]])]), {}, 400),
    ("string_in_numbers", INFER, body([tensor(data=["0.5"] * 64)]), {}, 400),
    ("null_in_numbers", INFER, body([tensor(data=[None] * 64)]), {}, 400),
    ("number_too_big", INFER, b'{"inputs":[{"name":"images","shape":[1],"datatype":"FP32","data":[1e400]}]}', {},
     400),
    ("no_data", INFER, body([{"name": "images", "shape": [1, 8, 8, 1], "datatype": "FP32"}]), {}, 400),
    ("unknown_input", INFER, body([tensor(name="pixels")]), {}, 400),
    ("duplicate_input", INFER, body([tensor(), tensor()]), {}, 400),
    ("unknown_signature", INFER, body(parameters={"signature_name": "nope"}), {}, 400),
    ("signature_not_string", INFER, body(parameters={"signature_name": 3}), {}, 400),
    ("parameters_not_object", INFER, body(parameters=[1]), {}, 400),
    ("id_not_string", INFER, body(id=7), {}, 400),
    ("unknown_output", INFER, body(outputs=[{"name": "nope"}]), {}, 400),
    ("classification_output", INFER, body(outputs=[{"name": "probabilities", "parameters": {"classification": 3}}]),
     {}, 400),
    ("binary_output_flag_not_bool", INFER, body(parameters={"binary_data_output": "yes"}), {}, 400),
    ("header_length_past_body", INFER, json.dumps(body()).encode(), {"Inference-Header-Content-Length": "99999"},
     400),
    ("header_length_not_number", INFER, json.dumps(body()).encode(), {"Inference-Header-Content-Length": "-3"}, 400),
    ("binary_size_past_data", INFER, json.dumps(body([tensor(data=None)])).replace(
        '"data": null', '"parameters": {"binary_data_size": 256}').encode() + b"\0" * 16, "header", 400),
    ("unclaimed_binary_data", INFER, json.dumps(body()).encode() + b"\0" * 16, "header", 400),
    ("pair_batch_mismatch", "/v2/models/pair/infer", body([
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "b", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]), {}, 400),
    ("over_max_request_bytes", INFER, b" " * (MAX_REQUEST_BYTES + 1), {}, 413),
    ("get_on_infer", INFER, None, {}, 404),
    ("unknown_route", "/v2/models/tiny/explain", body(), {}, 404),
    ("metadata_unknown_model", "/v2/models/nope", None, {}, 404),
]


def rest(server, path, data, headers=None):  # noqa: F811
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    if headers == "header":  # the JSON's length, the rest is binary data
        headers = {"Inference-Header-Content-Length": str(data.index(b"\0") if b"\0" in data else len(data))}
    return requests.request("GET" if data is None else "POST", server.rest_url + path, data=data,
                            headers=headers or {}, timeout=30)


@pytest.mark.parametrize("case, path, data, headers, status", REST_CASES, ids=[c[0] for c in REST_CASES])
def test_v2_rest_bad_input(server, case, path, data, headers, status):  # noqa: F811
    resp = rest(server, path, data, headers)
    assert resp.status_code == status, f"{case}: got {resp.status_code} {resp.text[:300]!r}"
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    assert isinstance(resp.json()["error"], str) and len(resp.json()["error"]) <= 1024


# ----------------------------------------------------------------------------- afterwards
def test_after_the_v2_matrix_the_same_process_answers_correctly(server):  # noqa: F811
    assert server.proc.poll() is None and server.starts == 1
    x = sm.sample_images(MAX_BATCH, seed=11)
    expected = tf.saved_model.load(str(server.workdir / "tiny" / "1")).signatures["serving_default"](
        images=tf.constant(x))["class_ids"].numpy()
    out = service_pb2_grpc.GRPCInferenceServiceStub(server.channel).ModelInfer(
        infer(inputs=[("images", "FP32", x.shape)], raw=[x.tobytes()], outputs=["class_ids"]), timeout=30)
    assert np.frombuffer(out.raw_output_contents[0], "<i8").tolist() == expected.tolist()
    resp = rest(server, INFER, body([tensor(shape=list(x.shape), data=x.tolist())], outputs=[{"name": "class_ids"}]))
    assert resp.status_code == 200 and resp.json()["outputs"][0]["data"] == expected.tolist()
    assert server.starts == 1 and server.proc.poll() is None
    assert rel.unexpected_tracebacks(server.log()) == []
    assert "Error handling request" not in server.log()
    assert len(GRPC_CASES) + len(REST_CASES) >= 60
