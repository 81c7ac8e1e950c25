"""Open Inference Protocol ("KServe v2") client: `serving.client.v2_client.V2Client`, what
`zoo-query --protocol v2` asks through, over REST or gRPC (by the target's form):

    with V2Client("http://localhost:8501") as client:      # REST: /v2/models/NAME/...
        client.predict("digits", {"images": x})            # {"probabilities": ..., "class_ids": ...}
    V2Client("localhost:8500")                              # gRPC: inference.GRPCInferenceService

It works against any v2 server (Triton, KServe, MLServer, zoo-serve) for what the protocol has:
model metadata, readiness and inference. The wire formats are tritonclient's, not written here:
gRPC messages are its generated modules (`tritonclient.grpc.service_pb2`, the protocol's .proto),
datatypes and BYTES serialisation are `tritonclient.utils`'. Tensors go as binary data (REST:
Triton's binary tensor data extension; gRPC: raw_input_contents), so numbers are not printed and
parsed and BYTES (encoded images) travel as they are. Failures are `ClientError`s worded as the
TF Serving clients' (`Client`, `RestClient`).

What v2 cannot say, and so this client does not: versions that failed to load (`status` lists the
versions metadata gives, each AVAILABLE when the model is ready), Classify/Regress/MultiInference,
config reload. Labels go as `model_version` (zoo-serve reads a non-numeric version as a label;
Triton would refuse it). zoo-serve runs another signature when the request's `signature_name`
parameter names one; metadata of another signature is asked over REST only (the protocol's gRPC
ModelMetadataRequest has no parameters).
No TensorFlow is imported here.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Iterable, Sequence
from urllib.parse import quote, urlencode

import grpc
import numpy as np
from tritonclient.utils import (deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor,
                                triton_to_np_dtype)

from serving.client._common import (DEFAULT_TARGET, Workers, as_input_arrays, channel_credentials,
                                    check_model, check_output_filter, check_signature, check_target,
                                    check_timeout, check_version_label, rpc_error, run_many)
from serving.client._http import Http
from serving.errors import ClientError
from serving.json_body import dumps_json
from serving.names import DEFAULT_SIGNATURE, PREDICT_METHOD

HEADER_LENGTH = "Inference-Header-Content-Length"  # Triton's binary tensor data extension
SIGNATURE_PARAMETER = "signature_name"
# v2 datatype -> TF Serving's dtype name where it is not "DT_" + the v2 name (for signature_specs)
_TF_NAMES = {"FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "BYTES": "DT_STRING"}


def signature_specs(metadata: dict[str, Any], signature: str | None = None) -> dict[str, dict[str, Any]]:
    """v2 model metadata -> `_common.signature_specs`'s form for the one signature it describes
    (`signature`, default serving_default), with TF Serving's dtype names, so code written for
    TF Serving's metadata reads it: {signature: {"method", "inputs": {name: (dtype, shape)}, ...}}."""
    def tensors(items: Any) -> dict[str, tuple[str, list[int]]]:
        try:
            return {t["name"]: (_TF_NAMES.get(t["datatype"], "DT_" + t["datatype"]), [int(d) for d in t["shape"]])
                    for t in items}
        except (KeyError, TypeError, ValueError):
            raise ValueError("metadata must be V2Client.metadata()'s answer (inputs and outputs with name, "
                             f"datatype and shape), got {str(items)[:200]}") from None

    return {signature or DEFAULT_SIGNATURE: {"method": PREDICT_METHOD, "inputs": tensors(metadata.get("inputs")),
                                             "outputs": tensors(metadata.get("outputs"))}}


