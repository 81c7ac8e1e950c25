"""compare.png (issue 22 defect 4): accuracy vs params AND vs MACs; rules at their budget; tick
labels that never print over each other, for one budget, close budgets and both budgets."""
import itertools

import pytest

from tuning.comparisons.config import CompareConfig
from tuning.comparisons.plots import compare_figure, profiles_figure

RULES = ("doubling", "constant", "linear", "diamond")


def _summary(config):
    out = {}
    for (i, rule), b in itertools.product(enumerate(RULES), config.budgets):
        params = (b.params or 3000) - 20 * i  # rules ~20 params apart, as fitting leaves them
        out[(rule, b.key)] = {"acc_mean": 0.85 + 0.01 * i, "acc_std": 0.004, "params": params,
                              "macs": (b.macs or 30 * params) * (0.6 + 0.1 * i)}
    return out


def _overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("kwargs", [dict(budgets=(2942,)), dict(budgets=(2900, 2950, 3100)),
                                    dict(budgets=(20_000, 45_000, 100_000)),
                                    dict(budgets=(1_000_000, 1_050_000), budget_kind="macs"),
                                    dict(budgets=("20000:2000000", "45000:4000000"),
                                         budget_kind="both")],
                         ids=["one", "close", "wide", "macs", "both"])
def test_compare_png_two_panels_readable_ticks(kwargs):
    config = CompareConfig(rules=RULES, **kwargs)
    fig = compare_figure(config, _summary(config))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    assert len(axes) == 2
    assert "parameters" in axes[0].get_xlabel() and "MACs" in axes[1].get_xlabel()
    for ax in axes:
        labels = [t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
                  if t.get_visible() and t.get_text()]
        assert labels, ax.get_xlabel()
        assert all("\\times" not in t.get_text() and "^" not in t.get_text() for t in labels)
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in itertools.combinations(boxes, 2):
            assert not _overlap(a, b), [t.get_text() for t in labels]
    if config.budget_kind == "params":  # rules sit in their budget's slot, labelled exactly
        assert [t.get_text() for t in axes[0].get_xticklabels()] == [
            f"{b.params:,}" for b in config.budgets]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_profiles_legend_hides_no_width():
    """At 100k params the legend inside the last panel hid the starting widths of decreasing and
    hourglass (issue 32, item 7): it now sits beside the panels and covers none of them."""
    import types

    config = CompareConfig(rules=("doubling", "decreasing", "hourglass", "diamond"),
                           budgets=(20_000, 100_000))
    plans = {("doubling", b.key): [16, 16, 32, 32, 64, 64] for b in config.budgets}
    plans.update({("decreasing", b.key): [120, 100, 80, 60, 40, 20] for b in config.budgets})
    plans.update({("hourglass", b.key): [110, 60, 20, 20, 60, 110] for b in config.budgets})
    plans.update({("diamond", b.key): [20, 60, 110, 110, 60, 20] for b in config.budgets})
    fig = profiles_figure(config, types.SimpleNamespace(plans=plans))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[-1].get_legend().get_window_extent(renderer)
    assert all(not _overlap(legend, ax.get_window_extent(renderer)) for ax in fig.axes)
