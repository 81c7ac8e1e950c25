"""REST API of the embedded server over real HTTP (urllib as a third-party client would)."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

import _serving_models as sm
from serving.server.model_server import ModelServer, ServerOptions


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_models")
    sm.write_model(str(root / "tiny"), 1, bias=1.0)
    sm.write_model(str(root / "tiny"), 2, bias=2.0)
    (root / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" '
        'model_version_policy { all {} } version_labels { key: "stable" value: 1 } } }')
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    srv = ModelServer(ServerOptions(port=0, rest_api_port=0, model_config_file=str(root / "models.config"),
                                    monitoring_config_file=str(root / "monitoring.config"),
                                    file_system_poll_wait_seconds=0, max_request_bytes=200_000))
    srv.start()
    yield srv
    srv.stop()


def call(server, path, body=None, method=None, raw=None):
    """(HTTP status, parsed JSON or text) for a request to the server's REST port."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data,
                                 method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, ctype, text = resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        status, ctype, text = err.code, err.headers["Content-Type"], err.read().decode()
    return status, (json.loads(text) if ctype.startswith("application/json") else text)


def test_status_routes(server):
    status, body = call(server, "/v1/models/tiny")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert [s["version"] for s in call(server, "/v1/models/tiny/versions/1")[1]["model_version_status"]] == ["1"]
    assert [s["version"] for s in call(server, "/v1/models/tiny/labels/stable")[1]["model_version_status"]] == ["1"]
    assert call(server, "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})


def test_metadata_routes(server):
    status, body = call(server, "/v1/models/tiny/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "tiny", "signature_name": "", "version": "2"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert sigs["regress"]["method_name"] == "tensorflow/serving/regress"
    assert call(server, "/v1/models/tiny/versions/1/metadata")[1]["model_spec"]["version"] == "1"
    assert call(server, "/v1/models/tiny/labels/stable/metadata")[1]["model_spec"]["version"] == "1"


def test_predict_row_and_columnar(server):
    x = sm.sample_images(2)
    status, body = call(server, "/v1/models/tiny:predict", {"instances": x.tolist()})
    assert status == 200
    rows = body["predictions"]
    assert len(rows) == 2 and set(rows[0]) == {"probabilities", "class_ids", "classes"}
    assert rows[0]["classes"] == sm.CLASS_NAMES[rows[0]["class_ids"]]
    named = call(server, "/v1/models/tiny/versions/1:predict",
                 {"instances": [{"images": img.tolist()} for img in x]})[1]["predictions"]
    status, cols = call(server, "/v1/models/tiny/labels/stable:predict", {"inputs": {"images": x.tolist()}})
    assert status == 200
    np.testing.assert_allclose(cols["outputs"]["probabilities"], [r["probabilities"] for r in named], rtol=1e-6)
    assert call(server, "/v1/models/tiny:predict", {"inputs": x.tolist()})[1]["outputs"]["class_ids"] == \
        [r["class_ids"] for r in rows]


def test_predict_b64_bytes_signature(server):
    png = tf.io.encode_png(tf.zeros([8, 8, 1], tf.uint8)).numpy()
    status, body = call(server, "/v1/models/tiny:predict", {
        "signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(png).decode()}]})
    assert status == 200 and len(body["predictions"]) == 1


def test_classify_and_regress(server):
    x = sm.sample_images(2)
    examples = [{"images": img.ravel().tolist()} for img in x]
    status, body = call(server, "/v1/models/tiny:classify", {"signature_name": "classify", "examples": examples})
    assert status == 200
    assert [label for label, _ in body["results"][0]] == sm.CLASS_NAMES
    assert sum(score for _, score in body["results"][0]) == pytest.approx(1.0, rel=1e-5)
    status, body = call(server, "/v1/models/tiny/versions/1:regress",
                        {"signature_name": "regress", "examples": examples})
    assert status == 200
    np.testing.assert_allclose(body["results"], x.sum(axis=(1, 2, 3)) + 1.0, rtol=1e-5)
    # context is merged into each example
    status, body = call(server, "/v1/models/tiny:regress", {"signature_name": "regress", "examples": [{}],
                                                             "context": examples[0]})
    assert body["results"][0] == pytest.approx(float(x[0].sum()) + 2.0, rel=1e-5)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/tiny/versions/9:predict", {"instances": [1]}, 404, "Specific(tiny, 9)"),
    ("/v1/models/tiny/labels/canary:predict", {"instances": [1]}, 400, "Unrecognized servable version label: canary"),
    ("/v1/models/tiny:predict", {"signature_name": "nope", "instances": [1]}, 400,
     'Serving signature key "nope" not found.'),
    ("/v1/models/tiny:predict", {"instances": [[[[0.5]]]]}, 400, "expected shape [-1,8,8,1]"),
    ("/v1/models/tiny:predict", {"inputs": {"pixels": [1.0]}}, 400, "pixels"),
    ("/v1/models/tiny:predict", {"instances": [[1], [1, 2]]}, 400, "images"),
    ("/v1/models/tiny:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/tiny:predict", {"inputs": [1], "instances": [1]}, 400, "only one of"),
    ("/v1/models/tiny:classify", {"examples": [{"images": [0.0]}]}, 400, "Expected classification signature"),
    ("/v1/models/tiny:classify", {"signature_name": "classify", "examples": []}, 400, "'examples'"),
    ("/v1/models/tiny/versions/x:predict", {"instances": [1]}, 400, "Malformed request"),
    ("/v1/nothing/here", {"instances": [1]}, 400, "Malformed request"),
    ("/v1/models/tiny/versions/99999999999999999999:predict", {"instances": [1]}, 400, "Failed to convert version"),
])
def test_errors_map_to_http_status(server, path, body, status, fragment):
    got_status, got = call(server, path, body)
    assert got_status == status
    assert fragment in got["error"]


def test_malformed_json_and_get_on_verb(server):
    status, body = call(server, "/v1/models/tiny:predict", raw=b"{not json")
    assert status == 400 and "JSON Parse error" in body["error"]
    assert call(server, "/v1/models/tiny:predict", method="GET")[0] == 400
    status, body = call(server, "/v1/models/tiny:predict", raw=b'{"instances": [NaN]}')
    assert status == 400 and "expected shape" in body["error"]  # NaN itself is accepted JSON


def test_metrics_endpoint_has_tf_serving_names(server):
    call(server, "/v1/models/tiny:predict", {"instances": sm.sample_images(1).tolist()})
    status, text = call(server, "/metrics")
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="tiny",status="OK"}' in text
    # a name the server does not serve is counted, under one shared label (issue 15, defect 2)
    assert ':tensorflow:serving:request_count{model_name="<other>",status="NOT_FOUND"}' in text
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST",le=' in text
    assert ':tensorflow:serving:runtime_latency_count{API="predict",model_name="tiny",runtime="TF2"}' in text
    assert ":tensorflow:serving:model_warmup_latency_count" in text


def test_request_over_max_request_bytes_is_refused(server):
    status, body = call(server, "/v1/models/tiny:predict", raw=b'{"instances": [' + b"0," * 150_000 + b"0]}")
    assert status == 413 and "Too Large" in body["error"]  # refused before the body is parsed


def chunked_call(server, path, pieces):
    """(status, parsed JSON) of a POST whose body is sent as `pieces`, in chunked transfer encoding
    and a few ms apart, so that the server reads it in several parts with no Content-Length."""
    import http.client
    import time

    def slowly():
        for piece in pieces:
            yield piece
            time.sleep(0.005)
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        conn.request("POST", path, slowly(), {"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_body_read_in_parts_is_the_whole_body(server):
    x = sm.sample_images(40)  # ~100 kB of JSON: several reads however it is sent
    raw = json.dumps({"instances": x.tolist()}).encode()
    pieces = [raw[i:i + 7_000] for i in range(0, len(raw), 7_000)]
    assert call(server, "/v1/models/tiny:predict", raw=raw) == chunked_call(server, "/v1/models/tiny:predict", pieces)
    status, body = chunked_call(server, "/v1/models/tiny:predict", [b""])  # an empty body, as read() gave it
    assert status == 400 and "must be a JSON object" in body["error"]


def test_chunked_body_over_max_request_bytes_is_refused(server):
    # No Content-Length to refuse it by: the limit is counted as the parts arrive.
    pieces = [b'{"instances": ['] + [b"0," * 25_000] * 5 + [b"0]}"]
    status, body = chunked_call(server, "/v1/models/tiny:predict", pieces)
    assert status == 413 and "Too Large" in body["error"]


def raw_call(server, path, data):
    """(status, Content-Type, raw body bytes) of a POST."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_numeric_outputs_are_written_from_numpy_with_the_same_json_shape(server):
    x = sm.sample_images(3)
    status, ctype, raw = raw_call(server, "/v1/models/tiny:predict", json.dumps({"instances": x.tolist()}).encode())
    assert status == 200 and ctype == "application/json; charset=utf-8"
    rows = json.loads(raw)["predictions"]
    assert [sorted(r) for r in rows] == [["class_ids", "classes", "probabilities"]] * 3
    assert all(isinstance(r["class_ids"], int) and isinstance(r["classes"], str) for r in rows)
    assert all(len(r["probabilities"]) == sm.K and all(isinstance(p, float) for p in r["probabilities"]) for r in rows)
    assert b"NaN" not in raw and b" " not in raw  # orjson's compact output, no fallback
    probs = tf.nn.softmax(tf.matmul(tf.reshape(x, [3, -1]), sm._TinyModel(1.0, 0).w)).numpy()
    got = np.array([r["probabilities"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(got, probs, rtol=1e-5)
    cols = json.loads(raw_call(server, "/v1/models/tiny:predict", json.dumps({"inputs": x.tolist()}).encode())[2])
    assert set(cols) == {"outputs"} and cols["outputs"]["class_ids"] == [r["class_ids"] for r in rows]
    np.testing.assert_array_equal(np.array(cols["outputs"]["probabilities"], np.float32), got)


def test_nan_outputs_are_written_as_nan(server):
    x = sm.sample_images(2).tolist()
    x[1][0][0][0] = float("nan")
    for body in ({"instances": x}, {"inputs": x}):
        status, _, raw = raw_call(server, "/v1/models/tiny:predict", json.dumps(body).encode())
        assert status == 200 and b"NaN" in raw and b"null" not in raw  # as json.dumps and TF Serving write
        out = json.loads(raw)
        probs = ([r["probabilities"] for r in out["predictions"]] if "predictions" in out
                 else out["outputs"]["probabilities"])
        assert np.isnan(probs[1]).all() and np.isfinite(probs[0]).all()
