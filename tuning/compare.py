"""Equal-budget comparisons: every rule x budget x seed, trained with one recipe, tested on the test split.

A comparison is a keras-tuner grid: `CompareHyperModel` declares one Choice over the runs (only the
rule x budget pairs a budget can reach), `RunListOracle` hands them out in order and
`CompareTuner` trains each run with the shared `zoo.Recipe` and reports its test
accuracy as the trial's metrics. So resume, chief/worker distribution and `--workers N` are
keras-tuner's, and a study too big for one machine runs on several unchanged. `runs.jsonl` (one
line per finished run, appended as it ends), `compare.csv`, `compare.md` and the plots are views of
the finished trials (tuning/compare_report.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from zoo import _env  # noqa: F401  (quiet TensorFlow before it is imported)

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

import zoo  # noqa: E402
from zoo.budget import BudgetError  # noqa: E402

from ._tf_leaks import custom_gradients_released  # noqa: E402
from .constraints import measure_latency_ms  # noqa: E402
from ._keras_tuner import owns_oracle  # noqa: E402
from .compare_report import REFERENCE_RULE, write_report  # noqa: E402
from .project_settings import check_settings, save_settings  # noqa: E402
from .tuners import gc_frozen  # noqa: E402

__all__ = ["CompareConfig", "CompareHyperModel", "CompareTuner", "CompareError", "compare",
           "Run", "BUDGET_KINDS", "REFERENCE_RULE"]

BUDGET_KINDS = ("params", "macs")
RUNS_FILE = "runs.jsonl"


class CompareError(ValueError):
    """A comparison that cannot run as asked (the message says what to change)."""


@dataclass(frozen=True)
class Run:
    """One training run of a comparison: a rule's plan fitted to a budget, trained with a seed."""

    rule: str
    budget: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.rule}|{self.budget}|{self.seed}"

    @classmethod
    def from_key(cls, key: str) -> "Run":
        rule, budget, seed = key.split("|")
        return cls(rule, int(budget), int(seed))


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CompareError(f"{name} must be an int >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class CompareConfig:
    """Everything a comparison depends on, validated once; the CLI builds it from its flags."""

    dataset: str = "digits"
    rules: tuple[str, ...] = ("doubling", "constant", "linear", "geometric", "regnet",
                              "decreasing", "hourglass", "diamond")
    budgets: tuple[int, ...] = (2_000, 6_000)
    budget_kind: str = "params"
    seeds: int = 3
    depth: int = 4
    base_filters: int = 16
    block: str = "plain"
    downsample_every: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 3e-3
    train_limit: int | None = None
    workers: int = 1
    directory: str = "runs"
    project: str = "compare"
    overwrite: bool = False
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        if not rules:
            raise CompareError("rules must name at least one rule")
        known = [r for r in zoo.list_models() if r != "custom"]
        for r in rules:
            if r not in known:
                raise CompareError(f"unknown rule {r!r}; valid: {', '.join(known)}")
        if len(set(rules)) != len(rules):
            raise CompareError(f"rules lists a rule twice: {list(rules)}")
        object.__setattr__(self, "rules", rules)
        budgets = tuple(self.budgets)
        if not budgets:
            raise CompareError("budgets must give at least one budget")
        for b in budgets:
            _positive_int("each budget", b)
        if len(set(budgets)) != len(budgets):
            raise CompareError(f"budgets lists a budget twice: {list(budgets)}")
        object.__setattr__(self, "budgets", tuple(sorted(budgets)))
        if self.budget_kind not in BUDGET_KINDS:
            raise CompareError(f"unknown budget kind {self.budget_kind!r}; valid: "
                               f"{', '.join(BUDGET_KINDS)}")
        _positive_int("seeds", self.seeds)
        _positive_int("depth", self.depth)
        _positive_int("base_filters", self.base_filters)
        _positive_int("workers", self.workers)
        if self.downsample_every is not None:
            _positive_int("downsample_every", self.downsample_every)
        if self.train_limit is not None:
            _positive_int("train_limit", self.train_limit, 10)
        if self.block not in zoo.BLOCKS:
            raise CompareError(f"unknown block {self.block!r}; valid: {', '.join(sorted(zoo.BLOCKS))}")
        for name in ("directory", "project"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\0" in value:
                raise CompareError(f"{name} must be a non-empty path without NUL bytes, got {value!r}")
        if os.sep in self.project or self.project in (".", ".."):
            raise CompareError(f"project must be a plain folder name, got {self.project!r}")
        try:
            self.recipe
        except ValueError as exc:
            raise CompareError(str(exc)) from None

    @property
    def recipe(self) -> zoo.Recipe:
        return zoo.Recipe(epochs=self.epochs, batch_size=self.batch_size,
                          learning_rate=self.learning_rate)

    @property
    def project_dir(self) -> Path:
        return Path(self.directory) / self.project

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rules"], d["budgets"] = list(self.rules), list(self.budgets)
        return d

    def settings(self) -> dict[str, Any]:
        """What the results depend on (a resumed project must match these)."""
        d = self.to_dict()
        for key in ("workers", "directory", "project", "overwrite"):
            d.pop(key)
        return d


class CompareHyperModel(kt.HyperModel):
    """Declares the runs as one ordered Choice ("run") and builds a run's budget-matched model."""

    def __init__(self, config: CompareConfig, input_shape: Sequence[int], num_classes: int):
        super().__init__(name="compare")
        self.config = config
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.unreachable: dict[tuple[str, int], str] = {}
        self.runs: list[Run] = []
        for seed in range(config.seeds):  # seed-major: a stopped study has whole seeds done
            for budget in config.budgets:
                for rule in config.rules:
                    if (rule, budget) in self.unreachable:
                        continue
                    try:
                        self.plan(rule, budget)
                    except BudgetError as exc:
                        self.unreachable[(rule, budget)] = str(exc)
                        continue
                    self.runs.append(Run(rule, budget, seed))
        reachable = {r.budget for r in self.runs}
        lost = [b for b in config.budgets if b not in reachable]
        if lost:
            example = next(msg for (_, b), msg in self.unreachable.items() if b == lost[0])
            raise CompareError(f"budget {lost[0]:,} ({config.budget_kind}) is outside every "
                               f"rule's reachable range: {example}")

    def _network(self, budget: int) -> dict[str, Any]:
        """zoo.plan / zoo.build keywords of every run at `budget` (all but the rule and seed)."""
        c = self.config
        return {"depth": c.depth, "base_filters": c.base_filters, "block": c.block,
                "downsample_every": c.downsample_every, "input_shape": self.input_shape,
                "num_classes": self.num_classes, f"max_{c.budget_kind}": budget}

    def plan(self, rule: str, budget: int) -> zoo.Plan:
        """The rule's plan fitted to one budget (a BudgetError when it cannot be reached)."""
        return zoo.plan(rule, **self._network(budget))

    def run_of(self, hp: kt.HyperParameters) -> Run:
        return Run.from_key(hp.Choice("run", [r.key for r in self.runs]))

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        run = self.run_of(hp)
        # The tuner owns the process-wide seed (shuffling); build seeds the initializers.
        keras.utils.set_random_seed(run.seed)
        return zoo.build(run.rule, seed=run.seed, **self._network(run.budget))


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends: keras-tuner writes oracle.json and trial.json in place,
    so an interrupt in the middle of a write left a project that could not be resumed."""
    # Not from a worker thread (signal handlers belong to the main thread), and not where Ctrl-C
    # is ignored (a background job): holding it must not start delivering it.
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


class RunListOracle(kt.Oracle):
    """Hands out each run of the "run" Choice once, in order.

    The next run is derived from the trials the oracle holds, not from an ordering kept in memory:
    keras-tuner's GridSearchOracle keeps its order only in memory, so a comparison resumed after
    Ctrl-C failed on its first retried trial (KeyError in GridSearch's ordering). A trial cut short
    is retried by keras-tuner's own retry queue before any new run starts.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        runs = next(hp.values for hp in self.get_space().space if hp.name == "run")
        started = {t.hyperparameters.values.get("run") for t in self.trials.values()}
        for key in runs:
            if key not in started:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": {"run": key}}
        if self.ongoing_trials:  # the last runs are still training elsewhere
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        with sigint_deferred():
            return super().create_trial(tuner_id)


class CompareTuner(kt.Tuner):
    """A keras-tuner Tuner whose trial is one recipe training plus a test evaluation.

    `run_trial` returning a metrics dict is keras-tuner's documented way to define a trial's own
    training; `on_trial_end` appends the run to runs.jsonl and prints a progress line with an ETA.
    """

    def __init__(self, hypermodel: CompareHyperModel, data: zoo.datasets.Dataset, *,
                 progress: TextIO | None = sys.stdout, **kwargs: Any):
        runs = len(hypermodel.runs)
        oracle = RunListOracle(objective=kt.Objective("test_accuracy", "max"), max_trials=runs,
                               max_consecutive_failed_trials=runs)
        super().__init__(oracle, hypermodel, **kwargs)
        self.data = data
        self.progress = progress
        self._started = time.perf_counter()
        self._ran_here = 0

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        hm: CompareHyperModel = self.hypermodel  # type: ignore[assignment]
        run = hm.run_of(trial.hyperparameters)
        model = hm.build(trial.hyperparameters)
        d = self.data
        start = time.perf_counter()
        with custom_gradients_released():
            history = hm.config.recipe.fit(model, d.x_train, d.y_train,
                                           validation_data=(d.x_val, d.y_val))
        seconds = time.perf_counter() - start
        test_loss, test_acc = model.evaluate(d.x_test, d.y_test, verbose=0,
                                             batch_size=hm.config.recipe.resolve(len(d.x_train)).batch_size)
        desc = zoo.describe(model)
        metrics = {"test_accuracy": float(test_acc), "test_loss": float(test_loss),
                   "val_accuracy": float(history.history["val_accuracy"][-1]),
                   "params": float(desc.total_params), "macs": float(desc.total_macs),
                   "latency_ms": float(measure_latency_ms(model)), "train_seconds": seconds}
        self._record(run, model, metrics)
        return metrics

    def _record(self, run: Run, model: keras.Model, metrics: dict[str, float]) -> None:
        info = zoo.model_info(model) or {}
        line = {**asdict(run), "budget_kind": self.hypermodel.config.budget_kind,
                "filters": info.get("filters"), "profile": info.get("profile"),
                "scale": info.get("scale"), **metrics}
        path = Path(self.project_dir) / RUNS_FILE
        # One write of one line with O_APPEND: workers of a distributed study share the file.
        with sigint_deferred(), open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
        self._ran_here += 1
        if self.progress is not None:
            done = len(read_runs(Path(self.project_dir)))
            total = len(self.hypermodel.runs)
            rate = (time.perf_counter() - self._started) / self._ran_here
            eta = rate * max(total - done, 0) / max(self.hypermodel.config.workers, 1)
            width = 24
            bar = "#" * round(width * done / total) + "." * (width - round(width * done / total))
            print(f"[{bar}] {done}/{total}  {run.rule} @ {run.budget:,} seed {run.seed}: test "
                  f"{metrics['test_accuracy']:.4f}, {int(metrics['params']):,} params "
                  f"({metrics['train_seconds']:.0f} s)  ETA {_duration(eta)}",
                  file=self.progress, flush=True)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        with sigint_deferred():  # the oracle records the trial and saves its state
            super().on_trial_end(trial)

    def search(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("verbose", 0)  # keras-tuner's tables; our progress line replaces them
        with gc_frozen():
            super().search(*args, **kwargs)

    # A comparison keeps no checkpoints: its result is the metrics, and its models are rebuilt
    # from (rule, budget, seed) when needed.
    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        pass


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def read_runs(project_dir: Path) -> list[dict[str, Any]]:
    """The finished runs recorded in runs.jsonl (the last line wins for a run done twice)."""
    path = project_dir / RUNS_FILE
    runs: dict[tuple, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
            runs[(row["rule"], int(row["budget"]), int(row["seed"]))] = row
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill is simply not a finished run
    return list(runs.values())


SETTINGS_FILE = "compare_settings.json"


def _check_resume(config: CompareConfig) -> None:
    """Resume only a project made with the same settings (else say what differs)."""
    check_settings(config.project_dir / SETTINGS_FILE, config.settings(),
                   overwrite=config.overwrite, error=CompareError)


def load_data(config: CompareConfig) -> zoo.datasets.Dataset:
    data = zoo.datasets.load(config.dataset, **config.dataset_options)
    if len(data.x_test) == 0:
        raise CompareError(f"dataset {config.dataset!r} has no test split; a comparison is "
                           "judged on held-out test images")
    if config.train_limit is not None and config.train_limit < len(data.x_train):
        # A stratified-enough subset: the first N of an already shuffled split.
        data.x_train = data.x_train[: config.train_limit]
        data.y_train = data.y_train[: config.train_limit]
    return data


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
    hypermodel = CompareHyperModel(config, data.input_shape, data.num_classes)
    if report_only:
        _check_resume(config)
        runs = read_runs(config.project_dir)
        if not runs:
            raise CompareError(f"no finished runs in {str(config.project_dir)!r} to report on")
        write_report(config, hypermodel, runs, config.project_dir)
        return config.project_dir
    chief_or_local = owns_oracle()
    if chief_or_local:
        _check_resume(config)
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
            done = len(read_runs(project_dir))
            print(f"zoo-compare: {len(hypermodel.runs)} runs ({len(config.rules)} rules x "
                  f"{len(config.budgets)} budgets x {config.seeds} seeds"
                  + (f", {len(hypermodel.unreachable)} rule x budget pairs unreachable"
                     if hypermodel.unreachable else "")
                  + (f"; {done} already done" if done else "") + f") in {project_dir}",
                  file=progress, flush=True)
    tuner.search()
    if not chief_or_local:
        return project_dir  # a worker: the chief (or the launcher) writes the report
    write_report(config, hypermodel, read_runs(project_dir), project_dir)
    return project_dir

