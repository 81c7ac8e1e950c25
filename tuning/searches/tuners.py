"""keras-tuner's own tuners, built around tuning's oracles, each reporting one line per trial.

The additions (`_ZooTunerMixin`, hooks keras-tuner offers for subclassing): a rejected trial's
`Rejection` is saved in its folder (`run_trial`), one progress line per finished trial behind
tqdm's meter (`on_trial_end`), a frozen garbage collector and no per-failure traceback from
keras-tuner during `search`, and a distinct seed per execution of a trial. The search algorithms,
resume (`overwrite=False` reloads the oracle) and chief/worker mode are keras-tuner's.
"""
from __future__ import annotations

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import contextlib
import os
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

import keras_tuner as kt
from tqdm import tqdm

from tuning._memory import gc_frozen
from tuning._keras_tuner import is_worker, tracebacks_silenced
from tuning.constraints import Rejection
from tuning.searches.hypermodel import OverBudget
from tuning.searches.oracles import ORACLES
from tuning.searches.report import rule_label

__all__ = ["TUNERS", "make_tuner", "trial_status", "trial_reason", "progress_line"]


def trial_status(trial: kt.engine.trial.Trial, project_dir: str | os.PathLike) -> str:
    """COMPLETED, REJECTED (over budget, never trained), FAILED, INVALID, RUNNING..."""
    status = str(trial.status)
    if status == "FAILED" and Rejection.load(project_dir, trial.trial_id):
        return "REJECTED"
    return status


