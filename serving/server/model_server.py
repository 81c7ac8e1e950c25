"""The embedded model server: repository + runtime + gRPC + REST + metrics in one process.

    from serving.server.model_server import ModelServer, ServerOptions
    with ModelServer(ServerOptions(model_name="digits", model_base_path="saved_models/digits",
                                   port=0, rest_api_port=0)) as server:
        print(server.grpc_port, server.rest_port)

Concurrency: gRPC is grpc.aio on its own event loop (`grpc_host.GrpcHost`): a request is read
without holding a thread, and only once it has fully arrived does it queue for one of
`grpc_max_threads` worker threads, so idle or slow callers cannot starve the others. REST is an
aiohttp app on its own thread and event loop, running model calls in a pool of
`rest_api_num_threads` (0 = as many as gRPC). Both front ends translate onto one
`service.Service`, which passes each request's deadline into the model run: it is cancelled there.

Lifecycle. `start()` returns only once every configured model has an AVAILABLE version (warmup
replayed); `stop()` may be called from another thread at any time, during `start()` too: the
loads in progress are abandoned and no port opens. `stop(grace)` returns within about `grace`
seconds whatever is in flight: requests still running then are left to their threads.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent import futures
from typing import Any

from serving import config_files
from serving.errors import unavailable
from serving.server.grpc_host import GrpcHost
from serving.server.metrics import Metrics
from serving.server.options import DEFAULT_MAX_REQUEST_BYTES, ServerOptions  # noqa: F401  (public names here before)
from serving.server.repository import ModelManager
from serving.server.service import Service

log = logging.getLogger("serving")


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
        self._grpc: GrpcHost | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._runner: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._stopped = threading.Event()
        # Held while start() creates the manager or opens ports, and by stop() before it tears down:
        # a stop() during start() then either comes first (nothing opens) or closes what opened.
        self._lifecycle = threading.RLock()

    def __enter__(self) -> "ModelServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _check_not_stopped(self) -> None:
        if self._stopped.is_set():
            raise unavailable("the server was stopped while starting")

    def start(self) -> None:
        """Load all models (raises if one cannot serve), then open the gRPC and REST ports."""
        from serving.server.frontends import tfserving_grpc
        from serving.server.runtime import LoadOptions, configure_devices, configure_threads

        o = self.options
        # Read every file first, so a typo fails before minutes of model loading.
        configs, batching, monitoring, credentials = o.model_configs(), o.batching(), o.monitoring(), o.credentials()
        # --tensorflow_session_parallelism sets both pools where their own flag is 0, as in TF Serving
        configure_threads(o.tensorflow_intra_op_parallelism or o.tensorflow_session_parallelism,
                          o.tensorflow_inter_op_parallelism or o.tensorflow_session_parallelism)
        log.info(configure_devices(o.per_process_gpu_memory_fraction, o.gpu_memory_growth))
        self.metrics.is_served = lambda name: self.manager is not None and self.manager.has_model(name)
        with self._lifecycle:
            self._check_not_stopped()
            self.manager = ModelManager(configs, batching=batching, metrics=self.metrics,
                                        poll_seconds=o.file_system_poll_wait_seconds,
                                        config_file=o.model_config_file,
                                        config_poll_seconds=o.model_config_file_poll_wait_seconds,
                                        max_load_retries=o.max_num_load_retries,
                                        load_retry_interval=max(0.0, o.load_retry_interval_micros / 1e6),
                                        load_options=LoadOptions(o.tags(), o.enable_model_warmup,
                                                                 max(1, o.num_request_iterations_for_warmup)),
                                        load_threads=o.num_load_threads,
                                        labels_for_unavailable=o.allow_version_labels_for_unavailable_models)
        self.manager.start()  # returns early (raising) when stop() is called meanwhile
        config_dir = os.path.dirname(os.path.abspath(o.model_config_file)) if o.model_config_file else os.getcwd()
        self.service = Service(self.manager, self.metrics, config_dir=config_dir)
        cpus = os.cpu_count() or 1
        # A sync gRPC server runs at most `threads` RPCs at once; with batching those threads mostly
        # wait for their batch, so by default allow two full batches in flight (threads start lazily;
        # capped at 512) or batches stay small.
        threads = max(4 * cpus, min(512, 2 * batching.max_batch_size * batching.num_batch_threads) if batching else 0)
        with self._lifecycle:
            self._check_not_stopped()
            try:
                grpc_threads = o.grpc_max_threads or threads
                self._grpc = GrpcHost(host=o.host, port=o.port, max_threads=grpc_threads,
                                      max_request_bytes=o.max_request_bytes, credentials=credentials,
                                      channel_options=o.channel_arguments(), socket_path=o.grpc_socket_path)
                tfserving_grpc.add_services(self.service, self._grpc.add_servicer)
                self.grpc_port = self._grpc.start()
                log.info("Running gRPC ModelServer at %s:%d%s", o.host, self.grpc_port, " (TLS)" if credentials else "")
                if o.rest_api_port is not None:
                    # 0 = as many as gRPC has, --grpc_max_threads included (as the flag's help says)
                    self._start_rest(monitoring, o.rest_api_num_threads or grpc_threads)
                    log.info("Exporting HTTP/REST API at:%s:%d", o.host, self.rest_port)
                self._grpc.set_serving(True)
            except Exception:
                self.stop(grace=0)
                raise

    def _start_rest(self, monitoring: config_files.MonitoringConfig, threads: int) -> None:
        from serving.server.frontends.tfserving_rest import RestApi, make_runner

        o = self.options
        self._executor = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rest")
        api = RestApi(self.service, timeout_ms=o.rest_api_timeout_in_ms,
                      metrics_path=monitoring.prometheus_path if monitoring.prometheus_enable else None,
                      max_request_bytes=o.max_request_bytes,
                      max_uncompressed_bytes=o.rest_api_max_uncompressed_bytes, executor=self._executor)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="rest-loop", daemon=True)
        self._loop_thread.start()

        async def start() -> int:
            from aiohttp import web

            self._runner = make_runner(api, header_timeout=o.rest_api_header_timeout_in_ms / 1000,
                                       idle_timeout=o.rest_api_idle_timeout_in_ms / 1000,
                                       write_timeout=o.rest_api_write_timeout_in_ms / 1000)
            await self._runner.setup()
            site = web.TCPSite(self._runner, o.host, o.rest_api_port)
            await site.start()
            return self._runner.addresses[0][1]

        self.rest_port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=30)

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking new requests, let in-flight ones finish for up to `grace` s, unload models.

        Returns within about `grace` s (plus a few seconds' margin for closing sockets): requests
        still running then are cancelled for their clients, and their threads left to finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        deadline = time.monotonic() + max(0.0, grace)

        def left(margin: float = 0.0) -> float:
            return max(0.0, deadline - time.monotonic()) + margin

        if self.manager is not None:
            self.manager.abort_start()  # a start() waiting for loads returns now
        with self._lifecycle:  # wait for a start() that is opening ports, then close them
            pass
        grpc_done = None
        if self._grpc is not None:
            try:
                self._grpc.set_serving(False)
            except Exception:  # the loop is already down (a failed start): nothing to tell
                log.debug("gRPC health not updated on stop", exc_info=True)
            grpc_done = self._grpc.stop(grace)
        if self._loop is not None:
            if self._runner is not None:
                # in-flight REST handlers get what is left of the grace, then are cancelled
                self._runner._shutdown_timeout = left()  # (aiohttp takes it at construction only)
                try:
                    asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=left(5.0))
                except Exception:  # shutting down anyway
                    log.exception("REST shutdown")
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=left(1.0))
        if grpc_done is not None:
            grpc_done.wait(left(1.0))
        if self._executor is not None:
            # never wait for a model call that outlives the grace: its thread ends on its own
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.manager is not None:
            self.manager.stop(timeout=left())
        log.info("Server stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has been called (or `timeout` s); True if stopped."""
        return self._stopped.wait(timeout)
