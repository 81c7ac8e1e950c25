"""The confirmatory study's statistics on synthetic data with known truth (numpy/scipy only, no
training): power, TOST, the heteroscedastic fit's coverage, Holm over a family, the bootstrap
over seeds and test images, leave-one-seed-out and the rule x budget interaction."""
import math

import numpy as np
import pytest

from tuning.comparisons.stats import paired_power, seeds_for_power, tost_power


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
