"""`zoo-compare`: every rule at the same budgets, several seeds, one training recipe.

    zoo-compare --dataset fashion_mnist --rules doubling,linear,diamond --max-params 15000,40000 \\
                --seeds 3 --workers 2

Writes runs.jsonl, compare.csv, compare.md, compare.png and profiles.png in
<directory>/<project>/. Rerunning the same command trains only the runs that are missing;
`--workers N` starts keras-tuner's chief and N workers on this machine. Bad input prints one line
on stderr, naming the flag, and exits with status 2 (a typo'd rule, a missing data file or a budget
no rule reaches: before TensorFlow loads); Ctrl-C stops every process and keeps finished runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cnnzoo.cli import (EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, add_deprecated, csv_list, flag_words,
                        range_or_value)

__all__ = ["main", "build_parser"]

# CompareConfig field -> the flag that sets it (errors in the CLI's words).
FLAGS = {"dataset": "--dataset", "rules": "--rules", "budgets": "--max-params/--max-macs",
         "budget_kind": "--max-params/--max-macs", "seeds": "--seeds", "seed_start": "--seed-start", "depth": "--depth",
         "base_filters": "--base-filters", "block": "--blocks",
         "downsample_every": "--downsample-every", "epochs": "--epochs",
         "batch_size": "--batch-sizes", "learning_rate": "--learning-rates",
         "train_limit": "--train-limit", "workers": "--workers", "directory": "--directory",
         "project": "--project", "overwrite": "--overwrite", "max_params": "--max-params",
         "max_macs": "--max-macs"}


def _one(flag: str, kind: type = str):  # type: ignore[no-untyped-def]
    """A list flag of which zoo-compare takes one value (the same flag as zoo-tune's list)."""
    parse = csv_list(kind)

    def one(text: str) -> list:
        values = parse(text)
        if len(values) != 1:
            raise argparse.ArgumentTypeError(f"zoo-compare trains every run with one value "
                                             f"(zoo-tune searches several), got {text!r}")
        return values
    return one


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="zoo-compare", description="Train every rule at the same budgets over several "
                "seeds with one recipe and say which differences are real.")
    a = p.add_argument
    a("--dataset", default="digits", help="any zoo.datasets name with a test split (default digits)")
    a("--rules", type=csv_list(str), default=None,
      help="comma-separated rules (default: doubling and every other built-in growth rule)")
    a("--max-params", type=csv_list(int), default=None, metavar="N[,N...]",
      help="parameter budgets, comma-separated, e.g. 15000,40000: each rule is fitted to each")
    a("--max-macs", type=csv_list(int), default=None, metavar="N[,N...]",
      help="multiply-accumulates per image budgets, comma-separated; with --max-params too, the "
           "two lists pair up (the i-th params with the i-th MACs) and each rule is fitted to "
           "both at once, the tighter binding")
    a("--seeds", type=int, default=3, metavar="N",
      help="how many seeds per rule x budget: seeds 0..N-1 (default 3); with --first-seeds, the "
           "most a cell gets")
    a("--seed-start", type=int, default=0, metavar="S",
      help="the first seed: seeds S..S+N-1 (default 0); a confirmatory study uses seeds no "
           "earlier study used")
    a("--first-seeds", type=int, default=None, metavar="N",
      help="seed allocation: every cell runs N seeds, later seeds (up to --seeds) only cells whose "
           "interval still covers 0 and --relevant-difference (default: off)")
    a("--relevant-difference", type=float, default=0.5, metavar="POINTS",
      help="the smallest accuracy difference that matters, in points, for --first-seeds "
           "(default 0.5)")
    a("--depth", type=int, nargs="+", default=[4], metavar="N",
      help="convolutional layers of every network (default 4)")
    a("--base-filters", type=int, default=16, metavar="N",
      help="the rule's first width before its plan is fitted to the budget (default 16)")
    a("--blocks", type=_one("--blocks"), default=["plain"], metavar="BLOCK",
      help="the block of every network: plain, residual or separable (default plain)")
    a("--downsample-every", type=int, default=None, metavar="K",
      help="halve the resolution after every K layers (default: spread over the depth)")
    a("--epochs", type=int, default=None,
      help="epochs per run (default: the shared recipe's, zoo.Recipe, from the training-set size)")
    a("--batch-sizes", type=_one("--batch-sizes", int), default=None, metavar="N",
      help="batch size of every run (default: the shared recipe's, from the training-set size)")
    a("--learning-rates", type=_one("--learning-rates", float), default=[3e-3], metavar="LR",
      help="Adam's peak learning rate of every run (default 0.003)")
    a("--train-limit", type=int, default=None, help="train on the first N training images")
    a("--workers", type=int, default=1, help="local keras-tuner workers (default 1: in-process)")
    a("--directory", default="runs", help="where projects live (default runs)")
    a("--project", default="compare", help="project name, a folder in --directory (default compare)")
    a("--overwrite", action="store_true", help="start the project over")
    a("--report-only", action="store_true",
      help="train nothing: write the report of the runs finished so far")
    # Old spellings (see the vocabulary in tuning/README.md): still accepted, with a warning.
    add_deprecated(p, "--budgets", "--max-params (or --max-macs)", "budgets", type=csv_list(int))
    add_deprecated(p, "--budget-kind", "--max-params or --max-macs", "budget_kind")
    add_deprecated(p, "--block", "--blocks", "blocks", convert=lambda v: [v])
    add_deprecated(p, "--batch-size", "--batch-sizes", "batch_sizes", type=int, convert=lambda v: [v])
    add_deprecated(p, "--learning-rate", "--learning-rates", "learning_rates", type=float,
                   convert=lambda v: [v])
    return p


