"""Budget fitting: every rule x block fills its budget within +-3%, counted exactly as describe, and
keeps the rule's order (equal layers equal, a wider layer never narrower); a budget between two
networks names the nearest budgets that can be reached."""
import re

import pytest

import zoo
from zoo.budget import BudgetError, fit_widths
from zoo.costs import Architecture, count_costs

RULES = [r for r in zoo.list_models() if r != "custom" and not r.startswith("test_")]
SHAPE = (12, 12, 1)


def keeps_order(profile, widths) -> bool:
    """Equal profile widths stay equal and a wider one never ends narrower (every pair)."""
    pairs = [(p, a, q, b) for p, a in zip(profile, widths) for q, b in zip(profile, widths)]
    return (all(a == b for p, a, q, b in pairs if p == q)
            and all(a <= b for p, a, q, b in pairs if p < q))


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
    for budget in (15_000, 40_000):
        fitted = zoo.plan(rule, max_params=budget, **base)
        model = zoo.build(rule, max_params=budget, **base)
        params = zoo.describe(model).total_params
        assert abs(params - budget) <= 0.03 * budget, (fitted, params)
        assert zoo.model_info(model)["filters"] == list(fitted)
        assert fitted.profile == list(unfitted) and fitted.costs.params == params
        assert keeps_order(fitted.profile, fitted), fitted
    macs_budget = 2_500_000
    fitted = zoo.plan(rule, max_macs=macs_budget, **base)
    macs = zoo.describe(zoo.build("custom", filters=list(fitted), input_shape=SHAPE, num_classes=5,
                                  block=block)).total_macs
    assert abs(macs - macs_budget) <= 0.03 * macs_budget


@pytest.mark.parametrize("block", sorted(zoo.BLOCKS))
@pytest.mark.parametrize("rule", RULES)
def test_fitted_plans_keep_the_rules_order_at_every_budget(rule, block):
    # plans only (no Keras): 28x28 and 32x32 networks at the study's budgets, params and MACs
    for shape, depth, budgets in (((28, 28, 1), 6, dict(max_params=(15_000, 40_000, 101_000,
                                                                    289_000))),
                                  ((32, 32, 3), 8, dict(max_params=(50_000, 200_000),
                                                        max_macs=(5_000_000, 20_000_000)))):
        for kind, values in budgets.items():
            for budget in values:
                fitted = zoo.plan(rule, input_shape=shape, depth=depth, block=block,
                                  **{kind: budget})
                used = fitted.costs.params if kind == "max_params" else fitted.costs.macs
                assert abs(used - budget) <= 0.03 * budget, (fitted, used)
                assert keeps_order(fitted.profile, fitted), (fitted.profile, list(fitted))


@pytest.mark.parametrize("rule", ["doubling", "linear", "geometric", "diamond"])
def test_fitting_in_multiples_of_8_keeps_the_order(rule):
    fitted = zoo.plan(rule, input_shape=(32, 32, 3), depth=8, round_to=8, max_params=500_000)
    assert all(w % 8 == 0 for w in fitted) and keeps_order(fitted.profile, fitted), fitted
    assert abs(fitted.costs.params - 500_000) <= 15_000


def test_keeps_order_helper_can_fail():
    assert keeps_order([16, 16, 32, 32], [5, 5, 9, 9]) and keeps_order([4, 2], [3, 3])
    assert not keeps_order([16, 16, 32, 32], [13, 12, 24, 24])
    assert not keeps_order([16, 32], [9, 8])


def test_doubling_on_digits_stays_doubling():
    # the plans the issue reported as 13-12-24-23-47-47 and 7-7-15-14-29-28
    for budget in (40_000, 15_000):
        fitted = zoo.plan("doubling", input_shape=(8, 8, 1), depth=6, max_params=budget)
        assert fitted[0] == fitted[1] < fitted[2] == fitted[3] < fitted[4] == fitted[5], fitted
        assert abs(fitted.costs.params - budget) <= 0.03 * budget


