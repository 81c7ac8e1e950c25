"""What `serving.Client` (gRPC) and `serving.RestClient` share: argument checks,
input and tf.Example preparation, metadata and status parsing, waiting, and in-flight limiting.

Both clients accept and refuse exactly the same arguments because both call these functions.
No protos here: the REST client imports this module, and TF Serving's protos import the whole
`tensorflow` package, which REST never needs.
"""
from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np

from serving.errors import ClientError
from serving.names import CLASSIFY_METHOD, REGRESS_METHOD, validate_label, validate_version

EXAMPLE_FEATURE = "images"  # the zoo's classify/regress signatures parse this float feature
TASK_METHODS = {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD}


# ------------------------------------------------------------------------------- argument checks

def check_model(model: Any) -> str:
    """`model` if it is a non-empty str, else ValueError."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty model name (str), got {model!r}")
    return model


MISSING: Any = object()  # an argument the caller left out (None is a value some take)


def default_model(default: str | None, model: Any) -> str:
    """`model`, or the client's default model when the call names none."""
    if model is None or model is MISSING:
        if default is None:
            raise ValueError("no model named: pass it first (client.predict('digits', images)) or give "
                             "the client a default model (serving.Client(target, model_name='digits'))")
        return default
    return check_model(model)


def model_and_data(default: str | None, model: Any, data: Any, data_name: str) -> tuple[str, Any]:
    """(model name, data) of a call whose model may be left to the client's default:
    `predict('digits', x)`, `predict(x)` and `predict(inputs=x)` (the default model)."""
    if data is MISSING:
        if model is MISSING:
            raise ValueError(f"{data_name} missing")
        if isinstance(model, str):
            raise ValueError(f"{data_name} missing (model {model!r} named, nothing to send)")
        model, data = MISSING, model
    return default_model(default, model), data


def check_version_label(version: Any, label: Any) -> tuple[int | None, str | None]:
    """At most one of version (int >= 0) and label ([a-zA-Z0-9_]+), as ModelSpec's oneof."""
    if version is not None and label is not None:
        raise ValueError(f"pass version or label, not both (got version={version!r}, label={label!r})")
    return (None if version is None else validate_version(version),
            None if label is None else validate_label(label))


def check_timeout(timeout: Any, name: str = "timeout") -> float:
    """`timeout` as a positive float of seconds, else ValueError naming `name`."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def check_signature(signature: Any) -> str | None:
    """A non-empty signature key, or None for serving_default."""
    if signature is not None and (not isinstance(signature, str) or not signature):
        raise ValueError(f"signature must be a non-empty signature key (str) or None for "
                         f"serving_default, got {signature!r}")
    return signature


def check_output_filter(output_filter: Any) -> list[str]:
    """None -> [] (all outputs); a name or names -> list of names."""
    if output_filter is None:
        return []
    if isinstance(output_filter, str):
        output_filter = [output_filter]
    items = list(output_filter)
    if not all(isinstance(x, str) and x for x in items):
        raise ValueError(f"output_filter must be output names (str), got {output_filter!r}")
    return items


def check_tasks(tasks: Any) -> Mapping[str, str]:
    """MultiInference tasks: signature -> "classify" | "regress" (default both, by those names)."""
    tasks = {"classify": "classify", "regress": "regress"} if tasks is None else tasks
    if not isinstance(tasks, Mapping) or not tasks or any(m not in TASK_METHODS for m in tasks.values()):
        raise ValueError(f"tasks must map signature names to one of {sorted(TASK_METHODS)}, got {tasks!r}")
    return tasks


# ------------------------------------------------------------------------------ gRPC channels

DEFAULT_TARGET = "localhost:8500"


def check_target(target: Any) -> str:
    if not isinstance(target, str) or not target or "://" in target and not target.startswith(
            ("unix://", "dns://", "ipv4:", "ipv6:")):
        raise ValueError(f"target must be 'host:port' (e.g. {DEFAULT_TARGET!r}) or a gRPC URI such as "
                         f"'unix:///path' or 'dns:///host:port', got {target!r}")
    return target


def channel_credentials(tls: Any) -> grpc.ChannelCredentials | None:
    """None/False: plaintext (TF Serving's default). True: TLS with the system roots. A path: TLS
    with that PEM root certificate. grpc.ChannelCredentials: used as given (mutual TLS...)."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if isinstance(tls, (str, os.PathLike)):
        try:
            return grpc.ssl_channel_credentials(root_certificates=Path(tls).read_bytes())
        except OSError as exc:
            raise ValueError(f"tls: cannot read the root certificate {str(tls)!r}: {exc.strerror}") from None
    raise ValueError(f"tls must be None/False (plaintext), True (system roots), a path to a PEM root "
                     f"certificate or grpc.ChannelCredentials, got {tls!r}")


def rpc_error(exc: grpc.RpcError, target: str, rpc: str, timeout: float) -> ClientError:
    """A gRPC client's failure as a ClientError: an unreachable server or a deadline says which
    address and what to check."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if callable(getattr(exc, "details", None)) else None) or str(exc)
    if code is grpc.StatusCode.UNAVAILABLE and any(
            s in details.lower() for s in ("connect", "refused", "resolution", "unreachable", "socket")):
        details = (f"cannot reach a model server at {target} ({details}); check that the server "
                   "is running and its --port matches, and the host/port in target")
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = (f"no answer from {target} to {rpc} within {timeout:g} s ({details}); the server "
                   "may be overloaded or the model slow: raise timeout= or check the server")
    return ClientError(code, details, target=target)


# ------------------------------------------------------------------------------------- inputs

def as_input_arrays(inputs: Any) -> dict[str, np.ndarray] | np.ndarray:
    """A bare array (the signature's single input) or a dict name -> array-like."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("inputs must not be an empty dict; pass name -> array for each input")
        out = {}
        for name, value in inputs.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"input names must be non-empty str, got {name!r}")
            out[name] = _as_array(value, f"inputs[{name!r}]")
        return out
    return _as_array(inputs, "inputs")


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, (str, bytes)):
        value = [value]
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not array-like ({exc})") from None
    if array.dtype.kind not in "biufOSU" or array.size == 0 and array.ndim == 0:
        raise ValueError(f"{what} must be a numeric or string array, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{what} must have a batch dimension, got a scalar")
    return array


