"""Parameters and MACs of a zoo network computed from its widths alone, without building it.

Budget fitting evaluates dozens of candidate widths per plan and a search thousands; building each
in Keras would cost more than the search itself. The counts follow `zoo.describe` exactly
(every weight Keras counts, BatchNorm's moving statistics included; MACs of convolutions and
dense layers only), and a test holds the two together for every block and downsampler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["Costs", "Architecture", "count_costs", "BLOCK_COSTS"]

_BN = 4  # gamma, beta, moving mean, moving variance per channel


@dataclass(frozen=True)
class Costs:
    """What a network costs: weights (trainable or not) and multiply-accumulates per image."""

    params: int
    macs: int | None  # None when the input's height or width is open (MACs depend on them)


@dataclass(frozen=True)
class Architecture:
    """Everything except the widths that decides a zoo network's cost."""

    input_shape: tuple[int, int, int] = (32, 32, 3)  # height and width may be None (any size)
    num_classes: int = 10
    block: str = "plain"
    downsample: str = "max"
    downsample_at: tuple[int, ...] = ()  # layers followed by a halving (empty for "none")
    kernel_size: int = 3
    include_top: bool = True  # False: no classifier head (num_classes is then ignored)


# (cin, cout, kernel, stride, out_h, out_w) -> (params, macs) of one block
BlockCost = Callable[[int, int, int, int, int, int], tuple[int, int]]


def _plain(cin: int, cout: int, k: int, stride: int, h: int, w: int) -> tuple[int, int]:
    return k * k * cin * cout + _BN * cout, h * w * k * k * cin * cout


def _residual(cin: int, cout: int, k: int, stride: int, h: int, w: int) -> tuple[int, int]:
    params = k * k * cin * cout + k * k * cout * cout + 2 * _BN * cout
    macs = h * w * k * k * (cin * cout + cout * cout)
    if stride != 1 or cin != cout:  # the 1x1 projection shortcut
        params += cin * cout + _BN * cout
        macs += h * w * cin * cout
    return params, macs


def _separable(cin: int, cout: int, k: int, stride: int, h: int, w: int) -> tuple[int, int]:
    return k * k * cin + cin * cout + _BN * cout, h * w * (k * k * cin + cin * cout)


BLOCK_COSTS: dict[str, BlockCost] = {"plain": _plain, "residual": _residual,
                                     "separable": _separable}


def count_costs(filters: Sequence[int], arch: Architecture) -> Costs:
    """Params and MACs of the network with these per-layer widths (head included, if any); MACs
    are None when the input's height or width is None (any size)."""
    if arch.block not in BLOCK_COSTS:
        raise ValueError(f"no cost model for block {arch.block!r}; known: {', '.join(BLOCK_COSTS)}")
    block = BLOCK_COSTS[arch.block]
    h, w, cin = arch.input_shape
    any_size = h is None or w is None
    if any_size:  # parameters do not depend on the size; MACs are unknown without it
        h = w = 1
    params = macs = 0
    for i, cout in enumerate(filters):
        stride = 2 if arch.downsample == "strided" and (i - 1) in arch.downsample_at else 1
        h, w = math.ceil(h / stride), math.ceil(w / stride)
        p, m = block(cin, cout, arch.kernel_size, stride, h, w)
        params, macs = params + p, macs + m
        if arch.downsample in ("max", "avg") and i in arch.downsample_at:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        cin = cout
    if arch.include_top:
        params += cin * arch.num_classes + arch.num_classes
        macs += cin * arch.num_classes
    return Costs(params=params, macs=None if any_size else macs)
