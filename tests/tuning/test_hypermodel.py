"""ZooHyperModel with keras-tuner's own tuners, written as a keras-tuner user would."""
import warnings

import keras
import keras_tuner as kt

import zoo
import pytest

import tuning
from tuning import Budgets, ZooHyperModel


@pytest.fixture(scope="module")
def data():
    import zoo

    ds = zoo.datasets.load("digits")
    return (ds.x_train[:160], ds.y_train[:160]), (ds.x_val[:80], ds.y_val[:80])


# Hyperband continues trials from their checkpoints and get_best_models reloads one: both used to
# warn "Skipping variable loading for optimizer" (issue 32, item 12); as an error here, a trial
# that warns fails and the test with it.
@pytest.mark.filterwarnings("error:Skipping variable loading for optimizer")
def test_hyperband_as_a_keras_tuner_user_writes_it(data, tmp_path):
    (x, y), (xv, yv) = data
    tuner = kt.Hyperband(
        tuning.ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(2, 3), filters=(8, 16)),
        objective="val_accuracy", max_epochs=2, factor=2, directory=tmp_path, project_name="hb",
        seed=0)
    tuner.search(x, y, validation_data=(xv, yv), verbose=0)
    trials = tuner.oracle.trials.values()
    assert trials and all(t.status == "COMPLETED" for t in trials)
    assert any(t.hyperparameters.values.get("tuner/epochs") == 2 for t in trials)
    best = tuner.get_best_models(1)[0]
    assert best.predict(xv[:4], verbose=0).shape == (4, 10)
    # costs logged by the hypermodel are trial metrics, usable as objectives
    assert tuner.oracle.get_best_trials(1)[0].metrics.exists("params")


def test_a_checkpoint_brings_back_the_weights_and_a_fresh_optimizer_silently(data, tmp_path):
    """What keras-tuner does with a trial's checkpoint (a Hyperband bracket's continuation,
    get_best_models): the weights come back; the optimizer starts fresh, since each fit gives it
    its own schedule from step 0; and nothing warns (Keras warned at every such load)."""
    (x, y), _ = data
    hm = ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(2, 2), filters=(8, 8), patience=0)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    trained = hm.build(hp)
    hm.fit(hp, trained, x, y, epochs=1, verbose=0)
    trained.save_weights(tmp_path / "checkpoint.weights.h5")  # as keras-tuner's SaveBestEpoch does
    fresh = hm.build(hp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.load_weights(tmp_path / "checkpoint.weights.h5")
    assert [str(w.message) for w in caught] == []
    assert all((a == b).all() for a, b in zip(fresh.get_weights(), trained.get_weights()))
    assert int(trained.optimizer.iterations) > 0 and int(fresh.optimizer.iterations) == 0


@pytest.mark.parametrize("tuner_cls", [kt.BayesianOptimization, kt.GridSearch, kt.RandomSearch])
def test_other_tuners_run_the_rule_mode(tuner_cls, data, tmp_path):
    (x, y), (xv, yv) = data
    hm = ZooHyperModel((8, 8, 1), 10, rules=["doubling", "hourglass"], depth=(2, 2), filters=(8, 16),
                       batch_sizes=[16, 64])
    tuner = tuner_cls(hm, objective=kt.Objective("val_accuracy", "max"), max_trials=2,
                      directory=tmp_path, project_name="t", seed=1)
    tuner.search(x, y, validation_data=(xv, yv), epochs=1, verbose=0)
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED", "COMPLETED"]


def test_conditional_scopes_leave_no_stale_values():
    hm = ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(1, 3), filters=(8, 64))
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    names = {p.name for p in hp.space}
    assert {"filters_0", "filters_1", "filters_2"} <= names
    assert set(hp.values) >= {"depth", "filters_0"} and "filters_1" not in hp.values  # depth 1
    hp.values["depth"] = 2
    assert hp.is_active("filters_1") and not hp.is_active("filters_2")
    hp.values["filters_1"] = 32  # what an oracle fills in for a newly active layer
    assert hm.plan(hp) == [8, 32]
    f0 = next(p for p in hp.space if p.name == "filters_0")
    assert (f0.sampling, f0.step, f0.min_value, f0.max_value) == ("log", 2, 8, 64)  # 8,16,32,64

    rule = ZooHyperModel((8, 8, 1), 10, rules=["regnet", "diamond"])
    hp = kt.HyperParameters()
    rule.declare_hyperparameters(hp)
    hp.values["rule"] = "diamond"
    assert hp.is_active("diamond_peak") and not hp.is_active("regnet_wm")


