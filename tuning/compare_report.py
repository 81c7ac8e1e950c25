"""The views of a finished comparison: compare.csv, compare.md (with paired intervals), the plots.

The verdict compares each rule with doubling *at the same budget and seed* (a paired difference):
seeds share the data order and budget, so pairing removes much of the run-to-run noise. The 95%
interval is Student's t over seeds; when it covers 0 the verdict says the two are not
distinguishable, whatever the means say.
"""
from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cnnzoo.files import atomic_open

if TYPE_CHECKING:  # the comparison imports this module, not the other way round
    from .compare import CompareConfig, CompareHyperModel

__all__ = ["write_report", "summarize", "paired_differences", "t_quantile", "CSV_COLUMNS",
           "REFERENCE_RULE"]

REFERENCE_RULE = "doubling"

CSV_COLUMNS = ("rule", "budget", "budget_kind", "seed", "filters", "profile", "scale", "params",
               "macs", "latency_ms", "test_accuracy", "test_loss", "val_accuracy", "train_seconds")


def t_quantile(n: int) -> float:
    """Two-sided 95% Student-t quantile for n - 1 degrees of freedom (nan below 2 samples)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n >= 2 else math.nan


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (rule, budget): mean and std of test accuracy, mean params/MACs/latency, seeds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["rule"], int(r["budget"]))].append(r)
    out = {}
    for key, rows in groups.items():
        acc_mean, acc_std = _mean_std([r["test_accuracy"] for r in rows])
        out[key] = {"n": len(rows), "acc_mean": acc_mean, "acc_std": acc_std,
                    "params": statistics.mean(r["params"] for r in rows),
                    "macs": statistics.mean(r["macs"] for r in rows),
                    "latency_ms": statistics.median(r["latency_ms"] for r in rows),
                    "filters": rows[0].get("filters")}
    return out


def paired_differences(runs: Sequence[dict[str, Any]], reference: str = REFERENCE_RULE
                       ) -> dict[tuple[str, int], dict[str, float]]:
    """Per (rule, budget), rule minus reference test accuracy over the seeds both ran:
    mean, 95% interval (Student's t), n."""
    by_key = {(r["rule"], int(r["budget"]), int(r["seed"])): r["test_accuracy"] for r in runs}
    out = {}
    for (rule, budget, seed) in by_key:
        if rule == reference or (rule, budget) in out:
            continue
        diffs = [by_key[(rule, budget, s)] - by_key[(reference, budget, s)]
                 for (r2, b2, s) in by_key if r2 == rule and b2 == budget
                 and (reference, budget, s) in by_key]
        if not diffs:
            continue
        mean = statistics.mean(diffs)
        half = (t_quantile(len(diffs)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
                if len(diffs) > 1 else math.nan)
        out[(rule, budget)] = {"mean": mean, "low": mean - half, "high": mean + half,
                               "n": len(diffs)}
    return out


def _verdict(budget: int, kind: str, diffs: dict[tuple[str, int], dict[str, float]],
             summary: dict[tuple[str, int], dict[str, Any]]) -> str:
    here = {rule: d for (rule, b), d in diffs.items() if b == budget}
    if not here:
        return f"At {budget:,} {kind}: no paired runs against {REFERENCE_RULE} yet."
    single = sorted(r for r, d in here.items() if math.isnan(d["low"]))
    here = {r: d for r, d in here.items() if r not in single}
    better = sorted((r for r, d in here.items() if d["low"] > 0), key=lambda r: -here[r]["mean"])
    worse = sorted((r for r, d in here.items() if d["high"] < 0), key=lambda r: here[r]["mean"])
    same = sorted(r for r in here if r not in better and r not in worse)
    parts = []
    if better:
        parts.append("better than doubling: " + ", ".join(
            f"{r} ({100 * here[r]['mean']:+.2f} points)" for r in better))
    if worse:
        parts.append("worse than doubling: " + ", ".join(
            f"{r} ({100 * here[r]['mean']:+.2f})" for r in worse))
    if same:
        parts.append("not distinguishable from doubling (the 95% interval covers 0): "
                     + ", ".join(same))
    if single:
        parts.append("one paired seed only, no interval yet: " + ", ".join(single))
    ref = summary.get((REFERENCE_RULE, budget))
    ref_text = f" (doubling {ref['acc_mean']:.4f})" if ref else ""
    return f"At {budget:,} {kind}{ref_text}: " + "; ".join(parts) + "."


def _csv(runs: Sequence[dict[str, Any]], path: Path) -> None:
    rows = sorted(runs, key=lambda r: (int(r["budget"]), r["rule"], int(r["seed"])))
    with atomic_open(path, newline="") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "filters": "-".join(map(str, r.get("filters") or [])),
                        "profile": "-".join(map(str, r.get("profile") or []))})


