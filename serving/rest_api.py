"""REST API (aiohttp): TF Serving's /v1 routes, JSON row/columnar formats, {"error": ...} answers.

aiohttp does the HTTP; the route grammar `/v1/models/NAME[/versions/N|/labels/L][:verb|/metadata]`
is matched with one regex, as TF Serving's own handler does (aiohttp's router cannot express the
`:predict` suffix). Model calls run in a thread pool so the event loop keeps accepting requests;
Predict bodies are parsed there too, first by `_json_fast` (one rectangular array of numbers for a
single float input, without Python objects), else by the general path below.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent import futures
from typing import Any, Callable

import grpc
import numpy as np
from aiohttp import web
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from . import _json_fast, tensors

try:  # parsing a batch of images as JSON is the REST hot path; orjson is ~8x faster than json
    import orjson
except ImportError:  # pragma: no cover - declared dependency; json still works
    orjson = None
from .errors import ServingError, as_serving_error, invalid_argument
from .grpc_api import classification_result, metadata_response, model_status_response, resolve
from .repository import ModelManager
from .runtime import Servable, check_input_names

_FAST_DTYPES = frozenset((types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF))
_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<verb>:predict|:classify|:regress|/metadata)?$")


def _parse_json(raw: bytes) -> Any:
    """Request body -> Python; NaN/Infinity are accepted (TF Serving does; orjson does not)."""
    if orjson is not None:
        try:
            return orjson.loads(raw or b"null")
        except orjson.JSONDecodeError:
            pass  # maybe NaN/Infinity: let json decide, and word the error
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting is bad input, not a 500
        raise invalid_argument(f"JSON Parse error: {exc}") from None


def _parse_body(raw: bytes) -> dict:
    body = _parse_json(raw)
    if not isinstance(body, dict):
        raise invalid_argument("JSON Value: the request body must be a JSON object")
    return body


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, as `request.read()` gives it (413 over `max_bytes` included), in one copy.

    Why not `request.read()`: it grows a bytearray chunk by chunk and then copies it into bytes,
    which for a 2 MB batch of images costs ~1.3 ms more than joining the chunks once (loopback,
    2-core VM, client in another process: 2.8 ms vs 1.5 ms per round trip), ~0.9 ms of server CPU
    per S3-batch32 request."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:  # what read() raises over the app's client_max_size (the same limit)
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)  # (one chunk that is bytes comes back as it is, without a copy)


def _json_response(obj: Any, status: int = 200) -> web.Response:
    """`obj` (numpy outputs included) as JSON; NaN/inf outputs are written NaN/Infinity as before."""
    return web.Response(body=tensors.dumps_json(obj), status=status, content_type="application/json",
                        charset="utf-8")


def _error_response(error: ServingError) -> web.Response:
    return _json_response({"error": error.message}, error.http_status)


class RestApi:
    """Builds the aiohttp application for one server."""

    def __init__(self, manager: ModelManager, metrics: Any = None, *, timeout_ms: int = 5000,
                 metrics_path: str | None = None, max_request_bytes: int = 2**31 - 1,
                 executor: futures.Executor | None = None) -> None:
        self.manager = manager
        self.metrics = metrics
        self.timeout = timeout_ms / 1000 if timeout_ms and timeout_ms > 0 else None
        self.metrics_path = metrics_path
        self.max_request_bytes = max_request_bytes
        self.executor = executor or futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rest")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_request_bytes)
        if self.metrics_path and self.metrics is not None:
            app.router.add_get(self.metrics_path, self._metrics)
        app.router.add_route("*", "/v1/{tail:.*}", self._v1)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _v1(self, request: web.Request) -> web.Response:
        match = _ROUTE.match(request.path)
        verb = match and match.group("verb")
        is_get = request.method == "GET" and match and verb in (None, "/metadata")
        is_post = request.method == "POST" and match and verb in (":predict", ":classify", ":regress")
        if not (is_get or is_post):
            return _error_response(invalid_argument(f"Malformed request: {request.method} {request.path}"))
        name, label = match.group("name"), match.group("label")
        version = int(match.group("version")) if match.group("version") else None
        if version is not None and version >= 2**63:  # ModelSpec.version is an int64: TF Serving's 400
            return _error_response(invalid_argument(f"Failed to convert version: {version} to numeric."))
        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            spec.version.value = version
        elif label:
            spec.version_label = label
        api = (verb or "").strip(":/")
        start = time.perf_counter()
        status = "OK"
        try:
            if request.method == "GET":
                if verb == "/metadata":
                    response = await self._run(lambda d: metadata_response(self.manager, spec, ["signature_def"]))
                    return _json_response(self._metadata_json(response))
                response = await self._run(lambda d: model_status_response(self.manager, name, version, label))
                return _json_response(json_format.MessageToDict(
                    response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))
            raw = await _read_body(request, self.max_request_bytes)
            if api == "predict":
                return _json_response(await self._run(lambda d: self._predict_raw(spec, raw, d)))
            body = _parse_body(raw)
            handler = {"classify": self._classify, "regress": self._regress}[api]
            return _json_response(await self._run(lambda d: handler(spec, body, d)))
        except ServingError as exc:
            status = exc.code.name
            return _error_response(exc)
        except web.HTTPException as exc:  # e.g. 413 over --max_request_bytes: keep aiohttp's status
            status = "RESOURCE_EXHAUSTED" if exc.status == 413 else "UNKNOWN"
            return _json_response({"error": exc.reason}, exc.status)
        except Exception as exc:
            error = as_serving_error(exc)
            status = error.code.name
            return _error_response(error)
        finally:
            if self.metrics is not None and request.method == "POST":
                self.metrics.observe_request(name, api, "REST", status, (time.perf_counter() - start) * 1e6)

    async def _run(self, fn: Callable[[float | None], Any]) -> Any:
        """Run `fn(deadline)` in the pool, bounded by --rest_api_timeout_in_ms."""
        deadline = time.monotonic() + self.timeout if self.timeout else None
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, deadline)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Request timed out") from None

    @staticmethod
    def _metadata_json(response: Any) -> dict:
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return {"model_spec": {"name": response.model_spec.name, "signature_name": "",
                               "version": str(response.model_spec.version.value)},
                "metadata": {"signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)}}

    def _resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        return resolve(self.manager, spec)

    # ------------------------------------------------------------------ predict
    def _predict_raw(self, spec: model_pb2.ModelSpec, raw: bytes, deadline: float | None) -> dict:
        """Parse (here in the pool, not on the event loop), then predict. A fast-path body has the
        same keys as the general parse, its array read by `_value` once the signature's dtype is
        known, so a body the fast path declines is parsed once more by the general path only."""
        fast = _json_fast.parse_predict(raw)
        if fast is None:
            return self._predict(spec, _parse_body(raw), deadline)
        try:
            return self._predict(spec, {**fast.fields, fast.key: fast}, deadline)
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

    def _predict(self, spec: model_pb2.ModelSpec, body: dict, deadline: float | None) -> dict:
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument("'signature_name' must be a string")
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows == has_cols:
            raise invalid_argument("Missing 'inputs' or 'instances' key" if not has_rows else
                                   "Not formatted correctly: use only one of 'instances' (row format) "
                                   "or 'inputs' (columnar format)")
        servable = self._resolve(spec)
        with servable.use():
            sig = servable.signature(signature_name, "predict")
            inputs = self._rows(sig.inputs, body["instances"]) if has_rows else self._columns(sig.inputs, body["inputs"])
            _, outputs = servable.predict(signature_name, inputs, (), deadline)
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

    # ------------------------------------------------------------------ classify / regress
    def _examples(self, body: dict) -> list[bytes]:
        return tensors.examples_from_json(body.get("examples"), body.get("context"))

    def _classify(self, spec: model_pb2.ModelSpec, body: dict, deadline: float | None) -> dict:
        servable = self._resolve(spec)
        with servable.use():
            _, classes, scores = servable.classify(body.get("signature_name", ""), self._examples(body), deadline)
        result = classification_result(classes, scores)
        return {"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]}

    def _regress(self, spec: model_pb2.ModelSpec, body: dict, deadline: float | None) -> dict:
        servable = self._resolve(spec)
        with servable.use():
            _, values = servable.regress(body.get("signature_name", ""), self._examples(body), deadline)
        return {"results": values.tolist()}
