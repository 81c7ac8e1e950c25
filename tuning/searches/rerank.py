"""Re-ranking: train the best trials again with fresh seeds before naming a winner.

Why: a short trial's validation accuracy moves by a point or two with the seed alone, so the best
of N single-run trials is partly the luckiest of them. Training only the top `k` again, each a few
more times with execution seeds the search never used, and ranking those `k` by their mean
separates architecture from luck for a fraction of what `executions_per_trial` costs on every
trial (the same idea as retraining the top candidates at the end of a NAS run).

The extra runs are recorded in `<project>/rerank.json` as they finish, so an interrupted or
repeated search reuses them and trains only what is missing. The winner's exported weights stay
those of its search run (keras-tuner's checkpoint): re-ranking changes the order, not the model.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

import keras
import keras_tuner as kt

from cnnzoo.files import write_atomic
from tuning._keras_tuner import maybe_distribute

__all__ = ["RERANK_FILE", "rerank", "rerank_mean"]

RERANK_FILE = "rerank.json"


def _best_epoch(history: keras.callbacks.History, metric: str, direction: str) -> float:
    values = history.history.get(metric)
    if not values:
        raise RuntimeError(f"the re-ranking fit logged no {metric!r} (logged: "
                           f"{', '.join(history.history) or 'nothing'})")
    return float(max(values) if direction == "max" else min(values))


def _load(path: Path, seed: int | None) -> dict[str, dict[str, float]]:
    """The recorded runs, or none when they were made with another seed (or are unreadable)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("seed") != seed:
            return {}
        return {str(t): {str(e): float(v) for e, v in r.items()} for t, r in saved["runs"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):  # missing or damaged: retrain
        return {}


def _save(path: Path, runs: dict[str, dict[str, float]], metric: str, seed: int | None) -> None:
    write_atomic(path, json.dumps({"metric": metric, "seed": seed, "runs": runs}, indent=1,
                                  sort_keys=True))


def rerank(tuner: kt.Tuner, hypermodel: Any, trial_ids: Sequence[str], *, executions: int,
           first_execution: int, metric: str, direction: str, fit_args: Sequence[Any],
           fit_kwargs: dict[str, Any], progress: TextIO | None = None) -> dict[str, list[float]]:
    """Train each of `trial_ids` `executions` more times; trial id -> each run's best-epoch `metric`.

    Run j of a trial builds with execution number `first_execution + j` (ZooHyperModel builds
    execution k with seed + k), so the runs differ from each other and from the search's own.
    """
    path = Path(tuner.project_dir) / RERANK_FILE
    runs = _load(path, hypermodel.seed)
    out: dict[str, list[float]] = {}
    for n, trial_id in enumerate(trial_ids, 1):
        hp = tuner.oracle.get_trial(trial_id).hyperparameters
        done = runs.setdefault(str(trial_id), {})
        for j in range(executions):
            execution = str(first_execution + j)
            if execution not in done:
                started = time.perf_counter()
                keras.backend.clear_session()
                hypermodel.execution = first_execution + j
                try:
                    with maybe_distribute(tuner.distribution_strategy):
                        model = hypermodel.build(hp.copy())
                    history = hypermodel.fit_unchecked(hp.copy(), model, *fit_args, **fit_kwargs)
                finally:
                    hypermodel.execution = 0
                done[execution] = _best_epoch(history, metric, direction)
                _save(path, runs, metric, hypermodel.seed)
                if progress is not None:
                    print(f"[re-rank {n}/{len(trial_ids)}: trial {trial_id} | run {j + 1}/{executions}] "
                          f"{metric}={done[execution]:.4f} {time.perf_counter() - started:.1f}s",
                          file=progress, flush=True)
        out[str(trial_id)] = [done[str(first_execution + j)] for j in range(executions)]
    keras.backend.clear_session()
    return out


def rerank_mean(search_score: float, search_runs: int, extra: Sequence[float]) -> float:
    """The mean over every run of a trial: its search score counts for the runs it averaged."""
    return (search_score * search_runs + sum(extra)) / (search_runs + len(extra))
