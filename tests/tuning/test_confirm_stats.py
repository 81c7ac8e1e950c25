"""The confirmatory study's statistics on synthetic data with known truth (numpy/scipy only, no
training): power, TOST, the heteroscedastic fit's coverage, Holm over a family, the bootstrap
over seeds and test images, leave-one-seed-out and the rule x budget interaction."""
import math

import numpy as np
import pytest

from tuning.comparisons.stats import (bootstrap_contrast, combine, family_holm, hetero_contrasts,
                                      leave_one_seed_out, mcnemar, paired_power, pooled_contrasts,
                                      seeds_for_power, tost, tost_power)


def _simulated_rates(effect, sd, n, alpha, margin, draws=20000, seed=0):
    from scipy import stats

    d = np.random.default_rng(seed).normal(effect, sd, (draws, n))
    mean, se = d.mean(axis=1), d.std(axis=1, ddof=1) / math.sqrt(n)
    two_sided = np.abs(mean / se) > stats.t.ppf(1 - alpha / 2, n - 1)
    crit = stats.t.ppf(1 - alpha, n - 1)
    tost = ((mean + margin) / se > crit) & ((mean - margin) / se < -crit)
    return two_sided.mean(), tost.mean()


@pytest.mark.parametrize("effect,n", [(0.003, 10), (0.003, 25), (0.001, 16)])
def test_power_matches_simulation(effect, n):
    sim_t, sim_tost = _simulated_rates(effect, 0.004, n, 0.01, 0.005)
    assert paired_power(effect, 0.004, n, 0.01) == pytest.approx(sim_t, abs=0.012)
    # TOST's power is a lower bound (Bonferroni's inequality), tight where it matters
    assert sim_tost - 0.02 <= tost_power(0.005, 0.004, n, 0.01, effect) <= sim_tost + 0.012


def test_power_at_no_effect_is_the_level_and_seeds_reach_the_target():
    assert paired_power(0.0, 0.004, 12, 0.05) == pytest.approx(0.05, abs=1e-9)
    n = seeds_for_power(lambda k: paired_power(0.003, 0.004, k, 0.05 / 9))
    assert paired_power(0.003, 0.004, n, 0.05 / 9) >= 0.8 > paired_power(0.003, 0.004, n - 1,
                                                                          0.05 / 9)
    with pytest.raises(ValueError, match="no seed count up to 5"):
        seeds_for_power(lambda k: paired_power(0.003, 0.004, k), high=5)


# The exploratory spreads (points) of the noisiest pattern the review found: at 1.9M MACs
# decreasing's runs spread ~10x the others'; at 100k params doubling was the noisiest rule.
STUDY_SPREADS = {"1.9M MACs": {"doubling": 0.30, "linear": 0.35, "geometric": 0.30, "regnet": 0.30,
                               "decreasing": 3.0},
                 "100k params": {"doubling": 0.40, "constant": 0.20, "geometric": 0.10,
                                 "diamond": 0.15}}


def _coverage(spreads, seeds, draws=300, seed=0):
    rng = np.random.default_rng(seed)
    effects = {r: 0.002 * i for i, r in enumerate(spreads)}
    hit = {"hetero": [], "pooled": []}
    for _ in range(draws):
        block = rng.normal(0, 0.01, seeds)
        acc = {(r, s): 0.85 + effects[r] + block[s] + rng.normal(0, sd / 100)
               for r, sd in spreads.items() for s in range(seeds)}
        for name, fit in (("hetero", hetero_contrasts), ("pooled", pooled_contrasts)):
            got = fit(acc, "doubling")
            hit[name] += [got[r].covers(effects[r] - effects["doubling"]) for r in got]
    return {k: float(np.mean(v)) for k, v in hit.items()}


@pytest.mark.parametrize("pattern", sorted(STUDY_SPREADS))
@pytest.mark.parametrize("seeds", [5, 16])
def test_the_heteroscedastic_fit_covers_under_unequal_variances(pattern, seeds):
    """300 simulated studies per case: the per-rule-variance fit keeps ~95% coverage where the
    pooled fit, which assumes one variance, does not (it falls to ~70-85%)."""
    cov = _coverage(STUDY_SPREADS[pattern], seeds)
    assert 0.92 <= cov["hetero"] <= 0.99, cov
    assert cov["pooled"] < cov["hetero"]


def test_the_heteroscedastic_fit_matches_the_paired_t_with_equal_variances_in_the_limit():
    rng = np.random.default_rng(3)
    acc = {(r, s): rng.normal(0.8, 0.004) for r in ("doubling", "a", "b") for s in range(6)}
    het, pooled = hetero_contrasts(acc, "doubling"), pooled_contrasts(acc, "doubling")
    for r in ("a", "b"):
        assert het[r].mean == pytest.approx(pooled[r].mean)  # same fit, another variance
        assert 2 <= het[r].df <= pooled[r].df
    # two rules: no per-rule variance can be told from the other's; no fit rather than a wrong one
    assert hetero_contrasts({k: v for k, v in acc.items() if k[0] != "b"}, "doubling") == {}


