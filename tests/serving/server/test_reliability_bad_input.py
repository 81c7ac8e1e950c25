"""Bad-input matrix against the real server in a subprocess: every case over gRPC and REST gets its
expected status code, and afterwards the same process (same PID, never restarted) still answers a
good request with the in-process model's answer and has logged no traceback.

The server: `tiny` (8x8x1 -> 10 classes, with classify/regress/bytes signatures) and `pair` (two
inputs, to send a batch mismatch), batching on with max_batch_size 8, --max_request_bytes 65536.
The matrix runs in one module-scoped server; the final check must run after it (file order).
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

import _reliability as rel
import _serving_models as sm

CODE = grpc.StatusCode
MAX_BATCH = 8
MAX_REQUEST_BYTES = 65536
PNG = tf.io.encode_png(tf.zeros([8, 8, 1], tf.uint8)).numpy()


class _Pair(tf.Module):
    """Two batched inputs: a batch mismatch between them is a request error, not a crash."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None, 2], tf.float32, name="b")])
    def serving_default(self, a, b):
        return {"sum": a + b}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    sm.write_model(str(root / "tiny"), 1)
    pair = _Pair()
    tf.saved_model.save(pair, str(root / "pair" / "1"), signatures={"serving_default": pair.serving_default})
    (root / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" }\n'
        '                    config { name: "pair" base_path: "pair" model_platform: "tensorflow" } }')
    # A 100 ms window and padding to 4 or 8 rows, so concurrent requests really merge and pad.
    rel.batching_file(root / "batching.txt", max_batch_size=MAX_BATCH, timeout_micros=100_000, threads=1,
                      allowed=(4, MAX_BATCH))
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    srv = rel.ServerProcess(root, [f"--model_config_file={root / 'models.config'}", "--enable_batching",
                                   f"--monitoring_config_file={root / 'monitoring.config'}",
                                   f"--batching_parameters_file={root / 'batching.txt'}",
                                   f"--max_request_bytes={MAX_REQUEST_BYTES}"], name="bad_input")
    with srv:
        with grpc.insecure_channel(srv.target) as channel:
            srv.channel = channel
            yield srv


# ----------------------------------------------------------------------------- gRPC
def tensor(array, dtype=None):
    return tf.make_tensor_proto(array, dtype=dtype)


def spec(name="tiny", version=None, label=None, signature=""):
    s = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        s.version.value = version
    if label is not None:
        s.version_label = label
    return s


def predict(images=None, inputs=None, **kw):
    req = predict_pb2.PredictRequest(model_spec=spec(**kw))
    default = {"images": tensor(sm.sample_images(1) if images is None else images)}
    for k, v in (default if inputs is None else inputs).items():
        req.inputs[k].CopyFrom(v)
    return req


def shaped(dtype, dims, **fields):
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]), **fields)


def example_input(n=1, length=64):
    ex = [tf.train.Example(features=tf.train.Features(feature={"images": tf.train.Feature(
        float_list=tf.train.FloatList(value=[0.5] * length))})) for _ in range(n)]
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=ex))


def reload_request(name, base_path="tiny"):
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return model_management_pb2.ReloadConfigRequest(config=config)


NAN_IMAGE = np.full((1, 8, 8, 1), np.nan, np.float32)
INF_IMAGE = np.where(sm.sample_images(1) > 0.5, np.inf, -np.inf).astype(np.float32)

