"""Fast parse of the REST hot path: a Predict body that is one rectangular array of numbers.

Why: a batch of images is a large JSON body, and the general parse (`orjson.loads` builds a Python
float per number, then `np.array(nested lists, float32)` walks them again) costs far more than the
model call for a small CNN. simdjson parses into its own tape and `Array.as_buffer` copies the
numbers out as doubles without any Python object (benchmarks/bench_serving.py S3 measures it).

What it guarantees. `parse_predict(raw)` returns a `PredictBody` only when `raw` is valid JSON
(simdjson validates the whole document, UTF-8 included) whose top level is an object in which
every value is a string except exactly one, under "instances" or "inputs", which is an array; no
key is repeated and no key or string holds '[' or ']'. `PredictBody.to_numpy(dtype)` (dtype
float16/32/64) returns an array only when, in addition, that array is rectangular and non-empty
in every dimension and every leaf is a JSON number (of magnitude < 2**53 unless dtype is float64);
the array is then equal, bit for bit, to `np.array(json.loads(raw)[key], dtype)` (what the general
path computes). In
every other case (NaN/Infinity, which simdjson refuses; named instances; {"b64": ...}; nested
objects; strings, booleans or nulls among the numbers; ragged or empty lists; another dtype;
anything simdjson does not parse) it returns None and the caller takes the general path, which
gives every error message it always gave.

How rectangularity is proven: `as_buffer` flattens ragged arrays silently ([[1,2],[3],[4,5,6]]
gives 6 values, as [[1,2,3],[4,5,6]] would). The shape is read along the first element of each
level; since no string or key holds a bracket, the bytes from the body's first '[' to its last ']'
are exactly that array, and with the number characters and JSON whitespace deleted they must equal
the skeleton of the shape ("[[,],[,]]" for [2,2]): every list of a level then has the same length
and every leaf is a number token (the document is valid JSON, so a token made of number
characters is a number). simdjson rounds every number to the nearest double, as Python does; an
integer token becomes an int64/uint64 that is then rounded to double, which equals Python's int
-> float64. Below 2**53 integers are exact in a double, so a float32/float16 cast rounds them
once, as numpy's cast of a Python int does; above, numpy could round an int in one step where
the fast path rounds twice, so float16/32 arrays holding such magnitudes go to the general path.

simdjson parsers are not thread-safe, and a parsed document lives only until its parser's next
parse, so every body gets a parser of its own, which the `PredictBody` keeps until `to_numpy` or
`release` (a parser kept per pool thread would hold several times the largest body it parsed).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import simdjson

FLOAT_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))
KEYS = ("instances", "inputs")
_NUMBER_BYTES = b"0123456789.eE+- \t\r\n"
_MAX_EXACT = 2.0 ** 53
MAX_RANK = 64  # numpy's limit on dimensions


class PredictBody:
    """A parsed Predict body: `fields` (the string values, e.g. signature_name), `raw`, and the
    array under `key`, to be read once by `to_numpy`."""

    __slots__ = ("raw", "fields", "key", "_array")

    def __init__(self, raw: bytes, fields: dict[str, str], key: str, array: Any) -> None:
        self.raw, self.fields, self.key, self._array = raw, fields, key, array

    def release(self) -> None:
        """Drop the parsed document (and its parser's buffers) now rather than with this object."""
        self._array = None

    def to_numpy(self, dtype: Any) -> np.ndarray | None:
        """The array as `dtype` (a float dtype), or None when the general path must decide."""
        array, self._array = self._array, None
        if array is None or np.dtype(dtype) not in FLOAT_DTYPES:
            return None
        try:
            shape, leaf = _shape(array)
            # deeper than numpy's 64 dimensions: the general path words the error
            if not shape or len(shape) > MAX_RANK or isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
                return None
            flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
        except Exception:  # e.g. a string, bool or null among the numbers: simdjson's TypeError
            return None
        finally:
            del array
        if flat.size != math.prod(shape):
            return None
        # Brackets occur only in the array, so its skeleton lies between the first '[' and the
        # last ']' of the whole body's (translating before slicing saves a copy of the body)
        rest = self.raw.translate(None, _NUMBER_BYTES)
        if rest[rest.index(b"["):rest.rindex(b"]") + 1] != _skeleton(tuple(shape)):
            return None
        if np.dtype(dtype) != np.float64 and not float(np.abs(flat).max()) < _MAX_EXACT:
            return None
        return flat.astype(dtype).reshape(shape)


def parse_predict(raw: bytes) -> PredictBody | None:
    """A `PredictBody` when `raw` may be a fast-path body (see the module docstring), else None."""
    if not isinstance(raw, bytes) or b"[" not in raw:
        return None
    try:
        return _parse_predict(raw)
    except Exception:  # invalid JSON (NaN, ...), numbers simdjson does not take, too large, ...
        return None


def _parse_predict(raw: bytes) -> PredictBody | None:
    doc = simdjson.Parser().parse(raw)  # its own parser: see the module docstring
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())  # (items() and values() would build every value as Python objects)
    if len(set(keys)) != len(keys) or any("[" in k or "]" in k for k in keys):
        return None  # a repeated key: the general parsers keep the last one, simdjson the first
    fields: dict[str, str] = {}
    key = array = None
    for k in keys:
        v = doc[k]  # a string, or a proxy of an array or object (nothing converted)
        if isinstance(v, str):
            if "[" in v or "]" in v:
                return None
            fields[k] = v
        elif isinstance(v, simdjson.Array) and k in KEYS and array is None:
            key, array = k, v
        else:
            return None  # numbers, null, objects, a second array
    if array is None:
        return None
    return PredictBody(raw, fields, key, array)


def _shape(array: Any) -> tuple[list[int], Any]:
    """Lengths along the first element of each level, and that first leaf; [] when a list is empty."""
    shape = []
    node = array
    while isinstance(node, simdjson.Array) and len(shape) <= MAX_RANK:
        n = len(node)
        if n == 0:
            return [], None
        shape.append(n)
        node = node[0]
    return shape, node


@functools.lru_cache(maxsize=16)
def _skeleton(shape: tuple[int, ...]) -> bytes:
    """b"[[,],[,]]" for (2, 2): the array's bytes without number characters and whitespace."""
    if not shape:
        return b""
    return b"[" + b",".join([_skeleton(shape[1:])] * shape[0]) + b"]"


__all__ = ["parse_predict", "PredictBody", "FLOAT_DTYPES"]
