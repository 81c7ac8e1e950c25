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
from typing import Any, Callable, Mapping, Sequence

import grpc
import numpy as np

from serving import protos  # noqa: F401  (before the protos: they must not load all of TensorFlow)

from google.protobuf import json_format, text_format  # noqa: E402
from tensorflow.core.example import example_pb2, feature_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2, input_pb2,
    model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
    regression_pb2)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from serving.client._common import (  # noqa: E402  (signature_specs is public here too)
    DEFAULT_TARGET, EXAMPLE_FEATURE, MISSING, TASK_METHODS, as_input_arrays, channel_credentials, check_context,
    check_model, check_output_filter, check_signature, check_tasks, check_timeout, check_version_label,
    classifications_to_arrays, check_target, default_model, examples_from, model_and_data, normalize_status,
    rpc_error, run_many,
    signature_specs, wait_loop)
from serving.errors import ClientError  # noqa: E402
from serving.exporter.model_server_config import read_model_server_config  # noqa: E402
from serving.tensors import from_numpy_content, to_numpy  # noqa: E402

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 8x8 digits need little; 224x224 batches need more


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

# ---------------------------------------------------------------------------------- the client

class Client:
    """TF Serving gRPC client: one channel, safe to share between threads; use as a context manager.

    Only public `tensorflow_serving.apis` protos are used, so the same code talks to the real
    `tensorflow_model_server`. Numpy in (inputs are sent as `tensor_content`, one copy), numpy out.
    """

    def __init__(self, target: str = DEFAULT_TARGET, model_name: str | None = None, *,
                 timeout: float = 10.0, tls: Any = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        """`model_name`: the model a call that names none goes to (`client.predict(images)`)."""
        self.target = check_target(target)
        self.model_name = None if model_name is None else check_model(model_name)
        self.timeout = check_timeout(timeout)
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) \
                or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive int, got {max_message_bytes!r}")
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        creds = channel_credentials(tls)
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
        model = "" if self.model_name is None else f", model_name={self.model_name!r}"
        return f"Client({self.target!r}{model}, timeout={self.timeout})"

    def _error(self, exc: grpc.RpcError, rpc: str, timeout: float) -> ClientError:
        return rpc_error(exc, self.target, rpc, timeout)

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

    def predict(self, model: Any = MISSING, inputs: Any = MISSING, *, version: int | None = None,
                label: str | None = None,
                signature: str | None = None, output_filter: Sequence[str] | None = None,
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """Predict: `inputs` is an array (for a single-input signature) or a dict name -> array;
        returns name -> numpy array (DT_STRING outputs as object arrays of bytes). `model` may be
        left out when the client has a default model: `client.predict(images)`."""
        model, inputs = model_and_data(self.model_name, model, inputs, "inputs")
        request = self._predict_request(model, inputs, version, label, signature, output_filter, timeout)
        response = self._call(self._predict.Predict, request, "Predict", timeout)
        return {name: to_numpy(t, name) for name, t in response.outputs.items()}

    def predict_async(self, model: Any = MISSING, inputs: Any = MISSING, *, version: int | None = None,
                      label: str | None = None, signature: str | None = None,
                      output_filter: Sequence[str] | None = None,
                      timeout: float | None = None) -> "concurrent.futures.Future[dict[str, np.ndarray]]":
        """Like predict() but returns at once with a concurrent.futures.Future (result() gives the
        dict, or raises ClientError). Many can be in flight on the one channel."""
        model, inputs = model_and_data(self.model_name, model, inputs, "inputs")
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

    def predict_many(self, model: Any = MISSING, batches: Any = MISSING, *, max_in_flight: int = 8,
                     **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """predict() for each batch with up to `max_in_flight` requests at once; results in order."""
        model, batches = model_and_data(self.model_name, model, batches, "batches")
        return run_many(self.predict_async, model, batches, max_in_flight, kwargs)

    # -- Classify / Regress / MultiInference ---------------------------------------------------
    def _input_proto(self, examples_or_images: Any, context: Mapping[str, Any] | None,
                     feature: str) -> input_pb2.Input:
        examples = [dict_to_example(e) for e in examples_from(examples_or_images, feature)]
        ctx = check_context(context)
        if ctx is None:
            return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))
        return input_pb2.Input(example_list_with_context=input_pb2.ExampleListWithContext(
            examples=examples, context=dict_to_example(ctx)))

    def classify(self, model: Any = MISSING, examples_or_images: Any = MISSING, *, version: int | None = None,
                 label: str | None = None, signature: str = "classify",
                 context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                 timeout: float | None = None) -> dict[str, np.ndarray]:
        """Classify: images [N,H,W,C] (sent as tf.Examples with float feature `feature`) or a list
        of dicts/tf.train.Example -> {"classes": str [N,K], "scores": float32 [N,K]}."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        request = classification_pb2.ClassificationRequest(
            model_spec=self._spec(model, version, label, signature),
            input=self._input_proto(examples_or_images, context, feature))
        response = self._call(self._predict.Classify, request, "Classify", timeout)
        return classifications_to_arrays(
            [[(c.label, c.score) for c in r.classes] for r in response.result.classifications])

    def regress(self, model: Any = MISSING, examples_or_images: Any = MISSING, *, version: int | None = None,
                label: str | None = None, signature: str = "regress",
                context: Mapping[str, Any] | None = None, feature: str = EXAMPLE_FEATURE,
                timeout: float | None = None) -> np.ndarray:
        """Regress: same inputs as classify(); returns float32 [N] values."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        request = regression_pb2.RegressionRequest(
            model_spec=self._spec(model, version, label, signature),
            input=self._input_proto(examples_or_images, context, feature))
        response = self._call(self._predict.Regress, request, "Regress", timeout)
        return np.asarray([r.value for r in response.result.regressions], dtype=np.float32)

    def multi_inference(self, model: Any = MISSING, examples_or_images: Any = MISSING,
                        tasks: Mapping[str, str] | None = None, *, version: int | None = None,
                        label: str | None = None, context: Mapping[str, Any] | None = None,
                        feature: str = EXAMPLE_FEATURE, timeout: float | None = None) -> dict[str, Any]:
        """MultiInference on one shared input; `tasks` maps signature -> "classify" | "regress"
        (default {"classify": "classify", "regress": "regress"}). Returns signature -> the
        classify() / regress() shaped result."""
        model, examples_or_images = model_and_data(self.model_name, model, examples_or_images,
                                                   "examples_or_images")
        tasks = check_tasks(tasks)
        request = inference_pb2.MultiInferenceRequest(
            tasks=[inference_pb2.InferenceTask(model_spec=self._spec(model, version, label, sig),
                                               method_name=TASK_METHODS[method])
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
    def metadata(self, model: str | None = None, version: int | None = None, *, label: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
        """GetModelMetadata(signature_def) as the same JSON-like dict the REST API answers:
        {"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {key: ...}}}}.
        `signature_specs()` turns it into input/output dtypes and shapes."""
        model = default_model(self.model_name, model)
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

    def status(self, model: str | None = None, version: int | None = None, *, label: str | None = None,
               timeout: float | None = None) -> list[dict[str, Any]]:
        """GetModelStatus -> [{"version", "state", "error_code", "error_message"}] by version."""
        model = default_model(self.model_name, model)
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

    def wait_until_available(self, model: str | None = None, timeout: float = 60.0, *,
                             version: int | None = None) -> list[dict[str, Any]]:
        """Poll status() until `version` (or any version) is AVAILABLE; returns the statuses.
        Raises ClientError DEADLINE_EXCEEDED after `timeout` s, FAILED_PRECONDITION if it failed."""
        model = default_model(self.model_name, model)
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


def load_server_config(config_or_path: Any) -> model_server_config_pb2.ModelServerConfig:
    """ModelServerConfig from a proto, a text-format string or a path to a text file."""
    if isinstance(config_or_path, model_server_config_pb2.ModelServerConfig):
        config = config_or_path
    elif isinstance(config_or_path, os.PathLike) or (
            isinstance(config_or_path, str) and "{" not in config_or_path):
        # serving.exporter.model_server_config reads config files for the server too: one parser, the same validation
        # and the same resolution of relative base paths.
        config = read_model_server_config(config_or_path)
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


__all__ = ["Client", "ClientError", "signature_specs", "load_server_config", "DEFAULT_TARGET"]
