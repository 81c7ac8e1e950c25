"""serving.Client (gRPC) and serving.RestClient against a real `python -m serving` subprocess.

The server serves tiny SavedModels (tests/serving/_serving_models.py): `tiny` v1 (bias 1) and v2 (bias 2)
with label stable -> 1, so regress = sum(pixels) + bias tells which version answered.
"""
from __future__ import annotations

import json
import time

import grpc
import numpy as np
import orjson
import pytest

import _serving_models as sm
from serving import Client, ClientError, RestClient
from serving.client.grpc_client import load_server_config, signature_specs
from serving.client.rest_client import FORMATS
from serving.json_body import dumps_json
from cnnzoo.net import free_ports
from serving.server.process import ServerProcess

CONFIG = """
model_config_list {
  config { name: "tiny" base_path: "tiny" model_platform: "tensorflow"
           model_version_policy { all {} } version_labels { key: "stable" value: 1 } }
}"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("client_models")
    sm.write_model(str(root / "tiny"), 1, bias=1.0)
    sm.write_model(str(root / "tiny"), 2, bias=2.0)
    (root / "models.config").write_text(CONFIG)
    return root


@pytest.fixture(scope="module")
def server(repo, subprocess_env):
    with ServerProcess(repo, ["--model_config_file", str(repo / "models.config"),
                              "--file_system_poll_wait_seconds", "0"], env=subprocess_env) as server:
        with Client(server.target, timeout=30) as client:
            client.wait_until_available("tiny", timeout=60, version=2)
        yield server.grpc_port, server.rest_port


@pytest.fixture(scope="module")
def grpc_client(server):
    with Client(f"127.0.0.1:{server[0]}", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def rest_client(server):
    with RestClient(f"http://127.0.0.1:{server[1]}", timeout=30) as c:
        yield c


@pytest.fixture(params=["grpc", "rest"])
def client(request, grpc_client, rest_client):
    return grpc_client if request.param == "grpc" else rest_client


IMAGES = sm.sample_images(5, seed=3)
SUMS = IMAGES.reshape(5, -1).sum(axis=1)


# ------------------------------------------------------------------------------- with a server

def test_predict_same_answer_over_grpc_rest_row_and_columnar(grpc_client, rest_client):
    a = grpc_client.predict("tiny", IMAGES)
    b = rest_client.predict("tiny", IMAGES)
    c = rest_client.predict("tiny", {"images": IMAGES}, format="row")
    assert set(a) == set(b) == set(c) == {"probabilities", "class_ids", "classes"}
    assert a["probabilities"].dtype == np.float32 and a["probabilities"].shape == (5, sm.K)
    np.testing.assert_allclose(a["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a["class_ids"], a["probabilities"].argmax(axis=1))
    assert list(a["classes"]) == [sm.CLASS_NAMES[i].encode() for i in a["class_ids"]]
    for other in (b, c):
        np.testing.assert_allclose(other["probabilities"], a["probabilities"], rtol=1e-6)
        assert other["class_ids"].dtype == np.int64 and other["classes"].dtype == object
        np.testing.assert_array_equal(other["class_ids"], a["class_ids"])
        assert list(other["classes"]) == list(a["classes"])


def test_png_bytes_through_the_bytes_signature(client, grpc_client):
    import io

    from PIL import Image
    pixels = (IMAGES[:3, :, :, 0] * 255).round().astype(np.uint8)
    pngs = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    # gRPC sends a DT_STRING tensor, REST {"b64": ...} values
    out = client.predict("tiny", {"images_bytes": np.array(pngs, dtype=object)}, signature="serving_bytes")
    same = grpc_client.predict("tiny", (pixels / 255.0)[..., np.newaxis].astype(np.float32))
    np.testing.assert_allclose(out["probabilities"], same["probabilities"], rtol=1e-4, atol=1e-6)


def test_output_filter(client):
    out = client.predict("tiny", IMAGES, output_filter=["class_ids"])
    assert list(out) == ["class_ids"] and out["class_ids"].shape == (5,)


@pytest.mark.parametrize("spec,bias", [({}, 2.0), ({"version": 1}, 1.0), ({"version": 2}, 2.0),
                                       ({"label": "stable"}, 1.0)])
def test_version_and_label_pick_the_servable(client, spec, bias):
    np.testing.assert_allclose(client.regress("tiny", IMAGES, **spec), SUMS + bias, rtol=1e-5)


def test_classify_and_multi_inference_match_predict(client, grpc_client):
    probs = grpc_client.predict("tiny", IMAGES)["probabilities"]
    result = client.classify("tiny", IMAGES)
    assert result["classes"].tolist() == [sm.CLASS_NAMES] * 5
    np.testing.assert_allclose(result["scores"], probs, rtol=1e-5)
    both = client.multi_inference("tiny", IMAGES, version=1)
    np.testing.assert_allclose(both["classify"]["scores"], probs, rtol=1e-5)  # weights equal in v1/v2
    np.testing.assert_allclose(both["regress"], SUMS + 1.0, rtol=1e-5)


def test_classify_takes_example_dicts_and_context(client):
    flat = IMAGES.reshape(5, -1)
    examples = [{"images": row} for row in flat]
    np.testing.assert_allclose(client.regress("tiny", examples), SUMS + 2.0, rtol=1e-5)
    # the context fills features the examples lack (here: the whole image)
    ctx = client.regress("tiny", [{"other": [1.0]}, {"other": [2.0]}], context={"images": flat[0]})
    np.testing.assert_allclose(ctx, [SUMS[0] + 2.0] * 2, rtol=1e-5)


def test_metadata_is_the_same_dict_from_both_and_parses(grpc_client, rest_client):
    a, b = grpc_client.metadata("tiny", 1), rest_client.metadata("tiny", 1)
    assert a == b
    assert a["model_spec"]["name"] == "tiny" and a["model_spec"]["version"] == "1"
    specs = signature_specs(a)
    assert specs["serving_default"]["inputs"] == {"images": ("DT_FLOAT", [-1, sm.H, sm.W, sm.C])}
    assert specs["classify"]["method"] == "tensorflow/serving/classify"
    assert grpc_client.metadata("tiny", label="stable")["model_spec"]["version"] == "1"


def test_status_and_wait(client):
    assert [(s["version"], s["state"]) for s in client.status("tiny")] == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert client.status("tiny", 2) == [{"version": 2, "state": "AVAILABLE", "error_code": "OK",
                                         "error_message": ""}]
    assert client.wait_until_available("tiny", timeout=5, version=1)


@pytest.mark.parametrize("call,code,status,text", [
    (lambda c: c.predict("nope", IMAGES), grpc.StatusCode.NOT_FOUND, 404, "Latest(nope)"),
    (lambda c: c.predict("tiny", IMAGES, version=9), grpc.StatusCode.NOT_FOUND, 404, "Specific(tiny, 9)"),
    (lambda c: c.predict("tiny", IMAGES, label="beta"), grpc.StatusCode.INVALID_ARGUMENT, 400, "label: beta"),
    (lambda c: c.predict("tiny", {"images": IMAGES[:, :4]}), grpc.StatusCode.INVALID_ARGUMENT, 400, "shape"),
    (lambda c: c.predict("tiny", {"pixels": IMAGES}), grpc.StatusCode.INVALID_ARGUMENT, 400, "images"),
    (lambda c: c.predict("tiny", IMAGES, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION, 400,
     'signature key "nope" not found'),
    (lambda c: c.status("nope"), grpc.StatusCode.NOT_FOUND, 404, "nope"),
])
def test_server_errors_carry_code_status_and_message(client, call, code, status, text):
    with pytest.raises(ClientError) as info:
        call(client)
    assert info.value.code is code and info.value.http_status == status
    assert text in info.value.message
    assert info.value.target in (client.target if isinstance(client, Client) else client.base_url,)


def test_many_requests_in_flight_keep_order(client):
    batches = [sm.sample_images(3, seed=i) for i in range(24)]
    futures = [client.predict_async("tiny", b) for b in batches[:4]]
    for f in futures:
        assert f.result(timeout=30)["probabilities"].shape == (3, sm.K)
    results = client.predict_many("tiny", batches, max_in_flight=6)
    assert len(results) == 24
    for b, r in zip(batches, results):  # each answer belongs to its own batch
        np.testing.assert_array_equal(r["class_ids"], client.predict("tiny", b)["class_ids"])
    bad = client.predict_async("tiny", {"images": batches[0][:, :2]})
    with pytest.raises(ClientError) as info:
        bad.result(timeout=30)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_one_client_shared_by_threads(client):
    from concurrent.futures import ThreadPoolExecutor
    batches = [sm.sample_images(2, seed=100 + i) for i in range(16)]

    def work(i: int) -> bool:
        out = client.regress("tiny", batches[i], version=1)
        return bool(np.allclose(out, batches[i].reshape(2, -1).sum(axis=1) + 1.0, rtol=1e-5))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(16)))


@pytest.mark.parametrize("make", [lambda port: Client(f"127.0.0.1:{port[0]}", "tiny", timeout=30),
                                  lambda port: RestClient(f"http://127.0.0.1:{port[1]}", "tiny", timeout=30)])
def test_a_default_model_serves_calls_that_name_none(server, make, grpc_client):
    """A newcomer's first guess, Client("localhost:8500", "digits"), used to be a TypeError."""
    expected = grpc_client.predict("tiny", IMAGES)
    with make(server) as c:
        assert "model_name='tiny'" in repr(c)
        for answer in (c.predict(IMAGES), c.predict(inputs=IMAGES), c.predict_async(IMAGES).result(),
                       c.predict_many([IMAGES, IMAGES])[1]):
            assert answer.keys() == expected.keys()
            np.testing.assert_allclose(answer["probabilities"], expected["probabilities"], rtol=1e-5)
        np.testing.assert_allclose(c.regress(IMAGES, version=2), SUMS + 2, rtol=1e-5)
        assert c.classify(IMAGES)["scores"].shape[0] == 5
        assert set(c.multi_inference(IMAGES)) == {"classify", "regress"}
        assert c.metadata()["model_spec"]["name"] == "tiny" and c.status(version=2)[0]["version"] == 2
        assert c.wait_until_available(timeout=5)
        # a model named on the call still wins
        with pytest.raises(ClientError, match="nope"):
            c.predict("nope", IMAGES)


