"""Builders, describe() and their validation, on real Keras models."""
import numpy as np
import pytest

import zoo

RULE_KWARGS = {"custom": {"filters": [4, 6, 8, 10]}}


# Tracing a train step into a graph costs seconds per model; a rule only changes widths, so one
# rule per block trains traced (as Keras fits) and the others train eagerly, the same step.
TRACED_RULE = "doubling"


@pytest.mark.parametrize("block", sorted(zoo.BLOCKS))
@pytest.mark.parametrize("rule", [r for r in zoo.list_models() if not r.startswith("test_")])
def test_every_rule_and_block_builds_trains_and_matches_describe(rule, block):
    model = zoo.build(rule, input_shape=(8, 8, 1), num_classes=3, depth=4, base_filters=4,
                      block=block, max_filters=32, **RULE_KWARGS.get(rule, {}))
    assert model.inputs[0].name == "images"
    assert model.output_names == ["probabilities"] if hasattr(model, "output_names") else True
    desc = zoo.describe(model)
    assert desc.total_params == model.count_params()
    assert [r["filters"] for r in desc.rows if r["layer"].startswith("layer")] == \
        zoo.model_info(model)["filters"]
    zoo.compile_classifier(model)
    model.run_eagerly = rule != TRACED_RULE
    x = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.all(np.isfinite(loss))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # it learned
    probs = model.predict_on_batch(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_defaults_give_32x32_rgb_10_classes():
    model = zoo.build("doubling")
    assert tuple(model.input_shape) == (None, 32, 32, 3)
    assert tuple(model.output_shape) == (None, 10)
    info = zoo.model_info(model)
    assert info["rule"] == "doubling" and info["filters"] == zoo.plan("doubling")


def test_large_rgb_input_and_strided_downsampling():
    model = zoo.build("geometric", input_shape=(64, 64, 3), depth=8, base_filters=8,
                      downsample="strided", block="residual")
    desc = zoo.describe(model)
    assert desc.rows[-2]["output_hw"] == (8, 8)  # downsamples after layers 1, 3, 5: 64 / 2^3
    assert desc.total_params == model.count_params()
    assert desc.receptive_field > 30


def test_describe_macs_and_receptive_field_for_plain_convs():
    model = zoo.build("constant", input_shape=(8, 8, 1), num_classes=2, depth=2, base_filters=4,
                      downsample="none")
    rows = zoo.describe(model).rows
    assert rows[0]["macs"] == 8 * 8 * 3 * 3 * 1 * 4
    assert rows[1]["macs"] == 8 * 8 * 3 * 3 * 4 * 4
    assert [r["receptive_field"] for r in rows[:2]] == [3, 5]
    assert rows[-1]["layer"] == "head" and rows[-1]["macs"] == 4 * 2


def test_describe_by_name_and_text_table():
    desc = zoo.describe("diamond", input_shape=(8, 8, 1), depth=4, base_filters=4)
    text = str(desc)
    assert "layer0" in text and "total" in text and f"{desc.total_params:,}" in text
    assert desc.to_dict()["rows"][0]["layer"] == "layer0"


def test_describe_generic_keras_model():
    import keras
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inp)))
    model = keras.Model(inp, out)
    desc = zoo.describe(model)
    assert desc.total_params == model.count_params()
    assert zoo.model_info(model) is None


