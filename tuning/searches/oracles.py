"""keras-tuner's oracles, extended by subclassing (its documented `synchronized` pattern).

`ZooOracleMixin`, put in front of each built-in oracle, adds what a budget-filling search needs:
- **distinct networks**: the value hash keras-tuner uses to refuse repeated values is taken over
  the *network* the values build (`network_key`), so a profile and its double (the same network
  once both fill the budget), or two rules with one plan, are not trained twice, and a point that
  was rejected once is never drawn again;
- **seeds**: given values (a rule's plan, a learned slim profile) are the first trials;
- **coverage**: with `cover="rule"`, every value of that Choice is tried once before any repeats;
- **free rejections**: `max_trials` counts trained trials; each budget rejection raises the bound
  by one, up to `max_rejections` (recomputed from the trials, so a resumed search keeps it);
- **atomic state**: the oracle and its trials are written to a temporary file and renamed, so a
  process killed mid-write (Ctrl-C, kill -9, a worker pool stopped) never leaves a torn JSON that
  the next run cannot reload;
- **a time budget**: after `max_seconds` (counted from the oracle's creation in this process) no
  new trial starts; running ones finish.
The draws themselves stay keras-tuner's (random, Bayesian, Hyperband's brackets).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import keras_tuner as kt

from cnnzoo.files import write_atomic

from tuning.constraints import Rejection

__all__ = ["ZooOracleMixin", "RandomSearchOracle", "BayesianOptimizationOracle", "HyperbandOracle",
           "GridSearchOracle", "ORACLES"]

NetworkKey = Callable[[kt.HyperParameters], str]
_RUNNING = kt.engine.trial.TrialStatus.RUNNING
_STOPPED = {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class ZooOracleMixin:
    """See the module docstring; every argument is optional and off by default."""

    def __init__(self, *args: Any, network_key: NetworkKey | None = None,
                 seed_values: Sequence[Mapping[str, Any]] = (), cover: str | None = None,
                 max_rejections: int = 0, max_seconds: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.max_seconds = max_seconds
        self.started = time.monotonic()
        self.network_key = network_key
        self.seed_values = [dict(v) for v in seed_values]
        self.cover = cover
        self.max_rejections = max_rejections
        self.trained_trials = self.max_trials  # what the user asked for; max_trials moves
        # keras-tuner gives up after 20 repeated draws in a row; with one network per many draws
        # (budget filling maps every multiple of a profile to one network) that ends searches early.
        self._max_collisions = 500

    # --- which trials were rejected ------------------------------------------------------------

    def rejection(self, trial_id: str) -> Rejection | None:
        """The rejection recorded for a trial (by whichever process ran it), or None."""
        return Rejection.load(self._project_dir, trial_id)

    def rejected_ids(self) -> list[str]:
        return [tid for tid, t in self.trials.items()
                if str(t.status) == "FAILED" and self.rejection(tid) is not None]

    def _rebound(self) -> None:
        if self.trained_trials is not None and self.max_rejections:
            self.max_trials = self.trained_trials + min(len(self.rejected_ids()), self.max_rejections)

    @kt.synchronized
    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        try:
            super().end_trial(trial)  # type: ignore[misc]
        finally:
            self._rebound()

    def save(self) -> None:
        write_atomic(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial: kt.engine.trial.Trial) -> None:
        write_atomic(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                     json.dumps(trial.get_state()))

    def reload(self) -> None:
        super().reload()  # type: ignore[misc]
        # keras-tuner saves its state in end_trial before it forgets the finished trial as
        # ongoing, and a reload retries every ongoing trial: a process killed in between would
        # train a finished trial again on resume. Finished trials are in end_order.
        finished = set(self.end_order)
        self._retry_queue = [tid for tid in self._retry_queue if tid not in finished]
        self._rebound()

    # --- what is drawn -------------------------------------------------------------------------

    def _compute_values_hash(self, values: Mapping[str, Any]) -> str:
        if self.network_key is not None:
            hp = self.hyperparameters.copy()
            # Hyperband's bookkeeping (tuner/epochs, ...) does not change the network.
            hp.values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
            try:
                key = self.network_key(hp)
            except Exception:  # values the hypermodel cannot plan: fall back to the values
                key = None
            if key is not None:
                return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return super()._compute_values_hash(values)  # type: ignore[misc]

    def complete_values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """`given` plus every other active hyperparameter at its default (a seed trial's values)."""
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = given.get(hp.name, hp.default)
        return hps.values

    def _untried(self) -> list[Any]:
        hp = next((h for h in self.hyperparameters.space if h.name == self.cover), None)
        if hp is None or not hasattr(hp, "values"):
            return []
        tried = {t.hyperparameters.values.get(self.cover) for t in self.trials.values()}
        return [v for v in hp.values if v not in tried]

    def _covering_values(self) -> dict[str, Any] | None:
        """A fresh random draw whose `cover` value has not been tried yet (None: none found)."""
        untried = self._untried()
        for _ in range(self._max_collisions if untried else 0):
            values = self._random_values()  # type: ignore[attr-defined]
            if values is None:
                return None
            if values.get(self.cover) in untried:
                return values
        return None

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        started = len(self.start_order)
        # Seeds first, in order, even out of time (they were asked for by name); a resumed search
        # has them among its trials already.
        for values in self.seed_values[started:started + 1]:
            complete = self.complete_values(values)
            if not self._duplicate(complete):  # type: ignore[attr-defined]
                return {"status": _RUNNING, "values": complete}
        if self.out_of_time():
            return _STOPPED
        if self.cover:
            values = self._covering_values()
            if values is not None:
                return {"status": _RUNNING, "values": values}
        return super().populate_space(trial_id)  # type: ignore[misc]


class RandomSearchOracle(ZooOracleMixin, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(ZooOracleMixin, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(ZooOracleMixin, kt.oracles.HyperbandOracle):
    """Seeds and coverage are not applied: Hyperband's brackets decide what runs and for how long."""

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if self.out_of_time():
            return _STOPPED
        return kt.oracles.HyperbandOracle.populate_space(self, trial_id)


class GridSearchOracle(ZooOracleMixin, kt.oracles.GridSearchOracle):
    pass


ORACLES: dict[str, type] = {"random": RandomSearchOracle, "bayesian": BayesianOptimizationOracle,
                            "hyperband": HyperbandOracle, "grid": GridSearchOracle}