def _budgets(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, list]:
    """(budget kind, budgets) from --max-params / --max-macs (both: params:MACs pairs) or the old
    --budgets/--budget-kind."""
    old = getattr(args, "budgets", None)
    old_kind = getattr(args, "budget_kind", None)
    given = [(kind, v) for kind, v in (("params", args.max_params), ("macs", args.max_macs))
             if v is not None]
    if old is not None:
        if given:
            parser.error("--budgets is the old spelling of --max-params/--max-macs; give one")
        given = [(old_kind or "params", old)]
    elif old_kind is not None and not given:
        parser.error("--budget-kind needs budgets: give --max-params or --max-macs")
    elif old_kind is not None and old_kind != ("both" if len(given) > 1 else given[0][0]):
        # The new flags name their kind; an old --budget-kind that says otherwise would be
        # ignored silently (--budget-kind macs --max-params 8000 compared at 8,000 params).
        flags = " and ".join(f"--max-{kind}" for kind, _ in given)
        parser.error(f"--budget-kind {old_kind} contradicts {flags}, which names the budget "
                     f"kind itself: drop --budget-kind")
    if not given:
        parser.error("give the budgets: --max-params N[,N...] or --max-macs N[,N...]")
    for kind, values in given:
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            flag = "--budgets" if old is not None else f"--max-{kind}"
            parser.error(f"{flag} lists a budget twice: {', '.join(map(str, twice))}")
    if len(given) > 1:
        if len(args.max_params) != len(args.max_macs):
            parser.error(f"--max-params and --max-macs pair up: give as many of each (got "
                         f"{len(args.max_params)} and {len(args.max_macs)})")
        return "both", [f"{p}:{m}" for p, m in zip(args.max_params, args.max_macs)]
    return given[0]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        depth = range_or_value(args.depth, "--depth")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if depth[0] != depth[1]:
        parser.error("zoo-compare trains every network at one depth: --depth N")
    args.depth = depth[0]
    args.budget_kind, args.budgets = _budgets(parser, args)
    return args


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tuning.comparisons.config import CompareConfig

    extra = {"rules": tuple(args.rules)} if args.rules is not None else {}
    return CompareConfig(
        dataset=args.dataset, budgets=tuple(args.budgets), budget_kind=args.budget_kind,
        first_seeds=args.first_seeds, relevant_difference=args.relevant_difference / 100,
        seeds=args.seeds, seed_start=args.seed_start, depth=args.depth, base_filters=args.base_filters,
        block=args.blocks[0],
        downsample_every=args.downsample_every, epochs=args.epochs,
        batch_size=args.batch_sizes[0] if args.batch_sizes else None,
        learning_rate=args.learning_rates[0], train_limit=args.train_limit, workers=args.workers,
        directory=args.directory, project=args.project, overwrite=args.overwrite, **extra)


