"""`tuning.search`: load a dataset, run a keras-tuner search of ZooHyperModel, write the results.

Resume is keras-tuner's own: with `overwrite=False` (the default) a tuner pointed at an existing
`<directory>/<project>` reloads its oracle, keeps completed trials, re-queues the trial that was
running when the process died, and stops at `max_trials` in total. Chief/worker mode is also
keras-tuner's: with KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set,
the chief serves the oracle and, when all trials are done, writes the results; workers only train.
"""
from __future__ import annotations

from zoo import _env  # noqa: F401  (quiet TensorFlow before Keras imports it)

import copy
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence, TextIO

import keras
import keras_tuner as kt
from keras_tuner.src.engine.objective import create_objective  # public as kt.Objective; no public factory
import numpy as np

import zoo

from .budgets import REJECTED_PREFIX, Budgets, Costs, measure_costs
from .choices import DISTRIBUTIONS, MODES
from .hypermodel import ZooHyperModel
from .plots import plot_filters, plot_pareto
from .report import doubling_reference, write_report
from .rerank import rerank
from .results import (COST_METRICS, SearchResult, leaderboard_rows, metric_direction, pareto_front,
                      primary_metric, write_leaderboard)
from .tuners import TUNERS, gc_frozen, make_tuner

__all__ = ["search", "SearchError", "BudgetError", "DISTRIBUTIONS", "make_objective",
           "check_budget_feasible", "default_project"]

DEFAULT_MAX_CONSECUTIVE_FAILURES = 10


class SearchError(ValueError):
    """A search that cannot start or cannot go on; the message says what to change."""


class BudgetError(SearchError):
    """No model of the search space meets the budget."""


