"""Text-format config files whose protos are not in the tensorflow-serving-api wheel.

TF Serving reads `--batching_parameters_file`, `--monitoring_config_file` and `--ssl_config_file`
as text-format protos. Rather than hand-parse them, we declare the same messages (same field names
as TF Serving's session_bundle_config.proto, monitoring_config.proto and ssl_config.proto) in a
private descriptor pool at import time and let `google.protobuf.text_format` do the parsing, so
files written for real TF Serving parse unchanged and typos are reported with line/column.
"""
from __future__ import annotations

import dataclasses
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

_FD = descriptor_pb2.FieldDescriptorProto


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(
        name="cnn_zoo/serving_config_files.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])

    def msg(name: str, fields: list[tuple[str, int, str | None, bool]]) -> None:
        m = f.message_type.add(name=name)
        for number, (fname, ftype, type_name, repeated) in enumerate(fields, start=1):
            field = m.field.add(name=fname, number=number, type=ftype,
                                label=_FD.LABEL_REPEATED if repeated else _FD.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name

    i64 = (_FD.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    msg("BatchingParameters", [
        ("max_batch_size", *i64, False),
        ("batch_timeout_micros", *i64, False),
        ("max_enqueued_batches", *i64, False),
        ("num_batch_threads", *i64, False),
        ("thread_pool_name", _FD.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", _FD.TYPE_INT64, None, True),
        ("pad_variable_length_inputs", _FD.TYPE_BOOL, None, False),
        ("enable_large_batch_splitting", _FD.TYPE_MESSAGE, ".google.protobuf.BoolValue", False),
        ("max_execution_batch_size", *i64, False),
    ])
    msg("PrometheusConfig", [("enable", _FD.TYPE_BOOL, None, False),
                             ("path", _FD.TYPE_STRING, None, False)])
    msg("MonitoringConfig", [("prometheus_config", _FD.TYPE_MESSAGE,
                              ".tensorflow.serving.PrometheusConfig", False)])
    msg("SSLConfig", [("server_key", _FD.TYPE_STRING, None, False),
                      ("server_cert", _FD.TYPE_STRING, None, False),
                      ("custom_ca", _FD.TYPE_STRING, None, False),
                      ("client_verify", _FD.TYPE_BOOL, None, False)])
    pool.Add(f)
    return pool


_POOL = _build_pool()
BatchingParametersProto = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
MonitoringConfigProto = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
SSLConfigProto = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.SSLConfig"))

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Dynamic batching options; defaults are TF Serving's."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 1000000
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"batching parameter {name} must be a positive integer, got {value!r}")
        if isinstance(self.batch_timeout_micros, bool) or not isinstance(self.batch_timeout_micros, int) \
                or self.batch_timeout_micros < 0:
            raise ValueError("batching parameter batch_timeout_micros must be an integer >= 0, "
                             f"got {self.batch_timeout_micros!r}")
        sizes = tuple(self.allowed_batch_sizes)
        object.__setattr__(self, "allowed_batch_sizes", sizes)
        if sizes:
            if any(s < 1 for s in sizes) or list(sizes) != sorted(set(sizes)):
                raise ValueError("batching parameter allowed_batch_sizes must be positive and strictly "
                                 f"increasing, got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise ValueError("batching parameter allowed_batch_sizes: the last entry must equal "
                                 f"max_batch_size ({self.max_batch_size}), got {list(sizes)}")


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    prometheus_enable: bool = False
    prometheus_path: str = DEFAULT_METRICS_PATH


@dataclasses.dataclass(frozen=True)
class SslConfig:
    """PEM contents (not paths), as in TF Serving's SSLConfig."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False


def _parse(text: str, proto_cls, what: str):
    if not isinstance(text, str):
        raise TypeError(f"{what} text must be a str, got {type(text).__name__}")
    message = proto_cls()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        fields = [f.name for f in message.DESCRIPTOR.fields]
        raise ValueError(f"invalid {what}: {exc} (valid fields: {fields})") from None
    return message


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parse a TF Serving `--batching_parameters_file` body, e.g. `max_batch_size { value: 32 }`."""
    m = _parse(text, BatchingParametersProto, "batching parameters")
    kw: dict = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if m.HasField(name):
            kw[name] = getattr(m, name).value
    kw["allowed_batch_sizes"] = tuple(m.allowed_batch_sizes)
    kw["pad_variable_length_inputs"] = m.pad_variable_length_inputs
    return BatchingParameters(**kw)


def parse_monitoring_config(text: str) -> MonitoringConfig:
    """Parse `prometheus_config { enable: true path: "/metrics" }`."""
    m = _parse(text, MonitoringConfigProto, "monitoring config")
    path = m.prometheus_config.path or DEFAULT_METRICS_PATH
    if not path.startswith("/"):
        raise ValueError(f"invalid monitoring config: prometheus_config.path must start with '/', got {path!r}")
    return MonitoringConfig(prometheus_enable=m.prometheus_config.enable, prometheus_path=path)


def parse_ssl_config(text: str) -> SslConfig:
    """Parse TF Serving's SSLConfig (server_key/server_cert PEM contents, custom_ca, client_verify)."""
    m = _parse(text, SSLConfigProto, "ssl config")
    if not m.server_key or not m.server_cert:
        raise ValueError("invalid ssl config: server_key and server_cert (PEM contents) are both required")
    if m.client_verify and not m.custom_ca:
        raise ValueError("invalid ssl config: client_verify needs custom_ca (PEM of the client CA)")
    return SslConfig(m.server_key, m.server_cert, m.custom_ca, m.client_verify)


def read_text(path: str, what: str) -> str:
    """Read a config file, with an error that names the flag-ish `what` and the path."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{what}: expected a file path, got {path!r}")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {str(path)!r}: {exc.strerror}") from None
