"""The statistics of a comparison: every rule against doubling at one budget, and when to stop
adding seeds. Pure numpy + scipy.stats (no Keras), so the estimators are tested by simulation.

Two estimates of "rule minus doubling" at one budget, both paired by seed (a seed fixes the data
order of every rule, so runs of one seed share part of their noise):

- **per-rule paired interval** (`paired_interval`): Student's t over that rule's own per-seed
  differences to doubling. Assumes only that the differences are independent and normal; its
  variance comes from that rule alone, so with 2-3 seeds the interval is wide (t = 12.7 at 1 df).
- **pooled paired model** (`pooled_contrasts`): accuracy = rule effect + seed effect + noise, fitted
  by least squares over every rule at the budget (the seed is the block, as in a randomized
  complete block design). Assumes the noise has one variance for every rule and that a seed
  shifts every rule alike (no rule x seed interaction); in exchange the residual variance is
  pooled over all rules, df = (rules - 1)(seeds - 1) when every cell is there. A missing cell (a
  seed a rule did not finish) is simply absent from the fit: the effects stay estimable as long
  as the rule shares a seed with the design (df = cells - rules - seeds + 1), never imputed.
  `equal_variance_check` tests the one-variance assumption on the fit's residuals (Bartlett).
  The family of comparisons against doubling is controlled with Holm's step-down method
  (adjusted p-values); the simultaneous interval shown beside it is Bonferroni's (level
  1 - alpha/m): it excludes 0 only where Holm also rejects, while Holm, step-down and more
  powerful, may reject where it just touches 0.

`Allocation` is the seed allocation rule: after the first seeds, a cell (rule x budget) gets
another seed only while its per-rule paired interval, at a level corrected for the number of
looks, covers both 0 and a practically relevant difference; see its docstring.

`estimate(runs)` computes all of these from a comparison's finished runs (runs.jsonl rows) into
one `Estimates`, which the report only formats.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import stats

__all__ = ["Interval", "t_quantile", "paired_interval", "pooled_contrasts", "holm",
           "VarianceCheck", "equal_variance_check", "Allocation", "simulate_allocation", "LEVEL",
           "REFERENCE_RULE", "Cell", "Estimates", "estimate", "summarize", "paired_differences",
           "pooled_differences", "hetero_differences", "variance_checks", "paired_power", "tost_power",
           "seeds_for_power", "hetero_contrasts", "Tost", "tost", "primary_p", "verdict",
           "family_holm", "leave_one_seed_out", "bootstrap_contrast", "mcnemar", "Combined",
           "combine"]

LEVEL = 0.95
REFERENCE_RULE = "doubling"  # every rule is compared against it
Cell = tuple[str, str]  # (rule, budget key)


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile for `df` degrees of freedom (nan when df < 1)."""
    return float(stats.t.ppf(0.5 + level / 2, df)) if df >= 1 else math.nan


