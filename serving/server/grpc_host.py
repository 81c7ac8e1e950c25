"""The gRPC server every front end's servicers run in: grpc.aio on one event loop, the work in threads.

A sync grpcio server gives each call a pool thread when the call *starts*, and the thread then
blocks reading the request message: as many idle calls as there are threads (one connection is
enough, no payload byte needed) starve every other call. TF Serving's C++ server hands a call to
a worker only once its request has arrived. So does this one: grpc.aio receives every request on
its event loop, which costs no thread per call, and only a fully arrived request is queued for one
of `max_threads` worker threads, where the front end's ordinary (sync) servicer method runs.

How a servicer goes through it (any front end: TF Serving's, Open Inference Protocol's):

    host = GrpcHost(host="127.0.0.1", port=0, max_threads=8, max_request_bytes=2**31 - 1)
    host.add_servicer(prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
                      PredictionService(service), ["tensorflow.serving.PredictionService"])
    host.start()            # binds, serves; health says NOT_SERVING until set_serving(True)
    host.set_serving(True)
    ...
    host.stop(grace)        # returns within about grace s

The servicer is a plain grpcio servicer written for the sync API: unary-unary methods
`Method(request, context)` that return a response or call `context.abort(code, details)`, added
with the generated `add_..._to_server` (which `add_servicer` hands a registrar that wraps every
handler). The loop only moves bytes: parsing the request, the method and serializing its answer
run in a worker thread with a `ThreadContext` (abort, time_remaining, invocation_metadata, peer,
is_active); the grpc.aio context itself is never touched off its loop. Bytes that are not the
request message are INTERNAL "Exception deserializing request!", as grpcio's sync server answers.
A call whose client went away or whose deadline passed before a worker was free never starts.
Health (grpc.health.v1, kept NOT_SERVING until `set_serving(True)`) and reflection are answered on
the loop, so no amount of model work delays them.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures
from typing import Any, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

__all__ = ["GrpcHost", "ThreadContext"]


class _Abort(Exception):
    """Raised by ThreadContext.abort in a worker; the loop turns it into the call's status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ThreadContext:
    """What a sync servicer method may ask of its call, from a worker thread."""

    def __init__(self, deadline: float | None, metadata: Any, peer: str, alive: Callable[[], bool]) -> None:
        self._deadline = deadline
        self._metadata = metadata
        self._peer = peer
        self._alive = alive

    def time_remaining(self) -> float | None:
        """Seconds until the client's deadline, None if it set none (as grpc.ServicerContext)."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Abort(code, details)

    def invocation_metadata(self) -> Any:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def is_active(self) -> bool:
        return self._alive()


class _Undecodable(Exception):
    """The request bytes are not the method's request message."""


def _in_threads(handler: grpc.RpcMethodHandler, host: "GrpcHost") -> grpc.RpcMethodHandler:
    """A sync unary-unary handler as an aio one: the loop moves bytes only; parsing the request,
    the servicer method and serializing its answer run in a worker thread."""
    if handler is None or handler.request_streaming or handler.response_streaming:
        return handler  # (only unary-unary methods are served in threads; none other is registered)
    behavior, parse, serialize = handler.unary_unary, handler.request_deserializer, handler.response_serializer

    def work(raw: bytes, context: ThreadContext) -> Any:
        try:
            request = parse(raw) if parse is not None else raw
        except Exception:
            raise _Undecodable() from None
        response = behavior(request, context)
        return serialize(response) if serialize is not None and response is not None else response

    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await host._run(work, raw, context)

    return grpc.unary_unary_rpc_method_handler(call)  # bytes in, bytes out


class _Wrapped(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, host: "GrpcHost") -> None:
        self._inner, self._host = inner, host

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return _in_threads(self._inner.service(details), self._host)


class _Registrar:
    """What a generated `add_..._to_server` sees as the server: it wraps every handler."""

    def __init__(self, server: grpc.aio.Server, host: "GrpcHost") -> None:
        self._server, self._host = server, host

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_Wrapped(h, self._host) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: _in_threads(h, self._host) for name, h in handlers.items()})


