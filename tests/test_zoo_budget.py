"""Budget fitting: every rule x block fills its budget within +-3%, counted exactly as describe."""
import pytest

import zoo
from zoo.budget import BudgetError, fit_widths
from zoo.costs import Architecture, count_costs

RULES = [r for r in zoo.list_models() if r != "custom" and not r.startswith("test_")]
SHAPE = (12, 12, 1)


@pytest.mark.parametrize("downsample", ["max", "avg", "strided", "none"])
@pytest.mark.parametrize("block", sorted(zoo.BLOCKS))
def test_costs_without_keras_match_describe(block, downsample):
    for filters in ([3, 5, 5, 9], [8, 8, 8, 8], [16, 4, 12, 2]):
        model = zoo.build("custom", filters=filters, input_shape=(9, 9, 2), num_classes=3,
                          block=block, downsample=downsample, downsample_every=1)
        desc = zoo.describe(model)
        info = zoo.model_info(model)
        arch = Architecture(input_shape=(9, 9, 2), num_classes=3, block=block,
                            downsample=downsample,
                            downsample_at=tuple(info["downsample_at"]) if downsample != "none" else ())
        costs = count_costs(filters, arch)
        assert (costs.params, costs.macs) == (desc.total_params, desc.total_macs), filters


@pytest.mark.parametrize("block", sorted(zoo.BLOCKS))
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_and_block_fits_param_and_mac_budgets(rule, block):
    base = dict(input_shape=SHAPE, num_classes=5, depth=4, base_filters=8, block=block)
    unfitted = zoo.plan(rule, **base)
    assert unfitted.scale == 1.0 and unfitted.profile == list(unfitted)
    for budget in (4_000, 40_000):
        fitted = zoo.plan(rule, max_params=budget, **base)
        model = zoo.build(rule, max_params=budget, **base)
        params = zoo.describe(model).total_params
        assert abs(params - budget) <= 0.03 * budget, (fitted, params)
        assert zoo.model_info(model)["filters"] == list(fitted)
        assert fitted.profile == list(unfitted) and fitted.costs.params == params
    macs_budget = 2_000_000
    fitted = zoo.plan(rule, max_macs=macs_budget, **base)
    macs = zoo.describe(zoo.build("custom", filters=list(fitted), input_shape=SHAPE, num_classes=5,
                                  block=block)).total_macs
    assert abs(macs - macs_budget) <= 0.03 * macs_budget


def test_fitting_keeps_the_shape():
    fitted = zoo.plan("doubling", depth=6, base_filters=32, max_params=20_000)
    assert fitted.profile == [32, 32, 64, 64, 128, 128]
    assert fitted[2] / fitted[0] == pytest.approx(2, rel=0.1)
    assert fitted[4] / fitted[2] == pytest.approx(2, rel=0.1)
    assert fitted.downsample_at == (1, 3)


def test_both_budgets_the_tighter_decides():
    plan = zoo.plan("constant", depth=4, base_filters=16, max_params=10**9, max_macs=3_000_000)
    assert plan.costs.params < 10**9 and abs(plan.costs.macs - 3_000_000) <= 90_000


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_params=50), "max_params=50 cannot be reached .* ranges from"),
    (dict(max_params=10**12), "cannot be reached .*widest layer"),
    (dict(max_macs=0), "max_macs must be None or a positive int"),
    (dict(max_params=2.5), "max_params must be None or a positive int"),
    (dict(max_params=5000, block="dense"), "unknown block 'dense'"),
])
def test_unreachable_or_bad_budgets_give_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.plan("doubling", depth=4, base_filters=8, **kwargs)


def test_budget_error_is_a_value_error_from_build():
    with pytest.raises(BudgetError, match="ranges from"):
        zoo.build("doubling", input_shape=(8, 8, 1), depth=4, max_params=10)


def test_fit_widths_validates_its_profile():
    with pytest.raises(ValueError, match="positive numbers"):
        fit_widths([4, 0, 2], Architecture(), max_params=1000)
    with pytest.raises(ValueError, match="needs max_params or max_macs"):
        fit_widths([4, 4], Architecture())


def test_plan_is_a_list_with_its_schedule():
    plan = zoo.plan("doubling", depth=6, base_filters=16)
    assert plan == [16, 16, 32, 32, 64, 64] and isinstance(plan, list)
    assert plan.downsample_at == (1, 3) and plan.rule == "doubling"
    assert zoo.plan("constant", depth=5, downsample_at=[0, 2]).downsample_at == (0, 2)