@dataclass(frozen=True)
class Interval:
    """An estimate of rule minus reference with its interval (accuracy as a fraction).

    `p` is the two-sided p-value of "no difference". For pooled estimates `p_holm` is Holm's
    adjusted p-value within the budget's family and `sim_low`/`sim_high` the Bonferroni
    simultaneous interval; for per-rule intervals they are nan.
    """

    mean: float
    low: float
    high: float
    se: float
    df: float
    n: int  # seeds (per-rule) or runs (pooled) the estimate rests on
    p: float = math.nan
    p_holm: float = math.nan
    sim_low: float = math.nan
    sim_high: float = math.nan

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def paired_interval(diffs: Sequence[float], level: float = LEVEL) -> Interval:
    """Student's t interval of the mean of paired differences (nan interval below 2 values)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("paired_interval needs at least one difference")
    mean = float(d.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 0, n)
    se = float(d.std(ddof=1) / math.sqrt(n))
    half = t_quantile(n - 1, level) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else (0.0 if mean else 1.0)
    return Interval(mean, mean - half, mean + half, se, n - 1, n, p)


def holm(pvalues: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Holm's step-down adjusted p-values (reject where adjusted p <= alpha)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[Hashable, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        adjusted[key] = running
    return adjusted


class _Fit(NamedTuple):
    x: np.ndarray  # design: intercept, one column per non-reference rule, per seed but the first
    cells: list[tuple[str, int]]
    others: list[str]  # the non-reference rules, in column order
    beta: np.ndarray
    pinv: np.ndarray
    df: int  # residual degrees of freedom
    resid: np.ndarray


def _additive_fit(acc: Mapping[tuple[str, int], float], reference: str) -> _Fit | None:
    """Least-squares fit of accuracy = rule + seed over the (rule, seed) cells of one budget, or
    None without the reference rule."""
    rules = sorted({r for r, _ in acc})
    if reference not in rules:
        return None
    seeds = sorted({s for _, s in acc})
    others = [r for r in rules if r != reference]
    cells = sorted(acc)
    # Columns: intercept, one per non-reference rule, one per seed but the first.
    x = np.zeros((len(cells), 1 + len(others) + len(seeds) - 1))
    y = np.array([acc[c] for c in cells], dtype=float)
    for i, (rule, seed) in enumerate(cells):
        x[i, 0] = 1.0
        if rule != reference:
            x[i, 1 + others.index(rule)] = 1.0
        if seed != seeds[0]:
            x[i, len(others) + seeds.index(seed)] = 1.0
    pinv = np.linalg.pinv(x)
    beta = pinv @ y
    df = len(cells) - int(np.linalg.matrix_rank(x))
    return _Fit(x, cells, others, beta, pinv, df, y - x @ beta)


def pooled_contrasts(acc: Mapping[tuple[str, int], float], reference: str,
                     level: float = LEVEL) -> dict[str, Interval]:
    """Each rule minus `reference` from the additive model rule + seed over every (rule, seed)
    cell in `acc` (one budget). Rules whose contrast is not estimable, or a fit without residual
    degrees of freedom, get no interval (nan); Holm runs over the rules that have one."""
    fit = _additive_fit(acc, reference)
    if fit is None:
        return {}
    x, cells, others, beta, pinv, df, resid = fit
    sigma2 = float(resid @ resid / df) if df > 0 else math.nan
    cov_unit = pinv @ pinv.T  # (X'X)^+ : covariance of beta per unit of noise variance
    out: dict[str, Interval] = {}
    estimable: dict[str, tuple[float, float]] = {}
    for j, rule in enumerate(others, start=1):
        c = np.zeros(x.shape[1])
        c[j] = 1.0
        # c'beta is estimable iff c lies in the row space of X.
        if not np.allclose(c @ pinv @ x, c, atol=1e-8):
            continue
        mean = float(beta[j])
        n = sum(1 for r, _ in cells if r == rule)
        if df <= 0:
            out[rule] = Interval(mean, math.nan, math.nan, math.nan, df, n)
            continue
        se = math.sqrt(max(float(c @ cov_unit @ c), 0.0) * sigma2)
        estimable[rule] = (mean, se)
        out[rule] = Interval(mean, math.nan, math.nan, se, df, n)
    m = len(estimable)
    if not m:
        return out
    t = t_quantile(df, level)
    t_sim = t_quantile(df, 1 - (1 - level) / m)
    pvals = {r: (float(2 * stats.t.sf(abs(mu) / se, df)) if se > 0 else (0.0 if mu else 1.0))
             for r, (mu, se) in estimable.items()}
    adjusted = holm(pvals)
    for rule, (mean, se) in estimable.items():
        out[rule] = Interval(mean, mean - t * se, mean + t * se, se, df, out[rule].n,
                             pvals[rule], adjusted[rule], mean - t_sim * se, mean + t_sim * se)
    return out


@dataclass(frozen=True)
class VarianceCheck:
    """Does the pooled model's one-noise-variance assumption hold at a budget?

    `p` is Bartlett's test of equal variance of the pooled model's residuals across the rules;
    `spread` is each rule's residual standard deviation (accuracy as a fraction). The residuals
    of one fit are not independent, so the test is approximate; on such residuals it keeps its
    level where Levene's does not, and Brown-Forsythe's has no power at 3 seeds (the simulation
    in tests/tuning/test_compare_stats.py holds its level and power). Like the pooled
    model it assumes normal noise. A diagnostic, one per budget, not corrected for the budgets.
    """

    p: float
    spread: dict[str, float]
    untestable: str = ""  # why the test cannot be made (then p is nan), or ""

    def rejected(self, alpha: float = 1 - LEVEL) -> bool:
        return self.p <= alpha

    @property
    def widest(self) -> str:
        return max(self.spread, key=lambda r: self.spread[r])


def equal_variance_check(acc: Mapping[tuple[str, int], float],
                         reference: str) -> VarianceCheck | None:
    """Bartlett's check of the pooled model at one budget (see `VarianceCheck`); None
    when the fit has no residual df or a rule left has fewer than 2 runs."""
    fit = _additive_fit(acc, reference)
    if fit is None or fit.df <= 0:
        return None
    groups: dict[str, list[float]] = {}
    for (rule, _), r in zip(fit.cells, fit.resid):
        groups.setdefault(rule, []).append(float(r))
    if min(len(g) for g in groups.values()) < 2:
        return None
    # A rule whose runs the fit reproduces exactly (each on a seed no other rule ran, as while
    # a comparison is under way) carries no information on the noise: Bartlett would read its
    # zero variance as the strongest evidence of unequal variances.
    groups = {r: g for r, g in groups.items() if not np.allclose(g, 0.0, rtol=0, atol=1e-12)}
    if len(groups) < 2:
        return None
    # Scaled by sqrt(runs/df): with one noise variance, every rule's spread estimates its sd.
    scale = math.sqrt(len(fit.cells) / fit.df)
    spread = {r: scale * float(np.sqrt(np.mean(np.square(g)))) for r, g in groups.items()}
    if len(groups) == 2:
        # With two rules each seed's two residuals are each other's negatives: the spreads are
        # equal by construction, whatever the noise (Bartlett's p is nan or 1, never evidence).
        return VarianceCheck(math.nan, spread, "with two rules the fit's residuals of one rule "
                             "are the negatives of the other's, so their spreads cannot differ")
    return VarianceCheck(float(stats.bartlett(*groups.values()).pvalue), spread)


@dataclass(frozen=True)
class Allocation:
    """The seed allocation rule: spend seeds where the answer is still open.

    Every cell (rule x budget, doubling included) runs seeds 0..first-1. At each later look (n
    paired seeds, first <= n < cap) a cell gets seed n only while its per-rule paired interval of
    rule minus doubling, at level 1 - alpha/looks, covers 0 *and* a difference of +-`relevant`:
    - the interval excludes 0: the cell is decided (different), it stops;
    - the interval lies within (-relevant, +relevant): decided (no practically relevant
      difference), it stops;
    - otherwise it is open and runs one more seed, up to `cap`. Doubling at a budget runs a seed
      when any open cell at that budget needs it (the pairs need their reference).
    `looks` = cap - first + 1 intervals can be read per cell; Bonferroni over the looks keeps the
    chance that a cell with no true difference is ever called different at or below alpha
    whatever the stopping (`simulate_allocation` measures it; per-look 95% intervals would not).
    """

    first: int
    cap: int
    relevant: float = 0.005
    alpha: float = 1 - LEVEL

    def __post_init__(self) -> None:
        if not isinstance(self.first, int) or isinstance(self.first, bool) or self.first < 2:
            raise ValueError(f"the first seeds must be an int >= 2 (an interval needs 2), got "
                             f"{self.first!r}")
        if not isinstance(self.cap, int) or isinstance(self.cap, bool) or self.cap < self.first:
            raise ValueError(f"the seed cap must be an int >= the first seeds ({self.first}), "
                             f"got {self.cap!r}")
        if not (isinstance(self.relevant, (int, float)) and 0 < self.relevant < 1):
            raise ValueError(f"the relevant difference must be a fraction in (0, 1), got "
                             f"{self.relevant!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")

    @property
    def looks(self) -> int:
        return self.cap - self.first + 1

    @property
    def look_level(self) -> float:
        return 1 - self.alpha / self.looks

    def decide(self, diffs: Sequence[float]) -> str:
        """"open" (run another seed), "different", "equivalent" or "cap" for a cell's paired
        differences so far (seeds 0..n-1)."""
        n = len(diffs)
        if n < self.first:
            return "open"
        iv = paired_interval(diffs, self.look_level)
        if iv.has_interval and (iv.low > 0 or iv.high < 0):
            return "different"
        if iv.has_interval and -self.relevant < iv.low and iv.high < self.relevant:
            return "equivalent"
        return "cap" if n >= self.cap else "open"


def simulate_allocation(allocation: Allocation, effect: float, sd: float, *, draws: int = 20000,
                        seed: int = 0, look_level: float | None = None) -> dict[str, float]:
    """Monte Carlo of the rule for one cell whose per-seed differences are N(effect, sd^2).

    Returns the rate at which the cell is called different (a type I error rate when effect = 0,
    power otherwise), the rate at which the final 95% per-rule interval excludes 0, and the mean
    number of seeds used. `look_level` overrides the rule's per-look level (e.g. 0.95 to see the
    inflation without the correction)."""
    a = allocation
    level = a.look_level if look_level is None else look_level
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, sd, size=(draws, a.cap))
    active = np.ones(draws, dtype=bool)
    called = np.zeros(draws, dtype=bool)
    used = np.full(draws, a.cap)
    final_excludes = np.zeros(draws, dtype=bool)
    for n in range(a.first, a.cap + 1):
        x = d[:, :n]
        mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(n)
        half = t_quantile(n - 1, level) * se
        low, high = mean - half, mean + half
        different = (low > 0) | (high < 0)
        equivalent = (low > -a.relevant) & (high < a.relevant) & ~different
        half95 = t_quantile(n - 1) * se
        excl95 = (mean - half95 > 0) | (mean + half95 < 0)
        stop = active & (different | equivalent | (n == a.cap))
        called |= stop & different
        final_excludes |= stop & excl95
        used[stop] = n
        active &= ~stop
    return {"called_different": float(called.mean()),
            "final_interval_excludes_0": float(final_excludes.mean()),
            "mean_seeds": float(used.mean())}


# --- the estimates of a comparison's runs ---------------------------------------------------------

def _cell(row: Mapping[str, Any]) -> Cell:
    return (str(row["rule"]), str(row["budget"]))


def _accuracy(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, int], float]:
    return {(*_cell(r), int(r["seed"])): float(r["test_accuracy"]) for r in runs}


def _by_budget(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[tuple[str, int], float]]:
    by_budget: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for (rule, budget, seed), value in _accuracy(runs).items():
        by_budget[budget][(rule, seed)] = value
    return by_budget


def _differences(runs: Sequence[Mapping[str, Any]], reference: str) -> dict[Cell, list[float]]:
    """Per (rule, budget): rule minus reference on each seed both ran, in seed order."""
    acc = _accuracy(runs)
    diffs: dict[Cell, list[float]] = defaultdict(list)
    for (rule, budget, seed), value in sorted(acc.items()):
        ref = acc.get((reference, budget, seed))
        if rule != reference and ref is not None:
            diffs[(rule, budget)].append(value - ref)
    return diffs


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[Cell, dict[str, Any]]:
    """Per (rule, budget key): mean and std of test accuracy, mean params/MACs/latency, seeds."""
    groups: dict[Cell, list[Mapping[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[_cell(r)].append(r)
    out = {}
    for key, rows in groups.items():
        accs = [r["test_accuracy"] for r in rows]
        out[key] = {"n": len(rows), "acc_mean": statistics.mean(accs),
                    "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "params": statistics.mean(r["params"] for r in rows),
                    "macs": statistics.mean(r["macs"] for r in rows),
                    "latency_ms": statistics.median(r["latency_ms"] for r in rows),
                    "filters": min(rows, key=lambda r: int(r["seed"])).get("filters")}
    return out


def paired_differences(runs: Sequence[Mapping[str, Any]], reference: str = REFERENCE_RULE,
                       level: float = LEVEL) -> dict[Cell, Interval]:
    """Per (rule, budget): rule minus reference over the seeds both ran, Student's t interval
    from that rule's own differences (`paired_interval`)."""
    return {cell: paired_interval(d, level) for cell, d in _differences(runs, reference).items()}