def default_project(dataset: str, mode: str, tuner: str) -> str:
    """A stable name, so rerunning the same command resumes the same project."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset}-{mode}-{tuner}").strip("_.-") or "search"


def make_objective(objective: str | Sequence[str] | kt.Objective) -> Any:
    """A keras-tuner objective; cost metrics (params, macs, latency_ms) are minimised.

    A list gives keras-tuner's multi-objective (it ranks by the sum, maximised terms negated);
    the Pareto front in the report is computed separately over all completed trials.
    """
    if isinstance(objective, kt.Objective):
        return objective
    names = [objective] if isinstance(objective, str) else list(objective or [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SearchError(f"objective must be a metric name such as 'val_accuracy' or a list of "
                          f"them, got {objective!r}")
    objs = []
    for n in names:
        if n in COST_METRICS:
            objs.append(kt.Objective(n, "min"))
        elif "loss" in n or n.endswith("error"):
            objs.append(kt.Objective(n, "min"))
        else:
            objs.append(kt.Objective(n, "max"))
    return objs[0] if len(objs) == 1 else objs


def check_budget_feasible(hypermodel: ZooHyperModel) -> Costs | None:
    """Raise BudgetError when even the smallest model of the space is over budget.

    Every layer has at least `filters[0]` kernels (1 when trials are scaled to fill the budget)
    and there are at least `depth[0]` layers, so that network (for each block/kernel
    size/downsample choice) is a lower bound on params, MACs and, up to noise, latency. Returns
    the smallest costs found (None without budgets).
    """
    budgets = hypermodel.budgets
    if not budgets.any:
        return None
    filling = hypermodel.fill_budget and budgets.size_budgets
    fmin, dmin = (1 if filling else hypermodel.filters[0]), hypermodel.depth[0]
    best: tuple[Costs, str] | None = None
    for block in hypermodel.blocks:
        for k in hypermodel.kernel_sizes:
            for ds in hypermodel.downsamples:
                model = zoo.build("custom", filters=[fmin] * dmin, input_shape=hypermodel.input_shape,
                                  num_classes=hypermodel.num_classes, block=block, kernel_size=k,
                                  downsample=ds, downsample_every=hypermodel.downsample_every)
                costs = measure_costs(model, latency=budgets.needs_latency)
                if best is None or not budgets.violations(costs) or costs.params < best[0].params:
                    best = (costs, f"depth {dmin}, {fmin} filters per layer, block {block}, "
                                   f"kernel {k}, downsample {ds}")
                if not budgets.violations(costs):
                    keras.backend.clear_session()
                    return costs
    keras.backend.clear_session()
    assert best is not None
    costs, what = best
    raise BudgetError(f"no model in the search space meets the budget: the smallest ({what}) has "
                      f"{'; '.join(budgets.violations(costs))}; raise the budget or lower "
                      f"depth/filters minimums")


def _check_int(value: Any, arg: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SearchError(f"{arg} must be an int >= {low}, got {value!r}")
    return value


def _check_directory(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise SearchError(f"directory must be a path, got {directory!r}")
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SearchError(f"directory {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path


def _distribution(name: str | None) -> Any:
    if name is None:
        return None
    if name not in DISTRIBUTIONS:
        raise SearchError(f"unknown distribution {name!r}; valid: {', '.join(DISTRIBUTIONS)}")
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def _limit(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if n is None else (x[:n], y[:n])


def search(dataset: "str | zoo.datasets.Dataset" = "digits", tuner: str = "random", mode: str = "rule",
           rules: Sequence[str] | None = None, *, max_trials: int = 10, epochs: int = 5,
           executions_per_trial: int = 1, max_params: int | None = None,
           max_macs: int | None = None, max_latency_ms: float | None = None,
           depth: tuple[int, int] = (2, 4), filters: tuple[int, int] = (8, 64),
           filter_sampling: str = "log", filter_step: int | None = None,
           blocks: Sequence[str] = ("plain",), kernel_sizes: Sequence[int] = (3,),
           downsamples: Sequence[str] = ("max",), dropouts: Sequence[float] = (0.0,),
           learning_rates: Sequence[float] = (3e-3,), batch_sizes: Sequence[int] | None = None,
           directory: str | os.PathLike = "runs", project: str | None = None,
           overwrite: bool = False, seed: int | None = 0, export: int = 0,
           export_dir: str | os.PathLike = "saved_models", export_name: str | None = None,
           objective: str | Sequence[str] = "val_accuracy", tensorboard: str | None = None,
           max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
           max_rejections: int | None = None, seed_rule: str | None = None,
           rerank_top: int = 0, rerank_executions: int = 2, fill_budget: bool = True,
           train_limit: int | None = None, distribution: str | None = None,
           patience: int = 3, verbose: int = 1, progress: TextIO | None = sys.stdout,
           callbacks: Sequence[keras.callbacks.Callback] = (),
           ) -> SearchResult:
    """Search `dataset` with keras-tuner's `tuner` over ZooHyperModel(`mode`, `rules`, ...).

    `dataset` is a `zoo.datasets` name (digits, shapes, npz:PATH, ...) or a loaded
    `zoo.datasets.Dataset`, e.g. `zoo.datasets.load("shapes", noise=0.3)`.

    Writes `<directory>/<project>/{leaderboard.csv, report.md, pareto.png, filters.png}` beside
    keras-tuner's own files; `export` > 0 also exports the best `export` models as versions of
    `export_name` (default: the project name) under `export_dir` and labels the best `stable`.
    Over-budget models are rejected before training; `max_trials` counts the other trials, and
    up to `max_rejections` (default 4 * max_trials) rejections come on top (0: rejections count
    towards max_trials, keras-tuner's own rule). The search stops with BudgetError after
    `max_consecutive_failures` rejections in a row.
    `seed_rule` (per_layer mode): the first trial is that rule's plan at the deepest depth.
    `callbacks` are extra Keras callbacks for every trial's fit (keras-tuner deep-copies them).
    `rerank_top` > 0: after the search, the best `rerank_top` trials are each trained
    `rerank_executions` more times with new seeds and ranked among themselves by the mean of all
    their runs (see tuning.rerank); the leaderboard's `rerank_mean` column holds that mean.
    Raises SearchError (a ValueError) naming the bad argument before any training starts.
    """
    if tuner not in TUNERS:
        raise SearchError(f"unknown tuner {tuner!r}; valid: {', '.join(TUNERS)}")
    if mode not in MODES:
        raise SearchError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if rules is not None and len(rules) == 0:
        raise SearchError(f"rules is empty; name at least one of: "
                          f"{', '.join(r for r in zoo.list_models() if r != 'custom')}")
    _check_int(max_trials, "max_trials", 1)
    _check_int(epochs, "epochs", 1)
    _check_int(executions_per_trial, "executions_per_trial", 1)
    _check_int(export, "export", 0)
    _check_int(max_consecutive_failures, "max_consecutive_failures", 1)
    if max_rejections is None:
        max_rejections = 4 * max_trials
    _check_int(max_rejections, "max_rejections", 0)
    _check_int(verbose, "verbose", 0)
    _check_int(rerank_top, "rerank_top", 0)
    _check_int(rerank_executions, "rerank_executions", 1)
    if train_limit is not None:
        _check_int(train_limit, "train_limit", 1)
    if seed is not None:
        _check_int(seed, "seed", 0)
    if not isinstance(overwrite, bool):
        raise SearchError(f"overwrite must be a bool, got {overwrite!r}")
    if not all(isinstance(c, keras.callbacks.Callback) for c in callbacks):
        raise SearchError(f"callbacks must be keras.callbacks.Callback instances, got {list(callbacks)!r}")
    try:
        budgets = Budgets(max_params=max_params, max_macs=max_macs, max_latency_ms=max_latency_ms)
        obj = make_objective(objective)
        if rerank_top and isinstance(obj, list):
            raise SearchError("rerank_top needs a single objective (it averages one metric over runs); "
                              f"got {objective!r}")
        if isinstance(dataset, zoo.datasets.Dataset):
            data, dataset = dataset, dataset.name
        elif isinstance(dataset, str):
            data = zoo.datasets.load(dataset)
        else:
            raise SearchError(f"dataset must be a zoo.datasets name ({', '.join(zoo.datasets.list_datasets())}) "
                              f"or a zoo.datasets.Dataset, got {type(dataset).__name__}")
        hypermodel = ZooHyperModel(
            data.input_shape, data.num_classes, mode=mode, rules=None if rules is None else list(rules),
            depth=depth, filters=filters, filter_sampling=filter_sampling, filter_step=filter_step,
            blocks=blocks, kernel_sizes=kernel_sizes,
            downsamples=downsamples, dropouts=dropouts, learning_rates=learning_rates,
            batch_sizes=batch_sizes, budgets=budgets, patience=patience, seed=seed,
            seed_rule=seed_rule, fill_budget=fill_budget,
            monitor=primary_metric(create_objective(obj)))
    except SearchError:
        raise
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:  # bad data: one line
        raise SearchError(str(exc)) from None
    project = project or default_project(dataset, mode, tuner)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", project):
        raise SearchError(f"project must be a folder name of [A-Za-z0-9_.-], got {project!r}")
    if export and export_name is not None:
        from serving.names import validate_model_name
        try:
            validate_model_name(export_name)
        except ValueError as exc:
            raise SearchError(f"export_name: {exc}") from None
    directory = _check_directory(directory)
    if export:
        _check_directory(export_dir)
    check_budget_feasible(hypermodel)
    strategy = _distribution(distribution)

    t = make_tuner(tuner, hypermodel, objective=obj, max_trials=max_trials, epochs=epochs, seed=seed,
                   max_consecutive_failed_trials=max_consecutive_failures,
                   executions_per_trial=executions_per_trial, directory=str(directory),
                   project_name=project, overwrite=overwrite, distribution_strategy=strategy,
                   progress=progress, max_rejections=max_rejections)
    # keras-tuner deep-copies these for every trial (and points TensorBoard at a per-trial folder).
    user_callbacks = list(callbacks)
    callbacks = user_callbacks + ([keras.callbacks.TensorBoard(log_dir=str(tensorboard))]
                                   if tensorboard else [])
    x, y = _limit(data.x_train, data.y_train, train_limit)
    fit_kwargs: dict[str, Any] = dict(validation_data=(data.x_val, data.y_val), epochs=epochs,
                                      callbacks=callbacks, verbose=verbose)
    try:
        t.search(x, y, **fit_kwargs)
    except RuntimeError as exc:
        # keras-tuner's oracle stops after max_consecutive_failed_trials FAILED trials in a row.
        if "consecutive failures" not in str(exc):
            raise
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        if REJECTED_PREFIX in str(exc):
            raise BudgetError(
                f"no model meets the budget: {max_consecutive_failures} trials in a row were rejected "
                f"(last {last.split(REJECTED_PREFIX, 1)[-1].strip()}); raise --max-params/--max-macs/"
                f"--max-latency-ms or narrow --depth/--filters") from None
        raise SearchError(f"{max_consecutive_failures} trials in a row failed; last error: {last}") from None

    from keras_tuner.src.distribute import utils as dist_utils

    project_dir = directory / project
    objective_obj = t.oracle.objective
    metric = primary_metric(objective_obj)
    if dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle():
        # A worker: the chief owns the oracle and writes the results once every trial is done.
        return SearchResult(t, hypermodel, project_dir, metric, [], budgets)

    settings = {"project": project, "dataset": dataset, "tuner": tuner, "mode": mode,
                "rules": ", ".join(hypermodel.rules) or "(per-layer widths)",
                "depth": f"{hypermodel.depth[0]}..{hypermodel.depth[1]}",
                "filters": f"{hypermodel.filters[0]}..{hypermodel.filters[1]} ({hypermodel.filter_sampling}, "
                           f"step {hypermodel.filter_step})",
                "blocks": ", ".join(hypermodel.blocks), "max_trials": max_trials, "epochs": epochs,
                "executions_per_trial": executions_per_trial, "objective": str(objective),
                "seed": seed, "train examples": len(x)}
    # As during the search: the re-ranking fits, keras-tuner's load_model and clear_session each
    # run full collections, which would walk everything TF allocated.
    with gc_frozen():
        reranked: dict[str, list[float]] = {}
        if rerank_top:
            settings["re-ranking"] = (f"top {rerank_top} trained {rerank_executions} more times, "
                                      f"ranked by the mean of all their runs")
            top = [r["trial"] for r in leaderboard_rows(t, hypermodel) if r["status"] == "COMPLETED"]
            # The search's own TensorBoard callback is left out: it would log into the root folder.
            fit_kwargs["callbacks"] = [copy.deepcopy(c) for c in user_callbacks]
            reranked = rerank(t, hypermodel, top[:rerank_top], executions=rerank_executions,
                              first_execution=executions_per_trial, metric=metric,
                              direction=metric_direction(objective_obj, metric), fit_args=(x, y),
                              fit_kwargs=fit_kwargs, progress=progress)
        return _write_results(t, hypermodel, data, project_dir, budgets, settings, export=export,
                              export_dir=export_dir, export_name=export_name or project,
                              reranked=reranked, search_runs=executions_per_trial)


def _write_results(t: kt.Tuner, hypermodel: ZooHyperModel, data: Any, project_dir: Path,
                   budgets: Budgets, settings: dict[str, Any], *, export: int, export_dir: Any,
                   export_name: str, reranked: dict[str, list[float]] | None = None,
                   search_runs: int = 1) -> SearchResult:
    """Test accuracy of the best, leaderboard.csv, plots, exports and report.md (chief or local)."""
    objective_obj = t.oracle.objective
    metric = primary_metric(objective_obj)
    project = settings["project"]
    rank_kwargs = dict(reranked=reranked, search_runs=search_runs)
    rows = leaderboard_rows(t, hypermodel, **rank_kwargs)
    best_rows = [r for r in rows if r["status"] == "COMPLETED"]
    n_eval = max(1, export)
    test_acc: dict[str, float] = {}
    models: list[keras.Model] = []
    if best_rows:
        # Leaderboard order (not oracle.get_best_trials, whose order of ties changes on reload).
        best_trials = [t.oracle.get_trial(r["trial"]) for r in best_rows[:n_eval]]
        for trial in best_trials:
            with warnings.catch_warnings():
                # keras-tuner reloads weights into a fresh, unbuilt optimizer: harmless here.
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model = t.load_model(trial)
            _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
            test_acc[trial.trial_id] = float(acc)
            models.append((trial, model))
        rows = leaderboard_rows(t, hypermodel, test_accuracy=test_acc, **rank_kwargs)
    leaderboard_path = write_leaderboard(rows, project_dir / "leaderboard.csv", metric)
    direction = metric_direction(objective_obj, metric)
    front = pareto_front(rows, cost="params", direction=direction)
    done = [r for r in rows if r["status"] == "COMPLETED"]
    reference = doubling_reference(done[0], hypermodel.downsample_every) if done else None
    reference_params = None
    if done and reference:
        try:
            hp_best = t.oracle.get_trial(done[0]["trial"]).hyperparameters
            ref = zoo.build("doubling", input_shape=hypermodel.input_shape,
                            num_classes=hypermodel.num_classes, depth=len(reference),
                            base_filters=reference[0], block=hp_best.get("block"),
                            kernel_size=hp_best.get("kernel_size"),
                            downsample=hp_best.get("downsample"),
                            downsample_every=hypermodel.downsample_every)
            reference_params = int(zoo.describe(ref).total_params)
        except ValueError:
            reference_params = None
    plots = {"pareto": plot_pareto(rows, front, project_dir / "pareto.png", metric),
             "filters": plot_filters(done[:5], reference, project_dir / "filters.png", metric)}
    exported = _export(models[:export], data, hypermodel, t, export_dir, export_name,
                       metric, project) if export and models else []
    report = write_report(project_dir / "report.md", rows=rows, front=front, metric=metric,
                          settings=settings, budgets=budgets.to_dict(), reference=reference,
                          reference_params=reference_params, exported=exported)
    keras.backend.clear_session()
    return SearchResult(t, hypermodel, project_dir, metric, rows, budgets, report_path=report,
                        leaderboard_path=leaderboard_path, plots=plots, exported=exported)


def _export(ranked: list[tuple[Any, keras.Model]], data: Any, hypermodel: ZooHyperModel,
            tuner: kt.Tuner, export_dir: Any, name: str, metric: str, project: str) -> list[Any]:
    """Export the best models as versions of `name`, best last (so `latest` serves it), label it stable."""
    from serving import export as export_model
    from serving.export import ExportedVersion, version_dirs
    from serving.model_config import set_version_label

    where = str(Path(tuner.project_dir).resolve())
    previous = _previous_exports(version_dirs(Path(export_dir) / name), where)
    if all(trial.trial_id in previous for trial, _ in ranked):
        # A rerun of a finished search: the same models are already exported; do not add copies.
        out = [ExportedVersion(previous[t.trial_id][1], name, previous[t.trial_id][0])
               for t, _ in ranked]
        set_version_label(export_dir, name, "stable", out[0].version)
        return out
    out = []
    for rank, (trial, model) in reversed(list(enumerate(ranked, 1))):
        ev = _evaluate(model, data)
        meta = {"hyperparameters": {k: v for k, v in trial.hyperparameters.values.items()
                                    if not k.startswith("tuner/")},
                "metrics": {metric: float(trial.metrics.get_best_value(metric)), **ev},
                "search": {"project": project, "directory": where, "trial": trial.trial_id,
                           "rank": rank}}
        # keras-tuner reloads the trial's trained weights into a fresh build: trained, though its
        # new optimizer has taken no step.
        out.append(export_model(model, export_dir, name=name, class_names=list(data.class_names),
                                metadata=meta, trained=True))
    out.reverse()  # best first
    set_version_label(export_dir, name, "stable", out[0].version)
    return out


def _previous_exports(versions: dict[int, Path], project_dir: str) -> dict[str, tuple[int, Path]]:
    """trial id -> (version, path) of versions this project exported before (newest wins)."""
    from serving.layout import read_metadata  # serving owns the on-disk format

    found: dict[str, tuple[int, Path]] = {}
    for version, path in sorted(versions.items()):
        try:
            search_meta = read_metadata(path)["metadata"]["search"]
        except (ValueError, KeyError, TypeError):
            continue
        if search_meta.get("directory") == project_dir:
            found[str(search_meta.get("trial"))] = (version, path.resolve())
    return found


def _evaluate(model: keras.Model, data: Any) -> dict[str, float]:
    loss, acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
    return {"test_loss": float(loss), "test_accuracy": float(acc)}
