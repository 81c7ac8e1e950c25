"""gRPC client for TF Serving's public API: `serving.Client`.

Works unchanged against this package's embedded server (`zoo-serve`) and against the real
`tensorflow_model_server`: it only sends the public `tensorflow_serving.apis` protos
(PredictionService, ModelService) and reads the standard fields of their answers.

    with serving.Client("localhost:8500") as client:
        client.wait_until_available("digits", timeout=60)
        out = client.predict("digits", images)            # {"probabilities": ..., "class_ids": ...}
        fut = client.predict_async("digits", images)       # concurrent.futures.Future
        client.classify("digits", images)                  # {"classes": [N,K] str, "scores": [N,K]}

Every failure is a `ClientError` (a `serving.errors.ServingError`): `.code` is the gRPC status
code, `.message` the server's message, `.target` the address; unreachable servers and deadlines
say which address and what to check.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np

from zoo import _env  # noqa: F401  (quiet TensorFlow before the protos import it)

from google.protobuf import json_format, text_format  # noqa: E402
from tensorflow.core.example import example_pb2, feature_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2, input_pb2,
    model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
    regression_pb2)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from .errors import ServingError  # noqa: E402
from .names import validate_label, validate_version  # noqa: E402
from .tensors import from_numpy_content, to_numpy  # noqa: E402

DEFAULT_TARGET = "localhost:8500"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 8x8 digits need little; 224x224 batches need more
STATE_NAMES = dict(get_model_status_pb2.ModelVersionStatus.State.items())
EXAMPLE_FEATURE = "images"  # the zoo's classify/regress signatures parse this float feature
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
_TASK_METHODS = {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD}


class ClientError(ServingError):
    """A failed call: gRPC `code`, the server's `message`, the `target` asked and, over REST, the
    HTTP `status` actually answered (`http_status` falls back to TF Serving's mapping)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, target: str = "",
                 status: int | None = None) -> None:
        super().__init__(code, message)
        self.target = target
        self.status = status

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else super().http_status

    def __repr__(self) -> str:
        return f"ClientError({self.code.name}, {self.message!r}, target={self.target!r})"


# ---------------------------------------------------------------------------- shared validation
# (used by RestClient too, so both clients accept and refuse exactly the same arguments)

def check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty model name (str), got {model!r}")
    return model


def check_version_label(version: Any, label: Any) -> tuple[int | None, str | None]:
    """At most one of version (int >= 0) and label ([a-zA-Z0-9_]+), as ModelSpec's oneof."""
    if version is not None and label is not None:
        raise ValueError(f"pass version or label, not both (got version={version!r}, label={label!r})")
    return (None if version is None else validate_version(version),
            None if label is None else validate_label(label))


def check_timeout(timeout: Any, name: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def check_signature(signature: Any) -> str | None:
    if signature is not None and (not isinstance(signature, str) or not signature):
        raise ValueError(f"signature must be a non-empty signature key (str) or None for "
                         f"serving_default, got {signature!r}")
    return signature


def check_output_filter(output_filter: Any) -> list[str]:
    if output_filter is None:
        return []
    if isinstance(output_filter, str):
        output_filter = [output_filter]
    items = list(output_filter)
    if not all(isinstance(x, str) and x for x in items):
        raise ValueError(f"output_filter must be output names (str), got {output_filter!r}")
    return items


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
    out = []
    for i, item in enumerate(examples_or_images):
        if isinstance(item, example_pb2.Example):
            out.append(_example_to_dict(item))
        elif isinstance(item, Mapping) and item:
            out.append({str(k): _feature_values(v, f"examples[{i}][{k!r}]") for k, v in item.items()})
        else:
            raise ValueError(f"examples[{i}] must be a non-empty dict or a tf.train.Example, got {item!r}"[:200])
    return out


def _feature_values(value: Any, what: str) -> list[Any]:
    values = np.asarray(value).reshape(-1).tolist() if not isinstance(value, (str, bytes)) else [value]
    if not all(isinstance(v, (int, float, str, bytes)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{what} must hold numbers, str or bytes, got {value!r}"[:200])
    return values


def _example_to_dict(example: example_pb2.Example) -> dict[str, list[Any]]:
    out = {}
    for name, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        out[name] = list(getattr(feat, kind).value) if kind else []
    return out


def dict_to_example(features: Mapping[str, list[Any]]) -> example_pb2.Example:
    """Plain dict feature -> values to a tf.train.Example (ints -> int64, floats, str/bytes)."""
    fmap = {}
    for name, values in features.items():
        if values and all(isinstance(v, (str, bytes)) for v in values):
            fmap[name] = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in values]))
        elif values and all(isinstance(v, int) for v in values):
            fmap[name] = feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
        elif all(isinstance(v, (int, float)) for v in values):
            fmap[name] = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
        else:
            raise ValueError(f"feature {name!r} mixes strings and numbers")
    return example_pb2.Example(features=feature_pb2.Features(feature=fmap))