def pooled_differences(runs: Sequence[Mapping[str, Any]], reference: str = REFERENCE_RULE,
                       level: float = LEVEL) -> dict[Cell, Interval]:
    """Per (rule, budget): rule minus reference from the pooled paired model of its budget
    (`pooled_contrasts`: rule + seed, Holm over the budget's rules)."""
    return {(rule, budget): iv for budget, acc in _by_budget(runs).items()
            for rule, iv in pooled_contrasts(acc, reference, level).items()}


def hetero_differences(runs: Sequence[Mapping[str, Any]], reference: str = REFERENCE_RULE,
                       level: float = LEVEL) -> dict[Cell, Interval]:
    """Per (rule, budget): rule minus reference from the per-rule-variance fit of its budget
    (`hetero_contrasts`)."""
    return {(rule, budget): iv for budget, acc in _by_budget(runs).items()
            for rule, iv in hetero_contrasts(acc, reference, level).items()}


def variance_checks(runs: Sequence[Mapping[str, Any]], reference: str = REFERENCE_RULE
                    ) -> dict[str, VarianceCheck | None]:
    """Per budget: does the pooled model's one noise variance hold (`equal_variance_check`)?"""
    return {budget: equal_variance_check(acc, reference) for budget, acc in _by_budget(runs).items()}


