"""`ZooHyperModel`: a keras-tuner HyperModel over zoo's filter-growth rules or free per-layer widths.

Two modes:
- `mode="rule"`: `rule` is a Choice; each rule's own parameters (from its registered `space`) are
  declared under `hp.conditional_scope("rule", [name])`, so a trial only carries the parameters
  of the rule it uses. Plus `depth`, `base_filters`, `block` and the shared knobs below.
- `mode="per_layer"`: `depth`, then one `filters_<i>` per possible layer, each declared under
  `hp.conditional_scope("depth", [i+1 .. max_depth])`: a layer's width exists only while the
  depth includes that layer, so no trial shows a stale value for a layer it does not have
  (keras-tuner issues #66, #302, #523). `layer_values(widths)` / `rule_values("doubling")` turn
  a network into these values, for the oracle's seed trials.

Shared knobs (a single value becomes `hp.Fixed`, several become `hp.Choice`): `kernel_size`,
`downsample`, `dropout`, `learning_rate` (the peak), and `batch_size` when `batch_sizes` is given
(fit reads it, as keras-tuner documents for fit-time hyperparameters). `fit` trains with the shared
`zoo.Recipe`: its batch size for the training set unless searched, Adam with warm-up and cosine
decay over the trial's epochs. Budgets are checked at the start of `fit`, before anything trains.
"""
from __future__ import annotations

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import keras
import keras_tuner as kt

import zoo
from zoo.costs import count_costs
from zoo.plans import architecture, check_input_shape, check_num_classes

from tuning._memory import custom_gradients_released
from tuning.searches.config import DEFAULT_PATIENCE, MODES
from tuning.searches.preflight import check_space
from zoo.budget import TOLERANCE, BudgetError

from tuning.constraints import Budgets, MeasuredCosts, Rejection, measure_costs

__all__ = ["ZooHyperModel", "MODES", "CostLogger", "OverBudget"]



def _restores_weights_only(optimizer: keras.optimizers.Optimizer) -> None:
    """Let keras-tuner's checkpoints restore a trial's weights but not its optimizer's state.

    keras-tuner reloads a trial's checkpoint (`model.save_weights`: weights and optimizer state)
    into a freshly built model twice: Hyperband, to continue a trial in a later bracket, and
    `Tuner.load_model` (`get_best_models`, a search's winners). Every `fit` here starts a fresh
    optimizer on purpose: `fit_unchecked` gives it a new warm-up + cosine schedule over the epochs
    of that fit, counted from step 0, so the earlier step count and moments must not come back.
    The fresh optimizer is not built yet, so Keras skipped its state anyway, with a warning
    ("Skipping variable loading for optimizer") per load; an unbuilt optimizer of ours now takes
    nothing from a checkpoint, silently. A built one (nothing here loads into one) loads as Keras
    does. Set on the instance, so a saved model still holds a plain Keras Adam.
    """
    load_state = optimizer.load_own_variables

    def load_own_variables(store: Any) -> None:
        if optimizer.built:
            load_state(store)

    optimizer.load_own_variables = load_own_variables


def _plan_kwargs(build_kwargs: dict[str, Any]) -> dict[str, Any]:
    """zoo.build keywords minus those only the Keras model needs."""
    return {k: v for k, v in build_kwargs.items() if k != "dropout"}


def _declare(hp: kt.HyperParameters, name: str, values: list[Any]) -> Any:
    return hp.Fixed(name, values[0]) if len(values) == 1 else hp.Choice(name, values)


def _declare_space(hp: kt.HyperParameters, name: str, spec: Any, default: Any) -> Any:
    """One rule parameter from its registered space: (lo, hi) ints/floats or a list of choices."""
    # zoo's convention: a tuple is a (low, high) range, a list is a set of choices.
    if isinstance(spec, tuple) and len(spec) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
        lo, hi = spec
        if isinstance(lo, int) and isinstance(hi, int):
            d = default if isinstance(default, int) and lo <= default <= hi else None
            return hp.Int(name, lo, hi, default=d)
        d = float(default) if isinstance(default, (int, float)) and lo <= default <= hi else None
        return hp.Float(name, float(lo), float(hi), default=d)
    return hp.Choice(name, list(spec))


