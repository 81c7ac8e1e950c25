"""The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`) on the one Service.

The protocol's messages are Triton's generated modules (`tritonclient.grpc.service_pb2`, BSD-3,
from Triton's grpc_service.proto, a superset of KServe's grpc_predict_v2.proto with the same
package, names and field numbers): one definition of the `inference` package per process, so a
tritonclient in the same process as the server does not clash with a second copy. Methods beyond
KServe's six (repository, statistics, shared memory, ...) stay UNIMPLEMENTED.

Inputs come as `raw_input_contents` (what tritonclient sends) or typed `InferTensorContents`;
outputs are answered in the form the request used, as KServe's own server does (raw when any
output is FP16, which has no typed field).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serving import tensors
from serving.errors import as_serving_error, invalid_argument
from serving.server.frontends import _v2
from serving.server.service import Service

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# v2 datatype -> the InferTensorContents field that holds it (FP16 has none: raw only)
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _parameters(params: Any) -> dict[str, Any]:
    return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in params.items()
            if v.WhichOneof("parameter_choice")}


def _inputs(request: service_pb2.ModelInferRequest) -> list[_v2.InputTensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid_argument(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
    out = []
    for i, t in enumerate(request.inputs):
        shape = _v2.check_shape(t.name, list(t.shape))
        if raw:
            value: Any = raw[i]
        else:
            field = _CONTENTS.get(t.datatype)
            if field is None:
                raise invalid_argument(f"input '{t.name}': {str(t.datatype)[:40]} has no typed contents; "
                                       "send it in raw_input_contents")
            values = getattr(t.contents, field)
            if t.datatype == "BYTES":
                value = np.empty(len(values), dtype=object)
                value[:] = list(values)
            else:  # the signature's dtype is applied by the shared decoder once it is checked
                try:
                    value = np.asarray(values, dtype=tensors.numpy_dtype(_v2.DATATYPES[t.datatype]))
                except (OverflowError, ValueError):
                    raise invalid_argument(f"input '{t.name}': a value is out of range for {t.datatype}") from None
        out.append(_v2.InputTensor(t.name, t.datatype, shape, value))
    return out


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The six methods of KServe's GRPCInferenceService; each translates and calls the Service."""

    def __init__(self, service: Service, deadline_of: Callable[[grpc.ServicerContext], float | None]) -> None:
        self.service = service
        self.deadline_of = deadline_of  # the TF Serving front end's, so both read deadlines alike

    @staticmethod
    def _call(context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)

    def ServerLive(self, request: service_pb2.ServerLiveRequest,
                   context: grpc.ServicerContext) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: service_pb2.ServerReadyRequest,
                    context: grpc.ServicerContext) -> service_pb2.ServerReadyResponse:
        return self._call(context, lambda: service_pb2.ServerReadyResponse(ready=self.service.ready()))

    def ModelReady(self, request: service_pb2.ModelReadyRequest,
                   context: grpc.ServicerContext) -> service_pb2.ModelReadyResponse:
        # an unknown model is "not ready", as Triton answers, rather than an error
        def run() -> service_pb2.ModelReadyResponse:
            try:
                return service_pb2.ModelReadyResponse(ready=self.service.ready(
                    _v2.ref_of(request.name, request.version, {})))
            except Exception as exc:
                if as_serving_error(exc).code is grpc.StatusCode.NOT_FOUND:
                    return service_pb2.ModelReadyResponse(ready=False)
                raise
        return self._call(context, run)

    def ServerMetadata(self, request: service_pb2.ServerMetadataRequest,
                       context: grpc.ServicerContext) -> service_pb2.ServerMetadataResponse:
        return service_pb2.ServerMetadataResponse(**_v2.server_metadata())

    def ModelMetadata(self, request: service_pb2.ModelMetadataRequest,
                      context: grpc.ServicerContext) -> service_pb2.ModelMetadataResponse:
        def run() -> service_pb2.ModelMetadataResponse:
            meta = _v2.model_metadata(self.service, _v2.ref_of(request.name, request.version, {}))
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            return service_pb2.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])
        return self._call(context, run)

    def ModelInfer(self, request: service_pb2.ModelInferRequest,
                   context: grpc.ServicerContext) -> service_pb2.ModelInferResponse:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return self._infer(request, context)
        except Exception as exc:
            error = as_serving_error(exc)
            context.abort(error.code, error.message)
        finally:
            self.service.observe(request.model_name, _v2.API, "GRPC", error, start)

    def _infer(self, request: service_pb2.ModelInferRequest,
               context: grpc.ServicerContext) -> service_pb2.ModelInferResponse:
        ref = _v2.ref_of(request.model_name, request.model_version, _parameters(request.parameters))
        result = _v2.infer(self.service, ref, lambda: _inputs(request), [o.name for o in request.outputs],
                           self.deadline_of(context))
        response = service_pb2.ModelInferResponse(model_name=result.model, model_version=str(result.version),
                                                  id=request.id)
        datatypes = {k: _v2.output_datatype(v) for k, v in result.outputs.items()}
        raw = bool(request.raw_input_contents) or "FP16" in datatypes.values()
        for name, array in result.outputs.items():
            out = response.outputs.add(name=name, datatype=datatypes[name], shape=array.shape)
            if raw:
                response.raw_output_contents.append(_v2.to_raw(array))
            elif datatypes[name] == "BYTES":
                out.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode()
                                                   for v in array.ravel().tolist())
            else:
                getattr(out.contents, _CONTENTS[datatypes[name]]).extend(array.ravel().tolist())
        return response


def add_services(service: Service, add: Callable[..., None],
                 deadline_of: Callable[[grpc.ServicerContext], float | None]) -> None:
    """Serve the v2 protocol beside TF Serving's services through `add` (the server's
    GrpcHost.add_servicer, as tfserving_grpc.add_services is given it). `deadline_of` is passed in
    (not imported) because the TF Serving front end imports this one."""
    add(service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, InferenceService(service, deadline_of),
        [SERVICE_NAME])


__all__ = ["InferenceService", "add_services", "SERVICE_NAME"]
