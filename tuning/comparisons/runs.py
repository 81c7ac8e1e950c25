"""runs.jsonl, the record of a comparison's finished runs, and the progress shown as they end.

One JSON line per finished run, appended with one O_APPEND write (the workers of a distributed
study share the file). Reading keeps one row per run (rule, budget, seed): a run recorded twice
(a retried trial) never counts twice in the statistics.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from typing import Any, TextIO

from tqdm import tqdm

from tuning.comparisons.config import Run
from cnnzoo.signals import sigint_deferred

__all__ = ["RUNS_FILE", "PREDICTIONS_DIR", "read_runs", "append_run", "save_predictions",
           "read_predictions", "RunProgress"]

RUNS_FILE = "runs.jsonl"
PREDICTIONS_DIR = "predictions"  # one small .npz per run beside runs.jsonl


def read_runs(project_dir: Path) -> list[dict[str, Any]]:
    """The finished runs recorded in runs.jsonl, one row per run (the first line of a run done
    twice wins: it is the one every later decision was based on)."""
    path = Path(project_dir) / RUNS_FILE
    runs: dict[Run, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
            runs.setdefault(Run.of_row(row), row)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill is simply not a finished run
    return list(runs.values())


def append_run(project_dir: Path, row: dict[str, Any]) -> None:
    with sigint_deferred(), open(Path(project_dir) / RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")


def _predictions_path(project_dir: Path, run: Run) -> Path:
    return Path(project_dir) / PREDICTIONS_DIR / f"{run.rule}_{run.budget.replace(':', '-')}_{run.seed}.npz"


def save_predictions(project_dir: Path, run: Run, **splits: np.ndarray) -> None:
    """Each split's predicted class per image (uint8 when the classes fit, compressed: ~5 kB per
    10,000 images), written before the run's runs.jsonl line so a recorded run has them."""
    path = _predictions_path(project_dir, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v).astype(np.uint8 if int(np.max(v, initial=0)) < 256 else np.int32)
              for k, v in splits.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read_predictions(project_dir: Path, run: Run) -> dict[str, np.ndarray] | None:
    """The predictions `save_predictions` stored for `run` (None for a run without them)."""
    try:
        with np.load(_predictions_path(project_dir, run)) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None


class RunProgress:
    """One line per finished run on `stream` (stdout by default), and a tqdm bar over the runs of
    a study on `bar_stream` (stderr) only when that is a terminal: a redirected log gets the lines
    without the bar's carriage returns, and the bar never mixes into the output a script reads.

    The count is read from runs.jsonl, so with workers each process shows the whole study's
    progress, and tqdm's rate (runs per second of wall time, all processes together) gives the
    ETA."""

    def __init__(self, total: int, done: int, stream: TextIO | None,
                 bar_stream: TextIO | None = None) -> None:
        bar_stream = sys.stderr if bar_stream is None else bar_stream
        self.stream = stream
        on_terminal = hasattr(bar_stream, "isatty") and bar_stream.isatty()
        self.bar = None if stream is None or done >= total or not on_terminal else tqdm(
            total=total, initial=done, file=bar_stream, unit="run", dynamic_ncols=True,
            mininterval=0, smoothing=0, bar_format="{n}/{total} runs |{bar:24}| "
                                                   "{elapsed} elapsed, ETA {remaining}")

    def update(self, done: int, line: str) -> None:
        if self.stream is None:
            return
        if self.bar is not None:
            self.bar.clear()  # the line goes above the bar on a terminal
        print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(max(done - self.bar.n, 0))
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
