"""Model management, lifecycle and REST bounds that behave like TF Serving's (issue 21, defects 2-14).

In-process servers over tiny models; the one subprocess test is SIGTERM during a load.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

import _reliability as rel
import _serving_models as sm
from _serving_models import reload_config, rpc_or_none, wait_for
from serving.server.model_server import ModelServer, ServerOptions

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def predict(channel, name, timeout=30, **spec):
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, **spec))
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(sm.sample_images(1)))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=timeout)


def version_of(channel, name, **spec):
    return predict(channel, name, **spec).model_spec.version.value


def statuses(channel, name):
    resp = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name)), timeout=10)
    return {s.version: s.state for s in resp.model_version_status}


def _load_error(server, name, version):
    """The load error of `version` (None while it is unknown, loading or loaded)."""
    try:
        return server.manager.status(name, version)[0].error
    except Exception:  # not found yet
        return None


def _config(path, *models, policy=""):
    path.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{m}" base_path: "{m}" model_platform: "tensorflow" {policy} }}\n' for m in models) + "}\n")
    return path


class _Serving:
    """An in-process server and a gRPC channel to it."""

    def __init__(self, **options):
        self.server = ModelServer(ServerOptions(port=0, **options))
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}")

    def close(self, grace=1.0):
        self.channel.close()
        self.server.stop(grace)


# ----------------------------------------------------------------------------- defect 2
def test_an_empty_polled_config_file_is_refused_and_the_models_keep_serving(tmp_path, caplog):
    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    config = _config(tmp_path / "models.config", "tiny")
    s = _Serving(model_config_file=str(config), model_config_file_poll_wait_seconds=0.1)
    try:
        loaded = s.server.manager.resolve("tiny")
        with caplog.at_level(logging.INFO, logger="serving"):
            config.write_text("")  # rewritten in place: truncated first, and empty for a while
            end = time.monotonic() + 1.0  # ten polls
            while time.monotonic() < end:
                assert statuses(s.channel, "tiny") == {1: AVAILABLE}
                time.sleep(0.05)
            _config(config, "tiny")
            time.sleep(0.3)
        assert "Cannot transition to requested config" in caplog.text
        assert s.server.manager.resolve("tiny") is loaded  # never unloaded and loaded again
    finally:
        s.close()


# ----------------------------------------------------------------------------- defect 3
def test_rolling_back_serves_the_older_version_while_the_newer_drains(tmp_path):
    fifo = str(tmp_path / "gate")
    sm.write_model(str(tmp_path / "m"), 1, warmup=False)
    sm.write_blocking_model(str(tmp_path / "m"), 2, fifo)
    config = _config(tmp_path / "models.config", "m", policy="model_version_policy { all {} }")
    s = _Serving(model_config_file=str(config), file_system_poll_wait_seconds=0.1)
    done = {}
    client = threading.Thread(target=lambda: done.setdefault("version", _try_version(s.channel, "m")))
    try:
        assert statuses(s.channel, "m") == {1: AVAILABLE, 2: AVAILABLE}
        client.start()  # a request on v2 that lasts until the gate opens
        wait_for(lambda: s.server.manager.resolve("m", 2)._inflight == 1)
        shutil.rmtree(tmp_path / "m" / "2")  # roll back: v1 is the newest on disk, and AVAILABLE
        wait_for(lambda: statuses(s.channel, "m")[2] != AVAILABLE)
        # at once, not once v2's last request ends (up to 30 s): no NOT_FOUND for Specific(m, 2)
        assert [version_of(s.channel, "m") for _ in range(5)] == [1] * 5
        assert statuses(s.channel, "m")[1] == AVAILABLE
    finally:
        sm.release(fifo)
        client.join(30)
        s.close()
    # the in-flight request ran to its end on the draining version (reading the emptied FIFO fails
    # inside the model: its own error, not NOT_FOUND or a cancellation)
    assert done["version"] == 2 or "Detected at node ReadFile" in done["version"], done


# ----------------------------------------------------------------------------- defects 4, 10, 11, 12
@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_bounds")
    sm.write_model(str(root / "tiny"), 1, warmup=False)
    s = _Serving(rest_api_port=0, model_name="tiny", model_base_path=str(root / "tiny"),
                 file_system_poll_wait_seconds=0, rest_api_max_uncompressed_bytes=1_000_000,
                 rest_api_header_timeout_in_ms=300, rest_api_idle_timeout_in_ms=1500, rest_api_timeout_in_ms=1000)
    yield s
    s.close()


def _post(port, body, headers=None, model="tiny"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{model}:predict", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_a_gzip_body_is_refused_once_it_inflates_past_the_limit(rest):
    small = json.dumps({"instances": sm.sample_images(1).tolist()}).encode()
    assert _post(rest.server.rest_port, gzip.compress(small), {"Content-Encoding": "gzip"})[0] == 200
    bomb = small[:-1] + b" " * 5_000_000 + b"}"  # 5 MB of JSON in a few kB of gzip
    status, body = _post(rest.server.rest_port, gzip.compress(bomb), {"Content-Encoding": "gzip"})
    assert status == 400 and "inflates to more than 1000000 bytes" in body["error"]
    assert _post(rest.server.rest_port, bomb)[0] == 200  # the limit is on inflating, not on bodies


def _connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _closed_within(sock, seconds):
    """Seconds until the server closed `sock` (reading and dropping any answer), or None."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except ConnectionError:
            return time.monotonic() - start
    return None