@dataclass(frozen=True)
class Estimates:
    """Everything a comparison's report shows, computed once from its runs.

    `allocation_states` maps each cell with paired seeds to (seeds, `Allocation.decide`'s state);
    `allocation_error` is `simulate_allocation` at no true difference and the median per-cell
    spread of the differences (None without an allocation or without a spread)."""

    summary: dict[Cell, dict[str, Any]]
    paired: dict[Cell, Interval]
    pooled: dict[Cell, Interval]
    variance: dict[str, VarianceCheck | None]
    allocation_states: dict[Cell, tuple[int, str]]
    allocation_spread: float | None
    allocation_error: dict[str, float] | None
    hetero: dict[Cell, Interval] = field(default_factory=dict)


ALLOCATION_DRAWS = 20000


def estimate(runs: Sequence[Mapping[str, Any]], allocation: Allocation | None = None,
             reference: str = REFERENCE_RULE) -> Estimates:
    """Every estimate of the report from the finished runs (none: empty estimates)."""
    if not runs:
        return Estimates({}, {}, {}, {}, {}, None, None)
    states: dict[Cell, tuple[int, str]] = {}
    spread = error = None
    if allocation is not None:
        diffs = _differences(runs, reference)
        states = {cell: (len(d), allocation.decide(d)) for cell, d in diffs.items()}
        spreads = [statistics.stdev(d) for d in diffs.values() if len(d) > 1]
        if spreads:
            spread = statistics.median(spreads)
            error = simulate_allocation(allocation, 0.0, spread, draws=ALLOCATION_DRAWS)
    return Estimates(summarize(runs), paired_differences(runs, reference),
                     pooled_differences(runs, reference), variance_checks(runs, reference),
                     states, spread, error, hetero_differences(runs, reference))