def _to_bytes(array: np.ndarray) -> tuple[str, bytes]:
    """(v2 datatype, the tensor's bytes as the protocol carries them)."""
    if array.dtype.kind in "OSU":
        if array.dtype.kind == "U":
            array = np.char.encode(array, "utf-8")
        return "BYTES", serialize_byte_tensor(array.astype(object)).item() if array.size else b""
    if array.dtype == np.float64:
        array = array.astype(np.float32)  # as the TF Serving clients do: models take float32
    return np_to_triton_dtype(array.dtype), np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def _from_bytes(name: str, datatype: str, shape: Sequence[int], raw: bytes, where: str) -> np.ndarray:
    try:
        if datatype == "BYTES":
            array = deserialize_bytes_tensor(raw)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(triton_to_np_dtype(datatype)).newbyteorder("<"))
        return array.astype(array.dtype.newbyteorder("="), copy=False).reshape([int(d) for d in shape])
    except (TypeError, ValueError) as exc:
        raise ClientError(grpc.StatusCode.INTERNAL, f"output {name!r} from {where}: {datatype} {list(shape)} "
                          f"does not fit its {len(raw)} bytes ({exc})", target=where) from None


def _from_json(name: str, datatype: str, shape: Sequence[int], data: Any, where: str) -> np.ndarray:
    if datatype == "BYTES":
        data = [v.encode("utf-8") if isinstance(v, str) else v for v in np.ravel(np.asarray(data, object))]
        return np.array(data, dtype=object).reshape(shape)
    try:
        return np.asarray(data, dtype=triton_to_np_dtype(datatype)).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise ClientError(grpc.StatusCode.INTERNAL, f"output {name!r} from {where}: not {datatype} "
                          f"{list(shape)} ({exc})", target=where) from None


