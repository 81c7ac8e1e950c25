"""`zoo-compare`: every rule at the same budgets, several seeds, one training recipe.

    zoo-compare --dataset fashion_mnist --rules doubling,linear,diamond --budgets 15000,40000 \\
                --seeds 3 --workers 2

Writes runs.jsonl, compare.csv, compare.md, compare.png and profiles.png in
<directory>/<project>/. Rerunning the same command trains only the runs that are missing;
`--workers N` starts keras-tuner's chief and N workers on this machine. Bad input prints one line
on stderr and exits with status 2; Ctrl-C stops every process and keeps finished runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cnnzoo.cli import EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, csv_list

__all__ = ["main", "build_parser"]

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="zoo-compare", description="Train every rule at the same budgets over several "
                "seeds with one recipe and say which differences are real.")
    a = p.add_argument
    a("--dataset", default="digits", help="any zoo.datasets name with a test split (default digits)")
    a("--rules", type=csv_list(str), default=None,
      help="comma-separated rules (default: doubling and every other built-in growth rule)")
    a("--budgets", type=_budget_list, required=True,
      help="comma-separated budgets, e.g. 15000,40000; PARAMS:MACS pairs (15000:2000000) fit "
           "every rule to both at once, the tighter binding")
    a("--budget-kind", default=None,
      help="params (default), macs, or both (the default when --budgets gives pairs)")
    a("--seeds", type=int, default=3, help="runs per rule x budget, seeds 0..N-1 (default 3); "
      "with --first-seeds, the most a cell gets")
    a("--first-seeds", type=int, default=None,
      help="seed allocation: every cell runs this many seeds, later seeds (up to --seeds) only "
           "cells whose interval still covers 0 and --relevant-difference (default: off)")
    a("--relevant-difference", type=float, default=0.5,
      help="the smallest accuracy difference that matters, in points, for --first-seeds "
           "(default 0.5)")
    a("--depth", type=int, default=4)
    a("--base-filters", type=int, default=16, help="the rule's starting width before fitting")
    a("--block", default="plain")
    a("--downsample-every", type=int, default=None)
    a("--epochs", type=int, default=None, help="default: from the training-set size (zoo.Recipe)")
    a("--batch-size", type=int, default=None, help="default: from the training-set size")
    a("--learning-rate", type=float, default=3e-3, help="Adam's peak learning rate (default 0.003)")
    a("--train-limit", type=int, default=None, help="train on the first N training images")
    a("--workers", type=int, default=1, help="local keras-tuner workers (default 1: in-process)")
    a("--directory", default="runs")
    a("--project", default="compare")
    a("--overwrite", action="store_true", help="start the project over")
    a("--report-only", action="store_true",
      help="train nothing: write the report of the runs finished so far")
    return p


def _budget_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    for item in items:
        parts = item.split(":")
        if not items or len(parts) > 2 or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of int or PARAMS:MACS pairs, got {text!r}")
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of int, got {text!r}")
    return items


def _config(args: argparse.Namespace):
    from tuning.compare_config import CompareConfig

    extra = {"rules": tuple(args.rules)} if args.rules is not None else {}
    kind = args.budget_kind or ("both" if any(":" in b for b in args.budgets) else "params")
    return CompareConfig(
        dataset=args.dataset, budgets=tuple(args.budgets), budget_kind=kind,
        first_seeds=args.first_seeds, relevant_difference=args.relevant_difference / 100,
        seeds=args.seeds, depth=args.depth, base_filters=args.base_filters, block=args.block,
        downsample_every=args.downsample_every, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, train_limit=args.train_limit, workers=args.workers,
        directory=args.directory, project=args.project, overwrite=args.overwrite, **extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    from cnnzoo.env import setup_tensorflow

    setup_tensorflow()  # after parsing: --help and usage errors stay instant
    from tuning.launcher import is_distributed_process, run_workers

    try:
        from tuning.compare import compare
        from tuning.compare_config import CompareError

        config = _config(args)
        if args.report_only:
            project = compare(config, report_only=True)
            print(f"zoo-compare: results in {project}/compare.md")
            return 0
        if config.workers > 1 and not is_distributed_process():
            # Validate the whole grid here (one line, exit 2) before starting any process.
            from tuning.compare_config import RunGrid, check_resume, load_data

            data = load_data(config)
            RunGrid.build(config, data.input_shape, data.num_classes)
            check_resume(config)
            # The chief's --overwrite wipes the project; a worker's would race it.
            return run_workers("tuning.compare_cli", argv, config.workers)
        project = compare(config)
    except KeyboardInterrupt:
        print("zoo-compare: interrupted; finished runs are kept, rerun the command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CompareError, ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"zoo-compare: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not is_distributed_process() or _is_chief():
        print(f"zoo-compare: results in {project}/compare.md")
    return 0


def _is_chief() -> bool:
    import os

    return os.environ.get("KERASTUNER_TUNER_ID") == "chief"


if __name__ == "__main__":
    sys.exit(main())