def test_tost_decides_equivalence_by_the_margin_and_keeps_its_level():
    assert tost([0.001, 0.002, -0.001, 0.0, 0.001], 0.005).p < 0.001
    assert tost([0.004, 0.006, 0.005, 0.007, 0.003], 0.005).p > 0.3
    low, high = tost([0.001, 0.002, -0.001, 0.0, 0.001], 0.005).interval()
    assert -0.005 < low < high < 0.005
    # at a true difference on the margin, TOST rejects at most alpha of the time
    d = np.random.default_rng(0).normal(0.005, 0.004, (2000, 8))
    rate = np.mean([tost(row, 0.005).p <= 0.05 for row in d])
    assert rate <= 0.06
    with pytest.raises(ValueError, match="margin must be > 0"):
        tost([0.1, 0.2], 0)


def test_the_bootstrap_counts_the_test_images_as_well_as_the_seeds():
    rng = np.random.default_rng(0)
    images = 2000
    hard = rng.random(images) < 0.1  # images both models tend to miss: shared test-set noise
    ref = np.stack([(rng.random(images) > 0.05) & ~(hard & (rng.random(images) < 0.8))
                    for _ in range(6)])
    rule = np.stack([(rng.random(images) > 0.04) & ~(hard & (rng.random(images) < 0.8))
                     for _ in range(6)])
    mean, low, high = bootstrap_contrast(rule, ref, draws=1000)
    assert low < mean < high
    assert mean == pytest.approx(float(rule.mean() - ref.mean()))
    # resampling only the seeds (one image set) gives a narrower interval than both together
    per_seed = rule.mean(axis=1) - ref.mean(axis=1)
    seeds_only = np.diff(np.quantile(per_seed[rng.integers(0, 6, (1000, 6))].mean(axis=1),
                                     [0.025, 0.975]))[0]
    assert high - low > seeds_only
    with pytest.raises(ValueError, match="one shape"):
        bootstrap_contrast(rule, ref[:3])
    assert mcnemar(rule[0], rule[0]) == 1.0
    assert mcnemar(np.ones(40, bool), np.r_[np.zeros(20, bool), np.ones(20, bool)]) < 1e-4


def test_the_bootstrap_interval_covers_by_simulation():
    """Two models with a true accuracy difference of 1 point on an infinite image population:
    the interval over 6 seeds and 1,000 sampled images covers it ~95% of the time (100 draws)."""
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(100):
        p = rng.uniform(0.7, 1.0, 1000)  # per-image difficulty, the test set's own sampling
        seed_shift = rng.normal(0, 0.005, (6, 1))
        ref = rng.random((6, 1000)) < np.clip(p - 0.005 + seed_shift, 0, 1)
        rule = rng.random((6, 1000)) < np.clip(p + 0.005 + seed_shift, 0, 1)
        _, low, high = bootstrap_contrast(rule, ref, draws=300, seed=int(rng.integers(1 << 30)))
        hits.append(low <= 0.01 <= high)
    assert 0.88 <= np.mean(hits) <= 1.0


def test_family_holm_counts_tests_not_run_yet_and_leave_one_seed_out():
    adj = family_holm({"a": 0.01, "b": math.nan, "c": 0.02})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.04)
    assert math.isnan(adj["b"])
    steady = [0.003, 0.004, 0.002, 0.005, 0.003, 0.004]
    assert leave_one_seed_out(steady, "superiority", 0.005, {"x": 0.5}) == (6, 6)
    fragile = [0.003, 0.0032, 0.0029, 0.0031, -0.002]  # one seed decides the verdict
    same, n = leave_one_seed_out(fragile, "superiority", 0.005, {})
    assert n == 5 and same < 5


def test_combined_effect_and_heterogeneity():
    same = combine([(0.0030, 0.001), (0.0035, 0.0012), (0.0033, 0.001)])
    assert same.p < 0.001 and same.q_p > 0.5 and same.budgets == 3
    low, high = same.interval()
    assert low < 0.0033 < high
    opposite = combine([(0.004, 0.001), (-0.004, 0.001)])
    assert opposite.q_p < 0.001 and abs(opposite.mean) < 1e-12


def test_the_variance_check_says_when_it_cannot_test():
    """With two rules Bartlett's p was nan (or 1) and compare.md printed 'not rejected'."""
    from tuning.comparisons.report import _variance_line
    from tuning.comparisons.stats import equal_variance_check

    rng = np.random.default_rng(0)
    acc = {(r, s): 0.8 + rng.normal(0, sd) for r, sd in (("doubling", 0.001), ("a", 0.02))
           for s in range(5)}
    check = equal_variance_check(acc, "doubling")
    assert math.isnan(check.p) and check.untestable
    line = _variance_line("2,000 params", check)
    assert "cannot be tested" in line and "not rejected" not in line
