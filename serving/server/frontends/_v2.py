"""The Open Inference Protocol ("KServe v2") in words both its front ends share.

`v2_rest` and `v2_grpc` read their wire format into `InputTensor`s and a `ModelRef`, call
`infer`/`model_metadata`/`server_metadata` here, and write the answer back in their wire format.
What is decided here, once for both: v2 datatypes <-> the signature's TF dtypes, a tensor's
`shape` against the values it carries (JSON data, raw little-endian bytes, or typed gRPC
contents already made an array), how a `model_version` names a version or a label, and what the
metadata holds. What a request may do (versions, labels, batching, limits, deadlines) stays the
Service's business.
"""
from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tensorflow.core.framework import types_pb2

import cnnzoo
from serving import tensors
from serving.errors import invalid_argument
from serving.names import VERSION_MAX
from serving.server.service import InputDecoder, ModelRef, PredictResult, Service, Signature, check_input_names

SERVER_NAME = "zoo-serve"
# What this server offers beyond the core protocol (Triton's names, which clients check).
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "tensorflow_savedmodel"  # Triton's name for a SavedModel's platform
API = "v2_infer"  # the metrics' API label: the protocol, beside TF Serving's "predict"
SIGNATURE_PARAMETER = "signature_name"

# v2 datatype -> TF DataType of the signature (the protocol's table; BF16 has no numpy dtype here)
DATATYPES: dict[str, int] = {
    "BOOL": types_pb2.DT_BOOL,
    "UINT8": types_pb2.DT_UINT8, "UINT16": types_pb2.DT_UINT16,
    "UINT32": types_pb2.DT_UINT32, "UINT64": types_pb2.DT_UINT64,
    "INT8": types_pb2.DT_INT8, "INT16": types_pb2.DT_INT16,
    "INT32": types_pb2.DT_INT32, "INT64": types_pb2.DT_INT64,
    "FP16": types_pb2.DT_HALF, "FP32": types_pb2.DT_FLOAT, "FP64": types_pb2.DT_DOUBLE,
    "BYTES": types_pb2.DT_STRING,
}
_DATATYPE_OF: dict[int, str] = {dt: name for name, dt in DATATYPES.items()}
_DATATYPE_OF[types_pb2.DT_BFLOAT16] = "BF16"  # described in metadata; not served (no numpy dtype)


def datatype_of(dtype: int) -> str:
    """The v2 datatype of a TF dtype ("FP32" for DT_FLOAT); TF's name without DT_ when v2 has none."""
    return _DATATYPE_OF.get(dtype) or tensors.dtype_name(dtype).removeprefix("DT_")


@dataclasses.dataclass
class InputTensor:
    """One input as a front end read it: `value` is JSON data (nested or flat lists), raw bytes
    (binary data / raw_input_contents) or an array (typed gRPC contents)."""

    name: str
    datatype: str
    shape: list[int]
    value: Any


# ------------------------------------------------------------------ requests
def ref_of(model_name: str, model_version: str, parameters: Mapping[str, Any]) -> ModelRef:
    """A request's ModelRef: "" is the latest version, ASCII digits a version, any other text a
    version label (v2 has no labels of its own; this keeps TF Serving's labels reachable)."""
    signature = parameters.get(SIGNATURE_PARAMETER, "")
    if not isinstance(signature, str):
        raise invalid_argument(f"parameter '{SIGNATURE_PARAMETER}' must be a string")
    if not model_version:
        return ModelRef(model_name, None, None, signature)
    if model_version.isascii() and model_version.isdigit():
        if int(model_version) > VERSION_MAX:
            raise invalid_argument(f"Failed to convert version: {model_version[:40]} to numeric.")
        return ModelRef(model_name, int(model_version), None, signature)
    return ModelRef(model_name, None, model_version, signature)


def check_shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                      and d >= 0 for d in shape):
        raise invalid_argument(f"input '{name}': 'shape' must be a list of non-negative integers, got "
                               f"{str(shape)[:80]}")
    if len(shape) > tensors.MAX_RANK:
        raise invalid_argument(f"input '{name}': rank {len(shape)}; at most {tensors.MAX_RANK} dimensions")
    if math.prod(max(d, 1) for d in shape) > tensors.MAX_ELEMENTS:
        raise invalid_argument(f"input '{name}': shape {list(shape)} has more than {tensors.MAX_ELEMENTS} elements")
    return list(shape)


