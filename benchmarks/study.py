"""`make study`: is doubling right on Fashion-MNIST? Every rule at three parameter budgets AND at
three MAC budgets, up to 5 seeds, spent where the answer is still open.

Two `zoo-compare` studies (2 local workers): `params` at 20k/45k/100k parameters (a 5x span) and
`macs` at the MACs doubling uses at those parameters, 8 rules, depth 6, 5 epochs on the first
10,000 training images. Seeds: every cell runs 3; a cell gets its 4th and 5th only while its
interval against doubling still covers both 0 and a 0.5-point difference (zoo-compare
--first-seeds 3 --seeds 5; the rule and its simulated error rate are in each compare.md).
Results, with the machine and the wall time of every invocation (a resumed study adds up its
invocations), go to benchmarks/results/study/<params|macs>/; study.png beside them sets every rule's
difference to doubling in both studies side by side.

Needs the data locally: on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (as root);
elsewhere run once with network so Keras downloads it into ~/.keras/datasets, or put the four IDX
.gz files in $ZOO_DATA_DIR/fashion-mnist/. Rerunning resumes: finished runs are kept in
runs/study-<kind>/ and, with their settings, beside the results (runs.jsonl,
compare_settings.json), so a fresh checkout of committed partial results resumes where they end.
Stopped early (Ctrl-C), it still writes the report of the runs finished so far. `--overwrite`
starts over.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from _common import RESULTS_DIR, ROOT, machine_info, machine_line

RULES = "doubling,constant,linear,geometric,regnet,decreasing,hourglass,diamond"
PARAMS_BUDGETS = (20_000, 45_000, 100_000)
STUDIES = ("params", "macs")
NEAR = 0.025  # study.png's scale shows the cells within 2.5 points of doubling; the rest sit at its edge


def macs_of_doubling(params_budgets: Sequence[int], *, depth: int, base_filters: int,
                     input_shape: Sequence[int], num_classes: int) -> list[int]:
    """The MACs of doubling fitted to each parameter budget: the MAC study's budgets, so both
    studies are anchored on the same doubling networks."""
    import zoo

    return [zoo.plan("doubling", depth=depth, base_filters=base_filters, max_params=b,
                     input_shape=input_shape, num_classes=num_classes).costs.macs
            for b in params_budgets]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", default=",".join(STUDIES), help="params,macs (default both)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--rules", default=RULES)
    p.add_argument("--max-params", dest="budgets", default=",".join(map(str, PARAMS_BUDGETS)),
                   help="parameter budgets; the MAC study uses doubling's MACs at each")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-limit", type=int, default=10_000)
    p.add_argument("--seeds", type=int, default=5, help="the most seeds a cell gets")
    p.add_argument("--first-seeds", type=int, default=3, help="seeds every cell gets")
    p.add_argument("--relevant-difference", type=float, default=0.5, help="points")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR / "study")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import zoo
    from zoo.dataset_files import NotFoundLocally, find_local

    if args.dataset == "fashion_mnist":
        try:
            find_local("fashion_mnist")
        except NotFoundLocally as exc:
            print(f"study: {exc}. Install it (Debian/Ubuntu: apt-get install "
                  "dataset-fashion-mnist) or let Keras download it once: python -c \"import "
                  "keras; keras.datasets.fashion_mnist.load_data()\"", file=sys.stderr)
            return 2
    data = zoo.datasets.load(args.dataset)
    params = [int(b) for b in args.budgets.split(",")]
    budgets = {"params": params,
               "macs": macs_of_doubling(params, depth=args.depth, base_filters=args.base_filters,
                                        input_shape=data.input_shape,
                                        num_classes=data.num_classes)}
    for kind in args.studies.split(","):
        code = run_study(kind, budgets[kind], args)
        summary_figure(args.results_dir)
        if code:
            return code
    return 0


def _axis_limits(cells: Sequence[tuple[float, float, float]], *, near: float = NEAR,
                 max_stack: int = 1) -> tuple[float, float]:
    """y limits (points) that show every cell within `near` of doubling with its interval; a
    cell further off is drawn at the edge with its value written, so that one rule 16 points
    down does not squash the others' +-1.5 into a line."""
    close = [(mean if math.isnan(low) else low, mean if math.isnan(high) else high)
             for mean, low, high in cells if abs(mean) <= near] or [(-0.01, 0.01)]
    low = min(min(lo for lo, _ in close), 0.0)
    high = max(max(hi for _, hi in close), 0.0)
    pad = 0.08 * (high - low)
    # room at an edge for the written values of the cells off the scale there
    below = 1 + 2.5 * max_stack if any(mean < -near for mean, _, _ in cells) else 1
    above = 1 + 2.5 * max_stack if any(mean > near for mean, _, _ in cells) else 1
    return 100 * (low - pad * below), 100 * (high + pad * above)


