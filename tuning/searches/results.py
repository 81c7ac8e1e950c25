"""What a search leaves: the leaderboard (one row per trial), the Pareto front, `SearchResult`."""
from __future__ import annotations

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cnnzoo.files import atomic_open

import keras
import keras_tuner as kt
from tuning._keras_tuner import MultiObjective
from tuning.constraints import Rejection
from tuning.searches.config import COST_METRICS
from tuning.searches.report import rule_label
from tuning.searches.rerank import rerank_mean
from tuning.searches.tuners import trial_reason, trial_status

__all__ = ["COST_METRICS", "LEADERBOARD_COLUMNS", "leaderboard_rows", "pareto_front",
           "write_leaderboard", "SearchResult", "rank_rows"]



def primary_metric(objective: Any) -> str:
    """The accuracy-like metric a report ranks by: the objective, or its first non-cost part."""
    if isinstance(objective, MultiObjective):
        names = [o.name for o in objective.objectives if o.name not in COST_METRICS]
        return names[0] if names else objective.objectives[0].name
    return getattr(objective, "name", str(objective))


def metric_direction(objective: Any, metric: str) -> str:
    objs = objective.objectives if isinstance(objective, MultiObjective) else [objective]
    for o in objs:
        if o.name == metric:
            return o.direction
    return "min" if "loss" in metric or metric in COST_METRICS else "max"


LEADERBOARD_COLUMNS = ("rank", "trial", "status", "origin", "rule", "block", "depth", "filters",
                       "profile", "params", "macs", "latency_ms", "metric", "score", "rerank_runs",
                       "rerank_mean", "test_accuracy", "reason", "hyperparameters")


def _trial_sort_key(trial_id: str) -> tuple[int, str]:
    return (int(trial_id), "") if trial_id.isdigit() else (10 ** 9, trial_id)


def leaderboard_rows(tuner: kt.Tuner, hypermodel: Any, *, origins: dict[str, str] | None = None
                     ) -> list[dict[str, Any]]:
    """One dict per trial (LEADERBOARD_COLUMNS; `metric` is named by the objective), ranked.
    A value a trial does not have (a rejected trial's score, an unranked rank, a search without
    latency) is None, as pandas and the csv module's users expect of a missing value.

    Filters come from the trial's hyperparameters (no Keras); costs from the metrics CostLogger
    recorded, or for a rejected trial from its recorded Rejection. `origins`: trial id -> where a
    seed trial's values came from ("slim", a rule name). See `rank_rows` for the order.
    """
    metric = primary_metric(tuner.oracle.objective)
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: _trial_sort_key(t.trial_id)):
        hp = trial.hyperparameters
        values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
        status = trial_status(trial, tuner.project_dir)
        row: dict[str, Any] = dict.fromkeys(LEADERBOARD_COLUMNS)  # None: missing
        origin = (origins or {}).get(trial.trial_id)
        row.update(trial=trial.trial_id, status=status, origin=origin,
                   reason=trial_reason(trial, tuner.project_dir) if status != "COMPLETED" else None,
                   hyperparameters=json.dumps(values, sort_keys=True, default=str),
                   # slim's trial has per-layer values, but its widths are slim's, not a draw's
                   rule=(rule_label(values) if "rule" in values
                         else "slim" if origin == "slim" else "per_layer"),
                   block=values.get("block"),
                   depth=values.get("depth"))
        try:
            plan = hypermodel.plan(hp.copy())
            # filters: the built widths; profile: the draw they were scaled from (budget filling)
            row["filters"] = "-".join(map(str, plan))
            row["profile"] = "-".join(map(str, plan.profile))
        except Exception:
            pass
        m = trial.metrics
        for name in COST_METRICS:
            if m.exists(name):
                value = m.get_last_value(name)
                row[name] = round(float(value), 3) if name == "latency_ms" else int(value)
        if status == "REJECTED":
            rejection = Rejection.load(tuner.project_dir, trial.trial_id)
            if rejection is not None:
                row["params"], row["macs"] = rejection.costs.params, rejection.costs.macs
                if rejection.costs.latency_ms is not None:
                    row["latency_ms"] = round(rejection.costs.latency_ms, 3)
        if m.exists(metric):
            row["metric"] = float(m.get_best_value(metric))
        if trial.score is not None and status == "COMPLETED":
            row["score"] = float(trial.score)
        rows.append(row)
    return rank_rows(rows, tuner.oracle.objective.direction)


