"""Every verdict rule of proofs_checks._verdicts can say holds, fails and inconclusive; designs are exact."""
import math

import numpy as np
import pytest
from scipy import stats

from proofs_checks._verdicts import (
    binomial_power,
    binomial_verdict,
    comparison_verdict,
    exact_regime,
    interval_verdict,
    mean_bias_verdict,
    trials_for_mean_bias,
    trials_for_power,
    upper_bound_verdict,
    verdict_reason,
    verdict_word,
)


def test_interval_verdict_three_outcomes():
    assert interval_verdict(-0.52, -0.47, -0.5, 0.05) == "holds"
    # the example: a residual biased 5 % gave slope -0.413 [-0.491, -0.335] and was called "holds"
    v = interval_verdict(-0.491, -0.335, -0.5, 0.05)
    assert v.startswith("inconclusive (") and "straddles" in v
    assert interval_verdict(-0.40, -0.30, -0.5, 0.05) == "fails"
    assert interval_verdict(-0.75, -0.60, -0.5, 0.05) == "fails"
    # point estimate inside but interval poking out is not "holds"
    assert verdict_word(interval_verdict(-0.56, -0.44, -0.5, 0.05)) == "inconclusive"
    assert verdict_word(interval_verdict(-math.inf, math.inf, 0.0, 1.0)) == "inconclusive"


def test_upper_bound_verdict_three_outcomes():
    assert upper_bound_verdict(0.1, 0.2, 0.25) == "holds"
    assert upper_bound_verdict(0.3, 0.4, 0.25) == "fails"
    assert "contains the bound" in upper_bound_verdict(0.2, 0.3, 0.25)


@pytest.mark.parametrize("claim,flip", [("a < b", False), ("a > b", True)])
def test_comparison_verdict_three_outcomes(claim, flip):
    low, high = (0.1, 0.2), (0.3, 0.4)
    a, b = (high, low) if flip else (low, high)
    assert comparison_verdict(a, b, claim) == "holds"
    assert comparison_verdict(b, a, claim) == "fails"
    v = comparison_verdict((0.1, 0.35), (0.3, 0.4), claim)
    assert v.startswith("inconclusive (intervals") and "overlap" in v


def test_binomial_verdict_three_outcomes():
    delta, bad, alpha = 0.1, 0.2, 1e-6
    n = trials_for_power(delta, bad, alpha)
    assert binomial_verdict(int(delta * n), n, delta, alpha, bad) == "holds"
    assert binomial_verdict(int(bad * n), n, delta, alpha, bad) == "fails"
    v = binomial_verdict(1, 20, delta, alpha, bad)
    assert v.startswith("inconclusive (too few trials") and f"need {n}" in v


@pytest.mark.parametrize("delta,bad,alpha", [(0.1, 0.3, 1e-3), (0.2, 0.3, 1e-6), (1e-3, 0.05, 1e-5),
                                             (0.05, 0.5, 1e-6)])
def test_trials_for_power_is_the_smallest_exact_count(delta, bad, alpha):
    n = trials_for_power(delta, bad, alpha)
    assert binomial_power(n, delta, bad, alpha) >= 0.99
    # brute force: no smaller count reaches the power, and the test's false-fail rate is <= alpha
    smaller = np.arange(1, n)
    from proofs_checks._harness import critical_failures
    c = critical_failures(smaller, delta, alpha)
    assert np.all(stats.binom.sf(c - 1, smaller, bad) < 0.99)
    c_n = critical_failures(n, delta, alpha)
    assert stats.binom.sf(c_n - 1, n, delta) <= alpha


def test_binomial_false_fail_rate_by_simulation():
    # Under the null (true rate delta) the verdict says "fails" with probability <= alpha.
    delta, bad, alpha = 0.2, 0.4, 0.01
    n = trials_for_power(delta, bad, alpha)
    rng = np.random.default_rng(20260101)
    failures = rng.binomial(n, delta, size=20000)
    from proofs_checks._harness import critical_failures
    rate = np.mean(failures >= critical_failures(n, delta, alpha))
    assert rate <= alpha + 5 * math.sqrt(alpha / 20000)  # 5-sigma slack: false-fail of this check ~3e-7
    caught = np.mean(rng.binomial(n, bad, size=20000) >= critical_failures(n, delta, alpha))
    assert caught >= 0.99 - 5 * math.sqrt(0.01 * 0.99 / 20000)


def test_trials_for_mean_bias_matches_formula_and_power():
    n = trials_for_mean_bias(0.5, 0.02, 1e-5)
    approx = ((stats.norm.isf(0.5e-5) + stats.norm.isf(0.01)) * 0.5 / 0.02) ** 2
    assert n >= approx and n / approx - 1 < 1e-3  # large N: the z-test formula (t adds a few trials)
    # small N: the estimated sd costs trials beyond the normal formula; the count is the smallest with power 0.99
    small = trials_for_mean_bias(0.003, 0.02, 1e-6)
    assert small > ((stats.norm.isf(0.5e-6) + stats.norm.isf(0.01)) * 0.003 / 0.02) ** 2 + 2

    def power(k, reps=200_000):  # Monte Carlo of the t statistic under the bias
        rng = np.random.default_rng(k)
        x = rng.normal(0.02, 0.003, (reps, k))
        t = np.abs(x.mean(axis=1)) / (x.std(axis=1, ddof=1) / math.sqrt(k))
        return np.mean(t > stats.t.isf(0.5e-6, k - 1))
    assert power(small) >= 0.99 - 0.002 and power(small - 1) < 0.99 + 0.002


