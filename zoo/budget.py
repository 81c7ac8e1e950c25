"""Fitting a width profile to a budget: one factor scales every layer (MorphNet's uniform "expand").

A profile is the relative widths of the layers (a rule's plan, or a search's per-layer draw).
`fit_widths` finds the factor whose rounded widths use a parameter or MAC budget within a tolerance,
so networks compared at one budget differ in shape, not in size. Rounding keeps the profile's
order (equal layers stay equal, a wider layer never ends narrower): a fitted doubling still
doubles. Narrow networks therefore step coarsely, and some budgets fall between two networks:
with `strict_order=False` (what `zoo.plan` passes) the layers are then rounded one by one, so
equal layers may differ by one kernel (constant at 20k parameters on 28x28: 21-20-21-20-21-21);
otherwise, or where that misses too, the error names the nearest budgets that can be reached.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

from .costs import Architecture, Costs, count_costs

__all__ = ["fit_widths", "quantize", "BudgetError", "TOLERANCE", "MAX_FIT_WIDTH"]

TOLERANCE = 0.03
# Widest layer a fitted plan may have unless max_filters says otherwise: bounds the search and
# keeps "reachable range" errors finite.
MAX_FIT_WIDTH = 4096
# Profiles with at most this many distinct widths (every built-in rule at the usual depths) try
# every rounding of each group (2^6 networks, well under a millisecond); more use a greedy fill.
_EXHAUSTIVE_GROUPS = 6
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
               max_filters: int | None = None, tolerance: float = TOLERANCE,
               strict_order: bool = True) -> tuple[list[int], float, Costs]:
    """(widths, factor, costs): `profile` scaled by one factor to use the budget within `tolerance`.

    With both budgets the tighter one decides and the other is only an upper bound. Prefers the
    widest network within the budget (rounding up the layers of one profile width together where a
    whole step is too coarse); takes one such step over it (still within tolerance) only when every
    network under it falls short. The widths keep the profile's order: layers of equal profile
    width stay equal and a wider one never ends narrower. With `strict_order=False` (explicit
    lists: a search's draw, a learned profile), a profile no order-keeping rounding can fit has
    its layers rounded one by one instead, so a draw is not lost to a coarse step. Raises
    BudgetError with the reachable range, or the nearest budgets that can be reached, otherwise.
    """
    max_params = _check_budget("max_params", max_params)
    max_macs = _check_budget("max_macs", max_macs)
    if max_params is None and max_macs is None:
        raise ValueError("fit_widths needs max_params or max_macs")
    if not profile or any(not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0
                          for p in profile):
        raise ValueError(f"a width profile must be positive numbers, got {list(profile)!r}")
    high = max_filters if max_filters is not None else MAX_FIT_WIDTH
    fit = _Fitter(list(profile), arch, round_to, min_filters, high, tolerance)
    result = fit(max_params, max_macs)
    if isinstance(result, tuple):
        return result
    capped = False
    if result.smallest is not None and max_filters is not None and len(set(profile)) > 1:
        # Beyond the profile with its widest layer at max_filters, scaling goes on with each
        # layer stopping at max_filters (the order is kept; the shape bends at the cap), so a
        # budget within the range's reach is filled within the range (a search's --filters).
        # Tried only where the plain fit failed, so every plan it made stays as it was.
        capped = True
        fit = _Fitter(list(profile), arch, round_to, min_filters, high, tolerance, capped=True)
        result = fit(max_params, max_macs)
        if isinstance(result, tuple):
            return result
    if not strict_order and result.smallest is None:
        loose = _Fitter(list(profile), arch, round_to, min_filters, high, tolerance, ordered=False,
                        capped=capped)
        again = loose(max_params, max_macs)
        if isinstance(again, tuple):
            return again
    if result.smallest is not None:  # outside the range of the narrowest to the widest network
        raise BudgetError(_range_message(result.smallest, result.largest, max_params, max_macs,
                                         arch))
    low, high = fit.nearest_budgets(max_params, max_macs, result)
    kind, asked = ("max_params", max_params) if result.binding == "params" else ("max_macs", max_macs)
    near = " and ".join(f"{kind}={b:,}" for b in (low, high) if b is not None)
    raise BudgetError(
        f"{kind}={asked:,} falls between two networks this plan can make, neither within "
        f"+-{tolerance:.0%} of it: {result.under_widths} ({_fmt(result.under)}) and "
        f"{result.over_widths} ({_fmt(result.over)}); the nearest budgets that can be reached are "
        f"{near} (or use a deeper/shallower network, whose widths step differently)")


class _Miss:
    """Why a budget could not be fitted: out of range (smallest/largest) or in a gap (under/over)."""

    def __init__(self, *, smallest: Costs | None = None, largest: Costs | None = None,
                 under_widths: list[int] | None = None, under: Costs | None = None,
                 over_widths: list[int] | None = None, over: Costs | None = None,
                 binding: str = "params") -> None:
        self.smallest, self.largest = smallest, largest
        self.under_widths, self.under = under_widths, under
        self.over_widths, self.over = over_widths, over
        self.binding = binding


class _Fitter:
    """Fits one profile on one architecture to budgets; kept whole so that a miss can probe the
    budgets around it."""

    def __init__(self, profile: list[float], arch: Architecture, round_to: int | None,
                 min_filters: int, high: int, tolerance: float, ordered: bool = True,
                 capped: bool = False) -> None:
        self.profile, self.arch, self.round_to = profile, arch, round_to
        self.min_filters, self.high, self.tolerance = min_filters, high, tolerance
        self.step = round_to or 1
        # Layers of one profile width move together, and a group may not pass a wider one
        # (ordered); otherwise every layer is its own group, free of the others.
        self.ordered = ordered
        values = sorted(set(profile))
        self.groups = ([[i for i, p in enumerate(profile) if p == v] for v in values] if ordered
                       else sorted(([i] for i in range(len(profile))), key=lambda g: profile[g[0]]))
        # The factor range ends where the widest layer reaches `high`, or (capped) where every
        # layer has: widths stop at `high` on the way.
        self.peak = values[-1]
        self.top = self.high / (values[0] if capped else values[-1]) * 1.01

    def widths(self, scale: float) -> list[int]:
        return [quantize(scale * p, self.round_to, self.min_filters, self.high)
                for p in self.profile]

    def costs(self, widths: list[int]) -> Costs:
        return count_costs(widths, self.arch)

    def __call__(self, max_params: int | None,
                 max_macs: int | None) -> tuple[list[int], float, Costs] | _Miss:
        def fits(c: Costs) -> bool:
            return ((max_params is None or c.params <= max_params)
                    and (max_macs is None or c.macs <= max_macs))

        def usage(c: Costs) -> float:  # fraction of the binding budget used
            return max(c.params / max_params if max_params else 0.0,
                       c.macs / max_macs if max_macs else 0.0)

        lo, hi = self.min_filters / self.peak * 0.5, self.top
        smallest, largest = self.costs(self.widths(lo)), self.costs(self.widths(hi))
        if not fits(smallest) or (fits(largest) and usage(largest) < 1 - self.tolerance):
            return _Miss(smallest=smallest, largest=largest)
        if fits(largest):
            return self.widths(hi), hi, largest
        for _ in range(_STEPS):  # invariant: widths(lo) fits, widths(hi) does not
            mid = (lo + hi) / 2
            if fits(self.costs(self.widths(mid))):
                lo = mid
            else:
                hi = mid
        base = self.widths(lo)
        if len(self.groups) <= _EXHAUSTIVE_GROUPS:
            chosen = self._closest_in_shape(base, usage)
            if chosen is not None:
                return chosen, lo, self.costs(chosen)
        best = self._fill_by_rounding(base, [hi * p for p in self.profile], fits)
        under = self.costs(best)
        if usage(under) >= 1 - self.tolerance:
            return best, lo, under
        # Nothing under the budget is close enough: the cheapest single step over it may be.
        steps = [w for g in range(len(self.groups)) if (w := self._raised(best, g)) is not None]
        over_widths = min(steps, key=lambda w: usage(self.costs(w))) if steps else self.widths(hi)
        over = self.costs(over_widths)
        if steps and usage(over) <= 1 + self.tolerance:
            return over_widths, hi, over
        binding = ("params" if max_params and (not max_macs or
                                                under.params / max_params >= under.macs / max_macs)
                   else "macs")
        return _Miss(under_widths=best, under=under, over_widths=over_widths, over=over,
                     binding=binding)

    def _raised(self, widths: list[int], g: int) -> list[int] | None:
        """`widths` with group g one step wider, or None when that passes a wider group's width
        (or the widest allowed)."""
        width = widths[self.groups[g][0]] + self.step
        if width > self.high or (self.ordered and
                                 any(widths[h[0]] < width for h in self.groups[g + 1:])):
            return None
        raised = list(widths)
        for i in self.groups[g]:
            raised[i] = width
        return raised

    def _closest_in_shape(self, widths: list[int], usage) -> list[int] | None:
        """Of the order-keeping choices of each group's width in `widths` or one step more (few
        groups: at most 2^_EXHAUSTIVE_GROUPS), the one truest to the profile's shape (smallest
        spread of width / profile across groups) among those within the budget and tolerance,
        else among those over it within tolerance. Only when neither exists, one step less is
        tried too. Every candidate is a rounding of one scaled profile (each group within one
        step of a common scale), so the rule's shape bends by rounding only. None if none fits."""
        low = max(self.min_filters, self.round_to or 1)
        for steps in ((0, 1), (-1, 0, 1)):
            choices = [tuple(w for w in (widths[g[0]] + k * self.step for k in steps) if w >= low)
                       for g in self.groups]
            chosen = self._best_of(widths, choices, usage)
            if chosen is not None:
                return chosen
        return None

    def _best_of(self, widths: list[int], choices: list[tuple[int, ...]],
                 usage) -> list[int] | None:
        values = [self.profile[g[0]] for g in self.groups]
        under: tuple[float, float, list[int]] | None = None
        over: tuple[float, float, list[int]] | None = None
        for combo in itertools.product(*choices):
            if max(combo) > self.high or (self.ordered and
                                          any(a > b for a, b in zip(combo, combo[1:]))):
                continue
            # one scale s with |width - s * profile| <= step for every group
            if (max((w - self.step) / v for w, v in zip(combo, values))
                    > min((w + self.step) / v for w, v in zip(combo, values))):
                continue
            candidate = list(widths)
            for g, width in zip(self.groups, combo):
                for i in g:
                    candidate[i] = width
            u = usage(self.costs(candidate))
            scales = [w / v for w, v in zip(combo, values)]
            spread = max(scales) / min(scales)
            if 1 - self.tolerance <= u <= 1:
                if under is None or (spread, -u) < under[:2]:
                    under = (spread, -u, candidate)
            elif 1 < u <= 1 + self.tolerance:
                if over is None or (spread, u) < over[:2]:
                    over = (spread, u, candidate)
        return under[2] if under else over[2] if over else None

    def _fill_by_rounding(self, widths: list[int], targets: list[float], fits) -> list[int]:
        """Round up, one group at a time, the groups furthest below their scaled width while the
        budget allows: where a one-unit change of every layer at once is a coarse step (narrow
        networks), this gets within the tolerance while keeping each layer within one step of the
        single-factor widths and the profile's order."""
        while True:
            order = sorted(range(len(self.groups)),
                           key=lambda g: widths[self.groups[g][0]] - targets[self.groups[g][0]])
            for g in order:
                i = self.groups[g][0]
                if widths[i] >= targets[i] + self.step:
                    continue
                raised = self._raised(widths, g)
                if raised is not None and fits(self.costs(raised)):
                    widths = raised
                    break
            else:
                return widths

    def nearest_budgets(self, max_params: int | None, max_macs: int | None,
                        miss: _Miss) -> tuple[int | None, int | None]:
        """The closest budgets of the binding kind below and above a missed one that fit."""
        params = miss.binding == "params"
        asked = max_params if params else max_macs
        assert asked is not None and miss.under is not None and miss.over is not None

        def ok(budget: int) -> bool:
            args = (budget, max_macs) if params else (max_params, budget)
            return budget >= 1 and isinstance(self(*args), tuple)

        def probe(budget: int, direction: int) -> int | None:
            for _ in range(200):  # the first try almost always fits; steps of 0.2% after it
                if budget < 1:
                    return None
                if ok(budget):
                    return budget
                budget += direction * max(1, budget // 500)
            return None

        under, over = ((miss.under.params, miss.over.params) if params
                       else (miss.under.macs, miss.over.macs))
        # The widths just under the budget use a budget they are within tolerance of, and so do
        # the widths just over it.
        low = probe(min(math.floor(under / (1 - self.tolerance)), asked - 1), -1)
        high = probe(max(math.ceil(over / (1 + self.tolerance)), asked + 1), +1)
        return low, high


def _fmt(c: Costs) -> str:
    return f"{c.params:,} params" if c.macs is None else f"{c.params:,} params, {c.macs:,} MACs"


def _range_message(smallest: Costs, largest: Costs, max_params: int | None,
                   max_macs: int | None, arch: Architecture) -> str:
    asked = " and ".join(f"{k}={v:,}" for k, v in (("max_params", max_params),
                                                    ("max_macs", max_macs)) if v is not None)
    head = f"{arch.num_classes} classes" if arch.include_top else "no classifier head"
    return (f"{asked} cannot be reached by scaling this plan ({arch.block} blocks, input "
            f"{'x'.join('?' if d is None else str(d) for d in arch.input_shape)}, {head}): it ranges from "
            f"{_fmt(smallest)} (narrowest) to {_fmt(largest)} (widest layer {MAX_FIT_WIDTH} or "
            "max_filters)")

