"""The one set of verdict rules every claim uses, and the power design that makes a verdict able to say "no".

A verdict is a string: ``"holds"``, ``"fails"`` or ``"inconclusive (<reason>)"``. The rules are:

* an interval estimate (a slope's confidence interval, an exponent's) *holds* when it lies inside the expected
  value plus or minus a stated tolerance, *fails* when it lies wholly outside, and is *inconclusive* when it
  straddles an edge (:func:`interval_verdict`, :func:`upper_bound_verdict`);
* a comparison of two interval estimates (tau separation, a ranking of methods) holds or fails only when the
  intervals are separated (:func:`comparison_verdict`);
* a probabilistic guarantee ("fails with probability at most delta") is an exact one-sided binomial test at a
  stated false-fail rate, inconclusive unless the trial count had power 0.99 against a stated violation
  (:func:`binomial_verdict`, designed with :func:`trials_for_power`);
* an unbiasedness check is a two-sided test on the mean relative error (z statistic, Student critical value),
  designed with :func:`trials_for_mean_bias` and read by :func:`mean_bias_verdict`;
* a randomized method that answered exactly proves nothing about its randomized path: :func:`exact_regime`
  turns its verdict into ``"inconclusive (exact regime ...)"``.

:class:`ClaimResult` stores the verdict word and keeps the reason in its details: use :func:`verdict_word` and
:func:`verdict_reason`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import integrate, stats

from ._stats import _check_count as _count
from ._stats import _binomial_arguments, _probability, _real, critical_failures

__all__ = [
    "interval_verdict",
    "upper_bound_verdict",
    "comparison_verdict",
    "binomial_verdict",
    "binomial_power",
    "trials_for_power",
    "trials_for_mean_bias",
    "mean_bias_verdict",
    "exact_regime",
    "verdict_word",
    "verdict_reason",
]

_COMPARISONS = ("a < b", "a > b")
_WORDS = ("holds", "fails", "inconclusive")


# --------------------------------------------------------------------------------------------------
# Input checks (every message names the function, the argument, the value and the fix)


def _interval(lo, hi, func: str, names=("lo", "hi")) -> tuple[float, float]:
    """A confidence interval; infinite ends are allowed (an unbounded interval), nan is not, lo <= hi."""
    lo = _real(lo, names[0], func, allow_inf=True)
    hi = _real(hi, names[1], func, allow_inf=True)
    if lo > hi:
        raise ValueError(f"{func}: {names[0]}={lo!r} > {names[1]}={hi!r}; pass the interval's ends in order")
    return lo, hi


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------------------
# Interval rules


def interval_verdict(lo: float, hi: float, expected: float, tolerance: float) -> str:
    """Verdict on "the quantity equals ``expected`` within ``tolerance``" from its confidence interval.

    Parameters
    ----------
    lo, hi : float
        Confidence interval of the measured quantity (for a log-log slope: ``SlopeFit.ci_low/ci_high``);
        ``lo <= hi``, infinite ends allowed.
    expected : float
        The value the claim predicts, e.g. ``-0.5`` for error ~ T^(-1/2).
    tolerance : float
        Accepted distance from ``expected`` (>= 0), stated by the claim beside its verdict.

    Returns
    -------
    str
        ``"holds"`` if ``[lo, hi]`` lies inside ``[expected - tolerance, expected + tolerance]``; ``"fails"`` if it
        does not meet that band; else ``"inconclusive (interval [lo, hi] straddles expected ± tolerance)"``.
        A point estimate that sits inside the band while its interval pokes out is *not* a "holds".
    """
    func = "interval_verdict"
    lo, hi = _interval(lo, hi, func)
    expected = _real(expected, "expected", func)
    tolerance = _real(tolerance, "tolerance", func)
    if tolerance < 0:
        raise ValueError(f"{func}: tolerance={tolerance!r} must be >= 0")
    band_lo, band_hi = expected - tolerance, expected + tolerance
    if band_lo <= lo and hi <= band_hi:
        return "holds"
    if hi < band_lo or lo > band_hi:
        return "fails"
    return (f"inconclusive (interval [{_fmt(lo)}, {_fmt(hi)}] straddles "
            f"{_fmt(expected)} ± {_fmt(tolerance)})")


def upper_bound_verdict(lo: float, hi: float, bound: float) -> str:
    """Verdict on "the quantity is at most ``bound``" from its confidence interval ``[lo, hi]``.

    Returns
    -------
    str
        ``"holds"`` if ``hi <= bound``, ``"fails"`` if ``lo > bound``, else
        ``"inconclusive (interval [lo, hi] contains the bound b)"``.
    """
    func = "upper_bound_verdict"
    lo, hi = _interval(lo, hi, func)
    bound = _real(bound, "bound", func, allow_inf=True)
    if hi <= bound:
        return "holds"
    if lo > bound:
        return "fails"
    return f"inconclusive (interval [{_fmt(lo)}, {_fmt(hi)}] contains the bound {_fmt(bound)})"


def comparison_verdict(a: tuple[float, float], b: tuple[float, float], claim: str = "a < b") -> str:
    """Verdict on an ordering of two quantities from their confidence intervals.

    Parameters
    ----------
    a, b : tuple of two floats
        Confidence intervals ``(lo, hi)`` of the two quantities (e.g. tau of two estimators, errors of two
        methods over seeds).
    claim : {"a < b", "a > b"}
        The ordering the paper claims.

    Returns
    -------
    str
        ``"holds"`` if the intervals are separated in the claimed direction, ``"fails"`` if separated the
        other way, else ``"inconclusive (intervals [..] and [..] overlap)"``.
    """
    func = "comparison_verdict"
    pair = []
    for value, name in ((a, "a"), (b, "b")):
        if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
            raise TypeError(f"{func}: {name}={value!r} must be a (lo, hi) pair: the quantity's confidence interval")
        pair.append(_interval(value[0], value[1], func, (f"{name}[0]", f"{name}[1]")))
    (a_lo, a_hi), (b_lo, b_hi) = pair
    if claim not in _COMPARISONS:
        raise ValueError(f"{func}: claim={claim!r} is not valid; pass one of {_COMPARISONS}")
    if claim == "a > b":  # mirror into "a < b"
        (a_lo, a_hi), (b_lo, b_hi) = (b_lo, b_hi), (a_lo, a_hi)
    if a_hi < b_lo:
        return "holds"
    if b_hi < a_lo:
        return "fails"
    return (f"inconclusive (intervals a=[{_fmt(pair[0][0])}, {_fmt(pair[0][1])}] and "
            f"b=[{_fmt(pair[1][0])}, {_fmt(pair[1][1])}] overlap)")


# --------------------------------------------------------------------------------------------------
# Binomial failure-rate tests


def binomial_power(trials: int, delta: float, violation: float, alpha: float) -> float:
    """Probability that the one-sided exact binomial test at level ``alpha`` detects a true failure rate
    ``violation`` with ``trials`` independent trials (see :func:`binomial_verdict`)."""
    func = "binomial_power"
    trials = _count(trials, "trials", func, 1)
    delta, violation, alpha = (_probability(v, n, func) for v, n in
                               ((delta, "delta"), (violation, "violation"), (alpha, "alpha")))
    c = critical_failures(trials, delta, alpha)
    return float(stats.binom.sf(c - 1, trials, violation))


def binomial_verdict(failures: int, trials: int, delta: float, alpha: float, power_against: float) -> str:
    """Verdict on "the failure probability is at most ``delta``" from ``failures`` out of ``trials``.

    Parameters
    ----------
    failures, trials : int
        Observed failures out of *independent* trials (fresh build and seed per trial; queries sharing one build
        are not independent trials).
    delta : float
        Failure probability the guarantee allows, in (0, 1).
    alpha : float
        False-fail rate: the probability of saying "fails" when the true failure rate is ``delta``.
    power_against : float
        A violating failure rate, ``delta < power_against < 1``, the claim states it must detect.

    Returns
    -------
    str
        ``"fails"`` when ``P[Binomial(trials, delta) >= failures] < alpha``; otherwise ``"holds"`` if the test had
        power >= 0.99 against ``power_against`` at this trial count (computed exactly), else
        ``"inconclusive (too few trials: power p against failure rate v; need N)"``.
    """
    func = "binomial_verdict"
    failures, trials, delta, alpha = _binomial_arguments(func, failures, trials, delta, alpha)
    power_against = _probability(power_against, "power_against", func)
    if power_against <= delta:
        raise ValueError(f"{func}: power_against={power_against!r} must exceed delta={delta!r} (it is a violation)")
    if failures >= critical_failures(trials, delta, alpha):
        return "fails"
    power = binomial_power(trials, delta, power_against, alpha)
    if power >= 0.99:
        return "holds"
    need = trials_for_power(delta, power_against, alpha)
    return (f"inconclusive (too few trials: power {power:.3f} against failure rate {_fmt(power_against)} "
            f"with {trials} trials; need {need})")


@functools.lru_cache(maxsize=256)  # claims ask for the same few designs repeatedly
def trials_for_power(delta: float, violation: float, alpha: float, power: float = 0.99) -> int:
    """Smallest number of independent trials for a binomial test of failure rate <= ``delta``.

    Parameters
    ----------
    delta : float
        Failure rate the guarantee allows, in (0, 1).
    violation : float
        A violating failure rate (``delta < violation < 1``) that must be detected.
    alpha : float
        False-fail rate of the test when the true rate is ``delta``.
    power : float, default 0.99
        Probability of detecting a true rate ``>= violation``.

    Returns
    -------
    int
        The smallest ``N`` whose exact one-sided test (critical count from ``scipy.stats.binom``) has false-fail
        rate <= ``alpha`` and detects ``violation`` with probability >= ``power``. Power is not monotone in ``N``
        (the critical count moves in integer steps), so counts are scanned upward from a normal-approximation
        lower bound.
    """
    func = "trials_for_power"
    delta = _probability(delta, "delta", func)
    violation = _probability(violation, "violation", func)
    alpha = _probability(alpha, "alpha", func)
    power = _probability(power, "power", func)
    if violation <= delta:
        raise ValueError(f"{func}: violation={violation!r} must exceed delta={delta!r}; state the failure rate a "
                         "broken implementation would have")
    # Normal approximation, halved: a safe place to start the exact scan (the exact N is never far below it).
    za, zb = stats.norm.isf(alpha), stats.norm.isf(1 - power)
    approx = ((za * math.sqrt(delta * (1 - delta)) + zb * math.sqrt(violation * (1 - violation)))
              / (violation - delta)) ** 2
    start = max(1, int(approx / 2))
    chunk = 4096
    limit = 10**9
    while start <= limit:
        n = np.arange(start, start + chunk, dtype=np.int64)
        c = critical_failures(n, delta, alpha)
        hits = np.nonzero(stats.binom.sf(c - 1, n, violation) >= power)[0]
        if hits.size:
            return int(n[hits[0]])
        start += chunk
        chunk = min(2 * chunk, 1 << 20)
    raise ValueError(f"{func}: more than {limit} trials needed for delta={delta}, violation={violation}; "
                     "state a larger violation")


# --------------------------------------------------------------------------------------------------
# Mean-bias (unbiasedness) tests


def _t_power(n: int, rel_sd: float, bias: float, alpha: float) -> float:
    """Power of the two-sided one-sample t-test at level alpha with n trials against a shift bias / rel_sd."""
    df = n - 1
    t_crit = float(stats.t.isf(alpha / 2, df))
    shift = math.sqrt(n) * bias / rel_sd
    if df >= 1000:  # Student's t is normal to 1e-3 here
        return float(stats.norm.sf(t_crit - shift) + stats.norm.cdf(-t_crit - shift))

    # T = (Z + shift) / sqrt(U / df), U ~ chi2(df): average the normal tails over U (scipy's noncentral t returns
    # nan for large shifts, so it is integrated here directly)
    def tails(u):
        scale = t_crit * math.sqrt(u / df)
        return (stats.norm.sf(scale - shift) + stats.norm.cdf(-scale - shift)) * stats.chi2.pdf(u, df)

    lo, hi = stats.chi2.ppf(1e-12, df), stats.chi2.isf(1e-12, df)
    return float(integrate.quad(tails, lo, hi, limit=200, epsabs=1e-12)[0])


def trials_for_mean_bias(rel_sd: float, bias: float, alpha: float, power: float = 0.99) -> int:
    """Independent trials for a two-sided test that a mean relative error is zero.

    Parameters
    ----------
    rel_sd : float
        Per-trial standard deviation of the relative error ``estimate / truth - 1`` (measured, > 0).
    bias : float
        The relative bias to detect, e.g. ``0.02`` (sign irrelevant).
    alpha : float
        False-fail rate of the test when the estimator is unbiased.
    power : float, default 0.99
        Probability of detecting a bias of size ``|bias|``.

    Returns
    -------
    int
        The smallest ``N >= 2`` at which the test of :func:`mean_bias_verdict` (a z-test on the mean whose
        critical value is Student's t with ``N - 1`` degrees of freedom, since the sd is estimated) detects
        ``|bias|`` with probability >= ``power``: the z-test's ``((z_{1-alpha/2} + z_power) rel_sd / bias)^2``
        for large N, a little more for small N (power from the noncentral t distribution).
    """
    func = "trials_for_mean_bias"
    rel_sd = _real(rel_sd, "rel_sd", func)
    if rel_sd <= 0:
        raise ValueError(f"{func}: rel_sd={rel_sd!r} must be > 0 (a per-trial standard deviation)")
    bias = abs(_real(bias, "bias", func))
    if bias == 0:
        raise ValueError(f"{func}: bias=0 cannot be detected; pass the smallest bias the test must catch, e.g. 0.02")
    alpha = _probability(alpha, "alpha", func)
    power = _probability(power, "power", func)
    z = float(stats.norm.isf(alpha / 2))
    n = max(2, math.ceil(((z + stats.norm.isf(1 - power)) * rel_sd / bias) ** 2))
    # The normal formula ignores the far tail and the estimated sd: adjust to the exact t-test power.
    while n > 2 and _t_power(n - 1, rel_sd, bias, alpha) >= power:
        n -= 1
    step = max(1, n // 64)
    while _t_power(n, rel_sd, bias, alpha) < power:
        n += step
    while n > 2 and _t_power(n - 1, rel_sd, bias, alpha) >= power:
        n -= 1
    return n


def mean_bias_verdict(rel_errors, alpha: float, bias: float, max_rel_sd: float | None = None,
                      power: float = 0.99) -> str:
    """Verdict on "the estimator is unbiased" from independent relative errors ``estimate / truth - 1``.

    Parameters
    ----------
    rel_errors : array_like, shape (N,)
        One relative error per independent trial (fresh build and seed per trial), N >= 2.
    alpha : float
        False-fail rate (two-sided).
    bias : float
        Smallest relative bias the check claims to detect with probability ``power``.
    max_rel_sd : float, optional
        The per-trial sd the design assumed. When given, the power is computed with it and the observed sd must
        not exceed it, otherwise the design's power statement is void and the verdict is inconclusive.
    power : float, default 0.99

    Returns
    -------
    str
        ``"fails"`` if ``|mean| / (sd / sqrt(N)) > t_{1-alpha/2, N-1}`` (the z-test with Student's critical value,
        since the sd is estimated); else ``"holds"`` if the test had power >= ``power`` against ``bias`` (noncentral
        t, at ``max_rel_sd``); else ``"inconclusive (...)"``.
    """
    func = "mean_bias_verdict"
    x = np.asarray(rel_errors, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"{func}: rel_errors has {x.size} values; need >= 2 independent trials")
    if not np.all(np.isfinite(x)):
        return "inconclusive (non-finite relative errors)"
    alpha = _probability(alpha, "alpha", func)
    power = _probability(power, "power", func)
    bias = abs(_real(bias, "bias", func))
    if bias == 0:
        raise ValueError(f"{func}: bias must be > 0 (the bias the check claims to detect)")
    sd = float(x.std(ddof=1))
    mean = float(x.mean())
    if sd == 0:
        return "holds" if mean == 0 else "fails"
    t_crit = float(stats.t.isf(alpha / 2, x.size - 1))  # the sd is estimated: Student's t, exact for normal trials
    if abs(mean) / (sd / math.sqrt(x.size)) > t_crit:
        return "fails"
    design_sd = sd if max_rel_sd is None else _real(max_rel_sd, "max_rel_sd", func)
    if sd > design_sd:
        return f"inconclusive (observed sd {_fmt(sd)} exceeds the design's {_fmt(design_sd)})"
    achieved = _t_power(x.size, design_sd, bias, alpha)
    if achieved >= power:
        return "holds"
    return (f"inconclusive (power {achieved:.3f} against bias {_fmt(bias)} with {x.size} trials; "
            f"need {trials_for_mean_bias(design_sd, bias, alpha, power)})")


# --------------------------------------------------------------------------------------------------
# Exact regime and verdict strings


def exact_regime(work_fraction: float, verdict: str) -> str:
    """Withhold a verdict reached by a randomized method that answered exactly.

    Parameters
    ----------
    work_fraction : float
        The method's work relative to exact: kernel evaluations / (n * m), or samples / n (>= 0).
    verdict : str
        The verdict the check reached.

    Returns
    -------
    str
        ``"inconclusive (exact regime: work fraction {wf:.2f})"`` when ``work_fraction >= 1`` (nothing random was
        exercised), else ``verdict`` unchanged.
    """
    func = "exact_regime"
    wf = _real(work_fraction, "work_fraction", func)
    if wf < 0:
        raise ValueError(f"{func}: work_fraction={wf!r} must be >= 0 (work relative to exact)")
    if not isinstance(verdict, str):
        raise TypeError(f"{func}: verdict={verdict!r} must be a str")
    if wf >= 1:
        return f"inconclusive (exact regime: work fraction {wf:.2f})"
    return verdict


def verdict_word(verdict: str) -> str:
    """The verdict's first word (``"holds"``, ``"fails"`` or ``"inconclusive"``), as :class:`ClaimResult` stores it."""
    if not isinstance(verdict, str):
        raise TypeError(f"verdict_word: verdict={verdict!r} must be a str")
    word = verdict.split(" ", 1)[0]
    if word not in _WORDS:
        raise ValueError(f"verdict_word: verdict={verdict!r} must start with one of {_WORDS}")
    return word


def verdict_reason(verdict: str) -> str:
    """The parenthesised reason of an ``"inconclusive (<reason>)"`` verdict, ``""`` for the others."""
    word = verdict_word(verdict)
    rest = verdict[len(word):].strip()
    return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest
