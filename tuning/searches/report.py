"""report.md: which rule won on this data, at what cost, and how the winner differs from doubling."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import zoo
from zoo.costs import count_costs
from zoo.plans import architecture

__all__ = ["doubling_reference", "write_report", "Reference", "rule_label", "rule_family",
           "STAGEWISE"]

# Rule mode searches doubling's `factor` (zoo's space for it is 1.5-3): a trial that multiplies
# its widths by 2.21 at each downsample is not doubling, in a tool whose question is "is doubling
# right?". It is named as the rule it is: "stagewise x2.21" (PyramidNet's per-layer "geometric"
# is a registered rule of its own, so that name is taken).
STAGEWISE = "stagewise"


def rule_label(values: Any) -> str:
    """The rule a trial's hyperparameter values describe: `doubling` only at x2 (to the 2 decimals
    shown), `stagewise xF` for another searched factor, else the drawn rule as it is."""
    rule = str(values.get("rule", ""))
    factor = values.get("doubling_factor")
    if rule == "doubling" and factor is not None and round(float(factor), 2) != 2.0:
        return f"{STAGEWISE} x{float(factor):.2f}"
    return rule


def rule_family(label: str) -> str:
    """What a label groups under in plots and per-rule tables: every `stagewise xF` together."""
    return STAGEWISE if str(label).startswith(STAGEWISE + " x") else str(label)


@dataclass(frozen=True)
class Reference:
    """Doubling beside the winner: fitted to the same budget when there is one, else from the
    winner's first width; same depth, block, kernel size and downsampling."""

    filters: list[int]
    params: int
    how: str


def doubling_reference(best: dict[str, Any], hypermodel: Any, hp: Any) -> Reference | None:
    if not best.get("filters"):
        return None
    f = [int(x) for x in str(best["filters"]).split("-")]
    budgets = hypermodel.budgets.size_budgets
    arch = dict(input_shape=hypermodel.input_shape, num_classes=hypermodel.num_classes,
                depth=len(f), block=hp.get("block"), kernel_size=hp.get("kernel_size"),
                downsample=hp.get("downsample"), downsample_every=hypermodel.downsample_every)
    try:
        if budgets and hypermodel.fill_budget:
            plan = zoo.plan("doubling", **arch, **budgets)
            how = "fitted to the same budget"
        else:
            plan = zoo.plan("doubling", **arch, base_filters=f[0])
            how = "same first width"
        shape = {k: arch[k] for k in ("input_shape", "num_classes", "block", "kernel_size",
                                      "downsample")}
        costs = count_costs(plan, architecture(downsample_at=plan.downsample_at, **shape))
    except ValueError:
        return None
    return Reference(list(plan), costs.params, how)


def _cell(key: str, v: Any) -> str:
    if v is None:  # missing
        return ""
    if isinstance(v, float) and key == "latency_ms":
        return f"{v:.2f}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str]]) -> list[str]:
    """A GitHub Markdown table of `rows` (dicts) with `cols` = (header, key) pairs."""
    from tabulate import tabulate

    body = [[_cell(key, r.get(key)) for _, key in cols] for r in rows]
    # numbers right-aligned, as a reader compares them
    align = ["right" if any(isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
                            for r in rows) else "left" for _, key in cols]
    # disable_numparse: cells are formatted already ("1,234" must not be re-read as a number)
    return tabulate(body, headers=[h for h, _ in cols], tablefmt="github", colalign=align,
                    disable_numparse=True).splitlines()


def _slim_section(slim: Any, fitted: dict[str, list[int]] | None) -> list[str]:
    """The learned profile beside doubling's: how many kernels each layer asked for."""
    from tuning.searches.slim_profile import pruning_note

    L = ["## Learned widths (slim)", "",
         f"One training of the wide network ({'-'.join(map(str, slim.wide))}) with a "
         f"{slim.resource}-weighted L1 penalty on BatchNorm scales (strength {slim.strength:g}, "
         f"{slim.epochs} epochs, {slim.seconds:.0f} s) left these channels alive.", ""]
    note = pruning_note(slim)
    if note:
        L += [f"**Warning:** {note}.", ""]
    learned = (fitted or {}).get("slim") or [""] * len(slim.profile)
    doubling = (fitted or {}).get("doubling") or [""] * len(slim.profile)
    rows = [{"layer": i, "wide": w, "live": p, "fitted": f, "doubling": d}
            for i, (w, p, f, d) in enumerate(zip(slim.wide, slim.profile, learned, doubling))]
    L += _table(rows, [("layer", "layer"), ("wide", "wide"), ("live", "live"),
                       ("fitted to the budget", "fitted"), ("doubling (same budget)", "doubling")])
    return L + [""]


