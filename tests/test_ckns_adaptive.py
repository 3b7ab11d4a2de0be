"""Calibrated tests of CKNSKDE's data-adaptive sizing (issue 14, item 2).

``sizing="adaptive"`` reads a level's copies in growing batches and stops on a sequential median of means driven
by the a-priori variance bound ``Var(copy) <= A mu + B mu^2`` (``kdetheory.kde.ckns.copy_variance_bound``;
docs/math.md §2.3). Claims checked here, on a blob of n = 20,000 points in 4 dimensions (bandwidth 1) whose queries
sit beside data points (densities 0.3-0.42, far above ``mu_min = 1/16``):

* the guarantee: P[estimate outside (1 +- eps) mu] <= delta for mu >= mu_min, by a one-sided exact binomial test
  over independent trials (fresh build and seeds per trial, one query each) at false-fail rate ALPHA = 1e-6 with
  power 0.99 against a failure rate of 2 delta (251 trials; ``proofs_checks._verdicts``); the
  trials sampled (work fraction, kernel evaluations over n, below 1: asserted). Measured (2-core CPU, 2026-12-01): 0
  failures, mean relative error -0.012 (the stopping rule answers low by design, within eps), largest 0.26, work
  fraction 0.056, copies read 39-87 per query (mean 59) against 375 for worst-case sizing at this eps and delta
  (every shell is scanned here, so the rule uses Bernstein's inequality for the copies' terms in [0, 2b]);
* the copies the rule reads are unbiased: one copy's mean relative error over the queries is a trial (copies are
  built independently), a two-sided t-test at ALPHA with power 0.99 against a 2 % bias (design sd = measured sd x
  1.25, the observed sd must stay below it, as in tests/test_unbiased.py);
* the variance bound the rule trusts holds: per query, the copies' sample variance must not exceed ``A mu + B mu^2``
  by more than z_{1 - ALPHA / m} standard errors (normal approximation of the sample variance, its standard error
  from the sample fourth moment; measured ratio variance / bound 0.61-0.67 on this instance, 2-core CPU,
  2026-12-01);
* deterministic properties of the interval, the stopping rule, its plan and the input checks.

Error rates: three statistical tests at ALPHA = 1e-6 each (the variance test splits its ALPHA over the queries), so
the file's family false-fail rate is at most 3e-6, a small share of the suite's 1e-4 per run. Truths come from
``tests/naive.py`` (plain loops, no library code).
"""
import math

import numpy as np
import pytest
from scipy import stats

import naive
from kdetheory.kde import CKNSKDE
from kdetheory.kde._base import gathered_squared_distances
from kdetheory.kde._mom import failure_bound, mom_shape
from kdetheory.kde.ckns import (bernstein_interval, certifies, chebyshev_factor, copies_stop, copies_to_certify,
                                copy_checkpoints, first_checkpoint, stop_plan, variance_interval)
from proofs_checks._verdicts import (binomial_power, binomial_verdict, mean_bias_verdict, trials_for_mean_bias,
                                     trials_for_power)

ALPHA = 1e-6  # per statistical test (three in this file)
EPS, DELTA = 0.3, 0.2
MU_MIN = 1.0 / 16  # one level the search visits: the guess 1/16 (the guess 1/4 is skipped, 4 x 1/4 >= mu_max)
N_POINTS, DIM = 20000, 4
MAX_COPIES = 200  # copies built per level: queries at these densities stop after 39-87 (measured)
#: measured sd of one copy's mean relative error over the pool's queries (2-core CPU, 2026-12-01: 0.336)
COPY_SD = 0.34
BIAS = 0.02


def _seeds(name, n):
    """``n`` independent seeds for the test ``name`` (fixed, so a failure reproduces)."""
    return np.random.SeedSequence(list(name.encode())).spawn(n)


@pytest.fixture(scope="module")
def instance():
    """Points in a blob; the candidate queries beside data points with density in [0.3, 0.42]."""
    g = np.random.default_rng(20261201)
    X = 0.7 * g.standard_normal((N_POINTS, DIM))
    Y = X[:64] + 0.1 * g.standard_normal((64, DIM))
    mu = naive.gaussian_kde(X, Y)
    keep = (mu >= 0.3) & (mu <= 0.42)
    assert keep.sum() >= 12
    return X, Y[keep], mu[keep]