@pytest.mark.parametrize("cls", [Client, RestClient])
@pytest.mark.parametrize("call,match", [
    (lambda c: c.predict(IMAGES), r"no model named: pass it first .*model_name='digits'"),
    (lambda c: c.status(), "no model named"),
    (lambda c: c.predict("tiny"), r"inputs missing \(model 'tiny' named"),
    (lambda c: c.predict(), "inputs missing"),
])
def test_without_a_default_model_a_call_must_name_one(cls, call, match):
    with (cls("127.0.0.1:9") if cls is Client else cls("http://127.0.0.1:9")) as client:
        with pytest.raises(ValueError, match=match):
            call(client)
    with pytest.raises(ValueError, match="model must be a non-empty model name"):
        cls("127.0.0.1:9" if cls is Client else "http://127.0.0.1:9", "")


def test_deadline_names_address_and_hint(server):
    with Client(f"127.0.0.1:{server[0]}") as c:
        with pytest.raises(ClientError) as info:
            # 4 MB of images: a real answer needs ~0.1 s, far over the 1 ms deadline
            c.predict("tiny", {"images": sm.sample_images(16384)}, timeout=1e-3)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"127.0.0.1:{server[0]}" in info.value.message and "timeout" in info.value.message


def test_reload_from_file_resolves_relative_paths(repo, grpc_client, rest_client, tmp_path):
    sm.write_model(str(tmp_path / "extra"), 3, bias=3.0)
    cfg = tmp_path / "new.config"
    # "extra" is relative to the new file's folder, "tiny" absolute: both must resolve.
    cfg.write_text(CONFIG.replace('base_path: "tiny"', f'base_path: "{repo / "tiny"}"').rstrip("}")
                   + ' config { name: "extra" base_path: "extra" model_platform: "tensorflow" }\n}')
    try:
        grpc_client.reload(cfg)
        np.testing.assert_allclose(rest_client.regress("extra", IMAGES), SUMS + 3.0, rtol=1e-5)
        with pytest.raises(ClientError) as info:
            rest_client.reload(cfg)
        assert info.value.code is grpc.StatusCode.UNIMPLEMENTED and "gRPC" in info.value.message
    finally:
        grpc_client.reload(repo / "models.config")
    with pytest.raises(ClientError) as info:
        grpc_client.status("extra")
    assert info.value.code is grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------ no server needed