def write_report(path: Path, *, rows: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]],
                 metric: str, settings: dict[str, Any], budgets: dict[str, Any],
                 reference: Reference | None, exported: Sequence[Any] = (),
                 untried_rules: Sequence[str] = (), slim: Any = None,
                 slim_reference: dict[str, list[int]] | None = None) -> Path:
    done = [r for r in rows if r["status"] == "COMPLETED"]
    rejected = [r for r in rows if r["status"] == "REJECTED"]
    failed = [r for r in rows if r["status"] not in ("COMPLETED", "REJECTED")]
    L = [f"# zoo-tune report: {settings.get('project', '')}", ""]
    L += _table([{"setting": k, "value": v} for k, v in settings.items()],
                [("setting", "setting"), ("value", "value")])
    L += ["", f"Trials: {len(rows)} ({len(done)} trained, {len(rejected)} rejected over budget, "
              f"{len(failed)} failed or unfinished).", ""]

    L += ["## Budgets", ""]
    active = {k: v for k, v in budgets.items() if v is not None}
    L += [", ".join(f"`{k}` = {v:,}" if isinstance(v, int) else f"`{k}` = {v}"
                    for k, v in active.items()) if active else "No budget: every sampled model trained.", ""]

    if slim is not None:
        L += _slim_section(slim, slim_reference)
    if untried_rules:
        L += [f"Rules never trained (too few trials, or their networks were all duplicates or "
              f"rejected): {', '.join(untried_rules)}.", ""]
    if any(rule_family(r["rule"]) == STAGEWISE for r in rows):
        L += [f"`{STAGEWISE} xF`: the widths grow by the factor F at each downsample. Rule mode "
              f"searches doubling's factor; only F = 2 is doubling, and only those trials are "
              f"named so.", ""]

    cols = [("rank", "rank"), ("trial", "trial"), ("origin", "origin"), ("rule", "rule"), ("block", "block"),
            ("depth", "depth"), ("filters", "filters"), ("params", "params"), ("MACs", "macs"),
            ("latency ms", "latency_ms"), (metric, "metric"), ("test acc", "test_accuracy")]
    if all(r.get("latency_ms") is None for r in rows):  # timed only when asked
        cols.remove(("latency ms", "latency_ms"))
    if any(r.get("rerank_mean") is not None for r in done):
        cols[-1:-1] = [("runs", "rerank_runs"), (f"mean {metric}", "rerank_mean")]
    if done:
        best = done[0]
        L += ["## Winner", "",
              f"Trial {best['trial']}: rule **{best['rule']}**, block {best['block']}, depth "
              f"{best['depth']}, filters `{best['filters']}`, {best['params']:,} params, "
              f"{metric} {best['metric']:.4f}"
              + (f" (mean over {best['rerank_runs']} runs: {best['rerank_mean']:.4f})"
                 if best.get("rerank_mean") is not None else "")
              + (f", test accuracy {best['test_accuracy']:.4f}" if best["test_accuracy"] is not None
                 else "")
              + ".", ""]
        if reference:
            f = [int(x) for x in str(best["filters"]).split("-")]
            L += [f"### Winner's per-layer filters vs the doubling plan (same depth, {reference.how})",
                  ""]
            L += _table([{"layer": i, "winner": a, "doubling": b}
                         for i, (a, b) in enumerate(zip(f, reference.filters))],
                        [("layer", "layer"), ("winner", "winner"), ("doubling", "doubling")])
            if reference.params:
                L += ["", f"Winner: {best['params']:,} params; that doubling model: "
                          f"{reference.params:,} params ({best['params'] / reference.params:.2f}x)."]
            L += [""]
        if len(done) == 1:
            # One trained trial: one table (a per-rule table, a front and a leaderboard of the
            # same row would only repeat it).
            L += ["## The trained trial", ""] + _table(done, cols) + [""]
        else:
            per_rule: dict[str, dict[str, Any]] = {}
            for r in done:
                per_rule.setdefault(rule_family(r["rule"]), r)
            if len(per_rule) > 1:
                L += ["## Best model per rule", ""] + _table(list(per_rule.values()), cols) + [""]
            if len(front) > 1:
                L += [f"## Pareto front ({metric} vs parameters)", "",
                      "Trained trials that no other trial beats on both accuracy and parameter "
                      "count.", ""]
                L += _table(front, cols) + [""]
            else:
                L += [f"Pareto front ({metric} vs parameters): the winner alone; no other trial "
                      "is smaller or more accurate.", ""] if front else []
            L += ["## Leaderboard (top 10)", ""] + _table(done[:10], cols) + [""]
    else:
        L += ["## Winner", "", "No trial finished training.", ""]
    L += ["## Rejected and failed trials", ""]
    if rejected or failed:
        L += _table(rejected + failed, [("trial", "trial"), ("status", "status"), ("rule", "rule"),
                                        ("depth", "depth"), ("filters", "filters"),
                                        ("params", "params"), ("MACs", "macs"), ("reason", "reason")])
    else:
        L += ["None."]
    L += [""]
    if exported:
        L += ["## Exported", ""] + [f"- `{e.name}` version {e.version}: `{e.path}`" for e in exported] + [""]
    L += ["Files: `leaderboard.csv` (every trial), `pareto.png`, `filters.png`, and keras-tuner's own "
          "project files (`oracle.json`, `trial_*/`).", ""]
    path.write_text("\n".join(L), encoding="utf-8")
    return path