def _adaptive(X, seed, n_copies=MAX_COPIES):
    return CKNSKDE(X, eps=EPS, delta=DELTA, mu_min=MU_MIN, n_copies=n_copies, sizing="adaptive",
                   exact_fallback=False, rng=seed)


def test_adaptive_guarantee_binomial(instance):
    """P[outside 1 +- eps] <= delta: exact one-sided binomial test, false-fail rate 1e-6, power 0.99 against 2 delta.
    Trial i builds afresh and answers one query of the pool (cycled); builds are independent, so failures are
    independent Bernoulli(p_i) with p_i <= delta under the claim."""
    X, Y, mu = instance
    n_trials = trials_for_power(DELTA, 2 * DELTA, ALPHA, 0.99)
    assert binomial_power(n_trials, DELTA, 2 * DELTA, ALPHA) >= 0.99
    seeds = _seeds("ckns-adaptive-guarantee", 2 * n_trials)
    failures, kernel, copies, rel = 0, 0, [], []
    for i in range(n_trials):
        q = i % len(Y)
        res = _adaptive(X, seeds[2 * i]).query(Y[q:q + 1], rng=seeds[2 * i + 1])
        err = float(res.estimate[0]) / mu[q] - 1
        failures += abs(err) > EPS
        kernel += int(res.kernel_evaluations[0])
        copies.append(int(res.samples[0]))
        rel.append(err)
    work_fraction = kernel / (n_trials * N_POINTS)
    assert work_fraction < 1, f"the trials answered exactly (work fraction {work_fraction:.2f}): nothing was tested"
    assert max(copies) < MAX_COPIES  # every query stopped on the rule, before the copies ran out
    verdict = binomial_verdict(failures, n_trials, DELTA, ALPHA, 2 * DELTA)
    assert verdict == "holds", (f"{verdict}: {failures} of {n_trials} outside 1 +- {EPS} (mean relative error "
                                f"{np.mean(rel):+.3f}, work fraction {work_fraction:.3f})")


@pytest.fixture(scope="module")
def copies(instance):
    """One adaptive build with enough copies for the mean test, and every copy's value at every pool query."""
    X, Y, mu = instance
    n_copies = max(200, trials_for_mean_bias(1.25 * COPY_SD, BIAS, ALPHA, 0.99))
    est = _adaptive(X, _seeds("ckns-adaptive-copies", 1)[0], n_copies=n_copies)
    level = est.levels[-1]
    assert not level.exact and level.stop_plan and level.n_copies == n_copies
    Z = est.samples(Y, level=-1, rng=_seeds("ckns-adaptive-copies-q", 1)[0])
    return Z, mu, level


def test_adaptive_copies_unbiased(copies):
    """The copies the stopping rule reads are unbiased: a copy's mean relative error over the pool is one trial
    (copies are built independently). False-fail rate 1e-6; power 0.99 against a 2 % bias."""
    Z, mu, _ = copies
    rel = (Z / mu[:, None]).mean(axis=0) - 1
    verdict = mean_bias_verdict(rel, ALPHA, BIAS, max_rel_sd=1.25 * COPY_SD, power=0.99)
    assert verdict == "holds", f"{verdict}: mean relative error {rel.mean():+.4g} over {rel.size} copies"


def test_copy_variance_within_bound(copies):
    """Per query, the copies' variance does not exceed the a-priori bound ``A mu + B mu^2`` that sizes the rule
    (one-sided, z-test on the sample variance at ALPHA split over the queries)."""
    Z, mu, level = copies
    A, B = level.variance
    bound = A * mu + B * mu * mu
    D = Z - Z.mean(axis=1, keepdims=True)
    s2 = (D ** 2).sum(axis=1) / (Z.shape[1] - 1)
    se = np.sqrt(((D ** 4).mean(axis=1) - s2 ** 2) / Z.shape[1])
    z = stats.norm.isf(ALPHA / len(mu))
    assert np.all(s2 <= bound + z * se), f"variance / bound {np.round(s2 / bound, 3)} (z {z:.2f})"


# ------------------------------------------------------------------------------------------------------------------
# deterministic properties


