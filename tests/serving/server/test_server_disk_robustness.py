"""What is on disk, or in a config, must never freeze, confuse or take down the server.

Each test reproduces a defect found by probing a running server (issue 15): a FIFO named
saved_model.pb, odd version folder names, a config change that fails, a NUL byte in a base path.
"""
from __future__ import annotations

import logging
import os
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)

import _reliability as rel
import _serving_models as sm
from _serving_models import reload_config, rpc_or_none, wait_for
from serving.server.model_server import ModelServer, ServerOptions

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def statuses(channel, name):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    resp = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name=name)), timeout=10)
    return {s.version: (s.state, s.status.error_message) for s in resp.model_version_status}


def served_bias(channel, name, version=None):
    """(version, bias) of what answers for `name`: the tiny model's regress is sum(images) + bias."""
    spec = model_pb2.ModelSpec(name=name, signature_name="regress")
    if version is not None:
        spec.version.value = version
    x = np.zeros((1, sm.H * sm.W * sm.C), np.float32)
    example = tf.train.Example(features=tf.train.Features(feature={
        "images": tf.train.Feature(float_list=tf.train.FloatList(value=x[0]))}))
    req = regression_pb2.RegressionRequest(model_spec=spec)
    req.input.example_list.examples.add().CopyFrom(example)
    resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(req, timeout=30)
    return resp.model_spec.version.value, round(resp.result.regressions[0].value, 3)


# ----------------------------------------------------------------------------- defect 1
def test_a_fifo_named_saved_model_pb_does_not_freeze_the_server(tmp_path):
    """A FIFO in a new version folder used to block the loader's open() forever, inside the
    repository's lock: the version stayed LOADING, later versions were never found, ReloadConfig
    calls piled up until Predict hung, and SIGTERM no longer stopped the process."""
    sm.write_model(str(tmp_path / "tiny"), 1, bias=1.0)
    (tmp_path / "tiny" / "2").mkdir()
    os.mkfifo(tmp_path / "tiny" / "2" / "saved_model.pb")
    (tmp_path / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_platform: "tensorflow" } }')
    server = rel.ServerProcess(tmp_path, [f"--model_config_file={tmp_path / 'models.config'}",
                                          "--file_system_poll_wait_seconds=0.2"], rest=False, name="fifo")
    with server, grpc.insecure_channel(server.target) as channel:
        state, message = wait_for(lambda: statuses(channel, "tiny").get(2, (None, ""))[1] and
                                  statuses(channel, "tiny")[2], timeout=30)
        assert state == END and "not a regular file" in message
        assert served_bias(channel, "tiny") == (1, 1.0)
        sm.write_model(str(tmp_path / "tiny"), 3, bias=3.0)  # a later version is still found
        wait_for(lambda: rpc_or_none(lambda: served_bias(channel, "tiny")) == (3, 3.0), timeout=30)
        for _ in range(6):  # more reloads than a stuck loader would let through
            reload_config(channel, ("tiny", str(tmp_path / "tiny")), timeout=30)
        assert served_bias(channel, "tiny") == (3, 3.0)
        server.proc.terminate()
        assert server.proc.wait(timeout=30) == 0  # SIGTERM is enough: nothing blocks shutdown
    assert rel.unexpected_tracebacks(server.log()) == []


def test_an_oversized_saved_model_pb_is_refused_without_reading_it(tmp_path):
    """A 3 GB sparse saved_model.pb was read whole into memory before being parsed."""
    sm.write_model(str(tmp_path / "tiny"), 1)
    (tmp_path / "tiny" / "2").mkdir()
    with open(tmp_path / "tiny" / "2" / "saved_model.pb", "wb") as fh:
        fh.truncate(3 * 2**30)  # sparse: no disk space used
    with ModelServer(ServerOptions(port=0, model_name="tiny", model_base_path=str(tmp_path / "tiny"),
                                   file_system_poll_wait_seconds=0)) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        state, message = statuses(channel, "tiny")[2]
        assert state == END and "over the limit" in message
        assert served_bias(channel, "tiny")[0] == 1


