"""`python -m serving` as a real process: start-up line, REST + gRPC, SIGTERM with a request in flight."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

import _serving_models as sm


def _read_until(proc, needle, timeout=90.0):
    """Lines of the server's output up to the one containing `needle`."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError(f"{needle!r} not seen; output:\n{''.join(lines)}")


def test_cli_serves_and_drains_in_flight_requests_on_sigterm(tmp_path, free_port, subprocess_env):
    sm.write_model(str(tmp_path / "tiny"), 3)
    # A 3 s batch timeout holds a lone request in the batching queue: it is in flight when
    # SIGTERM arrives, and a clean shutdown must still answer it.
    (tmp_path / "batching.txt").write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 3000000 }\n"
                                           "num_batch_threads { value: 1 }\n")
    grpc_port, rest_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         "--model_name=tiny", f"--model_base_path={tmp_path / 'tiny'}", "--enable_batching",
         "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1",
         f"--batching_parameters_file={tmp_path / 'batching.txt'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env)
    try:
        lines = _read_until(proc, "zoo-serve ready")
        log = "".join(lines)
        assert "Successfully loaded servable version {name: tiny version: 3}" in log
        assert "running on CPU" in log or "running on GPU" in log
        assert "parallelism flags not applied" not in log  # set before TF ran anything
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/tiny", timeout=10) as resp:
            assert json.load(resp)["model_version_status"][0]["state"] == "AVAILABLE"

        result = {}

        def in_flight():
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="tiny"))
                req.inputs["images"].CopyFrom(tf.make_tensor_proto(sm.sample_images(1)))
                try:
                    result["version"] = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                        req, timeout=30).model_spec.version.value
                except grpc.RpcError as err:
                    result["error"] = err.code()

        client = threading.Thread(target=in_flight)
        client.start()
        time.sleep(1.0)  # the request is now waiting in the batch queue (1 s of slack on a busy CI box)
        proc.send_signal(signal.SIGTERM)
        client.join(30)
        assert result == {"version": 3}
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()
        assert "Signal received" in rest and "Server stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_exits_1_when_the_model_cannot_load(tmp_path, free_port, subprocess_env):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "serving", f"--port={free_port()}", "--model_name=m",
                           f"--model_base_path={tmp_path / 'm'}"],
                          capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert proc.returncode == 1
    assert "Server failed to start" in proc.stderr and "no version could be loaded" in proc.stderr


def test_cli_usage_error_exits_2_in_a_real_process(subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "serving", "--bogus"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    assert proc.returncode == 2 and "zoo-serve: error:" in proc.stderr


def test_engine_tensorflow_model_server_execs_the_binary_with_the_same_flags(tmp_path, subprocess_env):
    """A stand-in `tensorflow_model_server` on PATH (the real one is not installable here) records its argv."""
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {tmp_path / "argv.txt"}\n')
    fake.chmod(0o755)
    env = dict(subprocess_env, PATH=f"{fake.parent}:{subprocess_env.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "serving", "--engine", "tensorflow_model_server", "--port=9000",
                           "--rest_api_port=9001", "--model_name=digits", "--model_base_path=/models/digits",
                           "--enable_batching"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.txt").read_text().split()
    assert argv[0] == str(fake)
    assert sorted(argv[1:]) == sorted(["--port=9000", "--rest_api_port=9001", "--model_name=digits",
                                       "--model_base_path=/models/digits", "--enable_batching=true"])


def test_engine_tensorflow_model_server_refuses_embedded_only_flags(tmp_path, monkeypatch, capsys):
    from serving.server.cli import main

    fake = tmp_path / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        main(["--engine", "tensorflow_model_server", "--model_base_path=/m", "--host=0.0.0.0"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("expected exit 2")
    assert "--host is not a tensorflow_model_server flag" in capsys.readouterr().err