@pytest.mark.parametrize("A, B", [(0.1, 0.0), (0.05, 0.3), (0.0, 0.2)])
def test_variance_interval_solves_the_quadratic(A, B):
    M = np.array([0.0, 1e-3, 0.05, 0.3, 1.0])
    kappa = 0.4
    lo, hi = variance_interval(M, kappa, A, B)
    assert np.all(lo <= M) and np.all(M <= hi)
    for end in (lo, hi):  # the ends are the roots of (M - mu)^2 = kappa (A mu + B mu^2)
        lhs, rhs = (M - end) ** 2, kappa * (A * end + B * end ** 2)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=1e-15)
    inside = 0.5 * (lo + hi)
    assert np.all((M - inside) ** 2 <= kappa * (A * inside + B * inside ** 2) * (1 + 1e-12))
    if B:
        lo, hi = variance_interval(M, 1.0 / B, A, B)
        assert np.all(lo == 0) and np.all(np.isinf(hi))  # kappa B >= 1: no upper end


@pytest.mark.parametrize("A, B", [(0.1, 0.0), (0.05, 0.3)])
def test_bernstein_interval_solves_its_inequality(A, B):
    """The ends solve ``(m - mu)^2 = kappa (A mu + B mu^2) + 2 a |m - mu|`` (or lo = 0), the inside satisfies it,
    and a zero term range gives the variance-only interval of ``kappa = 2 ln(2/delta) / t``."""
    m = np.array([0.0, 1e-3, 0.05, 0.3, 1.0])
    t, delta, R = 50, 1e-3, 0.08
    L = math.log(2 / delta)
    kappa, a = 2 * L / t, L * R / (3 * t)
    lo, hi = bernstein_interval(m, t, delta, A, B, R)
    assert np.all(lo <= m) and np.all(m <= hi)

    def gap(mu):
        return (m - mu) ** 2 - kappa * (A * mu + B * mu ** 2) - 2 * a * np.abs(m - mu)

    np.testing.assert_allclose(gap(hi), 0, atol=1e-12)
    np.testing.assert_allclose(np.where(lo > 0, gap(lo), 0), 0, atol=1e-12)
    assert np.all(gap(0.5 * (lo + hi)) <= 1e-12)
    np.testing.assert_allclose(bernstein_interval(m, t, delta, A, B, 0.0), variance_interval(m, kappa, A, B),
                               rtol=1e-9, atol=1e-15)


