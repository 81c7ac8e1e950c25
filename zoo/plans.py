"""`plan`: a rule turned into per-layer kernel counts, optionally fitted to a budget, and `Plan`.

A plan is pure Python (no Keras): `zoo.build` makes the network from it, `describe` reads it back,
and budget fitting scales it by one factor (zoo/budget.py).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from . import rules  # noqa: F401  (registers the built-in rules)
from .budget import fit_widths, quantize
from .costs import BLOCK_COSTS, Architecture, Costs
from .registry import LayerContext, get_rule, keyword_names

__all__ = ["plan", "Plan", "architecture", "downsample_positions", "DEFAULT_DEPTH",
           "DEFAULT_BASE_FILTERS", "DOWNSAMPLERS"]


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


DEFAULT_DEPTH = 6
DEFAULT_BASE_FILTERS = 16


_UNBOUNDED = 1 << 30


class Plan(list):
    """Per-layer kernel counts (a list) plus how they were made: where the network downsamples,
    the rule, and, for a plan fitted to a budget, the unscaled profile and the factor."""

    def __init__(self, widths: Sequence[int], *, rule: str, downsample_at: Sequence[int],
                 rule_kwargs: dict[str, Any] | None = None, profile: Sequence[int] | None = None,
                 scale: float = 1.0, costs: Costs | None = None) -> None:
        super().__init__(int(w) for w in widths)
        self.rule = rule
        self.downsample_at = tuple(int(p) for p in downsample_at)
        self.rule_kwargs = dict(rule_kwargs or {})
        self.profile = list(profile) if profile is not None else list(self)
        self.scale = float(scale)
        self.costs = costs

    @property
    def widths(self) -> list[int]:
        return list(self)


def check_positive_int(arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return value


def plan(name: str, *, depth: int | None = None, base_filters: int | None = None,
         downsample_every: int | None = None, downsample_at: Sequence[int] | None = None,
         round_to: int | None = None, min_filters: int | None = None,
         max_filters: int | None = None, max_params: int | None = None,
         max_macs: int | None = None, input_shape: Sequence[int] = (32, 32, 3),
         num_classes: int = 10, block: str = "plain", downsample: str = "max",
         kernel_size: int = 3, include_top: bool = True, **rule_kwargs: Any) -> Plan:
    """Per-layer kernel counts of rule `name` (a list-like `Plan`), without building anything.

    With `max_params` and/or `max_macs`, the rule's widths are scaled by one factor so the network
    (as `zoo.build` makes it for `input_shape`, `num_classes`, `block`, `downsample`,
    `kernel_size` and `include_top`, head included when there is one) uses the budget within
    +-3%; a `zoo.budget.BudgetError` (a ValueError) gives the nearest reachable budgets when no
    factor can. Fitting keeps the rule's order where an order-keeping rounding is within +-3%:
    equal layers stay equal and a wider layer never becomes narrower than a narrower one; where
    none is, the layers are rounded one by one and equal layers may differ by one kernel.
    `min_filters`/`max_filters` then bound the fitted widths (the rule's own counts are the
    profile): where the widest layer reaches `max_filters` before the budget is used, the
    others grow on, each stopping at `max_filters`.

    >>> plan("doubling", depth=6, base_filters=16)
    [16, 16, 32, 32, 64, 64]
    >>> plan("doubling", depth=6, base_filters=16).downsample_at
    (1, 3)
    """
    rule = get_rule(name)
    rule.check_kwargs(rule_kwargs, caller="plan", caller_keywords=_PLAN_KEYWORDS)
    if name == "custom" and depth is None and rule_kwargs.get("filters") is not None:
        depth = len(rule_kwargs["filters"])
    depth = check_positive_int("depth", DEFAULT_DEPTH if depth is None else depth)
    base_filters = check_positive_int(
        "base_filters", DEFAULT_BASE_FILTERS if base_filters is None else base_filters)
    if round_to is not None:
        check_positive_int("round_to", round_to)
    min_filters = check_positive_int("min_filters", 1 if min_filters is None else min_filters)
    if max_filters is not None and (isinstance(max_filters, bool) or not isinstance(max_filters, int)
                                    or max_filters < min_filters):
        raise ValueError(f"max_filters must be an int >= min_filters ({min_filters}), got {max_filters!r}")
    if name == "custom":
        filters = rule_kwargs.get("filters")
        if filters is None or len(filters) != depth:
            raise ValueError(f"custom: filters must list exactly depth={depth} counts, got {filters!r}")
        bad = [f for f in filters if isinstance(f, bool) or not isinstance(f, int) or f < 1]
        if bad:
            raise ValueError(f"custom: filters must be positive ints, got {bad}")

    positions = downsample_positions(depth, downsample_every, downsample_at)
    high = _UNBOUNDED if max_filters is None else max_filters
    # With a budget the rule's counts are the profile, and min/max_filters bound the fitted
    # widths, not the profile: clamped first, a diamond 32-66-66-32 under max_filters=32 would
    # be fitted as constant.
    fitted = max_params is not None or max_macs is not None
    counts: list[int] = []
    for i in range(depth):
        ctx = LayerContext(index=i, depth=depth, base_filters=base_filters,
                           stage=sum(p < i for p in positions), num_stages=len(positions),
                           previous=counts[-1] if counts else None)
        raw = rule(ctx, **rule_kwargs)
        if not isinstance(raw, (int, float)) or math.isnan(raw) or raw <= 0:
            raise ValueError(f"rule {name!r} gave a non-positive filter count {raw!r} at layer {i}; "
                             "filter counts must be positive")
        counts.append(quantize(raw, round_to, min_filters, high) if not fitted
                      else quantize(raw, round_to, 1, _UNBOUNDED))
    kwargs = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in rule_kwargs.items()}
    if max_params is None and max_macs is None:
        return Plan(counts, rule=name, downsample_at=positions, rule_kwargs=kwargs)
    arch = architecture(input_shape=input_shape, num_classes=num_classes, block=block,
                        downsample=downsample, downsample_at=positions, kernel_size=kernel_size,
                        include_top=include_top)
    if max_macs is not None and None in arch.input_shape[:2]:
        raise ValueError(f"max_macs counts multiply-accumulates per image, which depend on the "
                         f"image size, and input_shape={tuple(input_shape)!r} leaves it open: give "
                         "the height and width, or budget max_params alone (parameters do not "
                         "depend on the size)")
    # The rule's order is kept wherever an order-keeping network lies within +-3% of the budget;
    # where none does (narrow networks step coarsely: a constant net steps every layer at once),
    # its layers are rounded one by one, since equal budgets are what make rules comparable.
    widths, scale, costs = fit_widths(counts, arch, max_params=max_params, max_macs=max_macs,
                                      round_to=round_to, min_filters=min_filters,
                                      max_filters=max_filters, strict_order=False)
    return Plan(widths, rule=name, downsample_at=positions, rule_kwargs=kwargs, profile=counts,
                scale=scale, costs=costs)


def architecture(*, input_shape: Sequence[int], num_classes: int | None, block: str,
                 downsample: str, downsample_at: Sequence[int], kernel_size: int,
                 include_top: bool = True) -> Architecture:
    """The validated non-width part of a network (what its cost depends on besides widths).

    The height and width may be None (any size, as keras.applications allows): every zoo network
    ends in global pooling or in its feature map, so only MACs need the size."""
    shape = check_input_shape(input_shape, any_size=True)
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    if include_top:
        check_num_classes(num_classes)
    else:
        num_classes = 0  # no head: nothing depends on it
    if block not in BLOCK_COSTS:
        raise ValueError(f"unknown block {block!r}; valid blocks: {', '.join(sorted(BLOCK_COSTS))}")
    if downsample not in DOWNSAMPLERS:
        raise ValueError(f"unknown downsample {downsample!r}; valid: {', '.join(DOWNSAMPLERS)}")
    check_positive_int("kernel_size", kernel_size)
    positions = () if downsample == "none" else tuple(downsample_at)
    smallest = min((d for d in shape[:2] if d is not None), default=None)
    if smallest is not None and smallest / 2 ** len(positions) < 1:
        raise ValueError(
            f"{len(positions)} downsamples (after layers {list(positions)}) would shrink the "
            f"{shape[0]}x{shape[1]} input below 1x1; at most {int(math.log2(smallest))} "
            "downsamples fit: lower depth, raise downsample_every, or pass downsample_at")
    return Architecture(input_shape=shape, num_classes=num_classes, block=block,
                        downsample=downsample, downsample_at=positions, kernel_size=kernel_size,
                        include_top=include_top)


DOWNSAMPLERS = ("max", "avg", "strided", "none")
_PLAN_KEYWORDS = keyword_names(plan)


def check_input_shape(input_shape: Any, *, any_size: bool = False) -> tuple[int, int, int]:
    """`input_shape` as an (H, W, C) tuple of positive ints, or a ValueError saying what is valid;
    `any_size`: H and W may also be None (images of any size)."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()

    def valid(d: Any, may_be_none: bool) -> bool:
        return (d is None and may_be_none) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)

    if len(shape) != 3 or not all(valid(d, any_size and i < 2) for i, d in enumerate(shape)):
        sizes = " (height and width may be None: any size)" if any_size else ""
        raise ValueError(f"input_shape must be (height, width, channels) with positive ints{sizes}, "
                         f"got {input_shape!r}")
    return shape  # type: ignore[return-value]


def check_num_classes(num_classes: Any) -> int:
    """`num_classes` if it is an int >= 2, else a ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes
