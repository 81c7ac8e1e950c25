"""REST API (aiohttp): TF Serving's /v1 routes translated onto `service.Service`.

Routes are declared in aiohttp's router (`/v1/models/{name}/versions/{version}:predict`, ...,
with the name matching `[^/:]+` and versions ASCII digits); any other /v1 request falls through
to one handler answering TF Serving's 400 "Malformed request". Handlers only translate JSON to a
ModelRef plus a decoder and back; model calls (and Predict's JSON parsing) run in a thread pool,
so the event loop keeps accepting requests. Predict bodies are parsed first by `_json_fast` (one
rectangular array of numbers for a single float input, straight to numpy, without Python
objects), else by the general path in `tensors`.

Bounds, so that slow or idle clients cannot hold sockets and memory: a request's headers must
arrive within the header timeout of its first byte, a connection without a request in progress is
closed after the idle timeout, a body must arrive within --rest_api_timeout_in_ms (which bounds the
whole call), and a gzip/deflate body is refused (400) as soon as its inflated bytes pass
--rest_api_max_uncompressed_bytes (aiohttp inflates it piece by piece as it is read, so no more
than that is ever held).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent import futures
from typing import Any, Awaitable, Callable

import grpc
import numpy as np
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2

from serving import tensors

from serving.server.frontends import _json_fast
from serving.server.frontends.v2_rest import V2Routes
from serving.errors import ServingError, as_serving_error, invalid_argument
from serving.names import VERSION_MAX
from serving.server.options import DEFAULT_MAX_UNCOMPRESSED_BYTES
from serving.server.service import ClassifyResult, ModelRef, Service, Signature, check_input_names

log = logging.getLogger("serving")
_FAST_DTYPES = frozenset((types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF))
_NAME = "{name:[^/:]+}"
# Where a request may name a version or a label, and what goes into the route for it.
_TARGETS = ("", "/versions/{version:[0-9]+}", "/labels/{label:[^/:]+}")
_VERBS = ("predict", "classify", "regress")


# What aiohttp raises for a request it cannot parse or decode: the client's error, never ours.
_CLIENT_ERRORS = (HttpProcessingError, RequestPayloadError)


def _client_error_message(exc: BaseException) -> str:
    cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__
    return cause.message.strip() if isinstance(cause, HttpProcessingError) else str(exc).strip()


# rapidjson's message, which TF Serving answers for a number beyond a double's range (1e400)
_TOO_BIG = "JSON Parse error: Number too big to be stored in double. at offset: {}"


class _NumberTooBig(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # a literal such as 1e400 (NaN/Infinity go to parse_constant)
        raise _NumberTooBig(text)
    return value


def _parse_json(raw: bytes) -> Any:
    """Request body -> Python; NaN/Infinity are accepted (TF Serving does; orjson does not), a
    number too big for a double is refused with TF Serving's 400."""
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        if "infinity when parsed as double" in exc.msg:
            raise invalid_argument(_TOO_BIG.format(exc.pos)) from None
        # maybe NaN/Infinity: let json decide, and word the error
    try:
        return json.loads(raw or b"null", parse_float=_finite_float)
    except _NumberTooBig as exc:
        raise invalid_argument(_TOO_BIG.format(max(0, raw.find(str(exc).encode())))) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting is bad input, not a 500
        raise invalid_argument(f"JSON Parse error: {exc}") from None


def _parse_body(raw: bytes) -> dict:
    body = _parse_json(raw)
    if not isinstance(body, dict):
        raise invalid_argument("JSON Value: the request body must be a JSON object")
    return body


def _client_gone(request: web.Request) -> ServingError:
    return ServingError(grpc.StatusCode.CANCELLED, "the client closed the connection before sending the whole body")


