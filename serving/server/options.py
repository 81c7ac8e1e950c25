"""The server's options (tensorflow_model_server's flags as fields), their ranges and config files.

Kept apart from `server` so the command line can check every flag and read every config file
before TensorFlow is imported: a typo is then a one-line usage error in a fraction of a second,
never a failure after minutes of model loading.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os

import grpc

from serving import config_files

from serving.exporter import model_server_config
from serving.exporter.model_server_config import ModelConfig

log = logging.getLogger("serving")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
DEFAULT_MAX_REQUEST_BYTES = INT32_MAX  # TF Serving sets gRPC's max message size to kint32max
# TF Serving's net_http inflates a gzip body up to ZLib::kMaxUncompressedBytes (100 MiB) and fails beyond.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024

# Every numeric option: (kind, lowest, highest). Upper bounds are what the part that uses the
# value can hold (gRPC's int message size, TF Serving's int32 flags, a thread pool's size), so a
# value that would fail after the models loaded is refused before.
NUMERIC: dict[str, tuple[type, float, float]] = {
    "port": (int, 0, 65535),
    "rest_api_port": (int, 0, 65535),
    "model_config_file_poll_wait_seconds": (float, 0, INT32_MAX),
    "file_system_poll_wait_seconds": (float, 0, INT32_MAX),
    "grpc_max_threads": (int, 0, 10000),
    "rest_api_num_threads": (int, 0, 10000),
    "rest_api_timeout_in_ms": (int, 0, INT32_MAX),
    "rest_api_header_timeout_in_ms": (int, 1, INT32_MAX),
    "rest_api_idle_timeout_in_ms": (int, 1, INT32_MAX),
    "rest_api_write_timeout_in_ms": (int, 1, INT32_MAX),
    "rest_api_max_uncompressed_bytes": (int, 1, INT32_MAX),
    "tensorflow_intra_op_parallelism": (int, 0, INT32_MAX),
    "tensorflow_inter_op_parallelism": (int, 0, INT32_MAX),
    "per_process_gpu_memory_fraction": (float, 0, 1),
    "max_request_bytes": (int, 1024, INT32_MAX),
    "max_num_load_retries": (int, 0, INT32_MAX),
    "load_retry_interval_micros": (int, -INT64_MAX, INT64_MAX),
    "num_load_threads": (int, 0, 10000),
    "num_request_iterations_for_warmup": (int, 0, INT32_MAX),
    "tensorflow_session_parallelism": (int, 0, INT32_MAX),
}

# tensorflow_model_server (2.x) flags that mean nothing here: accepted, so that a command line
# moves over unchanged, and each one given says so in one line at start. flag -> (kind, why).
NO_EFFECT: dict[str, tuple[type, str]] = {
    "rest_api_enable_cors_support": (bool, "the REST API sends no CORS headers"),
    "enable_per_model_batching_parameters": (bool, "batching parameters come from --batching_parameters_file only"),
    "num_unload_threads": (int, "each version unloads in the thread that retires it"),
    "flush_filesystem_caches": (bool, "there are no file system caches to flush"),
    "tensorflow_session_config_file": (str, "there is no TF1 session: use the parallelism flags"),
    "use_alts_credentials": (bool, "ALTS is not available: use --ssl_config_file"),
    "platform_config_file": (str, "only the TensorFlow platform is served"),
    "remove_unused_fields_from_bundle_metagraph": (bool, "no MetaGraphDef is kept after loading"),
    "prefer_tflite_model": (bool, "TensorFlow Lite models are not served"),
    "num_tflite_pools": (int, "TensorFlow Lite models are not served"),
    "num_tflite_interpreters_per_pool": (int, "TensorFlow Lite models are not served"),
    "enable_signature_method_name_check": (bool, "method names are checked where TF Serving checks them by default"),
    "xla_cpu_compilation_enabled": (bool, "models run as saved; XLA follows TensorFlow's own settings"),
    "xla_gpu_compilation_enabled": (bool, "models run as saved; XLA follows TensorFlow's own settings"),
    "enable_profiler": (bool, "there is no profiler service"),
    "thread_pool_factory_config_file": (str, "there are no custom thread pools"),
    "mixed_precision": (str, "models run in the precision they were saved in"),
    "skip_initialize_tpu": (bool, "TPUs are not used"),
    "enable_grpc_healthcheck_service": (bool, "the gRPC health service is always on"),
    "enable_serialization_as_tensor_content": (bool, "Predict answers use the typed value fields"),
}


def range_text(name: str) -> str:
    """'an integer in [0, 65535]' / 'a finite number in [0, 1]' for option `name`."""
    kind, lo, hi = NUMERIC[name]
    return f"{'an integer' if kind is int else 'a finite number'} in [{lo}, {hi}]"


def check_number(name: str, value: object) -> int | float:
    """`value` if option `name` may take it, else ValueError naming the range (inf and nan included)."""
    kind, lo, hi = NUMERIC[name]
    ok = not isinstance(value, bool) and (isinstance(value, int) if kind is int else isinstance(value, (int, float)))
    if ok and kind is float:
        ok = math.isfinite(value)  # type: ignore[arg-type]
    if not ok or not lo <= value <= hi:  # type: ignore[operator]
        raise ValueError(f"--{name} must be {range_text(name)}, got {value!r}")
    return value  # type: ignore[return-value]


def parse_number(name: str, text: str) -> int | float:
    """Command-line text for option `name` -> its value; ValueError naming the range."""
    kind = NUMERIC[name][0]
    try:
        value = kind(text.strip())
    except (ValueError, OverflowError):
        raise ValueError(f"--{name} must be {range_text(name)}, got {text!r}") from None
    try:
        return check_number(name, value)
    except ValueError:
        raise ValueError(f"--{name} must be {range_text(name)}, got {text!r}") from None


@dataclasses.dataclass
class ServerOptions:
    """tensorflow_model_server's flags as fields. `rest_api_port`: None = off, 0 = any free port."""

    port: int = 8500
    rest_api_port: int | None = None
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    monitoring_config_file: str | None = None
    grpc_max_threads: int = 0  # 0 = 4 x CPU cores (TF Serving's default), more with batching
    rest_api_num_threads: int = 0  # 0 = the same as grpc_max_threads
    rest_api_timeout_in_ms: int = 30000  # a REST call, body upload included; 0 = unbounded
    rest_api_header_timeout_in_ms: int = 10000  # from a request's first byte to its last header line
    rest_api_idle_timeout_in_ms: int = 75000  # a connection with no request in progress is closed
    rest_api_write_timeout_in_ms: int = 30000  # an answer not taken by its client by then: connection closed
    rest_api_max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES  # a gzip/deflate body, inflated
    tensorflow_intra_op_parallelism: int = 0  # 0 = TF's default (all cores)
    tensorflow_inter_op_parallelism: int = 0  # 0 = TF's default
    per_process_gpu_memory_fraction: float = 0.0
    gpu_memory_growth: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_num_load_retries: int = 5  # TF Serving's default
    load_retry_interval_micros: int = 60_000_000  # TF Serving's default (1 minute); < 0 = no wait
    ssl_config_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    grpc_socket_path: str | None = None  # also serve gRPC on this UNIX socket
    grpc_channel_arguments: str = ""  # "key=value,key=value": gRPC server channel arguments
    enable_model_warmup: bool = True  # replay assets.extra/tf_serving_warmup_requests at load
    num_request_iterations_for_warmup: int = 0  # each warmup record this many times (0 = once)
    saved_model_tags: str = "serve"  # comma-separated MetaGraph tags to load
    tensorflow_session_parallelism: int = 0  # intra and inter op threads where those are 0
    num_load_threads: int = 0  # versions loading at once (0 = no bound: a thread per model)
    allow_version_labels_for_unavailable_models: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the bad option and what is allowed."""
        for name in NUMERIC:
            value = getattr(self, name)
            if name == "rest_api_port" and value is None:
                continue
            check_number(name, value)
        if self.model_config_file and self.model_base_path:
            raise ValueError("use either --model_config_file or --model_name/--model_base_path, not both")
        if not self.model_config_file and not self.model_base_path:
            raise ValueError("one of --model_config_file or --model_base_path is required")
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise ValueError("--ssl_cert_file and --ssl_key_file must be given together")
        if self.ssl_config_file and self.ssl_cert_file:
            raise ValueError("use either --ssl_config_file or --ssl_cert_file/--ssl_key_file, not both")
        self.channel_arguments()
        if not self.tags():
            raise ValueError("--saved_model_tags must name at least one tag, e.g. serve")

    # ------------------------------------------------------------------ derived settings
    def channel_arguments(self) -> list[tuple[str, int | str]]:
        """--grpc_channel_arguments as gRPC options: an integer value is passed as an int, anything
        else as a string (as TF Serving's parseGrpcChannelArgs)."""
        out: list[tuple[str, int | str]] = []
        for item in filter(None, (p.strip() for p in self.grpc_channel_arguments.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"--grpc_channel_arguments must be key=value[,key=value...], got {item!r}")
            try:
                out.append((key.strip(), int(value)))
            except ValueError:
                out.append((key.strip(), value))
        return out

    def tags(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.saved_model_tags.split(",") if t.strip())

    def model_configs(self) -> list[ModelConfig]:
        if self.model_config_file:
            try:
                return model_server_config.read_config_file(self.model_config_file)
            except ValueError as exc:
                raise ValueError(f"--model_config_file: {exc}") from None
        try:
            return [ModelConfig(self.model_name, os.path.abspath(self.model_base_path or ""))]
        except ValueError as exc:
            raise ValueError(f"--model_name/--model_base_path: {exc}") from None

    def batching(self) -> config_files.BatchingParameters | None:
        if not self.enable_batching:
            if self.batching_parameters_file:
                log.warning("--batching_parameters_file is ignored without --enable_batching")
            return None
        if not self.batching_parameters_file:
            return config_files.BatchingParameters()
        text = config_files.read_text(self.batching_parameters_file, "--batching_parameters_file")
        params = config_files.parse_batching_parameters(text)
        if params.pad_variable_length_inputs:
            log.warning("pad_variable_length_inputs is not supported: inputs of different shapes are rejected")
        return params

    def monitoring(self) -> config_files.MonitoringConfig:
        if not self.monitoring_config_file:
            return config_files.MonitoringConfig()
        return config_files.parse_monitoring_config(
            config_files.read_text(self.monitoring_config_file, "--monitoring_config_file"))

    def credentials(self) -> grpc.ServerCredentials | None:
        if self.ssl_config_file:
            ssl = config_files.parse_ssl_config(config_files.read_text(self.ssl_config_file, "--ssl_config_file"))
        elif self.ssl_cert_file:
            ssl = config_files.SslConfig(config_files.read_text(self.ssl_key_file, "--ssl_key_file"),
                                         config_files.read_text(self.ssl_cert_file, "--ssl_cert_file"))
        else:
            return None
        return grpc.ssl_server_credentials(
            [(ssl.server_key.encode(), ssl.server_cert.encode())],
            root_certificates=ssl.custom_ca.encode() or None, require_client_auth=ssl.client_verify)


__all__ = ["ServerOptions", "NUMERIC", "NO_EFFECT", "check_number", "parse_number", "DEFAULT_MAX_REQUEST_BYTES",
           "DEFAULT_MAX_UNCOMPRESSED_BYTES"]