def rank_rows(rows: list[dict[str, Any]], direction: str, *,
              reranked: dict[str, list[float]] | None = None, search_runs: int = 1
              ) -> list[dict[str, Any]]:
    """Completed trials ranked by score (ties: fewer params, then the earlier trial); rejected and
    failed ones follow in trial order without a rank. `reranked` (trial id -> the metric of each
    extra run, from tuning.searches.rerank): those trials come first, ranked by `rerank_mean`, the mean over
    their `search_runs` search runs and the extra ones."""
    for r in rows:
        extra = (reranked or {}).get(r["trial"])
        if extra and r["score"] is not None:
            r["rerank_runs"] = search_runs + len(extra)
            r["rerank_mean"] = rerank_mean(r["score"], search_runs, extra)
    sign = -1.0 if direction == "max" else 1.0

    def order(r: dict[str, Any]) -> tuple[bool, float, int, tuple[int, str]]:
        has_mean = r["rerank_mean"] is not None
        return (not has_mean, sign * (r["rerank_mean"] if has_mean else r["score"]),
                r["params"] if r["params"] is not None else 0, _trial_sort_key(r["trial"]))

    done = sorted((r for r in rows if r["score"] is not None), key=order)
    for i, r in enumerate(done, 1):
        r["rank"] = i
    rest = sorted((r for r in rows if r["score"] is None), key=lambda r: _trial_sort_key(r["trial"]))
    return done + rest


def pareto_front(rows: Sequence[dict[str, Any]], *, cost: str = "params",
                 direction: str = "max") -> list[dict[str, Any]]:
    """Completed trials no other trial beats on both `metric` and `cost` (lower cost is better).

    Sorted by increasing cost. `direction` is the metric's ("max" for accuracy, "min" for loss).
    """
    if cost not in COST_METRICS:
        raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COST_METRICS)}")
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    sign = 1.0 if direction == "max" else -1.0
    pts = [r for r in rows if r["status"] == "COMPLETED" and r["metric"] is not None
           and r[cost] is not None]
    front = []
    for r in pts:
        a, c = sign * r["metric"], r[cost]
        dominated = any((sign * o["metric"] >= a and o[cost] <= c)
                        and (sign * o["metric"] > a or o[cost] < c) for o in pts)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r[cost], -sign * r["metric"]))


def write_leaderboard(rows: Sequence[dict[str, Any]], path: Path, metric: str) -> Path:
    """CSV with the objective's metric under its own name (e.g. `val_accuracy`); a missing
    value (None) is an empty cell, which pandas reads as NaN."""
    columns = [metric if c == "metric" else c for c in LEADERBOARD_COLUMNS]
    with atomic_open(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in LEADERBOARD_COLUMNS])
    return path


@dataclass
class SearchResult:
    """The outcome of `tuning.search`; the keras-tuner `tuner` is there for anything else."""

    tuner: kt.Tuner
    hypermodel: Any
    project_dir: Path
    metric: str
    rows: list[dict[str, Any]]
    budgets: Any
    report_path: Path | None = None
    leaderboard_path: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    exported: list[Any] = field(default_factory=list)

    def leaderboard(self) -> list[dict[str, Any]]:
        """Rows of leaderboard.csv as dicts, best completed trial first; None for a missing value
        (the CSV's empty cell), so `pandas.DataFrame(result.leaderboard())` has numeric columns."""
        return [dict(r) for r in self.rows]

    def best_models(self, n: int = 1) -> list[keras.Model]:
        """The n best trained models (weights of each trial's best epoch), leaderboard order."""
        return [self.tuner_load(trial) for trial in self.best_trials(n)]

    def best_trials(self, n: int = 1) -> list[Any]:
        """keras-tuner Trials of the n best completed trials, in leaderboard order."""
        _check_n(n)
        return [self.tuner.oracle.get_trial(r["trial"]) for r in self.rows
                if r["status"] == "COMPLETED"][:n]

    def best_hyperparameters(self, n: int = 1) -> list[kt.HyperParameters]:
        return [trial.hyperparameters for trial in self.best_trials(n)]

    def tuner_load(self, trial: Any) -> keras.Model:
        """A trial's model with the weights of its best epoch (keras-tuner's checkpoint)."""
        return self.tuner.load_model(trial)  # weights only: ZooHyperModel's optimizers take none

    def pareto_front(self, cost: str = "params") -> list[dict[str, Any]]:
        """Completed trials on the accuracy-vs-`cost` front (params, macs or latency_ms)."""
        return pareto_front(self.rows, cost=cost,
                            direction=metric_direction(self.tuner.oracle.objective, self.metric))

    @property
    def completed(self) -> int:
        return sum(r["status"] == "COMPLETED" for r in self.rows)

    @property
    def rejected(self) -> int:
        return sum(r["status"] == "REJECTED" for r in self.rows)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