def signature_specs(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`metadata()`'s answer -> {key: {"method": str, "inputs": {name: (dtype, shape)}, "outputs":
    {...}}} with dtype like "DT_FLOAT" and shape a list of ints (-1 = any; None = unknown rank)."""
    try:
        defs = metadata["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
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
                  "outputs": tensors(sig.get("outputs", {}))} for key, sig in defs.items()}


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


# ---------------------------------------------------------------------------------- the client

def _check_target(target: Any) -> str:
    if not isinstance(target, str) or not target or "://" in target and not target.startswith(
            ("unix://", "dns://", "ipv4:", "ipv6:")):
        raise ValueError(f"target must be 'host:port' (e.g. {DEFAULT_TARGET!r}) or a gRPC URI such as "
                         f"'unix:///path' or 'dns:///host:port', got {target!r}")
    return target


def _credentials(tls: Any) -> grpc.ChannelCredentials | None:
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


class Client:
    """TF Serving gRPC client: one channel, safe to share between threads; use as a context manager.

    Only public `tensorflow_serving.apis` protos are used, so the same code talks to the real
    `tensorflow_model_server`. Numpy in (inputs are sent as `tensor_content`, one copy), numpy out.
    """

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 10.0, tls: Any = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.target = _check_target(target)
        self.timeout = check_timeout(timeout)
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) \
                or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive int, got {max_message_bytes!r}")
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        creds = _credentials(tls)
        self._channel = (grpc.secure_channel(target, creds, options) if creds is not None
                         else grpc.insecure_channel(target, options))
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._input_names: dict[tuple, list[str]] = {}  # (model, version, label, signature) -> names
        self._lock = threading.Lock()
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------
    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls after this raise ValueError."""
        self._closed = True
        self._channel.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r}, timeout={self.timeout})"

    def _error(self, exc: grpc.RpcError, rpc: str, timeout: float) -> ClientError:
        code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if callable(getattr(exc, "details", None)) else None) or str(exc)
        if code is grpc.StatusCode.UNAVAILABLE and any(
                s in details.lower() for s in ("connect", "refused", "resolution", "unreachable", "socket")):
            details = (f"cannot reach a model server at {self.target} ({details}); check that the server "
                       "is running and its --port matches, and the host/port in target")
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            details = (f"no answer from {self.target} to {rpc} within {timeout:g} s ({details}); the server "
                       "may be overloaded or the model slow: raise timeout= or check the server")
        return ClientError(code, details, target=self.target)

    def _call(self, method: Callable[..., Any], request: Any, rpc: str, timeout: float | None) -> Any:
        if self._closed:
            raise ValueError(f"this Client for {self.target} is closed")
        t = self.timeout if timeout is None else check_timeout(timeout)
        try:
            return method(request, timeout=t)
        except grpc.RpcError as exc:
            raise self._error(exc, rpc, t) from None

    def _spec(self, model: Any, version: Any, label: Any, signature: Any = None) -> model_pb2.ModelSpec:
        model = check_model(model)
        version, label = check_version_label(version, label)
        spec = model_pb2.ModelSpec(name=model, signature_name=check_signature(signature) or "")
        if version is not None:
            spec.version.value = version
        if label is not None:
            spec.version_label = label
        return spec

    # -- Predict ------------------------------------------------------------------------------
    def _predict_request(self, model: str, inputs: Any, version: Any, label: Any, signature: Any,
                         output_filter: Any, timeout: float | None) -> predict_pb2.PredictRequest:
        spec = self._spec(model, version, label, signature)
        arrays = as_input_arrays(inputs)
        names = check_output_filter(output_filter)
        if not isinstance(arrays, dict):
            input_names = self._single_input_names(spec, timeout)
            if len(input_names) != 1:
                raise ValueError(f"signature {spec.signature_name or 'serving_default'!r} of {model!r} has "
                                 f"inputs {input_names}; pass inputs as a dict name -> array")
            arrays = {input_names[0]: arrays}
        request = predict_pb2.PredictRequest(model_spec=spec, output_filter=names)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(from_numpy_content(_send_dtype(array)))
        return request

    def _single_input_names(self, spec: model_pb2.ModelSpec, timeout: float | None) -> list[str]:
        """Input names of the asked signature, from metadata (one call per key, then cached)."""
        key = (spec.name, spec.version.value if spec.HasField("version") else None,
               spec.version_label or None, spec.signature_name or "serving_default")
        with self._lock:
            cached = self._input_names.get(key)
        if cached is None:
            meta = self.metadata(spec.name, version=key[1], label=key[2], timeout=timeout)
            specs = signature_specs(meta)
            if key[3] not in specs:
                raise ClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f'Serving signature key "{key[3]}" not found. (model {spec.name!r} has '
                                  f"{sorted(specs)})", target=self.target)
            cached = sorted(specs[key[3]]["inputs"])
            with self._lock:
                self._input_names[key] = cached
        return cached

    def predict(self, model: str, inputs: Any, *, version: int | None = None, label: str | None = None,
                signature: str | None = None, output_filter: Sequence[str] | None = None,
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """Predict: `inputs` is an array (for a single-input signature) or a dict name -> array;
        returns name -> numpy array (DT_STRING outputs as object arrays of bytes)."""
        request = self._predict_request(model, inputs, version, label, signature, output_filter, timeout)
        response = self._call(self._predict.Predict, request, "Predict", timeout)
        return {name: to_numpy(t, name) for name, t in response.outputs.items()}

    def predict_async(self, model: str, inputs: Any, *, version: int | None = None,
                      label: str | None = None, signature: str | None = None,
                      output_filter: Sequence[str] | None = None,
                      timeout: float | None = None) -> "concurrent.futures.Future[dict[str, np.ndarray]]":
        """Like predict() but returns at once with a concurrent.futures.Future (result() gives the
        dict, or raises ClientError). Many can be in flight on the one channel."""
        request = self._predict_request(model, inputs, version, label, signature, output_filter, timeout)
        if self._closed:
            raise ValueError(f"this Client for {self.target} is closed")
        t = self.timeout if timeout is None else check_timeout(timeout)
        future: concurrent.futures.Future = concurrent.futures.Future()
        call = self._predict.Predict.future(request, timeout=t)

        def done(call_future: Any) -> None:
            if future.cancelled():  # the caller gave up on it; nothing to deliver
                return
            try:
                response = call_future.result()
                outcome: Any = {n: to_numpy(v, n) for n, v in response.outputs.items()}
            except grpc.RpcError as exc:
                outcome = self._error(exc, "Predict", t)
            except Exception as exc:  # noqa: BLE001  (a decoding error must reach the caller)
                outcome = exc
            try:
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            except concurrent.futures.InvalidStateError:
                pass  # cancelled between the check and here

        # Cancelling the Future cancels the RPC, so abandoned requests free the server.
        future.add_done_callback(lambda f: call.cancel() if f.cancelled() else None)
        call.add_done_callback(done)
        return future

    def predict_many(self, model: str, batches: Iterable[Any], *, max_in_flight: int = 8,
                     **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """predict() for each batch with up to `max_in_flight` requests at once; results in order."""
        return run_many(self.predict_async, model, batches, max_in_flight, kwargs)

    # -- Classify / Regress / MultiInference ---------------------------------------------------
    def _input_proto(self, examples_or_images: Any, context: Mapping[str, Any] | None,
                     feature: str) -> input_pb2.Input:
        examples = [dict_to_example(e) for e in examples_from(examples_or_images, feature)]
        if context is None:
            return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))
        if not isinstance(context, Mapping) or not context:
            raise ValueError(f"context must be a non-empty dict feature -> values or None, got {context!r}")
        ctx = dict_to_example({k: _feature_values(v, f"context[{k!r}]") for k, v in context.items()})
        return input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
            examples=examples, context=ctx))

    def classify(self, model: str, examples_or_images: Any, *, version: int | None = None,
                 label: str | None = None, signature: str = "classify",
                 context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                 timeout: float | None = None) -> dict[str, np.ndarray]:
        """Classify: images [N,H,W,C] (sent as tf.Examples with float feature `feature`) or a list
        of dicts/tf.train.Example -> {"classes": str [N,K], "scores": float32 [N,K]}."""
        request = classification_pb2.ClassificationRequest(
            model_spec=self._spec(model, version, label, signature),
            input=self._input_proto(examples_or_images, context, feature))
        response = self._call(self._predict.Classify, request, "Classify", timeout)
        return classifications_to_arrays(
            [[(c.label, c.score) for c in r.classes] for r in response.result.classifications])

    def regress(self, model: str, examples_or_images: Any, *, version: int | None = None,
                label: str | None = None, signature: str = "regress",
                context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                timeout: float | None = None) -> np.ndarray:
        """Regress: same inputs as classify(); returns float32 [N] values."""
        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(model, version, label, signature),
            input=self._input_proto(examples_or_images, context, feature))
        response = self._call(self._predict.Regress, request, "Regress", timeout)
        return np.asarray([r.value for r in response.result.regressions], dtype=np.float32)

    def multi_inference(self, model: str, examples_or_images: Any,
                        tasks: Mapping[str, str] | None = None, *, version: int | None = None,
                        label: str | None = None, context: Mapping[str, Any] | None = None,
                        feature: str = EXAMPLE_FEATURE, timeout: float | None = None) -> dict[str, Any]:
        """MultiInference on one shared input; `tasks` maps signature -> "classify" | "regress"
        (default {"classify": "classify", "regress": "regress"}). Returns signature -> the
        classify() / regress() shaped result."""
        tasks = {"classify": "classify", "regress": "regress"} if tasks is None else tasks
        if not isinstance(tasks, Mapping) or not tasks or any(
                m not in _TASK_METHODS for m in tasks.values()):
            raise ValueError(f"tasks must map signature names to one of {sorted(_TASK_METHODS)}, got {tasks!r}")
        request = inference_pb2.MultiInferenceRequest(
            tasks=[inference_pb2.InferenceTask(model_spec=self._spec(model, version, label, sig),
                                               method_name=_TASK_METHODS[method])
                   for sig, method in tasks.items()],
            input=self._input_proto(examples_or_images, context, feature))
        response = self._call(self._predict.MultiInference, request, "MultiInference", timeout)
        out: dict[str, Any] = {}
        for result in response.results:
            sig = result.model_spec.signature_name
            if result.HasField("classification_result"):
                out[sig] = classifications_to_arrays(
                    [[(c.label, c.score) for c in r.classes]
                     for r in result.classification_result.classifications])
            else:
                out[sig] = np.asarray([r.value for r in result.regression_result.regressions], np.float32)
        return out

    # -- metadata / status / reload -----------------------------------------------------------
    def metadata(self, model: str, version: int | None = None, *, label: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        """GetModelMetadata(signature_def) as the same JSON-like dict the REST API answers:
        {"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {key: ...}}}}.
        `signature_specs()` turns it into input/output dtypes and shapes."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(model, version, label), metadata_field=["signature_def"])
        response = self._call(self._predict.GetModelMetadata, request, "GetModelMetadata", timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(sig_map):
            raise ClientError(grpc.StatusCode.INTERNAL, f"the server at {self.target} answered metadata "
                              "without a SignatureDefMap", target=self.target)
        spec = _to_dict(response.model_spec)
        spec.setdefault("signature_name", "")  # REST prints the empty default; answer the same dict
        return {"model_spec": spec,
                "metadata": {"signature_def": _to_dict(sig_map)}}

    def status(self, model: str, version: int | None = None, *, label: str | None = None,
               timeout: float | None = None) -> list[dict[str, Any]]:
        """GetModelStatus -> [{"version", "state", "error_code", "error_message"}] by version."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec(model, version, label))
        response = self._call(self._models.GetModelStatus, request, "GetModelStatus", timeout)
        return normalize_status(_to_dict(response))

    def reload(self, config_or_path: Any, *, timeout: float | None = None) -> None:
        """HandleReloadConfigRequest: a ModelServerConfig proto, its text format (str), or a path
        to a text config file (relative base_paths there are resolved against the file's folder,
        as the server does for --model_config_file). The new model list replaces the old one."""
        request = model_management_pb2.ReloadConfigRequest(config=load_server_config(config_or_path))
        self._call(self._models.HandleReloadConfigRequest, request, "HandleReloadConfigRequest",
                   timeout)

    def wait_until_available(self, model: str, timeout: float = 60.0, *,
                             version: int | None = None) -> list[dict[str, Any]]:
        """Poll status() until `version` (or any version) is AVAILABLE; returns the statuses.
        Raises ClientError DEADLINE_EXCEEDED after `timeout` s, FAILED_PRECONDITION if it failed."""
        model = check_model(model)
        timeout = check_timeout(timeout)
        version, _ = check_version_label(version, None)
        return wait_loop(lambda: self.status(model, timeout=min(self.timeout, timeout)), model, version,
                         timeout, self.target)


# ------------------------------------------------------------------------------------- helpers

def _send_dtype(array: np.ndarray) -> np.ndarray:
    # float64 from np.random/PIL math is a common accident; models take float32 (documented).
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
    return array


def _to_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def classifications_to_arrays(rows: list[list[tuple[str, float]]]) -> dict[str, np.ndarray]:
    k = max((len(r) for r in rows), default=0)
    classes = np.full((len(rows), k), "", dtype=object)
    scores = np.full((len(rows), k), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, (name, score) in enumerate(row):
            classes[i, j] = name
            scores[i, j] = score
    return {"classes": classes, "scores": scores}


def load_server_config(config_or_path: Any) -> model_server_config_pb2.ModelServerConfig:
    """ModelServerConfig from a proto, a text-format string or a path to a text file."""
    if isinstance(config_or_path, model_server_config_pb2.ModelServerConfig):
        config = config_or_path
    elif isinstance(config_or_path, os.PathLike) or (
            isinstance(config_or_path, str) and "{" not in config_or_path):
        path = Path(config_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"config_or_path: cannot read {str(path)!r}: {exc.strerror}") from None
        config = _parse_config(text, str(path))
        for model in config.model_config_list.config:
            if model.base_path and not os.path.isabs(model.base_path):
                model.base_path = str((path.resolve().parent / model.base_path).resolve())
    elif isinstance(config_or_path, str):
        config = _parse_config(config_or_path, "the config text")
    else:
        raise ValueError("config_or_path must be a ModelServerConfig, its text format or a path to a "
                         f"text config file, got {type(config_or_path).__name__}")
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("config_or_path must hold a model_config_list (the only kind TF Serving reloads)")
    return config


def _parse_config(text: str, where: str) -> model_server_config_pb2.ModelServerConfig:
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"config_or_path: {where} is not a text ModelServerConfig: {exc}") from None


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
        for f in futures:
            f.cancel()


__all__ = ["Client", "ClientError", "signature_specs", "load_server_config", "DEFAULT_TARGET"]
