"""cnn-zoo tuning: equal-budget comparisons and keras-tuner searches over filter-growth rules and
per-layer kernel counts.

Names are imported on first use, so the command-line tools answer `--help` and argument errors
without paying for TensorFlow's start-up.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Budgets": "constraints", "MeasuredCosts": "constraints", "measure_costs": "constraints",
    "measure_latency_ms": "constraints",
    "MODES": "hypermodel", "CostLogger": "hypermodel", "ZooHyperModel": "hypermodel",
    "SearchResult": "results", "pareto_front": "results",
    "BudgetError": "config", "SearchBudgetError": "config", "SearchError": "config", "SearchConfig": "config", "search": "driver",
    "TUNERS": "tuners", "learn_profile": "slim", "fit_profile": "slim", "SlimResult": "slim",
    "compare": "compare", "CompareConfig": "compare", "CompareError": "compare",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
