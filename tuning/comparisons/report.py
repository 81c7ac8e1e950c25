"""The views of a finished comparison: compare.csv, compare.md (intervals), compare.png, profiles.png.

It formats what it is given: the runs (runs.jsonl rows), the grid (which runs exist, their plans)
and the `Estimates` that tuning.comparisons.stats computed from the runs; it computes no
statistic and knows nothing of the tuner.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from cnnzoo.files import atomic_open, write_atomic

from tuning.comparisons.config import CompareConfig, RunGrid
from tuning.comparisons.stats import (ALLOCATION_DRAWS, LEVEL, REFERENCE_RULE, Estimates, Interval,
                                      VarianceCheck, t_quantile)

__all__ = ["write_report", "CSV_COLUMNS"]

CSV_COLUMNS = ("rule", "budget", "budget_kind", "seed", "filters", "profile", "scale", "params",
               "macs", "latency_ms", "test_accuracy", "test_loss", "val_accuracy", "train_seconds")


def _pts(value: float) -> str:
    return f"{100 * value:+.2f}"


def _interval(iv: Interval | None, simultaneous: bool = False) -> str:
    if iv is None:
        return ""
    if not iv.has_interval:
        return f"{_pts(iv.mean)} (no interval yet)"
    low, high = (iv.sim_low, iv.sim_high) if simultaneous else (iv.low, iv.high)
    return f"{_pts(iv.mean)} [{_pts(low)}, {_pts(high)}]"


def _holm_p(iv: Interval | None) -> str:
    return "" if iv is None or math.isnan(iv.p_holm) else f"{iv.p_holm:.3g}"


def _verdict(config: CompareConfig, budget_key: str, est: Estimates) -> str:
    label = config.budget(budget_key).label
    here = {rule: iv for (rule, b), iv in est.pooled.items() if b == budget_key}
    if not here:
        return f"At {label}: no paired runs against {REFERENCE_RULE} yet."
    alpha = 1 - LEVEL
    none = sorted(r for r, iv in here.items() if math.isnan(iv.p_holm))
    here = {r: iv for r, iv in here.items() if r not in none}
    better = sorted((r for r, iv in here.items() if iv.p_holm <= alpha and iv.mean > 0),
                    key=lambda r: -here[r].mean)
    worse = sorted((r for r, iv in here.items() if iv.p_holm <= alpha and iv.mean < 0),
                   key=lambda r: here[r].mean)
    same = sorted(r for r in here if r not in better and r not in worse)
    parts = []
    # A rejection is stated with what decided it (Holm's p) and the pooled 95% interval: Holm
    # can reject where the Bonferroni simultaneous interval still touches 0.
    def decided(r: str) -> str:
        return f"{r} ({_interval(here[r])} points, Holm p {_holm_p(here[r])})"

    if better:
        parts.append("better than doubling (Holm): " + ", ".join(map(decided, better)))
    if worse:
        parts.append("worse than doubling (Holm): " + ", ".join(map(decided, worse)))
    if same:
        parts.append("not distinguishable from doubling after Holm: " + ", ".join(same))
    if none:
        parts.append("no interval yet (too few runs): " + ", ".join(none))
    ref = est.summary.get((REFERENCE_RULE, budget_key))
    ref_text = f" (doubling {ref['acc_mean']:.4f})" if ref else ""
    return f"At {label}{ref_text}: " + "; ".join(parts) + "."


def _variance_line(label: str, check: VarianceCheck | None) -> str:
    if check is None:
        return f"At {label}: too few runs to check."
    if check.untestable:
        return f"At {label}: cannot be tested ({check.untestable})."
    spreads = sorted(check.spread.values())
    if not check.rejected():
        return (f"At {label}: not rejected (Bartlett p {check.p:.3g}; residual spread "
                f"{100 * spreads[0]:.2f}-{100 * spreads[-1]:.2f} points).")
    widest = check.widest
    rest = sorted(v for r, v in check.spread.items() if r != widest)
    return (f"At {label}: **rejected** (Bartlett p {check.p:.2g}): {widest}'s runs spread "
            f"{100 * check.spread[widest]:.2f} points around the fit, the other rules "
            f"{100 * rest[0]:.2f}-{100 * rest[-1]:.2f}.")


def _budget_order(budget: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in str(budget).split(":"))


def _csv(runs: Sequence[dict[str, Any]], path: Path) -> None:
    rows = sorted(runs, key=lambda r: (_budget_order(r["budget"]), r["rule"], int(r["seed"])))
    with atomic_open(path, newline="") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "filters": "-".join(map(str, r.get("filters") or [])),
                        "profile": "-".join(map(str, r.get("profile") or []))})


def _table(config: CompareConfig, grid: RunGrid, est: Estimates) -> str:
    paired, pooled = est.paired, est.pooled
    headers = ["rule", "budget", "filters (seed 0)", "params", "MACs", "latency ms",
               "test accuracy (mean +- std)", "n",
               "vs doubling, own paired 95% CI (pts)", "vs doubling, pooled 95% CI (pts)",
               "per-rule variances 95% CI (pts)",
               "pooled, simultaneous CI (pts)", "Holm p"]
    rows = []
    for budget in config.budgets:
        for rule in config.rules:
            cell = (rule, budget.key)
            s = est.summary.get(cell)
            if s is None:
                if cell in grid.unreachable:
                    rows.append([rule, budget.label, "unreachable", "", "", "", "", 0, "", "", "",
                                 "", ""])
                continue
            ref = rule == REFERENCE_RULE
            rows.append([rule, budget.label, "-".join(map(str, s["filters"] or [])),
                         f"{s['params']:,.0f}", f"{s['macs']:,.0f}", f"{s['latency_ms']:.2f}",
                         f"{s['acc_mean']:.4f} +- {s['acc_std']:.4f}", s["n"],
                         "reference" if ref else _interval(paired.get(cell)),
                         "reference" if ref else _interval(pooled.get(cell)),
                         "reference" if ref else _interval(est.hetero.get(cell)),
                         "" if ref else _interval(pooled.get(cell), simultaneous=True),
                         "" if ref else _holm_p(pooled.get(cell))])
    return tabulate(rows, headers, tablefmt="github", disable_numparse=True)


def _allocation_section(config: CompareConfig, est: Estimates) -> list[str]:
    alloc = config.allocation
    if alloc is None:
        return []
    states = {"open": "open (more seeds pending)", "different": "decided: different",
              "equivalent": f"decided: within +-{100 * alloc.relevant:.2f} points",
              "cap": "cap reached, undecided"}
    rows = [[rule, budget.label, *est.allocation_states[(rule, budget.key)][:1],
             states[est.allocation_states[(rule, budget.key)][1]]]
            for budget in config.budgets for rule in config.rules
            if (rule, budget.key) in est.allocation_states]
    lines = ["", "## Seed allocation", "",
             f"Every cell ran seeds 0..{alloc.first - 1}; after that a cell got another seed "
             f"(up to {alloc.cap}) only while its own paired interval at level "
             f"{100 * alloc.look_level:.2f}% (95% Bonferroni-corrected over {alloc.looks} looks) "
             f"covered both 0 and a difference of +-{100 * alloc.relevant:.2f} points. It stops "
             "as soon as the interval excludes 0 or lies inside that margin. Cells that "
             "stopped early keep their seeds in the pooled fit (an unbalanced design, handled as "
             "above); because stopping depends on the data, read the intervals with the "
             "simulated error rates below.", "",
             tabulate(rows, ["rule", "budget", "paired seeds", "state"], tablefmt="github",
                      disable_numparse=True)]
    if est.allocation_error is not None:
        sim, sd = est.allocation_error, est.allocation_spread
        lines += ["", f"Effect on the error rate, simulated ({ALLOCATION_DRAWS:,} cells with no true "
                  f"difference, per-seed spread {100 * sd:.2f} points, this study's median): "
                  f"the rule calls {100 * sim['called_different']:.1f}% of them different; the "
                  f"per-rule 95% interval reported above excludes 0 for "
                  f"{100 * sim['final_interval_excludes_0']:.1f}% (5% without the allocation), "
                  f"using {sim['mean_seeds']:.2f} seeds on average instead of {alloc.cap}."]
    return lines


def _markdown(config: CompareConfig, grid: RunGrid, runs: Sequence[dict[str, Any]], est: Estimates) -> str:
    r = config.recipe
    kinds = {"params": "parameter", "macs": "MAC", "both": "parameter and MAC"}[config.budget_kind]
    alloc = config.allocation
    lines = [f"# Equal-budget comparison on {config.dataset}", "",
             f"{len(runs)} of {'at most ' if alloc else ''}{len(grid.runs)} runs finished. "
             f"Every rule's plan (depth {config.depth}, {config.block} blocks, base "
             f"{config.base_filters}) is scaled by one factor to each {kinds} budget (+-3%"
             + ("; with both, until the first of the two binds, never above either"
                if config.budget_kind == "both" else "")
             + f"), trained with the same recipe (epochs {r.epochs or 'from data size'}, batch "
             f"{r.batch_size or 'from data size'}, Adam peak lr {r.learning_rate} with warm-up + "
             "cosine decay"
             + (f", first {config.train_limit:,} training images" if config.train_limit else "")
             + f") over seeds {config.seed_start}..{config.seed_start + config.seeds - 1}"
             + (f" (seeds from {alloc.first} on only where still open)" if alloc else "")
             + ", and tested on the test split. Differences "
             "are in accuracy points; params and MACs are the exact counts of the trained "
             "networks.", "", _table(config, grid, est),
             "", "## Verdict", ""]
    lines += [f"- {_verdict(config, b.key, est)}" for b in config.budgets]
    lines += ["", "## Does the pooled model's one noise variance hold?", "",
              "Bartlett's test of equal variance of the pooled fit's residuals across the rules, "
              "per budget (approximate: residuals of one fit are not independent). Where it is "
              "rejected, the pooled intervals at that budget rest on a variance the rules do not "
              "share: read the own paired intervals there.", ""]
    lines += [f"- {_variance_line(config.budget(b.key).label, est.variance.get(b.key))}"
              for b in config.budgets]
    if grid.unreachable:
        lines += ["", "Unreachable rule x budget pairs (not run): " + ", ".join(
            f"{rule} @ {config.budget(b).label}" for rule, b in sorted(grid.unreachable))]
    dfs = sorted({int(iv.df) for iv in est.pooled.values() if iv.has_interval})
    ns = sorted({iv.n for iv in est.paired.values() if iv.has_interval})
    lines += ["", "## What the intervals are", "",
              "- **own paired 95% CI**: Student's t over this rule's per-seed differences to "
              "doubling (same budget, same seed). Assumes only independent, normal differences; "
              "its spread comes from this rule alone, so with few seeds it is wide ("
              + ", ".join(f"t = {t_quantile(n - 1):.2f} with {n} seeds" for n in ns) + ").",
              "- **pooled 95% CI**: the least-squares fit of accuracy = rule effect + seed effect "
              "+ noise over every rule at the budget (the seed as the block), residual variance "
              "pooled over the rules, df = (rules - 1)(seeds - 1) when every run is there ("
              + ", ".join(f"t = {t_quantile(df):.2f} at {df} df" for df in dfs) + "). Assumes "
              "one noise variance for every rule and that a seed shifts every rule alike. A "
              "missing run (a seed a rule has not finished) is left out of the fit, not "
              "imputed: its rule's effect is estimated from the seeds it has, and df = runs - "
              "rules - seeds + 1.",
              "- **per-rule variances 95% CI**: the same fit with one noise variance per rule "
              "(unbiased per-rule estimates from the residuals, Welch-Satterthwaite df): it drops "
              "the one-variance assumption (needs 3 rules or more).",
              "- **simultaneous CI and Holm p**: the comparisons against doubling at one budget "
              "are one family. Holm's adjusted p <= 0.05 is the verdict above; the simultaneous "
              "interval (Bonferroni, level 1 - 0.05/comparisons) covers every true difference "
              "at once with 95% probability; it excludes 0 only where Holm rejects, but Holm "
              "(step-down, more powerful) may also reject where it just touches 0. The verdict "
              "gives each rejected rule's pooled 95% interval with its Holm p.",
              "- Quantiles are scipy.stats'. These say what the data says about *these* "
              "networks on *this* data, epochs and training-set size."]
    lines += _allocation_section(config, est)
    return "\n".join(lines) + "\n"


def write_report(config: CompareConfig, grid: RunGrid, runs: Sequence[dict[str, Any]], est: Estimates,
                 project_dir: Path) -> None:
    """compare.csv, compare.md, compare.png and profiles.png from the finished runs and their estimates."""
    from tuning.comparisons.plots import plot_compare, plot_profiles

    _csv(runs, project_dir / "compare.csv")
    write_atomic(project_dir / "compare.md", _markdown(config, grid, runs, est))
    plot_compare(config, est.summary, project_dir / "compare.png")
    plot_profiles(config, grid, project_dir / "profiles.png")
