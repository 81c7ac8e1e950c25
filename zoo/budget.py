"""Fitting a width profile to a budget: one factor scales every layer (MorphNet's uniform "expand").

A profile is the relative widths of the layers (a rule's plan, or a search's per-layer draw).
`fit_widths` finds the factor whose rounded widths use a parameter or MAC budget within a tolerance,
so networks compared at one budget differ in shape, not in size.
"""
from __future__ import annotations

from typing import Sequence

from .costs import Architecture, Costs, count_costs

__all__ = ["fit_widths", "quantize", "BudgetError", "TOLERANCE", "MAX_FIT_WIDTH"]

TOLERANCE = 0.03
# Widest layer a fitted plan may have unless max_filters says otherwise: bounds the search and
# keeps "reachable range" errors finite.
MAX_FIT_WIDTH = 4096
_STEPS = 64  # bisection steps on the factor: far below one width unit at any reachable scale


class BudgetError(ValueError):
    """No single factor fits the profile to the budget; the message gives the reachable range."""


def _check_budget(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or a positive int, got {value!r}")
    return value


def quantize(x: float, round_to: int | None, low: int, high: int) -> int:
    n = round(x / round_to) * round_to if round_to else round(x)
    return int(min(max(n, low, round_to or 1), high))


def fit_widths(profile: Sequence[float], arch: Architecture, *, max_params: int | None = None,
               max_macs: int | None = None, round_to: int | None = None, min_filters: int = 1,
               max_filters: int | None = None,
               tolerance: float = TOLERANCE) -> tuple[list[int], float, Costs]:
    """(widths, factor, costs): `profile` scaled by one factor to use the budget within `tolerance`.

    With both budgets the tighter one decides and the other is only an upper bound. Prefers the
    widest network within the budget (rounding single layers up where a whole step is too
    coarse); takes one layer's step over it (still within tolerance) only when every network
    under it falls short. Raises BudgetError with the reachable range otherwise.
    """
    max_params = _check_budget("max_params", max_params)
    max_macs = _check_budget("max_macs", max_macs)
    if max_params is None and max_macs is None:
        raise ValueError("fit_widths needs max_params or max_macs")
    if not profile or any(not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0
                          for p in profile):
        raise ValueError(f"a width profile must be positive numbers, got {list(profile)!r}")
    high = max_filters if max_filters is not None else MAX_FIT_WIDTH
    peak = max(profile)

    def widths(scale: float) -> list[int]:
        return [quantize(scale * p, round_to, min_filters, high) for p in profile]

    def costs(scale: float) -> Costs:
        return count_costs(widths(scale), arch)

    def fits(c: Costs) -> bool:
        return ((max_params is None or c.params <= max_params)
                and (max_macs is None or c.macs <= max_macs))

    def usage(c: Costs) -> float:  # fraction of the binding budget used
        return max(c.params / max_params if max_params else 0.0,
                   c.macs / max_macs if max_macs else 0.0)

    lo, hi = min_filters / peak * 0.5, high / peak * 1.01
    smallest, largest = costs(lo), costs(hi)
    if not fits(smallest) or (fits(largest) and usage(largest) < 1 - tolerance):
        raise BudgetError(_range_message(smallest, largest, max_params, max_macs, arch))
    if fits(largest):
        return widths(hi), hi, largest
    for _ in range(_STEPS):  # invariant: costs(lo) fits, costs(hi) does not
        mid = (lo + hi) / 2
        if fits(costs(mid)):
            lo = mid
        else:
            hi = mid
    best = _fill_by_rounding(widths(lo), [hi * p for p in profile], arch, fits, round_to or 1,
                             high)
    under = count_costs(best, arch)
    if usage(under) >= 1 - tolerance:
        return best, lo, under
    # Nothing under the budget is close enough: the cheapest single step over it may be.
    steps = [best[:i] + [best[i] + (round_to or 1)] + best[i + 1:] for i in range(len(best))
             if best[i] + (round_to or 1) <= high]
    if steps:
        over_widths = min(steps, key=lambda w: usage(count_costs(w, arch)))
        over = count_costs(over_widths, arch)
        if usage(over) <= 1 + tolerance:
            return over_widths, hi, over
    over = costs(hi)
    raise BudgetError(
        f"no single scale of the profile {list(profile)} uses the budget within "
        f"+-{tolerance:.0%}: the closest widths are {widths(lo)} ({_fmt(under)}) and "
        f"{widths(hi)} ({_fmt(over)}); widths step too coarsely here, so raise the budget or "
        "use a deeper/shallower network")


def _fill_by_rounding(widths: list[int], targets: list[float], arch: Architecture, fits,
                      step: int, high: int) -> list[int]:
    """Round up, one layer at a time, the layers furthest below their scaled width while the
    budget allows: where a one-unit change of every layer at once is a coarse step (narrow
    networks), this gets within the tolerance while keeping each layer within one step of the
    single-factor widths."""
    widths = list(widths)
    while True:
        order = sorted(range(len(widths)), key=lambda i: widths[i] - targets[i])
        for i in order:
            if widths[i] + step > high or widths[i] >= targets[i] + step:
                continue
            trial = widths[:i] + [widths[i] + step] + widths[i + 1:]
            if fits(count_costs(trial, arch)):
                widths = trial
                break
        else:
            return widths


def _fmt(c: Costs) -> str:
    return f"{c.params:,} params, {c.macs:,} MACs"


def _range_message(smallest: Costs, largest: Costs, max_params: int | None,
                   max_macs: int | None, arch: Architecture) -> str:
    asked = " and ".join(f"{k}={v:,}" for k, v in (("max_params", max_params),
                                                    ("max_macs", max_macs)) if v is not None)
    return (f"{asked} cannot be reached by scaling this plan ({arch.block} blocks, input "
            f"{'x'.join(map(str, arch.input_shape))}, "
            f"{f'{arch.num_classes} classes' if arch.include_top else 'no classifier head'}): it ranges from "
            f"{_fmt(smallest)} (narrowest) to {_fmt(largest)} (widest layer {MAX_FIT_WIDTH} or "
            "max_filters)")

