"""Versions coming and going, config reload, batching, TLS and a model from serving.export."""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

import _serving_models as sm
from _serving_models import wait_for
from serving.config_files import SSLConfigProto
from serving.server.model_server import ModelServer, ServerOptions

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def predict(stub, name, images, timeout=30, **spec):
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, **spec))
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return stub.Predict(req, timeout=timeout)


def statuses(channel, name):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    resp = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name=name)), timeout=10)
    return {s.version: (s.state, s.status.error_message) for s in resp.model_version_status}


@pytest.fixture(scope="module")
def polling(tmp_path_factory):
    """A server polling the file system and its config file every 0.2 s."""
    root = tmp_path_factory.mktemp("poll_models")
    sm.write_model(str(root / "tiny"), 1)
    config = root / "models.config"
    config.write_text('model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" } }')
    srv = ModelServer(ServerOptions(port=0, model_config_file=str(config), file_system_poll_wait_seconds=0.2,
                                    model_config_file_poll_wait_seconds=0.2))
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    yield root, srv, channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    srv.stop()


def test_new_version_is_hot_loaded_and_old_one_unloaded(polling):
    root, _, channel, stub = polling
    assert predict(stub, "tiny", sm.sample_images(1)).model_spec.version.value == 1
    sm.write_model(str(root / "tiny"), 2)
    wait_for(lambda: predict(stub, "tiny", sm.sample_images(1)).model_spec.version.value == 2)
    wait_for(lambda: statuses(channel, "tiny").get(1, (None,))[0] == END)  # latest{1}: v1 retired
    assert statuses(channel, "tiny")[2] == (AVAILABLE, "")


def test_corrupt_version_reports_error_and_old_keeps_serving(polling):
    root, _, channel, stub = polling
    wait_for(lambda: statuses(channel, "tiny").get(2, (None,))[0] == AVAILABLE)
    bad = root / "tiny" / "3"
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    state, message = wait_for(lambda: statuses(channel, "tiny").get(3))
    wait_for(lambda: statuses(channel, "tiny")[3][1])
    state, message = statuses(channel, "tiny")[3]
    assert state == END and "Failed to load" in message and str(bad) in message
    assert predict(stub, "tiny", sm.sample_images(1)).model_spec.version.value == 2
    assert statuses(channel, "tiny")[2][0] == AVAILABLE
    # fixing the folder in place (here: replacing it with a good model) is noticed and loaded
    shutil.rmtree(bad)
    sm.write_model(str(root / "tiny"), 3)
    wait_for(lambda: predict(stub, "tiny", sm.sample_images(1)).model_spec.version.value == 3)
    assert statuses(channel, "tiny")[3] == (AVAILABLE, "")


def test_config_file_reload_adds_model_and_label(polling):
    root, _, channel, stub = polling
    sm.write_model(str(root / "other"), 5, bias=5.0)
    (root / "models.config").write_text("""model_config_list {
      config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" }
      config { name: "other" base_path: "other" model_platform: "tensorflow"
               version_labels { key: "stable" value: 5 } } }""")
    resp = wait_for(lambda: _try(lambda: predict(stub, "other", sm.sample_images(1), version_label="stable")))
    assert resp.model_spec.version.value == 5


def test_removed_version_folder_is_unloaded_and_previous_comes_back(polling):
    root, _, channel, stub = polling
    sm.write_model(str(root / "other"), 6, bias=6.0)
    wait_for(lambda: statuses(channel, "other").get(6, (None,))[0] == AVAILABLE)
    wait_for(lambda: statuses(channel, "other")[5][0] == END)  # latest{1}: v5 retired
    shutil.rmtree(root / "other" / "6")
    wait_for(lambda: statuses(channel, "other")[6][0] == END)
    # v5 is the latest on disk again, so it is aspired and reloaded: deleting a folder rolls back
    resp = wait_for(lambda: _try(lambda: predict(stub, "other", sm.sample_images(1))))
    assert resp.model_spec.version.value == 5


def _try(fn):
    try:
        return fn()
    except grpc.RpcError:
        return None


def test_start_fails_when_no_version_loads(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"junk")
    with pytest.raises(Exception, match="no version could be loaded"):
        ModelServer(ServerOptions(port=0, model_name="m", model_base_path=str(tmp_path / "m"))).start()
    with pytest.raises(Exception, match="no version found under base path"):
        ModelServer(ServerOptions(port=0, model_name="m", model_base_path=str(tmp_path / "none"))).start()


