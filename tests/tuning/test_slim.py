"""tuning.searches.slim: one-shot width learning from BN-gamma sparsity, trained for real on tiny digits."""
import json
import warnings

import numpy as np
import pytest

import zoo
from zoo.costs import Architecture
from tuning.searches import slim

import keras  # noqa: E402  (after zoo, which quiets TensorFlow's start-up)

DEPTH, WIDE = 4, 16
# A few epochs at a higher peak rate: Adam moves a gamma about one learning rate per step, so the
# penalty needs enough total movement to carry gammas from 1 to 0 in a short run.
FAST = dict(epochs=4, learning_rate=1e-2, seed=0)


def _arch(d):
    return dict(input_shape=d.input_shape, num_classes=d.num_classes)


class _Penalties(keras.callbacks.Callback):
    """Records the penalised model's regularisation loss and each BN's weight, before and after."""

    def on_train_begin(self, logs=None):
        self.initial_penalty = self._penalty()
        self.before = self._weights()
        self.ramp = []

    def on_train_batch_begin(self, batch, logs=None):
        if len(self.ramp) < 10:
            self.ramp.append(self._penalty())

    def _penalty(self):
        return float(sum(keras.ops.convert_to_numpy(v) for v in self.model.losses))

    def on_train_end(self, logs=None):
        self.after = self._weights()

    def _weights(self):
        return {layer.name: float(keras.ops.convert_to_numpy(layer.gamma_regularizer.weight))
                for layer in self.model.layers if getattr(layer, "gamma_regularizer", None)}


@pytest.fixture(scope="module")
def plain_run(digits):
    recorder = _Penalties()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the default strength must not collapse it
        result = slim.learn_profile(digits.x_train, digits.y_train, depth=DEPTH, max_filters=WIDE,
                                    validation_data=(digits.x_val, digits.y_val),
                                    callbacks=[recorder], **FAST, **_arch(digits))
    return result, recorder


def test_plain_profile_prunes_some_layers(plain_run):
    result, _ = plain_run
    assert len(result.profile) == DEPTH and result.wide == [WIDE] * DEPTH
    assert all(1 <= w <= WIDE for w in result.profile)
    assert min(result.profile) < WIDE, result.profile  # the default strength prunes something
    assert result.profile == [result.live[f"layer{i}_bn"] for i in range(DEPTH)]
    assert result.groups == [[i] for i in range(DEPTH)]
    assert result.strength == slim.DEFAULT_STRENGTH and result.epochs == 4
    assert result.val_accuracy is not None and result.val_accuracy > 0.5  # trained, not collapsed


def test_penalty_is_normalised_ramped_and_reweighed_as_widths_shrink(plain_run):
    result, recorder = plain_run
    # The wide model's penalty with every gamma at its initial 1 is the strength itself.
    assert recorder.initial_penalty == pytest.approx(result.strength, rel=1e-5)
    # ...but it is ramped in from 0 over the first quarter of the steps (4 epochs here).
    assert recorder.ramp[0] == 0 and 0 < recorder.ramp[-1] < 0.2 * result.strength
    assert recorder.ramp == sorted(recorder.ramp)
    # Narrower neighbours make a channel cheaper (MorphNet's per-epoch reweighting): never dearer.
    assert set(recorder.after) == {f"layer{i}_bn" for i in range(DEPTH)}
    assert all(recorder.after[n] <= recorder.before[n] * (1 + 1e-6) for n in recorder.before)
    assert any(recorder.after[n] < recorder.before[n] * 0.99 for n in recorder.before)


def test_stronger_penalty_prunes_more(digits, plain_run):
    weak = slim.learn_profile(digits.x_train, digits.y_train, depth=DEPTH, max_filters=WIDE,
                              strength=slim.DEFAULT_STRENGTH / 8, **FAST, **_arch(digits))
    strong, _ = plain_run
    assert sum(strong.profile) < sum(weak.profile), (weak.profile, strong.profile)


def test_resource_weights_favour_macs_early():
    # 8x8 input halved after every layer: per channel, early layers are cheap in parameters but
    # expensive in MACs, so MACs / params per channel must fall with depth.
    arch = Architecture(input_shape=(8, 8, 1), num_classes=10, downsample="max",
                        downsample_at=(0, 1, 2))
    widths = [16] * 4
    params = slim.channel_costs(widths, arch, "params")
    macs = slim.channel_costs(widths, arch, "macs")
    ratios = [m / p for m, p in zip(macs, params)]
    assert all(a > b for a, b in zip(ratios, ratios[1:])), ratios
    # One channel of layer 1 (16 in, 16 out to layer 2, 3x3): its conv weights, its BN, and its
    # input slice of the next conv.
    assert params[1] == 9 * 16 + 4 + 9 * 16
    with pytest.raises(ValueError, match="resource must be one of params, macs"):
        slim.channel_costs(widths, arch, "flops")


def test_residual_groups_share_one_width(digits):
    # Strided downsampling puts a projection shortcut at layer 2: two chains, [0, 1] and [2, 3].
    result = slim.learn_profile(digits.x_train, digits.y_train, depth=DEPTH, max_filters=WIDE,
                                block="residual", downsample="strided", **FAST, **_arch(digits))
    assert result.groups == [[0, 1], [2, 3]]
    assert len(result.group_widths) == 2 and len(result.profile) == DEPTH
    assert all(1 <= w <= WIDE for w in result.profile + result.group_widths)
    assert set(result.live) == {f"layer{i}_{k}_bn" for i in range(DEPTH) for k in "ab"} | {
        "layer0_proj_bn", "layer2_proj_bn"}
    for g, layers in enumerate(result.groups):
        for i in layers:
            # One width serves the block's inner conv and the chain it writes to.
            assert result.profile[i] == max(result.live[f"layer{i}_a_bn"], result.group_widths[g])
            # Joined by max, the chain keeps every channel any member keeps.
            assert result.group_widths[g] >= result.live[f"layer{i}_b_bn"]


