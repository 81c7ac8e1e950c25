"""REST client for TF Serving's /v1 API: `serving.RestClient`, the same methods as `serving.Client`.

HTTP is done by `requests` (keep-alive connection pool, one Session per thread so the client can
be shared between threads). Only TF Serving's documented REST API is used, so it works unchanged
against the real `tensorflow_model_server --rest_api_port`:

    GET  /v1/models/NAME[/versions/N|/labels/L]            status
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   metadata
    POST /v1/models/NAME[/versions/N|/labels/L]:predict|:classify|:regress

Predict sends the row ("instances") or columnar ("inputs") format; bytes go as {"b64": ...}.
Bodies are written by orjson straight from the numpy arrays (no `tolist()`, float32 in its
shortest repr; benchmarks/bench_serving.py's S3 rows measure it); arrays holding NaN or inf go
through json.dumps, which writes NaN/Infinity as TF Serving accepts (orjson would write null).
Answers are parsed by orjson, or by json when they hold NaN/Infinity.
No TensorFlow proto is imported here (each one imports all of TensorFlow), so a REST client, and
`zoo-query --rest`, starts without TensorFlow.
Answers are decoded with the dtypes from the model's metadata (fetched once per model/version/
signature and cached), so results equal the gRPC client's: numeric arrays of the signature's
dtype, DT_STRING outputs as object arrays of bytes. What REST cannot do: `output_filter` is
applied on the client (TF Serving's REST has no such field), `multi_inference` runs one request
per task, and `reload` is gRPC-only (ClientError UNIMPLEMENTED).
"""
from __future__ import annotations

import base64
import concurrent.futures  # noqa: F401  (in annotations)
import threading
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import grpc
import numpy as np

from serving.json_body import dumps_json
from serving.errors import ClientError
from serving.client._http import DEFAULT_BASE_URL, Http
from serving.client._common import (MISSING, as_input_arrays, check_context, check_model, default_model,
                                    check_output_filter, check_signature, check_tasks, check_timeout,
                                    check_version_label, classifications_to_arrays, examples_from,
                                    EXAMPLE_FEATURE, model_and_data, normalize_status, run_many,
                                    signature_specs, wait_loop, Workers)

FORMATS = ("columnar", "row")
# Answers are decoded by the dtype names in the model's metadata. A table by name instead of
# tensorflow's DataType enum, because importing any TensorFlow proto imports all of TensorFlow.
_NUMPY_DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16,
                 "DT_INT8": np.int8, "DT_INT16": np.int16,
                 "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_UINT8": np.uint8,
                 "DT_UINT16": np.uint16, "DT_UINT32": np.uint32, "DT_UINT64": np.uint64,
                 "DT_BOOL": np.bool_}


def _to_json_value(array: np.ndarray) -> Any:
    """Numeric arrays as C-contiguous numpy arrays (for `dumps_json`); bytes as {"b64": ...}; str
    as text (TF Serving's rules)."""
    if array.dtype.kind in "OSU":
        def leaf(v: Any) -> Any:
            if isinstance(v, bytes):
                return {"b64": base64.b64encode(v).decode("ascii")}
            if isinstance(v, str):
                return v
            raise ValueError(f"string inputs must hold bytes or str, got {type(v).__name__}")

        def walk(v: Any) -> Any:
            return [walk(x) for x in v] if isinstance(v, list) else leaf(v)
        return walk(array.tolist())
    if array.dtype == np.float64:
        array = array.astype(np.float32)  # as the gRPC client does: models take float32
    return np.ascontiguousarray(array)  # orjson writes only C-contiguous arrays