class OverBudget(kt.errors.FailedTrialError):
    """A model that breaks a budget; raised before it trains. FAILED, not INVALID: keras-tuner does
    not retry it. The tuner records `rejection` in the trial's folder."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


class CostLogger(keras.callbacks.Callback):
    """Adds the model's costs (params, macs, latency_ms) to every epoch's logs.

    Keras hands the same `logs` dict to every callback, so with this callback first the costs are
    seen by keras-tuner's own callbacks and History: they become trial metrics, and a
    multi-objective such as `[Objective("val_accuracy","max"), Objective("params","min")]` works.
    """

    def __init__(self, costs: MeasuredCosts) -> None:
        super().__init__()
        self.costs = costs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.costs.as_metrics())


class ZooHyperModel(kt.HyperModel):
    """A keras-tuner HyperModel over `zoo.build` (see module docstring for the search space).

        hypermodel = ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(2, 4), filters=(8, 64))
        tuner = kt.Hyperband(hypermodel, objective="val_accuracy", max_epochs=4, directory="runs")
        tuner.search(x, y, validation_data=(xv, yv))

    `budgets` (a `tuning.Budgets` or dict) rejects over-budget models at the start of `fit` by raising
    `keras_tuner.errors.FailedTrialError`; `monitor`/`patience` configure early stopping in `fit`.
    Every trial logs its params and MACs; its latency (`latency_ms`, timed on this machine) only
    when `measure_latency` is True or, by default (None), when a latency budget needs it: timing
    traces the model once more, which costs more than a small trial's epoch.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, mode: str = "rule",
                 rules: Sequence[str] | None = None, depth: tuple[int, int] = (2, 4),
                 filters: tuple[int, int] = (8, 64), blocks: Sequence[str] | str = ("plain",),
                 kernel_sizes: Sequence[int] | int = (3,), downsamples: Sequence[str] | str = ("max",),
                 downsample_every: int | None = None, dropouts: Sequence[float] | float = (0.0,),
                 learning_rates: Sequence[float] | float = (3e-3,),
                 batch_sizes: Sequence[int] | int | None = None, filter_sampling: str = "log",
                 filter_step: int | None = None, budgets: Budgets | Mapping[str, Any] | None = None,
                 monitor: str = "val_accuracy", patience: int = DEFAULT_PATIENCE, seed: int | None = None,
                 fill_budget: bool = True, measure_latency: bool | None = None,
                 name: str | None = None, tunable: bool = True) -> None:
        super().__init__(name=name, tunable=tunable)
        # The space's arguments are checked without TensorFlow (zoo-tune checks them before it loads).
        self.input_shape = check_input_shape(input_shape)
        self.num_classes = check_num_classes(num_classes)
        vars(self).update(check_space(
            mode=mode, rules=rules, depth=depth, filters=filters, blocks=blocks,
            kernel_sizes=kernel_sizes, downsamples=downsamples, dropouts=dropouts,
            learning_rates=learning_rates, batch_sizes=batch_sizes, filter_sampling=filter_sampling,
            filter_step=filter_step, downsample_every=downsample_every, input_shape=self.input_shape))
        self.budgets = Budgets.coerce(budgets)
        if not isinstance(fill_budget, bool):
            raise ValueError(f"fill_budget must be True or False, got {fill_budget!r}")
        # With a params/MACs budget each draw is a profile scaled to fill it (zoo.plan's budget
        # fitting), so trials compare shapes at equal cost and none is rejected for size.
        self.fill_budget = fill_budget
        if measure_latency is not None and not isinstance(measure_latency, bool):
            raise ValueError(f"measure_latency must be None, True or False, got {measure_latency!r}")
        self.measure_latency = measure_latency
        self._exploring = False
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a metric name such as 'val_accuracy', got {monitor!r}")
        self.monitor = monitor
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0 (0 disables early stopping), got {patience!r}")
        self.patience = patience
        self.seed = seed
        # Set by tuning's tuners before each execution of a trial (keras-tuner's
        # executions_per_trial): execution k builds with seed + k, so repeated executions average
        # over initialisations and shuffles instead of repeating one seeded run bit for bit.
        self.execution = 0

    # --- search space -------------------------------------------------------------------------

    def _grid(self) -> list[int]:
        lo, hi = self.filters
        values, v = [], lo
        while v <= hi:
            values.append(v)
            v = v * self.filter_step if self.filter_sampling == "log" else v + self.filter_step
        return values

    def layer_values(self, filters: Sequence[int]) -> dict[str, int]:
        """The per-layer hyperparameter values of a network with these widths (per_layer mode):
        a rule's plan or a learned profile given to the oracle as a seed trial. Values off the
        search grid are kept exactly: with budget filling they are a profile, not final widths."""
        if self.mode != "per_layer":
            raise ValueError("layer values only exist in mode='per_layer'")
        if not self.depth[0] <= len(filters) <= self.depth[1]:
            raise ValueError(f"a seed of {len(filters)} layers is outside depth {self.depth}")
        return {"depth": len(filters), **{f"filters_{i}": int(f) for i, f in enumerate(filters)}}

    def rule_values(self, rule: str) -> dict[str, int]:
        """`rule`'s plan at the deepest depth, from the smallest width, as per-layer values."""
        counts = zoo.plan(rule, depth=self.depth[1], base_filters=self.filters[0],
                          downsample_every=self.downsample_every, min_filters=self.filters[0],
                          max_filters=self.filters[1])
        return self.layer_values(list(counts))

    def _filters_hp(self, hp: kt.HyperParameters, name: str) -> int:
        lo, hi = self.filters
        return hp.Int(name, lo, hi, step=self.filter_step, sampling=self.filter_sampling)

    def architecture(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Declare the search space on `hp` and return the zoo.build arguments it selects.

        Pure (no Keras): reports use it to recover a trial's per-layer filters from its values.
        """
        depth = hp.Int("depth", *self.depth)
        arch: dict[str, Any] = {"depth": depth}
        if self.mode == "rule":
            rule = hp.Choice("rule", self.rules)
            for name in self.rules:
                r = zoo.get_rule(name)
                with hp.conditional_scope("rule", [name]):
                    kwargs = {p: _declare_space(hp, f"{name}_{p}", spec, r.params.get(p))
                              for p, spec in r.space.items()}
                if name == rule:
                    arch["rule_kwargs"] = kwargs
            arch.update(rule=rule, base_filters=self._filters_hp(hp, "base_filters"),
                        min_filters=self.filters[0], max_filters=self.filters[1])
        else:
            counts = []
            for i in range(self.depth[1]):
                # Layer i exists only when depth >= i + 1.
                active = list(range(max(i + 1, self.depth[0]), self.depth[1] + 1))
                with hp.conditional_scope("depth", active):
                    f = self._filters_hp(hp, f"filters_{i}")
                if i < depth:
                    counts.append(f)
            arch.update(rule="custom", rule_kwargs={"filters": counts})
        arch["block"] = _declare(hp, "block", self.blocks)
        arch["kernel_size"] = _declare(hp, "kernel_size", self.kernel_sizes)
        arch["downsample"] = _declare(hp, "downsample", self.downsamples)
        arch["dropout"] = _declare(hp, "dropout", self.dropouts)
        _declare(hp, "learning_rate", self.learning_rates)
        if self.batch_sizes is not None:
            _declare(hp, "batch_size", self.batch_sizes)
        return arch

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.architecture(hp)

    def declared_space(self) -> kt.HyperParameters:
        """The whole search space, every value at its default."""
        hp = kt.HyperParameters()
        self.declare_hyperparameters(hp)
        return hp

    def _build_kwargs(self, hp: kt.HyperParameters) -> tuple[str, dict[str, Any]]:
        """The rule and zoo.build keywords `hp` selects. With budget filling, the draw is a
        profile scaled to the params/MACs budget with every width within `filters`; one that
        cannot reach the budget within them is built as wide as they allow (every layer at the
        maximum); one no scale can fit keeps its drawn widths (and is rejected in fit if over)."""
        a = self.architecture(hp)
        rule, rule_kwargs = a.pop("rule"), a.pop("rule_kwargs", {})
        kw = {**a, **rule_kwargs, "input_shape": self.input_shape,
              "num_classes": self.num_classes, "downsample_every": self.downsample_every}
        if self.fill_budget and self.budgets.size_budgets:
            # The search range bounds the widths the draw scales to as well: a user who asked
            # for --filters 8 32 gets no 49-kernel layer (preflight refuses a budget that no
            # network of the space reaches within the range).
            fill = {**kw, **self.budgets.size_budgets,
                    "min_filters": self.filters[0], "max_filters": self.filters[1]}
            try:
                zoo.plan(rule, **_plan_kwargs(fill))
                return rule, fill
            except BudgetError:
                widest = self._widest_in_range(rule, kw)
                if widest is not None:
                    return rule, widest
        return rule, kw

    def _widest_in_range(self, rule: str, kw: dict[str, Any]) -> dict[str, Any] | None:
        """Build keywords for the draw with every layer at `filters[1]` (where filling within the
        range ends as the budget grows), fitted to that network's own cost so that its plan keeps
        the draw as its profile; None when even that network is over the budget."""
        top = self.filters[1]
        widest = zoo.plan(rule, **_plan_kwargs({**kw, "min_filters": top, "max_filters": top}))
        costs = count_costs(widest, architecture(
            input_shape=self.input_shape, num_classes=self.num_classes, block=kw["block"],
            downsample=kw["downsample"], downsample_at=widest.downsample_at,
            kernel_size=kw["kernel_size"]))
        own = {name: getattr(costs, name.removeprefix("max_")) for name in self.budgets.size_budgets}
        if any(own[name] > limit for name, limit in self.budgets.size_budgets.items()):
            return None
        fill = {**kw, **own, "min_filters": self.filters[0], "max_filters": top}
        try:
            zoo.plan(rule, **_plan_kwargs(fill))
        except BudgetError:
            return None
        return fill

    def plan(self, hp: kt.HyperParameters) -> zoo.Plan:
        """Per-layer filters of the model `hp` selects (no Keras); `.profile` is the draw."""
        rule, kw = self._build_kwargs(hp)
        return zoo.plan(rule, **_plan_kwargs(kw))

    def network_key(self, hp: kt.HyperParameters) -> str:
        """What decides the trained network: its widths and every other knob, not how they were
        drawn. Two draws with one key (a profile and its double, once both are scaled to the
        budget; two rules with the same plan) would train the same network twice."""
        rule, kw = self._build_kwargs(hp)
        widths = zoo.plan(rule, **_plan_kwargs(kw))
        knobs = {k: v for k, v in hp.values.items()
                 if k in ("block", "kernel_size", "downsample", "dropout", "learning_rate",
                          "batch_size")}
        return f"{'-'.join(map(str, widths))}@{widths.downsample_at}|{sorted(knobs.items())}"

    # --- build and fit --------------------------------------------------------------------------

    def build_unchecked(self, hp: kt.HyperParameters) -> keras.Model:
        """The compiled model `hp` selects, without budget checks."""
        rule, kw = self._build_kwargs(hp)
        if self.execution_seed is not None:
            # The tuner owns the process-wide seed (shuffling, dropout); zoo.build only seeds
            # the initializers it creates.
            keras.utils.set_random_seed(self.execution_seed)
        model = zoo.build(rule, seed=self.execution_seed, **kw)
        model = zoo.compile_classifier(model, learning_rate=hp.get("learning_rate"))
        _restores_weights_only(model.optimizer)
        return model

    @property
    def execution_seed(self) -> int | None:
        """The seed this execution builds and shuffles with (its initializers and Keras' global seed)."""
        return None if self.seed is None else self.seed + self.execution

    def build(self, hp: kt.HyperParameters) -> keras.Model | None:
        # Budgets are checked in fit, not here: keras-tuner also calls build while it explores
        # the conditional space in the Tuner's constructor, and an over-budget model raised there
        # would abort the whole search instead of rejecting one trial.
        if self._exploring:
            self.declare_hyperparameters(hp)
            return None
        return self.build_unchecked(hp)

    @contextlib.contextmanager
    def exploring_space(self) -> Iterator[None]:
        """Inside this block `build` only declares the hyperparameters `hp` selects and returns
        None. keras-tuner's Tuner constructor builds the model once per conditional scope (every
        rule with parameters) only to discover the space; tuning's tuners construct inside it."""
        self._exploring = True
        try:
            yield
        finally:
            self._exploring = False

    def check_budgets(self, model: keras.Model) -> MeasuredCosts:
        """The model's costs, or OverBudget if it breaks a budget."""
        latency = self.budgets.needs_latency if self.measure_latency is None else self.measure_latency
        costs = measure_costs(model, latency=latency)
        problems = self.budgets.violations(costs, slack=TOLERANCE if self.fill_budget else 0.0)
        if problems:
            raise OverBudget(Rejection(costs, tuple(problems)))
        return costs

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        """Reject an over-budget model before any training, then fit with early stopping."""
        costs = self.check_budgets(model)
        kwargs["callbacks"] = [CostLogger(costs)] + list(kwargs.get("callbacks") or [])
        return self.fit_unchecked(hp, model, *args, **kwargs)

    def fit_unchecked(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        """`fit` without budget checks or costs in the logs (re-ranking runs a trial that passed)."""
        callbacks = list(kwargs.pop("callbacks", None) or [])
        # A validation metric is logged only with validation data: without it EarlyStopping would
        # never stop and Keras would warn at every epoch, so it is added only where it can act.
        logged = not self.monitor.startswith("val_") or bool(
            kwargs.get("validation_data") is not None or kwargs.get("validation_split"))
        if self.patience and logged and not any(isinstance(c, keras.callbacks.EarlyStopping) for c in callbacks):
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=self.monitor, patience=self.patience, mode="auto"))
        # The shared recipe: its batch size unless searched, warm-up + cosine decay over this fit.
        n_train = len(args[0]) if args else len(kwargs["x"])
        recipe = zoo.Recipe(learning_rate=hp.get("learning_rate"),
                            batch_size=hp.get("batch_size") if "batch_size" in hp.values else None)
        kwargs.setdefault("batch_size", recipe.resolve(n_train).batch_size)
        # Swap the schedule into the optimizer build() created (inside the tuner's distribution
        # scope) rather than recompiling here, outside it.
        model.optimizer.learning_rate = recipe.learning_rate_schedule(
            n_train, epochs=kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0))
        with custom_gradients_released():  # else every trial's graphs stay alive
            return model.fit(*args, callbacks=callbacks, **kwargs)