def _example_class() -> type | None:
    # A caller can only hold a tf.train.Example if TensorFlow's example protos are loaded already,
    # so looking in sys.modules answers isinstance without importing TensorFlow for REST callers.
    module = sys.modules.get("tensorflow.core.example.example_pb2")
    return getattr(module, "Example", None)


def examples_from(examples_or_images: Any, feature: str = EXAMPLE_FEATURE) -> list[dict[str, Any]]:
    """Images [N,H,W,C] (flattened into float feature `feature`), or a list of dicts feature ->
    value(s) / tf.train.Example protos -> list of plain dicts feature -> list of values."""
    if isinstance(examples_or_images, np.ndarray):
        images = examples_or_images
        if images.ndim < 2 or images.dtype.kind not in "biuf" or len(images) == 0:
            raise ValueError(f"examples_or_images as an array must be numeric with a batch dimension "
                             f"and at least one example, got dtype {images.dtype} shape {images.shape}")
        flat = images.reshape(len(images), -1).astype(np.float32)
        return [{feature: row.tolist()} for row in flat]
    if isinstance(examples_or_images, (str, bytes)) or not isinstance(examples_or_images, Sequence) \
            or not examples_or_images:
        raise ValueError("examples_or_images must be an image array [N,H,W,C] or a non-empty list of "
                         f"dicts (feature -> values) or tf.train.Example, got {type(examples_or_images).__name__}")
    example_class = _example_class()
    out = []
    for i, item in enumerate(examples_or_images):
        if example_class is not None and isinstance(item, example_class):
            out.append(_example_to_dict(item))
        elif isinstance(item, Mapping) and item:
            out.append({str(k): feature_values(v, f"examples[{i}][{k!r}]") for k, v in item.items()})
        else:
            raise ValueError(f"examples[{i}] must be a non-empty dict or a tf.train.Example, got {item!r}"[:200])
    return out


def check_context(context: Any) -> dict[str, list[Any]] | None:
    """Classify/regress `context`: None, or a non-empty dict feature -> values."""
    if context is None:
        return None
    if not isinstance(context, Mapping) or not context:
        raise ValueError(f"context must be a non-empty dict feature -> values or None, got {context!r}")
    return {str(k): feature_values(v, f"context[{k!r}]") for k, v in context.items()}


