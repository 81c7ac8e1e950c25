"""The comparison's estimators on synthetic accuracies with known effects (numpy only, no training):
coverage of the pooled interval, Holm, unbalanced cells, and the seed allocation rule's error rate."""
import math

import numpy as np
import pytest
from scipy import stats

from tuning.comparisons.stats import (Allocation, equal_variance_check, holm, paired_interval,
                                  pooled_contrasts, simulate_allocation, t_quantile)

RULES = ["doubling"] + [f"r{i}" for i in range(1, 8)]
EFFECTS = np.array([0.0, 0.01, -0.005, 0.0, 0.002, 0.0, 0.003, -0.01])


def _study(rng, seeds=5, drop=(), noise=None):
    """accuracy = 0.8 + rule effect + seed effect + noise, one (rule, seed) cell per run; `noise`
    maps a rule to its own noise sd (default 0.004 for every rule)."""
    noise = noise or {}
    seed_effect = rng.normal(0, 0.01, seeds)
    acc = {(RULES[i], s): 0.8 + EFFECTS[i] + seed_effect[s] + rng.normal(0, noise.get(RULES[i], 0.004))
           for i in range(len(RULES)) for s in range(seeds)}
    for cell in drop:
        del acc[cell]
    return acc


@pytest.mark.parametrize("drop", [(), (("r3", 4), ("doubling", 2))], ids=["balanced", "missing"])
def test_pooled_interval_covers_the_true_effect_95_percent(drop):
    rng = np.random.default_rng(1)
    draws, covered, simultaneous = 600, 0, 0
    for _ in range(draws):
        est = pooled_contrasts(_study(rng, drop=drop), "doubling")
        truth = {r: EFFECTS[i] - EFFECTS[0] for i, r in enumerate(RULES) if i}
        covered += sum(est[r].covers(t) for r, t in truth.items())
        simultaneous += all(est[r].sim_low <= t <= est[r].sim_high for r, t in truth.items())
    rate = covered / (draws * (len(RULES) - 1))
    # 4,200 intervals: a binomial 95% band around 0.95 is about +-0.007.
    assert 0.935 <= rate <= 0.965, rate
    assert simultaneous / draws >= 0.93  # Bonferroni: at least 95% up to Monte Carlo noise


def test_pooled_balanced_is_the_block_design_formula():
    rng = np.random.default_rng(2)
    acc = _study(rng, seeds=4)
    est = pooled_contrasts(acc, "doubling")
    y = np.array([[acc[(r, s)] for s in range(4)] for r in RULES])
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (len(RULES) - 1) * (4 - 1)
    sigma2 = (resid ** 2).sum() / df
    for i, rule in enumerate(RULES[1:], start=1):
        iv = est[rule]
        assert iv.df == df == 21
        assert iv.mean == pytest.approx(y[i].mean() - y[0].mean())
        assert iv.se == pytest.approx(math.sqrt(2 * sigma2 / 4))
        assert iv.high - iv.mean == pytest.approx(stats.t.ppf(0.975, df) * iv.se)


def test_pooled_with_a_missing_run_keeps_its_rule_and_loses_one_df():
    rng = np.random.default_rng(3)
    full = pooled_contrasts(_study(rng, seeds=3), "doubling")
    rng = np.random.default_rng(3)
    part = pooled_contrasts(_study(rng, seeds=3, drop=[("r1", 2)]), "doubling")
    assert part["r1"].n == 2 and full["r1"].n == 3
    assert part["r1"].df == full["r1"].df - 1 == 13
    assert part["r1"].se > full["r2"].se * 0.99  # fewer runs: no narrower than its neighbours
    # A rule with no run at all is simply absent; one with a single seed is still estimable.
    one = {k: v for k, v in _study(np.random.default_rng(4), seeds=3).items()
           if not (k[0] == "r5" and k[1] > 0)}
    est = pooled_contrasts(one, "doubling")
    assert est["r5"].has_interval and est["r5"].n == 1
    assert pooled_contrasts({("r1", 0): 0.5}, "doubling") == {}


def test_holm_adjusted_p_values():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})  # monotone step-down
    assert holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})


def test_paired_interval_and_quantiles():
    iv = paired_interval([0.10, 0.11, 0.10])
    assert iv.low > 0 and iv.df == 2 and iv.mean == pytest.approx(0.31 / 3)
    assert not paired_interval([0.1]).has_interval
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3) and math.isnan(t_quantile(0))
    with pytest.raises(ValueError):
        paired_interval([])


