"""The confirmatory study (issue 33): runs exactly benchmarks/preregistration.json and reports every
pre-registered test, whatever it says.

Each study of the design is one `zoo-compare` project (fixed seeds, no allocation) run through
study.py's `run_compare`: its ledger (runs.jsonl, settings, per-image predictions) is kept beside
its results in benchmarks/results/confirm/<study>/, so a rerun, or a fresh checkout of committed
partial results, resumes where it stopped and never retrains a finished run. After every study
(and when stopped) report.md / report.json are rewritten from all finished runs: the tests of
both families (Holm over each whole family, tests not run yet counted), then the secondary
analyses. Start it in the background, detached from the terminal:

    python benchmarks/confirm.py --background      # log: runs/confirm/confirm.log

`--report-only` trains nothing. `--design` and `--results-dir` let the smoke test run a tiny
design on digits.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from _common import RESULTS_DIR, ROOT, machine_line
from study import run_compare

from cnnzoo.files import write_atomic

PREREGISTRATION = ROOT / "benchmarks" / "preregistration.json"


def flags_of(design: dict[str, Any], study: dict[str, Any]) -> list[str]:
    net = design["network"]
    flags = ["--dataset", design["dataset"], "--rules", ",".join(study["rules"]),
             f"--max-{study['budget_kind']}", ",".join(map(str, study["budgets"])),
             "--seeds", str(study["seeds"]), "--seed-start", str(study["seed_start"]),
             "--depth", str(net["depth"]), "--base-filters", str(net["base_filters"]),
             "--blocks", net["block"], "--epochs", str(study["epochs"]),
             "--workers", str(design["workers"])]
    if study["train_limit"]:
        flags += ["--train-limit", str(study["train_limit"])]
    return flags


# --- the analysis: numbers from tuning.comparisons.stats, formatted here -------------------------

def _diffs(runs: list[dict[str, Any]], rule: str, budget: str, key: str) -> dict[int, float]:
    by = {(r["rule"], str(r["budget"]), int(r["seed"])): r for r in runs}
    return {s: by[(rule, b, s)][key] - by[("doubling", b, s)][key]
            for (ru, b, s) in sorted(by) if ru == rule and b == budget and ("doubling", b, s) in by}


def analyse(design: dict[str, Any], results_dir: Path, labels: dict[str, Any] | None) -> dict[str, Any]:
    from tuning.comparisons.config import Run
    from tuning.comparisons.runs import read_predictions, read_runs
    from tuning.comparisons.stats import (bootstrap_contrast, combine, family_holm,
                                          hetero_contrasts, leave_one_seed_out, mcnemar,
                                          paired_interval, pooled_contrasts, primary_p, tost,
                                          verdict)

    alpha, margin = design["alpha"], design["equivalence_margin_points"] / 100
    runs = {s["name"]: read_runs(results_dir / s["name"]) for s in design["studies"]}
    planned = planned_runs(design)
    # The design fixes every seed count and allows no interim look: a study still running is
    # tested only once all its runs are in (until then its tests count in Holm as not run).
    complete = {name: len(runs[name]) >= planned[name] for name in runs}
    rows = []
    for h in design["hypotheses"]:
        d = (_diffs(runs[h["study"]], h["rule"], str(h["budget"]), "test_accuracy")
             if complete[h["study"]] else {})
        values = list(d.values())
        row = {**h, "seeds": len(values), "p": primary_p(values, h["test"], margin)
               if len(values) > 1 else math.nan}
        if len(values) > 1:
            iv = paired_interval(values)
            row.update(mean=iv.mean, low=iv.low, high=iv.high)
            if h["test"] == "equivalence":
                row["tost_interval"] = tost(values, margin).interval(alpha)
        rows.append(row)
    for fam in sorted({h["family"] for h in design["hypotheses"]}):
        mine = [r for r in rows if r["family"] == fam]
        adj = family_holm({r["id"]: r["p"] for r in mine})
        for r in mine:
            r["p_holm"] = adj[r["id"]]
            r["verdict"] = verdict(r["test"], r.get("mean", math.nan), r["p_holm"], alpha)
            if runs[r["study"]] and not complete[r["study"]]:
                r["verdict"] = (f"running ({len(runs[r['study']])} of {planned[r['study']]} runs; "
                                "tested when all are in)")
    for r in rows:  # secondary, per hypothesis
        if r["seeds"] < 2:
            continue
        d = _diffs(runs[r["study"]], r["rule"], str(r["budget"]), "test_accuracy")
        others = {o["id"]: o["p"] for o in rows if o["family"] == r["family"] and o is not r}
        r["loso"] = leave_one_seed_out(list(d.values()), r["test"], margin, others, alpha)
        val = list(_diffs(runs[r["study"]], r["rule"], str(r["budget"]), "val_accuracy").values())
        r["val"] = paired_interval(val).__dict__ if len(val) > 1 else None
        acc = {(x["rule"], int(x["seed"])): x["test_accuracy"] for x in runs[r["study"]]
               if str(x["budget"]) == str(r["budget"])}
        r["pooled"] = _iv(pooled_contrasts(acc, "doubling").get(r["rule"]))
        r["hetero"] = _iv(hetero_contrasts(acc, "doubling").get(r["rule"]))
        if labels is not None:
            pairs = []
            for seed in d:
                a = read_predictions(results_dir / r["study"], Run(r["rule"], str(r["budget"]), seed))
                b = read_predictions(results_dir / r["study"], Run("doubling", str(r["budget"]), seed))
                if a is not None and b is not None:
                    pairs.append((a["test"] == labels["test"], b["test"] == labels["test"]))
            if len(pairs) > 1:
                import numpy as np
                mean, low, high = bootstrap_contrast(np.stack([p[0] for p in pairs]),
                                                     np.stack([p[1] for p in pairs]))
                r["bootstrap"] = [mean, low, high]
                r["mcnemar_below_05"] = [sum(mcnemar(a, b) <= 0.05 for a, b in pairs), len(pairs)]
    combined = {}
    for rule in sorted({h["rule"] for h in design["hypotheses"] if h["family"] == "1"
                        and h["test"] == "superiority"}):
        effects = [(r["mean"], (r["high"] - r["low"]) / 2 / _t(r["seeds"])) for r in rows
                   if r["rule"] == rule and r["test"] == "superiority" and r["family"] == "1"
                   and "mean" in r]
        if len(effects) > 1:
            c = combine(effects)
            combined[rule] = {"mean": c.mean, "interval": c.interval(), "p": c.p, "q_p": c.q_p,
                              "budgets": c.budgets}
    curve, cells = {}, {}  # cells: the same intervals, kept whole for the rule x epochs tests
    reference = regime_reference(design)
    for s in design["studies"]:
        if not complete[s["name"]] or not (s["part"] == 2 or s["name"] == reference):
            continue
        for rule in s["rules"][1:]:
            if s["name"] == reference and rule not in _part2_rules(design):
                continue
            for b in s["budgets"]:
                v = list(_diffs(runs[s["name"]], rule, str(b), "test_accuracy").values())
                if len(v) > 1:
                    iv = cells[rule, s["name"]] = paired_interval(v)
                    curve.setdefault(rule, {})[s["name"]] = [iv.mean, iv.low, iv.high, len(v)]
    # Rule x epochs: a rule's effect after a longer training minus its effect after the
    # shortest. Against part 2's own shortest study the seeds are shared, so seed by seed (paired
    # t); against the part-1 reference they are other seeds: two independent estimates, their
    # difference with a normal interval and Cochran's Q (the rule x budget rows' test).
    regime = []
    studies = {s["name"]: s for s in design["studies"]}
    done = sorted((n for n in studies if n.startswith("epochs-") and complete[n]),
                  key=lambda n: studies[n]["epochs"])
    for rule in curve:
        for name in done:
            longer = studies[name]
            if longer["epochs"] > studies[done[0]]["epochs"]:
                b = str(longer["budgets"][0])
                short = _diffs(runs[done[0]], rule, b, "test_accuracy")
                long = _diffs(runs[name], rule, b, "test_accuracy")
                v = [long[seed] - short[seed] for seed in sorted(short.keys() & long.keys())]
                if len(v) > 1:
                    iv = paired_interval(v)
                    regime.append({"rule": rule, "from": done[0], "to": name, "change": iv.mean,
                                   "low": iv.low, "high": iv.high, "seeds": len(v), "p": iv.p,
                                   "test": "paired t"})
            if ((rule, reference) in cells and (rule, name) in cells
                    and longer["epochs"] > studies[reference]["epochs"]):
                a, z = cells[rule, reference], cells[rule, name]
                half = 1.959964 * math.hypot(a.se, z.se)
                regime.append({"rule": rule, "from": reference, "to": name, "change": z.mean - a.mean,
                               "low": z.mean - a.mean - half, "high": z.mean - a.mean + half,
                               "seeds": a.n + z.n, "p": combine([(a.mean, a.se), (z.mean, z.se)]).q_p,
                               "test": "Cochran's Q (other seeds)"})
    converged = {}
    for x in runs.get("full-data", []):
        c = x.get("val_curve") or []
        if len(c) >= 3:
            converged.setdefault(x["rule"], []).append(max(c[-3:]) - min(c[-3:]) <= 0.001)
    return {"hypotheses": rows, "combined": combined, "curve": curve, "regime": regime,
            "reference": reference,
            "converged": {k: [sum(v), len(v)] for k, v in converged.items()},
            "runs": {k: len(v) for k, v in runs.items()}}


def _t(n: int) -> float:
    from tuning.comparisons.stats import t_quantile
    return t_quantile(n - 1)


def _iv(iv: Any) -> list[float] | None:
    return None if iv is None or not iv.has_interval else [iv.mean, iv.low, iv.high, iv.df]


def _pts(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.2f}"


def _p(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.3g}"


def _ci(v: Sequence[float] | None) -> str:
    return "" if not v else f"{_pts(v[0])} [{_pts(v[1])}, {_pts(v[2])}]"


def _part2_rules(design: dict[str, Any]) -> set[str]:
    return {r for s in design["studies"] if s["part"] == 2 for r in s["rules"]}


def regime_reference(design: dict[str, Any]) -> str | None:
    """The part-1 study trained as part 2's shortest epochs study (same budget, data, network
    and epochs, other seeds, part 2's rules among its own): the regime curve's first point from
    part 1's seeds, so the curve has one whether or not that epochs study has run."""
    part2 = [s for s in design["studies"] if s["name"].startswith("epochs-")]
    if not part2:
        return None
    first = min(part2, key=lambda s: s["epochs"])
    same = ("budget_kind", "budgets", "train_limit", "epochs")
    for s in design["studies"]:
        if (s["part"] == 1 and all(s[k] == first[k] for k in same)
                and _part2_rules(design) <= set(s["rules"])):
            return s["name"]
    return None


