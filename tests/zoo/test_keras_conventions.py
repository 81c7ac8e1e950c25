"""keras.applications' conventions on zoo.build (issue 32, item 9): `classifier_activation`,
`input_tensor`, inputs of any size where global pooling allows it, and `keras.models.clone_model`
keeping the zoo record. Every test here fails on the code before these keywords existed."""
import keras
import numpy as np
import pytest

import zoo

KW = dict(input_shape=(8, 8, 1), num_classes=3, depth=2, base_filters=4, seed=0)
X = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
Y = np.array([0, 1, 2, 0, 1])


@pytest.fixture(scope="module")
def softmax_model():
    return zoo.build("doubling", **KW)


# --- classifier_activation ------------------------------------------------------------------

def test_logits_head_starts_from_the_softmax_models_weights(softmax_model):
    logits = zoo.build("doubling", classifier_activation=None, **KW)
    assert softmax_model.layers[-1].name == "probabilities"  # the default is unchanged
    assert logits.layers[-1].name == "logits"
    assert zoo.model_info(softmax_model)["classifier_activation"] == "softmax"
    assert zoo.model_info(logits)["classifier_activation"] is None
    assert all(np.array_equal(a, b) for a, b in zip(softmax_model.get_weights(), logits.get_weights()))
    z = logits.predict_on_batch(X)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(z)),
                               softmax_model.predict_on_batch(X), rtol=1e-5, atol=1e-6)
    assert zoo.describe(logits).rows[-1]["layer"] == "head"


@pytest.mark.parametrize("activation, recorded, layer", [
    ("linear", None, "logits"),  # "linear" is logits, as Keras' Dense(activation=None)
    ("sigmoid", "sigmoid", "predictions"),
    (keras.activations.sigmoid, "sigmoid", "predictions"),
    (keras.activations.softmax, "softmax", "probabilities"),
])
def test_classifier_activation_names_and_callables(activation, recorded, layer):
    model = zoo.build("doubling", classifier_activation=activation, **KW)
    assert zoo.model_info(model)["classifier_activation"] == recorded
    assert model.layers[-1].name == layer


@pytest.mark.parametrize("kwargs, match", [
    (dict(classifier_activation="nope"), "classifier_activation='nope' is not a Keras activation"),
    (dict(classifier_activation=3), "classifier_activation must be None"),
    (dict(classifier_activation=None, include_top=False, num_classes=None),
     "classifier_activation is the classifier head's activation, which include_top=False leaves out"),
])
def test_bad_classifier_activation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.build("doubling", **{**KW, **kwargs})


def test_compile_helpers_train_a_logits_head_from_logits():
    model = zoo.compile_classifier(zoo.build("doubling", classifier_activation=None, **KW))
    assert model.loss.get_config()["from_logits"] is True
    zoo.Recipe(epochs=1).compile(model, n_train=5)
    assert model.loss.get_config()["from_logits"] is True
    # The loss of a logits head equals the softmax head's loss on the same weights.
    twin = zoo.compile_classifier(zoo.build("doubling", **KW))
    assert twin.loss == "sparse_categorical_crossentropy"
    np.testing.assert_allclose(model.evaluate(X, Y, verbose=0)[0], twin.evaluate(X, Y, verbose=0)[0],
                               rtol=1e-5)
    sigmoid = zoo.build("doubling", classifier_activation="sigmoid", **KW)
    with pytest.raises(ValueError, match="needs softmax probabilities or logits, but this model's "
                                         "head ends in 'sigmoid'"):
        zoo.compile_classifier(sigmoid)


def test_logits_head_reloads_from_a_keras_file(tmp_path):
    model = zoo.build("doubling", classifier_activation=None, **KW)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert zoo.model_info(loaded)["classifier_activation"] is None
    np.testing.assert_allclose(loaded.predict_on_batch(X), model.predict_on_batch(X), rtol=1e-6)


# --- clone_model ----------------------------------------------------------------------------

def test_clone_model_keeps_model_info(softmax_model):
    info = zoo.model_info(softmax_model)
    clone = keras.models.clone_model(softmax_model)
    assert isinstance(clone, zoo.ZooModel) and zoo.model_info(clone) == info
    # with a clone_function (how tuning's slim search adds its regularisers) and new inputs too
    clone = keras.models.clone_model(
        softmax_model, clone_function=lambda layer: layer.__class__.from_config(layer.get_config()))
    assert zoo.model_info(clone) == info
    clone = keras.models.clone_model(softmax_model, input_tensors=keras.Input((8, 8, 1)))
    assert zoo.model_info(clone) == info
    # a plain functional model made of a zoo model's tensors is no zoo model
    assert zoo.model_info(keras.Model(softmax_model.inputs, softmax_model.outputs)) is None