def test_allocation_decides_open_different_equivalent_cap():
    a = Allocation(first=3, cap=5, relevant=0.005)
    assert a.looks == 3 and a.look_level == pytest.approx(1 - 0.05 / 3)
    assert a.decide([0.01, 0.02]) == "open"  # before the first seeds are in
    assert a.decide([0.020, 0.021, 0.022]) == "different"
    assert a.decide([0.0001, -0.0001, 0.0]) == "equivalent"
    assert a.decide([0.01, -0.01, 0.0]) == "open"
    assert a.decide([0.01, -0.01, 0.0, 0.01, -0.01]) == "cap"
    with pytest.raises(ValueError, match="first seeds must be an int >= 2"):
        Allocation(first=1, cap=3)
    with pytest.raises(ValueError, match="cap must be"):
        Allocation(first=3, cap=2)


def test_allocation_error_rate_by_simulation():
    """With no true difference the rule calls a cell different at most ~5% of the time, because
    its looks are Bonferroni-corrected; the same rule with plain 95% looks would not be."""
    a = Allocation(first=3, cap=5, relevant=0.005)
    null = simulate_allocation(a, 0.0, 0.005, draws=20000)
    naive = simulate_allocation(a, 0.0, 0.005, draws=20000, look_level=0.95)
    assert null["called_different"] <= 0.05 + 0.004  # Monte Carlo sd ~0.0015
    assert naive["called_different"] > 0.07  # stopping on significance inflates it
    assert null["mean_seeds"] < a.cap
    # Seeds are saved where the answer is clear, and a real difference is still found.
    small_noise = simulate_allocation(a, 0.0, 0.001, draws=5000)
    assert small_noise["mean_seeds"] < 3.5 and small_noise["called_different"] <= 0.05
    big = simulate_allocation(a, 0.02, 0.005, draws=5000)
    assert big["called_different"] > 0.95 and big["mean_seeds"] < 4


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_variance_check_keeps_its_level_and_finds_an_unstable_rule(seeds):
    """Bartlett's test on the pooled fit's residuals: with one noise variance it rejects about
    5% of budgets (not more: a check that cried wolf would discredit every pooled interval); a
    rule with 10x the noise (as `decreasing` at small MAC budgets) is found and named."""
    rng = np.random.default_rng(seeds)
    equal = [equal_variance_check(_study(rng, seeds), "doubling") for _ in range(800)]
    level = np.mean([c.rejected() for c in equal])
    # 800 draws: a binomial 95% band around 0.05 is about +-0.015.
    assert level <= 0.07, level
    # With one noise variance, each rule's squared spread estimates it without bias (0.004^2).
    assert math.sqrt(np.mean([c.spread["r1"] ** 2 for c in equal])) == pytest.approx(0.004, rel=0.1)
    checks = [equal_variance_check(_study(rng, seeds, noise={"r3": 0.04}), "doubling")
              for _ in range(200)]
    assert np.mean([c.rejected() for c in checks]) >= 0.7
    assert np.mean([c.widest == "r3" for c in checks]) >= 0.9


def test_the_variance_check_needs_residuals_and_two_runs_per_rule():
    rng = np.random.default_rng(4)
    assert equal_variance_check(_study(rng, seeds=1), "doubling") is None  # no residual df
    acc = _study(rng, seeds=3, drop=(("r3", 1), ("r3", 2)))
    assert equal_variance_check(acc, "doubling") is None  # r3 has one run
    assert equal_variance_check(_study(rng), "nope") is None  # no reference rule


def test_a_rule_the_fit_reproduces_exactly_is_not_read_as_unequal_variance():
    """A rule whose runs are each on a seed no other rule ran (a comparison under way) has zero
    residuals: that is the design, not evidence. Bartlett read it as p ~ 1e-10, "rejected"."""
    rng = np.random.default_rng(5)
    acc = {(r, s): 0.8 + rng.normal(0, 0.004) for r in RULES[:3] for s in range(3)}
    acc[("late", 5)], acc[("late", 6)] = 0.7, 0.75
    check = equal_variance_check(acc, "doubling")
    assert check is not None and "late" not in check.spread and not check.rejected()
    assert check.p == pytest.approx(equal_variance_check(
        {k: v for k, v in acc.items() if k[0] != "late"}, "doubling").p)
