"""`tuning.search`: load a dataset, run a keras-tuner search of ZooHyperModel, write the results.

Resume is keras-tuner's own: with `overwrite=False` (the default) a tuner pointed at an existing
`<directory>/<project>` reloads its oracle, keeps completed trials, re-queues the trial that was
running when the process died, and stops at `max_trials` in total; the project's settings are
saved beside it and a rerun with other settings is refused. Chief/worker mode is also
keras-tuner's: with KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set, the
chief serves the oracle and, when all trials are done, writes the results; workers only train.
"""
from __future__ import annotations

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import copy
import dataclasses
import sys
from typing import Any, Sequence, TextIO

import keras
import keras_tuner as kt

import zoo

from tuning._keras_tuner import create_objective, is_worker, objective_names, owns_oracle
from tuning.searches.config import SETTINGS_FILE, SearchBudgetError, SearchConfig, SearchError
from tuning.constraints import Budgets, MeasuredCosts, measure_costs
from tuning.searches.hypermodel import ZooHyperModel
from tuning.searches.outputs import write_results
from tuning.searches.preflight import preflight
from tuning.project_settings import save_settings
from tuning.searches.rerank import rerank
from tuning.searches.results import (COST_METRICS, SearchResult, leaderboard_rows, metric_direction, primary_metric,
                                     rank_rows)
from tuning.searches.slim_profile import SLIM_FILE, learn_or_load, read_slim
from tuning._memory import gc_frozen
from tuning.searches.tuners import make_tuner

__all__ = ["search", "SearchConfig", "SearchError", "SearchBudgetError", "make_objective",
           "check_budget_feasible", "prepare", "SETTINGS_FILE", "SLIM_FILE"]


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
    objs = [kt.Objective(n, "min" if n in COST_METRICS or "loss" in n or n.endswith("error")
                         else "max") for n in names]
    return objs[0] if len(objs) == 1 else objs


