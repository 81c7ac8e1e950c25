"""Server building blocks without a server: errors, config files, tensors, batcher, model configs, flags."""
from __future__ import annotations

import re
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving import config_files, errors, tensors
from serving.server.batching import Batcher
from serving.server.cli import main as cli_main
from serving.server.repository import ModelConfig, parse_model_config_text
from serving.server.model_server import ServerOptions


# ------------------------------------------------------------------ errors
def test_truncation_and_http_mapping():
    assert errors.truncate_message("short") == "short"
    cut = errors.truncate_message("x" * 5000)
    assert len(cut) == 1024 and cut.endswith("...TRUNCATED")
    assert errors.ServingError(grpc.StatusCode.NOT_FOUND, "y" * 2000).message == errors.truncate_message("y" * 2000)
    expected = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
                "ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
                "INTERNAL": 500, "UNKNOWN": 500}
    assert {name: errors.http_status(grpc.StatusCode[name]) for name in expected} == expected


def test_error_helpers_validate_arguments():
    with pytest.raises(TypeError, match="grpc.StatusCode"):
        errors.http_status(404)
    with pytest.raises(ValueError, match="must not be OK"):
        errors.ServingError(grpc.StatusCode.OK, "fine")
    with pytest.raises(TypeError, match="grpc.StatusCode"):
        errors.ServingError("NOT_FOUND", "x")
    with pytest.raises(ValueError, match="valid:.*NOT_FOUND"):
        errors.code_from_name("NOTFOUND")
    with pytest.raises(ValueError, match="limit must be"):
        errors.truncate_message("x", limit=3)
    tf_error = tf.errors.InvalidArgumentError(None, None, "bad op")
    assert errors.as_serving_error(tf_error).code == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ config files
def test_batching_parameters_file():
    p = config_files.parse_batching_parameters(
        "max_batch_size { value: 32 }  # comment\nbatch_timeout_micros { value: 500 }\n"
        "max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 2 }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\npad_variable_length_inputs: true\n")
    assert (p.max_batch_size, p.batch_timeout_micros, p.max_enqueued_batches, p.num_batch_threads,
            p.allowed_batch_sizes, p.pad_variable_length_inputs) == (32, 500, 4, 2, (8, 32), True)
    with pytest.raises(ValueError, match='no field named "max_bach_size".*valid fields.*max_batch_size'):
        config_files.parse_batching_parameters("max_bach_size { value: 8 }")
    with pytest.raises(ValueError, match="last entry must equal max_batch_size"):
        config_files.parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    with pytest.raises(ValueError, match="strictly increasing"):
        config_files.BatchingParameters(max_batch_size=8, allowed_batch_sizes=(8, 4, 8))
    with pytest.raises(ValueError, match="max_batch_size must be a positive integer"):
        config_files.BatchingParameters(max_batch_size=0)
    with pytest.raises(ValueError, match="batch_timeout_micros"):
        config_files.BatchingParameters(batch_timeout_micros=-1)


def test_monitoring_and_ssl_config_files():
    assert config_files.parse_monitoring_config("prometheus_config { enable: true }") == \
        config_files.MonitoringConfig(True, "/monitoring/prometheus/metrics")
    assert config_files.parse_monitoring_config('prometheus_config { enable: true path: "/m" }').prometheus_path == "/m"
    with pytest.raises(ValueError, match="must start with '/'"):
        config_files.parse_monitoring_config('prometheus_config { enable: true path: "m" }')
    assert config_files.parse_ssl_config('server_key: "K" server_cert: "C"') == config_files.SslConfig("K", "C")
    with pytest.raises(ValueError, match="server_key and server_cert"):
        config_files.parse_ssl_config('server_key: "K"')
    with pytest.raises(ValueError, match="client_verify needs custom_ca"):
        config_files.parse_ssl_config('server_key: "K" server_cert: "C" client_verify: true')
    with pytest.raises(TypeError, match="must be a str"):
        config_files.parse_monitoring_config(b"prometheus_config {}")
    with pytest.raises(ValueError, match="--ssl_config_file: cannot read"):
        config_files.read_text("/nonexistent/ssl.txt", "--ssl_config_file")