@pytest.mark.parametrize("budget", [6_000, 20_000])
def test_fit_profile_fills_a_params_budget(plain_run, digits, budget):
    result, _ = plain_run
    for fitted in (slim.fit_profile(result, max_params=budget),
                   slim.fit_profile(result.profile, max_params=budget, **_arch(digits))):
        model = zoo.build("custom", filters=list(fitted), **_arch(digits))
        params = zoo.describe(model).total_params
        assert abs(params - budget) <= 0.03 * budget, (list(fitted), params)
        assert fitted.profile == result.profile


def test_fit_profile_needs_a_budget(plain_run):
    with pytest.raises(ValueError, match="max_params or max_macs"):
        slim.fit_profile(plain_run[0])


def test_result_round_trips_through_json(plain_run):
    result, _ = plain_run
    again = slim.SlimResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert slim.fit_profile(again, max_params=10_000) == slim.fit_profile(result, max_params=10_000)


@pytest.mark.parametrize("damage, match", [
    (lambda d: d.pop("profile"), "missing \\['profile'\\]"),
    (lambda d: d.update(extra=1), "unknown \\['extra'\\]"),
    (lambda d: d.update(profile=d["wide"][:-1]), "one entry per layer"),
    (lambda d: d.update(profile=[d["wide"][0] + 1] + d["profile"][1:]),
     "at most that layer's width"),
    (lambda d: d.update(profile=[0] + d["profile"][1:]), "profile must be a list of ints >= 1"),
    (lambda d: d.update(groups=[[0, 1]]), "groups must be lists of layer indices"),
    (lambda d: d.update(resource="flops"), "resource must be one of"),
    (lambda d: d.update(strength=-1.0), "strength must be a positive finite number"),
    (lambda d: d.update(threshold=2.0), "threshold .* must be in \\(0, 1\\)"),
    (lambda d: d.update(val_accuracy=1.5), "val_accuracy must be None or in \\[0, 1\\]"),
    (lambda d: d.update(live={"layer0_bn": "many"}), "live must map BN layer names to counts >= 1"),
])
def test_from_dict_rejects_damaged_dicts(plain_run, damage, match):
    d = plain_run[0].to_dict()
    damage(d)
    with pytest.raises(ValueError, match=match):
        slim.SlimResult.from_dict(d)


@pytest.mark.parametrize("kwargs, match", [
    (dict(resource="flops"), "resource must be one of params, macs, got 'flops'"),
    (dict(strength=0.0), "strength must be a positive finite number, got 0.0"),
    (dict(strength=float("nan")), "strength must be a positive finite number"),
    (dict(threshold=1.0), "threshold .* must be in \\(0, 1\\), got 1.0"),
    (dict(threshold=-0.1), "threshold must be a positive finite number"),
    (dict(epochs=0), "epochs must be None .* or a positive int, got 0"),
    (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
    (dict(depth=0), "depth must be a positive int, got 0"),
    (dict(depth=2.5), "depth must be a positive int, got 2.5"),
    (dict(max_filters="16"), "max_filters must be a positive int, got '16'"),
    (dict(block="dense"), "unknown block 'dense'; valid blocks: plain, residual, separable"),
    (dict(downsample="blur"), "unknown downsample 'blur'"),
    (dict(seed=-1), "seed must be None or an int >= 0"),
    (dict(callbacks=[object()]), "callbacks must be keras.callbacks.Callback instances"),
    (dict(input_shape=(8, 8, 3)), "x must be a non-empty batch of images of input_shape"),
])
def test_bad_arguments_are_rejected_before_training(digits, kwargs, match):
    args = dict(depth=3, max_filters=8, **_arch(digits))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        slim.learn_profile(digits.x_train[:64], digits.y_train[:64], **args)


def test_regulariser_serialises_and_penalises():
    reg = slim.GammaL1(strength=2.0, weight=0.25)
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, slim.GammaL1) and again.get_config() == reg.get_config() == {
        "strength": 2.0, "weight": 0.25}
    gamma = np.array([1.0, -2.0, 0.5], dtype="float32")
    assert float(again(gamma)) == pytest.approx(2.0 * 0.25 * 3.5)
    # Carried by a layer's config, as a saved model would store it.
    bn = keras.layers.BatchNormalization(gamma_regularizer=reg)
    clone = keras.layers.BatchNormalization.from_config(bn.get_config())
    assert clone.gamma_regularizer.get_config() == reg.get_config()
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        slim.GammaL1(strength=1.0, weight=-1.0)


def test_a_collapsed_network_warns_and_keeps_one_channel_per_layer(digits):
    # Far past the default the penalty overpowers the data and every gamma dies: the profile
    # degenerates to ones and the caller is told why instead of getting a silent [1, 1, 1, 1].
    with pytest.warns(RuntimeWarning, match="collapsed: every .* a lower strength keeps them"):
        result = slim.learn_profile(digits.x_train, digits.y_train, depth=DEPTH, max_filters=WIDE,
                                    strength=slim.DEFAULT_STRENGTH * 16, **FAST, **_arch(digits))
    assert result.profile == [1] * DEPTH
