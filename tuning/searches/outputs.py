"""What the chief (or a local search) writes when the search is over: the test accuracy of the
best, leaderboard.csv, the plots, the exports and report.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from tuning.searches.config import SearchConfig
from tuning.searches.export_winners import export_winners
from tuning.searches.plots import plot_filters, plot_pareto
from tuning.searches.report import doubling_reference, write_report
from tuning.searches.results import SearchResult, metric_direction, pareto_front, primary_metric, write_leaderboard
from tuning.searches.slim_profile import slim_reference

__all__ = ["write_results"]


def write_results(t: kt.Tuner, hypermodel: Any, data: Any, project_dir: Path,
                  config: SearchConfig, rows: list[dict[str, Any]], settings: dict[str, Any],
                  slim: Any) -> SearchResult:
    """Test accuracy of the best, leaderboard.csv, plots, exports and report.md."""
    metric = primary_metric(t.oracle.objective)
    best_rows = [r for r in rows if r["status"] == "COMPLETED"][:max(1, config.export)]
    models: list[tuple[Any, keras.Model]] = []
    for row in best_rows:
        # Leaderboard order (not oracle.get_best_trials, whose order of ties changes on reload).
        trial = t.oracle.get_trial(row["trial"])
        model = t.load_model(trial)  # the best epoch's weights, a fresh optimizer (ZooHyperModel)
        row["test_accuracy"] = round(float(model.evaluate(data.x_test, data.y_test, verbose=0)[1]), 4)
        models.append((trial, model))
    leaderboard_path = write_leaderboard(rows, project_dir / "leaderboard.csv", metric)
    front = pareto_front(rows, cost="params", direction=metric_direction(t.oracle.objective, metric))
    done = [r for r in rows if r["status"] == "COMPLETED"]
    reference = (doubling_reference(done[0], hypermodel,
                                    t.oracle.get_trial(done[0]["trial"]).hyperparameters)
                 if done else None)
    # A "front" of one point is no front: no line, no legend entry.
    plots = {"pareto": plot_pareto(rows, front if len(front) > 1 else [], project_dir / "pareto.png",
                                   metric),
             "filters": plot_filters(done[:5], reference.filters if reference else None,
                                     project_dir / "filters.png", metric,
                                     reference_label=f"doubling, same depth, {reference.how}" if reference else None)}
    exported = (export_winners(models[:config.export], data, t, config.export_dir,
                               config.export_name or config.project_name, metric,
                               config.project_name) if config.export and models else [])
    # drawn rules, not labels: a doubling draw with a searched factor is "stagewise xF" but tried
    drawn = {json.loads(row["hyperparameters"]).get("rule") for row in done}
    untried = [r for r in hypermodel.rules if r not in drawn]
    report = write_report(project_dir / "report.md", rows=rows, front=front, metric=metric,
                          settings=settings, budgets=hypermodel.budgets.to_dict(),
                          reference=reference, exported=exported, untried_rules=untried,
                          slim=slim, slim_reference=slim_reference(slim, hypermodel))
    keras.backend.clear_session()
    return SearchResult(t, hypermodel, project_dir, metric, rows, hypermodel.budgets,
                        report_path=report, leaderboard_path=leaderboard_path, plots=plots,
                        exported=exported)
