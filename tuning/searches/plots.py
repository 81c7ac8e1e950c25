"""pareto.png (metric vs params, one colour per rule) and filters.png (per-layer widths of the best)
for a search.

matplotlib's Agg backend: no display needed, safe in CI and in worker processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tuning.searches.report import rule_family  # noqa: E402

__all__ = ["plot_pareto", "plot_filters"]


def plot_pareto(rows: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]], path: Path,
                metric: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    done = [r for r in rows if r["status"] == "COMPLETED" and r["metric"] is not None
            and r["params"] is not None]
    rules = sorted({rule_family(r["rule"]) for r in done})  # one colour for every stagewise xF
    cmap = plt.get_cmap("tab10")
    for i, rule in enumerate(rules):
        pts = [r for r in done if rule_family(r["rule"]) == rule]
        ax.scatter([r["params"] for r in pts], [r["metric"] for r in pts], s=36,
                   color=cmap(i % 10), label=rule, alpha=0.85, edgecolors="none")
    if front:
        ax.plot([r["params"] for r in front], [r["metric"] for r in front], "k--", lw=1,
                label="Pareto front", drawstyle="steps-post")
    rejected = [r for r in rows if r["status"] == "REJECTED" and r["params"] is not None]
    if rejected:
        lo = min((r["metric"] for r in done), default=0.0)
        ax.scatter([r["params"] for r in rejected], [lo] * len(rejected), marker="x", color="grey",
                   label="rejected (over budget)")
    if done and max(r["params"] for r in done) > 10 * min(r["params"] for r in done):
        ax.set_xscale("log")
    elif done:
        # Budget-filled trials sit within a few percent of each other (one alone has no spread):
        # show at least +-10% around them, so matplotlib does not zoom into rounding noise.
        lo, hi = min(r["params"] for r in done), max(r["params"] for r in done)
        mid = (lo + hi) / 2
        if hi - lo < 0.2 * mid:
            ax.set_xlim(mid * 0.9, mid * 1.1)
    ax.set_xlabel("parameters")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs parameters ({len(done)} trained trials)")
    ax.grid(alpha=0.3)
    if done or rejected:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_filters(best: Sequence[dict[str, Any]], reference: Sequence[int] | None, path: Path,
                 metric: str, reference_label: str | None = None) -> Path:
    """Per-layer kernel counts of `best` rows (their `filters` "a-b-c"), plus a doubling reference
    labelled `reference_label` (how it was made)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in best:
        if not r["filters"]:
            continue
        f = [int(x) for x in str(r["filters"]).split("-")]
        label = f"#{r['rank']} trial {r['trial']} {r['rule']} ({metric} {r['metric']:.3f})"
        ax.plot(range(len(f)), f, marker="o", label=label)
    if reference:
        ax.plot(range(len(reference)), list(reference), "k:", marker=".",
                label=reference_label or "doubling, same depth and first width")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("kernels (filters)")
    ax.set_title("per-layer filters of the best models")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a search that trained nothing has no lines to name
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