# (case id, RPC, request builder, expected code); OK cases are inputs a model must survive.
GRPC_CASES = [
    ("dtype_double", "Predict", lambda: predict(sm.sample_images(1).astype(np.float64)), CODE.INVALID_ARGUMENT),
    ("dtype_int32", "Predict", lambda: predict(np.zeros((1, 8, 8, 1), np.int32)), CODE.INVALID_ARGUMENT),
    ("dtype_string", "Predict", lambda: predict(np.array([b"x"], dtype=object)), CODE.INVALID_ARGUMENT),
    ("dtype_unsupported", "Predict",
     lambda: predict(inputs={"images": shaped(types_pb2.DT_COMPLEX64, [1])}), CODE.INVALID_ARGUMENT),
    ("rank_3", "Predict", lambda: predict(np.zeros((1, 8, 8), np.float32)), CODE.INVALID_ARGUMENT),
    ("rank_5", "Predict", lambda: predict(np.zeros((1, 1, 8, 8, 1), np.float32)), CODE.INVALID_ARGUMENT),
    ("scalar", "Predict", lambda: predict(np.float32(1.0)), CODE.INVALID_ARGUMENT),
    ("shape_4x4", "Predict", lambda: predict(np.zeros((1, 4, 4, 1), np.float32)), CODE.INVALID_ARGUMENT),
    ("no_inputs", "Predict", lambda: predict(inputs={}), CODE.INVALID_ARGUMENT),
    ("extra_input", "Predict", lambda: predict(inputs={"images": tensor(sm.sample_images(1)),
                                                      "pixels": tensor(sm.sample_images(1))}), CODE.INVALID_ARGUMENT),
    ("wrong_input_name", "Predict", lambda: predict(inputs={"image": tensor(sm.sample_images(1))}),
     CODE.INVALID_ARGUMENT),
    ("batch_mismatch", "Predict", lambda: predict(name="pair", inputs={
        "a": tensor(np.zeros((2, 2), np.float32)), "b": tensor(np.zeros((3, 2), np.float32))}), CODE.INVALID_ARGUMENT),
    ("empty_batch", "Predict", lambda: predict(np.zeros((0, 8, 8, 1), np.float32)), CODE.OK),  # 0 rows out
    ("oversized_batch", "Predict", lambda: predict(sm.sample_images(MAX_BATCH + 1)), CODE.INVALID_ARGUMENT),
    ("over_max_request_bytes", "Predict", lambda: predict(np.zeros((300, 8, 8, 1), np.float32)),
     CODE.RESOURCE_EXHAUSTED),
    ("no_model_spec", "Predict", lambda: predict_pb2.PredictRequest(inputs={"images": tensor(sm.sample_images(1))}),
     CODE.INVALID_ARGUMENT),
    ("unknown_model", "Predict", lambda: predict(name="nope"), CODE.NOT_FOUND),
    ("empty_model_name", "Predict", lambda: predict(name=""), CODE.NOT_FOUND),
    ("traversal_model_name", "Predict", lambda: predict(name="../tiny"), CODE.NOT_FOUND),
    ("unknown_version", "Predict", lambda: predict(version=2), CODE.NOT_FOUND),
    ("negative_version", "Predict", lambda: predict(version=-1), CODE.NOT_FOUND),
    ("huge_version", "Predict", lambda: predict(version=2**63 - 1), CODE.NOT_FOUND),
    ("unknown_label", "Predict", lambda: predict(label="canary"), CODE.INVALID_ARGUMENT),
    ("odd_label", "Predict", lambda: predict(label="../1"), CODE.INVALID_ARGUMENT),
    ("unknown_signature", "Predict", lambda: predict(signature="nope"), CODE.FAILED_PRECONDITION),
    ("tensor_content_short", "Predict", lambda: predict(inputs={"images": shaped(
        types_pb2.DT_FLOAT, [1, 8, 8, 1], tensor_content=b"\0" * 255)}), CODE.INVALID_ARGUMENT),
    ("tensor_content_long", "Predict", lambda: predict(inputs={"images": shaped(
        types_pb2.DT_FLOAT, [1, 8, 8, 1], tensor_content=b"\0" * 260)}), CODE.INVALID_ARGUMENT),
    ("float_val_count", "Predict", lambda: predict(inputs={"images": shaped(
        types_pb2.DT_FLOAT, [2, 8, 8, 1], float_val=[0.5] * 65)}), CODE.INVALID_ARGUMENT),
    ("negative_dim", "Predict", lambda: predict(inputs={"images": shaped(types_pb2.DT_FLOAT, [-1, 8, 8, 1])}),
     CODE.INVALID_ARGUMENT),
    ("unknown_rank", "Predict", lambda: predict(inputs={"images": tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True))}),
     CODE.INVALID_ARGUMENT),
    ("huge_declared_shape", "Predict", lambda: predict(inputs={"images": shaped(
        types_pb2.DT_FLOAT, [2**40, 8, 8, 1], float_val=[0.5])}), CODE.INVALID_ARGUMENT),
    ("nan_values", "Predict", lambda: predict(NAN_IMAGE), CODE.OK),
    ("inf_values", "Predict", lambda: predict(INF_IMAGE), CODE.OK),
    ("unknown_output_filter", "Predict", lambda: predict_pb2.PredictRequest(
        model_spec=spec(), inputs={"images": tensor(sm.sample_images(1))}, output_filter=["logits"]),
     CODE.INVALID_ARGUMENT),
    ("duplicate_output_filter", "Predict", lambda: predict_pb2.PredictRequest(
        model_spec=spec(), inputs={"images": tensor(sm.sample_images(1))}, output_filter=["classes", "classes"]),
     CODE.INVALID_ARGUMENT),
    ("bytes_not_an_image", "Predict", lambda: predict(
        inputs={"images_bytes": tensor(np.array([b"not a png"], dtype=object))}, signature="serving_bytes"),
     CODE.INVALID_ARGUMENT),
    ("bytes_signature_gets_floats", "Predict", lambda: predict(
        inputs={"images_bytes": tensor(np.zeros((1,), np.float32))}, signature="serving_bytes"), CODE.INVALID_ARGUMENT),
    ("classify_no_examples", "Classify", lambda: classification_pb2.ClassificationRequest(
        model_spec=spec(signature="classify")), CODE.INVALID_ARGUMENT),
    ("classify_wrong_feature_length", "Classify", lambda: classification_pb2.ClassificationRequest(
        model_spec=spec(signature="classify"), input=example_input(length=3)), CODE.INVALID_ARGUMENT),
    ("classify_predict_signature", "Classify", lambda: classification_pb2.ClassificationRequest(
        model_spec=spec(), input=example_input()), CODE.INVALID_ARGUMENT),
    ("regress_unknown_signature", "Regress", lambda: regression_pb2.RegressionRequest(
        model_spec=spec(signature="nope"), input=example_input()), CODE.INVALID_ARGUMENT),
    ("multi_inference_two_models", "MultiInference", lambda: inference_pb2.MultiInferenceRequest(
        tasks=[inference_pb2.InferenceTask(model_spec=spec(signature="classify"),
                                           method_name="tensorflow/serving/classify"),
               inference_pb2.InferenceTask(model_spec=spec("pair", signature="regress"),
                                           method_name="tensorflow/serving/regress")],
        input=example_input()), CODE.INVALID_ARGUMENT),
    ("metadata_no_field", "GetModelMetadata", lambda: get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec()), CODE.INVALID_ARGUMENT),
    ("metadata_unknown_field", "GetModelMetadata", lambda: get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec(), metadata_field=["weights"]), CODE.INVALID_ARGUMENT),
    ("status_unknown_model", "GetModelStatus", lambda: get_model_status_pb2.GetModelStatusRequest(
        model_spec=spec("nope")), CODE.NOT_FOUND),
    ("status_unknown_version", "GetModelStatus", lambda: get_model_status_pb2.GetModelStatusRequest(
        model_spec=spec(version=3)), CODE.NOT_FOUND),
    # A config naming a model with a path in its name is refused before anything is unloaded.
    ("reload_traversal_name", "HandleReloadConfigRequest", lambda: reload_request("../../etc"), CODE.INVALID_ARGUMENT),
    ("reload_odd_name", "HandleReloadConfigRequest", lambda: reload_request("tiny name;rm"), CODE.INVALID_ARGUMENT),
    ("reload_no_model_list", "HandleReloadConfigRequest", lambda: model_management_pb2.ReloadConfigRequest(),
     CODE.INVALID_ARGUMENT),
    # issue 15: shapes numpy cannot hold answered INTERNAL; one string filled a whole shape
    ("dims_65", "Predict", lambda: predict(inputs={"images": shaped(types_pb2.DT_FLOAT, [1] * 65, float_val=[0.5])}),
     CODE.INVALID_ARGUMENT),
    ("dims_product_overflows", "Predict", lambda: predict(inputs={"images": shaped(
        types_pb2.DT_FLOAT, [0, 2**62, 2**62, 1])}), CODE.INVALID_ARGUMENT),
    ("one_string_for_a_batch", "Predict", lambda: predict(inputs={"images_bytes": shaped(
        types_pb2.DT_STRING, [MAX_BATCH], string_val=[PNG])}, signature="serving_bytes"), CODE.INVALID_ARGUMENT),
    ("reload_nul_in_base_path", "HandleReloadConfigRequest", lambda: reload_request("tiny", "ti\0ny"),
     CODE.INVALID_ARGUMENT),
]


