"""`CompareTuner`: a keras-tuner Tuner whose trial is one recipe training plus a test evaluation."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet TensorFlow before Keras imports it

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

import zoo  # noqa: E402

from tuning._memory import custom_gradients_released  # noqa: E402
from tuning.constraints import measure_latency_ms  # noqa: E402
from tuning.comparisons.hypermodel import CompareHyperModel  # noqa: E402
from tuning.comparisons.oracle import RunListOracle  # noqa: E402
from tuning.comparisons.runs import RunProgress, append_run, read_runs, save_predictions  # noqa: E402
from tuning.comparisons.config import Run  # noqa: E402
from cnnzoo.signals import sigint_deferred  # noqa: E402
from tuning._memory import gc_frozen  # noqa: E402

__all__ = ["CompareTuner"]

_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "params", "macs", "latency_ms",
            "train_seconds")


class CompareTuner(kt.Tuner):
    """`run_trial` returning a metrics dict is keras-tuner's documented way to define a trial's
    own training; each finished run is appended to runs.jsonl and shown on the progress bar.

    A run already in runs.jsonl is never trained again, whatever hands it out (a retried trial,
    a second worker): its recorded metrics are the trial's result."""

    def __init__(self, hypermodel: CompareHyperModel, data: zoo.datasets.Dataset, *,
                 progress: TextIO | None = sys.stdout, **kwargs: Any):
        runs = len(hypermodel.runs)
        oracle = RunListOracle(objective=kt.Objective("test_accuracy", "max"), max_trials=runs,
                               max_consecutive_failed_trials=runs,
                               allocation=hypermodel.config.allocation)
        super().__init__(oracle, hypermodel, **kwargs)
        self.data = data
        self.progress_stream = progress
        self.progress: RunProgress | None = None

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        hm: CompareHyperModel = self.hypermodel  # type: ignore[assignment]
        run = hm.run_of(trial.hyperparameters)
        recorded = {Run.of_row(r): r for r in read_runs(Path(self.project_dir))}
        if run in recorded:
            return {k: float(recorded[run][k]) for k in _METRICS}
        model = hm.build(trial.hyperparameters)
        d = self.data
        recipe = hm.config.recipe
        start = time.perf_counter()
        with custom_gradients_released():
            # the tuner seeded the generators before build (CompareHyperModel.build): keep that state
            history = recipe.fit(model, d.x_train, d.y_train, validation_data=(d.x_val, d.y_val),
                                 verbose=0, seed=None)
        seconds = time.perf_counter() - start
        batch = recipe.resolve(len(d.x_train)).batch_size
        test_loss, test_acc = model.evaluate(d.x_test, d.y_test, verbose=0, batch_size=batch)
        # Per-image predictions: the test set's own sampling (a bootstrap over images, McNemar)
        # and the same contrast on the validation split are computed from them.
        save_predictions(Path(self.project_dir), run,
                         test=model.predict(d.x_test, batch_size=batch, verbose=0).argmax(-1),
                         val=model.predict(d.x_val, batch_size=batch, verbose=0).argmax(-1))
        desc = zoo.describe(model)
        metrics = {"test_accuracy": float(test_acc), "test_loss": float(test_loss),
                   "val_accuracy": float(history.history["val_accuracy"][-1]),
                   "params": float(desc.total_params), "macs": float(desc.total_macs),
                   "latency_ms": float(measure_latency_ms(model)), "train_seconds": seconds}
        # The validation accuracy of every epoch (did training converge?) goes to runs.jsonl
        # only: a trial's metrics are numbers.
        curve = [round(float(v), 5) for v in history.history["val_accuracy"]]
        self._record(run, model, {**metrics, "val_curve": curve})
        return metrics

    def _record(self, run: Run, model: keras.Model, metrics: dict[str, float]) -> None:
        info = zoo.model_info(model) or {}
        config = self.hypermodel.config
        budget = config.budget(run.budget)
        row = {**asdict(run), "budget": budget.json_value(), "budget_kind": budget.kind,
               "filters": info.get("filters"), "profile": info.get("profile"),
               "scale": info.get("scale"), **metrics}
        append_run(Path(self.project_dir), row)
        if self.progress is not None:
            self.progress.update(
                len(read_runs(Path(self.project_dir))),
                f"{run.rule} @ {budget.label} seed {run.seed}: test "
                f"{metrics['test_accuracy']:.4f}, {int(metrics['params']):,} params, "
                f"{int(metrics['macs']):,} MACs ({metrics['train_seconds']:.0f} s)")

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        with sigint_deferred():  # the oracle records the trial and saves its state
            super().on_trial_end(trial)

    def search(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("verbose", 0)  # keras-tuner's tables; our progress bar replaces them
        self.progress = RunProgress(len(self.hypermodel.runs),
                                    len(read_runs(Path(self.project_dir))), self.progress_stream)
        try:
            with gc_frozen():
                super().search(*args, **kwargs)
        finally:
            self.progress.close()

    # A comparison keeps no checkpoints: its result is the metrics, and its models are rebuilt
    # from (rule, budget, seed) when needed.
    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        pass