def test_idle_half_header_and_half_body_connections_are_closed(rest):
    port = rest.server.rest_port
    idle, header, body = _connect(port), _connect(port), _connect(port)
    try:
        header.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n")
        body.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inst")
        started = time.monotonic()
        try:
            for _ in range(5):  # a header trickling in still has to be complete within 300 ms
                time.sleep(0.1)
                header.sendall(b"X")
            # (closed well before the 1.5 s idle timeout, which would close it too)
            closed = _closed_within(header, 1.2 - (time.monotonic() - started)) is not None
        except OSError:  # closed while sending
            closed = time.monotonic() - started < 1.2
        assert closed
        data = b""
        body.settimeout(5)
        while b"\r\n\r\n" not in data:
            data += body.recv(4096)
        assert data.startswith(b"HTTP/1.1 504")  # --rest_api_timeout_in_ms covers the upload
        assert _closed_within(idle, 5.0) is not None  # the idle timeout (1.5 s) closes what sends nothing
    finally:
        for sock in (idle, header, body):
            sock.close()


def test_a_client_leaving_mid_upload_is_counted_as_cancelled(rest):
    def count(status):
        text = rest.server.metrics.exposition()[0].decode()
        match = re.search(r':tensorflow:serving:request_count\{model_name="tiny",status="%s"\} (\S+)' % status, text)
        return float(match.group(1)) if match else 0.0

    before = count("CANCELLED")
    sock = _connect(rest.server.rest_port)
    sock.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                 + b"[" * 1000)
    time.sleep(0.2)
    sock.close()
    wait_for(lambda: count("CANCELLED") == before + 1, timeout=10)
    assert count("INTERNAL") == 0


@pytest.mark.parametrize("body, offset", [(b'{"instances": [[1e400]]}', 16),
                                          (b'{"instances": [NaN, -1e400]}', 20)])
def test_a_number_beyond_double_is_tf_servings_400(rest, body, offset):
    status, answer = _post(rest.server.rest_port, body)
    assert (status, answer) == (400, {"error": "JSON Parse error: Number too big to be stored in double. "
                                               f"at offset: {offset}"})


# ----------------------------------------------------------------------------- defect 5
def _variables_file(version_dir):
    (data,) = [p for p in (version_dir / "variables").iterdir() if p.name.startswith("variables.data")]
    return data