async def _read_body(request: web.Request, max_bytes: int, max_inflated: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
                     deadline: float | None = None) -> bytes:
    """The request body, as `request.read()` gives it (413 over `max_bytes` included), in one copy.

    Why not `request.read()`: it grows a bytearray chunk by chunk and then copies it into bytes,
    more work than joining the chunks once. A body aiohttp cannot decode (a corrupt gzip
    Content-Encoding) is the client's error: 400, as is one that inflates past `max_inflated`
    (stopped there: the rest is never inflated). Past `deadline` (loop time) it is 504; a client
    that goes away mid-body is counted as a cancellation, not a server error."""
    encoded = request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if encoded and size > max_inflated and max_inflated < max_bytes:
                    raise invalid_argument(f"the request body inflates to more than {max_inflated} bytes "
                                           "(--rest_api_max_uncompressed_bytes)")
                if size > max_bytes:  # what read() raises over the app's client_max_size (the same limit)
                    raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
                chunks.append(chunk)
    except TimeoutError:
        if deadline is not None and loop.time() >= deadline:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Request timed out (reading its body)") from None
        raise
    except ConnectionError:
        raise _client_gone(request) from None
    except _CLIENT_ERRORS as exc:
        if request.transport is None or request.transport.is_closing():
            raise _client_gone(request) from None
        raise invalid_argument(f"cannot read the request body: {_client_error_message(exc)}") from None
    return b"".join(chunks)  # (one chunk that is bytes comes back as it is, without a copy)


def _json_response(obj: Any, status: int = 200) -> web.Response:
    """`obj` (numpy outputs included) as JSON; NaN/inf outputs are written NaN/Infinity as before."""
    return web.Response(body=tensors.dumps_json(obj), status=status, content_type="application/json",
                        charset="utf-8")


def _error_response(error: ServingError) -> web.Response:
    return _json_response({"error": error.message}, error.http_status)


def _ref(request: web.Request, body: dict | None = None) -> ModelRef:
    """The ModelRef a route names (and, for POSTs, the body's signature_name)."""
    info = request.match_info
    version = info.get("version")
    if version is not None:
        number = int(version)  # the route only matches ASCII digits
        if number > VERSION_MAX:  # ModelSpec.version is an int64: TF Serving's 400
            raise invalid_argument(f"Failed to convert version: {version[:40]} to numeric.")
        version = number
    signature_name = "" if body is None else body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' must be a string")
    return ModelRef(info["name"], version, info.get("label"), signature_name)


