"""`RunListOracle`: hands out a comparison's runs, each once, in order (and, with the seed
allocation rule, only the seeds a cell still needs)."""
from __future__ import annotations

from typing import Any

import keras_tuner as kt

from tuning.comparisons.config import REFERENCE_RULE, Run
from tuning.comparisons.stats import Allocation
from cnnzoo.signals import sigint_deferred

__all__ = ["RunListOracle"]

_STATUS = kt.engine.trial.TrialStatus


class RunListOracle(kt.Oracle):
    """Hands out each run of the "run" Choice once, in order.

    The next run is derived from the trials the oracle holds, not from an ordering kept in memory:
    keras-tuner's GridSearchOracle keeps its order only in memory, so a comparison resumed after
    Ctrl-C failed on its first retried trial (KeyError in GridSearch's ordering). A trial cut short
    is retried by keras-tuner's own retry queue before any new run starts; a finished one never is
    (see `reload`).

    With an `allocation`, a run of seed s >= allocation.first is handed out only once every
    earlier seed of its cell (and of doubling at its budget) has ended and the rule says the cell
    is still open; the study stops when no cell is.
    """

    def __init__(self, *args: Any, allocation: Allocation | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allocation = allocation

    def reload(self) -> None:
        super().reload()
        # keras-tuner saves its state in end_trial before it forgets the finished trial as
        # ongoing, and a reload retries every ongoing trial: a chief stopped in between (a
        # finished `--workers 2` study) trained a finished run again on the next run of the
        # command. Finished trials are in end_order.
        finished = set(self.end_order)
        self._retry_queue = [tid for tid in self._retry_queue if tid not in finished]

    def _state(self) -> tuple[set[str], set[str], dict[str, float]]:
        """(started run keys, ended run keys, test accuracy of each completed run key)."""
        started, ended, accuracy = set(), set(), {}
        finished = set(self.end_order)
        for tid, t in self.trials.items():
            key = t.hyperparameters.values.get("run")
            if key is None:
                continue
            started.add(key)
            if tid in finished:
                ended.add(key)
                if t.status == _STATUS.COMPLETED:
                    accuracy[key] = t.metrics.get_last_value("test_accuracy")
        return started, ended, accuracy

    def wanted(self, run: Run, runs: list[Run], started: set[str], ended: set[str],
               accuracy: dict[str, float]) -> bool | None:
        """Whether `run` should train (None: not yet known, an earlier seed is still running)."""
        a = self.allocation
        if a is None or run.seed < a.first:
            return True
        if run.rule == REFERENCE_RULE:
            answers = [self.wanted(r, runs, started, ended, accuracy) for r in runs
                       if r.budget == run.budget and r.seed == run.seed and r.rule != run.rule]
            return True if True in answers else None if None in answers else False
        diffs = []
        for seed in range(run.seed):
            mine = Run(run.rule, run.budget, seed).key
            ref = Run(REFERENCE_RULE, run.budget, seed).key
            if any(k in started and k not in ended for k in (mine, ref)):
                return None
            if mine in accuracy and ref in accuracy:
                diffs.append(accuracy[mine] - accuracy[ref])
        return a.decide(diffs) == "open"

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        keys = next(hp.values for hp in self.get_space().space if hp.name == "run")
        runs = [Run.from_key(k) for k in keys]
        started, ended, accuracy = self._state()
        for run in runs:
            if run.key not in started and self.wanted(run, runs, started, ended, accuracy):
                return {"status": _STATUS.RUNNING, "values": {"run": run.key}}
        if self.ongoing_trials:  # the last runs (or the ones a decision waits for) still train
            return {"status": _STATUS.IDLE, "values": None}
        return {"status": _STATUS.STOPPED, "values": None}

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        with sigint_deferred():
            return super().create_trial(tuner_id)
