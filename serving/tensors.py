"""Conversions between TensorProto, numpy and TF Serving's REST JSON, and tf.Example inputs.

Hot path: a client that sends `tensor_content` (tf.make_tensor_proto does for numeric arrays) is
decoded with one `np.frombuffer`, no per-element work. Outputs are written in the typed repeated
fields (`float_val`, `int64_val`, `string_val`, ...) as TF Serving does, because TF Serving's own
clients and tests read those fields.
"""
from __future__ import annotations

import base64
import math
from typing import Any, Iterable, Mapping

import numpy as np

from serving import protos  # noqa: F401,I001  (before the protos: they must not load all of TensorFlow)
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.errors import invalid_argument
from serving.json_body import dumps_json

# DataType -> (numpy dtype, typed field name, numpy dtype of the typed field's values)
_TYPES: dict[int, tuple[np.dtype, str, Any]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val", np.float32),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val", np.float64),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val", np.int32),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val", np.int32),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val", np.int32),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val", np.int32),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val", np.int32),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val", np.int64),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val", np.uint32),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val", np.uint64),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val", np.bool_),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val", np.int32),
    types_pb2.DT_STRING: (np.dtype(object), "string_val", object),
}
# A request may give one value for a whole shape; the expansion is capped so that a tiny request
# cannot make the server allocate (and fill) an arbitrarily large array.
MAX_FILL_BYTES = 64 * 2**20
# numpy's limit on dimensions: also how deep a JSON array may nest.
MAX_RANK = 64
MAX_ELEMENTS = 2**63 - 1
# Classify/Regress copy the `context` into every example: the merged examples are bounded, so a
# small request (a big context, many empty examples) cannot make gigabytes of them.
MAX_MERGED_EXAMPLES_BYTES = 64 * 2**20
_DTYPE_OF_NUMPY: dict[np.dtype, int] = {
    np_dtype: dt for dt, (np_dtype, _, _) in _TYPES.items() if dt != types_pb2.DT_STRING
}


