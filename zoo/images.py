"""How images become model input: one function for training data and for the images sent to a server.

Zoo models take float32 NHWC pixels in [0, 1]. Integer images (uint8 files, IDX, npz, PNG) are
divided by their type's full scale; float images are taken as they are but must already be in
[0, 1], so 0..255 floats get a clear error instead of confident nonsense. numpy only: the client
path imports this without TensorFlow.
"""
from __future__ import annotations

import numpy as np

__all__ = ["to_model_input", "PIXEL_RANGE"]

PIXEL_RANGE = (0.0, 1.0)  # what every zoo model expects; exported in the served metadata


def to_model_input(x: object, *, what: str = "images") -> np.ndarray:
    """`x` as float32 (N, H, W, C) in [0, 1].

    (N, H, W) gains a channel axis. uint8/uint16 (any unsigned or signed integer type) are scaled
    by 255 when every value fits in 0..255 (8-bit images stored in wider types), else by the type's
    maximum. Floats outside [0, 1] (e.g. 0..255 floats) or NaN raise a ValueError that says so.
    """
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"{what} must be (N, H, W) or (N, H, W, C), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype("float32")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0:
            return arr.astype("float32")
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            raise ValueError(f"{what}: integer pixels must be >= 0, found {low}")
        scale = 255.0 if high <= 255 else float(np.iinfo(arr.dtype).max)
        return (arr / scale).astype("float32")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must hold numbers, got dtype {arr.dtype}")
    out = arr.astype("float32", copy=False)
    if out.size:
        if np.isnan(out).any():
            raise ValueError(f"{what} contain NaN")
        low, high = float(out.min()), float(out.max())
        if low < PIXEL_RANGE[0] or high > PIXEL_RANGE[1]:
            hint = " (they look like 0..255 values: divide by 255)" if high > 1.5 else ""
            raise ValueError(f"{what} must be in [0, 1], found values in [{low:g}, {high:g}]{hint}")
    return out