def _markdown(config: "CompareConfig", hypermodel: "CompareHyperModel", runs: Sequence[dict[str, Any]],
              summary, diffs) -> str:
    kind = config.budget_kind
    r = config.recipe
    lines = [f"# Equal-budget comparison on {config.dataset}", "",
             f"{len(runs)} of {len(hypermodel.runs)} runs finished. Every rule's plan (depth "
             f"{config.depth}, {config.block} blocks, base {config.base_filters}) is scaled by one "
             f"factor to each {kind} budget (+-3%), trained with the same recipe (epochs "
             f"{r.epochs or 'from data size'}, batch {r.batch_size or 'from data size'}, Adam peak "
             f"lr {r.learning_rate} with warm-up + cosine decay"
             + (f", first {config.train_limit:,} training images" if config.train_limit else "")
             + f") over seeds 0..{config.seeds - 1}, and tested on the test split.", "",
             f"| rule | budget ({kind}) | filters (seed 0) | params | MACs | latency ms | test "
             f"accuracy (mean +- std) | vs doubling (paired, 95% CI) | n |",
             "|---|---|---|---|---|---|---|---|---|"]
    for budget in config.budgets:
        for rule in config.rules:
            s = summary.get((rule, budget))
            if s is None:
                if (rule, budget) in hypermodel.unreachable:
                    lines.append(f"| {rule} | {budget:,} | unreachable | | | | | | 0 |")
                continue
            d = diffs.get((rule, budget))
            vs = ("reference" if rule == REFERENCE_RULE else "" if d is None else
                  f"{100 * d['mean']:+.2f} pts" + ("" if math.isnan(d["low"]) else
                                                    f" [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"))
            lines.append(f"| {rule} | {budget:,} | {'-'.join(map(str, s['filters'] or []))} | "
                         f"{s['params']:,.0f} | {s['macs']:,.0f} | {s['latency_ms']:.2f} | "
                         f"{s['acc_mean']:.4f} +- {s['acc_std']:.4f} | {vs} | {s['n']} |")
    lines += ["", "## Verdict", ""]
    lines += [f"- {_verdict(b, kind, diffs, summary)}" for b in config.budgets]
    if hypermodel.unreachable:
        lines += ["", "Unreachable rule x budget pairs (not run): " + ", ".join(
            f"{rule} @ {b:,}" for rule, b in sorted(hypermodel.unreachable))]
    counts = sorted({int(d["n"]) for d in diffs.values() if d["n"] > 1})
    lines += ["", "Intervals are Student's t over the paired per-seed differences: mean +- "
              + ", ".join(f"{t_quantile(n):.2f} standard errors with {n} seeds" for n in counts)
              + ". With so few seeds only large or very consistent differences show, and an "
              "interval from 2 seeds rests on a single spread estimate: read it as a hint.", ""]
    return "\n".join(lines)


def _plots(config: "CompareConfig", hypermodel: "CompareHyperModel", summary, project_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rule in config.rules:
        pts = sorted((s["params"], s["acc_mean"], s["acc_std"]) for (r, _), s in summary.items()
                     if r == rule)
        if pts:
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=rule,
                        linewidth=2.5 if rule == REFERENCE_RULE else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test accuracy (mean +- std over seeds)")
    ax.set_title(f"{config.dataset}: every rule at the same {config.budget_kind} budgets")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(project_dir / "compare.png", dpi=110)
    plt.close(fig)

    budgets = list(config.budgets)
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.6 * len(budgets), 3.6), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for rule in config.rules:
            if (rule, budget) in hypermodel.unreachable:
                continue
            widths = hypermodel.plan(rule, budget)
            ax.plot(range(len(widths)), list(widths), marker="o", label=rule,
                    linewidth=2.5 if rule == REFERENCE_RULE else 1.2)
        ax.set_title(f"{budget:,} {config.budget_kind}")
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("kernels")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(project_dir / "profiles.png", dpi=110)
    plt.close(fig)


def write_report(config: "CompareConfig", hypermodel: "CompareHyperModel",
                 runs: Sequence[dict[str, Any]], project_dir: Path) -> None:
    """compare.csv, compare.md, compare.png and profiles.png from the finished runs."""
    summary = summarize(runs) if runs else {}
    diffs = paired_differences(runs) if runs else {}
    _csv(runs, project_dir / "compare.csv")
    (project_dir / "compare.md").write_text(_markdown(config, hypermodel, runs, summary, diffs),
                                            encoding="utf-8")
    _plots(config, hypermodel, summary, project_dir)