def planned_runs(design: dict[str, Any]) -> dict[str, int]:
    """Each study's runs as the design fixes them: rules x budgets x seeds."""
    return {s["name"]: len(s["rules"]) * len(s["budgets"]) * s["seeds"] for s in design["studies"]}


def markdown(design: dict[str, Any], result: dict[str, Any], studies: dict[str, Any]) -> str:
    planned = planned_runs(design)
    lines = ["# Confirmatory study: every pre-registered test", "",
             "The design is benchmarks/preregistration.md (committed before the first run). "
             "Differences are rule minus doubling in test-accuracy points; primary test: the "
             f"paired t-test (superiority, two-sided) or TOST at +-{design['equivalence_margin_points']} "
             f"points (equivalence); Holm over each whole family at alpha {design['alpha']} "
             "(a test not run yet counts in its family).", "",
             "Runs: " + ", ".join(f"{k} {result['runs'][k]}/{planned[k]}" for k in planned) + ".",
             ""]
    for s in design["studies"]:
        rec = studies.get(s["name"])
        if rec:
            lines.append(f"- {s['name']}: {rec['runs']} runs, {rec['wall_seconds_total'] / 60:.0f} "
                         f"min wall over {len(rec['invocations'])} invocation(s), last on "
                         f"{machine_line(rec['invocations'][-1]['machine'])}")
    lines += ["", "## The pre-registered tests", "",
              "| id | family | study | budget | rule | test | seeds | difference [95% CI] "
              "| p | Holm p | verdict | leave-one-seed-out: same verdict |", "|" + "---|" * 12]
    for r in result["hypotheses"]:
        extra = ""
        if r.get("tost_interval"):
            lo, hi = r["tost_interval"]
            extra = f"; 90% CI [{_pts(lo)}, {_pts(hi)}]"
        loso = r.get("loso")
        lines.append(f"| {r['id']} | {r['family']} | {r['study']} | {r['budget']:,} | {r['rule']} | "
                     f"{r['test']} | {r['seeds']} | "
                     f"{_ci([r['mean'], r['low'], r['high']]) if 'mean' in r else ''}{extra} | "
                     f"{_p(r['p'])} | {_p(r['p_holm'])} | "
                     f"{r['verdict']} | {'' if not loso else f'{loso[0]} of {loso[1]}'} |")
    lines += ["", "## Secondary analyses (not claims)", "",
              "| id | pooled fit (one variance) | per-rule variances (Welch-Satterthwaite) | "
              "bootstrap over seeds and test images | McNemar p <= 0.05 (seed pairs) | "
              "same contrast on the validation split |", "|---|---|---|---|---|---|"]
    for r in result["hypotheses"]:
        if r["seeds"] < 2:
            continue
        val = r.get("val")
        mc = r.get("mcnemar_below_05")
        lines.append(f"| {r['id']} | {_ci(r.get('pooled'))} | {_ci(r.get('hetero'))} | "
                     f"{_ci(r.get('bootstrap'))} | {'' if not mc else f'{mc[0]} of {mc[1]}'} | "
                     f"{_ci([val['mean'], val['low'], val['high']]) if val else ''} |")
    if result["combined"]:
        lines += ["", "Rule x budget (family 1, equal parameters): the combined inverse-variance "
                  "effect and Cochran's Q test that the effect is the same at every budget.", "",
                  "| rule | budgets | combined [95% CI] | p | heterogeneity p |", "|---|---|---|---|---|"]
        for rule, c in result["combined"].items():
            lines.append(f"| {rule} | {c['budgets']} | {_ci([c['mean'], *c['interval']])} | "
                         f"{c['p']:.3g} | {c['q_p']:.3g} |")
    if result["curve"]:
        epochs = {s["name"]: s["epochs"] for s in design["studies"]}
        seeds = {s["name"]: f"seeds {s['seed_start']}-{s['seed_start'] + s['seeds'] - 1}"
                 for s in design["studies"]}
        names = [s["name"] for s in design["studies"] if s["name"] in
                 {k for v in result["curve"].values() for k in v}]
        intro = "Part 2, the regime: each rule minus doubling per study (95% paired CI, seeds)."
        if result.get("reference") in names:
            intro += (f" {result['reference']} is part 1's study with the same training: the "
                      f"{epochs[result['reference']]}-epoch point, on other seeds than part 2's.")
        lines += ["", intro, "", "| rule | " + " | ".join(f"{n} ({epochs[n]} epochs, {seeds[n]})" for n in names)
                  + " |", "|---|" + "---|" * len(names)]
        for rule, per in result["curve"].items():
            lines.append(f"| {rule} | " + " | ".join(
                f"{_ci(per[n])} ({per[n][3]})" if n in per else "" for n in names) + " |")
    if result.get("regime"):
        lines += ["", "Rule x epochs (secondary): the change of each rule's effect from a shorter to "
                  "a longer training; paired t where the two studies share their seeds, else two "
                  "independent estimates (normal 95% interval, Cochran's Q).", "",
                  "| rule | from | to | change of effect [95% CI] | p | test |",
                  "|---|---|---|---|---|---|"]
        for c in result["regime"]:
            lines.append(f"| {c['rule']} | {c['from']} | {c['to']} | "
                         f"{_ci([c['change'], c['low'], c['high']])} | {c['p']:.3g} | {c['test']} |")
    if result["converged"]:
        lines += ["", "Full-data convergence (validation accuracy of the last three epochs within "
                  "0.1 points): " + ", ".join(f"{k} {v[0]} of {v[1]} runs"
                                               for k, v in result["converged"].items()) + "."]
    return "\n".join(lines) + "\n"