# ------------------------------------------------------------------ tensors
@pytest.mark.parametrize("array", [
    np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=np.int64), np.array([1, 2], np.int32),
    np.array([[True, False]]), np.array([0.5, 1.5], np.float16), np.arange(3, dtype=np.uint8),
    np.array([b"a", b"\xff"], dtype=object), np.float64(2.5)])
def test_tensor_round_trips(array):
    for proto in (tf.make_tensor_proto(array), tensors.from_numpy(array), tensors.from_numpy_content(array)):
        got = tensors.to_numpy(proto, "x")
        assert got.shape == np.shape(array)
        np.testing.assert_array_equal(got, array)
    assert np.array_equal(tf.make_ndarray(tensors.from_numpy(array)).astype(np.asarray(array).dtype)
                          if np.asarray(array).dtype != object else tf.make_ndarray(tensors.from_numpy(array)),
                          array)


def test_tensor_content_is_the_zero_copy_path_and_outputs_use_typed_fields():
    x = np.random.rand(2, 3).astype(np.float32)
    proto = tf.make_tensor_proto(x)
    assert proto.tensor_content  # what clients send
    assert not tensors.to_numpy(proto, "x").flags.writeable  # np.frombuffer view over the bytes, no copy
    out = tensors.from_numpy(x)
    assert not out.tensor_content and len(out.float_val) == 6


def test_tensor_parsing_errors_name_the_alias():
    proto = tf.make_tensor_proto(np.zeros(4, np.float32))
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(errors.ServingError, match="tensor parsing error: images") as info:
        tensors.to_numpy(proto, "images")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    typed = tensors.from_numpy(np.zeros(3, np.float32))
    typed.tensor_shape.dim[0].size = 5
    with pytest.raises(errors.ServingError, match="tensor parsing error: x"):
        tensors.to_numpy(typed, "x")
    filled = tensors.from_numpy(np.zeros(1, np.float32))
    filled.tensor_shape.dim[0].size = 4  # one value fills the shape, as in TF
    assert tensors.to_numpy(filled, "x").shape == (4,)
    with pytest.raises(TypeError, match="TensorProto"):
        tensors.to_numpy(np.zeros(2))


def test_json_conversions():
    arr = tensors.json_to_numpy([[{"b64": "YWI="}, "c"]], types_pb2.DT_STRING, "s")
    assert arr.shape == (1, 2) and arr.tolist() == [[b"ab", b"c"]]
    assert tensors.numpy_to_json(np.array([b"ab"], dtype=object), "image_bytes") == [{"b64": "YWI="}]
    assert tensors.numpy_to_json(np.array([b"ab", b"\xff"], dtype=object), "classes") == ["ab", {"b64": "/w=="}]
    assert np.isnan(tensors.json_to_numpy([float("nan")], types_pb2.DT_FLOAT, "x")[0])
    with pytest.raises(errors.ServingError, match="input 'x': ragged"):
        tensors.json_to_numpy([[1], [1, 2]], types_pb2.DT_FLOAT, "x")
    with pytest.raises(errors.ServingError, match="invalid base64"):
        tensors.json_to_numpy([{"b64": "!!"}], types_pb2.DT_STRING, "s")
    with pytest.raises(errors.ServingError, match="ragged"):
        tensors.json_to_numpy([["a"], ["b", "c"]], types_pb2.DT_STRING, "s")
    serialized = tensors.examples_from_json([{"f": [1.5, 2], "i": 3, "s": "t"}], context={"c": [1.0]})
    ex = tf.train.Example.FromString(serialized[0])
    assert list(ex.features.feature["f"].float_list.value) == [1.5, 2.0]
    assert list(ex.features.feature["i"].int64_list.value) == [3]
    assert list(ex.features.feature["s"].bytes_list.value) == [b"t"]
    assert "c" in ex.features.feature
    with pytest.raises(errors.ServingError, match="'examples' must be a non-empty list"):
        tensors.examples_from_json({"f": 1})


