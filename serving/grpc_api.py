"""gRPC API: TF Serving's PredictionService and ModelService over the model manager.

This layer only translates: request proto -> numpy / serialized examples -> Servable call ->
response proto, and ServingError -> gRPC status. Status/metadata response builders are shared
with the REST layer, which renders the same protos as JSON.
"""
from __future__ import annotations

import time
from concurrent import futures
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_pb2, model_service_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2,
                                     prediction_service_pb2_grpc, regression_pb2, status_pb2)

from . import tensors
from .errors import ServingError, as_serving_error, invalid_argument
from . import layout
from .repository import ModelManager
from .runtime import CLASSIFY_METHOD, REGRESS_METHOD, Servable

SERVICE_NAMES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)


# ------------------------------------------------------------------ shared request helpers
def require_spec(request: Any) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def resolve(manager: ModelManager, spec: model_pb2.ModelSpec) -> Servable:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.resolve(spec.name, version=spec.version.value)
    if choice == "version_label":
        return manager.resolve(spec.name, label=spec.version_label)
    return manager.resolve(spec.name)


def fill_spec(spec: model_pb2.ModelSpec, name: str, version: int, signature_name: str | None) -> None:
    spec.name = name
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name


def model_status_response(manager: ModelManager, name: str, version: int | None = None,
                          label: str | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    if label:
        version = manager.resolve(name, label=label).version
    response = get_model_status_pb2.GetModelStatusResponse()
    for s in manager.status(name, version):
        entry = response.model_version_status.add(version=s.version, state=int(s.state))
        if s.error is None:
            entry.status.CopyFrom(status_pb2.StatusProto(error_code=0, error_message=""))
        else:
            entry.status.CopyFrom(status_pb2.StatusProto(error_code=s.error.code.value[0],
                                                         error_message=s.error.message))
    return response


def metadata_response(manager: ModelManager, spec: model_pb2.ModelSpec,
                      fields: list[str]) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for f in fields:
        if f != "signature_def":
            raise invalid_argument(f"Metadata field {f} is not supported (supported: signature_def)")
    servable = resolve(manager, spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_spec(response.model_spec, servable.model_name, servable.version, None)
    response.metadata["signature_def"].Pack(servable.signature_def_map())
    return response


def classification_result(classes: Any, scores: Any) -> classification_pb2.ClassificationResult:
    result = classification_pb2.ClassificationResult()
    ref = classes if classes is not None else scores
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    for i in range(ref.shape[0]):
        c = result.classifications.add()
        for j in range(ref.shape[1]):
            item = c.classes.add()
            if labels is not None:
                item.label = labels[i][j].decode("utf-8", "replace") if isinstance(labels[i][j], bytes) \
                    else str(labels[i][j])
            if values is not None:
                item.score = values[i][j]
    return result


def regression_result(values: Any) -> regression_pb2.RegressionResult:
    return regression_pb2.RegressionResult(
        regressions=[regression_pb2.Regression(value=v) for v in values.tolist()])


def deadline_of(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e9 else time.monotonic() + remaining


# ------------------------------------------------------------------ services
class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: Any = None) -> None:
        self.manager = manager
        self.metrics = metrics

    def _serve(self, api: str, request: Any, context: grpc.ServicerContext, fn: Callable[[], Any],
               model_name: str) -> Any:
        start = time.perf_counter()
        status = "OK"
        try:
            return fn()
        except Exception as exc:
            error = as_serving_error(exc)
            status = error.code.name
            context.abort(error.code, error.message)
        finally:
            if self.metrics is not None and api:
                self.metrics.observe_request(model_name, api, "GRPC", status,
                                             (time.perf_counter() - start) * 1e6)

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def run() -> predict_pb2.PredictResponse:
            spec = require_spec(request)
            servable = resolve(self.manager, spec)
            with servable.use():
                inputs = {k: tensors.to_numpy(v, k) for k, v in request.inputs.items()}
                sig, outputs = servable.predict(spec.signature_name, inputs, request.output_filter,
                                                deadline_of(context))
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, servable.model_name, servable.version, sig)
            for k, v in outputs.items():
                response.outputs[k].CopyFrom(tensors.from_numpy(v))
            return response
        return self._serve("predict", request, context, run, request.model_spec.name)

    def Classify(self, request: classification_pb2.ClassificationRequest,
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        def run() -> classification_pb2.ClassificationResponse:
            spec = require_spec(request)
            servable = resolve(self.manager, spec)
            with servable.use():
                examples = tensors.examples_from_input(request.input)
                sig, classes, scores = servable.classify(spec.signature_name, examples, deadline_of(context))
            response = classification_pb2.ClassificationResponse(result=classification_result(classes, scores))
            fill_spec(response.model_spec, servable.model_name, servable.version, sig)
            return response
        return self._serve("classify", request, context, run, request.model_spec.name)

    def Regress(self, request: regression_pb2.RegressionRequest,
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        def run() -> regression_pb2.RegressionResponse:
            spec = require_spec(request)
            servable = resolve(self.manager, spec)
            with servable.use():
                examples = tensors.examples_from_input(request.input)
                sig, values = servable.regress(spec.signature_name, examples, deadline_of(context))
            response = regression_pb2.RegressionResponse(result=regression_result(values))
            fill_spec(response.model_spec, servable.model_name, servable.version, sig)
            return response
        return self._serve("regress", request, context, run, request.model_spec.name)

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                       context: grpc.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        def run() -> inference_pb2.MultiInferenceResponse:
            if not request.tasks:
                raise invalid_argument("Tasks is empty")
            for task in request.tasks:
                require_spec(task)
            if len({t.model_spec.name for t in request.tasks}) != 1:
                raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name")
            signatures = [t.model_spec.signature_name or "serving_default" for t in request.tasks]
            for s in signatures:
                if signatures.count(s) > 1:
                    raise invalid_argument(f"Duplicate evaluation of signature: {s}")
            servable = resolve(self.manager, request.tasks[0].model_spec)
            response = inference_pb2.MultiInferenceResponse()
            deadline = deadline_of(context)
            with servable.use():
                examples = tensors.examples_from_input(request.input)
                for task in request.tasks:
                    result = response.results.add()
                    if task.method_name == CLASSIFY_METHOD:
                        sig, classes, scores = servable.classify(task.model_spec.signature_name, examples, deadline)
                        result.classification_result.CopyFrom(classification_result(classes, scores))
                    elif task.method_name == REGRESS_METHOD:
                        sig, values = servable.regress(task.model_spec.signature_name, examples, deadline)
                        result.regression_result.CopyFrom(regression_result(values))
                    else:
                        raise invalid_argument(f"Unsupported signature method_name: {task.method_name} "
                                               f"(valid: {CLASSIFY_METHOD}, {REGRESS_METHOD})")
                    fill_spec(result.model_spec, servable.model_name, servable.version, sig)
            return response
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._serve("multi_inference", request, context, run, name)

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return self._serve("", request, context, lambda: metadata_response(
            self.manager, require_spec(request), list(request.metadata_field)), request.model_spec.name)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, config_dir: str = ".") -> None:
        self.manager = manager
        self.config_dir = config_dir

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            spec = require_spec(request)
            choice = spec.WhichOneof("version_choice")
            return model_status_response(self.manager, spec.name,
                                         spec.version.value if choice == "version" else None,
                                         spec.version_label if choice == "version_label" else None)
        except ServingError as exc:
            context.abort(exc.code, exc.message)

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument("ReloadConfigRequest: only model_config_list is supported")
            try:
                configs = layout.configs_from_proto(request.config, self.config_dir)
            except ValueError as exc:
                raise invalid_argument(str(exc)) from None
            self.manager.apply_config(configs, timeout=context.time_remaining())
            return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)


# ------------------------------------------------------------------ server assembly
def build_grpc_server(manager: ModelManager, metrics: Any, *, host: str, port: int, max_threads: int,
                      max_request_bytes: int, credentials: grpc.ServerCredentials | None = None,
                      config_dir: str = ".") -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started-not-yet sync gRPC server with every service; returns (server, bound port, health)."""
    if max_threads < 1:
        raise ValueError(f"grpc_max_threads must be >= 1, got {max_threads}")
    options = [("grpc.max_receive_message_length", max_request_bytes),
               ("grpc.max_send_message_length", -1),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, config_dir), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials is not None else \
        server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {address}")
    return server, bound, health_servicer


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, state)
