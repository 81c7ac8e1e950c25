"""What a comparison is: its settings (`CompareConfig`), its budgets (`Budget`), its runs (`Run`,
`RunGrid`). Pure Python (zoo's plans need no Keras), so the CLI validates a whole grid before
TensorFlow is imported and the report needs nothing from the tuner.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import zoo
from zoo.budget import BudgetError

from tuning.comparisons.stats import REFERENCE_RULE, Allocation
from tuning.project_settings import check_settings

__all__ = ["CompareConfig", "CompareError", "Budget", "Run", "RunGrid", "BUDGET_KINDS",
           "REFERENCE_RULE", "SETTINGS_FILE", "check_resume", "load_data"]

BUDGET_KINDS = ("params", "macs", "both")
SETTINGS_FILE = "compare_settings.json"
_BLOCKS = ("plain", "residual", "separable")  # zoo.BLOCKS without importing Keras


class CompareError(ValueError):
    """A comparison that cannot run as asked (the message says what to change)."""


@dataclass(frozen=True, order=True)
class Budget:
    """One budget of a comparison: parameters, MACs, or both at once (the tighter binds).

    `key` names it in runs.jsonl and run keys: "15000" for one kind (as before dual budgets),
    "15000:2000000" (params:MACs) for both."""

    params: int | None = None
    macs: int | None = None

    @property
    def kind(self) -> str:
        return "both" if self.params and self.macs else "params" if self.params else "macs"

    @property
    def key(self) -> str:
        if self.kind == "both":
            return f"{self.params}:{self.macs}"
        return str(self.params or self.macs)

    @property
    def label(self) -> str:
        if self.kind == "both":
            return f"{self.params:,} params + {self.macs:,} MACs"
        return f"{self.params:,} params" if self.params else f"{self.macs:,} MACs"

    def plan_kwargs(self) -> dict[str, int]:
        return {k: v for k, v in (("max_params", self.params), ("max_macs", self.macs)) if v}

    def json_value(self) -> int | str:
        """How runs.jsonl and compare.csv write it (an int for one kind, as before)."""
        return self.key if self.kind == "both" else int(self.key)

    @classmethod
    def parse(cls, value: Any, kind: str) -> "Budget":
        """A budget from an int (with `kind` params or macs), a (params, macs) pair or a
        "PARAMS:MACS" string (kind both)."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, str) and ":" in value:
            value = tuple(value.split(":"))
        if isinstance(value, (tuple, list)):
            if kind != "both":
                raise CompareError(f"budget {':'.join(map(str, value))} is a params:MACs pair; "
                                   "pairs need budget kind 'both'")
            if len(value) != 2:
                raise CompareError(f"a params:MACs budget has two parts, got {value!r}")
            params, macs = (_budget_int(v) for v in value)
            return cls(params, macs)
        if kind == "both":
            raise CompareError(f"budget kind 'both' needs params:MACs pairs, got {value!r}")
        n = _budget_int(value)
        return cls(params=n) if kind == "params" else cls(macs=n)