def test_batching_merges_concurrent_requests(tmp_path):
    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 200000 }\n"
                      "num_batch_threads { value: 1 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    with ModelServer(ServerOptions(port=0, model_name="tiny", model_base_path=str(tmp_path / "tiny"),
                                   enable_batching=True, batching_parameters_file=str(params))) as srv, \
            grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        x = sm.sample_images(8)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: predict(stub, "tiny", x[i:i + 1]), range(8)))
        alone = predict(stub, "tiny", x)  # same images in one request: same answers
        ids = [r.outputs["class_ids"].int64_val[0] for r in results]
        assert ids == list(alone.outputs["class_ids"].int64_val)
        text = srv.metrics.exposition()[0].decode()
        count = float(re.search(r'input_batch_size_count\{model_name="tiny"\} (\S+)', text).group(1))
        total = float(re.search(r'input_batch_size_sum\{model_name="tiny"\} (\S+)', text).group(1))
        assert total == 16 and count < 9  # 8 single-image requests ran in fewer than 8 batches
        padded = float(re.search(r'processed_batch_size_sum\{model_name="tiny"\} (\S+)', text).group(1))
        assert padded >= total and padded % 4 == 0  # every batch padded to 4 or 8
        with pytest.raises(grpc.RpcError) as info:
            predict(stub, "tiny", sm.sample_images(9))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "Task size 9 is larger than maximum input batch size 8"


def test_rest_timeout_is_504_and_a_failing_warmup_fails_the_load(tmp_path, free_port):
    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    # a 2 s batching window keeps the request queued past the 300 ms REST timeout
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 2000000 }\n")
    with ModelServer(ServerOptions(port=0, rest_api_port=0, model_name="tiny", model_base_path=str(tmp_path / "tiny"),
                                   enable_batching=True, batching_parameters_file=str(params),
                                   rest_api_timeout_in_ms=300)) as srv:
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{srv.rest_port}/v1/models/tiny:predict", method="POST",
                                     data=json.dumps({"instances": sm.sample_images(1).tolist()}).encode())
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=30)
        assert info.value.code == 504 and json.load(info.value) == {"error": "Request timed out"}

    # a warmup record the model cannot run (unknown input name) fails the version's load
    sm.write_model(str(tmp_path / "warm"), 1)
    from tensorflow_serving.apis import prediction_log_pb2

    bad = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="warm"))
    bad.inputs["pixels"].CopyFrom(tf.make_tensor_proto(sm.sample_images(1)))
    with tf.io.TFRecordWriter(str(tmp_path / "warm" / "1" / "assets.extra" / "tf_serving_warmup_requests")) as w:
        w.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=bad)).SerializeToString())
    srv = ModelServer(ServerOptions(port=0, model_name="warm", model_base_path=str(tmp_path / "warm")))
    with pytest.raises(Exception, match="Warmup failed .* Sent extra: {pixels}"):
        srv.start()
    text = srv.metrics.exposition()[0].decode()
    assert ('model_warmup_latency_count{model_path="' + str(tmp_path / "warm" / "1")
            + '",status="INVALID_ARGUMENT"} 1.0') in text


def _self_signed(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_tls_round_trip(tmp_path):
    key, cert = _self_signed(tmp_path)
    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    ssl_config = tmp_path / "ssl.config"
    ssl_config.write_text(text_format.MessageToString(  # PEM contents inline, as TF Serving's SSLConfig
        SSLConfigProto(server_key=key.read_text(), server_cert=cert.read_text())))
    for opts in ({"ssl_cert_file": str(cert), "ssl_key_file": str(key)}, {"ssl_config_file": str(ssl_config)}):
        options = ServerOptions(port=0, model_name="tiny", model_base_path=str(tmp_path / "tiny"), **opts)
        with ModelServer(options) as srv:
            creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            with grpc.secure_channel(f"localhost:{srv.grpc_port}", creds) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                assert predict(stub, "tiny", sm.sample_images(1)).model_spec.version.value == 1
            with grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as plain:
                with pytest.raises(grpc.RpcError) as info:
                    predict(prediction_service_pb2_grpc.PredictionServiceStub(plain), "tiny", sm.sample_images(1),
                            timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serves_a_model_written_by_serving_export(tmp_path, digits):
    import zoo
    from serving import export

    model = zoo.build("doubling", input_shape=digits.input_shape, num_classes=digits.num_classes,
                      depth=2, base_filters=4, seed=0)
    export(model, tmp_path, name="digits", class_names=digits.class_names, warmup_samples=digits.x_test[:2],
           trained=True)  # untrained on purpose: the server must answer exactly what Keras answers
    with ModelServer(ServerOptions(port=0, model_config_file=str(tmp_path / "models.config"),
                                   enable_batching=True,
                                   batching_parameters_file=str(tmp_path / "batching_parameters.txt"))) as srv, \
            grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        resp = predict(stub, "digits", digits.x_test[:4])
        expected = model.predict(digits.x_test[:4], verbose=0)
        np.testing.assert_allclose(np.array(resp.outputs["probabilities"].float_val).reshape(expected.shape),
                                   expected, rtol=1e-4, atol=1e-6)
        assert list(resp.outputs["class_ids"].int64_val) == list(expected.argmax(1))
        assert os.path.isdir(tmp_path / "digits" / "1")