# ------------------------------------------------------------------ batcher
def _nested(depth, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("value, dtype, fragment", [
    ([[0.5, None]], types_pb2.DT_FLOAT, "null is not a valid DT_FLOAT"),
    ([[0.5, True]], types_pb2.DT_FLOAT, "true is not a valid DT_FLOAT"),
    ([[0.5, "0.5"]], types_pb2.DT_FLOAT, "the string '0.5' is not a valid"),
    (["nan"], types_pb2.DT_FLOAT, "the string 'nan'"),
    ([{"b64": "AAAA"}], types_pb2.DT_FLOAT, "a JSON object is not a valid"),
    ([1.5], types_pb2.DT_INT64, "a JSON float is not a valid DT_INT64"),
    ([1, 0], types_pb2.DT_BOOL, "a JSON int is not a valid DT_BOOL"),
    ([10**400], types_pb2.DT_FLOAT, "out of range for DT_FLOAT"),
    ([2**64], types_pb2.DT_INT64, "out of range for DT_INT64"),
    (_nested(65, 0.5), types_pb2.DT_FLOAT, "nested deeper than 64"),
    (_nested(1000, 0.5), types_pb2.DT_FLOAT, "nested deeper than 64"),
    (_nested(600, "x"), types_pb2.DT_STRING, "nested deeper than 64"),
])
def test_json_values_that_are_not_of_the_dtype_are_client_errors(value, dtype, fragment):
    """null became NaN, true 1 and "0.5" 0.5 (a confident answer to a broken request); deep
    nesting and huge integers raised ValueError/RecursionError/OverflowError (answered 500)."""
    with pytest.raises(errors.ServingError, match=re.escape(fragment)) as info:
        tensors.json_to_numpy(value, dtype, "x")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_json_numbers_still_convert():
    assert tensors.json_to_numpy([[1, 2.5]], types_pb2.DT_FLOAT, "x").tolist() == [[1.0, 2.5]]
    assert tensors.json_to_numpy([True, False], types_pb2.DT_BOOL, "x").tolist() == [True, False]
    assert tensors.json_to_numpy(_nested(64, 7), types_pb2.DT_INT64, "x").ndim == 64
    assert tensors.json_to_numpy([], types_pb2.DT_FLOAT, "x").shape == (0,)


@pytest.mark.parametrize("proto, fragment", [
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5], tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)] * 65)), "rank 65"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (0, 2**62, 2**62)])), "elements"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"png"],
                            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=100000)])),
     "one string for shape [100000]"),
])
def test_tensor_shapes_that_cannot_be_decoded_are_client_errors(proto, fragment):
    """65 dims or a dim product over int64 ended in INTERNAL; one string filled into [100000]
    made the bytes signature decode 100,000 images for a request of a few bytes."""
    with pytest.raises(errors.ServingError, match=re.escape(fragment)) as info:
        tensors.to_numpy(proto, "x")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_context_merging_is_bounded():
    """A 30,000-float context merged into 600 empty examples made 72 MB of examples from a
    120 kB request (the probe: 100k floats x 3,000 examples took 21 s and 2.35 GB)."""
    from tensorflow_serving.apis import input_pb2

    context = {"images": [0.5] * 30000}
    with pytest.raises(errors.ServingError, match="merged into 600 examples"):
        tensors.examples_from_json([{}] * 600, context)
    proto = input_pb2.Input()
    proto.example_list_with_context.context.features.feature["images"].float_list.value.extend(context["images"])
    for _ in range(600):
        proto.example_list_with_context.examples.add()
    with pytest.raises(errors.ServingError, match="merged into 600 examples"):
        tensors.examples_from_input(proto)
    assert len(tensors.examples_from_json([{}] * 2, context)) == 2  # a context within bounds still merges


def _params(**kw):
    base = dict(max_batch_size=4, batch_timeout_micros=100_000, num_batch_threads=1)
    base.update(kw)
    return config_files.BatchingParameters(**base)


def test_batcher_merges_pads_and_splits():
    seen = []

    def run(inputs):
        seen.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2}

    batcher = Batcher(_params(allowed_batch_sizes=(2, 4)), run)
    try:
        results = [None] * 3
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, batcher.submit({"x": np.full((1, 2), i, np.float32)}))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [4]  # 3 tasks merged, padded up to the allowed size 4
        for i, r in enumerate(results):
            np.testing.assert_array_equal(r["y"], np.full((1, 2), 2 * i))
        with pytest.raises(errors.ServingError, match="Task size 5 is larger than maximum input batch size 4") as info:
            batcher.submit({"x": np.zeros((5, 2), np.float32)})
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(errors.ServingError, match="equal 0th-dimension"):
            batcher.submit({"x": np.zeros((1, 2)), "z": np.zeros((2, 2))})
    finally:
        batcher.close()