def trial_reason(trial: kt.engine.trial.Trial, project_dir: str | os.PathLike) -> str:
    """Why a trial did not complete: its rejection, or the last line of its error."""
    rejection = Rejection.load(project_dir, trial.trial_id)
    if rejection is not None:
        return rejection.reason
    lines = [ln.strip() for ln in (trial.message or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def progress_line(trial: kt.engine.trial.Trial, hypermodel: Any, objective_name: str,
                  project_dir: str | os.PathLike, seconds: float | None,
                  free_widths: str = "per_layer") -> str:
    """One line per finished trial; `free_widths` names a trial without a rule (its widths are
    per-layer values: "per_layer", or "slim" for slim's learned profile)."""
    status = trial_status(trial, project_dir)
    parts = [f"trial {trial.trial_id}", status]
    try:
        values = trial.hyperparameters.values
        plan = hypermodel.plan(trial.hyperparameters.copy())
        filters = "-".join(map(str, plan))
        rule = rule_label(values) if "rule" in values else free_widths
        parts.append(f"{rule}/{values.get('block', '?')} filters={filters}")
    except Exception as exc:  # a report line must never stop the search
        parts.append(f"(architecture unavailable: {exc})")
    m = trial.metrics
    for name, label, fmt in (("params", "params", "{:,.0f}"), ("macs", "MACs", "{:,.0f}")):
        if m.exists(name):
            parts.append(f"{label}={fmt.format(m.get_last_value(name))}")
    if trial.score is not None:
        parts.append(f"{objective_name}={trial.score:.4f}")
    if status != "COMPLETED":
        reason = trial_reason(trial, project_dir)
        if reason:
            parts.append(f"({reason})")
    if seconds is not None:
        parts.append(f"{seconds:.1f}s")
    return " ".join(parts)


def _bar(done: int, total: int | None, elapsed: float, limit: float | None = None) -> str:
    """tqdm's meter as one line before a trial's line (`[5/12 trials |#####     | 01:02<01:26]`): with a time
    budget the bar is the time used of it; without either, the count and the clock."""
    if limit:
        return tqdm.format_meter(min(elapsed, limit), limit, elapsed, ncols=60, ascii=" #",
                                 bar_format=f"[{done} trials |{{bar}}| {{elapsed}} of {_clock(limit)}]")
    if not total:
        return tqdm.format_meter(done, None, elapsed, bar_format="[{n_fmt} trials, {elapsed}]")
    return tqdm.format_meter(min(done, total), total, elapsed, ncols=60, ascii=" #",
                             bar_format="[{n_fmt}/{total_fmt} trials |{bar}| {elapsed}<{remaining}]")


def _clock(seconds: float) -> str:
    return tqdm.format_interval(seconds)


class _ZooTunerMixin:
    """See the module docstring."""

    progress_stream: TextIO | None = sys.stdout
    free_widths = "per_layer"  # what the progress line calls a trial without a rule
    _zoo_execution = 0  # which execution of the running trial is next (run_trial resets it)
    _zoo_trained = 0  # trials this process saw end, for workers (their oracle has no trial table)

    def search(self, *fit_args, **fit_kwargs):  # type: ignore[no-untyped-def]
        self._zoo_search_started = time.perf_counter()
        # (Hyperband's continuations load weights only: ZooHyperModel's optimizers start fresh.)
        with gc_frozen(), tracebacks_silenced():
            return super().search(*fit_args, **fit_kwargs)  # type: ignore[misc]

    def run_trial(self, trial, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._zoo_execution = 0
        try:
            return super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        except OverBudget as exc:
            # Saved before keras-tuner ends the trial, so the oracle (here or in the chief) sees it.
            exc.rejection.save(self.project_dir, trial.trial_id)
            raise
        finally:
            if hasattr(self.hypermodel, "execution"):
                self.hypermodel.execution = 0

    def _build_and_fit_model(self, trial, *args, **kwargs):  # type: ignore[no-untyped-def]
        # keras-tuner calls this once per execution of the trial; a seeded ZooHyperModel would
        # otherwise build and shuffle identically every time.
        if hasattr(self.hypermodel, "execution"):
            self.hypermodel.execution = self._zoo_execution
        self._zoo_execution += 1
        return super()._build_and_fit_model(trial, *args, **kwargs)  # type: ignore[misc]

    def on_trial_begin(self, trial):  # type: ignore[no-untyped-def]
        self._zoo_started = time.perf_counter()
        super().on_trial_begin(trial)  # type: ignore[misc]

    def on_trial_end(self, trial):  # type: ignore[no-untyped-def]
        super().on_trial_end(trial)  # type: ignore[misc]
        # In chief/worker mode the oracle's copy holds the score; locally it is the same object.
        ended = self.oracle.get_trial(trial.trial_id)
        status = trial_status(ended, self.project_dir)
        if status in ("FAILED", "INVALID") and ended.message:
            print(ended.message, file=sys.stderr, flush=True)  # a real failure: its traceback
        if self.progress_stream is None:
            return
        if status != "REJECTED":
            self._zoo_trained += 1
        if is_worker():
            done, total = self._zoo_trained, None
        else:
            done = sum(1 for t in self.oracle.trials.values()
                       if str(t.status) not in ("RUNNING", "IDLE")
                       and trial_status(t, self.project_dir) != "REJECTED")
            total = getattr(self.oracle, "trained_trials", None)
        now = time.perf_counter()
        name = getattr(self.oracle.objective, "name", "score")
        line = progress_line(ended, self.hypermodel, name, self.project_dir,
                             now - getattr(self, "_zoo_started", now), self.free_widths)
        limit = getattr(self.oracle, "max_seconds", None)
        if limit:  # the oracle's clock started when it was made (a slim training counts too)
            bar = _bar(done, total, time.monotonic() - self.oracle.started, limit)
        else:
            bar = _bar(done, total, now - getattr(self, "_zoo_search_started", now))
        print(f"{bar} {line}", file=self.progress_stream, flush=True)


# What goes to the oracle; everything else is the Tuner's (directory, executions_per_trial, ...).
_ORACLE_ARGS = frozenset({
    "objective", "max_trials", "seed", "hyperparameters", "allow_new_entries", "tune_new_entries",
    "max_retries_per_trial", "max_consecutive_failed_trials", "network_key", "seed_values", "cover",
    "max_rejections", "max_seconds", "max_epochs", "factor", "hyperband_iterations", "num_initial_points",
    "alpha", "beta"})


class _OracleOwner:
    """Tuners built like keras-tuner's (`RandomSearch(hypermodel, objective=..., max_trials=...)`),
    each with its tuning.searches.oracles class; the oracle draws distinct networks of the hypermodel."""

    oracle_class: type

    def __init__(self, hypermodel: kt.HyperModel | None = None, **kwargs: Any) -> None:
        oracle_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _ORACLE_ARGS}
        oracle_kwargs.setdefault("network_key", getattr(hypermodel, "network_key", None))
        # keras-tuner's own subclasses only create their oracle here; Tuner takes ours instead.
        # Its constructor builds the model once per conditional scope only to discover the
        # space: a ZooHyperModel declares the same hyperparameters without building Keras models.
        exploring = getattr(hypermodel, "exploring_space", contextlib.nullcontext)
        with exploring():
            kt.Tuner.__init__(self, oracle=self.oracle_class(**oracle_kwargs), hypermodel=hypermodel,
                              **kwargs)


class RandomSearch(_OracleOwner, _ZooTunerMixin, kt.Tuner):
    oracle_class = ORACLES["random"]


class BayesianOptimization(_OracleOwner, _ZooTunerMixin, kt.Tuner):
    oracle_class = ORACLES["bayesian"]


class GridSearch(_OracleOwner, _ZooTunerMixin, kt.Tuner):
    oracle_class = ORACLES["grid"]


class Hyperband(_OracleOwner, _ZooTunerMixin, kt.Hyperband):
    """keras-tuner's Hyperband (its run_trial trains each bracket's epochs) with tuning's oracle."""

    oracle_class = ORACLES["hyperband"]


TUNERS: dict[str, type] = {"random": RandomSearch, "bayesian": BayesianOptimization,
                           "hyperband": Hyperband, "grid": GridSearch}


def make_tuner(kind: str, hypermodel: kt.HyperModel, *, objective: Any, max_trials: int,
               epochs: int, seed: int | None, max_consecutive_failed_trials: int,
               executions_per_trial: int, directory: str, project_name: str, overwrite: bool,
               distribution_strategy: Any = None, progress: TextIO | None = sys.stdout,
               max_rejections: int = 0, seed_values: Sequence[Mapping[str, Any]] = (),
               cover: str | None = None, max_seconds: float | None = None) -> kt.Tuner:
    """One of TUNERS, configured the same way for every kind.

    Hyperband has no `max_trials`: `max_epochs=epochs` and its own bracket schedule decide how
    many trials run (one iteration of its brackets, or as many as `max_seconds` allows). See
    tuning.searches.oracles for `max_rejections`, `seed_values`, `cover` and `max_seconds`.
    """
    if kind not in TUNERS:
        raise ValueError(f"unknown tuner {kind!r}; valid: {', '.join(TUNERS)}")
    kwargs: dict[str, Any] = dict(
        # keras-tuner's Oracle reads seed 0 as "no seed" (`seed or random.randint(1, 10000)`), so
        # `--seed 0`, our default, gave different draws on every run; shifting by one keeps every
        # seed, 0 included, reproducible.
        objective=objective, seed=None if seed is None else seed + 1,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
        max_rejections=max_rejections, seed_values=seed_values, cover=cover,
        max_seconds=max_seconds,
        executions_per_trial=executions_per_trial, directory=directory, project_name=project_name,
        overwrite=overwrite, distribution_strategy=distribution_strategy)
    if kind == "hyperband":
        # With a time budget, Hyperband repeats its brackets until the time is up.
        kwargs.update(max_epochs=max(epochs, 2), factor=3,
                      hyperband_iterations=1 if max_seconds is None else 1000)
    else:
        kwargs["max_trials"] = max_trials
    tuner = TUNERS[kind](hypermodel, **kwargs)
    tuner.progress_stream = progress
    return tuner