# --- power: how many seeds a confirmatory cell needs -------------------------------------------

def paired_power(effect: float, sd: float, n: int, alpha: float = 1 - LEVEL) -> float:
    """Power of the two-sided paired t-test at level `alpha` with `n` seeds, when the per-seed
    differences are N(effect, sd^2): exact, from the noncentral t distribution."""
    if n < 2:
        return 0.0
    df = n - 1
    nc = effect / (sd / math.sqrt(n))
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def tost_power(margin: float, sd: float, n: int, alpha: float = 1 - LEVEL,
               effect: float = 0.0) -> float:
    """Power of TOST (equivalence within +-`margin`, each one-sided test at `alpha`) with `n`
    seeds whose differences are N(effect, sd^2). Both tests reject together with probability
    >= P(lower rejects) + P(upper rejects) - 1 (the noncentral t of each); that bound, a slight
    underestimate, is returned, so seeds chosen from it are enough."""
    if n < 2:
        return 0.0
    df = n - 1
    se = sd / math.sqrt(n)
    crit = float(stats.t.ppf(1 - alpha, df))
    lower = stats.nct.sf(crit, df, (effect + margin) / se)
    upper = stats.nct.cdf(-crit, df, (effect - margin) / se)
    return max(0.0, float(lower + upper - 1))


def seeds_for_power(power: Callable[[int], float], target: float = 0.8, *, low: int = 2,
                    high: int = 1000) -> int:
    """The fewest seeds n in [low, high] with power(n) >= target (ValueError past `high`)."""
    for n in range(low, high + 1):
        if power(n) >= target:
            return n
    raise ValueError(f"no seed count up to {high} reaches power {target}")


# --- the confirmatory analysis ------------------------------------------------------------------

