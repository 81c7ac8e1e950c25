"""compare.png (accuracy vs params and vs MACs) and profiles.png for a comparison.

matplotlib's Agg backend: no display needed, safe in CI and in worker processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

if TYPE_CHECKING:
    from tuning.comparisons.config import CompareConfig, RunGrid

__all__ = ["plot_compare", "compare_figure", "plot_profiles", "profiles_figure"]


def _compact(value: float, _pos: Any = None) -> str:
    """15k, 2.9M: tick labels that stay short (no 2.9425x10^3)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            text = f"{value / div:.3g}"
            return f"{text}{suffix}"
    return f"{value:.3g}"


def _measured_axis(ax: Any, xs: Sequence[float], label: str) -> None:
    lo, hi = min(xs), max(xs)
    if hi > 3 * lo:
        ax.set_xscale("log")
        # Labels at 1, 2 and 5 of each decade: a span under 10x still gets several.
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_compact))
    if hi < 1.5 * lo:  # close values: room on both sides instead of a cramped axis
        ax.set_xlim(lo * 0.9, hi * 1.1)
    ax.set_xlabel(label)


def plot_compare(config: "CompareConfig", summary: dict[tuple[str, str], dict[str, Any]],
                 path: Path) -> Path:
    """compare.png: `compare_figure` saved."""
    fig = compare_figure(config, summary)
    fig.savefig(path)
    plt.close(fig)
    return path


def compare_figure(config: "CompareConfig",
                   summary: dict[tuple[str, str], dict[str, Any]]) -> Any:
    """Test accuracy (mean +- std over seeds) against parameters and against MACs.

    On the panel of a budgeted quantity (one kind of budget) each budget is one slot labelled with its exact value and
    every rule sits in it, side by side (one or close budgets stay readable; the exact counts of
    each network are in compare.md); on the other panel each rule sits at its measured mean,
    since that is what differs between rules there."""
    # With both budgets each rule binds on one of them: both panels show measured counts, the
    # budgets as dotted lines, so the reader sees which one binds.
    budgeted = {"params": ("params",), "macs": ("macs",), "both": ()}[config.budget_kind]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100, sharey=True)
    cmap = plt.get_cmap("tab10")
    rules = [r for r in config.rules if any(k[0] == r for k in summary)]
    budgets = list(config.budgets)
    for ax, quantity, label in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs")):
        at_budget = quantity in budgeted
        xs_all: list[float] = []
        for i, rule in enumerate(rules):
            pts = []
            for slot, budget in enumerate(budgets):
                s = summary.get((rule, budget.key))
                if s is None:
                    continue
                x = (slot + 0.7 * ((i + 0.5) / len(rules) - 0.5) if at_budget
                     else float(s[quantity]))
                pts.append((x, s["acc_mean"], s["acc_std"]))
            if not pts:
                continue
            pts.sort()
            xs, ys, es = zip(*pts)
            xs_all += xs
            ref = rule == "doubling"
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=rule, color=cmap(i % 10),
                        linewidth=2.5 if ref else 1.2, zorder=3 if ref else 2,
                        linestyle="none" if at_budget and len(budgets) > 1 else "-")
        if at_budget:
            ax.set_xticks(range(len(budgets)),
                          [f"{getattr(b, quantity):,}" for b in budgets])
            ax.set_xlim(-0.5, len(budgets) - 0.5)
            ax.set_xlabel(f"{label}: budget (each rule side by side)")
        elif xs_all:
            limits = ([float(getattr(b, quantity)) for b in budgets]
                      if config.budget_kind == "both" else [])
            for value in limits:
                ax.axvline(value, color="grey", linestyle=":", linewidth=1)
            _measured_axis(ax, xs_all + limits, f"{label} (measured" +
                           ("; dotted: budgets)" if limits else ")"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (mean +- std over seeds)")
    if rules:
        axes[1].legend(fontsize=8, ncol=2, loc="best")
    kind = {"params": "parameter", "macs": "MAC", "both": "parameter + MAC"}[config.budget_kind]
    fig.suptitle(f"{config.dataset}: every rule at the same {kind} budgets")
    fig.tight_layout()
    return fig


def plot_profiles(config: "CompareConfig", grid: "RunGrid", path: Path) -> Path:
    """profiles.png: `profiles_figure` saved (with the legend beside the panels)."""
    fig = profiles_figure(config, grid)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def profiles_figure(config: "CompareConfig", grid: "RunGrid") -> Any:
    """Per-layer kernel counts of every rule's plan at each budget. The legend sits to the right
    of the last panel: inside it, it hid the first layers' widths of the rules that start wide."""
    budgets = list(config.budgets)
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.6 * len(budgets) + 0.4, 3.6), dpi=100,
                             squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for rule in config.rules:
            widths = grid.plans.get((rule, budget.key))
            if widths is None:
                continue
            ax.plot(range(len(widths)), list(widths), marker="o", label=rule,
                    linewidth=2.5 if rule == "doubling" else 1.2)
        ax.set_title(budget.label, fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("kernels")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig
