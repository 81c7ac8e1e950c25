"""The power analysis and cost estimate of the confirmatory study, from the committed ledgers.

Reads benchmarks/preregistration.json (the design) and the exploratory studies' runs.jsonl
(benchmarks/results/study/{params,macs}/, 5 epochs on 10,000 Fashion-MNIST images, seeds 0-4) and
writes benchmarks/results/confirm/power.{json,md}:

- the per-seed spread of each hypothesis' difference to doubling, sigma: the root mean square of
  the per-cell standard deviations of the paired differences at that budget in the exploratory
  study, over the cells within 1 point of doubling (decreasing's and hourglass's differences, 2-16
  points, spread 1-4 points and would set sigma for rules they say nothing about) and that ran
  all 5 seeds (see `cell_spreads`);
- the seeds each hypothesis needs for `power` at the smallest effect of interest (superiority:
  two-sided paired t-test; equivalence: TOST at the margin, power at a true difference of
  `tost_power_at_points`), at the Bonferroni level alpha / (hypotheses in its family), which
  Holm's first step uses: so each test has at least that power under Holm;
- a study's seeds: the most any of its hypotheses needs (a study without hypotheses of its own,
  the epochs curve's 5 and 10 epochs, takes its part's most), and never fewer than `min_seeds`;
- the cost: each run's exploratory train_seconds (same rule and budget, 5 epochs on 10,000
  images), scaled by (training images x epochs) / (10,000 x 5), summed, halved for the two
  workers and multiplied by the exploratory studies' measured wall/(train seconds / 2) overhead.

`--check` exits 1 when the design's fixed seed counts differ from what the analysis gives (the
pre-registration fixes them from this script's output).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from _common import RESULTS_DIR, ROOT

from cnnzoo.files import write_atomic
from tuning.comparisons.runs import read_runs
from tuning.comparisons.stats import (REFERENCE_RULE, paired_power, seeds_for_power,
                                      tost_power)

PREREGISTRATION = ROOT / "benchmarks" / "preregistration.json"
EXPLORATORY_IMAGES, EXPLORATORY_EPOCHS = 10_000, 5
FULL_TRAIN_IMAGES = 54_000  # Fashion-MNIST's 60,000 less the 10% validation split
WITHIN_POINTS = 1.0  # cells further from doubling are left out of sigma (see the docstring)


def cell_spreads(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(rule, budget) -> (mean, sd) of the per-seed differences to doubling, in points, for the
    cells that ran every seed: a cell the seed allocation stopped early stopped because its
    differences happened to agree (diamond at 4.4M MACs: sd 0.03 over 3 seeds), so its spread is
    biased low."""
    acc = {(r["rule"], str(r["budget"]), int(r["seed"])): 100 * r["test_accuracy"] for r in runs}
    diffs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (rule, budget, seed), a in sorted(acc.items()):
        ref = acc.get((REFERENCE_RULE, budget, seed))
        if rule != REFERENCE_RULE and ref is not None:
            diffs[(rule, budget)].append(a - ref)
    full = max(len(d) for d in diffs.values())
    return {k: (statistics.mean(d), statistics.stdev(d)) for k, d in diffs.items()
            if len(d) == full}


def budget_sigma(spreads: dict[tuple[str, str], tuple[float, float]], budget: str) -> float:
    sds = [sd for (_, b), (mean, sd) in spreads.items()
           if b == budget and abs(mean) <= WITHIN_POINTS]
    return math.sqrt(statistics.mean(sd * sd for sd in sds))