@pytest.mark.parametrize("make", [
    lambda p: Client(f"127.0.0.1:{p}", timeout=2),
    lambda p: RestClient(f"http://127.0.0.1:{p}", timeout=2),
])
def test_unreachable_server_names_the_address(make):
    port = free_ports(1)[0]
    with make(port) as c:
        with pytest.raises(ClientError) as info:
            c.status("tiny")
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        assert f"127.0.0.1:{port}" in info.value.message and "running" in info.value.message
        t = time.monotonic()
        with pytest.raises(ClientError) as info:
            c.wait_until_available("tiny", timeout=0.5)
        assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t < 5
        assert "not AVAILABLE" in info.value.message and "UNAVAILABLE" in info.value.message
    with pytest.raises(ValueError, match="closed"):
        c.status("tiny")


@pytest.mark.parametrize("make,match", [
    (lambda: Client(""), "target"),
    (lambda: Client("http://localhost:8500"), "target"),
    (lambda: Client(timeout=0), "timeout"),
    (lambda: Client(tls=42), "tls"),
    (lambda: Client(tls="/no/such/ca.pem"), "tls"),
    (lambda: Client(max_message_bytes=0), "max_message_bytes"),
    (lambda: RestClient("localhost:8501"), "base_url"),
    (lambda: RestClient(timeout=-1), "timeout"),
    (lambda: RestClient(max_workers=0), "max_workers"),
])
def test_constructor_arguments_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("cls", [Client, RestClient])
@pytest.mark.parametrize("call,match", [
    (lambda c: c.predict("", IMAGES), "model"),
    (lambda c: c.predict("tiny", IMAGES, version=1, label="stable"), "not both"),
    (lambda c: c.predict("tiny", IMAGES, version=-1), "version"),
    (lambda c: c.predict("tiny", IMAGES, label="no-dash"), "label"),
    (lambda c: c.predict("tiny", {}), "inputs"),
    (lambda c: c.predict("tiny", {"images": 1.0}), "batch dimension"),
    (lambda c: c.predict("tiny", {"images": IMAGES}, signature=""), "signature"),
    (lambda c: c.predict("tiny", {"images": IMAGES}, output_filter=[3]), "output_filter"),
    (lambda c: c.predict("tiny", {"images": IMAGES}, timeout=0), "timeout"),
    (lambda c: c.classify("tiny", []), "examples_or_images"),
    (lambda c: c.classify("tiny", [{"images": [object()]}]), r"examples\[0\]"),
    (lambda c: c.regress("tiny", IMAGES, context=[1]), "context"),
    (lambda c: c.multi_inference("tiny", IMAGES, tasks={"classify": "predict"}), "tasks"),
    (lambda c: c.predict_many("tiny", [IMAGES], max_in_flight=0), "max_in_flight"),
    (lambda c: c.wait_until_available("tiny", timeout=-1), "timeout"),
])
def test_call_arguments_are_validated_before_sending(cls, call, match):
    # Port 9 (discard) is never a model server: validation must fail before any connection.
    client = cls("127.0.0.1:9") if cls is Client else cls("http://127.0.0.1:9")
    with client, pytest.raises(ValueError, match=match):
        call(client)


