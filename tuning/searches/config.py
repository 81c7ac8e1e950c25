"""`SearchConfig`: everything `tuning.search` and `zoo-tune` take, validated once, here.

The command line builds it from its flags (field names = flag names), Python callers build it
directly or pass its fields to `tuning.search` as keywords. The search space's own arguments
(depth, filters, blocks, ...) are validated by `ZooHyperModel`, the space's owner, when the search
builds it; everything else is checked in `__post_init__`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from zoo.budget import BudgetError

__all__ = ["SearchConfig", "SearchError", "SearchBudgetError", "BudgetError", "SEED_SOURCES", "MODES",
           "SEARCH_MODES", "DEFAULT_PATIENCE", "SETTINGS_FILE", "COST_METRICS", "TRIAL_METRICS", "TUNER_NAMES",
           "DISTRIBUTIONS"]

# The names the command line offers (this module loads no Keras, so `--help` stays instant).
MODES = ("rule", "per_layer")  # the hypermodel's search spaces
SEARCH_MODES = MODES + ("slim",)  # slim learns per-layer widths in one training
TUNER_NAMES = ("random", "bayesian", "hyperband", "grid")
DISTRIBUTIONS = ("mirrored",)

DEFAULT_MAX_TRIALS = 10
# Early stopping's patience, the same for zoo-tune, tuning.search and ZooHyperModel.
DEFAULT_PATIENCE = 3
SETTINGS_FILE = "zoo_settings.json"  # a project's settings, beside keras-tuner's files
# What every trial logs (Keras' fit with the accuracy metric, then CostLogger's costs): an
# objective outside these would fail every trial (early stopping and the oracle find no value).
COST_METRICS = ("params", "macs", "latency_ms")  # lower is better
TRIAL_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss") + COST_METRICS
SEED_SOURCES = ("slim",)  # besides rule names: where a per-layer search's first trial comes from

# Fields that decide what a project's trials are; a resumed project must match them.
_PROJECT_SETTINGS = ("dataset", "tuner", "mode", "rules", "max_trials", "epochs",
                     "executions_per_trial", "max_params", "max_macs", "max_latency_ms", "depth",
                     "filters", "filter_sampling", "filter_step", "blocks", "kernel_sizes",
                     "downsamples", "dropouts", "learning_rates", "batch_sizes", "objective",
                     "seed", "train_limit", "patience", "max_rejections", "seed_from",
                     "fill_budget", "slim_strength", "slim_epochs")


class SearchError(ValueError):
    """A search that cannot start or cannot go on; the message says what to change."""


class SearchBudgetError(SearchError, BudgetError):
    """No model of the search space meets the budget.

    A `zoo.budget.BudgetError` (the project's one "this budget cannot be met" error: `except
    zoo.budget.BudgetError`, or `tuning.BudgetError`, the same class, catches zoo's fitting errors
    and this one) and a SearchError (what `tuning.search` raises for input it refuses)."""


def _int(value: Any, name: str, low: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SearchError(f"{name} must be {'None or ' if optional else ''}an int >= {low}, "
                          f"got {value!r}")


def _number(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise SearchError(f"{name} must be None or a positive number, got {value!r}")


def _tuple(value: Any) -> Any:
    """Lists become tuples (a frozen config); a single string stays one item."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return tuple(value)


@dataclass(frozen=True)
class SearchConfig:
    """A keras-tuner search over zoo's rules or per-layer widths (see `tuning.search`).

    `mode`: "rule" (the rule is a hyperparameter), "per_layer" (every layer's width is one) or
    "slim" (one wide training learns the widths; its profile, fitted to the budget, is the
    project's trial). `max_trials`: trained trials (default 10; 1 in slim mode). `max_minutes`:
    no trial starts after that much time in this run (a wall-clock budget; the slim training
    counts towards it).
    `seed_from` (per_layer mode): the first trial is a rule's plan ("doubling") or the slim
    profile ("slim"). With `max_params`/`max_macs` and `fill_budget`, every trial is scaled to
    fill the budget (+-3%). `workers` > 1: keras-tuner's chief and that many local workers.
    """

    dataset: Any = "digits"  # a zoo.datasets name or a loaded zoo.datasets.Dataset
    tuner: str = "random"
    mode: str = "rule"
    rules: tuple[str, ...] | None = None
    max_trials: int | None = None
    max_minutes: float | None = None
    epochs: int | None = None  # None: the shared recipe's (zoo.Recipe), from the training-set size
    executions_per_trial: int = 1
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    depth: tuple[int, int] = (2, 4)
    filters: tuple[int, int] = (8, 64)
    filter_sampling: str = "log"
    filter_step: int | None = None
    blocks: tuple[str, ...] = ("plain",)
    kernel_sizes: tuple[int, ...] = (3,)
    downsamples: tuple[str, ...] = ("max",)
    dropouts: tuple[float, ...] = (0.0,)
    learning_rates: tuple[float, ...] = (3e-3,)
    batch_sizes: tuple[int, ...] | None = None
    objective: Any = "val_accuracy"  # a metric name or a list of them (multi-objective)
    directory: str | os.PathLike = "runs"
    project: str | None = None
    overwrite: bool = False
    seed: int | None = 0
    export: int = 0
    export_dir: str | os.PathLike = "saved_models"
    export_name: str | None = None
    tensorboard: str | None = None
    distribution: str | None = None
    train_limit: int | None = None
    patience: int = DEFAULT_PATIENCE
    max_consecutive_failures: int = 10
    max_rejections: int | None = None
    seed_from: str | None = None
    rerank_top: int = 0
    rerank_executions: int = 2
    fill_budget: bool = True
    slim_strength: float | None = None
    slim_epochs: int | None = None
    verbose: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for f in ("rules", "depth", "filters", "blocks", "kernel_sizes", "downsamples",
                  "dropouts", "learning_rates", "batch_sizes"):
            set_(f, _tuple(getattr(self, f)))
        if isinstance(self.objective, list):
            set_("objective", tuple(self.objective))
        if self.tuner not in TUNER_NAMES:
            raise SearchError(f"unknown tuner {self.tuner!r}; valid: {', '.join(TUNER_NAMES)}")
        if self.mode not in SEARCH_MODES:
            raise SearchError(f"unknown mode {self.mode!r}; valid: {', '.join(SEARCH_MODES)}")
        if self.rules is not None and len(self.rules) == 0:
            import zoo

            raise SearchError(f"rules is empty; name at least one of: "
                              f"{', '.join(r for r in zoo.list_models() if r != 'custom')}")
        if self.max_trials is None:
            set_("max_trials", 1 if self.mode == "slim" else DEFAULT_MAX_TRIALS)
        for name, low in (("max_trials", 1), ("executions_per_trial", 1),
                          ("export", 0), ("max_consecutive_failures", 1), ("verbose", 0),
                          ("rerank_top", 0), ("rerank_executions", 1), ("patience", 0),
                          ("workers", 1)):
            _int(getattr(self, name), name, low)
        if self.verbose > 2:
            raise SearchError(f"verbose must be 0 (silent), 1 (a line per trial) or 2 (Keras' "
                              f"per-epoch bars too), got {self.verbose!r}")
        if self.max_rejections is None:
            set_("max_rejections", 4 * self.max_trials)
        for name, low in (("max_rejections", 0), ("train_limit", 1), ("seed", 0), ("epochs", 1),
                          ("slim_epochs", 1)):
            _int(getattr(self, name), name, low, optional=True)
        for name in ("max_params", "max_macs"):
            _int(getattr(self, name), name, 1, optional=True)
        _number(self.max_latency_ms, "max_latency_ms")
        _number(self.max_minutes, "max_minutes")
        _number(self.slim_strength, "slim_strength")
        for name in ("overwrite", "fill_budget"):
            if not isinstance(getattr(self, name), bool):
                raise SearchError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.distribution is not None and self.distribution not in DISTRIBUTIONS:
            raise SearchError(f"unknown distribution {self.distribution!r}; valid: "
                              f"{', '.join(DISTRIBUTIONS)}")
        self._check_modes()
        self._check_names()

    def _check_modes(self) -> None:
        if self.mode == "slim":
            if self.max_trials != 1:
                raise SearchError("mode 'slim' trains one trial, the learned profile; to search "
                                  "around it use mode='per_layer' with seed_from='slim'")
            if self.tuner not in ("random", "grid"):
                raise SearchError(f"mode 'slim' trains its learned profile; tuner {self.tuner!r} "
                                  "has nothing to search there (use the default, random)")
        elif self.slim_strength is not None or self.slim_epochs is not None:
            if self.seed_from != "slim":
                raise SearchError("slim_strength/slim_epochs only apply to mode='slim' or "
                                  "seed_from='slim'")
        if self.seed_from is not None:
            if self.mode != "per_layer":
                raise SearchError("seed_from only applies to mode='per_layer' (its first trial is "
                                  "a rule's plan or the slim profile)")
            if self.tuner == "hyperband":
                raise SearchError("seed_from does not apply to tuner='hyperband' (its brackets "
                                  "decide the trials); use random or bayesian")
            import zoo

            valid = [r for r in zoo.list_models() if r != "custom"] + list(SEED_SOURCES)
            if self.seed_from not in valid:
                raise SearchError(f"unknown seed_from {self.seed_from!r}; valid: {', '.join(valid)}")
        names = [self.objective] if isinstance(self.objective, str) else (
            list(self.objective) if isinstance(self.objective, tuple) else [])
        for name in names:  # a keras_tuner.Objective is the caller's own: taken as it is
            if isinstance(name, str) and name not in TRIAL_METRICS:
                raise SearchError(f"unknown `objective` {name!r}; trials log: {', '.join(TRIAL_METRICS)}")
        if self.rerank_top and not isinstance(self.objective, str):
            raise SearchError("rerank_top needs a single objective (it averages one metric over "
                              f"runs); got {self.objective!r}")

    def _check_names(self) -> None:
        if self.project is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
                                                         str(self.project)):
            raise SearchError(f"project must be a folder name of [A-Za-z0-9_.-], got {self.project!r}")
        for name in ("directory", "export_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value) or "\0" in str(value):
                raise SearchError(f"{name} must be a path, got {value!r}")
        if self.export and self.export_name is not None:
            from tuning.searches.export_winners import validate_model_name

            try:
                validate_model_name(self.export_name)
            except ValueError as exc:
                raise SearchError(f"export_name: {exc}") from None

    # --- derived -------------------------------------------------------------------------------

    @property
    def dataset_name(self) -> str:
        return self.dataset if isinstance(self.dataset, str) else str(getattr(self.dataset, "name", "data"))

    @property
    def project_name(self) -> str:
        """`project`, or a stable name from dataset, mode and tuner (rerunning resumes it)."""
        if self.project:
            return self.project
        name = f"{self.dataset_name}-{self.mode}-{self.tuner}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "search"

    @property
    def project_dir(self) -> Path:
        return Path(self.directory) / self.project_name

    @property
    def space_mode(self) -> str:
        """The hypermodel's mode: slim learns per-layer widths."""
        return "per_layer" if self.mode == "slim" else self.mode

    @property
    def seed_source(self) -> str | None:
        return "slim" if self.mode == "slim" else self.seed_from

    def settings(self) -> dict[str, Any]:
        """What a project's trials depend on; a resumed project must have been made with these."""
        d = {name: getattr(self, name) for name in _PROJECT_SETTINGS}
        d["dataset"] = self.dataset_name
        return d

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