class V2Client:
    """Open Inference Protocol client to `target`: a URL (http:// or https://, the REST port) or a
    gRPC target (host:port, the gRPC port). Safe to share between threads; a context manager."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 10.0, max_workers: int = 8,
                 tls: Any = None, verify: bool | str = True) -> None:
        self.rest = isinstance(target, str) and target.startswith(("http://", "https://"))
        self._transport: _Rest | _Grpc = (_Rest(target, timeout, verify) if self.rest
                                          else _Grpc(target, timeout, tls))
        self.target, self.timeout = self._transport.target, self._transport.timeout
        self._workers = Workers(max_workers, "zoo-v2-client")
        self._input_names: dict[tuple, list[str]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "V2Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"V2Client({self.target!r}, timeout={self.timeout})"

    def close(self) -> None:
        """Stop the worker threads and close the connections; later calls raise ValueError."""
        self._transport.closed = True
        self._workers.shutdown()
        self._transport.close()

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else check_timeout(timeout)

    # -- metadata / readiness ---------------------------------------------------------------
    def metadata(self, model: str, version: int | None = None, *, label: str | None = None,
                 signature: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The protocol's model metadata: {"name", "versions", "platform", "inputs", "outputs"}
        (each tensor {"name", "datatype", "shape"}, -1 for a free dimension)."""
        return self._transport.metadata(check_model(model), _model_version(version, label),
                                        check_signature(signature), self._timeout(timeout))

    def ready(self, model: str, version: int | None = None, *, label: str | None = None,
              timeout: float | None = None) -> bool:
        """Whether the model (or the version or label) can answer now."""
        return self._transport.ready(check_model(model), _model_version(version, label), self._timeout(timeout))

    def status(self, model: str, version: int | None = None, *, label: str | None = None,
               timeout: float | None = None) -> list[dict[str, Any]]:
        """In `Client.status`'s form: [{"version", "state", "error_code", "error_message"}]. The
        protocol has no version states: the versions are metadata's (the asked one, or the label
        itself in "version" since v2 does not resolve labels), each AVAILABLE if the model is
        ready, else NOT_READY. An unknown model or version is NOT_FOUND (from the metadata)."""
        meta = self.metadata(model, version, label=label, timeout=timeout)
        state = "AVAILABLE" if self.ready(model, version, label=label, timeout=timeout) else "NOT_READY"
        asked: list[Any] = ([version] if version is not None else [label] if label is not None
                            else sorted(int(v) for v in meta.get("versions", [])))
        return [{"version": v, "state": state, "error_code": "OK", "error_message": ""} for v in asked]

    # -- inference ----------------------------------------------------------------------------
    def predict(self, model: str, inputs: Any, *, version: int | None = None, label: str | None = None,
                signature: str | None = None, output_filter: Sequence[str] | None = None,
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """Infer: `inputs` is an array (for a single-input signature) or a dict name -> array;
        returns name -> numpy array (BYTES as object arrays of bytes), as `Client.predict`."""
        model = check_model(model)
        model_version = _model_version(version, label)
        signature = check_signature(signature)
        names = check_output_filter(output_filter)
        t = self._timeout(timeout)
        arrays = as_input_arrays(inputs)
        if not isinstance(arrays, dict):
            input_names = self._single_input_names(model, version, label, signature, t)
            if len(input_names) != 1:
                raise ValueError(f"signature {signature or DEFAULT_SIGNATURE!r} of {model!r} has inputs "
                                 f"{input_names}; pass inputs as a dict name -> array")
            arrays = {input_names[0]: arrays}
        tensors = [(name, list(a.shape), *_to_bytes(a)) for name, a in arrays.items()]
        params = {SIGNATURE_PARAMETER: signature} if signature else {}
        return self._transport.infer(model, model_version, tensors, names, params, t)

    def _single_input_names(self, model: str, version: Any, label: Any, signature: str | None,
                            timeout: float) -> list[str]:
        key = (model, version, label, signature)
        with self._lock:
            cached = self._input_names.get(key)
        if cached is None:
            meta = self.metadata(model, version, label=label, signature=signature, timeout=timeout)
            cached = sorted(t["name"] for t in meta.get("inputs", []))
            with self._lock:
                self._input_names[key] = cached
        return cached

    def predict_async(self, model: str, inputs: Any, **kwargs: Any) -> concurrent.futures.Future:
        """predict() on the client's worker threads; returns a concurrent.futures.Future."""
        as_input_arrays(inputs)  # fail here, not inside the future, on obviously bad inputs
        if self._transport.closed:
            raise ValueError(f"this V2Client for {self.target} is closed")
        return self._workers.submit(self.predict, model, inputs, **kwargs)

    def predict_many(self, model: str, batches: Iterable[Any], *, max_in_flight: int = 8,
                     **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """predict() for each batch, up to `max_in_flight` at once; results in order."""
        return run_many(self.predict_async, model, batches, max_in_flight, kwargs)


def _model_version(version: Any, label: Any) -> str:
    version, label = check_version_label(version, label)
    return str(version) if version is not None else label or ""


# A transport: metadata / ready / infer in the protocol's words, over one wire.
Tensor = tuple[str, list[int], str, bytes]  # name, shape, datatype, bytes


class _Rest:
    def __init__(self, base_url: str, timeout: float, verify: bool | str) -> None:
        self.http = Http(base_url, timeout, verify)
        self.target, self.timeout = self.http.base_url, self.http.timeout

    @property
    def closed(self) -> bool:
        return self.http.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.http.closed = value

    def close(self) -> None:
        self.http.close()

    def _url(self, model: str, model_version: str, suffix: str) -> str:
        url = f"{self.target}/v2/models/{quote(model, safe='')}"
        return url + (f"/versions/{quote(model_version, safe='')}" if model_version else "") + suffix

    def metadata(self, model: str, model_version: str, signature: str | None, timeout: float) -> dict[str, Any]:
        url = self._url(model, model_version, "?" + urlencode({SIGNATURE_PARAMETER: signature}) if signature else "")
        return self.http.json_object(self.http.send("GET", url, None, None, timeout, "V2Client").content, url,
                                     "v2 REST")

    def ready(self, model: str, model_version: str, timeout: float) -> bool:
        url = self._url(model, model_version, "/ready")
        # 400 is the protocol's "not ready" (with {"ready": false}) as well as a bad request's status
        response = self.http.send("GET", url, None, None, timeout, "V2Client", ok=(200, 400))
        if response.status_code == 200:
            return True
        payload = self.http.json_object(response.content, url, "v2 REST", response.status_code)
        if "error" in payload:
            raise self.http.error(response, url, payload)
        return False

    def infer(self, model: str, model_version: str, tensors: list[Tensor], outputs: list[str],
              params: dict[str, Any], timeout: float) -> dict[str, np.ndarray]:
        url = self._url(model, model_version, "/infer")
        head: dict[str, Any] = {
            "inputs": [{"name": n, "shape": s, "datatype": d, "parameters": {"binary_data_size": len(b)}}
                       for n, s, d, b in tensors],
            "parameters": {**params, "binary_data_output": True}}
        if outputs:
            head["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
        header = dumps_json(head)
        response = self.http.send("POST", url, b"".join([header, *(b for *_, b in tensors)]),
                                  {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
                                  timeout, "V2Client")
        return self._outputs(response, url)

    def _outputs(self, response: Any, url: str) -> dict[str, np.ndarray]:
        raw = response.content
        size = response.headers.get(HEADER_LENGTH)
        n = int(size) if size and size.isdigit() and int(size) <= len(raw) else len(raw)
        answer = self.http.json_object(raw[:n], url, "v2 REST")
        out, offset = {}, n
        try:
            for o in answer["outputs"]:
                size = (o.get("parameters") or {}).get("binary_data_size")
                if size is None:
                    out[o["name"]] = _from_json(o["name"], o["datatype"], o["shape"], o["data"], self.target)
                else:
                    out[o["name"]] = _from_bytes(o["name"], o["datatype"], o["shape"], raw[offset:offset + size],
                                                 self.target)
                    offset += size
        except (KeyError, TypeError) as exc:
            raise ClientError(grpc.StatusCode.INTERNAL, f"unexpected infer answer from {url}: no {exc} in "
                              f"{str(answer)[:200]}", target=self.target) from None
        return out


class _Grpc:
    def __init__(self, target: str, timeout: float, tls: Any) -> None:
        # Imported here: a REST client needs none of the protocol's gRPC modules.
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.pb = service_pb2
        self.target, self.timeout = check_target(target), check_timeout(timeout)
        creds = channel_credentials(tls)
        self.channel = grpc.secure_channel(target, creds) if creds is not None else grpc.insecure_channel(target)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.closed = False

    def close(self) -> None:
        self.channel.close()

    def _call(self, rpc: str, request: Any, timeout: float) -> Any:
        if self.closed:
            raise ValueError(f"this V2Client for {self.target} is closed")
        try:
            return getattr(self.stub, rpc)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.target, rpc, timeout) from None

    def metadata(self, model: str, model_version: str, signature: str | None, timeout: float) -> dict[str, Any]:
        if signature not in (None, DEFAULT_SIGNATURE):
            raise ValueError(f"the v2 gRPC ModelMetadata describes the default signature only (its request has "
                             f"no parameters); ask the REST port for signature {signature!r}")
        m = self._call("ModelMetadata", self.pb.ModelMetadataRequest(name=model, version=model_version), timeout)

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]
        return {"name": m.name, "versions": list(m.versions), "platform": m.platform,
                "inputs": tensors(m.inputs), "outputs": tensors(m.outputs)}

    def ready(self, model: str, model_version: str, timeout: float) -> bool:
        return self._call("ModelReady", self.pb.ModelReadyRequest(name=model, version=model_version), timeout).ready

    def infer(self, model: str, model_version: str, tensors: list[Tensor], outputs: list[str],
              params: dict[str, Any], timeout: float) -> dict[str, np.ndarray]:
        request = self.pb.ModelInferRequest(model_name=model, model_version=model_version)
        for key, value in params.items():
            request.parameters[key].string_param = value
        for name, shape, datatype, raw in tensors:
            request.inputs.add(name=name, datatype=datatype, shape=shape)
            request.raw_input_contents.append(raw)
        for name in outputs:
            request.outputs.add(name=name)
        response = self._call("ModelInfer", request, timeout)
        if len(response.raw_output_contents) != len(response.outputs):
            raise ClientError(grpc.StatusCode.INTERNAL, f"ModelInfer from {self.target} answered "
                              f"{len(response.outputs)} outputs with {len(response.raw_output_contents)} "
                              "raw_output_contents; this client reads raw contents only", target=self.target)
        return {o.name: _from_bytes(o.name, o.datatype, o.shape, raw, self.target)
                for o, raw in zip(response.outputs, response.raw_output_contents)}


__all__ = ["V2Client", "signature_specs"]