def preflight(args: argparse.Namespace) -> None:
    """The input mistakes found without TensorFlow: unknown rules or block, a dataset that does not
    load, a budget no rule can be fitted to. ValueError in the CLI's words."""
    import zoo
    from zoo.budget import BudgetError
    from zoo.costs import BLOCK_COSTS

    for flag, value, low in (("--seeds", args.seeds, 1), ("--depth", args.depth, 1),
                             ("--base-filters", args.base_filters, 1), ("--workers", args.workers, 1),
                             ("--downsample-every", args.downsample_every, 1),
                             ("--epochs", args.epochs, 1), ("--train-limit", args.train_limit, 10),
                             ("--batch-sizes", (args.batch_sizes or [None])[0], 1)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be an int >= {low}, got {value}")
    from tuning.comparisons.config import Budget, CompareError

    try:
        budgets = sorted({Budget.parse(b, args.budget_kind) for b in args.budgets},
                         key=lambda b: (b.params or 0, b.macs or 0))
    except CompareError as exc:
        raise ValueError(f"--max-params/--max-macs: {exc}") from None
    try:
        _config(args)  # every check of CompareConfig (pure Python) before TensorFlow too
    except CompareError as exc:
        raise ValueError(str(exc)) from None
    valid = [r for r in zoo.list_models() if r != "custom"]
    for rule in args.rules or ():
        if rule not in valid:
            raise ValueError(f"unknown rule {rule!r} in --rules; valid: {', '.join(valid)}")
    if args.blocks[0] not in BLOCK_COSTS:
        raise ValueError(f"unknown block {args.blocks[0]!r} in --blocks; valid: "
                         f"{', '.join(sorted(BLOCK_COSTS))}")
    try:
        data = zoo.datasets.load(args.dataset)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise ValueError(f"--dataset {args.dataset!r}: {exc}") from None
    rules = args.rules or valid
    for budget in budgets:
        first: str | None = None
        for rule in rules:
            try:
                zoo.plan(rule, depth=args.depth, base_filters=args.base_filters,
                         block=args.blocks[0], downsample_every=args.downsample_every,
                         input_shape=data.input_shape, num_classes=data.num_classes,
                         **budget.plan_kwargs())
                break
            except BudgetError as exc:
                first = first or f"{rule}: {exc}"
            except ValueError as exc:  # not a budget problem: the configuration's own words
                raise ValueError(str(exc)) from None
        else:
            raise ValueError(f"budget {budget.label} is reachable by no rule ({first})")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    try:
        # Before TensorFlow loads: input mistakes are one line at once.
        preflight(args)
    except ValueError as exc:
        print(f"zoo-compare: error: {flag_words(str(exc), FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    from cnnzoo.env import setup_tensorflow

    setup_tensorflow()  # after the checks: now TensorFlow loads
    from tuning.launcher import is_distributed_process, run_workers

    try:
        from tuning.comparisons.compare import compare
        from tuning.comparisons.config import CompareError

        config = _config(args)
        if args.report_only:
            project = compare(config, report_only=True)
            print(f"zoo-compare: results in {project}/compare.md")
            return 0
        if config.workers > 1 and not is_distributed_process():
            # Validate the whole grid here (one line, exit 2) before starting any process.
            from tuning.comparisons.config import RunGrid, check_resume, load_data

            data = load_data(config)
            RunGrid.build(config, data.input_shape, data.num_classes)
            check_resume(config)
            # The chief's --overwrite wipes the project; a worker's would race it.
            return run_workers("tuning.comparisons.cli", argv, config.workers)
        project = compare(config)
    except KeyboardInterrupt:
        print("zoo-compare: interrupted; finished runs are kept, rerun the command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CompareError, ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"zoo-compare: error: {flag_words(str(exc), FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    if not is_distributed_process() or _is_chief():
        print(f"zoo-compare: results in {project}/compare.md")
    return 0


def _is_chief() -> bool:
    import os

    return os.environ.get("KERASTUNER_TUNER_ID") == "chief"


if __name__ == "__main__":
    sys.exit(main())
