"""numba twin of :func:`kdetheory._stream.online_softmax`: one (batch, query) pair per parallel
iteration, one pass over its range keys and then its index entries with a running maximum.

:func:`online_update` is the accumulation step (the "online softmax"): it rescales what was
accumulated whenever the maximum grows, so no exponential ever sees a positive argument.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config

# Bound at import (see kdetheory._config).
_JIT = dict(parallel=_config.NUMBA_PARALLEL, fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)


@numba.njit(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def online_update(acc, run_max, logit, values):
    """``acc <- acc + e^logit [values, 1]`` with ``acc`` kept relative to ``e^run_max``.

    Parameters
    ----------
    acc : (p + 1,) array
        Accumulator, relative to ``exp(run_max)``; updated in place.
    run_max : float
        Current maximum (``-inf`` before the first key).
    logit : float
        The new logit (weight included).
    values : (p,) array
        The key's value row; the last accumulator entry receives the weight itself.

    Returns
    -------
    float
        The new maximum.
    """
    p = values.shape[0]
    if logit > run_max:
        r = math.exp(run_max - logit)
        for k in range(p + 1):
            acc[k] *= r
        run_max = logit
    e = math.exp(logit - run_max)
    for k in range(p):
        acc[k] += e * values[k]
    acc[p] += e
    return run_max


@numba.njit(**_JIT)
def _online_softmax(Q, K, V, log_w, q_block, k_lo, k_hi, sum_range, index, index_log_w, scale):
    """Loop kernel of :func:`online_softmax`.

    Parameters
    ----------
    Q : (B, n_q, d), K : (B, n_k, d), V : (B, n_k, p) C-contiguous arrays of one float dtype
    log_w : (B, n_k) range-key log-weights (zeros for none)
    q_block : (n_q,) int64 block of each query; k_lo, k_hi : (T,) int64 its key range
    sum_range : bool
    index : (B, m) int64; index_log_w : (B, m) (m = 0 for no index list)
    scale : float

    Returns
    -------
    mx : (B, n_q), acc : (B, n_q, p + 1) as in :func:`kdetheory._stream.online_softmax`.
    """
    B, n_q, d = Q.shape
    p = V.shape[2]
    m = index.shape[1]
    mx = np.empty((B, n_q), dtype=Q.dtype)
    acc = np.zeros((B, n_q, p + 1), dtype=Q.dtype)
    for flat in numba.prange(B * n_q):
        b = flat // n_q
        i = flat - b * n_q
        t = q_block[i]
        lo, hi = k_lo[t], k_hi[t]
        run_max = -np.inf
        if sum_range:
            for j in range(lo, hi):
                if log_w[b, j] == -np.inf:
                    continue
                s = 0.0
                for k in range(d):
                    s += Q[b, i, k] * K[b, j, k]
                run_max = online_update(acc[b, i], run_max, scale * s + log_w[b, j], V[b, j])
        for e in range(m):
            j = index[b, e]
            if (lo <= j < hi) or index_log_w[b, e] == -np.inf:
                continue  # inside the query's own range: excluded (or already counted exactly)
            s = 0.0
            for k in range(d):
                s += Q[b, i, k] * K[b, j, k]
            run_max = online_update(acc[b, i], run_max, scale * s + index_log_w[b, e], V[b, j])
        mx[b, i] = run_max
    return mx, acc


def online_softmax(Q, K, V=None, *, scale=1.0, log_w=None, ranges, sum_range=True, index=None, index_log_w=None):
    """numba kernel of :func:`kdetheory._stream.online_softmax` (host arrays; same contract)."""
    B, n_q, d = Q.shape
    n_k = K.shape[1]
    dtype = Q.dtype
    c = np.ascontiguousarray
    V = np.zeros((B, n_k, 0), dtype) if V is None else c(V, dtype=dtype)
    log_w = np.zeros((B, n_k), dtype) if log_w is None else c(log_w, dtype=dtype)
    if index is None:
        index, index_log_w = np.zeros((B, 0), np.int64), np.zeros((B, 0), dtype)
    q_block, _, _ = ranges.per_query()
    return _online_softmax(c(Q), c(K, dtype=dtype), V, log_w, q_block, c(ranges.k_lo, dtype=np.int64),
                           c(ranges.k_hi, dtype=np.int64), bool(sum_range), c(index, dtype=np.int64),
                           c(index_log_w, dtype=dtype), dtype.type(scale))