def test_user_rule_builds():
    @zoo.register("test_wide_first")
    def wide_first(layer, *, top: int = 32):
        return top if layer.index == 0 else layer.base_filters

    try:
        model = zoo.build("test_wide_first", input_shape=(8, 8, 1), depth=3, base_filters=4, top=12)
        assert zoo.model_info(model)["filters"] == [12, 4, 4]
    finally:
        zoo.unregister("test_wide_first")


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(name="nope"), ValueError, "unknown rule 'nope'; valid rules"),
    (dict(block="dense"), ValueError, "unknown block 'dense'; valid blocks: plain, residual, separable"),
    (dict(downsample="median"), ValueError, "unknown downsample 'median'; valid: max, avg, strided, none"),
    (dict(input_shape=(8, 8, 1), depth=10), ValueError, "shrink the 8x8 input below 1x1"),
    (dict(input_shape=(8, 8)), ValueError, "input_shape must be \\(height, width, channels\\)"),
    (dict(input_shape=(8, 8, 0)), ValueError, "input_shape"),
    (dict(num_classes=1), ValueError, "num_classes must be an int >= 2"),
    (dict(base_filters=0), ValueError, "base_filters must be a positive int"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(wm=2.0), TypeError, "build\\(\\) got unexpected keyword argument\\(s\\) wm; build's keywords "
                              "are: input_shape, input_tensor, num_classes, .*; rule 'doubling' takes: factor"),
    (dict(include_topp=False), TypeError, "include_topp \\(did you mean include_top\\?\\)"),
    (dict(weights="imagenet"), ValueError, "weights='imagenet': zoo networks have no pretrained "
                                           "weights; pass None or the path of an existing weights file"),
    (dict(name="x", model_name="y"), ValueError, "name and model_name both name the Keras model"),
    (dict(pooling="sum"), ValueError, "pooling must be None, 'avg' or 'max'"),
    (dict(pooling="max"), ValueError, "pooling='max' needs include_top=False"),
    (dict(include_top=False, classes=5), ValueError, "num_classes/classes sizes the classifier head"),
    (dict(include_top=False, dropout=0.2), ValueError, "dropout is applied in the classifier head"),
    (dict(classes=3, num_classes=4), ValueError, "classes is keras.applications' name for num_classes"),
    (dict(include_top="no"), ValueError, "include_top must be True or False"),
])
def test_build_bad_input(kwargs, exc, match):
    rule = kwargs.pop("name") if kwargs.get("name") == "nope" else "doubling"
    with pytest.raises(exc, match=match):
        zoo.build(rule, **kwargs)


@pytest.mark.parametrize("pooling, out", [(None, (None, 4, 4, 32)), ("avg", (None, 32)),
                                          ("max", (None, 32))])
def test_keras_applications_keywords_headless(pooling, out, tmp_path):
    import keras
    kw = dict(input_shape=(8, 8, 1), depth=4, base_filters=16, include_top=False, weights=None)
    model = zoo.build("doubling", pooling=pooling, **kw)
    assert tuple(model.output.shape) == out
    assert not any(layer.name == "probabilities" for layer in model.layers)
    if pooling:
        kind = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        assert isinstance(model.layers[-1], kind[pooling])
    info = zoo.model_info(model)
    assert (info["include_top"], info["pooling"], info["num_classes"]) == (False, pooling, None)
    # a budget counts the features alone, exactly as describe does
    fitted = zoo.build("doubling", pooling=pooling, max_params=6_000, **kw)
    params = zoo.describe(fitted).total_params
    assert abs(params - 6_000) <= 180
    assert params == zoo.plan("doubling", max_params=6_000, input_shape=(8, 8, 1), depth=4,
                              base_filters=16, include_top=False).costs.params
    fitted.save(tmp_path / "m.keras")
    assert zoo.model_info(keras.models.load_model(tmp_path / "m.keras")) == zoo.model_info(fitted)


def test_classes_is_num_classes_and_avg_pooling_is_the_head():
    model = zoo.build("constant", input_shape=(8, 8, 1), depth=2, classes=5, pooling="avg",
                      weights=None)
    assert tuple(model.output.shape) == (None, 5)
    info = zoo.model_info(model)
    assert (info["num_classes"], info["include_top"], info["pooling"]) == (5, True, "avg")


def test_unknown_keyword_of_plan_names_plans_keywords():
    with pytest.raises(TypeError, match="plan\\(\\) got unexpected keyword argument\\(s\\) max_param "
                                        "\\(did you mean max_params\\?\\); plan's keywords are: depth"):
        zoo.plan("doubling", max_param=5000)


def test_describe_bad_input():
    with pytest.raises(TypeError, match="keras.Model or a rule name"):
        zoo.describe(42)
    with pytest.raises(TypeError, match="only accepted with a rule name"):
        zoo.describe(zoo.build("constant", input_shape=(8, 8, 1), depth=2), depth=3)


@pytest.mark.parametrize("block, downsample", [("plain", "max"), ("residual", "strided"),
                                               ("separable", "avg")])
def test_model_info_survives_keras_file_round_trip(tmp_path, block, downsample):
    import keras
    model = zoo.build("linear", input_shape=(8, 8, 1), depth=4, base_filters=4, block=block,
                      downsample=downsample, dropout=0.25)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, zoo.ZooModel)
    assert zoo.model_info(reloaded) == zoo.model_info(model)  # rule and plan travel in the config
    assert zoo.model_info(reloaded)["rule"] == "linear"