def dtype_name(dtype: int) -> str:
    """`types_pb2.DT_FLOAT` -> "DT_FLOAT"."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype:
    """numpy dtype for a TF DataType enum value (object for DT_STRING)."""
    try:
        return _TYPES[dtype][0]
    except KeyError:
        raise invalid_argument(f"unsupported dtype {dtype_name(dtype)}; supported: "
                               f"{sorted(dtype_name(d) for d in _TYPES)}") from None


def data_type_of(array: np.ndarray) -> int:
    """TF DataType enum for a numpy array (bytes/str/object arrays are DT_STRING)."""
    if array.dtype.kind in ("O", "S", "U"):
        return types_pb2.DT_STRING
    try:
        return _DTYPE_OF_NUMPY[array.dtype]
    except KeyError:
        raise invalid_argument(f"unsupported numpy dtype {array.dtype}") from None


def _shape_of(proto: tensor_pb2.TensorProto, alias: str) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"tensor parsing error: {alias} (unknown rank)")
    if len(proto.tensor_shape.dim) > MAX_RANK:
        raise invalid_argument(f"tensor parsing error: {alias} (rank {len(proto.tensor_shape.dim)}; at most "
                               f"{MAX_RANK} dimensions are supported)")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise invalid_argument(f"tensor parsing error: {alias} (negative dimension in {list(shape)})")
    # TF's own limit (the element count, with empty dimensions counted as 1, must fit an int64);
    # numpy cannot even describe a larger array, empty or not.
    if math.prod(max(s, 1) for s in shape) > MAX_ELEMENTS:
        raise invalid_argument(f"tensor parsing error: {alias} (shape {list(shape)} has more than "
                               f"{MAX_ELEMENTS} elements)")
    return shape


def to_numpy(proto: tensor_pb2.TensorProto, alias: str = "") -> np.ndarray:
    """Decode a request TensorProto; INVALID_ARGUMENT "tensor parsing error: ALIAS" when malformed."""
    if not isinstance(proto, tensor_pb2.TensorProto):
        raise TypeError(f"proto must be a tensorflow.TensorProto, got {type(proto).__name__}")
    try:
        return _to_numpy(proto, alias)
    except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a shape numpy cannot hold
        raise invalid_argument(f"tensor parsing error: {alias} ({type(exc).__name__}: {exc})") from None


def _to_numpy(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    entry = _TYPES.get(proto.dtype)
    if entry is None:
        raise invalid_argument(f"tensor parsing error: {alias} (unsupported dtype {dtype_name(proto.dtype)})")
    np_dtype, field, field_dtype = entry
    shape = _shape_of(proto, alias)
    count = math.prod(shape)
    if proto.dtype != types_pb2.DT_STRING and proto.tensor_content:
        content = proto.tensor_content
        if len(content) != count * np_dtype.itemsize:
            raise invalid_argument(f"tensor parsing error: {alias} (tensor_content holds {len(content)} "
                                   f"bytes, shape {list(shape)} needs {count * np_dtype.itemsize})")
        return np.frombuffer(content, dtype=np_dtype).reshape(shape)  # (shape checked: cannot fail)
    values = getattr(proto, field)
    n = len(values)
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(n, dtype=object)
        flat[:] = list(values)
    else:
        flat = np.asarray(values, dtype=field_dtype)
        if proto.dtype == types_pb2.DT_HALF:
            flat = flat.astype(np.uint16).view(np.float16)
        elif flat.dtype != np_dtype:
            flat = flat.astype(np_dtype)
    if n == count:
        return flat.reshape(shape)
    if n == 1 and count > 1 and proto.dtype == types_pb2.DT_STRING:
        # TF would repeat the one string, but each string is work for the model (an image to
        # decode): a request's work must grow with what it sends, so every string is sent.
        raise invalid_argument(f"tensor parsing error: {alias} (one string for shape {list(shape)}: send "
                               "one value per element)")
    if n == 1 and count > 1:  # TF fills the whole shape with a single given value
        if count * np_dtype.itemsize > MAX_FILL_BYTES:  # 4 request bytes must not allocate terabytes
            raise invalid_argument(f"tensor parsing error: {alias} (one value for shape {list(shape)} would "
                                   f"expand to {count * np_dtype.itemsize} bytes; the limit is {MAX_FILL_BYTES}: "
                                   "send every value)")
        return np.full(shape, flat[0], dtype=np_dtype)
    raise invalid_argument(f"tensor parsing error: {alias} ({n} values for shape {list(shape)})")


def from_numpy(array: Any) -> tensor_pb2.TensorProto:
    """Encode an output array in the typed fields (float_val, int64_val, string_val, ...)."""
    array = np.asarray(array)
    dt = data_type_of(array)
    _, field, _ = _TYPES[dt]
    proto = tensor_pb2.TensorProto(dtype=dt, tensor_shape=shape_proto(array.shape))
    flat = array.ravel()
    if dt == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist())
    elif dt == types_pb2.DT_HALF:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


def from_numpy_content(array: Any) -> tensor_pb2.TensorProto:
    """Encode a numeric array with `tensor_content` (what clients should send: one memcpy)."""
    array = np.asarray(array)  # (ascontiguousarray would turn a scalar into shape [1])
    dt = data_type_of(array)
    if dt == types_pb2.DT_STRING:
        return from_numpy(array)
    return tensor_pb2.TensorProto(dtype=dt, tensor_shape=shape_proto(array.shape),
                                  tensor_content=array.tobytes(order="C"))


def shape_proto(shape: Iterable[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(s)) for s in shape])


# ---------------------------------------------------------------------------------------- JSON


def _decode_string_leaf(value: Any, alias: str) -> bytes:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid_argument(f"input {alias!r}: a JSON object value must be {{\"b64\": \"...\"}}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid_argument(f"input {alias!r}: invalid base64 in {{\"b64\": ...}}") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise invalid_argument(f"input {alias!r}: expected a string or {{\"b64\": ...}} for a DT_STRING "
                           f"tensor, got {type(value).__name__}")


def _leaves(value: Any, alias: str) -> tuple[np.ndarray, list[Any], set[type]]:
    """`value` (nested lists) as a numpy object array, its leaves in order and their types, without
    recursing in Python (arrays nested thousands deep are bad input, not a RecursionError). A leaf
    that is still a list means a ragged array, or one nested deeper than MAX_RANK dimensions."""
    try:
        array = np.array(value, dtype=object)
    except (ValueError, TypeError, RecursionError) as exc:
        raise invalid_argument(f"input {alias!r}: not a rectangular array ({exc})"[:300]) from None
    flat = array.reshape(-1).tolist()
    types = set(map(type, flat))
    if list in types:
        raise invalid_argument(f"input {alias!r}: ragged lists, or lists nested deeper than {MAX_RANK} "
                               "levels; every dimension must have one size")
    return array, flat, types


def _string_array(value: Any, alias: str) -> np.ndarray:
    array, flat, _ = _leaves(value, alias)
    out = np.empty(array.shape, dtype=object)
    out.reshape(-1)[:] = [_decode_string_leaf(v, alias) for v in flat]
    return out


_LEAF_TYPES: dict[str, tuple[type, ...]] = {"f": (int, float), "c": (int, float), "i": (int,), "u": (int,),
                                            "b": (bool,)}


def _describe_leaf(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    return f"a JSON {'object' if isinstance(value, dict) else type(value).__name__}"


def json_to_numpy(value: Any, dtype: int, alias: str) -> np.ndarray:
    """A JSON value (nested lists, numbers, strings, {"b64":...}) -> numpy array of `dtype`."""
    if dtype == types_pb2.DT_STRING:
        return _string_array(value, alias)
    np_dtype = numpy_dtype(dtype)
    # Only JSON numbers (true/false for DT_BOOL) are values: np.array would take null as NaN,
    # true as 1 and "0.5" as 0.5, and answer a confident prediction for a broken request.
    leaves, flat, types = _leaves(value, alias)
    allowed = _LEAF_TYPES.get(np_dtype.kind, (int, float))
    bad = types - set(allowed)
    if bad:
        leaf = next(v for v in flat if type(v) in bad)
        raise invalid_argument(f"input {alias!r}: {_describe_leaf(leaf)} is not a valid "
                               f"{dtype_name(dtype)} value (expected JSON "
                               f"{'true/false' if bool in allowed else 'numbers'})")
    try:
        return leaves.astype(np_dtype)
    except (ValueError, TypeError, OverflowError):
        raise invalid_argument(f"input {alias!r}: a number is out of range for {dtype_name(dtype)}") from None


def numpy_to_json(array: np.ndarray, alias: str, *, keep_numeric: bool = False) -> Any:
    """An output array -> JSON value; strings as text, or {"b64":...} for `*_bytes` or non-UTF-8.

    With `keep_numeric`, a numeric array (ndim >= 1) stays a C-contiguous numpy array for
    `dumps_json`, which writes it without building Python lists; otherwise nested lists.
    """
    if array.dtype.kind not in ("O", "S", "U"):
        if keep_numeric and array.ndim:
            return np.ascontiguousarray(array)
        return array.tolist()
    as_b64 = alias.endswith("_bytes")

    def leaf(v: Any) -> Any:
        if isinstance(v, str):
            return v
        if not as_b64:
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(v).decode("ascii")}

    def walk(v: Any) -> Any:
        return [walk(x) for x in v] if isinstance(v, list) else leaf(v)

    return walk(array.tolist())


# ------------------------------------------------------------------------------------ tf.Example
def examples_from_input(input_proto: Any) -> list[bytes]:
    """Serialized tf.Examples from a tensorflow.serving.Input (example_list or ..._with_context)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = list(input_proto.example_list.examples)
        serialized = [e.SerializeToString() for e in examples]
    elif kind == "example_list_with_context":
        ctx = input_proto.example_list_with_context.context
        _check_merged_size(ctx.ByteSize(), [e.ByteSize() for e in input_proto.example_list_with_context.examples])
        serialized = []
        for e in input_proto.example_list_with_context.examples:
            merged = example_pb2.Example()
            merged.CopyFrom(ctx)
            merged.MergeFrom(e)  # an example's own feature wins over the context's
            serialized.append(merged.SerializeToString())
    else:
        raise invalid_argument("Input is empty")
    if not serialized:
        raise invalid_argument("Input is empty")
    return serialized


