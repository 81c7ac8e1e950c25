"""report.md: which rule won on this data, at what cost, and how the winner differs from doubling."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import zoo

__all__ = ["doubling_reference", "write_report"]


def doubling_reference(best: dict[str, Any], downsample_every: int | None) -> list[int] | None:
    """The doubling plan at the winner's depth, starting from the winner's first-layer width."""
    if not best.get("filters"):
        return None
    f = [int(x) for x in str(best["filters"]).split("-")]
    return zoo.plan("doubling", depth=len(f), base_filters=f[0], downsample_every=downsample_every)


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str]]) -> list[str]:
    out = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for _, key in cols:
            v = r.get(key, "")
            if isinstance(v, float) and key == "latency_ms":
                v = f"{v:.2f}"
            elif isinstance(v, float):
                v = f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            cells.append(str(v).replace("|", "/"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def write_report(path: Path, *, rows: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]],
                 metric: str, settings: dict[str, Any], budgets: dict[str, Any],
                 reference: Sequence[int] | None, reference_params: int | None,
                 exported: Sequence[Any] = ()) -> Path:
    done = [r for r in rows if r["status"] == "COMPLETED"]
    rejected = [r for r in rows if r["status"] == "REJECTED"]
    failed = [r for r in rows if r["status"] not in ("COMPLETED", "REJECTED")]
    L = [f"# zoo-tune report: {settings.get('project', '')}", ""]
    L += ["| setting | value |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in settings.items()]
    L += ["", f"Trials: {len(rows)} ({len(done)} trained, {len(rejected)} rejected over budget, "
              f"{len(failed)} failed or unfinished).", ""]

    L += ["## Budgets", ""]
    active = {k: v for k, v in budgets.items() if v is not None}
    L += [", ".join(f"`{k}` = {v:,}" if isinstance(v, int) else f"`{k}` = {v}"
                    for k, v in active.items()) if active else "No budget: every sampled model trained.", ""]

    cols = [("rank", "rank"), ("trial", "trial"), ("rule", "rule"), ("block", "block"),
            ("depth", "depth"), ("filters", "filters"), ("params", "params"), ("MACs", "macs"),
            ("latency ms", "latency_ms"), (metric, "metric"), ("test acc", "test_accuracy")]
    if any(r.get("rerank_mean", "") != "" for r in done):
        cols[-1:-1] = [("runs", "rerank_runs"), (f"mean {metric}", "rerank_mean")]
    if done:
        best = done[0]
        L += ["## Winner", "",
              f"Trial {best['trial']}: rule **{best['rule']}**, block {best['block']}, depth "
              f"{best['depth']}, filters `{best['filters']}`, {best['params']:,} params, "
              f"{metric} {best['metric']:.4f}"
              + (f" (mean over {best['rerank_runs']} runs: {best['rerank_mean']:.4f})"
                 if best.get("rerank_mean", "") != "" else "")
              + (f", test accuracy {best['test_accuracy']:.4f}" if best["test_accuracy"] != "" else "")
              + ".", ""]
        if reference:
            f = [int(x) for x in str(best["filters"]).split("-")]
            L += ["### Winner's per-layer filters vs the doubling plan (same depth, same first width)", "",
                  "| layer | winner | doubling |", "|---|---|---|"]
            L += [f"| {i} | {a} | {b} |" for i, (a, b) in enumerate(zip(f, reference))]
            if reference_params:
                L += ["", f"Winner: {best['params']:,} params; the doubling model with the same depth, "
                          f"first width and block: {reference_params:,} params "
                          f"({best['params'] / reference_params:.2f}x)."]
            L += [""]
        per_rule: dict[str, dict[str, Any]] = {}
        for r in done:
            per_rule.setdefault(r["rule"], r)
        L += ["## Best model per rule", ""] + _table(list(per_rule.values()), cols) + [""]
        L += [f"## Pareto front ({metric} vs parameters)", "",
              "Trained trials that no other trial beats on both accuracy and parameter count.", ""]
        L += _table(front, cols) + [""]
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
