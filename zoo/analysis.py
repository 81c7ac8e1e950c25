"""`describe`: a per-layer table (filters, output size, params, MACs, receptive field) with totals.

For a model of open input size (`input_shape=(None, None, C)`) the output sizes and the MACs of
convolutions are unknown: None (shown "?"), and so is the total.

Rows group the Keras layers of one zoo layer (`layer{i}_*`) and the classifier head; for any other
model every Keras layer is its own row. MACs count the multiply-accumulates of convolutions and
dense layers (BatchNorm, activations, pooling and additions are not counted, as in most papers).
The receptive field follows the main path (residual projections never widen it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402
from keras import layers  # noqa: E402

from .builders import OTHER_OUTPUT_NAME, OUTPUT_NAMES, build  # noqa: E402

__all__ = ["describe", "Description"]

_ZOO_LAYER = re.compile(r"^(layer\d+)_")
_HEAD_OUTPUTS = {*OUTPUT_NAMES.values(), OTHER_OUTPUT_NAME}  # the classifier layer's names


@dataclass
class Description:
    rows: list[dict[str, Any]]
    total_params: int
    total_macs: int | None  # None when the input size is open (a layer's MACs depend on it)
    receptive_field: int
    model_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "rows": self.rows, "total_params": self.total_params,
                "total_macs": self.total_macs, "receptive_field": self.receptive_field}

    def __str__(self) -> str:
        head = ("layer", "kind", "filters", "output", "params", "MACs", "RF")
        lines = [(r["layer"], r["kind"], str(r["filters"] or "-"),
                  "x".join("?" if d is None else str(d) for d in r["output_hw"]) if r["output_hw"] else "-",
                  f"{r['params']:,}", _size(r["macs"]), str(r["receptive_field"]))
                 for r in self.rows]
        lines.append(("total", "", "", "", f"{self.total_params:,}", _size(self.total_macs),
                      str(self.receptive_field)))
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
        fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths)))
        out = [f"{self.model_name}", fmt(head), fmt(tuple("-" * w for w in widths))]
        out += [fmt(l) for l in lines[:-1]] + [fmt(tuple("-" * w for w in widths)), fmt(lines[-1])]
        return "\n".join(out)


def _size(n: int | None) -> str:
    """A count for the table; "?" where the input size leaves it open."""
    return "?" if n is None else f"{n:,}"


def _spatial(shape) -> tuple[int | None, int | None] | None:
    if len(shape) != 4:
        return None
    return tuple(None if d is None else int(d) for d in shape[1:3])  # type: ignore[return-value]


def _macs(layer: layers.Layer) -> int | None:
    """The layer's multiply-accumulates per image; None for a convolution over an open size."""
    out = layer.output.shape
    if len(out) == 4 and None in out[1:3] and isinstance(
            layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
        return None
    if isinstance(layer, layers.SeparableConv2D):
        cin = int(layer.input.shape[-1])
        kh, kw = layer.kernel_size
        dm = layer.depth_multiplier
        return out[1] * out[2] * (kh * kw * cin * dm + cin * dm * layer.filters)
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return out[1] * out[2] * kh * kw * int(layer.input.shape[-1]) * layer.depth_multiplier
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = int(layer.input.shape[-1]) // layer.groups
        return out[1] * out[2] * kh * kw * cin * layer.filters
    if isinstance(layer, layers.Dense):
        return int(layer.input.shape[-1]) * layer.units
    return 0


def _kernel_stride(layer: layers.Layer) -> tuple[int, int] | None:
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
        return layer.kernel_size[0], layer.strides[0]
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        return layer.pool_size[0], layer.strides[0]
    return None


def _group(name: str) -> str:
    m = _ZOO_LAYER.match(name)
    if m:
        return m.group(1)
    return "head" if name.startswith("head_") or name in _HEAD_OUTPUTS else name


def describe(model_or_name: keras.Model | str, **build_kwargs: Any) -> Description:
    """Describe a Keras model, or build `zoo.build(name, **build_kwargs)` and describe that."""
    if isinstance(model_or_name, str):
        model = build(model_or_name, **build_kwargs)
    elif isinstance(model_or_name, keras.Model):
        if build_kwargs:
            raise TypeError("build keyword arguments are only accepted with a rule name, "
                            f"not with a model: {sorted(build_kwargs)}")
        model = model_or_name
    else:
        raise TypeError(f"describe expects a keras.Model or a rule name, got {type(model_or_name).__name__}")

    rows: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    first_kind: dict[str, str] = {}
    rf, jump = 1, 1
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        key = _group(layer.name)
        row = rows.setdefault(key, {"layer": key, "kind": "", "filters": None, "output_hw": None,
                                    "params": 0, "macs": 0, "receptive_field": rf})
        row["params"] += layer.count_params()
        macs = _macs(layer)
        row["macs"] = None if macs is None or row["macs"] is None else row["macs"] + macs
        on_main_path = "_proj" not in layer.name
        ks = _kernel_stride(layer) if on_main_path else None
        if ks:
            rf += (ks[0] - 1) * jump
            jump *= ks[1]
        # A row is named after its first convolution (or dense layer), else its first layer.
        if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D)) and on_main_path:
            row["filters"] = layer.filters
            kinds.setdefault(key, type(layer).__name__)
        elif isinstance(layer, layers.Dense):
            row["filters"] = layer.units
            kinds.setdefault(key, "Dense")
        if on_main_path:
            hw = _spatial(layer.output.shape)
            if hw:
                row["output_hw"] = hw
        row["receptive_field"] = rf
        first_kind.setdefault(key, type(layer).__name__)
    for key, row in rows.items():
        row["kind"] = kinds.get(key, first_kind[key])
    table = list(rows.values())
    macs = [r["macs"] for r in table]
    return Description(rows=table, total_params=sum(r["params"] for r in table),
                       total_macs=None if None in macs else sum(macs), receptive_field=rf,
                       model_name=model.name)
