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

from .. import _config
from .._array import namespace

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
        hi = chebyshev_factor(n_groups, delta)
        if math.isinf(hi):
            continue
        if best is None or hi * n_groups < best[0] * best[1]:
            best = (hi, n_groups)
        if n_groups > 8 * math.log(1 / delta) + 3:
            break
    return best


def chebyshev_factor(n_groups, delta):
    """Smallest Chebyshev factor ``c`` with ``P[Binomial(G, 1/c) >= (G + 1)/2] <= delta`` (odd ``G``), from above
    by 40 bisection steps on ``[1, 1/delta + 1]``; ``inf`` when even ``1/delta + 1`` is not enough."""
    lo, hi = 1.0, 1.0 / delta + 1.0
    if failure_bound(hi, n_groups) > delta:
        return math.inf
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if failure_bound(mid, n_groups) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


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
        per stream, in ``[0, value_range]``, with mean ``mu_i``. NumPy or CuPy: the running
        state and the results live in the namespace of the first batch. ``idx`` is a host int64
        array at the first call and an array of that namespace afterwards.
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
    estimate : (m,) float64 array
        NaN where the stream did not stop within ``max_samples``.
    used : (m,) int64 array
        Samples drawn per stream.
    below : (m,) bool array
        Streams stopped by ``floor`` (their estimate is not (1 +- eps)-accurate).
        All three in the namespace of the samples (NumPy arrays when ``m = 0``).

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
    On the GPU the rule costs one scalar read back per checkpoint (how many streams are still
    active, which sizes the next batch); the samples never leave the device.
    """
    L = math.log(2.0 / delta)
    R = float(value_range)
    active, n_active, t_prev, st = np.arange(m), m, 0, None
    for t in _checkpoints(max_samples):
        if n_active == 0:
            break
        # blocks of streams: a batch and its temporaries stay within _config.CHUNK_BYTES
        rows = _config.block_shape(n_active, t - t_prev, 8, temporaries=BATCH_TEMPORARIES)[0]
        keep = []
        for b0 in range(0, n_active, rows):
            X = draw(active[b0:b0 + rows], t_prev, t) / R
            if st is None:  # the state lives where the samples are drawn (NumPy or CuPy)
                st = _BernsteinState(m, namespace(X))
                active = st.xp.asarray(active)
            keep.append(st.absorb(active[b0:b0 + rows], X, t_prev, t, L, R, eps, floor))
        keep = keep[0] if len(keep) == 1 else st.xp.concatenate(keep)
        active = active[keep]  # the one sync per checkpoint: how many streams remain
        n_active = int(active.shape[0])
        t_prev = t
    if st is None:  # no stream: nothing was drawn
        return np.full(m, np.nan), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=bool)
    return st.est, st.used, st.below


#: (rows, batch) float64 arrays one block of :func:`bernstein_stop` holds at once (the batch, its running sums,
#: means, variances, betting fractions and the temporaries of their expressions; the draw's own gathers are
#: chunked by the draw)
BATCH_TEMPORARIES = 16


class _BernsteinState:
    """Running sums of :func:`bernstein_stop` for ``m`` streams, in the namespace ``xp``."""

    def __init__(self, m, xp):
        self.xp = xp
        self.est = xp.full(m, xp.nan)
        self.below = xp.zeros(m, dtype=bool)
        self.used = xp.zeros(m, dtype=xp.int64)
        self.s_x, self.s_q = xp.zeros(m), xp.zeros(m)  # running sum of X and of (X_j - m_j)^2
        self.s_lam, self.s_lam_x, self.s_psi = xp.zeros(m), xp.zeros(m), xp.zeros(m)
        self.lb, self.ub = xp.zeros(m), xp.full(m, xp.inf)

    def absorb(self, a, X, t_prev, t, L, R, eps, floor):
        """Take samples ``t_prev+1 .. t`` (``X``, scaled to [0, 1]) of the streams ``a``; settle those that stop.
        Returns the mask of the streams of ``a`` still running (updates by mask: no data-dependent index sets,
        hence no device sync)."""
        xp = self.xp
        i = xp.arange(t_prev + 1, t + 1, dtype=xp.float64)  # 1-based sample indices of the batch
        S = self.s_x[a][:, None] + xp.cumsum(X, axis=1)  # sum_{j <= i} X_j
        mean_i = (0.5 + S) / (i + 1.0)
        mean_prev = xp.concatenate([((0.5 + self.s_x[a]) / (t_prev + 1.0))[:, None], mean_i[:, :-1]], axis=1)
        Q = self.s_q[a][:, None] + xp.cumsum((X - mean_i) ** 2, axis=1)
        var_prev = xp.concatenate([((0.25 + self.s_q[a]) / (t_prev + 1.0))[:, None],
                                   ((0.25 + Q) / (i + 1.0))[:, :-1]], axis=1)
        lam = xp.minimum(LAMBDA_CAP, xp.sqrt(2.0 * L / (var_prev * i * xp.log1p(i))))
        self.s_lam[a] += lam.sum(axis=1)
        self.s_lam_x[a] += (lam * X).sum(axis=1)
        self.s_psi[a] += ((X - mean_prev) ** 2 * (-xp.log1p(-lam) - lam)).sum(axis=1)  # v psi = (..)^2 (..)
        self.s_x[a], self.s_q[a] = S[:, -1], Q[:, -1]
        self.used[a] = t
        centre = self.s_lam_x[a] / self.s_lam[a]
        half = (L + self.s_psi[a]) / self.s_lam[a]
        lb = self.lb[a] = xp.maximum(self.lb[a], R * (centre - half))
        ub = self.ub[a] = xp.minimum(self.ub[a], R * (centre + half))
        low = ub < floor
        stop = (1.0 + eps) * lb >= (1.0 - eps) * ub
        self.below[a] = low  # a running stream has not been flagged yet
        self.est[a] = xp.where(low, R * self.s_x[a] / t,
                               xp.where(stop, 0.5 * ((1.0 + eps) * lb + (1.0 - eps) * ub), self.est[a]))
        return ~(stop | low)