def analyse(design: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    alpha, target = design["alpha"], design["power"]
    effect, margin = design["smallest_effect_points"], design["equivalence_margin_points"]
    at = design["tost_power_at_points"]
    studies = {s["name"]: s for s in design["studies"]}
    ledgers = {name: cell_spreads(read_runs(results_dir / name))
               for name in {s["exploratory"] for s in design["studies"]}}
    family_size = defaultdict(int)
    for h in design["hypotheses"]:
        family_size[h["family"]] += 1
    hyps = []
    for h in design["hypotheses"]:
        study = studies[h["study"]]
        spreads = ledgers[study["exploratory"]]
        sigma = budget_sigma(spreads, str(h["budget"]))
        level = alpha / family_size[h["family"]]
        delta = effect[h["family"]]
        if h["test"] == "superiority":
            n = seeds_for_power(lambda k: paired_power(delta / 100, sigma / 100, k, level), target)
        else:
            n = seeds_for_power(lambda k: tost_power(margin / 100, sigma / 100, k, level,
                                                     at / 100), target)
        mean = spreads.get((h["rule"], str(h["budget"])), (math.nan,))[0]
        hyps.append({**h, "effect_points": delta, "sigma_points": round(sigma, 3), "level": level, "seeds_needed": n,
                     "exploratory_mean_points": round(mean, 3)})
    need: dict[str, int] = {}
    for s in design["studies"]:
        own = [h["seeds_needed"] for h in hyps if h["study"] == s["name"]]
        part = [h["seeds_needed"] for h in hyps if studies[h["study"]]["part"] == s["part"]]
        need[s["name"]] = max(own or part + [0], default=0)
        need[s["name"]] = max(need[s["name"]], design.get("min_seeds", {}).get(str(s["part"]), 2))
    for h in hyps:  # the power each test has at its study's seeds
        n = need[h["study"]]
        h["power_at_study_seeds"] = round(
            paired_power(h["effect_points"] / 100, h["sigma_points"] / 100, n, h["level"])
            if h["test"] == "superiority" else
            tost_power(margin / 100, h["sigma_points"] / 100, n, h["level"], at / 100), 3)
    cost = estimate_cost(design, need, results_dir)
    return {"hypotheses": hyps, "seeds": need, "cost": cost}


def estimate_cost(design: dict[str, Any], seeds: dict[str, int], results_dir: Path) -> dict[str, Any]:
    train: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    overheads = []
    for name in {s["exploratory"] for s in design["studies"]}:
        runs = read_runs(results_dir / name)
        for r in runs:
            train[(name, r["rule"], str(r["budget"]))].append(r["train_seconds"])
        record = json.loads((results_dir / name / "study.json").read_text())
        overheads.append(record["wall_seconds_total"] / (sum(r["train_seconds"] for r in runs) / 2))
    overhead = max(overheads)
    workers = design["workers"]
    per_study = {}
    for s in design["studies"]:
        images = s["train_limit"] or FULL_TRAIN_IMAGES
        scale = images * s["epochs"] / (EXPLORATORY_IMAGES * EXPLORATORY_EPOCHS)
        per_seed = sum(statistics.mean(train[(s["exploratory"], rule, str(b))])
                       for rule in s["rules"] for b in s["budgets"])
        seconds = per_seed * scale * seeds[s["name"]]
        per_study[s["name"]] = {"runs": len(s["rules"]) * len(s["budgets"]) * seeds[s["name"]],
                                "train_seconds": round(seconds),
                                "wall_minutes": round(seconds / workers * overhead / 60, 1)}
    return {"overhead": round(overhead, 3), "workers": workers, "studies": per_study,
            "wall_minutes_total": round(sum(v["wall_minutes"] for v in per_study.values()), 1),
            "wall_minutes_part": {p: round(sum(per_study[s["name"]]["wall_minutes"]
                                               for s in design["studies"] if s["part"] == p), 1)
                                  for p in sorted({s["part"] for s in design["studies"]})}}


def markdown(design: dict[str, Any], result: dict[str, Any]) -> str:
    lines = ["# Power analysis and cost of the confirmatory study", "",
             "Written by `benchmarks/power.py` from benchmarks/preregistration.json and the "
             "exploratory ledgers (benchmarks/results/study/{params,macs}/runs.jsonl). Points are "
             "test-accuracy points; sigma is the per-seed spread of a rule's difference to "
             "doubling.", "",
             "| id | family | study | budget | rule | test | exploratory mean | effect of interest "
             "| sigma | level | seeds needed | power at the study's seeds |", "|" + "---|" * 12]
    for h in result["hypotheses"]:
        lines.append(f"| {h['id']} | {h['family']} | {h['study']} | {h['budget']:,} | {h['rule']} "
                     f"| {h['test']} | {h['exploratory_mean_points']:+.2f} | "
                     f"{h['effect_points'] if h['test'] == 'superiority' else ''} | "
                     f"{h['sigma_points']:.2f} | {h['level']:.4f} | {h['seeds_needed']} | "
                     f"{h['power_at_study_seeds']:.2f} |")
    c = result["cost"]
    lines += ["", f"Superiority: power {design['power']} at the family's effect of interest "
              f"(points: " + ", ".join(f"family {k}: {v}" for k, v in
                                        design['smallest_effect_points'].items()) + "), two-sided. Equivalence: TOST at "
              f"+-{design['equivalence_margin_points']} points, power at a true difference of "
              f"{design['tost_power_at_points']} points. Level: alpha {design['alpha']} over "
              "the hypotheses of a family (Holm's first step).", "",
              "| study | seeds | runs | train seconds | wall minutes |", "|---|---|---|---|---|"]
    for s in design["studies"]:
        v = c["studies"][s["name"]]
        lines.append(f"| {s['name']} | {result['seeds'][s['name']]} | {v['runs']} | "
                     f"{v['train_seconds']:,} | {v['wall_minutes']} |")
    lines += ["", f"Wall time: {c['wall_minutes_total']} min in all ("
              + ", ".join(f"part {p}: {m} min" for p, m in c["wall_minutes_part"].items())
              + f"), {c['workers']} workers, overhead x{c['overhead']} (the exploratory studies' "
              "wall time over their train seconds / workers)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--design", type=Path, default=PREREGISTRATION)
    p.add_argument("--exploratory-dir", type=Path, default=RESULTS_DIR,
                   help="holds study/{params,macs}/runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "confirm")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the design's seed counts differ from the analysis")
    args = p.parse_args(argv)
    design = json.loads(args.design.read_text())
    result = analyse(design, args.exploratory_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "power.json", json.dumps(result, indent=2) + "\n")
    write_atomic(args.out / "power.md", markdown(design, result))
    print(markdown(design, result))
    wrong = {s["name"]: (s["seeds"], result["seeds"][s["name"]]) for s in design["studies"]
             if s["seeds"] != result["seeds"][s["name"]]}
    if args.check and wrong:
        print("power: the design's seeds differ from the analysis: " + ", ".join(
            f"{k} {a} (needs {b})" for k, (a, b) in wrong.items()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
