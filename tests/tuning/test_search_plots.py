"""pareto.png and filters.png say what they show: no zoom into rounding noise around budget-filled
trials, the doubling reference labelled as it was made."""
import pytest

from tuning.searches import plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept open for inspection (they close them when done)."""
    kept = []
    monkeypatch.setattr(plots.plt, "close", lambda fig: kept.append(fig))
    yield kept
    for fig in kept:
        plots.plt.figure(fig.number)
        plots.plt.clf()
    plots.plt.close("all")


def _row(params, metric, rule="slim"):
    return {"status": "COMPLETED", "rule": rule, "params": params, "metric": metric, "rank": 1,
            "trial": "00", "filters": "8-8-16-16"}


def test_one_trial_is_not_drawn_over_a_tiny_axis(tmp_path, figures):
    plots.plot_pareto([_row(7890, 0.95)], [], tmp_path / "pareto.png", "val_accuracy")
    ax = figures[0].axes[0]
    lo, hi = ax.get_xlim()
    assert hi - lo >= 0.19 * 7890, (lo, hi)
    assert "Pareto front" not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_budget_filled_trials_keep_a_readable_axis(tmp_path, figures):
    rows = [_row(7820, 0.95, "doubling"), _row(7940, 0.96, "linear")]
    plots.plot_pareto(rows, rows, tmp_path / "pareto.png", "val_accuracy")
    lo, hi = figures[0].axes[0].get_xlim()
    assert hi - lo >= 0.19 * 7880


def test_the_doubling_reference_is_labelled_as_it_was_made(tmp_path, figures):
    plots.plot_filters([_row(7890, 0.95)], [8, 8, 16, 16], tmp_path / "filters.png", "val_accuracy",
                       reference_label="doubling, same depth, fitted to the same budget")
    texts = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert "doubling, same depth, fitted to the same budget" in texts
    assert "doubling, same depth and first width" not in texts