def hetero_contrasts(acc: Mapping[tuple[str, int], float], reference: str,
                     level: float = LEVEL) -> dict[str, Interval]:
    """Each rule minus `reference` from the same additive fit as `pooled_contrasts` (rule + seed),
    but with one noise variance *per rule* (a heteroscedastic fit).

    The per-rule variances solve E[residual sum of squares of rule r] = sum over rules r' of
    A[r, r'] sigma_r'^2, A[r, r'] = sum of (I - H)_ij^2 over i in r, j in r' (H the fit's hat
    matrix): unbiased for any per-rule variances, balanced or not (Shukla's stability variance
    when balanced). A contrast's variance is sum_i a_i^2 sigma_rule(i)^2 (a = its row of the
    pseudo-inverse), its df Welch-Satterthwaite's for that quadratic form of the residuals
    (df = var^2 / tr(QVQV), V the residuals' covariance at the estimated variances). Needs 3 rules
    (with 2 the residuals of one rule are the negatives of the other's: no per-rule variance can
    be told apart); no Holm here (see `confirmatory_tests`)."""
    fit = _additive_fit(acc, reference)
    if fit is None or fit.df <= 0:
        return {}
    rules = [reference] + fit.others
    if len(rules) < 3:
        return {}
    group = np.array([rules.index(r) for r, _ in fit.cells])
    resid_op = np.eye(len(fit.cells)) - fit.x @ fit.pinv  # I - H
    m2 = resid_op ** 2
    member = np.stack([group == g for g in range(len(rules))]).astype(float)  # rules x cells
    a = member @ m2 @ member.T
    rss = member @ (fit.resid ** 2)
    sigma2, *_ = np.linalg.lstsq(a, rss, rcond=None)
    positive = sigma2[sigma2 > 0]
    floor = 1e-3 * float(positive.mean()) if positive.size else 1e-12
    sigma2 = np.maximum(sigma2, floor)  # an unbiased estimate can come out negative
    v = resid_op @ np.diag(sigma2[group]) @ resid_op.T
    a_inv = np.linalg.pinv(a)
    out: dict[str, Interval] = {}
    for j, rule in enumerate(fit.others, start=1):
        c = np.zeros(fit.x.shape[1])
        c[j] = 1.0
        if not np.allclose(c @ fit.pinv @ fit.x, c, atol=1e-8):
            continue
        coef = c @ fit.pinv  # the contrast's weights on the cells
        w = member @ coef ** 2  # per rule
        var = float(w @ sigma2)
        # var_hat = e'Qe with Q = sum_r (w A^-1)_r D_r: Satterthwaite's df for it.
        q = np.diag((w @ a_inv)[group])
        qv = q @ v
        df = var ** 2 / float(np.trace(qv @ qv)) if var > 0 else math.nan
        se = math.sqrt(var)
        mean = float(fit.beta[j])
        t = float(stats.t.ppf(0.5 + level / 2, df)) if df > 0 else math.nan
        p = float(2 * stats.t.sf(abs(mean) / se, df)) if se > 0 else math.nan
        out[rule] = Interval(mean, mean - t * se, mean + t * se, se, df,
                             sum(1 for r, _ in fit.cells if r == rule), p)
    return out


@dataclass(frozen=True)
class Tost:
    """Two one-sided tests of |difference| < margin on paired differences: `p` is the larger of
    the two one-sided p-values; (low, high) the 1 - 2 alpha interval (inside +-margin exactly
    when p <= alpha)."""

    mean: float
    se: float
    df: float
    p: float
    margin: float

    def interval(self, alpha: float = 1 - LEVEL) -> tuple[float, float]:
        half = float(stats.t.ppf(1 - alpha, self.df)) * self.se
        return self.mean - half, self.mean + half


def tost(diffs: Sequence[float], margin: float) -> Tost:
    """TOST on per-seed differences (same units as `margin`); nan p below 2 differences."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin!r}")
    if n < 2:
        return Tost(float(d.mean()) if n else math.nan, math.nan, 0, math.nan, margin)
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return Tost(mean, se, n - 1, 0.0 if abs(mean) < margin else 1.0, margin)
    p_low = float(stats.t.sf((mean + margin) / se, n - 1))  # H0: difference <= -margin
    p_high = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: difference >= +margin
    return Tost(mean, se, n - 1, max(p_low, p_high), margin)


def primary_p(diffs: Sequence[float], test: str, margin: float) -> float:
    """The primary test's p-value: "superiority" (two-sided paired t) or "equivalence" (TOST)."""
    if test == "superiority":
        return paired_interval(diffs).p if len(diffs) > 1 else math.nan
    if test == "equivalence":
        return tost(diffs, margin).p
    raise ValueError(f"unknown test {test!r}; valid: superiority, equivalence")


