"""numba twin of :func:`kdetheory._stream.lse_products`: one (batch, query) row per parallel
iteration, a single pass over the points with a running maximum (online log-sum-exp).

:func:`online_update` is the one accumulation step shared by every online-softmax kernel of
the package (here and in ``practical.py``).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config

_JIT = dict(parallel=_config.NUMBA_PARALLEL, fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)


@numba.njit(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def online_update(acc, run_max, logit, values):
    """``acc <- acc + e^logit values`` with ``acc`` kept relative to ``e^run_max``; returns the new maximum.

    When the logit exceeds the running maximum, what was accumulated is rescaled first, so no
    exponential ever sees a positive argument (nothing overflows).
    """
    if logit > run_max:
        r = math.exp(run_max - logit)
        for k in range(acc.shape[0]):
            acc[k] *= r
        run_max = logit
    e = math.exp(logit - run_max)
    for k in range(acc.shape[0]):
        acc[k] += e * values[k]
    return run_max


@numba.njit(**_JIT)
def _lse_products(Y, X, log_w, V1, scale):
    B, m, d = Y.shape
    n = X.shape[1]
    p = V1.shape[2]  # the last column of V1 is ones: its accumulator is the row sum
    lse = np.empty((B, m), dtype=Y.dtype)
    acc = np.zeros((B, m, p), dtype=Y.dtype)
    for bi in numba.prange(B * m):
        b = bi // m
        i = bi - b * m
        run_max = -np.inf
        for j in range(n):
            if log_w[b, j] == -np.inf:
                continue
            t = 0.0
            for k in range(d):
                t += Y[b, i, k] * X[b, j, k]
            run_max = online_update(acc[b, i], run_max, scale * t + log_w[b, j], V1[b, j])
        total = acc[b, i, p - 1]
        if total == 0.0:
            lse[b, i] = -np.inf
        else:
            lse[b, i] = run_max + math.log(total)
            for k in range(p - 1):
                acc[b, i, k] /= total
    return lse, acc


def lse_products(Y, X, log_w, V=None, *, scale=1.0):
    """Same contract as :func:`kdetheory._stream.lse_products` (host arrays only).

    Leading axes are flattened into one batch axis; the kernel parallelises over
    (batch, query) pairs, so there is no Python loop over heads.
    """
    dtype = Y.dtype
    lead = Y.shape[:-2]
    m, n = Y.shape[-2], X.shape[-2]
    if log_w is None:
        log_w = np.zeros(X.shape[:-1], dtype=dtype)
    ones = np.ones(X.shape[:-1] + (1,), dtype=dtype)
    V1 = ones if V is None else np.concatenate([V.astype(dtype, copy=False), ones], axis=-1)
    lse, acc = _lse_products(
        np.ascontiguousarray(Y.reshape(-1, m, Y.shape[-1])), np.ascontiguousarray(X.reshape(-1, n, X.shape[-1])),
        np.ascontiguousarray(log_w.reshape(-1, n), dtype=dtype),
        np.ascontiguousarray(V1.reshape(-1, n, V1.shape[-1])), dtype.type(scale),
    )
    lse = lse.reshape(lead + (m,))
    return lse, (None if V is None else acc[..., :-1].reshape(lead + (m, V.shape[-1])))