VERDICT_COLOURS = {"better than doubling": "tab:green", "worse than doubling": "tab:red",
                   "equivalent (within the margin)": "tab:blue"}


def figure(design: dict[str, Any], result: dict[str, Any]) -> Any:
    """study.png's figure: every pre-registered test as one row (a forest plot), rule minus doubling with
    its paired 95% interval, coloured by its verdict; the equivalence margin shaded on the rows of
    equivalence tests; a test not run yet is a row that says so, so the figure never looks done
    before the study is."""
    from tuning.comparisons.plots import plt

    rows = result["hypotheses"]
    margin = design["equivalence_margin_points"]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6), dpi=100)
    for y, r in enumerate(rows):
        if r["test"] == "equivalence":
            ax.fill_betweenx([y - 0.4, y + 0.4], -margin, margin, color="tab:blue", alpha=0.08,
                             linewidth=0)
        if "mean" not in r:
            ax.text(0, y, r["verdict"], ha="center", va="center", fontsize=8, color="grey",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        colour = VERDICT_COLOURS.get(r["verdict"], "dimgrey")
        ax.errorbar([100 * r["mean"]], [y], xerr=[[100 * (r["mean"] - r["low"])],
                                                  [100 * (r["high"] - r["mean"])]],
                    marker="o", capsize=3, color=colour)
        ax.annotate(f"{r['verdict']} (Holm p {_p(r['p_holm'])})", (100 * r["high"], y),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=7,
                    color=colour)
    ax.axvline(0, color="black", linewidth=1.2)
    planned = {st["name"]: st["seeds"] for st in design["studies"]}
    ax.set_yticks(range(len(rows)),
                  [f"{r['id']}  {r['rule']}, {r['study']} "
                   f"({r['seeds'] if 'mean' in r else str(planned[r['study']]) + ' planned'} seeds)"
                   for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # P1 on top
    lo = min([100 * r["low"] for r in rows if "low" in r] + [-margin]) - 0.3
    hi = max([100 * r["high"] for r in rows if "high" in r] + [margin]) + 0.3
    ax.set_xlim(lo, hi + 0.6 * (hi - lo))  # room right of the bars for the verdicts
    ax.set_xlabel("test accuracy minus doubling's (points; paired 95% t interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Confirmatory study, pre-registered: {sum(result['runs'].values())} of "
                 f"{sum(planned_runs(design).values())} "
                 f"runs\nHolm over each family at alpha {design['alpha']}; shaded: the "
                 f"+-{margin}-point equivalence margin", fontsize=9)
    fig.tight_layout()
    return fig


def write_report(design: dict[str, Any], results_dir: Path) -> Path:
    import zoo

    try:
        data = zoo.datasets.load(design["dataset"])
        labels = {"test": data.y_test, "val": data.y_val}
    except Exception as exc:  # the tests still report; the bootstrap needs the labels
        print(f"confirm: no labels for the bootstrap ({exc})", file=sys.stderr)
        labels = None
    result = analyse(design, results_dir, labels)
    studies = {s["name"]: json.loads((results_dir / s["name"] / "study.json").read_text())
               for s in design["studies"] if (results_dir / s["name"] / "study.json").exists()}
    write_atomic(results_dir / "report.json", json.dumps(result, indent=1, default=list) + "\n")
    path = results_dir / "report.md"
    write_atomic(path, markdown(design, result, studies))
    from tuning.comparisons.plots import plt

    fig = figure(design, result)
    fig.savefig(results_dir / "study.png")
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--design", type=Path, default=PREREGISTRATION)
    p.add_argument("--studies", default=None, help="comma-separated names (default: all, in order)")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "confirm")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR / "confirm")
    p.add_argument("--report-only", action="store_true", help="train nothing, rewrite the report")
    p.add_argument("--background", action="store_true",
                   help="run detached from the terminal (as nohup), output in <runs-dir>/confirm.log")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.background:
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        log = args.runs_dir / "confirm.log"
        with open(log, "a") as fh:  # a new session: no SIGHUP when the terminal closes
            child = subprocess.Popen([sys.executable, __file__, *[a for a in argv if a != "--background"]],
                                     stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=ROOT)
        print(f"confirm: running in the background as pid {child.pid}; log {log}")
        return 0
    design = json.loads(args.design.read_text())
    names = [s["name"] for s in design["studies"]]
    chosen = names if not args.studies else args.studies.split(",")
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"confirm: --studies names no study of the design: {', '.join(unknown)} "
              f"(valid: {', '.join(names)})", file=sys.stderr)
        return 2
    code = 0
    if not args.report_only:
        for study in design["studies"]:
            if study["name"] not in chosen:
                continue
            code = run_compare(study["name"], f"confirm-{study['name']}", flags_of(design, study),
                               args.runs_dir, args.results_dir / study["name"], overwrite=False,
                               title=f"Confirmatory study {study['name']}",
                               rerun="`python benchmarks/confirm.py`")
            write_report(design, args.results_dir)
            if code:
                break
    print(f"confirm: report in {write_report(design, args.results_dir)}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
