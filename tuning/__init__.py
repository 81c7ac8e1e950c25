"""cnn-zoo tuning: keras-tuner searches over filter-growth rules and per-layer kernel counts."""
from zoo import _env  # noqa: F401

from .budgets import Budgets, Costs, measure_costs, measure_latency_ms
from .hypermodel import MODES, CostLogger, ZooHyperModel
from .results import SearchResult, pareto_front
from .search import BudgetError, SearchError, search
from .tuners import TUNERS

__all__ = ["ZooHyperModel", "Budgets", "Costs", "CostLogger", "measure_costs", "measure_latency_ms",
           "search", "SearchResult", "SearchError", "BudgetError", "pareto_front", "MODES", "TUNERS"]
