"""Checks of a search's input that need no TensorFlow: the data, the names in the search space,
the recipe's epochs and whether any network of the space can meet a parameter/MAC budget.

`zoo-tune` runs them before TensorFlow is imported, so a typo'd rule, a missing data file or an
unreachable budget is one line within a second instead of after TensorFlow's start-up;
`tuning.search` runs the same checks first, so the library and the CLI refuse the same inputs.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zoo
from zoo.budget import TOLERANCE
from zoo.costs import BLOCK_COSTS, Costs, count_costs
from zoo.plans import DOWNSAMPLERS, architecture, downsample_positions

from tuning.project_settings import check_settings
from tuning.searches.config import MODES, SETTINGS_FILE, SearchConfig, SearchError, SearchBudgetError

__all__ = ["preflight", "load_data", "resolve_epochs", "smallest_costs", "check_directory",
           "check_space", "NOT_SEARCHABLE", "SAMPLINGS"]

NOT_SEARCHABLE = ("custom",)  # rules rule mode never draws (custom needs explicit widths)
SAMPLINGS = ("log", "linear")  # how the per-layer widths between MIN and MAX are spaced

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
        raise SearchError(f"`dataset` {config.dataset!r}: {exc}") from None


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


def _int_range(value: Any, arg: str, low: int = 1) -> tuple[int, int]:
    """`(min, max)`; a single int N is the range (N, N), as `--depth N` is on the command line."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"`{arg}` must be an int or a (min, max) pair of ints, got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"`{arg}` must be an int or a (min, max) pair of ints >= {low}, "
                             f"got {value!r}")
    if lo > hi:
        raise ValueError(f"`{arg}`: min {lo} > max {hi}; give MIN MAX with MIN <= MAX")
    return int(lo), int(hi)