def summary_figure(results_dir: Path) -> Path | None:
    """study.png, the figure to look at first: each rule's accuracy minus doubling's at every
    budget of each study, with the pooled 95% interval (rule + seed model, the budget's runs);
    a filled marker where Holm's adjusted p <= 0.05 over the budget's rules."""
    from tuning.comparisons.stats import REFERENCE_RULE, pooled_differences
    from tuning.comparisons.runs import read_runs
    from tuning.comparisons.plots import plt

    kinds = [k for k in STUDIES if read_runs(results_dir / k)]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 5), dpi=100,
                             squeeze=False)
    cmap = plt.get_cmap("tab10")
    missing_bar = False
    for ax, kind in zip(axes[0], kinds):
        runs = read_runs(results_dir / kind)
        known = RULES.split(",")
        rules = sorted({r["rule"] for r in runs} - {REFERENCE_RULE},
                       key=lambda r: (known.index(r) if r in known else len(known), r))
        pooled = pooled_differences(runs)
        budgets = sorted({str(r["budget"]) for r in runs}, key=int)
        seeds = {b: len({r["seed"] for r in runs if str(r["budget"]) == b}) for b in budgets}
        cells = [(slot + 0.75 * ((i + 0.5) / len(rules) - 0.5), i, rule, pooled[(rule, budget)])
                 for i, rule in enumerate(rules) for slot, budget in enumerate(budgets)
                 if (rule, budget) in pooled]
        far = [round(x) for x, *_, iv in cells if abs(iv.mean) > NEAR]
        lo, hi = _axis_limits([(iv.mean, iv.low, iv.high) for *_, iv in cells],
                              max_stack=max((far.count(s) for s in far), default=1))
        stacked: dict[int, int] = {}  # written values of one budget's off-scale cells, one above another
        labelled: set[str] = set()
        for x, i, rule, iv in cells:
            colour = cmap(i % 10)
            has_bar = iv.has_interval
            missing_bar |= not has_bar
            face = colour if iv.p_holm <= 0.05 else "white"
            label = None if rule in labelled else rule
            labelled.add(rule)
            if abs(iv.mean) > NEAR:  # off the scale: a marker at the edge, its value written
                edge = lo if iv.mean < 0 else hi
                ax.plot([x], [edge], marker="v" if iv.mean < 0 else "^", color=colour,
                        markerfacecolor=face, linestyle="none", label=label, clip_on=False)
                text = f"{100 * iv.mean:+.1f}" + (f"\n[{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]"
                                                  if has_bar else "")
                lift = 9 + 24 * stacked.setdefault(round(x), 0)
                stacked[round(x)] += 1
                ax.annotate(text, (x, edge), xytext=(0, lift if iv.mean < 0 else -lift),
                            textcoords="offset points", ha="center",
                            va="bottom" if iv.mean < 0 else "top", fontsize=7, color=colour)
                continue
            bars = ([[100 * (iv.mean - iv.low)], [100 * (iv.high - iv.mean)]] if has_bar else None)
            ax.errorbar([x], [100 * iv.mean], yerr=bars, marker="o", capsize=3, color=colour,
                        markerfacecolor=face, label=label)
        ax.set_ylim(lo, hi)
        ax.axhline(0, color="black", linewidth=1.5, label=f"{REFERENCE_RULE} (reference)")
        ax.set_xticks(range(len(budgets)),
                      [f"{int(b):,}\n({seeds[b]} seeds)" for b in budgets])
        ax.set_xlim(-0.5, len(budgets) - 0.5)
        ax.set_xlabel(f"budget ({'parameters' if kind == 'params' else 'MACs'}; every rule "
                      "fitted to it)")
        ax.set_title(f"at equal {'parameters' if kind == 'params' else 'MACs'}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy minus doubling's (points)")
    handles, names = axes[0][-1].get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda k: (names[k] not in known, known.index(names[k])
                                                     if names[k] in known else 0))
    handles, names = [handles[k] for k in order], [names[k] for k in order]
    fig.legend(handles, names, fontsize=8, ncol=len(names), loc="lower center", frameon=False)
    settings = json.loads((results_dir / kinds[0] / "compare_settings.json").read_text())
    fig.suptitle(f"{settings['dataset']} (first {settings['train_limit']:,} training images, "
                 f"{settings['epochs']} epochs)\npooled 95% intervals"
                 f"{' (no bar: too few seeds yet)' if missing_bar else ''}; filled: Holm-significant "
                 "within its budget; a triangle: off the scale, its value written",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = results_dir / "study.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def run_study(kind: str, budgets: list[int], args: argparse.Namespace) -> int:
    flags = ["--dataset", args.dataset, "--rules", args.rules,
             f"--max-{kind}", ",".join(map(str, budgets)),
             "--seeds", str(args.seeds), "--depth", str(args.depth),
             "--base-filters", str(args.base_filters), "--epochs", str(args.epochs),
             "--train-limit", str(args.train_limit), "--workers", str(args.workers)]
    if args.first_seeds < args.seeds:
        flags += ["--first-seeds", str(args.first_seeds),
                  "--relevant-difference", str(args.relevant_difference)]
    return run_compare(kind, f"study-{kind}", flags, args.runs_dir, args.results_dir / kind,
                       overwrite=args.overwrite, title=f"Study at equal {kind}",
                       rerun="`make study`")


def run_compare(name: str, project: str, flags: list[str], runs_dir: Path, out: Path, *,
                overwrite: bool, title: str, rerun: str) -> int:
    """One zoo-compare project run (or resumed) with its ledger kept in `out` beside its results
    and a study.json recording the machine and wall time of every invocation."""
    where = ["--directory", str(runs_dir), "--project", project]
    project_dir = runs_dir / project
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        _restore_ledger(out, project_dir)
    runs_file = project_dir / "runs.jsonl"
    before = _count(runs_file) if not overwrite else 0
    print(f"study ({name}): zoo-compare {' '.join(flags)}", flush=True)
    compare = [sys.executable, "-m", "tuning.comparisons.cli", *flags, *where]
    machine = machine_info()  # before the run: its load average is the one at the start
    start = time.perf_counter()
    try:
        code = subprocess.call(compare + (["--overwrite"] if overwrite else []), cwd=ROOT)
    except KeyboardInterrupt:  # zoo-compare got the Ctrl-C too and kept every finished run
        code = 130
    wall = time.perf_counter() - start
    _keep_ledger(project_dir, out)
    if code and _count(runs_file):
        # Stopped early: report what is finished, so partial results can be committed.
        subprocess.call(compare + ["--report-only"], cwd=ROOT)
    for view in ("compare.md", "compare.csv", "compare.png", "profiles.png"):
        if (project_dir / view).exists():
            shutil.copy2(project_dir / view, out / view)
    record = out / "study.json"
    old = json.loads(record.read_text()) if record.exists() and not overwrite else {}
    invocations = [i for i in old.get("invocations", []) if old.get("flags") == flags]
    invocations.append({"wall_seconds": round(wall), "runs_trained": _count(runs_file) - before,
                        "completed": code == 0,
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "machine": machine})
    total = sum(i["wall_seconds"] for i in invocations)
    runs = _count(runs_file)
    record.write_text(json.dumps({"command": "zoo-compare " + " ".join(flags), "flags": flags,
                                  "runs": runs, "wall_seconds_total": total,
                                  "invocations": invocations}, indent=2) + "\n")
    (out / "README.md").write_text(
        f"# {title}\n\n`zoo-compare {' '.join(flags)}`\n\n"
        f"{runs} runs in {total / 60:.0f} min of wall time over {len(invocations)} "
        f"invocation(s); the last on {machine_line(machine)}."
        + ("" if code == 0 else " Stopped early: the tables hold the runs finished so far, and "
           f"{rerun} resumes from runs.jsonl here.") + "\n\n"
        "See compare.md (tables, pooled and per-rule intervals, Holm, seed allocation), "
        "compare.png and profiles.png.\n")
    print(f"study ({name}): {runs} runs, {total / 60:.0f} min; results in {out}"
          + ("" if code == 0 else " (stopped early: rerun to resume)"), flush=True)
    return code


# What a study needs to resume, kept beside its results so that committing them keeps the
# finished runs: runs.jsonl (zoo-compare never retrains a run recorded there), its settings, and
# the runs' per-image predictions.
LEDGER = ("runs.jsonl", "compare_settings.json", "predictions")


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    elif src.exists():
        shutil.copy2(src, dst)


def _restore_ledger(out: Path, project_dir: Path) -> None:
    """A fresh checkout resumes from the committed ledger (an existing project wins)."""
    if (project_dir / "runs.jsonl").exists() or not (out / "runs.jsonl").exists():
        return
    project_dir.mkdir(parents=True, exist_ok=True)
    for name in LEDGER:
        _copy(out / name, project_dir / name)
    print(f"study: resuming from {_count(project_dir / 'runs.jsonl')} finished runs in {out}",
          flush=True)


def _keep_ledger(project_dir: Path, out: Path) -> None:
    for name in LEDGER:
        _copy(project_dir / name, out / name)


def _count(runs_file: Path) -> int:
    if not runs_file.exists():
        return 0
    runs = set()
    for line in runs_file.read_text().splitlines():
        try:
            r = json.loads(line)
            runs.add((r["rule"], str(r["budget"]), r["seed"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill is not a finished run
    return len(runs)


if __name__ == "__main__":
    sys.exit(main())
