"""report.md says what a run shows: one trained trial is one table (not four copies of its row), a
slim profile that pruned nothing says so and what to change, tables are GitHub Markdown."""
import pytest

from tuning.searches.report import write_report
from tuning.searches.slim import SlimResult
from tuning.searches.slim_profile import pruning_note

SETTINGS = {"project": "p", "dataset": "digits", "mode": "slim"}


def _row(trial, rule, metric, params, rank):
    # as SearchResult.leaderboard() gives a row: None for what the trial does not have
    return {"rank": rank, "trial": trial, "status": "COMPLETED", "origin": None, "rule": rule,
            "block": "plain", "depth": 4, "filters": "8-8-16-16", "profile": None, "params": params,
            "macs": 10 * params, "latency_ms": None, "metric": metric, "score": metric,
            "rerank_runs": None, "rerank_mean": None, "test_accuracy": 0.9, "reason": None,
            "hyperparameters": "{}"}


def _slim(profile, wide=(32, 32, 32, 32)):
    return SlimResult(profile=list(profile), wide=list(wide), groups=[[i] for i in range(len(wide))],
                      live={}, resource="params", strength=16.0, threshold=0.02, epochs=3,
                      seconds=12.0, val_accuracy=0.97)


def _report(tmp_path, rows, slim=None):
    path = write_report(tmp_path / "report.md", rows=rows, front=[r for r in rows[:1]],
                        metric="val_accuracy", settings=SETTINGS, budgets={"max_params": 8000},
                        reference=None, slim=slim)
    return path.read_text()


def test_one_trained_trial_is_one_table_not_four(tmp_path):
    row = _row("00", "slim", 0.95, 7890, 1)
    text = _report(tmp_path, [row])
    assert "## The trained trial" in text
    for heading in ("## Best model per rule", "## Pareto front", "## Leaderboard"):
        assert heading not in text
    assert text.count(" 7,890 |") == 1, text  # the row once (the winner line says it in words)


def test_several_trials_of_one_rule_have_no_per_rule_table(tmp_path):
    rows = [_row("00", "doubling", 0.95, 7890, 1), _row("01", "doubling", 0.94, 7900, 2)]
    text = _report(tmp_path, rows)
    assert "## Best model per rule" not in text and "## Leaderboard (top 10)" in text
    assert "the winner alone; no other trial is smaller or more accurate" in text


def test_tables_are_github_markdown(tmp_path):
    text = _report(tmp_path, [_row("00", "doubling", 0.95, 7890, 1), _row("01", "linear", 0.9, 7000, 2)])
    table = [ln for ln in text.splitlines() if ln.startswith("|") and " rank " in ln]
    assert table, text
    lines = text.splitlines()
    sep = lines[lines.index(table[0]) + 1]
    assert sep.startswith("|--") and set(sep) <= set("|-:"), sep


def test_a_slim_profile_that_pruned_nothing_says_so_and_what_to_change(tmp_path):
    slim = _slim([32, 32, 31, 32])
    note = pruning_note(slim)
    assert note and "--slim-strength" in note and "--slim-epochs" in note and "127 of 128" in note
    text = _report(tmp_path, [_row("00", "slim", 0.95, 7890, 1)], slim=slim)
    assert "**Warning:** slim pruned almost nothing" in text


@pytest.mark.parametrize("profile", [[20, 21, 17, 19], [32, 32, 8, 8]])
def test_a_slim_profile_that_pruned_has_no_warning(tmp_path, profile):
    assert pruning_note(_slim(profile)) is None
    assert "Warning" not in _report(tmp_path, [_row("00", "slim", 0.95, 7890, 1)], slim=_slim(profile))


def test_doubling_means_x2_and_a_searched_factor_is_named_as_the_rule_it_is(tmp_path):
    """Rule mode searches doubling's factor (1.5-3): a trial drawn with factor 2.21 was labelled
    "doubling" in the leaderboard, report and plots, and the demo said "the winner IS doubling"."""
    from tuning.searches.plots import plot_pareto
    from tuning.searches.report import rule_family, rule_label

    assert rule_label({"rule": "doubling", "doubling_factor": 2.0}) == "doubling"
    assert rule_label({"rule": "doubling", "doubling_factor": 2.0012}) == "doubling"  # x2.00
    assert rule_label({"rule": "doubling", "doubling_factor": 2.2137}) == "stagewise x2.21"
    assert rule_label({"rule": "doubling"}) == "doubling"  # a plan built with the default x2
    assert rule_label({"rule": "decreasing", "decreasing_factor": 2.5}) == "decreasing"
    assert rule_family("stagewise x2.21") == rule_family("stagewise x1.70") == "stagewise"
    rows = [_row("3", "stagewise x2.21", 0.95, 5000, 1), _row("1", "stagewise x1.70", 0.94, 4000, 2),
            _row("2", "doubling", 0.93, 4500, 3)]
    report = _report(tmp_path, rows)
    assert "rule **stagewise x2.21**" in report and "only F = 2 is doubling" in report
    per_rule = report.split("## Best model per rule", 1)[1].split("\n## ", 1)[0]
    assert per_rule.count("| stagewise x") == 1 and per_rule.count("| doubling") == 1
    plot_pareto(rows, [], tmp_path / "pareto.png", "val_accuracy")  # one colour per family


def test_missing_values_are_empty_cells_not_none(tmp_path):
    """Leaderboard rows carry None for a missing number (issue 32, item 9); the report shows an
    empty cell, as it showed the '' the rows used to carry."""
    rows = [_row("00", "doubling", 0.95, 7890, 1), _row("01", "linear", 0.9, 7000, 2)]
    rows[1]["test_accuracy"] = None
    rows.append({**_row("02", "diamond", None, 9000, None), "status": "REJECTED", "score": None,
                 "test_accuracy": None, "reason": "params 9,000 > max_params 8,000"})
    text = _report(tmp_path, rows)
    assert "None" not in text, text
    assert "latency" not in text and "mean val_accuracy" not in text  # untimed, not re-ranked
