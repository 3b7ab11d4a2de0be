"""Calibrated statistics that turn measurements into verdicts.

* probabilistic guarantees ("fails with probability at most delta") use :func:`binomial_failure_test` with a
  trial count from :func:`proofs_checks._verdicts.trials_for_power`;
* scaling laws ("error ~ m^(-1/2)") use :func:`slope_fit`.

Verdicts are read from these by the rules of :mod:`proofs_checks._verdicts` (one rule set for every claim).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from ._jsonable import to_jsonable

__all__ = [
    "BinomialTest",
    "SlopeFit",
    "binomial_failure_test",
    "critical_failures",
    "slope_fit",
]

# --------------------------------------------------------------------------------------------------
# Binomial failure test


@dataclasses.dataclass(frozen=True)
class BinomialTest:
    """Result of :func:`binomial_failure_test`.

    Attributes
    ----------
    failures, trials : int
        Observed failures out of trials.
    delta : float
        The failure probability the guarantee allows.
    alpha : float
        Significance level.
    p_value : float
        ``P[Binomial(trials, delta) >= failures]``.
    significant : bool
        ``p_value < alpha``: the failure rate is significantly above ``delta``.
    """

    failures: int
    trials: int
    delta: float
    alpha: float
    p_value: float
    significant: bool

    @property
    def rate(self) -> float:
        """Observed failure rate ``failures / trials``."""
        return self.failures / self.trials

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields and the observed rate."""
        return to_jsonable({**dataclasses.asdict(self), "rate": self.rate})


# Input checks shared with :mod:`proofs_checks._verdicts` (every message names the function, the argument,
# the value and the fix).


def _real(value, name: str, func: str, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: {name}={value!r} must be a real number (int or float)")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{func}: {name}={value!r} must be finite{'' if not allow_inf else ' or infinite, not nan'}")
    return value


def _probability(value, name: str, func: str) -> float:
    value = _real(value, name, func)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{func}: {name}={value!r} must lie strictly between 0 and 1")
    return value


def _check_count(value, name: str, func: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name}={value!r} must be an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{func}: {name}={value!r} must be >= {minimum}")
    return int(value)


def _binomial_arguments(func: str, failures, trials, delta, alpha):
    """Validated ``(failures, trials, delta, alpha)`` of a one-sided binomial test (shared by the test here and
    :func:`proofs_checks._verdicts.binomial_verdict`)."""
    trials = _check_count(trials, "trials", func, 1)
    failures = _check_count(failures, "failures", func, 0)
    if failures > trials:
        raise ValueError(f"{func}: failures={failures} exceeds trials={trials}")
    return failures, trials, _probability(delta, "delta", func), _probability(alpha, "alpha", func)


def binomial_failure_test(failures: int, trials: int, delta: float, alpha: float = 1e-6) -> BinomialTest:
    """One-sided exact binomial test of "the failure probability is at most delta".

    Parameters
    ----------
    failures : int
        Number of trials in which the guarantee was violated.
    trials : int
        Number of independent trials (>= 1).
    delta : float
        Failure probability allowed by the guarantee, in (0, 1).
    alpha : float, default 1e-6
        Significance level. It is small because the toolkit runs many checks and a false "fails" is costly.

    Returns
    -------
    BinomialTest
        ``significant`` is True when ``failures`` is significantly above ``delta * trials``.

    Notes
    -----
    The p-value is ``scipy.stats.binomtest(failures, trials, delta, alternative="greater").pvalue``. Pair it
    with :func:`proofs_checks._verdicts.trials_for_power` so that a faulty implementation would have been caught.
    """
    failures, trials, delta, alpha = _binomial_arguments("binomial_failure_test", failures, trials, delta, alpha)
    p_value = float(stats.binomtest(failures, trials, delta, alternative="greater").pvalue)
    return BinomialTest(failures, trials, delta, alpha, p_value, p_value < alpha)


def critical_failures(trials, delta: float, alpha: float = 1e-6):
    """Smallest failure count that :func:`binomial_failure_test` calls significant.

    Parameters
    ----------
    trials : int or array of int
        Trial counts.
    delta, alpha : float
        As in :func:`binomial_failure_test`.

    Returns
    -------
    int or ndarray
        ``c`` with ``P[Binomial(trials, delta) >= c] < alpha <= P[Binomial(trials, delta) >= c - 1]``;
        ``trials + 1`` where no count is significant.
    """
    n = np.asarray(trials, dtype=np.int64)
    # isf gives the quantile up to floating-point ties; the two corrections below make it exact against sf.
    c = np.asarray(stats.binom.isf(alpha, n, delta), dtype=np.float64)
    c = np.where(np.isfinite(c), c, n).astype(np.int64) + 1
    for _ in range(3):
        too_low = stats.binom.sf(c - 1, n, delta) >= alpha  # c itself not significant
        c = np.where(too_low & (c <= n), c + 1, c)
        too_high = (c > 0) & (stats.binom.sf(c - 2, n, delta) < alpha)  # c - 1 already significant
        c = np.where(too_high, c - 1, c)
    return c if np.ndim(trials) else int(c)


# --------------------------------------------------------------------------------------------------
# Log-log slope fits


@dataclasses.dataclass(frozen=True)
class SlopeFit:
    """Least-squares line through ``(log x, log y)``: ``log y = intercept + slope * log x``.

    Attributes
    ----------
    slope, intercept : float
        Fitted coefficients (natural logarithms).
    stderr : float
        Standard error of the slope.
    ci_low, ci_high : float
        Confidence interval of the slope (Student t with ``n - 2`` degrees of freedom).
    r_value : float
        Correlation coefficient of the log-log points.
    n : int
        Number of points.
    """

    slope: float
    intercept: float
    stderr: float
    ci_low: float
    ci_high: float
    r_value: float
    n: int

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return to_jsonable(dataclasses.asdict(self))


def slope_fit(x, y, confidence: float = 0.95) -> SlopeFit:
    """Fit ``y ~ C * x**slope`` by least squares in log-log space.

    Parameters
    ----------
    x, y : array_like, shape (k,)
        Positive finite values, at least 3 points (two degrees of freedom are spent on the line).
    confidence : float, default 0.95
        Level of the slope's confidence interval.

    Returns
    -------
    SlopeFit
        From ``scipy.stats.linregress(log x, log y)``.
    """
    func = "slope_fit"
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{func}: x has {x.size} points but y has {y.size}; pass paired values")
    if x.size < 3:
        raise ValueError(f"{func}: got {x.size} points; need at least 3 for a slope with a confidence interval")
    for arr, name in ((x, "x"), (y, "y")):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{func}: {name} must be positive and finite for a log-log fit, got {arr!r}")
    if np.ptp(np.log(x)) == 0:
        raise ValueError(f"{func}: all x are equal ({x[0]!r}); a slope needs at least two distinct x")
    confidence = _probability(confidence, "confidence", func)
    fit = stats.linregress(np.log(x), np.log(y))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 2) * fit.stderr)
    return SlopeFit(float(fit.slope), float(fit.intercept), float(fit.stderr),
                    float(fit.slope) - half, float(fit.slope) + half, float(fit.rvalue), int(x.size))
