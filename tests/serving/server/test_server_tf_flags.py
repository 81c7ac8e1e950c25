"""tensorflow_model_server's command lines move over unchanged (issue 30): every flag of its
`--help` (2.x) is accepted, implemented where it means something here, else named at start as
having no effect; the hyphen spellings of the project's other CLIs are aliases."""
from __future__ import annotations

import logging

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

import _serving_models as sm
from serving.server import cli
from serving.server.model_server import ModelServer
from serving.server.options import NO_EFFECT

# Every flag of tensorflow_model_server 2.x (tensorflow/serving, tensorflow_serving/model_servers/
# main.cc at 9d981c5, 2026-07-30), with a value it accepts.
TF_SERVING_FLAGS = {
    "port": "0", "grpc_socket_path": "/tmp/zoo-test.sock", "rest_api_port": "0", "rest_api_num_threads": "2",
    "rest_api_timeout_in_ms": "1000", "rest_api_enable_cors_support": "true", "enable_batching": "true",
    "allow_version_labels_for_unavailable_models": "true", "batching_parameters_file": None,
    "enable_per_model_batching_parameters": "true", "model_config_file": None,
    "model_config_file_poll_wait_seconds": "5", "model_name": "m", "model_base_path": None,
    "num_load_threads": "2", "num_unload_threads": "2", "max_num_load_retries": "1",
    "load_retry_interval_micros": "1000", "file_system_poll_wait_seconds": "2",
    "flush_filesystem_caches": "false", "tensorflow_session_parallelism": "2",
    "tensorflow_session_config_file": "/tmp/session.pbtxt", "tensorflow_intra_op_parallelism": "1",
    "tensorflow_inter_op_parallelism": "1", "use_alts_credentials": "false", "ssl_config_file": None,
    "platform_config_file": "/tmp/platform.pbtxt", "per_process_gpu_memory_fraction": "0.5",
    "saved_model_tags": "serve", "grpc_channel_arguments": "grpc.max_connection_age_ms=2000",
    "grpc_max_threads": "4", "enable_model_warmup": "false", "num_request_iterations_for_warmup": "3",
    "version": None, "monitoring_config_file": None, "remove_unused_fields_from_bundle_metagraph": "true",
    "prefer_tflite_model": "false", "num_tflite_pools": "2", "num_tflite_interpreters_per_pool": "1",
    "enable_signature_method_name_check": "false", "xla_cpu_compilation_enabled": "false",
    "xla_gpu_compilation_enabled": "false", "enable_profiler": "true", "thread_pool_factory_config_file": "/tmp/t",
    "mixed_precision": "bfloat16", "skip_initialize_tpu": "true", "enable_grpc_healthcheck_service": "true",
    "enable_serialization_as_tensor_content": "false",
}
# where the value is a file (written by the fixture) or the flag takes none
FILES = {"batching_parameters_file": "max_batch_size { value: 4 }\n",
         "monitoring_config_file": "prometheus_config { enable: true }\n",
         "ssl_config_file": None, "model_config_file": None, "model_base_path": None}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("flags")
    sm.write_model(str(root / "m"), 1)
    for name, text in FILES.items():
        if text is not None:
            (root / name).write_text(text)
    return root


@pytest.mark.parametrize("flag", sorted(TF_SERVING_FLAGS))
def test_every_tensorflow_model_server_flag_is_accepted(flag, base, capsys):
    """Fails on the old code for --enable_model_warmup, --allow_version_labels_for_unavailable_models,
    --grpc_channel_arguments, --saved_model_tags, --num_load_threads and the others it rejected."""
    argv = [f"--model_base_path={base / 'm'}"]
    value = TF_SERVING_FLAGS[flag]
    if flag == "version":
        with pytest.raises(SystemExit) as info:
            cli.parse(["--version"])
        assert info.value.code == 0 and "zoo-serve" in capsys.readouterr().out
        return
    if flag in ("model_base_path",):
        argv = [f"--model_base_path={base / 'm'}"]
    elif flag == "model_config_file":
        (base / "models.config").write_text(
            f'model_config_list {{ config {{ name: "m" base_path: "{base / "m"}" model_platform: "tensorflow" }} }}\n')
        argv = [f"--model_config_file={base / 'models.config'}"]
    elif flag == "ssl_config_file":  # known (its contents are tested with real certificates elsewhere)
        with pytest.raises(SystemExit):
            cli.parse(argv + [f"--ssl_config_file={base / 'missing'}"])
        err = capsys.readouterr().err
        assert "--ssl_config_file" in err and "unrecognized" not in err
        return
    elif flag in FILES:
        argv.append(f"--{flag}={base / flag}")
        if flag == "batching_parameters_file":
            argv.append("--enable_batching")
    else:
        argv.append(f"--{flag}={value}")
    options, notes = cli.parse(argv)
    if flag in NO_EFFECT:
        assert notes == [f"--{flag} has no effect here: {NO_EFFECT[flag][1]}"]
    else:
        assert notes == []
        if flag not in FILES and flag not in ("rest_api_port", "port"):
            got = getattr(options, flag)
            assert str(got).lower() == value or got == type(got)(value), (flag, got)


def test_no_effect_flags_are_exactly_tf_servings_others():
    assert set(NO_EFFECT) < set(TF_SERVING_FLAGS)


def test_hyphen_spellings_are_aliases(base):
    """`--model-name` etc., as zoo-export, zoo-query and zoo-tune spell them (fails on the old code)."""
    hyphen, _ = cli.parse([f"--model-base-path={base / 'm'}", "--model-name", "m", "--grpc-max-threads=3",
                           "--enable-batching", "--rest-api-port", "0", "--flush-filesystem-caches"])
    underscore, _ = cli.parse([f"--model_base_path={base / 'm'}", "--model_name", "m", "--grpc_max_threads=3",
                               "--enable_batching", "--rest_api_port", "0", "--flush_filesystem_caches"])
    assert hyphen == underscore and hyphen.model_name == "m" and hyphen.grpc_max_threads == 3
    assert "--model-name" not in cli.build_parser().format_help()  # TF Serving's spellings are documented


def test_implemented_flags_take_effect(base, tmp_path, caplog):
    """--enable_model_warmup=false skips a warmup that would fail the load; --grpc_socket_path
    serves gRPC on a UNIX socket; --grpc_channel_arguments, --saved_model_tags, --num_load_threads,
    --tensorflow_session_parallelism and --num_request_iterations_for_warmup are taken."""
    caplog.set_level(logging.INFO, logger="serving")
    sm.write_model(str(tmp_path / "m"), 1)
    warmup = tmp_path / "m" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    warmup.write_bytes(b"not a TFRecord")  # would fail the load if replayed
    sock = tmp_path / "grpc.sock"
    options, _ = cli.parse([f"--model_base_path={tmp_path / 'm'}", "--model_name=m", "--port=0",
                            "--enable_model_warmup=false", f"--grpc_socket_path={sock}",
                            "--grpc_channel_arguments=grpc.max_connection_age_ms=60000,grpc.primary_user_agent=zoo",
                            "--saved_model_tags=serve", "--num_load_threads=1",
                            "--num_request_iterations_for_warmup=2"])
    with ModelServer(options):
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(sm.sample_images(1)))
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
            assert response.model_spec.version.value == 1
    options.saved_model_tags = "train"  # no MetaGraph has it: the load fails, naming the tags
    options.grpc_socket_path = None
    with pytest.raises(Exception, match="train"):
        ModelServer(options).start()