def test_batcher_queue_full_is_unavailable():
    release = threading.Event()

    def slow(inputs):
        release.wait(10)
        return {"y": inputs["x"]}

    batcher = Batcher(_params(max_batch_size=1, batch_timeout_micros=0, max_enqueued_batches=1), slow)
    pool = [threading.Thread(target=batcher.submit, args=({"x": np.zeros((1, 1))},)) for _ in range(2)]
    try:
        pool[0].start()
        deadline = time.monotonic() + 10
        while batcher.queue_depth and time.monotonic() < deadline:  # worker took task 1 and is stuck
            time.sleep(0.01)
        pool[1].start()  # task 2 fills the only queue slot
        while batcher.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(errors.ServingError, match="queue to which this task was submitted is full") as info:
            batcher.submit({"x": np.zeros((1, 1))})
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        release.set()
        for t in pool:
            t.join()
        batcher.close()


def test_batcher_validates_arguments():
    with pytest.raises(TypeError, match="BatchingParameters"):
        Batcher({"max_batch_size": 4}, lambda x: x)
    with pytest.raises(TypeError, match="run must be callable"):
        Batcher(_params(), None)


# ------------------------------------------------------------------ model config
def test_model_config_text_and_policies(tmp_path):
    configs = parse_model_config_text("""model_config_list {
        config { name: "a" base_path: "rel/a" model_platform: "tensorflow"
                 model_version_policy { latest { num_versions: 2 } } }
        config { name: "b" base_path: "/abs/b" model_version_policy { specific { versions: 1 versions: 3 } }
                 version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 } } }""",
                                      str(tmp_path))
    a, b = configs
    assert a.base_path == str(tmp_path / "rel" / "a") and b.base_path == "/abs/b"
    assert a.aspired([1, 2, 3, 10]) == {3, 10}
    assert b.aspired([1, 2, 4]) == {1}
    assert b.label_map == {"stable": 1, "canary": 3}
    assert ModelConfig("c", "/x", "all").aspired([4, 5]) == {4, 5}


@pytest.mark.parametrize("kwargs, match", [
    ({"policy": "newest"}, "version policy must be one of"),
    ({"policy": "specific"}, "specific policy needs at least one version"),
    ({"num_versions": 0}, "num_versions must be >= 1"),
    ({"labels": (("bad-label", 1),)}, "invalid version label"),
    ({"name": "../x"}, "invalid model name"),
    ({"base_path": ""}, "base_path must be a non-empty path"),
])
def test_model_config_validation(kwargs, match):
    args = {"name": "m", "base_path": "/m", **kwargs}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**args)


def test_model_config_file_errors():
    with pytest.raises(ValueError, match="invalid model config"):
        parse_model_config_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ValueError, match="model_platform must be 'tensorflow'"):
        parse_model_config_text('model_config_list { config { name: "x" base_path: "/x" model_platform: "onnx" } }')
    with pytest.raises(ValueError, match="configured twice"):
        parse_model_config_text('model_config_list { config { name: "x" base_path: "/x" } '
                                'config { name: "x" base_path: "/y" } }')