def verdict(test: str, mean: float, p_holm: float, alpha: float = 1 - LEVEL) -> str:
    """What a pre-registered test says, in the words the report and README use."""
    if math.isnan(p_holm):
        return "not run yet"
    if p_holm <= alpha:
        if test == "equivalence":
            return "equivalent (within the margin)"
        return "better than doubling" if mean > 0 else "worse than doubling"
    return "not distinguished from doubling"


def family_holm(pvalues: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Holm over a whole pre-registered family; a test without a p-value yet (nan) is counted in
    the family size (it may not leave it: that would make the rest look less corrected)."""
    known = {k: p for k, p in pvalues.items() if not math.isnan(p)}
    missing = len(pvalues) - len(known)
    # Holm with the unknown tests as p = 1: they sit last and never lower the others' factor.
    adjusted = holm({**known, **{("__missing__", i): 1.0 for i in range(missing)}})
    return {k: (adjusted[k] if k in known else math.nan) for k in pvalues}


def leave_one_seed_out(diffs: Sequence[float], test: str, margin: float,
                       others: Mapping[Hashable, float], alpha: float = 1 - LEVEL) -> tuple[int, int]:
    """How many of the n leave-one-seed-out analyses reach the same verdict as all n seeds, the
    family's other p-values held fixed: (same, n)."""
    key = ("__this__",)
    def decided(d: Sequence[float]) -> str:
        p = primary_p(d, test, margin)
        adj = family_holm({**others, key: p})[key]
        return verdict(test, float(np.mean(d)), adj, alpha)
    full = decided(diffs)
    n = len(diffs)
    same = sum(decided([d for i, d in enumerate(diffs) if i != k]) == full for k in range(n))
    return same, n


def bootstrap_contrast(correct: np.ndarray, reference: np.ndarray, *, draws: int = 2000,
                       level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference in accuracy (rule - reference) with a percentile interval from a
    bootstrap over seeds *and* test images: each draw resamples the seed pairs and, independently,
    the test images (the same images for both rules), so the interval counts the test set's own
    sampling beside the seeds'. `correct` and `reference` are (seeds, images) 0/1 arrays, row i
    of both from seed i."""
    c = np.asarray(correct, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if c.shape != r.shape or c.ndim != 2:
        raise ValueError(f"correct and reference must be (seeds, images) arrays of one shape, got "
                         f"{c.shape} and {r.shape}")
    d = c - r
    seeds, images = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    chunk = 250
    for start in range(0, draws, chunk):
        b = min(chunk, draws - start)
        sw = np.stack([np.bincount(rng.integers(0, seeds, seeds), minlength=seeds)
                       for _ in range(b)]).astype(np.float32)
        iw = rng.multinomial(images, np.full(images, 1 / images), size=b).astype(np.float32)
        means[start:start + b] = np.einsum("bs,si,bi->b", sw, d, iw) / (seeds * images)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(low), float(high)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """McNemar's exact test of two models scored on the same images (two-sided binomial p on
    the images exactly one of them gets right)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


@dataclass(frozen=True)
class Combined:
    """One rule's effect at several budgets: the inverse-variance combined effect and Cochran's Q
    test of heterogeneity (is the effect the same at every budget?)."""

    mean: float
    se: float
    p: float
    q: float
    q_p: float
    budgets: int

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        z = float(stats.norm.ppf(0.5 + level / 2))
        return self.mean - z * self.se, self.mean + z * self.se


def combine(effects: Sequence[tuple[float, float]]) -> Combined:
    """Fixed-effect combination of (mean, se) pairs, one per budget, with Cochran's Q (df =
    budgets - 1; nan with one budget). Normal quantiles: each se rests on its own seeds, so read
    it as approximate with few seeds."""
    est = [(m, s) for m, s in effects if s > 0 and not math.isnan(s)]
    if not est:
        return Combined(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    w = np.array([1 / s ** 2 for _, s in est])
    m = np.array([mu for mu, _ in est])
    mean = float(w @ m / w.sum())
    se = float(1 / math.sqrt(w.sum()))
    p = float(2 * stats.norm.sf(abs(mean) / se))
    q = float(w @ (m - mean) ** 2)
    q_p = float(stats.chi2.sf(q, len(est) - 1)) if len(est) > 1 else math.nan
    return Combined(mean, se, p, q, q_p, len(est))