class _QuietClientErrors(logging.LoggerAdapter):
    """aiohttp's server logger, except that a malformed HTTP request (the client's error, already
    answered 400 by aiohttp) is one debug line instead of an ERROR with a traceback each time."""

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, _CLIENT_ERRORS):
            self.debug("malformed HTTP request: %s", _client_error_message(exc_info))
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class RestApi:
    """Builds the aiohttp application for one server."""

    def __init__(self, service: Service, *, timeout_ms: int = 5000, metrics_path: str | None = None,
                 max_request_bytes: int = 2**31 - 1, max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
                 executor: futures.Executor | None = None) -> None:
        if not isinstance(service, Service):
            raise TypeError(f"service must be a serving.server.service.Service, got {type(service).__name__}")
        self.service = service
        self.timeout = timeout_ms / 1000 if timeout_ms and timeout_ms > 0 else None
        self.metrics_path = metrics_path
        self.max_request_bytes = max_request_bytes
        self.max_uncompressed_bytes = max_uncompressed_bytes
        self.executor = executor or futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rest")

    @staticmethod
    def server_logger() -> logging.LoggerAdapter:
        """The logger to give aiohttp's AppRunner (see _QuietClientErrors)."""
        return _QuietClientErrors(logging.getLogger("aiohttp.server"), {})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_request_bytes)
        add = app.router.add_route
        if self.metrics_path and self.service.metrics is not None:
            add("GET", self.metrics_path, self._metrics)
        for target in _TARGETS:
            base = f"/v1/models/{_NAME}{target}"
            add("GET", base, self._status)
            add("GET", base + "/metadata", self._metadata)
            for verb in _VERBS:
                add("POST", f"{base}:{verb}", getattr(self, f"_{verb}"))
        add("*", "/v1/{tail:.*}", self._malformed)  # everything else under /v1, as TF Serving
        V2Routes(self, _parse_body).add_to(app.router)  # the Open Inference Protocol on the same port
        return app

    # ------------------------------------------------------------------ plumbing
    # answer / deadline / read_body / run are public: they are the one way a REST route on this
    # app runs a call (body limits, the pool, --rest_api_timeout_in_ms, metrics), and the v2
    # routes (v2_rest.V2Routes, its RestCalls) use them as TF Serving's routes do.
    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.service.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _malformed(self, request: web.Request) -> web.Response:
        return _error_response(invalid_argument(f"Malformed request: {request.method} {request.path}"[:300]))

    async def answer(self, request: web.Request, api: str, work: Callable[[], Awaitable[Any]]) -> web.Response:
        """Run a handler's work (a result to answer as JSON, or a ready Response); errors become
        {"error": ...} with TF Serving's HTTP status."""
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            result = await work()
            return result if isinstance(result, web.Response) else _json_response(result)
        except web.HTTPException as exc:  # e.g. 413 over --max_request_bytes: keep aiohttp's status
            error = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED if exc.status == 413 else grpc.StatusCode.UNKNOWN,
                                 exc.reason)
            return _json_response({"error": exc.reason}, exc.status)
        except Exception as exc:
            error = as_serving_error(exc)
            return _error_response(error)
        finally:
            if request.method == "POST":
                self.service.observe(request.match_info.get("name", ""), api, "REST", error, start)

    def deadline(self) -> float | None:
        """When a call starting now must be answered (time.monotonic(), which the loop's clock is)."""
        return time.monotonic() + self.timeout if self.timeout else None

    async def read_body(self, request: web.Request, deadline: float | None) -> bytes:
        return await _read_body(request, self.max_request_bytes, self.max_uncompressed_bytes, deadline)

    async def run(self, fn: Callable[[float | None], Any], deadline: float | None = None) -> Any:
        """Run `fn(deadline)` in the pool, bounded by --rest_api_timeout_in_ms (counted from
        `deadline`, the call's, when given: the body upload used part of it)."""
        if deadline is None:
            deadline = self.deadline()
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, deadline)
        try:
            return await asyncio.wait_for(future, None if deadline is None else max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Request timed out") from None
        except ServingError as exc:  # the service stopped the work at the same deadline: same answer
            if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Request timed out") from None
            raise

    # ------------------------------------------------------------------ GET
    async def _status(self, request: web.Request) -> web.Response:
        async def work() -> dict:
            statuses = await self.run(lambda d: self.service.status(_ref(request)))
            # GetModelStatusResponse as proto JSON: int64 as a string, enums by name
            return {"model_version_status": [
                {"version": str(s.version), "state": s.state.name,
                 "status": {"error_code": "OK" if s.error is None else s.error.code.name,
                            "error_message": "" if s.error is None else s.error.message}}
                for s in statuses]}
        return await self.answer(request, "", work)

    async def _metadata(self, request: web.Request) -> web.Response:
        async def work() -> dict:
            servable, sig_map = await self.run(lambda d: self.service.metadata(_ref(request), ["signature_def"]))
            return {"model_spec": {"name": servable.model_name, "signature_name": "",
                                   "version": str(servable.version)},
                    "metadata": {"signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)}}
        return await self.answer(request, "", work)

    # ------------------------------------------------------------------ POST
    async def _predict(self, request: web.Request) -> web.Response:
        async def work() -> dict:
            deadline = self.deadline()
            raw = await self.read_body(request, deadline)
            return await self.run(lambda d: self._predict_raw(request, raw, d), deadline)
        return await self.answer(request, "predict", work)

    async def _classify(self, request: web.Request) -> web.Response:
        async def work() -> dict:
            deadline = self.deadline()
            body = _parse_body(await self.read_body(request, deadline))
            result = await self.run(lambda d: self.service.classify(_ref(request, body), self._examples(body), d),
                                     deadline)
            assert isinstance(result, ClassifyResult)
            return {"results": [[[label, score] for label, score in row] for row in result.rows()]}
        return await self.answer(request, "classify", work)

    async def _regress(self, request: web.Request) -> web.Response:
        async def work() -> dict:
            deadline = self.deadline()
            body = _parse_body(await self.read_body(request, deadline))
            result = await self.run(lambda d: self.service.regress(_ref(request, body), self._examples(body), d),
                                     deadline)
            return {"results": result.values.tolist()}
        return await self.answer(request, "regress", work)

    @staticmethod
    def _examples(body: dict) -> Callable[[], list[bytes]]:
        return lambda: tensors.examples_from_json(body.get("examples"), body.get("context"))

    # ------------------------------------------------------------------ predict bodies
    def _predict_raw(self, request: web.Request, raw: bytes, deadline: float | None) -> dict:
        """Parse (here in the pool, not on the event loop), then predict. A fast-path body has the
        same keys as the general parse, its array read by `_value` once the signature's dtype is
        known, so a body the fast path declines is parsed once more by the general path only."""
        fast = _json_fast.parse_predict(raw)
        if fast is None:
            return self._predict_body(request, _parse_body(raw), deadline)
        try:
            return self._predict_body(request, {**fast.fields, fast.key: fast}, deadline)
        finally:
            fast.release()

    @staticmethod
    def _value(specs: dict, value: Any) -> Any:
        """A fast-path body's array as a numpy array when the signature has one float input and
        the array is rectangular numbers (then it equals json_to_numpy of the general parse), else
        the general parse's value; any other value as it is."""
        if not isinstance(value, _json_fast.PredictBody):
            return value
        if len(specs) == 1:
            spec = next(iter(specs.values()))
            if spec.dtype in _FAST_DTYPES:
                array = value.to_numpy(tensors.numpy_dtype(spec.dtype))
                if array is not None:
                    return array
        value.release()
        return _parse_body(value.raw)[value.key]

    def _predict_body(self, request: web.Request, body: dict, deadline: float | None) -> dict:
        has_rows, has_cols = "instances" in body, "inputs" in body
        ref = _ref(request, body)
        if has_rows == has_cols:
            raise invalid_argument("Missing 'inputs' or 'instances' key" if not has_rows else
                                   "Not formatted correctly: use only one of 'instances' (row format) "
                                   "or 'inputs' (columnar format)")

        def decode(sig: Signature) -> dict[str, np.ndarray]:
            return self._rows(sig.inputs, body["instances"]) if has_rows else self._columns(sig.inputs, body["inputs"])

        outputs = self.service.predict(ref, decode, (), deadline).outputs
        if has_cols:
            cols = {k: tensors.numpy_to_json(v, k, keep_numeric=True) for k, v in outputs.items()}
            return {"outputs": next(iter(cols.values())) if len(cols) == 1 else cols}
        if len(outputs) == 1:
            k, v = next(iter(outputs.items()))
            return {"predictions": tensors.numpy_to_json(v, k, keep_numeric=True)}
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise invalid_argument(f"Output tensors do not share the batch dimension ({sizes}); "
                                   "use the columnar format ('inputs') for this signature")
        cols = {k: tensors.numpy_to_json(v, k, keep_numeric=True) for k, v in outputs.items()}
        n = next(iter(sizes.values()))
        return {"predictions": [{k: cols[k][i] for k in cols} for i in range(n)]}

    @staticmethod
    def _is_named(value: Any) -> bool:
        return isinstance(value, dict) and set(value) != {"b64"}

    def _rows(self, specs: dict, instances: Any) -> dict[str, np.ndarray]:
        instances = self._value(specs, instances)
        if isinstance(instances, np.ndarray):  # the fast path: one float input, unnamed rows
            return {next(iter(specs)): instances}
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty list")
        named = [self._is_named(x) for x in instances]
        if any(named) and not all(named):
            raise invalid_argument("'instances': mix of named (objects) and unnamed values")
        if not named[0]:
            if len(specs) != 1:
                raise invalid_argument(f"'instances' must be objects naming each input ({sorted(specs)}) "
                                       "when the signature has several inputs")
            name, spec = next(iter(specs.items()))
            return {name: tensors.json_to_numpy(instances, spec.dtype, name)}
        for x in instances:
            check_input_names(x, specs)
        return {name: tensors.json_to_numpy([x[name] for x in instances], spec.dtype, name)
                for name, spec in specs.items()}

    def _columns(self, specs: dict, inputs: Any) -> dict[str, np.ndarray]:
        inputs = self._value(specs, inputs)
        if isinstance(inputs, np.ndarray):  # the fast path: one float input, unnamed
            return {next(iter(specs)): inputs}
        if self._is_named(inputs):
            check_input_names(inputs, specs)
            return {k: tensors.json_to_numpy(v, specs[k].dtype, k) for k, v in inputs.items()}
        if len(specs) != 1:
            raise invalid_argument(f"'inputs' must be an object naming each input ({sorted(specs)})")
        name, spec = next(iter(specs.items()))
        return {name: tensors.json_to_numpy(inputs, spec.dtype, name)}


# ------------------------------------------------------------------ connections
class _TimedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a header timeout: a request whose headers are not all in
    within `header_timeout` s of its first byte closes the connection (aiohttp bounds only the
    idle time, `keepalive_timeout`, and that from the connection's start or last answer)."""

    header_timeout = 10.0
    write_timeout = 30.0

    async def finish_response(self, request: Any, resp: Any, start_time: Any) -> Any:
        """Write the answer, for at most `write_timeout` s: a client that does not read it (a full
        receive window) would otherwise pin the whole answer in memory for as long as it likes.
        Past that the connection is dropped, and with it the unsent bytes."""
        try:
            async with asyncio.timeout(self.write_timeout):
                return await super().finish_response(request, resp, start_time)
        except TimeoutError:
            log.info("REST connection closed: the client did not take its answer within %g s", self.write_timeout)
            if self.transport is not None:
                self.transport.abort()  # discards the buffered answer now (close() would keep it to flush)
            self.force_close()
            return resp, True

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        timer = getattr(self, "_header_timer", None)
        if self._request_count != before:  # a request's headers are complete
            if timer is not None:
                timer.cancel()
                self._header_timer = None
        elif data and timer is None and not self._request_in_progress and self.transport is not None:
            self._header_timer = self._loop.call_later(self.header_timeout, self._header_expired,
                                                       self._request_count)

    def _header_expired(self, count: int) -> None:
        self._header_timer = None
        # still waiting for the request that began when the timer started
        if self._request_count == count and self._waiter is not None and not self._waiter.done():
            log.debug("REST connection closed: request headers incomplete after %g s", self.header_timeout)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


class _TimedServer(web.Server):
    header_timeout = 10.0
    write_timeout = 30.0

    def __call__(self) -> RequestHandler:
        handler = _TimedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.header_timeout = self.header_timeout
        handler.write_timeout = self.write_timeout
        return handler


class _Runner(web.AppRunner):
    header_timeout = 10.0
    write_timeout = 30.0

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _TimedServer  # same object and state; only the handlers it makes differ
        server.header_timeout = self.header_timeout
        server.write_timeout = self.write_timeout
        return server


def make_runner(api: RestApi, *, header_timeout: float, idle_timeout: float,
                write_timeout: float = 30.0) -> web.AppRunner:
    """The aiohttp runner for `api` with the REST connection bounds (seconds)."""
    runner = _Runner(api.app(), access_log=None, logger=api.server_logger(), keepalive_timeout=idle_timeout,
                     shutdown_timeout=5.0)
    runner.header_timeout = header_timeout
    runner.write_timeout = write_timeout
    return runner
