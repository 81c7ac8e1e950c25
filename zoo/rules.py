"""The built-in filter-growth rules (each registered under its name; `zoo.plan` applies them).

Defaults are chosen so that `linear` and `geometric` end at the same width as `doubling` on the
same depth and schedule: comparisons then differ in the *shape* of the profile, not its end point.
`regnet`'s quantized steps do not (96 at depths 4, 6 and 8 from 16).
"""
from __future__ import annotations

import math
from typing import Sequence

from .registry import LayerContext, register

__all__: list[str] = []  # rules are reached through the registry


@register("constant", space={})
def constant(layer: LayerContext) -> float:
    """Every layer has `base_filters` kernels."""
    return layer.base_filters


@register("doubling", space={"factor": (1.5, 3.0)})
def doubling(layer: LayerContext, *, factor: float = 2.0) -> float:
    """Multiply the width by `factor` at each downsample (the VGG/ResNet habit)."""
    return layer.base_filters * factor ** layer.stage


def _end_ratio(layer: LayerContext) -> float:
    return 2.0 ** max(layer.num_stages, 1)


@register("linear", space={"alpha": (8, 256)})
def linear(layer: LayerContext, *, alpha: float | None = None) -> float:
    """PyramidNet additive: D_k = D_{k-1} + alpha/N, so the width grows a little at every layer."""
    if alpha is None:
        alpha = layer.base_filters * (_end_ratio(layer) - 1)
    return layer.base_filters + alpha * layer.fraction


@register("geometric", space={"alpha": (1.5, 16.0)})
def geometric(layer: LayerContext, *, alpha: float | None = None) -> float:
    """PyramidNet multiplicative: D_k = D_{k-1} * alpha^(1/N); alpha is the last/first ratio."""
    if alpha is None:
        alpha = _end_ratio(layer)
    return layer.base_filters * alpha ** layer.fraction


@register("regnet", space={"wa": (8.0, 64.0), "wm": (1.5, 3.0)})
def regnet(layer: LayerContext, *, wa: float | None = None, wm: float = 2.5,
           quantum: int = 8) -> float:
    """RegNet quantized linear: u_j = w0 + wa*j snapped to w0*wm^round(log_wm(u_j/w0)), multiple of 8."""
    w0 = layer.base_filters
    if wa is None:
        wa = float(w0)
    if wm <= 1:
        raise ValueError(f"regnet: wm must be > 1, got {wm}")
    if wa < 0:
        raise ValueError(f"regnet: wa must be >= 0, got {wa}")
    u = w0 + wa * layer.index
    s = round(math.log(u / w0) / math.log(wm))
    w = w0 * wm ** s
    return max(quantum, round(w / quantum) * quantum) if quantum else w


@register("decreasing", space={"factor": (1.5, 3.0)})
def decreasing(layer: LayerContext, *, factor: float = 2.0) -> float:
    """Wide early, narrow late: divide the width by `factor` at each downsample."""
    return layer.base_filters / factor ** layer.stage


def _bump(layer: LayerContext) -> float:
    """0 at both ends, 1 in the middle (a triangle over the depth)."""
    return 1.0 - abs(2.0 * layer.fraction - 1.0)


@register("hourglass", space={"ratio": (0.1, 0.9)})
def hourglass(layer: LayerContext, *, ratio: float = 0.25) -> float:
    """Narrow middle: `base_filters` at both ends, `ratio * base_filters` at the centre."""
    if not 0 < ratio <= 1:
        raise ValueError(f"hourglass: ratio must be in (0, 1], got {ratio}")
    return layer.base_filters * (1.0 - (1.0 - ratio) * _bump(layer))


@register("diamond", space={"peak": (1.5, 8.0)})
def diamond(layer: LayerContext, *, peak: float = 4.0) -> float:
    """Wide middle: `base_filters` at both ends, `peak * base_filters` at the centre."""
    if peak < 1:
        raise ValueError(f"diamond: peak must be >= 1, got {peak}")
    return layer.base_filters * (1.0 + (peak - 1.0) * _bump(layer))


@register("combinatorial", space={"cap": (32, 512)})
def combinatorial(layer: LayerContext, *, cap: int = 256) -> float:
    """min(2^n - 1, cap): one kernel per non-empty combination of the previous layer's n features."""
    if cap < 1:
        raise ValueError(f"combinatorial: cap must be >= 1, got {cap}")
    if layer.previous is None:
        return min(layer.base_filters, cap)
    n = layer.previous
    return cap if n >= 30 else min(2 ** n - 1, cap)


@register("custom")
def custom(layer: LayerContext, *, filters: Sequence[int] | None = None) -> float:
    """An explicit per-layer list."""
    if filters is None:
        raise ValueError("custom: pass filters=[...], one count per layer")
    return filters[layer.index]