def _check_merged_size(context_bytes: int, example_bytes: list[int]) -> None:
    """INVALID_ARGUMENT before merging when the context copied into every example would make
    more than MAX_MERGED_EXAMPLES_BYTES of examples."""
    total = context_bytes * len(example_bytes) + sum(example_bytes)
    if total > MAX_MERGED_EXAMPLES_BYTES:
        raise invalid_argument(f"the context ({context_bytes} bytes) merged into {len(example_bytes)} examples "
                               f"would make {total} bytes of examples; the limit is {MAX_MERGED_EXAMPLES_BYTES}: "
                               "send fewer examples per request or a smaller context")


def _feature_from_json(name: str, value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    if not values:
        return feature_pb2.Feature(float_list=feature_pb2.FloatList())
    if all(isinstance(v, (str, dict)) for v in values):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
            value=[_decode_string_leaf(v, name) for v in values]))
    if all(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise invalid_argument(f"feature {name!r}: expected numbers, strings or {{\"b64\":...}}, got {value!r}"[:300])
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
    raise invalid_argument(f"feature {name!r}: mixed value types in one feature")


def _example_from_json(obj: Any, what: str) -> example_pb2.Example:
    if not isinstance(obj, Mapping):
        raise invalid_argument(f"{what} must be a JSON object of feature name -> value(s)")
    return example_pb2.Example(features=feature_pb2.Features(
        feature={k: _feature_from_json(k, v) for k, v in obj.items()}))


def examples_from_json(examples: Any, context: Any = None) -> list[bytes]:
    """REST classify/regress body -> serialized tf.Examples (context merged into each)."""
    if not isinstance(examples, list) or not examples:
        raise invalid_argument("'examples' must be a non-empty list of objects")
    ctx = _example_from_json(context, "'context'") if context is not None else None
    parsed = [_example_from_json(obj, f"examples[{i}]") for i, obj in enumerate(examples)]
    if ctx is not None:
        _check_merged_size(ctx.ByteSize(), [e.ByteSize() for e in parsed])
    out = []
    for example in parsed:
        if ctx is not None:
            merged = example_pb2.Example()
            merged.CopyFrom(ctx)
            merged.MergeFrom(example)
            example = merged
        out.append(example.SerializeToString())
    return out


__all__ = ["to_numpy", "from_numpy", "from_numpy_content", "json_to_numpy",
           "numpy_to_json", "dumps_json", "examples_from_input", "examples_from_json", "numpy_dtype",
           "data_type_of", "dtype_name", "shape_proto"]