def test_budget_fitted_model_reloads_with_its_profile_and_scale(tmp_path):
    import keras
    model = zoo.build("doubling", input_shape=(8, 8, 1), depth=4, base_filters=16, max_params=3500)
    model.save(tmp_path / "m.keras")
    info = zoo.model_info(keras.models.load_model(tmp_path / "m.keras"))
    assert info["profile"] == [16, 16, 32, 32] and info["scale"] < 1
    assert info["filters"] == zoo.plan("doubling", input_shape=(8, 8, 1), depth=4, base_filters=16,
                                       max_params=3500)


def test_seeded_build_is_reproducible_and_leaves_the_global_seed_alone():
    import keras
    keras.utils.set_random_seed(123)
    expected = np.random.random()
    keras.utils.set_random_seed(123)
    a = zoo.build("doubling", input_shape=(8, 8, 1), depth=2, base_filters=4, seed=7)
    assert np.random.random() == expected  # build drew nothing from (and did not reseed) numpy
    b = zoo.build("doubling", input_shape=(8, 8, 1), depth=2, base_filters=4, seed=7)
    c = zoo.build("doubling", input_shape=(8, 8, 1), depth=2, base_filters=4, seed=8)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not np.array_equal(wa[0], wc[0])
    # two layers of one model are not initialised alike
    assert not np.array_equal(a.get_layer("layer1_conv").get_weights()[0][:, :, :1],
                              a.get_layer("layer0_conv").get_weights()[0])


def test_doubling_learns_digits_in_a_few_epochs_at_batch_32(digits):
    # Guards the BatchNorm momentum: with Keras' 0.99, val accuracy stayed near chance for ~10
    # epochs on digits, which made short tuning trials meaningless.
    model = zoo.compile_classifier(zoo.build("doubling", input_shape=(8, 8, 1), depth=4,
                                             base_filters=16, seed=0), 3e-3)
    history = model.fit(digits.x_train, digits.y_train, validation_data=(digits.x_val, digits.y_val),
                        epochs=3, batch_size=32, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.85


def test_dir_lists_only_public_names():
    names = dir(zoo)
    assert not {"Any", "annotations", "import_module"} & set(names)
    assert set(zoo.__all__) <= set(names) and {"datasets", "images"} <= set(names)
    assert all(not n.startswith("_") or n == "__version__" for n in names), names
    assert all(getattr(zoo, n) is not None for n in names)


def test_keras_keywords_name_and_a_weights_file(tmp_path):
    """keras.applications' `name` names the model (it used to collide with the rule: "multiple
    values for argument 'name'") and `weights` takes a weights file of the same network."""
    kw = dict(input_shape=(8, 8, 1), depth=2, base_filters=4)
    a = zoo.build("doubling", name="my_cnn", seed=1, **kw)
    assert a.name == "my_cnn" and zoo.model_info(a)["rule"] == "doubling"
    a.save_weights(tmp_path / "a.weights.h5")
    b = zoo.build("doubling", seed=2, weights=tmp_path / "a.weights.h5", **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_recipe_fit_repeats_a_seeded_build_whatever_ran_before(digits):
    """The same network and build seed, trained twice in one process, scores the same: Recipe.fit
    seeds the data order from the build seed (it used to follow Keras' global random state)."""
    import keras

    def run() -> list:
        model = zoo.build("doubling", input_shape=(8, 8, 1), depth=2, base_filters=4, seed=5)
        zoo.Recipe(epochs=1, batch_size=64).fit(model, digits.x_train[:256], digits.y_train[:256],
                                                 verbose=0)
        return model.get_weights()

    first = run()
    keras.utils.set_random_seed(99)  # another run's seeding in between
    np.random.random(10)
    second = run()
    assert all(np.array_equal(x, y) for x, y in zip(first, second))
    assert zoo.model_info(zoo.build("doubling", input_shape=(8, 8, 1), depth=2, seed=5))["seed"] == 5
    with pytest.raises(ValueError, match="seed must be 'model', None or an int >= 0"):
        zoo.Recipe(epochs=1).fit(zoo.build("doubling", input_shape=(8, 8, 1), depth=2), digits.x_train[:8],
                                 digits.y_train[:8], seed="auto")


def test_recipe_fit_shows_progress_by_default_as_keras_does():
    import inspect

    assert inspect.signature(zoo.Recipe.fit).parameters["verbose"].default == "auto"
