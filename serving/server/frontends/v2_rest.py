"""The Open Inference Protocol's REST routes (`/v2/...`) beside TF Serving's `/v1` on the same app.

Routes: `GET /v2`, `/v2/health/live`, `/v2/health/ready`, `GET /v2/models/{name}[/versions/{v}]`
(metadata), `GET .../ready`, `POST .../infer`. Each handler translates JSON (and Triton's binary
tensor data extension: a JSON header of `Inference-Header-Content-Length` bytes, then each
tensor's bytes in order, sized by its `binary_data_size`) into `_v2`'s words and back; body
limits, the pool, deadlines and metrics are the v1 REST front end's (`RestApi`'s public
`answer`/`deadline`/`read_body`/`run`, described here as `RestCalls`), reused as they are.
Readiness is answered as the protocol's HTTP form says: 200 for true, 400 for false (with the JSON
`{"ready": false}`), 404 for a model the server does not serve.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from aiohttp import web

from serving.errors import invalid_argument, not_found
from serving.json_body import dumps_json
from serving.server.frontends import _v2
from serving.server.service import ModelRef, Service

HEADER_LENGTH = "Inference-Header-Content-Length"
_NAME = "{name:[^/]+}"


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise invalid_argument(f"{where}: 'parameters' must be an object of strings, numbers and booleans")
    return value


def _ref(request: web.Request, params: dict[str, Any] | None = None) -> ModelRef:
    return _v2.ref_of(request.match_info["name"], request.match_info.get("version", ""), params or {})


def _split(request: web.Request, raw: bytes) -> tuple[bytes, memoryview]:
    """(JSON header, binary data after it) of a request body."""
    given = request.headers.get(HEADER_LENGTH)
    if given is None:
        return raw, memoryview(b"")
    if not given.strip().isdigit() or int(given) > len(raw):
        raise invalid_argument(f"{HEADER_LENGTH}: {given[:40]!r} is not a length within the body's {len(raw)} bytes")
    n = int(given)
    return raw[:n], memoryview(raw)[n:]


def _inputs(body: dict, blobs: memoryview) -> list[_v2.InputTensor]:
    tensors = body.get("inputs")
    if not isinstance(tensors, list):
        raise invalid_argument("'inputs' must be a list of tensors ({\"name\", \"shape\", \"datatype\", \"data\"})")
    out, offset = [], 0
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise invalid_argument(f"inputs[{i}] must be an object with a string 'name'")
        name = t["name"]
        if not isinstance(t.get("datatype"), str):
            raise invalid_argument(f"input '{name}': 'datatype' must be a string (FP32, INT64, BYTES, ...)")
        shape = _v2.check_shape(name, t.get("shape"))
        size = _parameters(t.get("parameters"), f"input '{name}'").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or "data" in t:
                raise invalid_argument(f"input '{name}': 'binary_data_size' must be a non-negative integer, "
                                       "without 'data'")
            if offset + size > len(blobs):
                raise invalid_argument(f"input '{name}': binary_data_size {size} runs past the "
                                       f"{len(blobs)} bytes of binary data")
            value: Any = blobs[offset:offset + size]
            offset += size
        elif "data" in t:
            value = t["data"]
        else:
            raise invalid_argument(f"input '{name}': no 'data' (nor a 'binary_data_size' parameter)")
        out.append(_v2.InputTensor(name, t["datatype"], shape, value))
    if offset != len(blobs):
        raise invalid_argument(f"{len(blobs) - offset} bytes of binary data follow the inputs' data")
    return out


def _requested(body: dict, binary_default: bool) -> dict[str, bool]:
    """Requested output name -> whether it is answered as binary data ({} means all outputs)."""
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list):
        raise invalid_argument("'outputs' must be a list of {\"name\": ...} objects")
    out = {}
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise invalid_argument(f"outputs[{i}] must be an object with a string 'name'")
        params = _parameters(o.get("parameters"), f"output '{o['name']}'")
        if "classification" in params:
            raise invalid_argument(f"output '{o['name']}': the classification extension is not supported")
        out[o["name"]] = bool(params.get("binary_data", binary_default))
    return out


class RestCalls(Protocol):
    """What the v2 routes use of tfserving_rest.RestApi (described, not imported: that module
    imports this one): its service and how it runs a call."""

    service: Service

    async def answer(self, request: web.Request, api: str, work: Callable[[], Awaitable[Any]]) -> web.Response: ...

    def deadline(self) -> float | None: ...

    async def read_body(self, request: web.Request, deadline: float | None) -> bytes: ...

    async def run(self, fn: Callable[[float | None], Any], deadline: float | None = None) -> Any: ...


class V2Routes:
    """The v2 routes of one RestApi (its service, pool, limits and timeout)."""

    def __init__(self, api: RestCalls, parse_body: Callable[[bytes], dict]) -> None:
        """`api`: the tfserving_rest.RestApi, and its JSON parser, passed in (not imported) because
        that module imports this one."""
        self.api = api
        self.service = api.service
        self.parse_body = parse_body

    def add_to(self, router: web.UrlDispatcher) -> None:
        add = router.add_route
        add("GET", "/v2", self._server_metadata)
        add("GET", "/v2/health/live", self._live)
        add("GET", "/v2/health/ready", self._server_ready)
        for target in ("", "/versions/{version:[^/]+}"):
            base = f"/v2/models/{_NAME}{target}"
            add("GET", base, self._model_metadata)
            add("GET", base + "/ready", self._model_ready)
            add("POST", base + "/infer", self._infer)
        add("*", "/v2/{tail:.*}", self._unknown)  # {"error": ...} as the protocol's errors, not aiohttp's text

    async def _unknown(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            raise not_found(f"no v2 route {request.method} {request.path}"[:300])
        return await self.api.answer(request, "", work)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            return _v2.server_metadata()
        return await self.api.answer(request, "", work)

    async def _live(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            return {"live": True}
        return await self.api.answer(request, "", work)

    @staticmethod
    def _readiness(ready: bool, **fields: Any) -> web.Response:
        return web.Response(body=dumps_json({**fields, "ready": ready}), status=200 if ready else 400,
                            content_type="application/json")

    async def _server_ready(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            return self._readiness(await self.api.run(lambda d: self.service.ready()))
        return await self.api.answer(request, "", work)

    async def _model_ready(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            ref = _ref(request)
            return self._readiness(await self.api.run(lambda d: self.service.ready(ref)), name=ref.name)
        return await self.api.answer(request, "", work)

    async def _model_metadata(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            params = {k: v for k, v in request.query.items() if k == _v2.SIGNATURE_PARAMETER}
            return await self.api.run(lambda d: _v2.model_metadata(self.service, _ref(request, params)))
        return await self.api.answer(request, "", work)

    async def _infer(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            deadline = self.api.deadline()
            raw = await self.api.read_body(request, deadline)
            return await self.api.run(lambda d: self._infer_raw(request, raw, d), deadline)
        return await self.api.answer(request, _v2.API, work)

    def _infer_raw(self, request: web.Request, raw: bytes, deadline: float | None) -> Any:
        """Parse and run (in the pool); a dict answers as JSON, binary outputs as a Response."""
        head, blobs = _split(request, raw)
        body = self.parse_body(head)
        params = _parameters(body.get("parameters"), "request")
        request_id = body.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise invalid_argument("'id' must be a string")
        binary_default = params.get("binary_data_output", False)
        if not isinstance(binary_default, bool):
            raise invalid_argument("parameter 'binary_data_output' must be true or false")
        requested = _requested(body, binary_default)
        result = _v2.infer(self.service, _ref(request, params), lambda: _inputs(body, blobs), list(requested),
                           deadline)
        outputs, data = [], []
        for name, array in result.outputs.items():
            entry: dict[str, Any] = {"name": name, "datatype": _v2.output_datatype(array), "shape": list(array.shape)}
            if requested.get(name, binary_default):
                data.append(_v2.to_raw(array))
                entry["parameters"] = {"binary_data_size": len(data[-1])}
            else:
                entry["data"] = _v2.to_json_data(array)
            outputs.append(entry)
        answer: dict[str, Any] = {"model_name": result.model, "model_version": str(result.version)}
        if request_id is not None:
            answer["id"] = request_id
        answer["outputs"] = outputs
        if not data:
            return answer
        header = dumps_json(answer)
        return web.Response(body=b"".join([header, *data]), content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(len(header))})