def _from_raw(t: InputTensor, dtype: int, count: int) -> np.ndarray:
    raw = t.value
    if dtype == types_pb2.DT_STRING:  # each element: a 4-byte little-endian length, then its bytes
        out, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise invalid_argument(f"input '{t.name}': BYTES data ends inside an element's 4-byte length")
            (n,) = struct.unpack_from("<I", raw, offset)
            if offset + 4 + n > len(raw):
                raise invalid_argument(f"input '{t.name}': BYTES element {len(out)} claims {n} bytes; "
                                       f"{len(raw) - offset - 4} are left")
            out.append(bytes(raw[offset + 4:offset + 4 + n]))
            offset += 4 + n
        if len(out) != count:
            raise invalid_argument(f"input '{t.name}': shape {t.shape} needs {count} BYTES elements, "
                                   f"the data holds {len(out)}")
        array = np.empty(count, dtype=object)
        array[:] = out
        return array.reshape(t.shape)
    np_dtype = tensors.numpy_dtype(dtype).newbyteorder("<")
    if len(raw) != count * np_dtype.itemsize:
        raise invalid_argument(f"input '{t.name}': shape {t.shape} needs {count * np_dtype.itemsize} bytes of "
                               f"{t.datatype}, the data holds {len(raw)}")
    return np.frombuffer(raw, dtype=np_dtype).astype(np_dtype.newbyteorder("="), copy=False).reshape(t.shape)


def to_array(t: InputTensor, dtype: int) -> np.ndarray:
    """`t` as an array of `dtype` (the signature's, which its datatype was checked to be)."""
    count = math.prod(t.shape)
    if isinstance(t.value, (bytes, bytearray, memoryview)):
        return _from_raw(t, dtype, count)
    if isinstance(t.value, np.ndarray):
        array = t.value
    else:
        array = tensors.json_to_numpy(t.value, dtype, t.name)
    if array.size != count:
        raise invalid_argument(f"input '{t.name}': shape {t.shape} needs {count} values, the data holds "
                               f"{array.size}")
    return array.reshape(t.shape)


def decoder(read_inputs: Callable[[], Sequence[InputTensor]]) -> InputDecoder:
    """The Service's decoder: reads the request's inputs (only once the model is known: an
    unknown model is NOT_FOUND whatever the body), checks names, then each datatype against the
    signature's dtype (naming the tensor), then the values; shapes are checked by the runtime as
    for v1."""
    def decode(sig: Signature) -> dict[str, np.ndarray]:
        inputs = read_inputs()
        names = [t.name for t in inputs]
        for name in names:
            if names.count(name) > 1:
                raise invalid_argument(f"input '{name}' is given more than once")
        check_input_names(names, sig.inputs)
        out = {}
        for t in inputs:
            expected = sig.inputs[t.name].dtype
            if t.datatype not in DATATYPES:
                raise invalid_argument(f"input '{t.name}': unsupported datatype {str(t.datatype)[:40]!r} "
                                       f"(one of {', '.join(DATATYPES)})")
            if DATATYPES[t.datatype] != expected:
                raise invalid_argument(f"input '{t.name}': datatype {t.datatype} does not match the model's "
                                       f"{datatype_of(expected)}")
            out[t.name] = to_array(t, expected)
        return out
    return decode


def infer(service: Service, ref: ModelRef, read_inputs: Callable[[], Sequence[InputTensor]],
          outputs: Sequence[str], deadline: float | None) -> PredictResult:
    """Run the request's signature through the one data plane (`outputs`: requested names, or all)."""
    return service.predict(ref, decoder(read_inputs), list(outputs), deadline)


# ------------------------------------------------------------------ answers
def output_datatype(array: np.ndarray) -> str:
    return datatype_of(tensors.data_type_of(array))


def to_raw(array: np.ndarray) -> bytes:
    """An output as the protocol's raw bytes (little-endian; BYTES length-prefixed)."""
    if array.dtype.kind in ("O", "S", "U"):
        parts = []
        for v in array.ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts += (struct.pack("<I", len(b)), b)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def to_json_data(array: np.ndarray) -> Any:
    """An output as flat JSON data: numbers (a numpy array the JSON writer takes as it is),
    true/false, or text for BYTES (UTF-8; bytes that are not are replaced: ask binary data for them)."""
    flat = array.ravel()
    if array.dtype.kind in ("O", "S", "U"):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    return flat.tolist() if array.dtype.kind == "b" else np.ascontiguousarray(flat)


def tensor_metadata(specs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "datatype": datatype_of(spec.dtype),
             "shape": [-1] if spec.shape is None else [int(d) for d in spec.shape]}
            for name, spec in specs.items()]


def model_metadata(service: Service, ref: ModelRef) -> dict[str, Any]:
    """Model metadata: name, the versions that can answer, platform, and the inputs and outputs
    of the signature a request would run (serving_default unless `ref` names another)."""
    servable, _ = service.metadata(ref, ["signature_def"])
    sig = servable.signature(ref.signature_name, "predict")
    versions = [str(s.version) for s in service.status(ModelRef(ref.name)) if s.state.name == "AVAILABLE"]
    return {"name": servable.model_name, "versions": versions, "platform": PLATFORM,
            "inputs": tensor_metadata(sig.inputs), "outputs": tensor_metadata(sig.outputs)}


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": cnnzoo.__version__, "extensions": list(EXTENSIONS)}
