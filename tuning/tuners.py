"""keras-tuner's own tuners, each with a one-line progress report per finished trial.

The additions (`_ZooTunerMixin`): the progress line (`on_trial_end`, the hook keras-tuner offers
for it), a frozen garbage collector during `search`, and a distinct seed per execution of a trial.
The search algorithms, resume (`overwrite=False` reloads the oracle) and chief/worker mode are
keras-tuner's.
"""
from __future__ import annotations

from zoo import _env  # noqa: F401  (quiet TensorFlow before Keras imports it)

import contextlib
import gc
import os
import sys
import time
from typing import Any, Iterator, TextIO

import keras_tuner as kt

from .budgets import REJECTED_PREFIX

__all__ = ["TUNERS", "make_tuner", "trial_status", "trial_reason", "progress_line"]


# Written into a rejected trial's folder by the tuner that ran it: in chief/worker mode the
# trial's message (the traceback) does not travel back to the chief, this file does (the project
# directory is shared, as keras-tuner requires for checkpoints).
REJECTION_FILE = "zoo_rejected.txt"


def _rejection_file(project_dir: str | os.PathLike, trial_id: str) -> str:
    return os.path.join(project_dir, f"trial_{trial_id}", REJECTION_FILE)


def trial_reason(trial: kt.engine.trial.Trial, project_dir: str | os.PathLike | None = None) -> str:
    """Why a trial failed: its message's last line (keras-tuner stores the whole traceback), or
    the rejection file another process wrote in its folder."""
    lines = [ln.strip() for ln in (trial.message or "").strip().splitlines() if ln.strip()]
    if not lines and project_dir is not None:
        try:
            with open(_rejection_file(project_dir, trial.trial_id), encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            return ""
    if not lines:
        return ""
    last = lines[-1]
    # "keras_tuner.src.errors.FailedTrialError: over budget: ..." -> "over budget: ..."
    head, sep, tail = last.partition(": ")
    return tail if sep and head.rsplit(".", 1)[-1].endswith(("Error", "Exception")) else last


def trial_status(trial: kt.engine.trial.Trial, project_dir: str | os.PathLike | None = None) -> str:
    """COMPLETED, REJECTED (over budget, never trained), FAILED, INVALID, RUNNING..."""
    status = str(trial.status)
    if status == "FAILED" and trial_reason(trial, project_dir).startswith(REJECTED_PREFIX):
        return "REJECTED"
    return status


def progress_line(trial: kt.engine.trial.Trial, hypermodel: Any, objective_name: str,
                  seconds: float | None, done: int, total: int | None) -> str:
    hp = trial.hyperparameters
    parts = [f"[trial {trial.trial_id} | {done}{'/' + str(total) if total else ''} done]",
             trial_status(trial)]
    try:
        values = hp.values
        rule = values.get("rule", "per_layer")
        filters = "-".join(map(str, hypermodel.plan(hp.copy())))
        parts.append(f"{rule}/{values.get('block', '?')} depth={values.get('depth')} filters={filters}")
    except Exception as exc:  # a report line must never stop the search
        parts.append(f"(architecture unavailable: {exc})")
    m = trial.metrics
    for name, label, fmt in (("params", "params", "{:,.0f}"), ("macs", "MACs", "{:,.0f}"),
                             ("latency_ms", "latency", "{:.2f} ms")):
        if m.exists(name):
            parts.append(f"{label}={fmt.format(m.get_last_value(name))}")
    if trial.score is not None:
        parts.append(f"{objective_name}={trial.score:.4f}")
    if trial_status(trial) != "COMPLETED" and trial.message:
        parts.append(f"({trial_reason(trial)})")
    if seconds is not None:
        parts.append(f"{seconds:.1f}s")
    return " ".join(parts)


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Keep the objects alive now (TF, Keras, the data: ~400k) out of the collector's way.

    Each trial runs two full collections (`clear_session()`'s and keras-tuner's `_try_build`'s),
    and each walked every object TensorFlow ever imported: ~0.07 s apiece, about a fifth of the
    per-trial overhead of a small search. `gc.freeze()` (CPython's tool for long-lived heaps) moves
    those objects to a permanent generation, so the collections walk only what the trials create.
    Reference counting still frees frozen objects; `unfreeze` hands them back at the end.
    """
    gc.collect()  # what is garbage now must not become immortal
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _ZooTunerMixin:
    """Prints `progress_line` for every finished trial to `self.progress_stream`, freezes the
    collector during `search`, and numbers the executions of a trial for ZooHyperModel."""

    progress_stream: TextIO | None = sys.stdout
    progress_total: int | None = None
    _zoo_execution = 0  # which execution of the running trial is next (run_trial resets it)

    def search(self, *fit_args, **fit_kwargs):  # type: ignore[no-untyped-def]
        with gc_frozen():
            return super().search(*fit_args, **fit_kwargs)  # type: ignore[misc]

    def run_trial(self, trial, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._zoo_execution = 0
        try:
            return super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        finally:
            if hasattr(self.hypermodel, "execution"):
                self.hypermodel.execution = 0

    def _build_and_fit_model(self, trial, *args, **kwargs):  # type: ignore[no-untyped-def]
        # keras-tuner calls this once per execution of the trial; a seeded ZooHyperModel would
        # otherwise build and shuffle identically every time (zoo.build sets Keras' global seed).
        if hasattr(self.hypermodel, "execution"):
            self.hypermodel.execution = self._zoo_execution
        self._zoo_execution += 1
        return super()._build_and_fit_model(trial, *args, **kwargs)  # type: ignore[misc]

    def on_trial_begin(self, trial):  # type: ignore[no-untyped-def]
        self._zoo_started = time.perf_counter()
        self._zoo_done = getattr(self, "_zoo_done", 0)
        super().on_trial_begin(trial)  # type: ignore[misc]

    def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):  # type: ignore[no-untyped-def]
        # keras-tuner prints the traceback of every failed trial (config.DEBUG defaults to True);
        # a budget rejection is expected and its progress line says why, so only real failures
        # get their traceback, on stderr.
        from keras_tuner.src import config as kt_config

        debug, kt_config.DEBUG = kt_config.DEBUG, False
        try:
            super()._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)  # type: ignore[misc]
        finally:
            kt_config.DEBUG = debug
        status = trial_status(trial)
        if status == "REJECTED":
            path = _rejection_file(self.project_dir, trial.trial_id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(trial_reason(trial) + "\n")
        elif debug and trial.message and status in ("FAILED", "INVALID"):
            print(trial.message, file=sys.stderr, flush=True)

    def on_trial_end(self, trial):  # type: ignore[no-untyped-def]
        super().on_trial_end(trial)  # type: ignore[misc]
        if self.progress_stream is None:
            return
        # In chief/worker mode the oracle's copy holds the score; locally it is the same object.
        ended = self.oracle.get_trial(trial.trial_id)
        seconds = time.perf_counter() - getattr(self, "_zoo_started", time.perf_counter())
        try:
            done = sum(1 for t in self.oracle.trials.values()
                       if str(t.status) not in ("RUNNING", "IDLE") and trial_status(t) != "REJECTED")
        except AttributeError:  # oracle client in a worker: no local trial table
            self._zoo_done = getattr(self, "_zoo_done", 0) + 1
            done = self._zoo_done
        name = getattr(self.oracle.objective, "name", "score")
        print(progress_line(ended, self.hypermodel, name, seconds, done, self.progress_total),
              file=self.progress_stream, flush=True)


class RandomSearch(_ZooTunerMixin, kt.RandomSearch):
    pass


class BayesianOptimization(_ZooTunerMixin, kt.BayesianOptimization):
    pass


class Hyperband(_ZooTunerMixin, kt.Hyperband):
    pass


class GridSearch(_ZooTunerMixin, kt.GridSearch):
    pass


TUNERS: dict[str, type] = {"random": RandomSearch, "bayesian": BayesianOptimization,
                           "hyperband": Hyperband, "grid": GridSearch}


def rejected_count(oracle: kt.Oracle) -> int:
    project_dir = getattr(oracle, "_project_dir", None)
    return sum(1 for t in oracle.trials.values() if trial_status(t, project_dir) == "REJECTED")


def budget_rejections_are_free(oracle: kt.Oracle, max_trials: int, max_rejections: int) -> None:
    """Make `max_trials` count trained (and crashed) trials, not budget rejections.

    keras-tuner stops when len(trials) reaches `oracle.max_trials`; a rejection costs a build but
    no training, so each one raises that bound by one, up to `max_rejections` in total. Done on
    the oracle itself (in chief/worker mode only the chief's oracle ends trials) and recomputed
    from the trials on disk, so a resumed search keeps the same bound.
    """
    if oracle.max_trials is None:  # Hyperband: its bracket schedule decides
        return
    end_trial = oracle.end_trial

    def _rebound() -> None:
        oracle.max_trials = max_trials + min(rejected_count(oracle), max_rejections)

    def end_trial_then_rebound(trial):  # type: ignore[no-untyped-def]
        try:
            return end_trial(trial)
        finally:
            _rebound()

    _rebound()
    oracle.end_trial = end_trial_then_rebound  # instance attribute: the gRPC servicer calls it too


def first_trial_uses_defaults(oracle: kt.Oracle) -> None:
    """The first trial of a new search takes every hyperparameter's default, as GridSearch does.

    ZooHyperModel(seed_rule=...) puts a rule's plan in those defaults, so the search starts from
    the familiar profile. Not for Hyperband, whose populate_space also runs its brackets.
    """
    populate = oracle.populate_space

    def populate_space(trial_id):  # type: ignore[no-untyped-def]
        if not oracle.start_order:
            space = oracle.get_space()
            return {"status": "RUNNING",
                    "values": {hp.name: hp.default for hp in space.space if space.is_active(hp)}}
        return populate(trial_id)

    oracle.populate_space = populate_space


def make_tuner(kind: str, hypermodel: kt.HyperModel, *, objective: Any, max_trials: int,
               epochs: int, seed: int | None, max_consecutive_failed_trials: int,
               executions_per_trial: int, directory: str, project_name: str, overwrite: bool,
               distribution_strategy: Any = None, progress: TextIO | None = sys.stdout,
               max_rejections: int = 0) -> kt.Tuner:
    """One of TUNERS, configured the same way for every kind.

    Hyperband has no `max_trials`: `max_epochs=epochs` and its own bracket schedule decide how
    many trials run (`hyperband_iterations=1`). `max_rejections` > 0: up to that many budget
    rejections do not count towards `max_trials` (see budget_rejections_are_free).
    """
    if kind not in TUNERS:
        raise ValueError(f"unknown tuner {kind!r}; valid: {', '.join(TUNERS)}")
    common: dict[str, Any] = dict(
        # keras-tuner's Oracle reads seed 0 as "no seed" (`seed or random.randint(1, 10000)`), so
        # `--seed 0`, our default, gave different draws on every run; shifting by one keeps every
        # seed, 0 included, reproducible.
        objective=objective, seed=None if seed is None else seed + 1,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
        executions_per_trial=executions_per_trial, directory=directory, project_name=project_name,
        overwrite=overwrite, distribution_strategy=distribution_strategy)
    if kind == "hyperband":
        tuner = TUNERS[kind](hypermodel, max_epochs=max(epochs, 2), factor=3, **common)
    else:
        tuner = TUNERS[kind](hypermodel, max_trials=max_trials, **common)
    from keras_tuner.src.distribute import utils as dist_utils

    # A worker's oracle is a gRPC client: the chief's oracle applies these for everyone.
    owns_oracle = not dist_utils.has_chief_oracle() or dist_utils.is_chief_oracle()
    if max_rejections and owns_oracle:
        budget_rejections_are_free(tuner.oracle, max_trials, max_rejections)
    if getattr(hypermodel, "seed_rule", None) and kind in ("random", "bayesian") and owns_oracle:
        first_trial_uses_defaults(tuner.oracle)
    tuner.progress_stream = progress
    tuner.progress_total = None if kind == "hyperband" else max_trials
    return tuner