def test_fit_rejects_over_budget_before_training(data):
    (x, y), _ = data
    hm = ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(2, 2), filters=(64, 64),
                       budgets={"max_params": 1000}, fill_budget=False)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    with pytest.raises(kt.errors.FailedTrialError, match=r"over budget: params [\d,]+ > max_params 1,000"):
        hm.fit(hp, model, x, y, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 0  # rejected before a single step
    hm = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(8, 8), rules=["constant"],
                       budgets=Budgets(max_latency_ms=1e-6))
    with pytest.raises(kt.errors.FailedTrialError, match="latency .* ms > max_latency_ms"):
        hm.check_budgets(hm.build(kt.HyperParameters()))
    ok = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(8, 8), rules=["constant"],
                       budgets={"max_params": 10**6, "max_macs": 10**9})
    model = ok.build(kt.HyperParameters())
    assert isinstance(model, keras.Model) and model.optimizer is not None
    assert ok.check_budgets(model).params == model.count_params()


def test_tuner_constructs_when_the_default_model_is_over_budget(tmp_path):
    # keras-tuner builds models while exploring the space in its constructor; a budget check
    # there used to abort the search (seen in the demo's per-layer search).
    hm = ZooHyperModel((8, 8, 1), 10, mode="per_layer", depth=(2, 4), filters=(64, 64),
                       budgets={"max_params": 3000}, fill_budget=False)
    with pytest.raises(kt.errors.FailedTrialError):
        hm.check_budgets(hm.build(kt.HyperParameters()))
    tuner = kt.RandomSearch(hm, objective="val_accuracy", max_trials=1, directory=tmp_path,
                            project_name="p")
    assert "depth" in tuner.oracle.get_space().values


def test_fit_uses_batch_size_hyperparameter_and_logs_costs(data):
    (x, y), (xv, yv) = data
    hm = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(8, 8), rules=["constant"],
                       batch_sizes=[40])
    hp = kt.HyperParameters()
    model = hm.build(hp)
    history = hm.fit(hp, model, x, y, validation_data=(xv, yv), epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 4  # 160 examples / batch_size 40
    assert history.history["params"] == [model.count_params()]
    assert history.history["macs"][0] > 0 and "latency_ms" not in history.history  # no budget needs it


def test_latency_is_logged_when_asked_or_when_a_latency_budget_needs_it(data):
    (x, y), (xv, yv) = data
    for kwargs in ({"measure_latency": True}, {"budgets": Budgets(max_latency_ms=1e6)}):
        hm = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(4, 4), rules=["constant"], **kwargs)
        hp = kt.HyperParameters()
        model = hm.build(hp)
        history = hm.fit(hp, model, x[:40], y[:40], validation_data=(xv, yv), epochs=1, verbose=0)
        assert history.history["latency_ms"][0] > 0, kwargs
    with pytest.raises(ValueError, match="measure_latency must be None, True or False"):
        ZooHyperModel((8, 8, 1), 10, measure_latency="yes")


