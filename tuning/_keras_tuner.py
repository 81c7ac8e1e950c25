"""Every use of keras-tuner's private API, in one place.

keras-tuner 1.4 exports no public factory for objectives, no public MultiObjective, no public way to
ask "am I the chief or a worker?" and no switch for the traceback it prints per failed trial. The
oracles (tuning/searches/oracles.py) also use private hooks that every built-in oracle has: the value hash
and the draw that refuses repeated values (`_compute_values_hash`, `_random_values`, `_duplicate`,
and `_max_collisions`, the number of draws before a search ends as exhausted), the queue a reload
retries (`_retry_queue`), the project folder (`_project_dir`), and the oracle's own files, which
they write atomically (`_save_trial`, `_get_trial_dir`, `_get_oracle_fname`). The tuners
(tuning/searches/tuners.py) override `Tuner._build_and_fit_model`, called once per execution of a trial, to
give each execution its own seed. `tests/tuning/test_keras_tuner_private.py` checks each of these
against the installed keras-tuner, so an upgrade that moves one fails there, by name, instead of
somewhere in a search (a renamed `_max_collisions` would quietly end searches early).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras_tuner as kt
from keras_tuner.src import config as _config
from keras_tuner.src.distribute import utils as _dist_utils
from keras_tuner.src.engine.objective import MultiObjective, create_objective
from keras_tuner.src.engine.tuner import maybe_distribute
from keras_tuner.src.engine import conditions as _conditions

# keras-tuner 1.4's `conditions.Parent.to_proto` keeps a debug `print(self.values[0])`: with
# `--workers N` every conditional hyperparameter sent to or from the chief put a rule name on
# stdout (26 stray "doubling"/"linear" lines in a small search). A module global named `print`
# shadows the builtin in that module only, so nothing else is muted (that module has no other print).
_conditions.print = lambda *args, **kwargs: None

__all__ = ["MultiObjective", "create_objective", "maybe_distribute", "is_worker", "owns_oracle",
           "tracebacks_silenced", "ORACLE_METHODS", "ORACLE_ATTRIBUTES", "ORACLE_HOOKS",
           "TUNER_METHODS", "check_installed"]

# Private Oracle methods tuning.searches.oracles overrides or calls.
ORACLE_METHODS = ("_compute_values_hash", "_random_values", "_duplicate", "_save_trial",
                  "_get_trial_dir", "_get_oracle_fname")
# Private Oracle attributes tuning.searches.oracles reads or sets: name -> the type keras-tuner gives it.
# (`_project_dir` is a property: the project's path once a tuner adopts the oracle.)
ORACLE_ATTRIBUTES: dict[str, type] = {"_retry_queue": list, "_max_collisions": int,
                                      "_project_dir": str}
ORACLE_HOOKS = ORACLE_METHODS + tuple(ORACLE_ATTRIBUTES)
# Private Tuner methods tuning.searches.tuners overrides.
TUNER_METHODS = ("_build_and_fit_model",)


def owns_oracle() -> bool:
    """True in a local search or in the chief: the process whose oracle decides the trials."""
    return not _dist_utils.has_chief_oracle() or _dist_utils.is_chief_oracle()


def is_worker() -> bool:
    """True in a worker of a chief/worker search (its oracle is a gRPC client of the chief's)."""
    return _dist_utils.has_chief_oracle() and not _dist_utils.is_chief_oracle()


@contextlib.contextmanager
def tracebacks_silenced() -> Iterator[None]:
    """keras-tuner prints the traceback of every failed trial (its DEBUG flag defaults to True);
    inside this block it does not, so the tuner can report failures itself, one line each."""
    debug, _config.DEBUG = _config.DEBUG, False
    try:
        yield
    finally:
        _config.DEBUG = debug


def check_installed() -> list[str]:
    """What the installed keras-tuner no longer provides of the above (empty when all is there)."""
    missing = [f"Oracle.{name}" for name in ORACLE_METHODS
               if not callable(getattr(kt.Oracle, name, None))]
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("x", "max"), max_trials=1)
    for name, kind in ORACLE_ATTRIBUTES.items():
        if name == "_project_dir":  # a property, a path once a tuner adopts the oracle
            if not isinstance(getattr(kt.Oracle, name, None), property):
                missing.append(f"Oracle.{name} (a property)")
            continue
        if name not in vars(oracle) or not isinstance(getattr(oracle, name), kind):
            missing.append(f"Oracle.{name} (a {kind.__name__})")
    missing += [f"Tuner.{name}" for name in TUNER_METHODS
                if not callable(getattr(kt.Tuner, name, None))]
    if not hasattr(_config, "DEBUG"):
        missing.append("keras_tuner.src.config.DEBUG")
    for name in ("has_chief_oracle", "is_chief_oracle"):
        if not callable(getattr(_dist_utils, name, None)):
            missing.append(f"keras_tuner.src.distribute.utils.{name}")
    return missing


def objective_names(objective: Any) -> list[str]:
    """The metric names of a keras-tuner objective (single or multi)."""
    if isinstance(objective, MultiObjective):
        return [o.name for o in objective.objectives]
    return [objective.name]