def test_mean_bias_false_fail_rate_by_simulation():
    # 20000 unbiased normal experiments of N = 5 trials at alpha = 0.01: t critical values keep the rate at alpha
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 1.0, (20000, 5))
    t = np.abs(x.mean(axis=1)) / (x.std(axis=1, ddof=1) / math.sqrt(5))
    rate = np.mean(t > stats.t.isf(0.005, 4))
    assert abs(rate - 0.01) < 5 * math.sqrt(0.01 * 0.99 / 20000)
    # the verdict applies the same rule: it says "fails" exactly where the statistic exceeds the critical value
    for row, ti in zip(x[:20], t[:20]):
        assert (mean_bias_verdict(row, 0.01, 0.5) == "fails") == (ti > stats.t.isf(0.005, 4))


def test_mean_bias_verdict_three_outcomes():
    rng = np.random.default_rng(7)
    sd, alpha = 0.3, 1e-5
    n = trials_for_mean_bias(sd * 1.2, 0.02, alpha)  # designed for the sd it assumes
    assert mean_bias_verdict(rng.normal(0, sd, n), alpha, 0.02, max_rel_sd=sd * 1.2) == "holds"
    assert mean_bias_verdict(rng.normal(0.05, sd, n), alpha, 0.02, max_rel_sd=sd * 1.2) == "fails"
    v = mean_bias_verdict(rng.normal(0, sd, 50), alpha, 0.02)
    assert v.startswith("inconclusive (power")
    v = mean_bias_verdict(rng.normal(0, 3 * sd, n), alpha, 0.02, max_rel_sd=sd)
    assert "exceeds the design" in v


def test_exact_regime():
    assert exact_regime(0.3, "holds") == "holds"
    assert exact_regime(0.3, "fails") == "fails"
    assert exact_regime(1.0, "holds") == "inconclusive (exact regime: work fraction 1.00)"
    assert exact_regime(2.5, "fails").startswith("inconclusive (exact regime")


def test_verdict_word_and_reason():
    assert verdict_word("holds") == "holds" and verdict_reason("holds") == ""
    assert verdict_word("inconclusive (exact regime: work fraction 1.00)") == "inconclusive"
    assert verdict_reason("inconclusive (exact regime: work fraction 1.00)") == "exact regime: work fraction 1.00"
    with pytest.raises(ValueError, match="verdict"):
        verdict_word("maybe")


@pytest.mark.parametrize("call,exc,match", [
    (lambda: interval_verdict(1.0, 0.0, 0.0, 1.0), ValueError, "lo=1.0 > hi=0.0"),
    (lambda: interval_verdict(0.0, 1.0, 0.0, -1.0), ValueError, "tolerance"),
    (lambda: interval_verdict("a", 1.0, 0.0, 1.0), TypeError, "lo='a'"),
    (lambda: interval_verdict(float("nan"), 1.0, 0.0, 1.0), ValueError, "lo=nan"),
    (lambda: upper_bound_verdict(0.0, 1.0, None), TypeError, "bound=None"),
    (lambda: comparison_verdict((0, 1), (0, 1), "a = b"), ValueError, "claim="),
    (lambda: comparison_verdict(0.5, (0, 1)), TypeError, "a=0.5"),
    (lambda: binomial_verdict(5, 3, 0.1, 1e-6, 0.2), ValueError, "failures=5 exceeds"),
    (lambda: binomial_verdict(1, 10, 0.2, 1e-6, 0.1), ValueError, "power_against"),
    (lambda: binomial_verdict(1, 10, 1.2, 1e-6, 0.3), ValueError, "delta=1.2"),
    (lambda: binomial_verdict(1.0, 10, 0.1, 1e-6, 0.3), TypeError, "failures=1.0"),
    (lambda: trials_for_power(0.2, 0.1, 1e-6), ValueError, "violation=0.1"),
    (lambda: trials_for_power(0.2, 0.3, 0.0), ValueError, "alpha=0.0"),
    (lambda: trials_for_mean_bias(0.0, 0.02, 1e-5), ValueError, "rel_sd"),
    (lambda: trials_for_mean_bias(0.1, 0.0, 1e-5), ValueError, "bias=0"),
    (lambda: mean_bias_verdict([0.1], 1e-5, 0.02), ValueError, "need >= 2"),
    (lambda: exact_regime(-1, "holds"), ValueError, "work_fraction"),
    (lambda: exact_regime(0.5, 3), TypeError, "verdict"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
