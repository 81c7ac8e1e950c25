"""`zoo-tune` (also `python -m tuning`): a keras-tuner search over zoo's rules from the shell.

    zoo-tune --dataset digits --tuner random --rules doubling,linear,diamond --max-trials 12 \\
             --epochs 8 --max-params 20000 --export 2

Rerunning the same command resumes the project (keras-tuner's own reload); `--overwrite` starts
over. Distributed: start the same command with KERASTUNER_TUNER_ID=chief (the oracle) and
KERASTUNER_TUNER_ID=tuner0, tuner1, ... (workers), all with KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set; the chief writes the leaderboard and report when all trials are done.
Bad input prints one line on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

__all__ = ["main", "build_parser", "OneLineParser", "csv_list", "EXIT_USAGE"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2, shared by zoo-tune and zoo-compare."""

    def error(self, message: str) -> NoReturn:
        # One line, no usage block: scripts and CI logs show exactly what was wrong.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def csv_list(kind: type = str):
    """An argparse type: a comma-separated list of `kind` (ints may use _ separators)."""
    def parse(text: str) -> list:
        items = [s.strip() for s in text.split(",") if s.strip()]
        try:
            return [kind(s.replace("_", "")) if kind is int else kind(s) for s in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, "
                                             f"got {text!r}") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    from tuning.choices import DISTRIBUTIONS, MODES, TUNER_NAMES

    p = OneLineParser(prog="zoo-tune", description="keras-tuner search over filter-growth rules or "
                "per-layer kernel counts, under budgets, with a report.")
    a = p.add_argument
    a("--dataset", default="digits", help="any zoo.datasets name: digits, shapes, npz:PATH, dir:PATH, "
      "mnist, ... (default digits)")
    a("--tuner", default="random", help=f"one of {', '.join(TUNER_NAMES)} (default random)")
    a("--mode", default="rule", help=f"one of {', '.join(MODES)} (default rule)")
    a("--rules", type=csv_list(), default=None, help="comma-separated rules for --mode rule "
      "(default: every registered rule but custom)")
    a("--no-fill-budget", dest="fill_budget", action="store_false",
      help="with --max-params/--max-macs, build each draw as drawn and reject it when over budget "
      "(default: scale it to fill the budget, so trials compare shapes at equal cost)")
    a("--seed-rule", default=None, help="--mode per_layer: start from this rule's plan "
      "(e.g. doubling) as the first trial")
    a("--max-trials", type=int, default=10, help="trials to train (default 10); budget rejections "
      "come on top, up to --max-rejections")
    a("--max-rejections", type=int, default=None, help="over-budget trials allowed on top of "
      "--max-trials (default 4x --max-trials; 0: they count towards it)")
    a("--epochs", type=int, default=5, help="epochs per trial; Hyperband's max_epochs (default 5)")
    a("--executions-per-trial", type=int, default=1)
    a("--rerank-top", type=int, default=0, metavar="K", help="after the search, train the best K "
      "trials again and rank them by the mean of all their runs (default 0: off)")
    a("--rerank-executions", type=int, default=2, metavar="N", help="extra runs per re-ranked trial, "
      "each with a new seed (default 2)")
    a("--max-params", type=int, default=None, help="reject models with more parameters")
    a("--max-macs", type=int, default=None, help="reject models with more multiply-accumulates/image")
    a("--max-latency-ms", type=float, default=None, help="reject models slower than this (ms per "
      "image, measured here)")
    a("--depth", type=int, nargs=2, metavar=("MIN", "MAX"), default=(2, 4))
    a("--filters", type=int, nargs=2, metavar=("MIN", "MAX"), default=(8, 64),
      help="kernel count range of every layer (default 8 64)")
    a("--filter-sampling", default="log", help="log (MIN, MIN*STEP, ...) or linear (MIN, MIN+STEP, ...)")
    a("--filter-step", type=int, default=None, help="the factor (log, default 2) or increment "
      "(linear, default 8) between kernel counts")
    a("--blocks", type=csv_list(), default=["plain"], help="comma-separated: plain, residual, separable")
    a("--kernel-sizes", type=csv_list(int), default=[3])
    a("--downsamples", type=csv_list(), default=["max"], help="comma-separated: max, avg, strided, none")
    a("--dropouts", type=csv_list(float), default=[0.0])
    a("--learning-rates", type=csv_list(float), default=[3e-3])
    a("--batch-sizes", type=csv_list(int), default=None, help="comma-separated batch sizes to search "
      "(default: the shared recipe's, from the training-set size)")
    a("--objective", type=csv_list(), default=["val_accuracy"], help="metric(s) to optimise; several "
      "(e.g. val_accuracy,params) give keras-tuner's multi-objective")
    a("--directory", default="runs", help="where projects live (default runs)")
    a("--project", default=None, help="project name (default DATASET-MODE-TUNER)")
    a("--overwrite", action="store_true", help="start over instead of resuming")
    a("--seed", type=int, default=0)
    a("--export", type=int, default=0, metavar="N", help="export the best N models (default 0)")
    a("--export-dir", default="saved_models")
    a("--export-name", default=None, help="served model name (default: the project name)")
    a("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs (with hparams) here")
    a("--distribution", default=None, help=f"multi-GPU trials: {', '.join(DISTRIBUTIONS)}")
    a("--train-limit", type=int, default=None, help="use only the first N training examples")
    a("--patience", type=int, default=3, help="early-stopping patience in epochs (0: off)")
    a("--max-consecutive-failures", type=int, default=10,
      help="stop after this many rejected/failed trials in a row (default 10)")
    a("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras fit verbosity (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from zoo import _env  # noqa: F401  (after parsing: --help and usage errors stay instant)
    import tuning
    from tuning.driver import SearchError

    role = os.environ.get("KERASTUNER_TUNER_ID")
    if role:
        print(f"zoo-tune: distributed mode as {role} (oracle at "
              f"{os.environ.get('KERASTUNER_ORACLE_IP')}:{os.environ.get('KERASTUNER_ORACLE_PORT')})",
              flush=True)
    try:
        result = tuning.search(
            dataset=args.dataset, tuner=args.tuner, mode=args.mode, rules=args.rules,
            max_trials=args.max_trials, epochs=args.epochs,
            executions_per_trial=args.executions_per_trial, max_params=args.max_params,
            max_macs=args.max_macs, max_latency_ms=args.max_latency_ms, depth=tuple(args.depth),
            filters=tuple(args.filters), filter_sampling=args.filter_sampling,
            filter_step=args.filter_step, blocks=args.blocks, kernel_sizes=args.kernel_sizes,
            downsamples=args.downsamples, dropouts=args.dropouts,
            learning_rates=args.learning_rates, batch_sizes=args.batch_sizes,
            objective=args.objective[0] if len(args.objective) == 1 else args.objective,
            directory=args.directory, project=args.project, overwrite=args.overwrite,
            seed=args.seed, fill_budget=args.fill_budget, export=args.export, export_dir=args.export_dir,
            export_name=args.export_name, tensorboard=args.tensorboard,
            distribution=args.distribution, train_limit=args.train_limit, patience=args.patience,
            max_consecutive_failures=args.max_consecutive_failures,
            max_rejections=args.max_rejections, seed_rule=args.seed_rule, verbose=args.verbose,
            rerank_top=args.rerank_top, rerank_executions=args.rerank_executions)
    except SearchError as exc:
        print(f"zoo-tune: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("zoo-tune: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.report_path is None:
        print("zoo-tune: worker finished; the chief writes the results", flush=True)
        return 0
    _print_summary(result)
    return 0


def _print_summary(result) -> None:  # type: ignore[no-untyped-def]
    rows = result.leaderboard()
    print(f"\n{result.completed} trained, {result.rejected} rejected over budget; "
          f"leaderboard ({result.metric}):")
    print(f"{'rank':>4} {'trial':>5} {'rule':<13} {'depth':>5} {'filters':<22} {'params':>9} "
          f"{result.metric:>12} {'test acc':>8}")
    for r in rows[:10]:
        if r["status"] != "COMPLETED":
            continue
        test = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] != "" else ""
        print(f"{r['rank']:>4} {r['trial']:>5} {r['rule']:<13} {r['depth']:>5} {r['filters']:<22} "
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