def test_early_stopping_only_where_its_metric_is_logged(data):
    """Without validation data `val_accuracy` is never logged: EarlyStopping on it used to warn at
    every epoch (and could never stop). With validation data it still stops the fit."""
    import warnings

    (x, y), (xv, yv) = data
    hm = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(4, 4), rules=["constant"], patience=1)
    hp = kt.HyperParameters()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hm.fit(hp, hm.build(hp), x[:64], y[:64], epochs=1, verbose=0)
    assert not [w for w in caught if "Early stopping conditioned" in str(w.message)]
    history = hm.fit(hp, hm.build(hp), x[:64], y[:64], validation_data=(xv[:32], yv[:32]),
                     epochs=30, verbose=0)
    assert len(history.epoch) < 30  # stopped early on val_accuracy


def test_fit_releases_the_graphs_tf_pins_so_trials_do_not_leak(data):
    """TF keeps every traced tf.custom_gradient in a global registry (about 10 MiB of graph per
    trained model); ZooHyperModel.fit drops what its own fit registered, and the model still trains."""
    import gc

    from tuning._memory import custom_gradient_count

    (x, y), _ = data
    hm = ZooHyperModel((8, 8, 1), 10, depth=(2, 2), filters=(4, 4), rules=["constant"])
    hp = kt.HyperParameters()
    plain = hm.build(hp)  # the same model through plain Keras: the registry grows
    before = custom_gradient_count()
    plain.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert custom_gradient_count() > before, "TF no longer leaks here: drop tuning/_memory.py"
    before = custom_gradient_count()
    for _ in range(2):
        keras.backend.clear_session()
        gc.collect()
        model = hm.build(hp)
        hm.fit(hp, model, x, y, epochs=1, verbose=0)
        assert custom_gradient_count() == before
        # the traced step keeps working once its registry entry is gone
        # (the recipe's cosine schedule has decayed to 0 by now, so count steps, not weight changes)
        batch = zoo.Recipe().resolve(len(x)).batch_size  # the batch shape hm.fit traced
        steps = int(model.optimizer.iterations.numpy())
        model.fit(x[:batch * 2], y[:batch * 2], epochs=1, batch_size=batch, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == steps + 2
        assert custom_gradient_count() == before  # same shapes: no retrace, nothing registered


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="greedy"), "unknown mode 'greedy'; valid: rule, per_layer"),
    (dict(rules=["fibonacci"]), "unknown rule 'fibonacci' in `rules`; valid: combinatorial, constant"),
    (dict(rules=[]), "`rules` must not be empty"),
    (dict(rules="doubling"), "`rules` must be a list of rule names"),
    (dict(rules=["custom"]), "unknown rule 'custom'"),
    (dict(mode="per_layer", rules=["linear"]), "rules only apply to mode='rule'"),
    (dict(depth=(4, 2)), r"`depth`: min 4 > max 2"),
    (dict(filters=(64, 8)), r"`filters`: min 64 > max 8"),
    (dict(filters=(0, 8)), r"`filters` must be an int or a \(min, max\) pair of ints >= 1"),
    (dict(depth="3"), r"`depth` must be an int or a \(min, max\) pair of ints"),
    (dict(depth=(2, 12)), "shrinks the 8x8 input below 1x1"),
    (dict(blocks=["dense"]), "unknown value 'dense' in `blocks`; valid: plain, residual, separable"),
    (dict(downsamples=["stride"]), "unknown value 'stride' in `downsamples`"),
    (dict(dropouts=[1.5]), r"`dropouts` must be in \[0, 1\)"),
    (dict(learning_rates=[0.0]), "`learning_rates` must be positive"),
    (dict(batch_sizes=[0]), "`batch_sizes` must be positive ints"),
    (dict(kernel_sizes=[3, 3]), "`kernel_sizes` lists a value twice"),
    (dict(filter_sampling="exp"), "unknown `filter_sampling` 'exp'; valid: log, linear"),
    (dict(filter_step=1), "`filter_step` must be an int >= 2 for log sampling"),
    (dict(budgets={"max_flops": 3}), r"budgets got unknown key\(s\) \['max_flops'\]"),
    (dict(budgets={"max_params": -1}), "max_params must be None or a positive int"),
    (dict(budgets={"max_latency_ms": 0}), "max_latency_ms must be None or a positive number"),
    (dict(patience=-1), "patience must be an int >= 0"),
])
def test_hypermodel_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ZooHyperModel((8, 8, 1), 10, **kwargs)


