"""cnn-zoo tuning: equal-budget comparisons and keras-tuner searches over filter-growth rules and
per-layer kernel counts.

Names are imported on first use, so the command-line tools answer `--help` and argument errors
without paying for TensorFlow's start-up.
"""
from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "constraints": ["Budgets", "MeasuredCosts", "measure_costs", "measure_latency_ms"],
    "searches.hypermodel": ["MODES", "CostLogger", "ZooHyperModel"],
    "searches.results": ["SearchResult", "pareto_front"],
    "searches.config": ["BudgetError", "SearchBudgetError", "SearchError", "SearchConfig"],
    "searches.driver": ["search"],
    "searches.tuners": ["TUNERS"],
    "searches.slim": ["learn_profile", "fit_profile", "SlimResult"],
    "comparisons.compare": ["compare"],
    "comparisons.config": ["CompareConfig", "CompareError"],
})