def _budget_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompareError(f"each budget must be an int >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Run:
    """One training run of a comparison: a rule's plan fitted to a budget, trained with a seed.
    `budget` is the Budget's key."""

    rule: str
    budget: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.rule}|{self.budget}|{self.seed}"

    @classmethod
    def from_key(cls, key: str) -> "Run":
        rule, budget, seed = key.split("|")
        return cls(rule, budget, int(seed))

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> "Run":
        """The run a runs.jsonl row records."""
        return cls(str(row["rule"]), str(row["budget"]), int(row["seed"]))


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CompareError(f"{name} must be an int >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class CompareConfig:
    """Everything a comparison depends on, validated once; the CLI builds it from its flags.

    `budgets` are ints (with `budget_kind` "params" or "macs") or, with `budget_kind="both"`,
    (params, macs) pairs or "PARAMS:MACS" strings: each rule is then fitted until the first of
    the two binds, never above either. `first_seeds` < `seeds` turns on the seed allocation rule
    (tuning.comparisons.stats.Allocation): seeds beyond the first only for cells still open, with
    `relevant_difference` (accuracy, a fraction) the smallest difference that matters."""

    dataset: str = "digits"
    rules: tuple[str, ...] = ("doubling", "constant", "linear", "geometric", "regnet",
                              "decreasing", "hourglass", "diamond")
    budgets: tuple[Any, ...] = (2_000, 6_000)
    budget_kind: str = "params"
    seeds: int = 3
    seed_start: int = 0
    depth: int = 4
    base_filters: int = 16
    block: str = "plain"
    downsample_every: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 3e-3
    train_limit: int | None = None
    workers: int = 1
    directory: str = "runs"
    project: str = "compare"
    overwrite: bool = False
    first_seeds: int | None = None
    relevant_difference: float = 0.005
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        if not rules:
            raise CompareError("rules must name at least one rule")
        known = [r for r in zoo.list_models() if r != "custom"]
        for r in rules:
            if r not in known:
                raise CompareError(f"unknown rule {r!r} in `rules`; valid: {', '.join(known)}")
        if len(set(rules)) != len(rules):
            raise CompareError(f"rules lists a rule twice: {list(rules)}")
        if REFERENCE_RULE not in rules:
            # Every estimate is a paired difference against doubling: without it a comparison
            # would train every run and then report nothing.
            raise CompareError(f"rules must include {REFERENCE_RULE}, the reference every rule is "
                               f"compared with; got {', '.join(rules)}")
        object.__setattr__(self, "rules", rules)
        if self.budget_kind not in BUDGET_KINDS:
            raise CompareError(f"unknown budget kind {self.budget_kind!r}; valid: "
                               f"{', '.join(BUDGET_KINDS)}")
        budgets = tuple(Budget.parse(b, self.budget_kind) for b in self.budgets)
        if not budgets:
            raise CompareError("budgets must give at least one budget")
        if len(set(budgets)) != len(budgets):
            raise CompareError(f"budgets lists a budget twice: {[b.key for b in budgets]}")
        object.__setattr__(self, "budgets", tuple(sorted(budgets, key=_order)))
        _positive_int("seeds", self.seeds)
        _positive_int("seed_start", self.seed_start, 0)
        _positive_int("depth", self.depth)
        _positive_int("base_filters", self.base_filters)
        _positive_int("workers", self.workers)
        if self.downsample_every is not None:
            _positive_int("downsample_every", self.downsample_every)
        if self.train_limit is not None:
            _positive_int("train_limit", self.train_limit, 10)
        if self.block not in _BLOCKS:
            raise CompareError(f"unknown block {self.block!r} in `block`; valid: {', '.join(_BLOCKS)}")
        for name in ("directory", "project"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\0" in value:
                raise CompareError(f"{name} must be a non-empty path without NUL bytes, got {value!r}")
        if os.sep in self.project or self.project in (".", ".."):
            raise CompareError(f"project must be a plain folder name, got {self.project!r}")
        if self.first_seeds is not None:
            if (isinstance(self.first_seeds, int) and not isinstance(self.first_seeds, bool)
                    and self.first_seeds > self.seeds):
                raise CompareError(f"first_seeds ({self.first_seeds}) cannot exceed seeds "
                                   f"({self.seeds}), the most seeds a cell gets")
            if not (isinstance(self.relevant_difference, (int, float))
                    and 0 < self.relevant_difference < 1):
                raise CompareError(
                    f"relevant_difference must be an accuracy difference in (0, 1), got "
                    f"{self.relevant_difference!r} (zoo-compare's --relevant-difference is in "
                    "points: 0.5 means 0.005)")
            if self.seed_start:
                raise CompareError("seed allocation counts seeds from 0: leave seed_start at 0 "
                                   "or turn the allocation off (first_seeds)")
            if REFERENCE_RULE not in rules:
                raise CompareError("seed allocation compares each rule with doubling: include "
                                   "doubling in the rules")
            try:
                _ = self.allocation  # built here so that a bad value fails now, not mid-study
            except ValueError as exc:
                raise CompareError(str(exc)) from None
        try:
            _ = self.recipe  # built here so that a bad value fails now, not mid-study
        except ValueError as exc:
            raise CompareError(str(exc)) from None

    @property
    def recipe(self) -> zoo.Recipe:
        return zoo.Recipe(epochs=self.epochs, batch_size=self.batch_size,
                          learning_rate=self.learning_rate)

    @property
    def allocation(self) -> Allocation | None:
        """The seed allocation rule, or None when every cell runs every seed."""
        if self.first_seeds is None or self.first_seeds >= self.seeds:
            return None
        return Allocation(self.first_seeds, self.seeds, self.relevant_difference)

    @property
    def project_dir(self) -> Path:
        return Path(self.directory) / self.project

    def budget(self, key: str) -> Budget:
        return next(b for b in self.budgets if b.key == str(key))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rules"], d["budgets"] = list(self.rules), [b.json_value() for b in self.budgets]
        return d

    def settings(self) -> dict[str, Any]:
        """What the results depend on (a resumed project must match these). The allocation keys
        appear only when it is on, so projects made before it still resume."""
        d = self.to_dict()
        for key in ("workers", "directory", "project", "overwrite"):
            d.pop(key)
        if not self.seed_start:  # projects made before seed_start still resume
            d.pop("seed_start")
        if self.allocation is None:
            d.pop("first_seeds")
            d.pop("relevant_difference")
        return d


def _order(b: Budget) -> tuple[int, int]:
    return (b.params or 0, b.macs or 0)


@dataclass
class RunGrid:
    """The runs of a comparison for one input shape: every reachable rule x budget x seed,
    seed-major (a stopped study has whole seeds done), the plans, and what was unreachable."""

    config: CompareConfig
    input_shape: tuple[int, ...]
    num_classes: int
    runs: list[Run] = field(default_factory=list)
    plans: dict[tuple[str, str], zoo.Plan] = field(default_factory=dict)
    unreachable: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def build(cls, config: CompareConfig, input_shape: Sequence[int], num_classes: int) -> "RunGrid":
        grid = cls(config, tuple(input_shape), num_classes)
        for budget in config.budgets:
            for rule in config.rules:
                try:
                    grid.plans[(rule, budget.key)] = zoo.plan(rule, **grid.network(budget.key))
                except BudgetError as exc:
                    grid.unreachable[(rule, budget.key)] = str(exc)
        for seed in range(config.seed_start, config.seed_start + config.seeds):
            for budget in config.budgets:
                for rule in config.rules:
                    if (rule, budget.key) in grid.plans:
                        grid.runs.append(Run(rule, budget.key, seed))
        reachable = {r.budget for r in grid.runs}
        lost = [b for b in config.budgets if b.key not in reachable]
        if lost:
            example = next(msg for (_, b), msg in grid.unreachable.items() if b == lost[0].key)
            raise CompareError(f"budget {lost[0].label} is reachable by no rule ({example})")
        return grid

    def network(self, budget: str) -> dict[str, Any]:
        """zoo.plan / zoo.build keywords of every run at `budget` (all but the rule and seed)."""
        c = self.config
        return {"depth": c.depth, "base_filters": c.base_filters, "block": c.block,
                "downsample_every": c.downsample_every, "input_shape": self.input_shape,
                "num_classes": self.num_classes, **c.budget(budget).plan_kwargs()}


def check_resume(config: CompareConfig) -> None:
    """Resume only a project made with the same settings (else say what differs)."""
    check_settings(config.project_dir / SETTINGS_FILE, config.settings(),
                   overwrite=config.overwrite, error=CompareError)


def load_data(config: CompareConfig) -> "zoo.datasets.Dataset":
    """The comparison's data: the dataset, its training split cut to `train_limit`."""
    data = zoo.datasets.load(config.dataset, **config.dataset_options)
    if len(data.x_test) == 0:
        raise CompareError(f"dataset {config.dataset!r} has no test split; a comparison is "
                           "judged on held-out test images")
    if config.train_limit is not None and config.train_limit < len(data.x_train):
        # A stratified-enough subset: the first N of an already shuffled split.
        data.x_train = data.x_train[: config.train_limit]
        data.y_train = data.y_train[: config.train_limit]
    return data
