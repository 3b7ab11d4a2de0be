"""numba kernels of the hashing-based estimators: per (query, table) bucket work as plain loops.

They receive the bucket found for every (table, query) and the uniforms drawn on the host, so
they reproduce the NumPy reference draw for draw (same member, same kernel value).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config
from .lsh import PARALLEL_MIN_WORK, _jit_pair

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TINY = np.finfo(np.float64).tiny


@numba.njit(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def log_p1(c):
    """log of the p-stable collision probability p1(c) (0 at c = 0)."""
    if c < 1e-100:  # p1(c) = 1 - sqrt(2/pi) c + O(c^3); also avoids 1/c^2 overflow
        return -_SQRT_2_OVER_PI * c
    p = math.erf(1.0 / (math.sqrt(2.0) * c)) + _SQRT_2_OVER_PI * c * math.expm1(-0.5 / (c * c))
    return math.log(max(p, _TINY))


@numba.njit(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def kernel_over_collision(r2, n_concat, width):
    """``k(x, q) / p(x, q) = exp(-r^2) / p1(r / w)^k``: the importance weight of an HBE sample."""
    return math.exp(-r2 - n_concat * log_p1(math.sqrt(r2) / width))


@numba.njit(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def _sqdist(X, a, Y, i):
    s = 0.0
    for k in range(X.shape[1]):
        t = X[a, k] - Y[i, k]
        s += t * t
    return s


def _hbe_sample(Xs, Ys, members, first, last, bucket_ptr, cdf_key, bucket_weight, bucket, u, table0,
                size, n_concat, width):
    """One weighted draw per bucket: ``Z[i, t] = (W_B / size) k(x, q) / p(x, q)``.

    Parameters
    ----------
    Xs : (n, d) float64 ndarray
        Rescaled data (kernel ``exp(-r^2)``).
    Ys : (m, d) float64 ndarray
        Rescaled queries.
    members, first, last, bucket_ptr, cdf_key, bucket_weight : ndarrays
        The CSR arrays of :class:`kdetheory.lsh.euclidean.BucketTables`.
    bucket : (T, m) int64 ndarray
        Global bucket of query ``i`` in table ``table0 + t`` (``-1``: empty).
    u : (T, m) float64 ndarray
        Uniforms in [0, 1) that pick the member (drawn on the host: same draw as NumPy).
    table0 : int
        First table of ``bucket``.
    size, n_concat, width : int, int, float
        Stored points per table, hashes per key, bucket width.

    Returns
    -------
    Z : (m, T) float64 ndarray
        One unbiased sample per (query, table); 0 for an empty bucket.
    kev : (m,) int64 ndarray
        Kernel evaluations per query.
    """
    T, m = bucket.shape
    Z = np.zeros((m, T))
    kev = np.zeros(m, dtype=np.int64)
    for i in numba.prange(m):
        for t in range(T):
            b = bucket[t, i]
            if b < 0:
                continue
            base = (table0 + t) * size
            target = (b - bucket_ptr[table0 + t]) + u[t, i]
            lo, hi = base, base + size
            while lo < hi:  # first position with cdf_key > target (searchsorted "right")
                mid = (lo + hi) // 2
                if cdf_key[mid] <= target:
                    lo = mid + 1
                else:
                    hi = mid
            pos = min(max(lo, first[b]), last[b] - 1)
            r2 = _sqdist(Xs, members[pos], Ys, i)
            kev[i] += 1
            Z[i, t] = bucket_weight[b] / size * kernel_over_collision(r2, n_concat, width)
    return Z, kev


def _hbe_bucket(Xs, Ys, weights, members, first, last, bucket, size, n_concat, width):
    """Whole bucket: ``Z[i, t] = (1/size) sum_{x in B} w_x k(x, q) / p(x, q)``.

    Parameters
    ----------
    Xs, Ys : (n, d), (m, d) float64 ndarrays
        Rescaled data and queries.
    weights : (n,) float64 ndarray
    members, first, last : ndarrays
        CSR arrays of the bucket tables.
    bucket : (T, m) int64 ndarray
        Global bucket per (table, query), ``-1`` for empty.
    size, n_concat, width : int, int, float

    Returns
    -------
    Z : (m, T) float64 ndarray
    kev : (m,) int64 ndarray
        Kernel evaluations per query (the bucket sizes).
    """
    T, m = bucket.shape
    Z = np.zeros((m, T))
    kev = np.zeros(m, dtype=np.int64)
    for i in numba.prange(m):
        for t in range(T):
            b = bucket[t, i]
            if b < 0:
                continue
            acc = 0.0
            for pos in range(first[b], last[b]):
                a = members[pos]
                r2 = _sqdist(Xs, a, Ys, i)
                acc += weights[a] * kernel_over_collision(r2, n_concat, width)
            kev[i] += last[b] - first[b]
            Z[i, t] = acc / size
    return Z, kev


def _ckns_shell(Xs, Ys, coef, members, first, last, bucket, r2_lo, r2_hi, n_concat, width, n_tables):
    """One CKNS shell: ``sum coef_x k(x, q) / P_found(x)`` over the distinct points found in any
    table that lie in the shell ``r2_lo <= r^2 < r2_hi``, ``P_found = 1 - (1 - p1^k)^L``.

    Parameters
    ----------
    Xs, Ys : (n, d), (m, d) float64 ndarrays
        Rescaled data and queries.
    coef : (L * s,) float64 ndarray
        ``w_x / (n pi_x)`` per stored position.
    members, first, last : ndarrays
        CSR arrays of the shell's bucket tables.
    bucket : (L, m) int64 ndarray
        Global bucket per (table, query), ``-1`` for empty.
    r2_lo, r2_hi : float
        The shell in squared distance.
    n_concat, width, n_tables : int, float, int
        ``k``, ``w`` and ``L`` of the shell's E2LSH.

    Returns
    -------
    Z : (m,) float64 ndarray
    kev : (m,) int64 ndarray
        Distinct points evaluated per query.
    """
    T, m = bucket.shape
    Z = np.zeros(m)
    kev = np.zeros(m, dtype=np.int64)
    for i in numba.prange(m):
        total = 0
        for t in range(T):
            b = bucket[t, i]
            if b >= 0:
                total += last[b] - first[b]
        cand = np.empty(total, dtype=np.int64)
        c = 0
        for t in range(T):
            b = bucket[t, i]
            if b >= 0:
                for pos in range(first[b], last[b]):
                    cand[c] = pos
                    c += 1
        # dedupe by data index (a point found in several tables counts once)
        keys = np.empty(total, dtype=np.int64)
        for c in range(total):
            keys[c] = members[cand[c]]
        order = np.argsort(keys, kind="mergesort")
        acc = 0.0
        prev = -1
        for c in range(total):
            pos = cand[order[c]]
            a = members[pos]
            if a == prev:
                continue
            prev = a
            kev[i] += 1
            r2 = _sqdist(Xs, a, Ys, i)
            if r2 < r2_lo or r2 >= r2_hi:
                continue
            p = math.exp(n_concat * log_p1(math.sqrt(r2) / width))
            found = -math.expm1(n_tables * math.log1p(-min(p, 1.0)))
            acc += coef[pos] * math.exp(-r2) / found
        Z[i] = acc
    return Z, kev


_PAIRS = {name: _jit_pair(func) for name, func in
          (("hbe_sample", _hbe_sample), ("hbe_bucket", _hbe_bucket), ("ckns_shell", _ckns_shell))}


def _pick(name, bucket):
    serial, parallel = _PAIRS[name]
    return parallel if bucket.size >= PARALLEL_MIN_WORK else serial


def hbe_sample(Xs, Ys, level, bucket, u, table0):
    """One weighted draw per bucket of an HBE level (record ``level``: ``tables``, ``size``, ``k``,
    ``width``): returns ((m, T) samples, (m,) kernel evaluations). See :func:`_hbe_sample`."""
    tab = level.tables
    return _pick("hbe_sample", bucket)(Xs, Ys, tab.members, tab.first, tab.last, tab.bucket_ptr, tab.cdf_key,
                                       tab.bucket_weight, bucket, u, table0, level.size, level.k, level.width)


def hbe_bucket(Xs, Ys, weights, level, bucket):
    """Whole-bucket samples of an HBE level: returns ((m, T) samples, (m,) kernel evaluations).
    See :func:`_hbe_bucket`."""
    tab = level.tables
    return _pick("hbe_bucket", bucket)(Xs, Ys, weights, tab.members, tab.first, tab.last, bucket, level.size,
                                       level.k, level.width)


def ckns_shell(Xs, Ys, shell, unit, bucket, width):
    """One CKNS shell of one copy (records ``shell``: ``r2``, ``k``, ``L``; ``unit``: ``tables``,
    ``coef_pos``): returns ((m,) sums, (m,) kernel evaluations). See :func:`_ckns_shell`."""
    tab = unit.tables
    return _pick("ckns_shell", bucket)(Xs, Ys, unit.coef_pos, tab.members, tab.first, tab.last, bucket,
                                       shell.r2[0], shell.r2[1], shell.k, width, shell.L)