# ----------------------------------------------------------------------------- defect 3
def test_odd_version_folder_names_are_not_versions(tmp_path, caplog):
    """'²' stopped the poll loop (isdigit() + int()), 2**63 became the latest version and broke
    gRPC, and '007' was served as version 7. Only canonical int64 names are versions."""
    base = tmp_path / "tiny"
    sm.write_model(str(base), 7, bias=7.0)
    with ModelServer(ServerOptions(port=0, model_name="tiny", model_base_path=str(base),
                                   file_system_poll_wait_seconds=0.2)) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        assert served_bias(channel, "tiny") == (7, 7.0)
        sm.write_model(str(tmp_path / "other"), 7, bias=99.0)
        for odd in ("²", "007", str(2**63), "٣"):
            os.rename(tmp_path / "other" / "7", base / odd)
            sm.write_model(str(tmp_path / "other"), 7, bias=99.0)
        time.sleep(1.0)  # several polls see the odd folders
        assert served_bias(channel, "tiny", version=7) == (7, 7.0)  # not 007's model
        sm.write_model(str(base), 8, bias=8.0)  # polling goes on: a new version is found
        wait_for(lambda: rpc_or_none(lambda: served_bias(channel, "tiny")) == (8, 8.0), timeout=30)
        assert set(statuses(channel, "tiny")) == {7, 8}
    ignored = [r.getMessage() for r in caplog.records if "is not a version" in r.getMessage()]
    assert len(ignored) == 4 and any("'007'" in m for m in ignored)  # each said once, not at every poll


# ----------------------------------------------------------------------------- defect 4
@pytest.fixture
def served(tmp_path, request):
    """A server over models.config (tiny -> v1), polling it every 0.2 s unless the test is marked
    `config_poll=0` through indirect parametrization (the file would undo ReloadConfig calls)."""
    sm.write_model(str(tmp_path / "tiny"), 1, bias=1.0)
    (tmp_path / "empty").mkdir()
    sm.write_model(str(tmp_path / "good"), 2, bias=2.0)
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "tiny" base_path: "tiny" } }')
    with ModelServer(ServerOptions(port=0, model_config_file=str(config), file_system_poll_wait_seconds=0.2,
                                   model_config_file_poll_wait_seconds=getattr(request, "param", 0.2))) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield tmp_path, channel


@pytest.mark.parametrize("served", [0.0], indirect=True)
def test_a_failed_reload_config_changes_nothing(served):
    """ReloadConfig pointing a model at an empty folder returned an error *and* unloaded it."""
    root, channel = served
    with pytest.raises(grpc.RpcError) as info:
        reload_config(channel, ("tiny", str(root / "empty")))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "no version found" in info.value.details()
    assert served_bias(channel, "tiny") == (1, 1.0)
    # a new model that cannot load fails the whole change: the kept one stays, the new one is not served
    with pytest.raises(grpc.RpcError):
        reload_config(channel, ("tiny", str(root / "tiny")), ("other", str(root / "empty")))
    assert served_bias(channel, "tiny") == (1, 1.0)
    with pytest.raises(grpc.RpcError) as info:
        served_bias(channel, "other")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    reload_config(channel, ("tiny", str(root / "good")), timeout=None)  # a good change applies (no deadline too)
    assert served_bias(channel, "tiny") == (2, 2.0)


def test_a_polled_config_with_a_typo_keeps_the_model(served, caplog):
    """The same typo in a polled models.config took the model down although the log said
    "keeping the current config"."""
    root, channel = served
    with caplog.at_level(logging.ERROR, logger="serving"):
        (root / "models.config").write_text('model_config_list { config { name: "tiny" base_path: "empty" } }')
        wait_for(lambda: "model config file not applied" in caplog.text, timeout=30)
    assert served_bias(channel, "tiny") == (1, 1.0)
    (root / "models.config").write_text('model_config_list { config { name: "tiny" base_path: "good" } }')
    wait_for(lambda: rpc_or_none(lambda: served_bias(channel, "tiny")) == (2, 2.0), timeout=30)


