"""Prometheus metrics with TF Serving's names, one CollectorRegistry per server instance.

Names and labels as TF Serving exports them, so dashboards built for TF Serving work unchanged:
`:tensorflow:serving:request_count{model_name,status}` (a counter *without* the `_total` suffix
prometheus_client adds to its Counter, hence the small custom collector), and microsecond
histograms `request_latency{model_name,API,entrypoint}`, `runtime_latency{model_name,API,runtime}`,
`model_warmup_latency{model_path,status}`. Ours on top: the batching session's merged and padded
batch sizes and the number of tasks waiting for a batch worker.
"""
from __future__ import annotations

import threading
from typing import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from serving.names import MODEL_NAME_PATTERN

PREFIX = ":tensorflow:serving:"
# TF Serving: ExponentialBuckets(10 us, 1.8, 33): 10 us .. ~1.4e9 us.
LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33))
BATCH_BUCKETS = tuple(2 ** i for i in range(13))
ENTRYPOINTS = ("GRPC", "REST")
# model_name on request metrics comes from the request: without a bound, made-up names each add a
# counter and a 34-bucket histogram forever, and a long name is repeated in every line of them
# (a few hundred very long names made each scrape hundreds of megabytes). So only names of models the server
# serves (`is_served`), or has answered OK for, get a label of their own, at most this many; every
# other name is counted under OTHER_MODEL_LABEL.
MAX_REQUEST_MODEL_LABELS = 256
OTHER_MODEL_LABEL = "<other>"  # not a valid model name, so it never hides a real model


class _RequestCount:
    """`:tensorflow:serving:request_count` as TF Serving names it (no `_total`).

    Exposed as `untyped`: prometheus_client writes `_total` into the TYPE line of any counter, which
    would not match the sample name; untyped keeps one consistent name that Prometheus ingests.
    """

    name = PREFIX + "request_count"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], float] = {}

    def inc(self, model_name: str, status: str) -> None:
        with self._lock:
            key = (model_name, status)
            self._values[key] = self._values.get(key, 0) + 1

    def value(self, model_name: str, status: str) -> float:
        with self._lock:
            return self._values.get((model_name, status), 0)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, "The total number of requests.", "unknown")]

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, "The total number of requests.", "unknown")
        with self._lock:
            for (model, status), v in sorted(self._values.items()):
                metric.add_sample(self.name, {"model_name": model, "status": status}, v)
        return [metric]


class Metrics:
    """The server's metrics; `exposition()` renders the Prometheus text format."""

    def __init__(self, is_served: Callable[[str], bool] | None = None) -> None:
        """`is_served(name)`: whether `name` is a configured model (the server sets it); without
        it, any valid model name gets a label while fewer than MAX_REQUEST_MODEL_LABELS are used."""
        self.is_served = is_served
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_count = _RequestCount()
        self.registry.register(self.request_count)
        self._request_models: set[str] = set()
        r = self.registry
        self.request_latency = Histogram(PREFIX + "request_latency", "Distribution of wall time (in "
                                         "microseconds) for Tensorflow Serving request.",
                                         ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.runtime_latency = Histogram(PREFIX + "runtime_latency", "Distribution of wall time (in "
                                         "microseconds) for Tensorflow runtime.",
                                         ["model_name", "API", "runtime"], buckets=LATENCY_BUCKETS, registry=r)
        self.warmup_latency = Histogram(PREFIX + "model_warmup_latency", "Distribution of wall time (in "
                                        "microseconds) for warming up the model.",
                                        ["model_path", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(PREFIX + "batching_session:input_batch_size", "Merged batch size "
                                    "(sum of task sizes) of each batch run.", ["model_name"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.padded_batch_size = Histogram(PREFIX + "batching_session:processed_batch_size", "Batch size "
                                           "after padding to allowed_batch_sizes.", ["model_name"],
                                           buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(PREFIX + "batching_session:queue_depth", "Tasks waiting for a batch "
                                 "worker, sampled when a batch starts.", ["model_name"], registry=r)

    def observe_request(self, model_name: str, api: str, entrypoint: str, status: str, latency_us: float) -> None:
        if entrypoint not in ENTRYPOINTS:
            raise ValueError(f"entrypoint must be one of {ENTRYPOINTS}, got {entrypoint!r}")
        model_name = self.request_label(model_name, status)
        self.request_count.inc(model_name, status)
        self.request_latency.labels(model_name, api, entrypoint).observe(latency_us)

    def request_label(self, model_name: str, status: str = "") -> str:
        """The model_name label a request for `model_name` is counted under (see MAX_REQUEST_MODEL_LABELS)."""
        if model_name in self._request_models:
            return model_name
        if len(self._request_models) >= MAX_REQUEST_MODEL_LABELS or not isinstance(model_name, str) \
                or not MODEL_NAME_PATTERN.match(model_name):
            return OTHER_MODEL_LABEL
        if status == "OK" or (self.is_served(model_name) if self.is_served is not None else True):
            self._request_models.add(model_name)
            return model_name
        return OTHER_MODEL_LABEL

    def observe_runtime(self, model_name: str, api: str, latency_us: float) -> None:
        self.runtime_latency.labels(model_name, api, "TF2").observe(latency_us)

    def observe_warmup(self, model_path: str, status: str, latency_us: float) -> None:
        self.warmup_latency.labels(model_path, status).observe(latency_us)

    def observe_batch(self, model_name: str, size: int, padded: int, waiting: int) -> None:
        self.batch_size.labels(model_name).observe(size)
        self.padded_batch_size.labels(model_name).observe(padded)
        self.queue_depth.labels(model_name).set(waiting)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) for the metrics endpoint."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