# ------------------------------------------------------------------ flags
@pytest.mark.parametrize("argv, message", [
    (["--model_base_path", "/m", "--no_such_flag"], "unrecognized arguments: --no_such_flag"),
    (["--model_base_path", "/m", "--port", "http"], "argument --port: must be an integer in [0, 65535]"),
    (["--model_base_path", "/m", "--rest_api_port", "70000"], "argument --rest_api_port: must be an integer"),
    (["--model_base_path", "/m", "--enable_batching=maybe"], "--enable_batching: expected true or false"),
    (["--model_base_path", "/m", "--per_process_gpu_memory_fraction", "1.5"], "finite number in [0, 1]"),
    (["--model_base_path", "/m", "--engine", "triton"], "invalid choice: 'triton'"),
    ([], "one of --model_config_file or --model_base_path is required"),
    (["--model_base_path", "/m", "--model_config_file", "/c"], "not both"),
    (["--model_base_path", "/m", "--ssl_cert_file", "/c"], "--ssl_cert_file and --ssl_key_file"),
    (["--model_config_file", "/nonexistent.config"], "--model_config_file: cannot read"),
    # issue 21 defect 13: every numeric flag is range-checked (inf, nan, overflow) before any load
    (["--model_base_path", "/m", "--max_request_bytes=100000000000"],
     "--max_request_bytes: must be an integer in [1024, 2147483647]"),
    (["--model_base_path", "/m", "--file_system_poll_wait_seconds=inf"],
     "--file_system_poll_wait_seconds: must be a finite"),
    (["--model_base_path", "/m", "--file_system_poll_wait_seconds=nan"],
     "--file_system_poll_wait_seconds: must be a finite"),
    (["--model_base_path", "/m", "--model_config_file_poll_wait_seconds=-1"],
     "--model_config_file_poll_wait_seconds: must be"),
    (["--model_base_path", "/m", "--per_process_gpu_memory_fraction=nan"],
     "--per_process_gpu_memory_fraction: must be"),
    (["--model_base_path", "/m", "--rest_api_timeout_in_ms=1e3"], "--rest_api_timeout_in_ms: must be an integer"),
    (["--model_base_path", "/m", "--rest_api_timeout_in_ms=99999999999"], "--rest_api_timeout_in_ms: must be"),
    (["--model_base_path", "/m", "--grpc_max_threads=10000000"],
     "--grpc_max_threads: must be an integer in [0, 10000]"),
    (["--model_base_path", "/m", "--tensorflow_intra_op_parallelism=-1"], "--tensorflow_intra_op_parallelism: must be"),
    (["--model_base_path", "/m", "--max_num_load_retries=-1"], "--max_num_load_retries: must be"),
    (["--model_base_path", "/m", "--load_retry_interval_micros=1e9"], "--load_retry_interval_micros: must be"),
    (["--model_base_path", "/m", "--rest_api_header_timeout_in_ms=0"], "--rest_api_header_timeout_in_ms: must be"),
    (["--model_base_path", "/m", "--rest_api_idle_timeout_in_ms=inf"], "--rest_api_idle_timeout_in_ms: must be"),
    (["--model_base_path", "/m", "--rest_api_max_uncompressed_bytes=0"], "--rest_api_max_uncompressed_bytes: must be"),
])
def test_cli_usage_errors_exit_2(argv, message, capsys):
    """A usage error is one line naming the flag (no usage block), exit 2."""
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("zoo-serve: error: ") and err.count("\n") == 1, err


def test_cli_bad_batching_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "batching.txt"
    bad.write_text("max_batch_size: 8")  # a wrapper message needs { value: 8 }
    with pytest.raises(SystemExit) as info:
        cli_main(["--model_base_path", "/m", "--enable_batching", "--batching_parameters_file", str(bad)])
    assert info.value.code == 2 and "invalid batching parameters" in capsys.readouterr().err


def test_cli_real_engine_missing_binary_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit) as info:
        cli_main(["--engine", "tensorflow_model_server", "--model_base_path", "/m"])
    assert info.value.code == 2
    assert "tensorflow_model_server binary is not on PATH" in capsys.readouterr().err


def test_server_options_validate():
    with pytest.raises(ValueError, match="--port must be an integer in"):
        ServerOptions(port=-1, model_base_path="/m").validate()
    with pytest.raises(ValueError, match="--max_request_bytes"):
        ServerOptions(model_base_path="/m", max_request_bytes=10).validate()
    # in-process users get the same range checks as the command line (issue 21 defect 13)
    for field, value in (("max_request_bytes", 10**11), ("file_system_poll_wait_seconds", float("inf")),
                         ("file_system_poll_wait_seconds", float("nan")), ("grpc_max_threads", True),
                         ("model_config_file_poll_wait_seconds", float("nan")), ("rest_api_timeout_in_ms", 1.5)):
        with pytest.raises(ValueError, match=f"--{field} must be"):
            ServerOptions(model_base_path="/m", **{field: value}).validate()


def test_deploy_config_files_parse():
    """deploy/ files are read by real TF Serving too: keep them valid for the same parsers."""
    import pathlib

    deploy = pathlib.Path(__file__).resolve().parents[3] / "deploy"
    (digits,) = parse_model_config_text((deploy / "models.config").read_text(), str(deploy))
    assert digits.base_path == "/models/digits"
    gpu = config_files.parse_batching_parameters((deploy / "batching_gpu.txt").read_text())
    assert gpu.allowed_batch_sizes[-1] == gpu.max_batch_size == 256
    config_files.parse_batching_parameters((deploy / "batching_cpu.txt").read_text())
    assert config_files.parse_monitoring_config((deploy / "monitoring.config").read_text()).prometheus_enable
    compose = (deploy / "docker-compose.yml").read_text()
    assert "tensorflow/serving:latest-gpu" in compose and "capabilities: [gpu]" in compose