# ----------------------------------------------------------------------------- defect 5
def test_a_nul_byte_in_a_base_path_is_refused_where_the_config_enters(served, caplog):
    """A NUL in a base_path was accepted, logged a traceback every second and stopped polling for
    the models listed after it."""
    root, channel = served
    with pytest.raises(grpc.RpcError) as info:
        reload_config(channel, ("tiny", str(root / "ti\0ny")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "control characters" in info.value.details()
    with caplog.at_level(logging.INFO, logger="serving"):
        (root / "models.config").write_text('model_config_list { config { name: "bad" base_path: "x\\000y" }\n'
                                            '                    config { name: "tiny" base_path: "tiny" } }')
        time.sleep(1.0)  # several config polls
        sm.write_model(str(root / "tiny"), 2, bias=2.5)  # the model listed after it is still polled
        wait_for(lambda: rpc_or_none(lambda: served_bias(channel, "tiny")) == (2, 2.5), timeout=30)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "control characters" in errors[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    with pytest.raises(ValueError, match="control characters"):
        ModelServer(ServerOptions(port=0, model_name="m", model_base_path="/m\0")).start()


# ----------------------------------------------------------------------------- defect 1, a load that hangs
class _ReadsAFile(tf.Module):
    """A model whose every call reads `path`: with a FIFO there, its warmup (and so its load) blocks
    inside TensorFlow until someone writes to the FIFO. A real hung load, as a stuck network file
    system gives one, without the FIFO being inside the version folder (those are refused)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    @tf.function(input_signature=[tf.TensorSpec([None, sm.H, sm.W, sm.C], tf.float32, name="images")])
    def serving_default(self, images):
        size = tf.cast(tf.strings.length(tf.io.read_file(self.path)), tf.float32)
        return {"total": tf.reduce_sum(images, axis=[1, 2, 3]) + size}


def test_a_hung_load_holds_up_nothing_else(tmp_path):
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    module = _ReadsAFile(str(fifo))
    tf.saved_model.save(module, str(tmp_path / "slow" / "1"), signatures={"serving_default": module.serving_default})
    warmup = tmp_path / "slow" / "1" / "assets.extra"
    warmup.mkdir()
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="slow"))
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, sm.H, sm.W, sm.C), np.float32)))
    from tensorflow_serving.apis import prediction_log_pb2
    with tf.io.TFRecordWriter(str(warmup / "tf_serving_warmup_requests")) as w:
        w.write(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
            request=req)).SerializeToString())
    sm.write_model(str(tmp_path / "tiny"), 1, bias=1.0)
    server = ModelServer(ServerOptions(port=0, model_name="tiny", model_base_path=str(tmp_path / "tiny"),
                                       file_system_poll_wait_seconds=0.2))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:  # the new model never becomes available
                reload_config(channel, ("tiny", str(tmp_path / "tiny")), ("slow", str(tmp_path / "slow")), timeout=3)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert served_bias(channel, "tiny") == (1, 1.0)  # requests are not blocked
            sm.write_model(str(tmp_path / "tiny"), 2, bias=2.0)  # the other model is still polled
            wait_for(lambda: rpc_or_none(lambda: served_bias(channel, "tiny")) == (2, 2.0), timeout=30)
            # the next change is not stuck behind it
            reload_config(channel, ("tiny", str(tmp_path / "tiny")), timeout=10)
            assert served_bias(channel, "tiny") == (2, 2.0)
            with pytest.raises(grpc.RpcError) as info:
                served_bias(channel, "slow")
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 60  # shutdown does not wait for the hung load
    finally:
        server.stop()
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # release the hung reader
        os.close(fd)