def test_rest_format_is_validated():
    with RestClient("http://127.0.0.1:9") as c, pytest.raises(ValueError, match="format"):
        c.predict("tiny", IMAGES, format="table")


@pytest.mark.parametrize("config,match", [
    ("/no/such/models.config", "cannot read"),
    ("model_config_list { config { nme: 'x' } }", "not a text ModelServerConfig"),
    ("custom_model_config { }", "model_config_list"),
    (42, "ModelServerConfig"),
])
def test_reload_config_is_validated(config, match):
    with pytest.raises(ValueError, match=match):
        load_server_config(config)


def test_inputs_are_sent_as_tensor_content():
    with Client("127.0.0.1:9") as c:
        request = c._predict_request("tiny", {"images": IMAGES.astype(np.float64)}, None, "stable",
                                     None, None, None)
    tensor = request.inputs["images"]
    assert tensor.tensor_content == IMAGES.tobytes() and not tensor.float_val  # float64 -> float32
    assert request.model_spec.version_label == "stable"


@pytest.mark.parametrize("bad", [{}, {"metadata": {}}, None, {"metadata": {"signature_def": []}}])
def test_signature_specs_rejects_what_metadata_does_not_return(bad):
    with pytest.raises(ValueError, match="metadata"):
        signature_specs(bad)


