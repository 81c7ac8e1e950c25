"""Rules and plans: pure functions, no Keras model needed."""
import math

import pytest

import zoo


def test_builtin_rules_are_registered():
    expected = {"constant", "doubling", "linear", "geometric", "regnet", "decreasing",
                "hourglass", "diamond", "combinatorial", "custom"}
    assert expected <= set(zoo.list_models())
    assert zoo.list_models() == sorted(zoo.list_models())
    assert zoo.list_models("d*") == ["decreasing", "diamond", "doubling"]


def test_doubling_doubles_at_each_downsample():
    assert zoo.plan("doubling", depth=6, base_filters=16) == [16, 16, 32, 32, 64, 64]
    assert zoo.plan("doubling", depth=6, base_filters=8, downsample_every=3) == [8, 8, 8, 16, 16, 16]
    assert zoo.plan("doubling", depth=4, base_filters=8, downsample_at=[0]) == [8, 16, 16, 16]


def test_constant_and_decreasing():
    assert zoo.plan("constant", depth=4, base_filters=24) == [24] * 4
    assert zoo.plan("decreasing", depth=6, base_filters=64) == [64, 64, 32, 32, 16, 16]


def test_linear_is_pyramidnet_additive():
    counts = zoo.plan("linear", depth=5, base_filters=16, alpha=64)
    steps = [b - a for a, b in zip(counts, counts[1:])]
    assert counts[0] == 16 and counts[-1] == 80
    assert all(s == 16 for s in steps)


def test_geometric_is_pyramidnet_multiplicative():
    counts = zoo.plan("geometric", depth=5, base_filters=16, alpha=16.0)
    assert counts == [16, 32, 64, 128, 256]
    # default alpha ends at doubling's last width
    assert zoo.plan("geometric", depth=6, base_filters=16)[-1] == zoo.plan("doubling", depth=6, base_filters=16)[-1]


def test_regnet_is_quantized_linear_multiple_of_8():
    w0, wa, wm = 24, 36.0, 2.5
    counts = zoo.plan("regnet", depth=8, base_filters=w0, wa=wa, wm=wm)
    for j, c in enumerate(counts):
        s = round(math.log((w0 + wa * j) / w0) / math.log(wm))
        assert c == max(8, round(w0 * wm ** s / 8) * 8)
        assert c % 8 == 0
    assert counts == sorted(counts)
    assert len(set(counts)) < len(counts)  # quantized into stages


def test_hourglass_and_diamond_shapes():
    h = zoo.plan("hourglass", depth=7, base_filters=64, ratio=0.25)
    d = zoo.plan("diamond", depth=7, base_filters=16, peak=4.0)
    assert h[0] == h[-1] == 64 and h[3] == 16 and min(h) == h[3]
    assert d[0] == d[-1] == 16 and d[3] == 64 and max(d) == d[3]


def test_combinatorial_all_combinations_capped():
    assert zoo.plan("combinatorial", depth=5, base_filters=3, cap=512) == [3, 7, 127, 512, 512]
    assert zoo.plan("combinatorial", depth=3, base_filters=2, cap=100) == [2, 3, 7]


def test_custom_list_and_depth_from_list():
    assert zoo.plan("custom", filters=[8, 12, 20]) == [8, 12, 20]


def test_rounding_and_clamps():
    counts = zoo.plan("linear", depth=5, base_filters=10, alpha=30, round_to=8)
    assert all(c % 8 == 0 for c in counts)
    assert zoo.plan("doubling", depth=6, base_filters=16, max_filters=40) == [16, 16, 32, 32, 40, 40]
    assert zoo.plan("decreasing", depth=6, base_filters=16, min_filters=6) == [16, 16, 8, 8, 6, 6]


def test_user_rule_register_and_plan():
    @zoo.register("test_triple")
    def triple(layer, *, k: float = 3.0):
        """Triples at each stage."""
        return layer.base_filters * k ** layer.stage

    try:
        assert "test_triple" in zoo.list_models()
        assert zoo.plan("test_triple", depth=4, base_filters=4) == [4, 4, 12, 12]
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("test_triple")(triple)
    finally:
        zoo.unregister("test_triple")


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(name="nope"), ValueError, "unknown rule 'nope'; valid rules: combinatorial"),
    (dict(name="doubling", depth=0), ValueError, "depth must be a positive int"),
    (dict(name="doubling", base_filters=-4), ValueError, "base_filters must be a positive int"),
    (dict(name="doubling", round_to=0), ValueError, "round_to"),
    (dict(name="doubling", max_filters=0), ValueError, "max_filters"),
    (dict(name="doubling", alpha=3), TypeError, "unexpected keyword argument.*alpha.*factor"),
    (dict(name="custom", depth=3, filters=[8, 8]), ValueError, "exactly depth=3"),
    (dict(name="custom", filters=[8, 0, 8]), ValueError, "positive ints"),
    (dict(name="custom"), ValueError, "filters"),
    (dict(name="doubling", depth=4, downsample_at=[3]), ValueError, "downsample_at"),
    (dict(name="doubling", downsample_every=0), ValueError, "downsample_every"),
    (dict(name="regnet", wm=1.0), ValueError, "wm must be > 1"),
    (dict(name="hourglass", ratio=0), ValueError, "ratio"),
])
def test_plan_bad_input(kwargs, exc, match):
    name = kwargs.pop("name")
    with pytest.raises(exc, match=match):
        zoo.plan(name, **kwargs)


def test_rule_returning_nonpositive_is_rejected():
    @zoo.register("test_negative")
    def negative(layer):
        return -1

    try:
        with pytest.raises(ValueError, match="non-positive filter count"):
            zoo.plan("test_negative", depth=2)
    finally:
        zoo.unregister("test_negative")


def test_zoo_readme_says_what_fitting_and_the_rules_do():
    """zoo/README said "layers of equal width stay equal" (constant at 20k on 28x28 is
    21-20-21-20-21-21) and "growing rules end at doubling's last width" (regnet ends at 96)."""
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[2] / "zoo" / "README.md").read_text().split())
    fitted = zoo.plan("constant", depth=6, input_shape=(28, 28, 1), max_params=20000)
    assert "-".join(map(str, fitted)) == "21-20-21-20-21-21" and set(fitted.profile) == {16}
    assert ('zoo.plan("constant", depth=6, input_shape=(28, 28, 1), max_params=20000)` is '
            '`21-20-21-20-21-21`') in text
    for depth in (4, 6, 8):
        assert zoo.plan("regnet", depth=depth, base_filters=16)[-1] == 96
        assert zoo.plan("linear", depth=depth, base_filters=16)[-1] == zoo.plan(
            "doubling", depth=depth, base_filters=16)[-1]
    assert "ending at 96 at depths 4, 6 and 8" in text
    assert "Growing rules default to ending at doubling's last width" not in text