def check_budget_feasible(hypermodel: ZooHyperModel) -> MeasuredCosts | None:
    """Raise SearchBudgetError when even the smallest model of the space is over budget.

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
    best: tuple[MeasuredCosts, str] | None = None
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
    raise SearchBudgetError(f"no model in the search space meets the budget: the smallest ({what}) has "
                      f"{'; '.join(budgets.violations(costs))}; raise the budget or lower "
                      f"depth/filters minimums")


def _distribution(name: str | None) -> Any:
    if name is None:
        return None
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def prepare(config: SearchConfig) -> tuple[SearchConfig, Any, ZooHyperModel, Any]:
    """(config with its epochs fixed, the data, the hypermodel, the objective) of `config`; every
    input error is a SearchError, raised before anything trains (also what `zoo-tune --workers`
    checks first). The TensorFlow-free checks come first (tuning.searches.preflight)."""
    config, data = preflight(config)
    try:
        obj = make_objective(config.objective)
        budgets = Budgets(max_params=config.max_params, max_macs=config.max_macs,
                          max_latency_ms=config.max_latency_ms)
        hypermodel = ZooHyperModel(
            data.input_shape, data.num_classes, mode=config.space_mode,
            rules=None if config.rules is None else list(config.rules), depth=config.depth,
            filters=config.filters, filter_sampling=config.filter_sampling,
            filter_step=config.filter_step, blocks=config.blocks,
            kernel_sizes=config.kernel_sizes, downsamples=config.downsamples,
            dropouts=config.dropouts, learning_rates=config.learning_rates,
            batch_sizes=config.batch_sizes, budgets=budgets, patience=config.patience,
            seed=config.seed, fill_budget=config.fill_budget,
            measure_latency=True if "latency_ms" in objective_names(create_objective(obj)) else None,
            monitor=primary_metric(create_objective(obj)))
    except SearchError:
        raise
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:  # bad input: one line
        raise SearchError(str(exc)) from None
    if budgets.needs_latency:  # params and MACs were counted by preflight; latency is measured
        check_budget_feasible(hypermodel)
    return config, data, hypermodel, obj


def search(config: SearchConfig | None = None, /, *, progress: TextIO | None | str = "stdout",
           callbacks: Sequence[keras.callbacks.Callback] = (), **fields: Any) -> SearchResult:
    """Search with keras-tuner over ZooHyperModel as `config` (a SearchConfig) says.

    Fields may instead be given as keywords (`search(dataset="digits", mode="per_layer", ...)`),
    or override a config's (`search(config, epochs=2)`). `dataset` is a `zoo.datasets` name
    (digits, shapes, npz:PATH, ...) or a loaded `zoo.datasets.Dataset`.

    Writes `<directory>/<project>/{leaderboard.csv, report.md, pareto.png, filters.png}` beside
    keras-tuner's own files; `export` > 0 also exports the best `export` models as versions of
    `export_name` (default: the project name) under `export_dir` and labels the best `stable`.
    With `max_params`/`max_macs`, each draw is scaled to fill the budget (`fill_budget`); models
    still over a budget (latency, or `fill_budget=False`) are rejected before training, and up to
    `max_rejections` rejections come on top of `max_trials`. `callbacks` are extra Keras
    callbacks for every trial's fit (keras-tuner deep-copies them). `rerank_top` > 0: after the
    search the best `rerank_top` trials are each trained `rerank_executions` more times with new
    seeds and ranked by the mean of all their runs (see tuning.searches.rerank).
    Progress lines go to `progress` (default: sys.stdout as it is when called; None: nowhere).
    Raises SearchError (a ValueError) naming the bad argument before any training starts.
    """
    if progress == "stdout":
        progress = sys.stdout
    if config is not None and not isinstance(config, SearchConfig):
        raise SearchError(f"search takes a tuning.SearchConfig or keyword fields, got "
                          f"{type(config).__name__} (for a dataset, pass dataset=...)")
    try:
        config = SearchConfig(**fields) if config is None else dataclasses.replace(config, **fields)
    except TypeError as exc:  # an unknown keyword
        raise SearchError(f"{exc}; valid: {', '.join(SearchConfig.field_names())}") from None
    if not all(isinstance(c, keras.callbacks.Callback) for c in callbacks):
        raise SearchError(f"callbacks must be keras.callbacks.Callback instances, got {list(callbacks)!r}")
    config, data, hypermodel, obj = prepare(config)
    project = config.project_name
    project_dir = config.project_dir
    chief_or_local = owns_oracle()
    t = make_tuner(config.tuner, hypermodel, objective=obj, max_trials=config.max_trials,
                   epochs=config.epochs, seed=config.seed,
                   max_consecutive_failed_trials=config.max_consecutive_failures,
                   executions_per_trial=config.executions_per_trial, directory=str(config.directory),
                   project_name=project,
                   # A worker's overwrite would race the chief's.
                   overwrite=config.overwrite and chief_or_local,
                   distribution_strategy=_distribution(config.distribution),
                   progress=progress if config.verbose else None,
                   max_rejections=config.max_rejections,
                   cover="rule" if config.space_mode == "rule" else None,
                   max_seconds=None if config.max_minutes is None else 60.0 * config.max_minutes)
    if config.mode == "slim":
        t.free_widths = "slim"  # its one trial is slim's profile, as the leaderboard says
    x, y = ((data.x_train, data.y_train) if config.train_limit is None
            else (data.x_train[:config.train_limit], data.y_train[:config.train_limit]))
    slim = None
    if chief_or_local:
        save_settings(project_dir / SETTINGS_FILE, config.settings())
        # Seeds are the oracle's: set before it hands out the first trial.
        if config.seed_source == "slim":
            slim = learn_or_load(config, hypermodel, data, x, y, project_dir, progress)
            t.oracle.seed_values = [hypermodel.layer_values(slim.profile)]
        elif config.seed_source:
            t.oracle.seed_values = [hypermodel.rule_values(config.seed_source)]
    # keras-tuner deep-copies these for every trial (and points TensorBoard at a per-trial folder).
    user_callbacks = list(callbacks)
    all_callbacks = user_callbacks + ([keras.callbacks.TensorBoard(log_dir=str(config.tensorboard))]
                                      if config.tensorboard else [])
    # verbose 1: tuning's line per trial only; 2: Keras' per-epoch bars and keras-tuner's tables.
    fit_verbose = 0 if config.verbose < 2 else (1 if sys.stdout.isatty() else 2)
    fit_kwargs: dict[str, Any] = dict(validation_data=(data.x_val, data.y_val), epochs=config.epochs,
                                      callbacks=all_callbacks, verbose=fit_verbose)
    try:
        t.search(x, y, **fit_kwargs)
    except RuntimeError as exc:
        # keras-tuner's oracle stops after max_consecutive_failed_trials FAILED trials in a row.
        if "consecutive failures" not in str(exc):
            raise
        n = config.max_consecutive_failures
        last = t.oracle.trials[t.oracle.end_order[-1]] if t.oracle.end_order else None
        rejection = t.oracle.rejection(last.trial_id) if last is not None else None
        if rejection is not None:
            raise SearchBudgetError(
                f"no model meets the budget: {n} trials in a row were rejected (last: "
                f"{'; '.join(rejection.violations)}); raise --max-params/--max-macs/"
                f"--max-latency-ms or narrow --depth/--filters") from None
        lines = str(exc).strip().splitlines()
        raise SearchError(f"{n} trials in a row failed; last error: {lines[-1] if lines else ''}") from None

    objective_obj = t.oracle.objective
    metric = primary_metric(objective_obj)
    if is_worker():
        # The chief owns the oracle and writes the results once every trial is done.
        return SearchResult(t, hypermodel, project_dir, metric, [], hypermodel.budgets)
    if slim is None and (project_dir / SLIM_FILE).exists():
        slim = read_slim(project_dir)
    origins = _origins(t, config)
    settings = _report_settings(config, hypermodel, len(x))
    direction = metric_direction(objective_obj, metric)
    # As during the search: the re-ranking fits, keras-tuner's load_model and clear_session each
    # run full collections, which would walk everything TF allocated.
    with gc_frozen():
        rows = leaderboard_rows(t, hypermodel, origins=origins)
        if config.rerank_top:
            settings["re-ranking"] = (f"top {config.rerank_top} trained {config.rerank_executions} "
                                      f"more times, ranked by the mean of all their runs")
            top = [r["trial"] for r in rows if r["status"] == "COMPLETED"]
            # The search's own TensorBoard callback is left out: it would log into the root folder.
            fit_kwargs["callbacks"] = [copy.deepcopy(c) for c in user_callbacks]
            reranked = rerank(t, hypermodel, top[:config.rerank_top],
                              executions=config.rerank_executions,
                              first_execution=config.executions_per_trial, metric=metric,
                              direction=direction, fit_args=(x, y), fit_kwargs=fit_kwargs,
                              progress=progress if config.verbose else None)
            rows = rank_rows(rows, direction, reranked=reranked,
                             search_runs=config.executions_per_trial)
        return write_results(t, hypermodel, data, project_dir, config, rows, settings, slim)


def _origins(tuner: kt.Tuner, config: SearchConfig) -> dict[str, str]:
    """Trial id -> where its values came from, for the seed trials (slim or a rule's plan)."""
    return {tid: str(config.seed_source)
            for tid in tuner.oracle.start_order[:len(tuner.oracle.seed_values)]}


def _report_settings(config: SearchConfig, hypermodel: ZooHyperModel, n_train: int) -> dict[str, Any]:
    return {"project": config.project_name, "dataset": config.dataset_name, "tuner": config.tuner,
            "mode": config.mode, "rules": ", ".join(hypermodel.rules) or "(per-layer widths)",
            "depth": f"{hypermodel.depth[0]}..{hypermodel.depth[1]}",
            "filters": f"{hypermodel.filters[0]}..{hypermodel.filters[1]} "
                       f"({hypermodel.filter_sampling}, step {hypermodel.filter_step})",
            "blocks": ", ".join(hypermodel.blocks),
            "budget filling": "on" if hypermodel.fill_budget and hypermodel.budgets.size_budgets else "off",
            "seed trial": config.seed_source or "none", "max_trials": config.max_trials,
            "epochs": config.epochs, "executions_per_trial": config.executions_per_trial,
            "objective": str(config.objective), "seed": config.seed, "train examples": n_train}