def test_fast_signature_call_matches_the_public_call(tmp_path, monkeypatch):
    """runtime calls signatures through ConcreteFunction._call_flat; it must equal fn(**kwargs)."""
    import _serving_models as sm
    from serving.server.runtime import Servable

    sm.write_model(str(tmp_path / "m"), 1, bias=3.0, warmup=False)
    fast = Servable("m", 1, str(tmp_path / "m" / "1"))
    assert fast.load()
    monkeypatch.setenv("ZOO_SERVING_PLAIN_CALL", "1")
    plain = Servable("m", 1, str(tmp_path / "m" / "1"))
    assert plain.load()
    x = sm.sample_images(3)
    a, b = fast.predict("", {"images": x})[1], plain.predict("", {"images": x})[1]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    ex = [tf.train.Example(features=tf.train.Features(feature={"images": tf.train.Feature(
        float_list=tf.train.FloatList(value=img.ravel()))})).SerializeToString() for img in x]
    np.testing.assert_allclose(fast.regress("regress", ex)[1], x.sum(axis=(1, 2, 3)) + 3.0, rtol=1e-5)
    np.testing.assert_array_equal(fast.regress("regress", ex)[1], plain.regress("regress", ex)[1])


def test_public_constructors_and_helpers_name_bad_arguments():
    from serving.server.metrics import Metrics
    from serving.server.repository import ModelManager
    from serving.server.runtime import Servable, configure_devices, configure_threads
    from serving.server.model_server import ModelServer

    with pytest.raises(ValueError, match="version must be a non-negative int"):
        Servable("m", -1, "/m")
    with pytest.raises(ValueError, match=r"per_process_gpu_memory_fraction must be in \[0, 1\]"):
        configure_devices(memory_fraction=2.0)
    with pytest.raises(ValueError, match="tensorflow_intra_op_parallelism must be an integer >= 0"):
        configure_threads(intra_op=-1)
    with pytest.raises(TypeError, match="list of ModelConfig"):
        ModelManager(["m"])
    with pytest.raises(TypeError, match="ServerOptions"):
        ModelServer({"port": 0})
    with pytest.raises(ValueError, match=r"entrypoint must be one of \('GRPC', 'REST'\)"):
        Metrics().observe_request("m", "predict", "HTTP", "OK", 1.0)
    with pytest.raises(errors.ServingError, match="unsupported dtype DT_COMPLEX64"):
        tensors.numpy_dtype(types_pb2.DT_COMPLEX64)
    with pytest.raises(errors.ServingError, match="unsupported numpy dtype complex64"):
        tensors.from_numpy(np.zeros(2, np.complex64))
    with pytest.raises(errors.ServingError, match="Input is empty"):
        from tensorflow_serving.apis import input_pb2
        tensors.examples_from_input(input_pb2.Input())


def test_warmup_reads_every_record_and_a_truncated_file_fails_the_load(tmp_path, caplog):
    """The warmup file is read by TF's record reader without a tf.data pipeline (0.1-0.2 s of every
    start-up): every record is replayed, TF Serving's line says how many, and a truncated file
    (its CRC-checked framing broken) still fails the version's load."""
    import logging

    import _serving_models as sm
    from serving.server.runtime import Servable

    path = tmp_path / "m" / "1"
    sm.write_model(str(tmp_path / "m"), 1)
    warmup = path / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(warmup))]
    with tf.io.TFRecordWriter(str(warmup)) as writer:  # three records, not the one written
        for record in records * 3:
            writer.write(record)
    with caplog.at_level(logging.INFO, logger="serving"):
        assert Servable("m", 1, str(path)).load()
    assert f"Number of warmup records read: {3 * len(records)}." in caplog.text

    warmup.write_bytes(warmup.read_bytes()[:-10])
    broken = Servable("m", 1, str(path))
    assert not broken.load()
    assert broken.error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Warmup failed" in broken.error.message and "truncated record" in broken.error.message