def _strict(budget: int):
    """doubling on 8x8x1 at depth 4, fitted with its order kept strictly (no rounding one by one)."""
    from zoo.plans import architecture

    arch = architecture(input_shape=(8, 8, 1), num_classes=10, block="plain", downsample="max",
                        downsample_at=(2,), kernel_size=3)
    return fit_widths([16, 16, 32, 32], arch, max_params=budget, strict_order=True)


def test_budget_between_two_networks_names_the_nearest_reachable_budgets():
    with pytest.raises(BudgetError) as info:
        _strict(100)
    message = str(info.value)
    assert "max_params=100 falls between two networks" in message
    assert "outside" not in message and "ranges from" not in message
    low, high = map(int, re.search(r"nearest budgets that can be reached are max_params=(\d+) "
                                   r"and max_params=(\d+)", message).groups())
    assert low < 100 < high
    for budget in (low, high):
        assert abs(_strict(budget)[2].params - budget) <= 0.03 * budget
    for budget in range(low + 1, high):  # nothing between them fits
        with pytest.raises(BudgetError):
            _strict(budget)
    # zoo.plan rounds the layers one by one where the strict order cannot reach a budget; 100
    # stays out of reach even so, and its message is the same
    with pytest.raises(BudgetError, match="max_params=100 falls between two networks"):
        zoo.plan("doubling", max_params=100, input_shape=(8, 8, 1), depth=4, base_filters=16)


def test_fitting_keeps_the_shape():
    fitted = zoo.plan("doubling", depth=6, base_filters=32, max_params=20_000)
    assert fitted.profile == [32, 32, 64, 64, 128, 128]
    assert fitted[2] / fitted[0] == pytest.approx(2, rel=0.1)
    assert fitted[4] / fitted[2] == pytest.approx(2, rel=0.1)
    assert fitted.downsample_at == (1, 3)


def test_both_budgets_the_tighter_decides():
    plan = zoo.plan("doubling", depth=4, base_filters=16, max_params=10**9, max_macs=3_000_000)
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


def test_an_explicit_list_is_not_lost_to_a_coarse_step():
    # a search's draw 32-32 at 4,000 params on digits: no equal pair fits within 3%, so its two
    # layers are rounded one by one (a rule in the same place likewise: equal budgets come first)
    kw = dict(input_shape=(8, 8, 1), max_params=4_000)
    drawn = zoo.plan("custom", filters=[32, 32], **kw)
    assert abs(drawn.costs.params - 4_000) <= 120 and abs(drawn[0] - drawn[1]) == 1
    assert list(zoo.plan("constant", depth=2, base_filters=32, **kw)) == list(drawn)
    # when an order-keeping rounding fits, the list keeps its order too
    kept = zoo.plan("custom", filters=[16, 16, 32, 32], **dict(kw, max_params=8_000))
    assert keeps_order(kept.profile, kept)


def test_a_budget_is_filled_within_max_filters():
    """With a budget, max_filters bounds the fitted widths, not the rule's counts (the profile):
    past the point where the widest layer reaches it, the others grow on, each stopping there.
    zoo-tune --filters 8 32 built 49-kernel layers before; plans that fitted keep their widths."""
    kw = dict(depth=4, base_filters=8, input_shape=(8, 8, 1), num_classes=10)
    plan = zoo.plan("doubling", max_filters=32, max_params=20_000, **kw)
    assert list(plan) == [20, 20, 32, 32] and plan.profile == [8, 8, 16, 16]
    assert abs(plan.costs.params - 20_000) <= 0.03 * 20_000
    # the diamond's profile is the rule's, not clamped to a constant by max_filters
    assert zoo.plan("diamond", max_filters=32, max_params=15_000, **kw).profile == [8, 24, 24, 8]
    # a budget the range reaches without the cap: the same widths as without max_filters
    assert list(zoo.plan("doubling", max_filters=64, max_params=20_000, **kw)) == \
        list(zoo.plan("doubling", max_params=20_000, **kw)) == [17, 17, 35, 35]
    with pytest.raises(BudgetError, match="28,778 params"):  # every layer at 32
        zoo.plan("doubling", max_filters=32, max_params=60_000, **kw)