@pytest.mark.parametrize("case, rpc, build, code", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_bad_input(server, case, rpc, build, code):
    stubs = (prediction_service_pb2_grpc.PredictionServiceStub(server.channel),
             model_service_pb2_grpc.ModelServiceStub(server.channel))
    call = next(getattr(s, rpc) for s in stubs if hasattr(s, rpc))
    try:
        call(build(), timeout=30)
        got, details = CODE.OK, ""
    except grpc.RpcError as err:
        got, details = err.code(), err.details()
    assert got == code, f"{case}: got {got.name} {details!r}"
    assert len(details) <= 1024


def test_grpc_garbage_bytes_are_rejected(server):
    """Bytes that are not a PredictRequest: grpcio cannot deserialize them and answers INTERNAL."""
    call = server.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff\xff not a protobuf", timeout=30)
    assert info.value.code() == CODE.INTERNAL


def test_empty_request_merged_into_a_padded_batch_gets_zero_rows(server):
    """An empty request first in a batch that needs padding: every request still gets its own rows
    (padding used to repeat the first task's first row, which an empty task does not have)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    sizes = [0, 1, 2]
    x = sm.sample_images(3, seed=5)
    alone = [list(stub.Predict(predict(x[:n]), timeout=30).outputs["class_ids"].int64_val) for n in sizes[1:]]
    with concurrent.futures.ThreadPoolExecutor(len(sizes)) as pool:
        futures = []
        for n in sizes:  # the empty one first, then the others inside the 100 ms batching window
            futures.append(pool.submit(stub.Predict, predict(x[:n]), timeout=30))
            time.sleep(0.02)
        outs = [f.result() for f in futures]
    assert [[d.size for d in o.outputs["probabilities"].tensor_shape.dim] for o in outs] == [[0, 10], [1, 10], [2, 10]]
    assert [list(o.outputs["class_ids"].int64_val) for o in outs[1:]] == alone


# ----------------------------------------------------------------------------- REST
GOOD_ROW = sm.sample_images(1).tolist()


def with_pixel(value):
    """One good image with its first pixel replaced by `value`."""
    rows = sm.sample_images(1).tolist()
    rows[0][0][0][0] = value
    return rows


# (case id, method, path, body: dict -> JSON, bytes -> raw, None -> no body, expected HTTP status)
REST_CASES = [
    ("malformed_json", "POST", "/v1/models/tiny:predict", b"{not json", 400),
    ("invalid_utf8", "POST", "/v1/models/tiny:predict", b'{"instances": ["\xff\xfe"]}', 400),
    ("deeply_nested_json", "POST", "/v1/models/tiny:predict", b'{"instances": ' + b"[" * 20000 + b"]" * 20000 + b"}",
     400),
    ("body_not_object", "POST", "/v1/models/tiny:predict", [1, 2], 400),
    ("empty_body", "POST", "/v1/models/tiny:predict", b"", 400),
    ("both_instances_and_inputs", "POST", "/v1/models/tiny:predict", {"instances": GOOD_ROW, "inputs": GOOD_ROW}, 400),
    ("neither_instances_nor_inputs", "POST", "/v1/models/tiny:predict", {"signature_name": ""}, 400),
    ("empty_instances", "POST", "/v1/models/tiny:predict", {"instances": []}, 400),
    ("wrong_shape", "POST", "/v1/models/tiny:predict", {"instances": [[[0.5] * 4] * 4]}, 400),
    ("wrong_rank", "POST", "/v1/models/tiny:predict", {"instances": [0.5, 0.5]}, 400),
    ("ragged", "POST", "/v1/models/tiny:predict", {"instances": [[[0.5]], [[0.5, 0.5]]]}, 400),
    ("strings_for_floats", "POST", "/v1/models/tiny:predict", {"instances": [[["a"] * 8] * 8]}, 400),
    ("missing_named_input", "POST", "/v1/models/tiny:predict", {"instances": [{"pixels": GOOD_ROW[0]}]}, 400),
    ("extra_named_input", "POST", "/v1/models/tiny:predict",
     {"inputs": {"images": GOOD_ROW, "pixels": GOOD_ROW}}, 400),
    ("batch_mismatch", "POST", "/v1/models/pair:predict", {"inputs": {"a": [[1, 2], [3, 4]], "b": [[1, 2]]}}, 400),
    ("oversized_batch", "POST", "/v1/models/tiny:predict",
     {"instances": sm.sample_images(MAX_BATCH + 1).tolist()}, 400),
    ("over_max_request_bytes", "POST", "/v1/models/tiny:predict",
     {"instances": np.zeros((40, 8, 8, 1)).tolist(), "pad": "x" * MAX_REQUEST_BYTES}, 413),
    ("nan_values", "POST", "/v1/models/tiny:predict", b'{"instances": [' + b"[" + b",".join(
        [b"[" + b",".join([b"[NaN]"] * 8) + b"]"] * 8) + b"]]}", 200),
    ("infinity_values", "POST", "/v1/models/tiny:predict", b'{"instances": [' + b"[" + b",".join(
        [b"[" + b",".join([b"[Infinity]", b"[-Infinity]"] * 4) + b"]"] * 8) + b"]]}", 200),
    ("unknown_signature", "POST", "/v1/models/tiny:predict", {"signature_name": "nope", "instances": GOOD_ROW}, 400),
    ("signature_not_a_string", "POST", "/v1/models/tiny:predict", {"signature_name": 3, "instances": GOOD_ROW}, 400),
    ("wrong_b64", "POST", "/v1/models/tiny:predict",
     {"signature_name": "serving_bytes", "instances": [{"b64": "***not base64***"}]}, 400),
    ("b64_extra_keys", "POST", "/v1/models/tiny:predict",
     {"signature_name": "serving_bytes", "instances": [{"b64": "AAAA", "x": 1}]}, 400),
    ("non_image_bytes", "POST", "/v1/models/tiny:predict",
     {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(b"hello world").decode()}]}, 400),
    ("unknown_model", "POST", "/v1/models/nope:predict", {"instances": GOOD_ROW}, 404),
    ("unknown_version", "POST", "/v1/models/tiny/versions/2:predict", {"instances": GOOD_ROW}, 404),
    ("huge_version", "POST", "/v1/models/tiny/versions/99999999999999999999999:predict", {"instances": GOOD_ROW}, 400),
    ("unknown_label", "POST", "/v1/models/tiny/labels/canary:predict", {"instances": GOOD_ROW}, 400),
    ("negative_version", "POST", "/v1/models/tiny/versions/-1:predict", {"instances": GOOD_ROW}, 400),
    ("dotdot_model", "POST", "/v1/models/..:predict", {"instances": GOOD_ROW}, 404),
    # routes match the path as sent, so an encoded slash is part of a (made-up) model name: 404
    ("encoded_slash_model", "POST", "/v1/models/..%2F..%2Fetc:predict", {"instances": GOOD_ROW}, 404),
    ("encoded_dotdot_traversal", "GET", "/v1/models/%2E%2E/%2E%2E/%2E%2E/etc/passwd", None, 400),
    ("nul_in_model_name", "POST", "/v1/models/ti%00ny:predict", {"instances": GOOD_ROW}, 404),
    ("unicode_model_name", "GET", "/v1/models/%E2%98%83", None, 404),
    ("very_long_model_name", "GET", "/v1/models/" + "a" * 4000, None, 404),
    ("status_unknown_version", "GET", "/v1/models/tiny/versions/5", None, 404),
    ("metadata_unknown_model", "GET", "/v1/models/nope/metadata", None, 404),
    ("get_on_predict", "GET", "/v1/models/tiny:predict", None, 400),
    ("post_on_status", "POST", "/v1/models/tiny", {"instances": GOOD_ROW}, 400),
    ("put_on_predict", "PUT", "/v1/models/tiny:predict", {"instances": GOOD_ROW}, 400),
    ("unknown_verb", "POST", "/v1/models/tiny:explode", {"instances": GOOD_ROW}, 400),
    ("classify_examples_not_a_list", "POST", "/v1/models/tiny:classify",
     {"signature_name": "classify", "examples": {"images": [0.5]}}, 400),
    ("classify_bad_feature_type", "POST", "/v1/models/tiny:classify",
     {"signature_name": "classify", "examples": [{"images": [True, None]}]}, 400),
    ("classify_wrong_feature_length", "POST", "/v1/models/tiny:classify",
     {"signature_name": "classify", "examples": [{"images": [0.5, 0.5]}]}, 400),
    ("regress_predict_signature", "POST", "/v1/models/tiny:regress", {"examples": [{"images": [0.5] * 64}]}, 400),
    # issue 15: non-numbers taken as pixels (null -> NaN and a confident answer, true -> 1, "0.5" -> 0.5)
    ("null_pixel", "POST", "/v1/models/tiny:predict", {"instances": with_pixel(None)}, 400),
    ("true_pixel", "POST", "/v1/models/tiny:predict", {"instances": with_pixel(True)}, 400),
    ("string_pixel", "POST", "/v1/models/tiny:predict", {"instances": with_pixel("0.5")}, 400),
    ("nan_string_pixel", "POST", "/v1/models/tiny:predict", {"instances": with_pixel("nan")}, 400),
    ("null_pixel_columnar", "POST", "/v1/models/tiny:predict", {"inputs": {"images": with_pixel(None)}}, 400),
    # issue 15: client errors that were answered 500
    ("numbers_nested_65_deep", "POST", "/v1/models/tiny:predict", b'{"instances": ' + b"[" * 65 + b"0.5"
     + b"]" * 65 + b"}", 400),
    ("numbers_nested_1000_deep", "POST", "/v1/models/tiny:predict", b'{"instances": ' + b"[" * 1000 + b"0.5"
     + b"]" * 1000 + b"}", 400),
    ("strings_nested_600_deep", "POST", "/v1/models/tiny:predict", b'{"signature_name": "serving_bytes", '
     b'"instances": ' + b"[" * 600 + b'{"b64": "AAAA"}' + b"]" * 600 + b"}", 400),
    ("integer_of_400_digits", "POST", "/v1/models/tiny:predict", b'{"instances": [[[[' + b"9" * 400 + b"]]]]}", 400),
    ("classify_signature_name_list", "POST", "/v1/models/tiny:classify",
     {"signature_name": ["classify"], "examples": [{"images": [0.5] * 64}]}, 400),
    ("regress_signature_name_object", "POST", "/v1/models/tiny:regress",
     {"signature_name": {"a": 1}, "examples": [{"images": [0.5] * 64}]}, 400),
    # issue 15, 11: only ASCII digits are versions (int("١") is 1)
    ("arabic_indic_digit_version", "POST", "/v1/models/tiny/versions/%D9%A1:predict", {"instances": GOOD_ROW}, 400),
    ("superscript_version_status", "GET", "/v1/models/tiny/versions/%C2%B9", None, 400),
    ("fullwidth_digit_version_metadata", "GET", "/v1/models/tiny/versions/%EF%BC%91/metadata", None, 400),
]


def rest(server, method, path, body, timeout=30):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    return requests.request(method, server.rest_url + path, data=data, timeout=timeout,
                            headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("case, method, path, body, status", REST_CASES, ids=[c[0] for c in REST_CASES])
def test_rest_bad_input(server, case, method, path, body, status):
    resp = rest(server, method, path, body)
    assert resp.status_code == status, f"{case}: got {resp.status_code} {resp.text[:300]!r}"
    if status != 200:
        assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
        assert isinstance(resp.json()["error"], str) and len(resp.json()["error"]) <= 1024


def test_a_corrupt_gzip_body_is_a_client_error(server):
    """A body that says Content-Encoding: gzip but is not gzip was answered 500."""
    resp = requests.post(server.rest_url + "/v1/models/tiny:predict", data=b"\x1f\x8b\x08\x00 not gzip at all",
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout=30)
    assert resp.status_code == 400 and "cannot read the request body" in resp.json()["error"]


def test_malformed_http_is_answered_400_without_a_traceback_in_the_log(server):
    """Each malformed HTTP request logged an ERROR with a traceback ("Error handling request")."""
    import socket

    before = server.log()
    for raw in (b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET /v1/models/tiny HTTP/1.1\r\nBad Header Line\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            sock.sendall(raw)
            assert sock.recv(4096).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert requests.get(server.rest_url + "/v1/models/tiny", timeout=30).status_code == 200
    time.sleep(0.5)  # the log is written by another process
    added = server.log()[len(before):]
    assert "Error handling request" not in added and "Traceback" not in added


def test_long_made_up_model_names_share_one_short_label(server):
    """Only the number of names was capped, not their length: 256 Predicts to names of 100,000
    characters made each metrics scrape 974 MB. Names of models the server does not serve now
    never get a label of their own."""
    from serving.server.metrics import OTHER_MODEL_LABEL

    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    before = requests.get(server.rest_url + "/metrics", timeout=30).text
    names = [f"{i}_" + "x" * 20_000 for i in range(20)] + ["not_served"]
    assert {_code(stub.Predict, predict(name=name)) for name in names} == {CODE.NOT_FOUND}
    text = requests.get(server.rest_url + "/metrics", timeout=30).text
    labels = set(re.findall(r'model_name="([^"]*)"', text))
    assert max(map(len, labels)) <= 128 and "not_served" not in labels and OTHER_MODEL_LABEL in labels
    assert len(text) < len(before) + 20_000  # the 21 requests added counts, not 21 label sets


def test_made_up_model_names_do_not_grow_metrics_without_bound(server):
    """Each request's model name became a metrics label: a flood of made-up names grew the server's
    memory and /metrics without limit. Now at most 256 names not yet served share one label."""
    from serving.server.metrics import MAX_REQUEST_MODEL_LABELS, OTHER_MODEL_LABEL

    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    flood = MAX_REQUEST_MODEL_LABELS + 200
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _code(stub.Predict, predict(name=f"made_up_{i}")), range(flood)))
    assert set(codes) == {CODE.NOT_FOUND}
    assert stub.Predict(predict(), timeout=30).model_spec.name == "tiny"
    text = requests.get(server.rest_url + "/metrics", timeout=30).text
    labels = set(re.findall(r'request_count\{model_name="([^"]*)"', text))
    assert {"tiny", OTHER_MODEL_LABEL} <= labels
    assert len(labels) <= MAX_REQUEST_MODEL_LABELS + 1


def _code(call, request):
    try:
        call(request, timeout=30)
        return CODE.OK
    except grpc.RpcError as err:
        return err.code()


# ----------------------------------------------------------------------------- afterwards
def test_after_the_matrix_the_same_process_answers_correctly(server, digits):
    pid, starts = server.pid, server.starts
    assert server.proc.poll() is None and starts == 1
    x = digits.x_test[:MAX_BATCH]
    expected = tf.saved_model.load(str(server.workdir / "tiny" / "1")).signatures["serving_default"](
        images=tf.constant(x))["class_ids"].numpy()
    out = prediction_service_pb2_grpc.PredictionServiceStub(server.channel).Predict(predict(x), timeout=30)
    assert list(out.outputs["class_ids"].int64_val) == expected.tolist()
    resp = rest(server, "POST", "/v1/models/tiny:predict", {"instances": x.tolist()})
    assert resp.status_code == 200
    assert [row["class_ids"] for row in resp.json()["predictions"]] == expected.tolist()
    pair = rest(server, "POST", "/v1/models/pair:predict", {"inputs": {"a": [[1, 2]], "b": [[3, 4]]}})
    assert pair.json() == {"outputs": [[4.0, 6.0]]}
    assert server.pid == pid and server.proc.poll() is None and server.starts == 1
    assert rel.unexpected_tracebacks(server.log()) == []
    assert "Error handling request" not in server.log()  # aiohttp's line for an exception we let escape
    cases = len(GRPC_CASES) + 1 + len(REST_CASES)
    assert cases >= 40
    rel.record("bad_input", {"cases": cases, "grpc_cases": len(GRPC_CASES) + 1, "rest_cases": len(REST_CASES),
                             "server_pid_unchanged": True, "tracebacks_in_log": 0})