class GrpcHost:
    """One grpc.aio server on its own event-loop thread, with a bounded pool for the servicers' work."""

    def __init__(self, *, host: str, port: int, max_threads: int, max_request_bytes: int,
                 credentials: grpc.ServerCredentials | None = None,
                 channel_options: Sequence[tuple[str, Any]] = (), socket_path: str | None = None) -> None:
        """`channel_options`: gRPC channel arguments (--grpc_channel_arguments), after ours;
        `socket_path`: also listen on this UNIX socket (--grpc_socket_path; no TLS there, as TF Serving)."""
        if max_threads < 1:
            raise ValueError(f"grpc_max_threads must be >= 1, got {max_threads}")
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port: int | None = None
        self._socket_path = socket_path
        self._credentials = credentials
        self._executor = futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._thread.start()
        self._names: list[str] = []
        options = [("grpc.max_receive_message_length", max_request_bytes),
                   ("grpc.max_send_message_length", -1),
                   ("grpc.so_reuseport", 0), *channel_options]

        async def make() -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
            server = grpc.aio.server(options=options)
            checker = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(checker, server)
            return server, checker

        self._server, self._health = self._call_soon(make(), 30)

    def _call_soon(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add_servicer(self, add_to_server: Callable[[Any, Any], None], servicer: Any,
                     service_names: Sequence[str]) -> None:
        """Register a sync `servicer` with its generated `add_..._to_server`; `service_names`
        (full names) join health and reflection. Call before start()."""
        add_to_server(servicer, _Registrar(self._server, self))
        self._names.extend(service_names)

    def start(self) -> int:
        """Bind and serve; returns the bound port. Health answers NOT_SERVING until set_serving(True)."""
        async def start() -> int:
            reflection.enable_server_reflection(
                (*self._names, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
            bound = self._server.add_secure_port(self.address, self._credentials) \
                if self._credentials is not None else self._server.add_insecure_port(self.address)
            if self._socket_path and not self._server.add_insecure_port(f"unix:{self._socket_path}"):
                raise OSError(f"cannot listen on the gRPC socket {self._socket_path}")
            await self._set(False)
            await self._server.start()
            return bound

        try:
            self.port = self._call_soon(start(), 30)
        except RuntimeError as exc:  # grpc.aio raises on a port it cannot bind
            raise OSError(f"cannot bind the gRPC port {self.address}: {exc}") from None
        if not self.port:
            raise OSError(f"cannot bind the gRPC port {self.address}")
        return self.port

    async def _set(self, serving: bool) -> None:
        state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._names):
            await self._health.set(name, state)

    def set_serving(self, serving: bool) -> None:
        self._call_soon(self._set(serving), 10)

    def stop(self, grace: float) -> threading.Event:
        """Refuse new calls, let running ones finish for up to `grace` s, then cancel them for their
        clients. Returns an event set once the server is down (the loop then stops; worker threads
        still inside a model call end on their own)."""
        done = threading.Event()

        async def stop() -> None:
            try:
                await self._server.stop(grace)  # requests already queued for a worker still run
            finally:
                # never wait for a model call that outlives the grace: its thread ends on its own
                self._executor.shutdown(wait=False, cancel_futures=True)
                done.set()
                self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        return done

    # ------------------------------------------------------------------ one call
    async def _run(self, method: Callable[[Any, Any], Any], request: Any, context: grpc.aio.ServicerContext) -> Any:
        """`method(request, ThreadContext)` in a worker, once one is free (unless the call ended or
        its deadline passed meanwhile); its _Abort becomes the call's status."""
        remaining = context.time_remaining()
        deadline = None if remaining is None or remaining > 1e9 else time.monotonic() + remaining
        ended = threading.Event()  # the call is over for its client (answered, cancelled, timed out)
        context.add_done_callback(lambda _: ended.set())
        thread_context = ThreadContext(deadline, context.invocation_metadata(), context.peer(),
                                       lambda: not ended.is_set())

        def work() -> Any:
            # the client may have left, or its deadline passed, while the request queued for a worker
            if ended.is_set():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise _Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")
            return method(request, thread_context)

        try:
            return await self._loop.run_in_executor(self._executor, work)
        except _Abort as exc:
            await context.abort(exc.code, exc.details)
        except _Undecodable:  # grpcio's sync server's answer to bytes that are not the request
            await context.abort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
        except RuntimeError as exc:
            if self._executor._shutdown:  # stopping: refuse, as a stopping server does
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
            raise exc
