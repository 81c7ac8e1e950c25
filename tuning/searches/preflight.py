"""Checks of a search's input that need no TensorFlow: the data, the names in the search space,
the recipe's epochs and whether any network of the space can meet a parameter/MAC budget.

`zoo-tune` runs them before TensorFlow is imported, so a typo'd rule, a missing data file or an
unreachable budget is one line within a second instead of after TensorFlow's start-up;
`tuning.search` runs the same checks first, so the library and the CLI refuse the same inputs.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import zoo
from zoo.costs import BLOCK_COSTS, Costs, count_costs
from zoo.plans import DOWNSAMPLERS, architecture

from tuning.searches.config import SearchConfig, SearchError, SearchBudgetError

__all__ = ["preflight", "load_data", "resolve_epochs", "smallest_costs", "check_directory",
           "NOT_SEARCHABLE"]

NOT_SEARCHABLE = ("custom",)  # rules rule mode never draws (custom needs explicit widths)

# The dataset the last preflight loaded, handed to the search that follows it in this process
# (the CLI checks first, then searches: load once).
_last: tuple[Any, Any] | None = None


def load_data(config: SearchConfig) -> Any:
    """The `zoo.datasets.Dataset` of `config.dataset` (a name is loaded, a Dataset passes)."""
    global _last
    if isinstance(config.dataset, zoo.datasets.Dataset):
        return config.dataset
    if not isinstance(config.dataset, str):
        raise SearchError(f"dataset must be a zoo.datasets name ({', '.join(zoo.datasets.list_datasets())}) "
                          f"or a zoo.datasets.Dataset, got {type(config.dataset).__name__}")
    if _last is not None and _last[0] == config.dataset:
        data, _last = _last[1], None
        return data
    try:
        return zoo.datasets.load(config.dataset)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise SearchError(f"dataset {config.dataset!r}: {exc}") from None


def resolve_epochs(config: SearchConfig, n_train: int) -> SearchConfig:
    """`config` with `epochs` fixed: as given, else the shared recipe's for `n_train` images."""
    if config.epochs is not None:
        return config
    return dataclasses.replace(config, epochs=zoo.Recipe().resolve(n_train).epochs)


def _items(value: Any) -> list[Any]:
    """A config field that may be one value or several, as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, int, float)) else list(value)


def _check_names(config: SearchConfig) -> None:
    if config.mode == "rule" and isinstance(config.rules, (list, tuple)):
        valid = [r for r in zoo.list_models() if r not in NOT_SEARCHABLE]
        for rule in config.rules:
            if rule not in valid:
                raise SearchError(f"unknown rule {rule!r} in `rules`; valid: {', '.join(valid)}")
    for field, valid in (("blocks", sorted(BLOCK_COSTS)), ("downsamples", list(DOWNSAMPLERS))):
        for value in _items(getattr(config, field)):
            if value not in valid:
                raise SearchError(f"unknown value {value!r} in `{field}`; valid: {', '.join(valid)}")


def smallest_costs(config: SearchConfig, input_shape: Any, num_classes: int,
                   downsample_every: int | None = None) -> tuple[Costs, str] | None:
    """Counted costs of the smallest network of the space that meets the params/MAC budgets
    (else of the smallest one), and its description; None without such budgets.

    Every layer has at least `filters[0]` kernels (1 when trials are scaled to fill the budget)
    and there are at least `depth[0]` layers, so those networks bound params and MACs below.
    """
    budgets = {k: v for k, v in (("params", config.max_params), ("macs", config.max_macs))
               if v is not None}
    if not budgets:
        return None
    depth, fmin = _items(config.depth)[:1], _items(config.filters)[:1]
    if not depth or not fmin:
        return None  # the hypermodel names the problem
    depth, fmin = depth[0], (1 if config.fill_budget else fmin[0])
    best: tuple[Costs, str] | None = None
    for block in _items(config.blocks):
        for k in _items(config.kernel_sizes):
            for ds in _items(config.downsamples):
                try:
                    plan = zoo.plan("custom", filters=[fmin] * depth, input_shape=input_shape,
                                    num_classes=num_classes, block=block, kernel_size=k,
                                    downsample=ds, downsample_every=downsample_every)
                    costs = count_costs(plan, architecture(
                        input_shape=input_shape, num_classes=num_classes, block=block,
                        downsample=ds, downsample_at=plan.downsample_at, kernel_size=k))
                except ValueError:
                    continue  # an impossible network: the hypermodel names the problem
                what = (f"depth {depth}, {fmin} filters per layer, block {block}, kernel {k}, "
                        f"downsample {ds}")
                fits = all(getattr(costs, kind) <= limit for kind, limit in budgets.items())
                if fits:
                    return costs, what
                if best is None or costs.params < best[0].params:
                    best = (costs, what)
    return best


def check_budget_reachable(config: SearchConfig, input_shape: Any, num_classes: int) -> None:
    """SearchBudgetError when even the smallest network of the space is over a params/MAC budget."""
    found = smallest_costs(config, input_shape, num_classes)
    if found is None:
        return
    costs, what = found
    broken = []
    if config.max_params is not None and costs.params > config.max_params:
        broken.append(f"params {costs.params:,} > max_params {config.max_params:,}")
    if config.max_macs is not None and costs.macs > config.max_macs:
        broken.append(f"MACs {costs.macs:,} > max_macs {config.max_macs:,}")
    if broken:
        raise SearchBudgetError(
            f"no model in the search space meets the budget: the smallest ({what}) has "
            f"{'; '.join(broken)}; raise the budget or lower the smallest `depth` or `filters`")


def check_directory(directory: Any, name: str) -> Path:
    """`directory`, created if needed; SearchError naming `name` when it cannot be written."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SearchError(f"{name} {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path


def preflight(config: SearchConfig, *, keep_data: bool = False) -> tuple[SearchConfig, Any]:
    """(config with its epochs fixed, the loaded data) after every TensorFlow-free check;
    SearchError (SearchBudgetError for a budget no network meets) otherwise.

    `keep_data`: hand the loaded data to the next search of this process (the CLI's case)."""
    global _last
    _check_names(config)
    data = load_data(config)
    n_train = len(data.x_train) if config.train_limit is None else min(config.train_limit,
                                                                         len(data.x_train))
    config = resolve_epochs(config, n_train)
    check_budget_reachable(config, data.input_shape, data.num_classes)
    check_directory(config.directory, "directory")
    if config.export:
        check_directory(config.export_dir, "export_dir")
    if keep_data and isinstance(config.dataset, str):
        _last = (config.dataset, data)
    return config, data
