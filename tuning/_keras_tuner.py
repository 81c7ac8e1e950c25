"""Every use of keras-tuner's private API, in one place.

keras-tuner 1.4 exports no public factory for objectives, no public MultiObjective, no public way to
ask "am I the chief or a worker?" and no switch for the traceback it prints per failed trial. The
oracles also use private hooks that every built-in oracle has: the value hash and the draw that
refuses repeated values (`_compute_values_hash`, `_random_values`, `_duplicate`), and the queue a
reload retries (`_retry_queue`); they write the oracle's files atomically through `_save_trial`,
`_get_trial_dir` and `_get_oracle_fname`. `tests/test_keras_tuner_private.py`
checks each of these against the installed keras-tuner, so an upgrade that moves one fails there,
by name, instead of somewhere in a search.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras_tuner as kt
from keras_tuner.src import config as _config
from keras_tuner.src.distribute import utils as _dist_utils
from keras_tuner.src.engine.objective import MultiObjective, create_objective
from keras_tuner.src.engine.tuner import maybe_distribute

__all__ = ["MultiObjective", "create_objective", "maybe_distribute", "is_worker", "owns_oracle",
           "tracebacks_silenced", "ORACLE_HOOKS"]

# Private Oracle methods tuning.oracles overrides or calls; the test checks they still exist.
ORACLE_HOOKS = ("_compute_values_hash", "_random_values", "_duplicate", "_save_trial",
                "_get_trial_dir", "_get_oracle_fname", "_tried_so_far", "_retry_queue")


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
    missing = [f"Oracle.{name}" for name in ORACLE_HOOKS
               if name not in ("_tried_so_far", "_retry_queue")
               and not callable(getattr(kt.Oracle, name, None))]
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("x", "max"), max_trials=1)
    if not isinstance(getattr(oracle, "_tried_so_far", None), set):
        missing.append("Oracle._tried_so_far (a set of value hashes)")
    if not isinstance(getattr(oracle, "_retry_queue", None), list):
        missing.append("Oracle._retry_queue (trial ids a reload retries)")
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