def _choices(value: Any, arg: str, valid: Sequence[Any] | None = None,
             kind: type | tuple[type, ...] | None = None) -> list[Any]:
    items = [value] if isinstance(value, (str, int, float)) else list(value or [])
    if not items:
        raise ValueError(f"`{arg}` must not be empty" + (f"; valid: {', '.join(map(str, valid))}"
                                                         if valid else ""))
    for item in items:
        if valid is not None and item not in valid:
            raise ValueError(f"unknown value {item!r} in `{arg}`; valid: {', '.join(map(str, valid))}")
        if kind is not None and (isinstance(item, bool) or not isinstance(item, kind)):
            raise ValueError(f"`{arg}` values must be {getattr(kind, '__name__', 'numbers')}, "
                             f"got {item!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"`{arg}` lists a value twice: {items}")
    return items


def check_space(*, mode: str = "rule", rules: Sequence[str] | None = None, depth: Any = (2, 4),
                filters: Any = (8, 64), blocks: Any = ("plain",), kernel_sizes: Any = (3,),
                downsamples: Any = ("max",), dropouts: Any = (0.0,), learning_rates: Any = (3e-3,),
                batch_sizes: Any = None, filter_sampling: str = "log", filter_step: int | None = None,
                downsample_every: int | None = None,
                input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """The search space's arguments, checked and normalised (ranges as (min, max), choices as
    lists); ValueError naming the argument in backticks otherwise.

    No TensorFlow: `ZooHyperModel` (the space's owner) takes its attributes from here, and
    zoo-tune runs the same checks before TensorFlow loads. With `input_shape`, also checks that the
    deepest network does not downsample the input below 1x1."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    searchable = [r for r in zoo.list_models() if r not in NOT_SEARCHABLE]
    if mode == "rule":
        if rules is not None and not isinstance(rules, (list, tuple)):
            raise ValueError(f"`rules` must be a list of rule names, got {rules!r}; valid: "
                             f"{', '.join(searchable)}")
        for rule in rules or ():
            if rule not in searchable:
                raise ValueError(f"unknown rule {rule!r} in `rules`; valid: {', '.join(searchable)}")
        rules = _choices(list(searchable if rules is None else rules), "rules", searchable)
    elif rules:
        raise ValueError("rules only apply to mode='rule'; mode='per_layer' searches every "
                         "layer's width directly")
    space: dict[str, Any] = {
        "mode": mode, "rules": list(rules or []),
        "depth": _int_range(depth, "depth"), "filters": _int_range(filters, "filters"),
        "blocks": _choices(blocks, "blocks", sorted(BLOCK_COSTS)),
        "kernel_sizes": _choices(kernel_sizes, "kernel_sizes", kind=int),
        "downsamples": _choices(downsamples, "downsamples", list(DOWNSAMPLERS)),
        "dropouts": _choices(dropouts, "dropouts", kind=(int, float)),
        "learning_rates": _choices(learning_rates, "learning_rates", kind=(int, float)),
        # None: the shared recipe's batch size for the training set (zoo.Recipe), not searched.
        "batch_sizes": None if batch_sizes is None else _choices(batch_sizes, "batch_sizes", kind=int)}
    if any(k < 1 for k in space["kernel_sizes"]):
        raise ValueError(f"`kernel_sizes` must be positive ints, got {space['kernel_sizes']}")
    if any(not (math.isfinite(d) and 0 <= d < 1) for d in space["dropouts"]):
        raise ValueError(f"`dropouts` must be in [0, 1), got {space['dropouts']}")
    if any(not (math.isfinite(lr) and lr > 0) for lr in space["learning_rates"]):
        raise ValueError(f"`learning_rates` must be positive, got {space['learning_rates']}")
    if space["batch_sizes"] is not None and any(b < 1 for b in space["batch_sizes"]):
        raise ValueError(f"`batch_sizes` must be positive ints, got {space['batch_sizes']}")
    if filter_sampling not in SAMPLINGS:
        raise ValueError(f"unknown `filter_sampling` {filter_sampling!r}; valid: {', '.join(SAMPLINGS)}")
    if filter_step is None:
        filter_step = 2 if filter_sampling == "log" else 8
    if isinstance(filter_step, bool) or not isinstance(filter_step, int) or filter_step < 1 or (
            filter_sampling == "log" and filter_step < 2):
        raise ValueError(f"`filter_step` must be an int >= 2 for log sampling (a factor) or >= 1 "
                         f"for linear sampling (an increment), got {filter_step!r}")
    if downsample_every is not None and (isinstance(downsample_every, bool)
                                         or not isinstance(downsample_every, int)
                                         or downsample_every < 1):
        raise ValueError(f"`downsample_every` must be None or a positive int, got {downsample_every!r}")
    space.update(filter_sampling=filter_sampling, filter_step=filter_step,
                 downsample_every=downsample_every)
    if input_shape is not None and space["downsamples"] != ["none"]:
        # Fail now, not in trial 7, when the deepest network would shrink the input below 1x1.
        hw = min(input_shape[:2])
        n = len(downsample_positions(space["depth"][1], downsample_every))
        if hw / 2 ** n < 1:
            raise ValueError(
                f"`depth` max {space['depth'][1]} downsamples {n} times, which shrinks the "
                f"{input_shape[0]}x{input_shape[1]} input below 1x1; lower `depth` or raise "
                f"downsample_every (at most {int(math.log2(hw))} downsamples fit)")
    return space


def _check_space(config: SearchConfig, input_shape: Sequence[int] | None = None) -> None:
    try:
        check_space(mode=config.space_mode, rules=None if config.rules is None else list(config.rules),
                    depth=config.depth, filters=config.filters, blocks=config.blocks,
                    kernel_sizes=config.kernel_sizes, downsamples=config.downsamples,
                    dropouts=config.dropouts, learning_rates=config.learning_rates,
                    batch_sizes=config.batch_sizes, filter_sampling=config.filter_sampling,
                    filter_step=config.filter_step, input_shape=input_shape)
    except ValueError as exc:
        raise SearchError(str(exc)) from None


def smallest_costs(config: SearchConfig, input_shape: Any, num_classes: int,
                   downsample_every: int | None = None) -> tuple[Costs, str] | None:
    """Counted costs of the smallest network of the space that meets the params/MAC budgets
    (else of the smallest one), and its description; None without such budgets.

    Every layer has at least `filters[0]` kernels (also when trials are scaled to fill the
    budget) and there are at least `depth[0]` layers, so those networks bound params and MACs below.
    """
    return _extreme_costs(config, input_shape, num_classes, downsample_every, largest=False)


def largest_costs(config: SearchConfig, input_shape: Any, num_classes: int,
                  downsample_every: int | None = None) -> tuple[Costs, str] | None:
    """Counted costs of the largest network of the space (`depth[1]` layers of `filters[1]`
    kernels, the costliest block, kernel and downsampler) and its description; None without
    params/MAC budgets. No trial scaled to fill a budget can cost more."""
    return _extreme_costs(config, input_shape, num_classes, downsample_every, largest=True)


def _extreme_costs(config: SearchConfig, input_shape: Any, num_classes: int,
                   downsample_every: int | None, *, largest: bool) -> tuple[Costs, str] | None:
    budgets = {k: v for k, v in (("params", config.max_params), ("macs", config.max_macs))
               if v is not None}
    if not budgets:
        return None
    pick = slice(-1, None) if largest else slice(None, 1)
    depth, fmin = _items(config.depth)[pick], _items(config.filters)[pick]
    if not depth or not fmin:
        return None  # the hypermodel names the problem
    depth, fmin = depth[0], fmin[0]
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
                if largest:
                    if best is None or _usage(costs, budgets) > _usage(best[0], budgets):
                        best = (costs, what)
                    continue
                fits = all(getattr(costs, kind) <= limit for kind, limit in budgets.items())
                if fits:
                    return costs, what
                if best is None or costs.params < best[0].params:
                    best = (costs, what)
    return best


def _usage(costs: Costs, budgets: dict[str, int]) -> float:
    """The fraction of the binding budget a network uses (what budget filling drives to ~1)."""
    return max(getattr(costs, kind) / limit for kind, limit in budgets.items())


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
    if not config.fill_budget:
        return
    # Filling keeps every width within `filters`: a budget beyond the largest network of the
    # space cannot be filled, and every trial would be built as drawn, below it.
    found = largest_costs(config, input_shape, num_classes)
    if found is None:
        return
    costs, what = found
    budgets = {k: v for k, v in (("params", config.max_params), ("macs", config.max_macs))
               if v is not None}
    if _usage(costs, budgets) < 1 - TOLERANCE:
        kind, limit = max(budgets.items(), key=lambda kv: getattr(costs, kv[0]) / kv[1])
        raise SearchBudgetError(
            f"max_{kind} {limit:,} cannot be filled within `filters` "
            f"{' '.join(map(str, _items(config.filters)))}: the largest network of the space "
            f"({what}) has {'MACs' if kind == 'macs' else 'params'} {getattr(costs, kind):,}; "
            f"raise the largest `depth` or `filters`, lower the budget, or pass "
            f"fill_budget=False to take it as a cap")


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
    _check_space(config)  # a typo'd name before the data loads
    data = load_data(config)
    _check_space(config, data.input_shape)
    n_train = len(data.x_train) if config.train_limit is None else min(config.train_limit,
                                                                         len(data.x_train))
    config = resolve_epochs(config, n_train)
    check_budget_reachable(config, data.input_shape, data.num_classes)
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief":  # the process that owns the project
        check_settings(config.project_dir / SETTINGS_FILE, config.settings(),
                       overwrite=config.overwrite, error=SearchError)
    check_directory(config.directory, "directory")
    if config.export:
        check_directory(config.export_dir, "export_dir")
    if keep_data and isinstance(config.dataset, str):
        _last = (config.dataset, data)
    return config, data
