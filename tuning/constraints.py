"""A search's constraints: budgets (max parameters, max MACs, max measured latency), the measured
costs a model is checked against, and the record of a rejected trial. (Fitting widths *to* a budget
is `zoo.budget`'s job; this module only checks and measures.)

Parameters and MACs come from `zoo.describe` (exact, no training needed). Latency is measured on
this machine: the median of a few timed single-image calls of the model traced into a graph, as
TensorFlow Serving runs an exported signature, so it reflects this CPU/GPU, not a datasheet. A
model over any budget is rejected at the start of `HyperModel.fit` by raising `OverBudget` (a
`keras_tuner.errors.FailedTrialError`, keras-tuner's own way to mark a trial FAILED without retrying
it). The tuner records the rejection as data, `Rejection` in the trial's folder (its costs and the
budgets it broke), which reports read instead of parsing messages or rebuilding the model.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from cnnzoo.files import write_atomic

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

__all__ = ["Budgets", "MeasuredCosts", "Rejection", "measure_costs", "measure_latency_ms"]

# In a rejected trial's folder; in chief/worker mode the folder is shared (keras-tuner requires it
# for checkpoints), so the chief reads what a worker recorded.
REJECTION_FILE = "zoo_rejection.json"

LATENCY_RUNS = 7


@dataclass(frozen=True)
class Budgets:
    """Upper bounds a model must meet before it trains; None means unbounded."""

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_params", "max_macs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}")
        lat = self.max_latency_ms
        if lat is not None and (isinstance(lat, bool) or not isinstance(lat, (int, float))
                                or not math.isfinite(lat) or lat <= 0):
            raise ValueError(f"max_latency_ms must be None or a positive number, got {lat!r}")

    @classmethod
    def coerce(cls, value: "Budgets | Mapping[str, Any] | None") -> "Budgets":
        """Accept a Budgets, a dict with some of its fields, or None (no budget)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"max_params", "max_macs", "max_latency_ms"})
            if unknown:
                raise ValueError(f"budgets got unknown key(s) {unknown}; valid: max_latency_ms, "
                                 "max_macs, max_params")
            return cls(**value)
        raise TypeError(f"budgets must be a tuning.Budgets, a dict or None, got {type(value).__name__}")

    @property
    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    @property
    def size_budgets(self) -> dict[str, int]:
        """The parameter/MAC budgets that are set, as zoo.plan keywords (fillable by scaling)."""
        return {k: v for k, v in (("max_params", self.max_params), ("max_macs", self.max_macs))
                if v is not None}

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None

    def violations(self, costs: "MeasuredCosts", slack: float = 0.0) -> list[str]:
        """Human-readable reasons `costs` breaks this budget (empty when it fits).

        `slack` lets params and MACs exceed their budget by that fraction: a model fitted to the
        budget may land up to the fitting tolerance above it.
        """
        out = []
        if self.max_params is not None and costs.params > self.max_params * (1 + slack):
            out.append(f"params {costs.params:,} > max_params {self.max_params:,}")
        if self.max_macs is not None and costs.macs > self.max_macs * (1 + slack):
            out.append(f"MACs {costs.macs:,} > max_macs {self.max_macs:,}")
        if (self.max_latency_ms is not None and costs.latency_ms is not None
                and costs.latency_ms > self.max_latency_ms):
            out.append(f"latency {costs.latency_ms:.2f} ms > max_latency_ms {self.max_latency_ms:g}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeasuredCosts:
    """What a built model costs: parameters and multiply-accumulates per image (as `zoo.describe`
    counts them) and, when measured here, its latency in ms (`zoo.costs.Costs` is the counted
    params/MACs of a plan, before anything is built)."""

    params: int
    macs: int
    latency_ms: float | None = None

    def as_metrics(self) -> dict[str, float]:
        out = {"params": float(self.params), "macs": float(self.macs)}
        if self.latency_ms is not None:
            out["latency_ms"] = float(self.latency_ms)
        return out


@dataclass(frozen=True)
class Rejection:
    """A trial that was never trained: what its model cost and which budgets that broke."""

    costs: MeasuredCosts
    violations: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "over budget: " + "; ".join(self.violations)

    @staticmethod
    def _path(project_dir: str | os.PathLike, trial_id: str) -> str:
        return os.path.join(project_dir, f"trial_{trial_id}", REJECTION_FILE)

    def save(self, project_dir: str | os.PathLike, trial_id: str) -> None:
        write_atomic(self._path(project_dir, trial_id),
                     json.dumps({"costs": asdict(self.costs), "violations": list(self.violations)}))

    @classmethod
    def load(cls, project_dir: str | os.PathLike, trial_id: str) -> "Rejection | None":
        """The rejection recorded for a trial of the project, or None (not rejected, or an
        unreadable record)."""
        try:
            with open(cls._path(project_dir, trial_id), encoding="utf-8") as fh:
                d = json.load(fh)
            return cls(MeasuredCosts(**d["costs"]), tuple(str(v) for v in d["violations"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None


def measure_latency_ms(model: Any, runs: int = LATENCY_RUNS) -> float:
    """Median wall time (ms) of a single-image inference of `model` on this machine.

    The model runs traced into a graph (`tf.function`), as it runs once exported and served: an
    eager Keras call would time per-layer Python dispatch and rank models by layer count rather
    than by cost.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive int, got {runs!r}")
    import tensorflow as tf

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    x = tf.zeros((1, *shape), dtype=model.inputs[0].dtype)
    infer = tf.function(lambda images: model(images, training=False))
    infer(x)  # trace, then the first run allocates
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = infer(x)
        np.asarray(out)  # make sure the result is materialised before stopping the clock
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure_costs(model: Any, *, latency: bool = True) -> MeasuredCosts:
    """Params and MACs from `zoo.describe`, plus measured latency unless `latency=False`."""
    import zoo

    desc = zoo.describe(model)
    if desc.total_macs is None:
        raise ValueError(f"model {model.name!r} takes images of any size "
                         f"(input {tuple(model.inputs[0].shape)}), but MACs and latency depend on the "
                         "size: measure a model built with input_shape=(height, width, channels)")
    return MeasuredCosts(params=int(desc.total_params), macs=int(desc.total_macs),
                 latency_ms=measure_latency_ms(model) if latency else None)