# --- input_tensor ---------------------------------------------------------------------------

def test_input_tensor_builds_on_a_given_tensor(softmax_model):
    kw = {k: v for k, v in KW.items() if k != "input_shape"}
    same = zoo.build("doubling", input_tensor=keras.Input((8, 8, 1)), **kw)
    assert all(np.array_equal(a, b) for a, b in zip(softmax_model.get_weights(), same.get_weights()))
    assert zoo.model_info(same) == zoo.model_info(softmax_model)
    # a tensor after a preprocessing layer: the model starts at its source input, as in
    # keras.applications, and takes the preprocessing with it
    inputs = keras.Input((8, 8, 1))
    model = zoo.build("doubling", input_tensor=keras.layers.Rescaling(1 / 255)(inputs), **kw)
    assert model.inputs[0] is inputs and model.layers[1].name.startswith("rescaling")
    np.testing.assert_allclose(model.predict_on_batch(X * 255), softmax_model.predict_on_batch(X),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_tensor=np.zeros((1, 8, 8, 1))), "input_tensor must be a Keras tensor"),
    (dict(input_tensor=keras.Input((8,))), r"input_tensor must have shape \(batch, height, width"),
    (dict(input_tensor=keras.Input((8, 8, 1)), input_shape=(9, 9, 1)),
     r"input_shape=\(9, 9, 1\) differs from input_tensor's shape \(8, 8, 1\)"),
])
def test_bad_input_tensor(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.build("doubling", num_classes=3, depth=2, base_filters=4, **kwargs)


# --- images of any size ---------------------------------------------------------------------

def test_any_input_size_where_global_pooling_ends_the_network(softmax_model):
    model = zoo.build("doubling", **{**KW, "input_shape": (None, None, 1)})
    assert zoo.model_info(model)["input_shape"] == [None, None, 1]
    model.set_weights(softmax_model.get_weights())  # the same weights: no shape depends on the size
    np.testing.assert_allclose(model.predict_on_batch(X), softmax_model.predict_on_batch(X), rtol=1e-5)
    assert model.predict_on_batch(np.zeros((2, 13, 21, 1), np.float32)).shape == (2, 3)
    headless = zoo.build("doubling", input_shape=(None, 12, 3), include_top=False, pooling="max")
    assert headless.output_shape == (None, 64)
    features = zoo.build("doubling", input_shape=(None, None, 3), include_top=False)
    assert features.output_shape == (None, None, None, 64)


def test_any_input_size_in_budgets_and_describe():
    fitted = zoo.plan("doubling", depth=4, input_shape=(None, None, 3), max_params=5000)
    assert fitted.costs.macs is None  # unknown without a size, and said so
    assert fitted == zoo.plan("doubling", depth=4, input_shape=(32, 32, 3), max_params=5000)
    model = zoo.build("doubling", depth=4, input_shape=(None, None, 3), max_params=5000)
    desc = zoo.describe(model)
    assert desc.total_params == model.count_params() == fitted.costs.params
    assert desc.total_macs is None and desc.rows[0]["output_hw"] == (None, None)
    assert desc.rows[-1]["macs"] == 170  # the dense head's MACs do not depend on the size
    assert "?x?" in str(desc) and str(desc).splitlines()[-1].split()[-2] == "?"
    with pytest.raises(ValueError, match=r"input \?x\?x3, 10 classes\): it ranges from 116 params "
                                         r"\(narrowest\) to [\d,]+ params \(widest"):
        zoo.plan("doubling", input_shape=(None, None, 3), max_params=50)
    with pytest.raises(ValueError, match="max_macs counts multiply-accumulates per image, which depend "
                                         "on the image size.*budget max_params alone"):
        zoo.build("doubling", input_shape=(None, None, 3), max_macs=100_000)


@pytest.mark.parametrize("shape", [(None, None, None), (0, None, 3), (None, None)])
def test_any_size_is_only_height_and_width(shape):
    with pytest.raises(ValueError, match="input_shape must be .* \\(height and width may be None"):
        zoo.build("doubling", input_shape=shape)


def test_export_refuses_an_open_input_size_saying_how(tmp_path):
    from serving import export

    model = zoo.build("doubling", **{**KW, "input_shape": (None, None, 1)})
    with pytest.raises(ValueError, match="fixed height, width and channels .* build it with "
                                         "input_shape=\\(height, width, channels\\)"):
        export(model, tmp_path, name="any", trained=True)


def test_measured_costs_refuse_an_open_input_size():
    from tuning.constraints import measure_costs

    model = zoo.build("doubling", **{**KW, "input_shape": (None, None, 1)})
    with pytest.raises(ValueError, match="takes images of any size .* MACs and latency depend on the size"):
        measure_costs(model)