def test_stop_plan_spends_delta_over_its_checkpoints():
    plan = stop_plan(500, 0.05)
    ts = [t for t, _, _, _ in plan]
    assert ts == copy_checkpoints(500) and ts[-1] == 500 and ts == sorted(set(ts))
    dk = 0.05 / len(plan)
    for t, G, kappa, d in plan:
        assert G % 2 == 1 and G <= t and d == dk
        c = kappa * (t // G)
        assert failure_bound(c, G) <= dk * (1 + 1e-9)  # each checkpoint's miss probability
        assert c == pytest.approx(chebyshev_factor(G, dk))
    assert [k for _, _, k, _ in plan] == sorted((k for _, _, k, _ in plan), reverse=True)
    bern = stop_plan(500, 0.05, first=30, term_range=0.1)
    assert [p[0] for p in bern] == copy_checkpoints(500, 30) and all(p[1] == 1 and p[3] == 0.05 / len(bern)
                                                                      for p in bern)


def test_plan_sizes_certify_where_they_say():
    """``copies_to_certify`` returns the first count whose last checkpoint certifies the stream (``limit + 1``
    when none within the limit does); ``first_checkpoint`` the first count at which a plan starting there could
    stop (``None`` when none up to the plan's end)."""
    var, eps, delta = (0.14, 0.0), 0.3, 0.1
    T = copies_to_certify(0.0625, eps, var, delta, 10**6)
    assert certifies(0.0625, eps, var, stop_plan(T, delta)[-1])
    assert copies_to_certify(0.0625, eps, var, delta, T - 1) == T
    assert copies_to_certify(0.0625 / 4, eps, var, delta, T) == T + 1  # four times fewer copies per unit variance
    t = first_checkpoint(1.0, eps, var, delta, 450)
    plan = stop_plan(450, delta, t)
    assert plan[0][0] == t and certifies(1.0, eps, var, plan[0])
    assert first_checkpoint(1e-3, eps, var, delta, 450) is None


def test_copies_stop_certifies_and_flags():
    """Zero-variance streams at 0.5 and 0.01 with the variance bound of a level at guess 0.01: the first stops
    within eps, the second (below the floor 0.04) is flagged, a bound with B = 10 never certifies (NaN)."""
    def draw(idx, t0, t1):
        return np.broadcast_to(np.array([0.5, 0.01])[idx, None], (idx.size, t1 - t0)).copy()

    plan = stop_plan(2000, 0.05)
    est, used, below = copies_stop(draw, 2, 0.2, (0.03, 0.0), plan, floor=0.04)
    assert abs(est[0] / 0.5 - 1) <= 0.2 and not below[0] and used[0] < 2000
    assert below[1] and est[1] == pytest.approx(0.01) and used[1] < 2000
    est, used, below = copies_stop(draw, 2, 0.2, (0.03, 10.0), stop_plan(50, 0.05))
    assert np.isnan(est).all() and (used == 50).all() and not below.any()


def test_scanned_terms_lie_in_the_term_range(instance):
    """Bernstein's inequality is used only where every term of a copy lies in ``[0, term_range]``: every scanned
    point's ``coef_x k(x, q)`` inside its shell, and every outer sample's ``w k / n_out``, at the pool's queries
    (deterministic; ``c_x k_x`` reaches ``(b, 2b]``, so a range of ``b`` would fail here)."""
    X, Y, _ = instance
    est = _adaptive(X, 9, n_copies=40)
    level = est.levels[-1]
    assert level.term_range == 2 * level.budget and all(s.brute for s in level.shells)
    Yq = Y * est._scale
    top = 0.0
    for units in level.copies:
        for shell, unit in zip(level.shells, units):
            if unit.S.size:
                r2 = gathered_squared_distances(est._Xh, Yq, np.broadcast_to(unit.S, (len(Y), unit.S.size)))
                inside = (r2 >= shell.r2[0]) & (r2 < shell.r2[1])
                top = max(top, float((unit.coef * np.exp(-r2) * inside).max()))
    assert level.term_range / 2 < top <= level.term_range
    assert 2.0 ** -level.J / level.n_out <= level.term_range


def test_adaptive_reads_fewer_copies_at_higher_density(instance):
    """The rule adapts: at the same level, a query at three times the density stops on fewer copies."""
    X, Y, mu = instance
    q = Y[np.argmax(mu)]
    Q = np.vstack([q, q + 1.0])  # moved out of the blob: a third of the density, still above mu_min
    truth = naive.gaussian_kde(X, Q)
    assert MU_MIN < truth[1] < truth[0] / 3
    res = _adaptive(X, 5).query(Q, rng=6)
    assert res.levels_visited.tolist() == [1, 1] and res.samples[0] < res.samples[1]


def test_adaptive_answers_exactly_where_copies_cost_more_than_n():
    """n = 500: every level would cost more than n/4 per query, so (fallback on) the answer is the exact sum."""
    g = np.random.default_rng(3)
    X = g.standard_normal((500, 3))
    est = CKNSKDE(X, eps=0.3, delta=0.2, mu_min=0.01, sizing="adaptive", rng=0)
    assert all(lev.exact for lev in est.levels)
    res = est.query(X[:4], rng=1)
    np.testing.assert_allclose(res.estimate, naive.gaussian_kde(X, X[:4]), rtol=1e-12)
    assert np.all(res.kernel_evaluations == 500) and np.all(res.samples == 0)


def test_bad_sizing_arguments():
    X = np.random.default_rng(0).standard_normal((50, 2))
    with pytest.raises(ValueError, match="sizing"):
        CKNSKDE(X, sizing="bernstein")
    with pytest.raises(ValueError, match="n_groups"):
        CKNSKDE(X, sizing="adaptive", n_copies=10, n_groups=3)


def test_worst_case_sizes_from_the_variance_bound():
    """Worst-case copies: the median-of-means count at the relative variance A / b + B of the bound."""
    X = np.random.default_rng(1).standard_normal((4000, 3))
    est = CKNSKDE(X, eps=0.5, delta=0.1, mu_min=0.05, exact_fallback=False, rng=0)
    for lev in est.levels:
        if lev.exact:
            continue
        A, B = lev.variance
        size, groups = mom_shape(A / lev.budget + B, 0.5, 0.1 / 3)
        assert (lev.n_copies, lev.n_groups) == (size * groups, groups)
        assert A <= lev.budget * (2.0 / min(s.found for s in lev.shells) + 0.25) * (1 + 1e-12)
        assert math.isclose(B, 1.0 / min(s.found for s in lev.shells) - 1.0)