# ------------------------------------------------------------------------------- REST JSON bodies

@pytest.mark.parametrize("array", [
    IMAGES, IMAGES.astype(np.float64), IMAGES.astype(np.float16), IMAGES[:, ::2].transpose(0, 2, 1, 3),
    np.arange(-6, 6, dtype=np.int64).reshape(3, 4), np.arange(12, dtype=np.uint8), np.array([[True, False]]),
    np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1e-45], dtype=np.float32),
])
def test_rest_body_reads_back_as_the_values_sent(array):
    """orjson writes the arrays (float32 in shortest repr); JSON readers get the same values."""
    from serving.client import rest_client

    sent = array.astype(np.float32) if array.dtype == np.float64 else array
    for body in ({"inputs": rest_client._to_json_value(array)}, {"instances": rest_client._to_json_value(array)}):
        raw = dumps_json(body)
        value = json.loads(raw)[next(iter(body))]
        assert np.array(value, dtype=sent.dtype).tobytes() == sent.tobytes()  # bit for bit (-0.0 too)
        assert orjson.loads(raw) == json.loads(raw)  # plain JSON: no NaN tokens


def test_rest_body_is_compact_float32_and_keeps_strings():
    from serving.client import rest_client

    raw = dumps_json({"signature_name": "s", "inputs": {
        "x": rest_client._to_json_value(np.array([0.1], np.float32)),
        "b": rest_client._to_json_value(np.array([b"\xff", "t"], dtype=object))}})
    assert raw == b'{"signature_name":"s","inputs":{"x":[0.1],"b":[{"b64":"/w=="},"t"]}}'


def test_rest_body_writes_nan_and_inf_as_json_does():
    """orjson would write null for NaN; TF Serving accepts NaN/Infinity, so json.dumps writes those."""
    from serving.client import _http, rest_client

    x = np.array([[np.nan, np.inf, -np.inf, 0.5]], dtype=np.float32)
    raw = dumps_json({"instances": rest_client._to_json_value(x)})
    assert raw == b'{"instances": [[NaN, Infinity, -Infinity, 0.5]]}'
    assert dumps_json({"examples": [{"x": [1.0, float("nan")]}]}) == b'{"examples": [{"x": [1.0, NaN]}]}'
    assert _http.loads(b'{"outputs": [NaN, -Infinity]}')["outputs"][1] == -np.inf
    assert _http.loads(b"") is None and _http.loads(b"<html>") is None


def test_rest_nan_inputs_give_nan_outputs_like_grpc(grpc_client, rest_client):
    x = IMAGES.copy()
    x[1, 0, 0, 0] = np.nan
    want = grpc_client.predict("tiny", x)["probabilities"]
    assert np.isnan(want[1]).all() and not np.isnan(want[0]).any()
    for fmt in FORMATS:
        got = rest_client.predict("tiny", x, format=fmt)["probabilities"]
        np.testing.assert_allclose(got, want, rtol=1e-6)  # NaN == NaN here
