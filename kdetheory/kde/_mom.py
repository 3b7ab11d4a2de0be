"""Median of means: how many samples an unbiased estimator needs for a (1 +- eps) answer.

With relative variance ``V = Var(Z)/mu^2``, a mean of ``L = ceil(c V / eps^2)`` copies misses
``(1 +- eps) mu`` with probability at most ``1/c`` (Chebyshev); the median of ``G`` such means
misses only when at least ``(G+1)/2`` of them miss, a Binomial(G, 1/c) tail. :func:`mom_shape`
picks the ``(c, G)`` with the smallest total ``L * G`` whose tail is at most ``delta``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.stats import binom

__all__ = ["mom_shape", "median_of_means", "failure_bound"]


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
    return max(1, math.ceil(c * variance / eps**2 - 1e-9)), n_groups


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
