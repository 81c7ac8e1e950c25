"""The built-in filter-growth rules and `plan`, which turns a rule into per-layer kernel counts.

Defaults are chosen so that the growing rules end at the same width as `doubling` on the same
depth and schedule: comparisons then differ in the *shape* of the profile, not its end point.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .registry import LayerContext, get_rule, register

__all__ = ["plan", "downsample_positions"]


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


def downsample_positions(depth: int, every: int | None = None,
                         at: Sequence[int] | None = None) -> tuple[int, ...]:
    """Layer indices after which the feature map is halved (never after the last layer)."""
    if at is not None and every is not None:
        raise ValueError("pass either downsample_every or downsample_at, not both")
    if at is not None:
        positions = sorted(set(int(p) for p in at))
        bad = [p for p in positions if not 0 <= p < depth - 1]
        if bad:
            raise ValueError(f"downsample_at positions {bad} are invalid: each must be a layer index "
                             f"in [0, {depth - 2}] (no downsample after the last layer)")
        return tuple(positions)
    if every is None:
        every = 2
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"downsample_every must be a positive int, got {every!r}")
    return tuple(p for p in range(every - 1, depth - 1, every))


def _quantize(x: float, round_to: int | None, min_filters: int, max_filters: int | None) -> int:
    n = round(x / round_to) * round_to if round_to else round(x)
    n = max(n, min_filters, round_to or 1)
    if max_filters is not None:
        n = min(n, max_filters)
    return int(n)


DEFAULT_DEPTH = 6
DEFAULT_BASE_FILTERS = 16


def plan(name: str, *, depth: int | None = None, base_filters: int | None = None,
         downsample_every: int | None = None, downsample_at: Sequence[int] | None = None,
         round_to: int | None = None, min_filters: int | None = None,
         max_filters: int | None = None, **rule_kwargs: Any) -> list[int]:
    """Per-layer kernel counts of rule `name` (positive ints), without building anything.

    >>> plan("doubling", depth=6, base_filters=16)
    [16, 16, 32, 32, 64, 64]
    """
    rule = get_rule(name)
    rule.check_kwargs(rule_kwargs)
    if name == "custom" and depth is None and rule_kwargs.get("filters") is not None:
        depth = len(rule_kwargs["filters"])
    depth = DEFAULT_DEPTH if depth is None else depth
    base_filters = DEFAULT_BASE_FILTERS if base_filters is None else base_filters
    for arg, value in (("depth", depth), ("base_filters", base_filters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int)
                                 or round_to < 1):
        raise ValueError(f"round_to must be None or a positive int, got {round_to!r}")
    min_filters = 1 if min_filters is None else min_filters
    if not isinstance(min_filters, int) or min_filters < 1:
        raise ValueError(f"min_filters must be a positive int, got {min_filters!r}")
    if max_filters is not None and (not isinstance(max_filters, int) or max_filters < min_filters):
        raise ValueError(f"max_filters must be an int >= min_filters ({min_filters}), got {max_filters!r}")
    if name == "custom":
        filters = rule_kwargs.get("filters")
        if filters is None or len(filters) != depth:
            raise ValueError(f"custom: filters must list exactly depth={depth} counts, got {filters!r}")
        bad = [f for f in filters if isinstance(f, bool) or not isinstance(f, int) or f < 1]
        if bad:
            raise ValueError(f"custom: filters must be positive ints, got {bad}")

    positions = downsample_positions(depth, downsample_every, downsample_at)
    counts: list[int] = []
    for i in range(depth):
        ctx = LayerContext(index=i, depth=depth, base_filters=base_filters,
                           stage=sum(p < i for p in positions), num_stages=len(positions),
                           previous=counts[-1] if counts else None)
        raw = rule(ctx, **rule_kwargs)
        if not isinstance(raw, (int, float)) or math.isnan(raw) or raw <= 0:
            raise ValueError(f"rule {name!r} gave a non-positive filter count {raw!r} at layer {i}; "
                             "filter counts must be positive")
        counts.append(_quantize(raw, round_to, min_filters, max_filters))
    return counts