def feature_values(value: Any, what: str) -> list[Any]:
    """One feature's value(s) as a flat list of numbers, str or bytes."""
    values = np.asarray(value).reshape(-1).tolist() if not isinstance(value, (str, bytes)) else [value]
    if not all(isinstance(v, (int, float, str, bytes)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{what} must hold numbers, str or bytes, got {value!r}"[:200])
    return values


def _example_to_dict(example: Any) -> dict[str, list[Any]]:
    out = {}
    for name, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        out[name] = list(getattr(feat, kind).value) if kind else []
    return out


# ------------------------------------------------------------------------------------ answers

def signature_specs(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`metadata()`'s answer -> {key: {"method": str, "inputs": {name: (dtype, shape)}, "outputs":
    {...}}} with dtype like "DT_FLOAT" and shape a list of ints (-1 = any; None = unknown rank)."""
    try:
        defs = metadata["metadata"]["signature_def"]["signature_def"]
        items = defs.items()
    except (KeyError, TypeError, AttributeError):
        raise ValueError("metadata must be the dict returned by Client.metadata()/RestClient.metadata() "
                         "(with metadata.signature_def.signature_def)") from None

    def tensors(d: Mapping[str, Any]) -> dict[str, tuple[str, list[int] | None]]:
        out = {}
        for name, info in d.items():
            shape = info.get("tensor_shape", {})
            dims = None if shape.get("unknown_rank") else [int(x.get("size", 0)) for x in shape.get("dim", [])]
            out[name] = (info.get("dtype", "DT_INVALID"), dims)
        return out

    return {key: {"method": sig.get("method_name", ""), "inputs": tensors(sig.get("inputs", {})),
                  "outputs": tensors(sig.get("outputs", {}))} for key, sig in items}


def normalize_status(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Proto-JSON GetModelStatusResponse -> [{"version": int, "state": "AVAILABLE", "error_code":
    "OK", "error_message": ""}, ...] sorted by version (the same from both clients)."""
    out = []
    for item in raw.get("model_version_status", []):
        status = item.get("status", {}) or {}
        out.append({"version": int(item.get("version", 0)), "state": item.get("state", "UNKNOWN"),
                    "error_code": status.get("error_code", "OK"),
                    "error_message": status.get("error_message", "")})
    return sorted(out, key=lambda s: s["version"])


def classifications_to_arrays(rows: list[list[tuple[str, float]]]) -> dict[str, np.ndarray]:
    """[[(label, score), ...] per example] -> {"classes": object [N,K], "scores": float32 [N,K]}
    (rows shorter than K padded with "" / NaN)."""
    k = max((len(r) for r in rows), default=0)
    classes = np.full((len(rows), k), "", dtype=object)
    scores = np.full((len(rows), k), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, (name, score) in enumerate(row):
            classes[i, j] = name
            scores[i, j] = score
    return {"classes": classes, "scores": scores}


# ------------------------------------------------------------------------ waiting and fan-out

def check_available(statuses: list[dict[str, Any]], model: str, version: int | None) -> bool:
    """True once the asked version (or any) is AVAILABLE; ClientError if it failed to load."""
    chosen = [s for s in statuses if version is None or s["version"] == version]
    if any(s["state"] == "AVAILABLE" for s in chosen):
        return True
    failed = [s for s in chosen if s["state"] == "END" and s["error_code"] not in ("OK", 0)]
    if chosen and len(failed) == len(chosen):
        f = failed[-1]
        raise ClientError(grpc.StatusCode.FAILED_PRECONDITION,
                          f"model {model!r} version {f['version']} failed to load: "
                          f"{f['error_code']}: {f['error_message']}")
    return False


def wait_loop(fetch: Callable[[], list[dict[str, Any]]], model: str, version: int | None,
              timeout: float, target: str, poll: float = 0.2) -> list[dict[str, Any]]:
    """Poll `fetch` (a status call) until available; retry while the server is down or the model
    is not loaded yet; DEADLINE_EXCEEDED naming the last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            statuses = fetch()
            if check_available(statuses, model, version):
                return statuses
            last = "states " + ", ".join(f"v{s['version']}={s['state']}" for s in statuses)
        except ClientError as exc:
            if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            last = f"{exc.code.name}: {exc.message}"
        if time.monotonic() >= deadline:
            what = f"model {model!r}" + (f" version {version}" if version is not None else "")
            raise ClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"{what} not AVAILABLE at {target} after {timeout:g} s (last: {last}); "
                              "check the server's log, its --model_base_path and the model name",
                              target=target)
        time.sleep(poll)


class Workers:
    """A client's worker threads for its *_async calls, started on first use."""

    def __init__(self, max_workers: Any, name: str) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers, self.name = max_workers, name
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(self.max_workers,
                                                                       thread_name_prefix=self.name)
            return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Wait for the running calls; the queued ones are cancelled."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def run_many(submit: Callable[..., concurrent.futures.Future], model: str, batches: Iterable[Any],
             max_in_flight: int, kwargs: Mapping[str, Any]) -> list[Any]:
    """Submit each batch, keeping at most `max_in_flight` unfinished; results in input order."""
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
    futures: list[concurrent.futures.Future] = []
    try:
        for batch in batches:
            pending = [f for f in futures if not f.done()]
            if len(pending) >= max_in_flight:
                concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            futures.append(submit(model, batch, **kwargs))
        return [f.result() for f in futures]
    finally:
        for f in futures:  # on an error, abandon the rest instead of leaving them to run
            f.cancel()


__all__ = ["signature_specs", "normalize_status", "EXAMPLE_FEATURE"]
