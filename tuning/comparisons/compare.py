"""Equal-budget comparisons: every rule x budget x seed, trained with one recipe, tested on the test split.

A comparison is a keras-tuner grid: `CompareHyperModel` declares one Choice over the runs (only the
rule x budget pairs a budget can reach), `RunListOracle` hands them out in order and
`CompareTuner` trains each run with the shared `zoo.Recipe` and reports its test accuracy as the
trial's metrics. So resume, chief/worker distribution and `--workers N` are keras-tuner's, and a
study too big for one machine runs on several unchanged. `runs.jsonl` (one line per finished run,
appended as it ends), `compare.csv`, `compare.md` and the plots are views of the finished runs
(tuning/comparisons/report.py).

The parts, one job each: config (settings, budgets, the grid of runs), stats (every estimate:
intervals, Holm, the variance check, the seed allocation rule), hypermodel, oracle, tuner, runs
(runs.jsonl and progress), report and plots (formatting only); this module is the entry point.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

from tuning._keras_tuner import owns_oracle  # noqa: E402
from tuning.comparisons.config import (BUDGET_KINDS, REFERENCE_RULE, SETTINGS_FILE, Budget,  # noqa: E402
                                       CompareConfig, CompareError, Run, RunGrid, check_resume, load_data)
from tuning.comparisons.hypermodel import CompareHyperModel  # noqa: E402
from tuning.comparisons.report import write_report  # noqa: E402
from tuning.comparisons.runs import RUNS_FILE, read_runs  # noqa: E402
from tuning.comparisons.stats import estimate  # noqa: E402
from tuning.comparisons.tuner import CompareTuner  # noqa: E402
from tuning.project_settings import save_settings  # noqa: E402

__all__ = ["CompareConfig", "CompareHyperModel", "CompareTuner", "CompareError", "compare",
           "Run", "Budget", "RunGrid", "BUDGET_KINDS", "REFERENCE_RULE", "RUNS_FILE",
           "SETTINGS_FILE", "read_runs", "check_resume", "load_data"]


def compare(config: CompareConfig | None = None, *, progress: TextIO | None = sys.stdout,
            report_only: bool = False, **kwargs: Any) -> Path:
    """Run (or resume) a comparison; returns the project folder holding its results.

    `report_only=True` trains nothing: it writes the report of the runs finished so far (a study
    still running, or one stopped early).

    `compare(CompareConfig(...))` or `compare(dataset="digits", rules=("doubling", "linear"), ...)`.
    With `workers > 1` use `zoo-compare --workers N` (it starts keras-tuner's chief and workers);
    in-process this function runs the whole grid itself.
    """
    if config is None:
        config = CompareConfig(**kwargs)
    elif kwargs:
        raise TypeError("pass either a CompareConfig or keyword arguments, not both")
    data = load_data(config)
    if report_only:
        check_resume(config)
        if not read_runs(config.project_dir):
            raise CompareError(f"no finished runs in {str(config.project_dir)!r} to report on")
        _report(config, RunGrid.build(config, data.input_shape, data.num_classes))
        return config.project_dir
    hypermodel = CompareHyperModel(config, data.input_shape, data.num_classes)
    chief_or_local = owns_oracle()
    if chief_or_local:
        check_resume(config)
    # Only the chief (or a local run) may wipe the project: a worker's overwrite would race it.
    tuner = CompareTuner(hypermodel, data, progress=progress, directory=config.directory,
                         project_name=config.project,
                         overwrite=config.overwrite and chief_or_local)
    project_dir = config.project_dir
    if chief_or_local:
        project_dir.mkdir(parents=True, exist_ok=True)  # keras-tuner's overwrite removed it
        if config.overwrite:
            (project_dir / RUNS_FILE).unlink(missing_ok=True)
        save_settings(project_dir / SETTINGS_FILE, config.settings())
        if progress is not None:
            grid = hypermodel.grid
            done = len(read_runs(project_dir))
            alloc = config.allocation
            seeds = (f"{_count(alloc.first, 'seed')}, up to {alloc.cap} where still open" if alloc
                     else _count(config.seeds, "seed"))
            print(f"zoo-compare: {'at most ' if alloc else ''}{len(grid.runs)} runs "
                  f"({_count(len(config.rules), 'rule')} x {_count(len(config.budgets), 'budget')} x {seeds}"
                  + (f", {len(grid.unreachable)} rule x budget pairs unreachable"
                     if grid.unreachable else "")
                  + (f"; {done} already done" if done else "") + f") in {project_dir}",
                  file=progress, flush=True)
    tuner.search()
    if chief_or_local:  # a worker leaves the report to the chief (or the launcher)
        _report(config, hypermodel.grid)
    return project_dir


def _count(n: int, noun: str) -> str:
    """'1 budget', '3 budgets'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _report(config: CompareConfig, grid: RunGrid) -> None:
    """The report of the runs finished so far: statistics computed once, then formatted."""
    runs = read_runs(config.project_dir)
    write_report(config, grid, runs, estimate(runs, config.allocation), config.project_dir)
