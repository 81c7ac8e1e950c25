"""gRPC API: TF Serving's PredictionService and ModelService, translated onto `service.Service`.

This layer only translates: request proto -> ModelRef + a decoder of its TensorProtos or
tf.Examples -> Service call -> response proto, and ServingError -> gRPC status. What a request
may do, and in which order things are checked, is the Service's business.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import grpc
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_pb2, model_service_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2,
                                     prediction_service_pb2_grpc, regression_pb2, status_pb2)

from serving import tensors
from serving.errors import as_serving_error, invalid_argument
from serving.server.frontends import v2_grpc
from serving.server.service import ClassifyResult, ModelRef, Service, VersionStatus

SERVICE_NAMES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)


# ------------------------------------------------------------------ translation
def require_spec(request: Any) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def ref_of(spec: model_pb2.ModelSpec) -> ModelRef:
    choice = spec.WhichOneof("version_choice")
    return ModelRef(spec.name, spec.version.value if choice == "version" else None,
                    spec.version_label if choice == "version_label" else None, spec.signature_name)


def fill_spec(spec: model_pb2.ModelSpec, name: str, version: int, signature_name: str | None) -> None:
    spec.name = name
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name


def status_proto(statuses: list[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for s in statuses:
        entry = response.model_version_status.add(version=s.version, state=int(s.state))
        if s.error is None:
            entry.status.CopyFrom(status_pb2.StatusProto(error_code=0, error_message=""))
        else:
            entry.status.CopyFrom(status_pb2.StatusProto(error_code=s.error.code.value[0],
                                                         error_message=s.error.message))
    return response


def classification_result(result: ClassifyResult) -> classification_pb2.ClassificationResult:
    out = classification_pb2.ClassificationResult()
    for row in result.rows():
        classes = out.classifications.add().classes
        for label, score in row:
            classes.add(label=label, score=score)
    return out


def regression_result(values: Any) -> regression_pb2.RegressionResult:
    return regression_pb2.RegressionResult(
        regressions=[regression_pb2.Regression(value=v) for v in values.tolist()])


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The client's deadline as time.monotonic() seconds (None: it set none); the service stops
    the work at it."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e9 else time.monotonic() + remaining


# ------------------------------------------------------------------ services
class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    def _serve(self, api: str, context: grpc.ServicerContext, fn: Callable[[], Any], model_name: str) -> Any:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return fn()
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)
        finally:
            self.service.observe(model_name, api, "GRPC", error, start)

    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def run() -> predict_pb2.PredictResponse:
            result = self.service.predict(
                ref_of(require_spec(request)),
                lambda sig: {k: tensors.to_numpy(v, k) for k, v in request.inputs.items()},
                request.output_filter, deadline_of(context))
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, result.model, result.version, result.signature)
            for k, v in result.outputs.items():
                response.outputs[k].CopyFrom(tensors.from_numpy(v))
            return response
        return self._serve("predict", context, run, request.model_spec.name)

    def Classify(self, request: classification_pb2.ClassificationRequest,
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        def run() -> classification_pb2.ClassificationResponse:
            result = self.service.classify(ref_of(require_spec(request)),
                                           lambda: tensors.examples_from_input(request.input), deadline_of(context))
            response = classification_pb2.ClassificationResponse(
                result=classification_result(result))
            fill_spec(response.model_spec, result.model, result.version, result.signature)
            return response
        return self._serve("classify", context, run, request.model_spec.name)

    def Regress(self, request: regression_pb2.RegressionRequest,
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        def run() -> regression_pb2.RegressionResponse:
            result = self.service.regress(ref_of(require_spec(request)),
                                          lambda: tensors.examples_from_input(request.input), deadline_of(context))
            response = regression_pb2.RegressionResponse(result=regression_result(result.values))
            fill_spec(response.model_spec, result.model, result.version, result.signature)
            return response
        return self._serve("regress", context, run, request.model_spec.name)

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                       context: grpc.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        def run() -> inference_pb2.MultiInferenceResponse:
            tasks = [(ref_of(require_spec(t)), t.method_name) for t in request.tasks]
            results = self.service.multi_inference(tasks, lambda: tensors.examples_from_input(request.input),
                                                   deadline_of(context))
            response = inference_pb2.MultiInferenceResponse()
            for r in results:
                out = response.results.add()
                if isinstance(r, ClassifyResult):
                    out.classification_result.CopyFrom(classification_result(r))
                else:
                    out.regression_result.CopyFrom(regression_result(r.values))
                fill_spec(out.model_spec, r.model, r.version, r.signature)
            return response
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._serve("multi_inference", context, run, name)

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        def run() -> get_model_metadata_pb2.GetModelMetadataResponse:
            servable, signature_defs = self.service.metadata(ref_of(require_spec(request)),
                                                             list(request.metadata_field))
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            fill_spec(response.model_spec, servable.model_name, servable.version, None)
            response.metadata["signature_def"].Pack(signature_defs)
            return response
        return self._serve("", context, run, request.model_spec.name)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            return status_proto(self.service.status(ref_of(require_spec(request))))
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        try:
            self.service.reload_config(request.config, timeout=context.time_remaining())
            return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)


# ------------------------------------------------------------------ server assembly
# (add_..._to_server, servicer, service full names) -> None: the server's GrpcHost.add_servicer,
# which runs these sync servicers' methods in its worker threads once a request has arrived.
AddServicer = Callable[[Callable[[Any, Any], None], Any, Sequence[str]], None]


def add_services(service: Service, add: AddServicer) -> None:
    """Register TF Serving's PredictionService and ModelService over `service` through `add`."""
    add(prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server, PredictionService(service),
        SERVICE_NAMES[:1])
    add(model_service_pb2_grpc.add_ModelServiceServicer_to_server, ModelService(service), SERVICE_NAMES[1:])
    v2_grpc.add_services(service, add, deadline_of)  # the Open Inference Protocol on the same port
