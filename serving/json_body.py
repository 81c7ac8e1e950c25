"""JSON bodies as TF Serving writes and reads them, from numpy: shared by the REST server and
`serving.RestClient`. numpy and orjson only, so the REST client loads without TensorFlow."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

__all__ = ["dumps_json"]


def dumps_json(obj: Any) -> bytes:
    """JSON bytes of `obj`: dicts, lists, str, numbers, None, numpy arrays and numpy scalars.

    numpy arrays are written by orjson without `tolist()` (an order of magnitude faster for a batch
    of images), float32 in its shortest repr, which reads back as the same float32. NaN and +-inf are
    written as NaN / Infinity / -Infinity, as json.dumps and TF Serving's own JSON writer do (orjson
    would write null, silently changing the value), so a value holding one, or a type orjson cannot
    write (0-d or non-native-endian arrays, ints over 64 bits, ...), goes through json.dumps.
    """
    if not _has_non_finite(obj):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(obj, default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    """json.dumps' fallback for numpy arrays and scalars."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return value.dtype.kind in "fc" and not bool(np.isfinite(value).all())
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        try:  # a list of numbers is summed in C: NaN and inf survive the sum (a finite overflow to
            return not math.isfinite(sum(value, 0.0))  # inf only costs the slower json.dumps)
        except (TypeError, OverflowError):  # nested lists, strings, dicts, huge ints: look inside
            return any(_has_non_finite(v) for v in value)
    return False
