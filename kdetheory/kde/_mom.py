"""How many samples an unbiased estimator needs for a (1 +- eps) answer with probability 1 - delta.

Worst-case sizing (median of means): with relative variance ``V = Var(Z)/mu^2``, a mean of
``L = ceil(c V / eps^2)`` copies misses ``(1 +- eps) mu`` with probability at most ``1/c``
(Chebyshev); the median of ``G`` such means misses only when at least ``(G+1)/2`` of them miss, a
Binomial(G, 1/c) tail. :func:`mom_shape` picks the ``(c, G)`` with the smallest total ``L * G``
whose tail is at most ``delta``.

Data-adaptive sizing (:func:`bernstein_stop`): sequential stopping on a time-uniform
empirical-Bernstein confidence sequence for samples in a known range ``[0, R]``; the number of
samples adapts to the query's own density and variance (docs/math.md §2.4).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.stats import binom

__all__ = ["mom_shape", "median_of_means", "failure_bound", "bernstein_stop", "bernstein_min_samples"]


def failure_bound(chebyshev_factor, n_groups):
    """P[median of n_groups means fails] when each mean fails w.p. 1/chebyshev_factor (G odd)."""
    return float(binom.sf((n_groups - 1) // 2, n_groups, 1.0 / chebyshev_factor))


def mom_shape(variance, eps, delta):
    """Group size and number of groups of a median-of-means estimate.

    Parameters
    ----------
    variance : float
        Relative variance ``V >= 0`` of one sample.
    eps, delta : float
        Target relative error and failure probability.

    Returns
    -------
    group_size, n_groups : int
        ``group_size = ceil(c V / eps^2)`` with the pair ``(c, n_groups)`` (``n_groups`` odd)
        that minimises ``c * n_groups`` subject to the Chebyshev + binomial bound above being
        at most ``delta``.
    """
    c, n_groups = _chebyshev_shape(float(delta))
    # Capped at 2^62 (a float bound of 1e300 samples has no integer): any count >= n means "exact".
    return max(1, min(2**62, math.ceil(min(c * variance / eps**2 - 1e-9, 2.0**62)))), n_groups


@functools.lru_cache(maxsize=256)
def _chebyshev_shape(delta):
    """(c, G) minimising c * G with P[Binomial(G, 1/c) >= (G+1)/2] <= delta (independent of V)."""
    best = None
    for n_groups in range(1, 200, 2):
        lo, hi = 1.0, 1.0 / delta + 1.0
        if failure_bound(hi, n_groups) > delta:
            continue
        for _ in range(40):  # bisection on the Chebyshev factor
            mid = 0.5 * (lo + hi)
            if failure_bound(mid, n_groups) <= delta:
                hi = mid
            else:
                lo = mid
        if best is None or hi * n_groups < best[0] * best[1]:
            best = (hi, n_groups)
        if n_groups > 8 * math.log(1 / delta) + 3:
            break
    return best


def median_of_means(samples, n_groups, xp=np):
    """Median over ``n_groups`` contiguous groups of the mean of ``samples`` along the last axis.

    Parameters
    ----------
    samples : (m, n_groups * group_size) array
    n_groups : int

    Returns
    -------
    (m,) array
    """
    m, total = samples.shape
    means = samples.reshape(m, n_groups, total // n_groups).mean(axis=2)
    return xp.median(means, axis=1)


#: growth factor of the checkpoints of :func:`bernstein_stop` (t_k = ceil(GROWTH^k) samples)
GROWTH = 1.5


def _checkpoints(max_samples):
    """Sample counts at which :func:`bernstein_stop` tests its stopping rule: 8, 12, 18, ... <= max_samples
    (no stream can stop on fewer than ~8 samples; fewer batches, less hashing overhead)."""
    points, t = [], 8.0
    while math.ceil(t) < max_samples:
        if not points or math.ceil(t) > points[-1]:
            points.append(math.ceil(t))
        t *= GROWTH
    return points + [int(max_samples)]


#: cap ``c`` of the betting fractions ``lambda_i`` of :func:`bernstein_stop` (Waudby-Smith and Ramdas use 1/2 or 3/4)
LAMBDA_CAP = 0.5


def bernstein_min_samples(eps, delta, value_range, mean):
    """Fewest samples with which :func:`bernstein_stop` could stop on a stream at ``mean`` (a lower
    bound: even at zero variance its half-width is at least ``R ln(2/delta) / (c t)``, and it must
    fall to about ``eps mean``)."""
    return max(1, math.ceil(value_range * math.log(2.0 / delta) / (LAMBDA_CAP * (1.0 + eps) * eps * mean)))


def bernstein_stop(draw, m, eps, delta, value_range, max_samples, floor=0.0):
    """Sequential (1 +- eps) estimates of the means of ``m`` bounded sample streams (data-adaptive sizing).

    Parameters
    ----------
    draw : callable ``(idx, t0, t1) -> (len(idx), t1 - t0) float64 array``
        Samples ``t0 .. t1-1`` of the streams ``idx``: independent and identically distributed
        per stream, in ``[0, value_range]``, with mean ``mu_i``.
    m : int
        Number of streams (queries).
    eps, delta : float
        Target relative error and failure probability per stream.
    value_range : float
        ``R``: every sample lies in ``[0, R]``.
    max_samples : int
        Samples available per stream.
    floor : float, default 0
        A stream also stops once its upper confidence bound falls below ``floor`` (then
        ``mu < floor`` with the same probability); its estimate is the running mean, flagged.

    Returns
    -------
    estimate : (m,) float64 ndarray
        NaN where the stream did not stop within ``max_samples``.
    used : (m,) int64 ndarray
        Samples drawn per stream.
    below : (m,) bool ndarray
        Streams stopped by ``floor`` (their estimate is not (1 +- eps)-accurate).

    Notes
    -----
    A time-uniform confidence sequence for the mean of ``[0, 1]`` variables (``X_i = Z_i / R``):
    the predictable plug-in empirical-Bernstein sequence of Waudby-Smith and Ramdas (JRSS-B 2024,
    "Estimating means of bounded random variables by betting"),

        C_t = sum lam_i X_i / sum lam_i  +-  (ln(2/delta) + sum v_i psi(lam_i)) / sum lam_i,

    ``v_i = 4 (X_i - m_{i-1})^2``, ``psi(l) = (-ln(1 - l) - l) / 4``,
    ``lam_i = min(c, sqrt(2 ln(2/delta) / (s2_{i-1} i ln(1 + i))))`` with the running estimates
    ``m_i = (1/2 + sum_{j<=i} X_j) / (i + 1)`` and ``s2_i = (1/4 + sum_{j<=i} (X_j - m_j)^2) / (i + 1)``.
    It holds for all ``t`` at once with probability ``>= 1 - delta``, so ``LB = max_t`` of its lower
    ends and ``UB = min_t`` of its upper ends bracket ``mu`` at any stopping time. The rule (EBStop
    of Mnih, Szepesvari, Audibert, ICML 2008) stops once ``(1 + eps) LB >= (1 - eps) UB`` and returns
    ``((1 + eps) LB + (1 - eps) UB) / 2``, within ``eps mu`` of ``mu`` whenever the bracket holds.
    The bracket is tested at geometric checkpoints (samples are drawn in batches). The cost
    adapts to the stream: about ``(2 sigma^2 / (eps mu)^2 + R / (c eps mu)) ln(2/delta)`` samples.
    """
    L = math.log(2.0 / delta)
    R = float(value_range)
    est = np.full(m, np.nan)
    below = np.zeros(m, dtype=bool)
    used = np.zeros(m, dtype=np.int64)
    s_x, s_q = np.zeros(m), np.zeros(m)  # running sum of X and of (X_j - m_j)^2
    s_lam, s_lam_x, s_psi = np.zeros(m), np.zeros(m), np.zeros(m)
    lb, ub = np.zeros(m), np.full(m, np.inf)
    active = np.arange(m)
    t_prev = 0
    for t in _checkpoints(max_samples):
        if active.size == 0:
            break
        X = draw(active, t_prev, t) / R
        i = np.arange(t_prev + 1, t + 1, dtype=np.float64)  # 1-based sample indices of the batch
        S = s_x[active, None] + np.cumsum(X, axis=1)  # sum_{j <= i} X_j
        mean_i = (0.5 + S) / (i + 1.0)
        mean_prev = np.concatenate([((0.5 + s_x[active]) / (t_prev + 1.0))[:, None], mean_i[:, :-1]], axis=1)
        Q = s_q[active, None] + np.cumsum((X - mean_i) ** 2, axis=1)
        var_prev = np.concatenate([((0.25 + s_q[active]) / (t_prev + 1.0))[:, None],
                                   ((0.25 + Q) / (i + 1.0))[:, :-1]], axis=1)
        lam = np.minimum(LAMBDA_CAP, np.sqrt(2.0 * L / (var_prev * i * np.log1p(i))))
        s_lam[active] += lam.sum(axis=1)
        s_lam_x[active] += (lam * X).sum(axis=1)
        s_psi[active] += ((X - mean_prev) ** 2 * (-np.log1p(-lam) - lam)).sum(axis=1)  # v psi = (..)^2 (..)
        s_x[active], s_q[active] = S[:, -1], Q[:, -1]
        used[active] = t
        t_prev = t
        centre = s_lam_x[active] / s_lam[active]
        half = (L + s_psi[active]) / s_lam[active]
        lb[active] = np.maximum(lb[active], R * (centre - half))
        ub[active] = np.minimum(ub[active], R * (centre + half))
        low = ub[active] < floor
        below[active[low]] = True
        est[active[low]] = R * s_x[active[low]] / t
        stop = (1.0 + eps) * lb[active] >= (1.0 - eps) * ub[active]
        done = active[stop & ~low]
        est[done] = 0.5 * ((1.0 + eps) * lb[done] + (1.0 - eps) * ub[done])
        active = active[~(stop | low)]
    return est, used, below
