"""The embedded model server: repository + runtime + gRPC + REST + metrics in one process.

    from serving.server import ModelServer, ServerOptions
    with ModelServer(ServerOptions(model_name="digits", model_base_path="saved_models/digits",
                                   port=0, rest_api_port=0)) as server:
        print(server.grpc_port, server.rest_port)

Concurrency: gRPC is grpcio's sync server (a thread per in-flight RPC from a pool of
`grpc_max_threads`; TF releases the GIL while the model runs, and a sync handler calls the model
directly with no event-loop hop, which measured faster at batch 1 than grpc.aio handing the call to
an executor; benchmarks/bench_serving.py S1 keeps the figures). REST is an aiohttp app on its own
thread and event loop, running model calls in a thread pool. Both front ends translate onto one
`service.Service`.
`start()` returns only once every configured model has an AVAILABLE version (warmup replayed).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from concurrent import futures
from typing import Any

import grpc

from . import config_files
from .metrics import Metrics
from .repository import ModelConfig, ModelManager, parse_model_config_file
from .service import Service

log = logging.getLogger("serving")
DEFAULT_MAX_REQUEST_BYTES = 2**31 - 1  # TF Serving sets gRPC's max message size to kint32max


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
    rest_api_timeout_in_ms: int = 30000
    tensorflow_intra_op_parallelism: int = 0  # 0 = TF's default (all cores)
    tensorflow_inter_op_parallelism: int = 0  # 0 = TF's default
    per_process_gpu_memory_fraction: float = 0.0
    gpu_memory_growth: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ssl_config_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the bad option and what is allowed."""
        for name in ("port",):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 65535:
                raise ValueError(f"--{name} must be a port number 0-65535, got {v!r}")
        if self.rest_api_port is not None and not (isinstance(self.rest_api_port, int) and 0 <= self.rest_api_port <= 65535):
            raise ValueError(f"--rest_api_port must be a port number 0-65535, got {self.rest_api_port!r}")
        if self.model_config_file and self.model_base_path:
            raise ValueError("use either --model_config_file or --model_name/--model_base_path, not both")
        if not self.model_config_file and not self.model_base_path:
            raise ValueError("one of --model_config_file or --model_base_path is required")
        for name in ("grpc_max_threads", "rest_api_num_threads", "rest_api_timeout_in_ms",
                     "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"--{name} must be an integer >= 0, got {v!r}")
        if not isinstance(self.max_request_bytes, int) or self.max_request_bytes < 1024:
            raise ValueError(f"--max_request_bytes must be an integer >= 1024, got {self.max_request_bytes!r}")
        if not 0.0 <= self.per_process_gpu_memory_fraction <= 1.0:
            raise ValueError("--per_process_gpu_memory_fraction must be in [0, 1], "
                             f"got {self.per_process_gpu_memory_fraction}")
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise ValueError("--ssl_cert_file and --ssl_key_file must be given together")
        if self.ssl_config_file and self.ssl_cert_file:
            raise ValueError("use either --ssl_config_file or --ssl_cert_file/--ssl_key_file, not both")
        if self.model_config_file_poll_wait_seconds < 0:
            raise ValueError("--model_config_file_poll_wait_seconds must be >= 0, "
                             f"got {self.model_config_file_poll_wait_seconds}")

    # ------------------------------------------------------------------ derived settings
    def model_configs(self) -> list[ModelConfig]:
        if self.model_config_file:
            try:
                return parse_model_config_file(self.model_config_file)
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


class ModelServer:
    """One embedded server. Use as a context manager or call start()/stop()."""

    def __init__(self, options: ServerOptions) -> None:
        if not isinstance(options, ServerOptions):
            raise TypeError(f"options must be ServerOptions, got {type(options).__name__}")
        options.validate()
        self.options = options
        self.metrics = Metrics()
        self.manager: ModelManager | None = None
        self.service: Service | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._health: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._runner: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> "ModelServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Load all models (raises if one cannot serve), then open the gRPC and REST ports."""
        from .grpc_api import build_grpc_server, set_serving
        from .runtime import configure_devices, configure_threads

        o = self.options
        # Read every file first, so a typo fails before minutes of model loading.
        configs, batching, monitoring, credentials = o.model_configs(), o.batching(), o.monitoring(), o.credentials()
        configure_threads(o.tensorflow_intra_op_parallelism, o.tensorflow_inter_op_parallelism)
        log.info(configure_devices(o.per_process_gpu_memory_fraction, o.gpu_memory_growth))
        self.metrics.is_served = lambda name: self.manager is not None and self.manager.has_model(name)
        self.manager = ModelManager(configs, batching=batching, metrics=self.metrics,
                                    poll_seconds=o.file_system_poll_wait_seconds,
                                    config_file=o.model_config_file,
                                    config_poll_seconds=o.model_config_file_poll_wait_seconds)
        self.manager.start()
        config_dir = os.path.dirname(os.path.abspath(o.model_config_file)) if o.model_config_file else os.getcwd()
        self.service = Service(self.manager, self.metrics, config_dir=config_dir)
        cpus = os.cpu_count() or 1
        # A sync gRPC server runs at most `threads` RPCs at once; with batching those threads mostly
        # wait for their batch, so by default allow two full batches in flight (threads start lazily;
        # capped at 512) or batches stay small.
        threads = max(4 * cpus, min(512, 2 * batching.max_batch_size * batching.num_batch_threads) if batching else 0)
        try:
            self._grpc, self.grpc_port, self._health = build_grpc_server(
                self.service, host=o.host, port=o.port,
                max_threads=o.grpc_max_threads or threads, max_request_bytes=o.max_request_bytes,
                credentials=credentials)
            self._grpc.start()
            log.info("Running gRPC ModelServer at %s:%d%s", o.host, self.grpc_port, " (TLS)" if credentials else "")
            if o.rest_api_port is not None:
                self._start_rest(monitoring, o.rest_api_num_threads or threads)
                log.info("Exporting HTTP/REST API at:%s:%d", o.host, self.rest_port)
        except Exception:
            self.stop(grace=0)
            raise
        set_serving(self._health, True)

    def _start_rest(self, monitoring: config_files.MonitoringConfig, threads: int) -> None:
        from aiohttp import web

        from .rest_api import RestApi

        o = self.options
        self._executor = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rest")
        api = RestApi(self.service, timeout_ms=o.rest_api_timeout_in_ms,
                      metrics_path=monitoring.prometheus_path if monitoring.prometheus_enable else None,
                      max_request_bytes=o.max_request_bytes, executor=self._executor)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="rest-loop", daemon=True)
        self._loop_thread.start()

        async def start() -> int:
            self._runner = web.AppRunner(api.app(), access_log=None, logger=api.server_logger())
            await self._runner.setup()
            site = web.TCPSite(self._runner, o.host, o.rest_api_port, shutdown_timeout=10.0)
            await site.start()
            return self._runner.addresses[0][1]

        self.rest_port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=30)

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking new requests, let in-flight ones finish (up to `grace` s), unload models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        from .grpc_api import set_serving

        if self._health is not None:
            set_serving(self._health, False)
        grpc_done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._loop is not None:
            if self._runner is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=grace + 15)
                except Exception:  # shutting down anyway
                    log.exception("REST shutdown")
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
        if grpc_done is not None:
            grpc_done.wait(grace + 5)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.manager is not None:
            self.manager.stop()
        log.info("Server stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has been called (or `timeout` s); True if stopped."""
        return self._stopped.wait(timeout)
