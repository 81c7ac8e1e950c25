"""`zoo-tune` (also `python -m tuning`): a keras-tuner search over zoo's rules from the shell.

    zoo-tune --dataset digits --tuner random --rules doubling,linear,diamond --max-trials 12 \\
             --epochs 8 --max-params 20000 --export 2

Rerunning the same command resumes the project (keras-tuner's own reload); `--overwrite` starts
over (a rerun with other settings is refused). `--workers N` trains on N local processes;
across machines, start the same command with KERASTUNER_TUNER_ID=chief (the oracle) and
KERASTUNER_TUNER_ID=tuner0, tuner1, ... (workers), all with KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set; the chief writes the leaderboard and report when all trials are done.
Bad input prints one line on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from cnnzoo.cli import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, add_deprecated, csv_list, flag_words,
                        range_or_value)

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from tuning.searches.config import DISTRIBUTIONS, SEARCH_MODES, TUNER_NAMES

    # Every dest is a tuning.SearchConfig field: main() passes them on without restating them.
    p = OneLineParser(prog="zoo-tune", description="keras-tuner search over filter-growth rules or "
                "per-layer kernel counts, under budgets, with a report.",
                argument_default=argparse.SUPPRESS)
    a = p.add_argument
    a("--dataset", help="any zoo.datasets name: digits, shapes, npz:PATH, dir:PATH, "
      "fashion_mnist, ... (default digits)")
    a("--tuner", help=f"one of {', '.join(TUNER_NAMES)} (default random)")
    a("--mode", help=f"one of {', '.join(SEARCH_MODES)} (default rule); slim learns every "
      "layer's width in one training of a wide network and trains that profile")
    a("--rules", type=csv_list(), help="comma-separated rules for --mode rule "
      "(default: every registered rule but custom)")
    a("--no-fill-budget", dest="fill_budget", action="store_false",
      help="with --max-params/--max-macs, build each draw as drawn and reject it when over budget "
      "(default: scale it to fill the budget, so trials compare shapes at equal cost)")
    a("--seed-from", dest="seed_from", help="--mode per_layer: the first trial is "
      "this rule's plan (e.g. doubling) or the slim profile (slim)")
    a("--max-trials", type=int, help="trials to train (default 10; 1 in slim mode); budget "
      "rejections come on top, up to --max-rejections")
    a("--max-minutes", type=float, help="start no trial after this many minutes (a wall-clock "
      "budget for this run; the running trial finishes)")
    a("--max-rejections", type=int, help="over-budget trials allowed on top of --max-trials "
      "(default 4x --max-trials; 0: they count towards it)")
    a("--epochs", type=int, help="epochs per trial; Hyperband's max_epochs (default: the shared "
      "recipe's, zoo.Recipe, from the training-set size)")
    a("--executions-per-trial", type=int, metavar="N", help="train each trial N times, each with "
      "its own seed, and score it by the mean (default 1)")
    a("--rerank-top", type=int, metavar="K", help="after the search, train the best K trials again "
      "and rank them by the mean of all their runs (default 0: off)")
    a("--rerank-executions", type=int, metavar="N", help="extra runs per re-ranked trial, each "
      "with a new seed (default 2)")
    a("--max-params", type=int, help="parameter budget: trials are scaled to fill it")
    a("--max-macs", type=int, help="multiply-accumulates per image budget: trials are scaled to fill it")
    a("--max-latency-ms", type=float, help="reject models slower than this (ms per image, measured here)")
    a("--depth", type=int, nargs="+", metavar="N", help="convolutional layers: N, or a range "
      "MIN MAX to search (default 2 4)")
    a("--filters", type=int, nargs="+", metavar="N", help="kernels of every layer: N, or a range "
      "MIN MAX to search (default 8 64); slim's wide network uses MAX")
    a("--filter-sampling", help="log (MIN, MIN*STEP, ...) or linear (MIN, MIN+STEP, ...)")
    a("--filter-step", type=int, help="the factor (log, default 2) or increment (linear, default 8) "
      "between kernel counts")
    a("--blocks", type=csv_list(), help="comma-separated blocks to search: plain, residual, "
      "separable (default plain)")
    a("--kernel-sizes", type=csv_list(int), help="comma-separated kernel sizes to search (default 3)")
    a("--downsamples", type=csv_list(), help="comma-separated: max, avg, strided, none")
    a("--dropouts", type=csv_list(float), help="comma-separated dropout rates before the "
      "classifier to search (default 0)")
    a("--learning-rates", type=csv_list(float), help="comma-separated peak learning rates of the "
      "shared recipe to search (default 0.003)")
    a("--batch-sizes", type=csv_list(int), help="comma-separated batch sizes to search "
      "(default: the shared recipe's, from the training-set size)")
    a("--objective", type=csv_list(), help="metric(s) to optimise (default val_accuracy); several "
      "(e.g. val_accuracy,params) give keras-tuner's multi-objective")
    a("--directory", help="where projects live (default runs)")
    a("--project", help="project name (default DATASET-MODE-TUNER)")
    a("--overwrite", action="store_true", help="start over instead of resuming")
    a("--seed", type=int, help="seed of the search: the oracle's draws, weights and shuffling "
      "(default 0)")
    a("--export", type=int, metavar="N", help="export the best N models (default 0)")
    a("--export-dir", metavar="DIR", help="TF Serving model root the --export models go to, as "
      "EXPORT_DIR/MODEL_NAME/VERSION (default saved_models)")
    a("--model-name", dest="export_name", metavar="NAME", help="served model name of the exported versions "
      "(default: the project name)")
    a("--tensorboard", metavar="DIR", help="write TensorBoard logs (with hparams) here")
    a("--distribution", help=f"multi-GPU trials: {', '.join(DISTRIBUTIONS)}")
    a("--train-limit", type=int, help="use only the first N training examples")
    a("--patience", type=int, help="early-stopping patience in epochs (default 3; 0: off)")
    a("--max-consecutive-failures", type=int,
      help="stop after this many rejected/failed trials in a row (default 10)")
    a("--slim-strength", type=float, help="slim: the L1 penalty of the wide network at the start, "
      "in loss units (higher prunes more)")
    a("--slim-epochs", type=int, help="slim: epochs of the wide training (default: the shared "
      "recipe's for the training set, not --epochs: pruning needs enough steps)")
    a("--workers", type=int, help="train on N local keras-tuner workers (a chief and N processes, "
      "each with cores/N TensorFlow threads; default 1: in-process)")
    a("--verbose", type=int, choices=(0, 1, 2), help="0: the summary only; 1 (default): a line "
      "per trial; 2: also Keras' per-epoch bars and keras-tuner's tables")
    # Old spellings (see the vocabulary in tuning/README.md): still accepted, with a warning.
    add_deprecated(p, "--export-name", "--model-name", "export_name")
    add_deprecated(p, "--block", "--blocks", "blocks", type=csv_list())
    add_deprecated(p, "--seed-rule", "--seed-from", "seed_from")
    return p


def flags_of(field_names: Sequence[str]) -> dict[str, str]:
    """SearchConfig field -> the zoo-tune flag that sets it (for errors in the CLI's words)."""
    flags = {name: "--" + name.replace("_", "-") for name in field_names}
    flags.update(export_name="--model-name", fill_budget="--no-fill-budget")
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(parser.parse_args(argv))
    for name in ("depth", "filters"):
        if name in args:
            try:
                args[name] = range_or_value(args[name], f"--{name}")
            except argparse.ArgumentTypeError as exc:
                parser.error(str(exc))
    if "objective" in args:
        args["objective"] = args["objective"][0] if len(args["objective"]) == 1 else args["objective"]
    # Everything up to the end of preflight needs no TensorFlow: a typo'd rule, a missing file
    # or an unreachable budget is reported at once.
    from tuning.searches.config import SearchConfig, SearchError

    def fail(exc: Exception) -> int:
        message = flag_words(str(exc), flags_of(SearchConfig.field_names()),
                             negated={"fill_budget": "--no-fill-budget"})
        print(f"zoo-tune: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        from tuning.searches.preflight import preflight

        config, _ = preflight(SearchConfig(**args), keep_data=True)
    except SearchError as exc:
        return fail(exc)
    from cnnzoo.env import setup_tensorflow

    setup_tensorflow()  # the search itself: now TensorFlow loads
    import tuning
    from tuning.launcher import is_distributed_process, run_workers

    role = os.environ.get("KERASTUNER_TUNER_ID")
    try:
        if config.workers > 1 and not is_distributed_process():
            from tuning.searches.driver import prepare

            prepare(config)  # every input error: one line here, before any process starts
            return run_workers("tuning", argv, config.workers)
        if role and config.verbose:
            print(f"zoo-tune: distributed mode as {role} (oracle at "
                  f"{os.environ.get('KERASTUNER_ORACLE_IP')}:{os.environ.get('KERASTUNER_ORACLE_PORT')})",
                  flush=True)
        result = tuning.search(config)
    except SearchError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("zoo-tune: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.report_path is None:
        if config.verbose:
            print("zoo-tune: worker finished; the chief writes the results", flush=True)
        return 0
    _print_summary(result)
    if result.completed == 0:
        # CI reads the exit status: a search that trained nothing has no winner to report.
        print(f"zoo-tune: error: {_nothing_completed(result)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _nothing_completed(result) -> str:  # type: ignore[no-untyped-def]
    """One line: why no trial completed, and where the first failed trial's full error is."""
    rows = result.leaderboard()
    failed = [r for r in rows if r["status"] not in ("COMPLETED", "REJECTED")]
    counts = f"{len(failed)} failed, {result.rejected} rejected over budget"
    if not failed:
        return f"no trial completed ({counts}); see {result.report_path}"
    first = min(failed, key=lambda r: int(r["trial"]) if str(r["trial"]).isdigit() else 0)
    where = result.project_dir / f"trial_{first['trial']}" / "trial.json"
    return (f"no trial completed ({counts}); trial {first['trial']} failed with: "
            f"{first['reason'] or first['status']} (full error: {where}, key 'message')")


def _print_summary(result) -> None:  # type: ignore[no-untyped-def]
    rows = result.leaderboard()
    print(f"\n{result.completed} trained, {result.rejected} rejected over budget; "
          f"leaderboard ({result.metric}):")
    print(f"{'rank':>4} {'trial':>5} {'rule':<15} {'depth':>5} {'filters':<22} {'params':>9} "
          f"{result.metric:>12} {'test acc':>8}")
    for r in rows[:10]:
        if r["status"] != "COMPLETED":
            continue
        test = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else ""
        depth, filters = ("" if r[k] is None else r[k] for k in ("depth", "filters"))  # None: missing
        print(f"{r['rank']:>4} {r['trial']:>5} {r['origin'] or r['rule']:<15} {depth:>5} {filters:<22} "
              f"{r['params']:>9,} {r['metric']:>12.4f} {test:>8}")
    print(f"\nreport: {result.report_path}\nleaderboard: {result.leaderboard_path}")
    for name, path in result.plots.items():
        print(f"{name}: {path}")
    for e in result.exported:
        print(f"exported: {e.name} version {e.version} -> {e.path}")
    if result.exported:
        print(f"label stable -> version {result.exported[0].version}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