def test_a_half_copied_version_is_loaded_once_its_files_are_complete(tmp_path):
    sm.write_model(str(tmp_path / "m"), 1, warmup=False)
    s = _Serving(model_name="m", model_base_path=str(tmp_path / "m"), file_system_poll_wait_seconds=0.1,
                 max_num_load_retries=0)  # no timed retry: only the change to the file counts
    try:
        sm.write_model(str(tmp_path / "staging"), 2, bias=2.0, warmup=False)
        data = _variables_file(tmp_path / "staging" / "2")
        full = data.read_bytes()
        data.write_bytes(full[: len(full) // 2])  # every file there, the variables half written
        os.rename(tmp_path / "staging" / "2", tmp_path / "m" / "2")
        wait_for(lambda: _load_error(s.server, "m", 2))
        assert version_of(s.channel, "m") == 1
        (tmp_path / "m" / "2" / "variables" / data.name).write_bytes(full)  # the copy completes in place
        wait_for(lambda: rpc_or_none(lambda: version_of(s.channel, "m")) == 2, timeout=20)
    finally:
        s.close()


def test_a_failed_load_is_retried_after_the_interval(tmp_path):
    """A failure that leaves every file as it was (here: restored with its size and mtime) is
    retried after --load_retry_interval_micros, as TF Serving retries failed loads."""
    sm.write_model(str(tmp_path / "m"), 1, warmup=False)
    sm.write_model(str(tmp_path / "staging"), 2, bias=2.0, warmup=False)
    data = _variables_file(tmp_path / "staging" / "2")
    full, info = data.read_bytes(), data.stat()
    data.write_bytes(b"\0" * len(full))
    os.utime(data, ns=(info.st_atime_ns, info.st_mtime_ns))
    s = _Serving(model_name="m", model_base_path=str(tmp_path / "m"), file_system_poll_wait_seconds=0.1,
                 max_num_load_retries=20, load_retry_interval_micros=500_000)
    try:
        os.rename(tmp_path / "staging" / "2", tmp_path / "m" / "2")
        version = tmp_path / "m" / "2" / "variables" / data.name
        wait_for(lambda: _load_error(s.server, "m", 2))
        version.write_bytes(full)
        os.utime(version, ns=(info.st_atime_ns, info.st_mtime_ns))  # looks untouched
        wait_for(lambda: rpc_or_none(lambda: version_of(s.channel, "m")) == 2, timeout=20)
    finally:
        s.close()


# ----------------------------------------------------------------------------- defects 6, 7, 14
@pytest.fixture
def polled(tmp_path):
    sm.write_model(str(tmp_path / "tiny"), 1, warmup=False)
    config = _config(tmp_path / "models.config", "tiny")
    s = _Serving(model_config_file=str(config), model_config_file_poll_wait_seconds=0.1,
                 file_system_poll_wait_seconds=0.1)
    yield tmp_path, config, s
    s.close()


def test_the_polled_config_is_applied_at_every_poll(polled):
    root, config, s = polled
    _config(config, "tiny", "late")  # listed before its folder exists: fails, and is retried
    time.sleep(0.5)
    assert rpc_or_none(lambda: version_of(s.channel, "late")) is None
    sm.write_model(str(root / "late"), 3, warmup=False)
    wait_for(lambda: rpc_or_none(lambda: version_of(s.channel, "late")) == 3, timeout=20)
    reload_config(s.channel, ("tiny", str(root / "tiny")))  # ReloadConfig drops "late"...
    wait_for(lambda: rpc_or_none(lambda: version_of(s.channel, "late")) == 3, timeout=20)  # ...the file restores it
    assert version_of(s.channel, "tiny") == 1


def test_reload_config_with_a_label_on_an_unavailable_version_is_failed_precondition(polled):
    root, config, s = polled
    with pytest.raises(grpc.RpcError) as info:
        reload_config(s.channel, ("tiny", str(root / "tiny"), {"stable": 7}))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == ("Request to assign label to version 7 of model tiny, which is not currently "
                                    "available for inference")
    with pytest.raises(grpc.RpcError) as info:  # nothing changed: the label does not exist
        version_of(s.channel, "tiny", version_label="stable")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reload_config(s.channel, ("tiny", str(root / "tiny"), {"stable": 1}))
    assert version_of(s.channel, "tiny", version_label="stable") == 1


def test_reload_config_errors_do_not_tell_whether_a_path_exists(polled):
    root, config, s = polled
    (root / "empty").mkdir()
    (root / "file").write_text("x")
    answers = set()
    for path in (root / "missing", root / "empty", root / "file", root / "file" / "below"):
        with pytest.raises(grpc.RpcError) as info:
            reload_config(s.channel, ("x", str(path)))
        answers.add((info.value.code(), info.value.details().replace(str(path), "PATH")))
    assert answers == {(grpc.StatusCode.NOT_FOUND, "model 'x': no version found under base path PATH matching "
                                                   "its version policy (latest)")}


def test_help_and_deploy_readme_say_what_must_be_trusted():
    from serving.server.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "models and the gRPC port must be trusted" in text and "ReloadConfig" in text and "--host" in text
    readme = " ".join((rel.ROOT / "deploy" / "README.md").read_text().split())
    assert "models and the grpc port must be trusted" in readme.lower()
    assert "ReloadConfig" in readme and "0.0.0.0" in readme and "client_verify" in readme


# ----------------------------------------------------------------------------- defects 8, 9
def test_stop_returns_within_the_grace_with_a_long_rest_request_in_flight(tmp_path):
    fifo = str(tmp_path / "gate")
    sm.write_blocking_model(str(tmp_path / "slow"), 1, fifo)
    s = _Serving(rest_api_port=0, model_name="slow", model_base_path=str(tmp_path / "slow"),
                 file_system_poll_wait_seconds=0, rest_api_timeout_in_ms=0)
    client = threading.Thread(target=lambda: _try_post(s.server.rest_port), daemon=True)
    guard = threading.Timer(30, sm.release, (fifo,))  # the old code would wait for the request forever
    guard.start()
    try:
        client.start()
        wait_for(lambda: s.server.manager.resolve("slow")._inflight == 1)
        started = time.monotonic()
        s.close(grace=1.0)
        assert time.monotonic() - started < 6  # the grace, plus a margin for closing sockets
    finally:
        guard.cancel()
        sm.release(fifo)
        client.join(10)


def _try_post(port):
    try:
        _post(port, json.dumps({"instances": sm.sample_images(1).tolist()}).encode(), model="slow")
    except OSError:  # the server went away: expected
        pass


def test_stop_during_start_abandons_the_load_and_opens_no_port(tmp_path):
    fifo = str(tmp_path / "gate")
    sm.write_blocking_model(str(tmp_path / "slow"), 1, fifo, warmup=True)  # its load never ends
    server = ModelServer(ServerOptions(port=0, model_name="slow", model_base_path=str(tmp_path / "slow")))
    failure = []
    starter = threading.Thread(target=lambda: _record(failure, server.start), daemon=True)
    try:
        starter.start()
        wait_for(lambda: server.manager is not None and server.manager.servables())
        started = time.monotonic()
        server.stop(grace=1.0)
        starter.join(10)
        assert not starter.is_alive() and time.monotonic() - started < 10
        assert failure and server.grpc_port is None and server._grpc is None
    finally:
        sm.release(fifo)


def _record(failures, fn):
    try:
        fn()
    except Exception as exc:
        failures.append(exc)


def test_sigterm_during_a_load_stops_the_process_before_it_serves(tmp_path, free_port):
    """A real process: SIGTERM while the only model loads (its warmup never ends) ends it promptly,
    without "ready" or an open port. Without TF_CPP_MIN_LOG_LEVEL, TensorFlow's start-up lines
    (CUDA probing on a CPU machine, printed twice before) stay out of the log (issue 22)."""
    fifo = str(tmp_path / "gate")
    sm.write_blocking_model(str(tmp_path / "slow"), 1, fifo, warmup=True)
    env = {k: v for k, v in rel.subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving", f"--port={port}", "--model_name=slow",
                             f"--model_base_path={tmp_path / 'slow'}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Loading servable version {name: slow version: 1}" in line:
                break
        time.sleep(0.5)  # inside the warmup now
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0 and time.monotonic() - started < 15
        log = "".join(lines) + proc.stdout.read()
    finally:
        sm.release(fifo)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "zoo-serve ready" not in log and "Running gRPC ModelServer" not in log
    assert "Signal received while loading models" in log
    assert "absl::InitializeLog" not in log and "cuInit" not in log and "cuda drivers" not in log, log


def test_a_usage_error_is_one_line_before_tensorflow_is_imported(tmp_path):
    code = ("import sys\nfrom serving.server.cli import main\ntry:\n"
            "    main(['--model_config_file=/nonexistent.config'])\n"
            "except SystemExit as exc:\n    print('exit', exc.code, 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=rel.subprocess_env(),
                          timeout=60)
    assert proc.stdout.strip() == "exit 2 False"
    assert proc.stderr.splitlines() == ["zoo-serve: error: --model_config_file: cannot read model config file "
                                        "'/nonexistent.config': No such file or directory (see zoo-serve --help)"]


def _try_version(channel, name):
    try:
        return version_of(channel, name)
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"


def test_a_polled_model_that_cannot_be_added_is_not_loaded_at_every_poll(tmp_path, caplog):
    """Issue 30 defect 5, polling every 0.1 s with --max_num_load_retries=1 (fails on the old code:
    each of the three models below was loaded, and unloaded, at every poll)."""
    caplog.set_level(logging.INFO, logger="serving")
    for name in ("tiny", "labelled", "corrupt"):
        sm.write_model(str(tmp_path / name), 1, warmup=False)
    (tmp_path / "corrupt" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = _config(tmp_path / "models.config", "tiny")
    s = _Serving(model_config_file=str(config), model_config_file_poll_wait_seconds=0.1, max_num_load_retries=1)

    def loads(name):
        return sum(f"Loading servable version {{name: {name} " in r.getMessage() for r in caplog.records)

    def write(entries):
        config.write_text("model_config_list {\n" + "".join(
            f'  config {{ name: "{n}" base_path: "{n}" model_platform: "tensorflow" {extra} }}\n'
            for n, extra in entries) + "}\n")

    try:
        # a new model whose label names a version that does not exist: nothing loads
        write([("tiny", ""), ("labelled", "version_labels { key: 'stable' value: 7 }")])
        wait_for(lambda: "assign label to version 7" in caplog.text)
        # a new model whose only version is corrupt: one load (and its one retry at most)
        write([("tiny", ""), ("corrupt", "")])
        wait_for(lambda: loads("corrupt"))
        # a served model edited to policy all with a dangling label: nothing loads, nothing unloads
        write([("tiny", "model_version_policy { all {} } version_labels { key: 'stable' value: 7 }")])
        wait_for(lambda: caplog.text.count("assign label to version 7") >= 2)
        time.sleep(1.0)  # ten more polls: nothing may happen during them (there is no event to wait on)
        assert loads("labelled") == 0
        assert loads("corrupt") <= 2
        assert loads("tiny") == 1
        assert version_of(s.channel, "tiny") == 1
    finally:
        s.close()