def test_hypermodel_takes_what_zoo_tune_takes():
    """`ZooHyperModel(depth=3)` failed where `zoo-tune --depth 3` works, and its early-stopping
    patience was 2 where zoo-tune's and tuning.search's is 3."""
    from tuning.searches.cli import build_parser
    from tuning.searches.config import SearchConfig

    hm = ZooHyperModel((8, 8, 1), 10, depth=3, filters=16)
    assert (hm.depth, hm.filters) == ((3, 3), (16, 16))
    assert hm.patience == SearchConfig().patience == 3
    assert "default 3" in next(a.help for a in build_parser()._actions if a.dest == "patience")


@pytest.mark.parametrize("shape, classes, message", [
    ((8, 8), 10, "input_shape must be"), ((8, 8, 1), 1, "num_classes must be an int >= 2")])
def test_hypermodel_validates_shape_and_classes(shape, classes, message):
    with pytest.raises(ValueError, match=message):
        ZooHyperModel(shape, classes)


def test_tuner_search_freezes_the_collector_only_while_it_runs(data, tmp_path):
    """Trials' full collections skip the objects alive before the search, and gc is restored
    afterwards, also when the search fails."""
    import gc

    from tuning.searches.tuners import TUNERS

    (x, y), (xv, yv) = data
    seen = []

    class Probe(ZooHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            seen.append(gc.get_freeze_count())
            if len(seen) == 2:
                raise KeyboardInterrupt  # not a trial failure: keras-tuner lets it end the search
            return {"val_accuracy": 0.5}  # a score, not a traced fit: the freeze is what is checked

    hm = Probe((8, 8, 1), 10, depth=(2, 2), filters=(4, 4), rules=["constant"],
               learning_rates=[1e-3, 3e-3, 1e-2])  # several trials, not one
    tuner = TUNERS["random"](hm, objective="val_accuracy", max_trials=3, directory=str(tmp_path),
                             project_name="p", seed=0)
    tuner.progress_stream = None
    assert gc.get_freeze_count() == 0
    with pytest.raises(KeyboardInterrupt):
        tuner.search(x, y, validation_data=(xv, yv), epochs=1, verbose=0)
    assert len(seen) == 2 and all(n > 100_000 for n in seen)  # TF's objects were frozen
    assert gc.get_freeze_count() == 0


def test_each_execution_of_a_trial_builds_with_its_own_seed(data, tmp_path):
    """executions_per_trial averages over runs only if the runs differ: a seeded hypermodel
    builds execution k with seed + k (zoo.build sets Keras' global seed, shuffles included)."""
    from tuning.searches.tuners import TUNERS

    (x, y), (xv, yv) = data
    seeds, first_kernels = [], []

    class Probe(ZooHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            seeds.append(self.execution_seed)
            first_kernels.append(model.get_weights()[0].copy())
            # What is checked is how each execution was built; a score (keras-tuner takes a
            # dict) instead of training spares four traced fits.
            return {"val_accuracy": 0.5}

    hm = Probe((8, 8, 1), 10, depth=(2, 2), filters=(4, 4), rules=["constant"], seed=7,
               learning_rates=[1e-3, 3e-3, 1e-2])
    tuner = TUNERS["random"](hm, objective="val_accuracy", max_trials=2, executions_per_trial=2,
                             directory=str(tmp_path), project_name="p", seed=0)
    tuner.progress_stream = None
    tuner.search(x, y, validation_data=(xv, yv), epochs=1, verbose=0)
    assert seeds == [7, 8, 7, 8]
    assert not (first_kernels[0] == first_kernels[1]).all()  # different initialisations
    assert (first_kernels[0] == first_kernels[2]).all()  # but reproducible per execution
    assert hm.execution == 0  # reset after each trial: a later build is execution 0 again


def test_latency_is_measured_on_the_traced_graph_not_eager_calls():
    """Serving runs a traced signature; eager calls would time Keras' per-layer Python dispatch."""
    import zoo

    model = zoo.build("constant", input_shape=(8, 8, 1), num_classes=10, depth=2, base_filters=8)
    python_calls = []
    call = model.call
    model.call = lambda *a, **k: python_calls.append(1) or call(*a, **k)
    ms = tuning.measure_latency_ms(model, runs=5)
    assert ms > 0
    assert len(python_calls) == 1  # traced once; the 1 + 5 timed runs execute the graph
    with pytest.raises(ValueError, match="runs must be a positive int, got 0"):
        tuning.measure_latency_ms(model, runs=0)


@pytest.mark.parametrize("mode", ["rule", "per_layer"])
def test_tuning_tuners_discover_the_space_without_building_a_model(mode, tmp_path, monkeypatch):
    """keras-tuner's Tuner constructor builds the model once per conditional scope (17 builds for
    rule mode) only to discover the space; tuning's tuners get the same space from declarations."""
    import contextlib

    from tuning.searches.tuners import RandomSearch

    def space(hm, folder):
        t = RandomSearch(hm, objective="val_accuracy", max_trials=1, directory=tmp_path, project_name=folder)
        return sorted((h.name, repr(h.get_config()), repr([c.get_config() for c in h.conditions]))
                      for h in t.oracle.get_space().space)

    kwargs = dict(mode=mode, depth=(2, 4), filters=(4, 16), blocks=["plain", "residual"],
                  budgets={"max_params": 3000})
    built = []
    fast = ZooHyperModel((8, 8, 1), 10, **kwargs)
    monkeypatch.setattr(fast, "build_unchecked", lambda hp: built.append(hp) or None)
    fast_space = space(fast, "fast")
    assert built == []  # not one Keras model was built to explore the space
    slow = ZooHyperModel((8, 8, 1), 10, **kwargs)
    slow.exploring_space = contextlib.nullcontext  # keras-tuner's own exploration: a build per scope
    assert space(slow, "slow") == fast_space


def test_a_latency_objective_makes_the_search_time_every_trial(tmp_path):
    from tuning.searches.config import SearchConfig
    from tuning.searches.driver import prepare

    def measure(objective):
        config = SearchConfig(dataset="digits", mode="per_layer", depth=(2, 2), filters=(4, 8),
                              objective=objective, directory=tmp_path, project=f"p{len(objective)}", verbose=0)
        return prepare(config)[2].measure_latency

    assert measure(["val_accuracy", "latency_ms"]) is True
    assert measure("val_accuracy") is None  # only a latency budget would ask for it then


@pytest.mark.parametrize("mode, rules", [("per_layer", None), ("rule", ["doubling", "constant", "diamond"])])
def test_budget_filling_keeps_every_width_within_filters(mode, rules):
    """Scaled to fill a budget, a draw stays within `filters` (zoo-tune --filters 8 32 built
    49-kernel layers); a draw that cannot fill it within the range is built as wide as the range
    allows, every layer at its maximum, and keeps its draw as the profile."""
    import random

    hm = ZooHyperModel((8, 8, 1), 10, mode=mode, rules=rules, depth=(2, 4), filters=(8, 32),
                       budgets={"max_params": 12_000})
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    rnd, rescaled = random.Random(0), 0
    for _ in range(12):
        for p in hp.space:
            if hp.is_active(p):
                hp.values[p.name] = p.random_sample(rnd.randint(0, 10**6))
        plan = hm.plan(hp)
        assert all(8 <= w <= 32 for w in plan), (list(plan), plan.profile)
        rescaled += list(plan) != list(plan.profile)
        if len(plan) == 2:  # two layers of 32 are under 12,000 params: as wide as the range allows
            assert list(plan) == [32, 32] and plan.costs.params < 12_000, (list(plan), plan.profile)
    assert rescaled  # some draws were scaled to the budget