def _from_json_value(value: Any, dtype: str, name: str) -> np.ndarray:
    if dtype == "DT_STRING":
        def leaf(v: Any) -> bytes:
            if isinstance(v, dict) and "b64" in v:
                return base64.b64decode(v["b64"])
            return v.encode("utf-8") if isinstance(v, str) else bytes(v)

        def walk(v: Any) -> Any:
            return [walk(x) for x in v] if isinstance(v, list) else leaf(v)
        return np.array(walk(value), dtype=object)
    np_dtype = _NUMPY_DTYPES.get(dtype)
    return np.asarray(value) if np_dtype is None else np.asarray(value, dtype=np_dtype)


class RestClient:
    """TF Serving REST client with the methods of `serving.Client`; safe to share between threads."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, model_name: str | None = None, *,
                 timeout: float = 10.0, max_workers: int = 8, verify: bool | str = True) -> None:
        """`model_name`: the model a call that names none goes to (`client.predict(images)`)."""
        self._http = Http(base_url, timeout, verify)
        self.base_url, self.timeout, self.verify = self._http.base_url, self._http.timeout, verify
        self.model_name = None if model_name is None else check_model(model_name)
        self._workers = Workers(max_workers, "zoo-rest-client")
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._meta_cache: dict[tuple, dict[str, Any]] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        model = "" if self.model_name is None else f", model_name={self.model_name!r}"
        return f"RestClient({self.base_url!r}{model}, timeout={self.timeout})"

    def close(self) -> None:
        """Stop the worker threads and close every connection; later calls raise ValueError."""
        self._http.closed = True  # first: no new request starts while the workers wind down
        self._workers.shutdown()
        self._http.close()

    def _url(self, model: Any, version: Any, label: Any, suffix: str = "") -> str:
        model = check_model(model)
        version, label = check_version_label(version, label)
        url = f"{self.base_url}/v1/models/{quote(model, safe='')}"
        if version is not None:
            url += f"/versions/{version}"
        elif label is not None:
            url += f"/labels/{label}"
        return url + suffix

    def _request(self, method: str, url: str, body: Any, timeout: float | None) -> Any:
        t = self.timeout if timeout is None else check_timeout(timeout)
        data = None if body is None else dumps_json(body)
        response = self._http.send(method, url, data, {"Content-Type": "application/json"} if data else None,
                                   t, "RestClient")
        return self._http.json_object(response.content, url, "TF Serving REST")

    # -- metadata / status ------------------------------------------------------------------
    def metadata(self, model: str | None = None, version: int | None = None, *, label: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        """GET .../metadata: {"model_spec": {...}, "metadata": {"signature_def": {...}}}."""
        model = default_model(self.model_name, model)
        return self._request("GET", self._url(model, version, label, "/metadata"), None, timeout)

    def status(self, model: str | None = None, version: int | None = None, *, label: str | None = None,
               timeout: float | None = None) -> list[dict[str, Any]]:
        """GET /v1/models/NAME -> [{"version", "state", "error_code", "error_message"}]."""
        model = default_model(self.model_name, model)
        return normalize_status(self._request("GET", self._url(model, version, label), None, timeout))

    def reload(self, config_or_path: Any, *, timeout: float | None = None) -> None:
        """Not in TF Serving's REST API: always ClientError UNIMPLEMENTED (use serving.Client)."""
        raise ClientError(grpc.StatusCode.UNIMPLEMENTED,
                          "TF Serving's REST API has no config reload; use serving.Client (gRPC "
                          "HandleReloadConfigRequest) against the server's --port", target=self.base_url)

    def wait_until_available(self, model: str | None = None, timeout: float = 60.0, *,
                             version: int | None = None) -> list[dict[str, Any]]:
        """Poll GET /v1/models/NAME until `version` (or any) is AVAILABLE; see Client's."""
        model = default_model(self.model_name, model)
        timeout = check_timeout(timeout)
        version, _ = check_version_label(version, None)
        return wait_loop(lambda: self.status(model, timeout=min(self.timeout, timeout)), model, version,
                         timeout, self.base_url)

    def _outputs_of(self, model: str, version: Any, label: Any, signature: str,
                    timeout: float | None) -> dict[str, tuple[str, Any]]:
        key = (model, version, label, signature)
        with self._lock:
            cached = self._meta_cache.get(key)
        if cached is None:
            specs = signature_specs(self.metadata(model, version, label=label, timeout=timeout))
            if signature not in specs:
                raise ClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f'Serving signature key "{signature}" not found. (model {model!r} '
                                  f"has {sorted(specs)})", target=self.base_url, status=400)
            cached = specs[signature]["outputs"]
            with self._lock:
                self._meta_cache[key] = cached
        return cached

    # -- predict ------------------------------------------------------------------------------
    def predict(self, model: Any = MISSING, inputs: Any = MISSING, *, version: int | None = None,
                label: str | None = None,
                signature: str | None = None, output_filter: Sequence[str] | None = None,
                format: str = "columnar", timeout: float | None = None) -> dict[str, np.ndarray]:
        """POST :predict in the `format` "columnar" ({"inputs": ...}) or "row" ({"instances": ...});
        returns name -> numpy array like Client.predict (output_filter applied client-side).
        `model` may be left out when the client has a default model."""
        model, inputs = model_and_data(self.model_name, model, inputs, "inputs")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        url = self._url(model, version, label, ":predict")
        signature = check_signature(signature)
        names = check_output_filter(output_filter)
        arrays = as_input_arrays(inputs)
        body: dict[str, Any] = {"signature_name": signature} if signature else {}
        if format == "columnar":
            body["inputs"] = ({k: _to_json_value(v) for k, v in arrays.items()} if isinstance(arrays, dict)
                              else _to_json_value(arrays))
        elif isinstance(arrays, dict):
            sizes = {k: len(v) for k, v in arrays.items()}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"row format needs every input to share dimension 0, got sizes {sizes}; "
                                 "use format='columnar'")
            columns = {k: _to_json_value(v) for k, v in arrays.items()}
            body["instances"] = [{k: col[i] for k, col in columns.items()}
                                 for i in range(next(iter(sizes.values())))]
        else:
            body["instances"] = _to_json_value(arrays)
        outputs = self._outputs_of(model, version, label, signature or "serving_default", timeout)
        answer = self._request("POST", url, body, timeout)
        return _decode_predict(answer, outputs, names, self.base_url)

    def predict_async(self, model: Any = MISSING, inputs: Any = MISSING,
                      **kwargs: Any) -> "concurrent.futures.Future":
        """predict() on the client's worker threads; returns a concurrent.futures.Future."""
        model, inputs = model_and_data(self.model_name, model, inputs, "inputs")
        as_input_arrays(inputs)  # fail here, not inside the future, on obviously bad inputs
        if self._http.closed:
            raise ValueError(f"this RestClient for {self.base_url} is closed")
        return self._workers.submit(self.predict, model, inputs, **kwargs)

    def predict_many(self, model: Any = MISSING, batches: Any = MISSING, *, max_in_flight: int = 8,
                     **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """predict() for each batch, up to `max_in_flight` at once; results in order."""
        model, batches = model_and_data(self.model_name, model, batches, "batches")
        return run_many(self.predict_async, model, batches, max_in_flight, kwargs)

    # -- classify / regress / multi_inference ---------------------------------------------------
    def _examples_body(self, examples_or_images: Any, signature: str, context: Any,
                       feature: str) -> dict[str, Any]:
        def jsonable(values: list[Any]) -> Any:
            return [{"b64": base64.b64encode(v).decode("ascii")} if isinstance(v, bytes) else v
                    for v in values]
        examples = examples_from(examples_or_images, feature)
        body: dict[str, Any] = {"signature_name": check_signature(signature) or "serving_default",
                                "examples": [{k: jsonable(v) for k, v in e.items()} for e in examples]}
        ctx = check_context(context)
        if ctx is not None:
            body["context"] = {k: jsonable(v) for k, v in ctx.items()}
        return body

    def classify(self, model: Any = MISSING, examples_or_images: Any = MISSING, *, version: int | None = None,
                 label: str | None = None, signature: str = "classify",
                 context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                 timeout: float | None = None) -> dict[str, np.ndarray]:
        """POST :classify -> {"classes": str [N,K], "scores": float32 [N,K]} as Client.classify."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        url = self._url(model, version, label, ":classify")
        answer = self._request("POST", url, self._examples_body(examples_or_images, signature, context,
                                                                feature), timeout)
        try:
            rows = [[(str(name), float(score)) for name, score in row] for row in answer["results"]]
        except (KeyError, TypeError, ValueError):
            raise ClientError(grpc.StatusCode.INTERNAL, f"unexpected :classify answer from {self.base_url}: "
                              f"{str(answer)[:200]}", target=self.base_url, status=200) from None
        return classifications_to_arrays(rows)

    def regress(self, model: Any = MISSING, examples_or_images: Any = MISSING, *, version: int | None = None,
                label: str | None = None, signature: str = "regress",
                context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                timeout: float | None = None) -> np.ndarray:
        """POST :regress -> float32 [N] as Client.regress."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        url = self._url(model, version, label, ":regress")
        answer = self._request("POST", url, self._examples_body(examples_or_images, signature, context,
                                                                feature), timeout)
        try:
            return np.asarray(answer["results"], dtype=np.float32).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise ClientError(grpc.StatusCode.INTERNAL, f"unexpected :regress answer from {self.base_url}: "
                              f"{str(answer)[:200]}", target=self.base_url, status=200) from None

    def multi_inference(self, model: Any = MISSING, examples_or_images: Any = MISSING,
                        tasks: Mapping[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """REST has no MultiInference: one :classify / :regress request per task, same result shape
        as Client.multi_inference (not one atomic request)."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        tasks = check_tasks(tasks)
        return {sig: getattr(self, method)(model, examples_or_images, signature=sig, **kwargs)
                for sig, method in tasks.items()}


def _decode_predict(answer: Mapping[str, Any], outputs: Mapping[str, tuple[str, Any]],
                    names: list[str], where: str) -> dict[str, np.ndarray]:
    """{"outputs": ...} / {"predictions": ...} -> name -> array; a bare value is the single output."""
    def bad(why: str) -> ClientError:
        return ClientError(grpc.StatusCode.INTERNAL, f"unexpected :predict answer from {where}: {why}",
                           target=where, status=200)

    if "outputs" in answer:
        value = answer["outputs"]
        if isinstance(value, dict) and set(value) <= set(outputs) and len(outputs) > 1:
            columns = value
        else:
            columns = {_single_name(outputs, names, bad): value}
    elif "predictions" in answer:
        rows = answer["predictions"]
        if not isinstance(rows, list):
            raise bad("'predictions' is not a list")
        if rows and all(isinstance(r, dict) for r in rows) and len(outputs) > 1:
            keys = list(rows[0])
            columns = {k: [r[k] for r in rows] for k in keys}
        else:
            columns = {_single_name(outputs, names, bad): rows}
    else:
        raise bad(f"no 'outputs' or 'predictions' key in {sorted(answer)}")
    wanted = names or list(columns)
    missing = [n for n in wanted if n not in columns]
    if missing:
        raise ClientError(grpc.StatusCode.INVALID_ARGUMENT, f"output_filter names {missing} are not outputs "
                          f"of the signature; valid: {sorted(columns)}", target=where)
    return {n: _from_json_value(columns[n], outputs.get(n, ("", None))[0], n) for n in wanted}


def _single_name(outputs: Mapping[str, Any], names: list[str], bad: Any) -> str:
    if len(outputs) == 1:
        return next(iter(outputs))
    if len(names) == 1:
        return names[0]
    raise bad(f"a single unnamed output, but the signature has {sorted(outputs)}")


__all__ = ["RestClient", "DEFAULT_BASE_URL", "FORMATS"]
