"""numba twin of :func:`kdetheory._stream.lse_products`: one query row per parallel
iteration, a single pass over the points with a running maximum (online log-sum-exp)."""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config


@numba.njit(parallel=_config.NUMBA_PARALLEL, fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def _lse_products(Y, X, log_w, V, scale, with_values):
    B, m, d = Y.shape
    n = X.shape[1]
    p = V.shape[2]
    lse = np.empty((B, m), dtype=Y.dtype)
    out = np.zeros((B, m, p), dtype=Y.dtype)
    for bi in numba.prange(B * m):
        b = bi // m
        i = bi - b * m
        run_max = -np.inf
        run_sum = 0.0
        acc = np.zeros(p, dtype=Y.dtype)
        for j in range(n):
            lw = log_w[b, j]
            if lw == -np.inf:
                continue
            t = 0.0
            for k in range(d):
                t += Y[b, i, k] * X[b, j, k]
            t = scale * t + lw
            if t > run_max:
                # Rescale what was accumulated under the old maximum (never overflows).
                r = math.exp(run_max - t)
                run_sum *= r
                if with_values:
                    for k in range(p):
                        acc[k] *= r
                run_max = t
            e = math.exp(t - run_max)
            run_sum += e
            if with_values:
                for k in range(p):
                    acc[k] += e * V[b, j, k]
        if run_sum == 0.0:
            lse[b, i] = -np.inf
        else:
            lse[b, i] = run_max + math.log(run_sum)
            if with_values:
                for k in range(p):
                    out[b, i, k] = acc[k] / run_sum
    return lse, out


def lse_products(Y, X, log_w, V=None, *, scale=1.0):
    """Same contract as :func:`kdetheory._stream.lse_products` (host arrays only).

    Leading axes are flattened into one batch axis; the kernel parallelises over
    (batch, query) pairs, so there is no Python loop over heads.
    """
    dtype = Y.dtype
    lead = Y.shape[:-2]
    m, n = Y.shape[-2], X.shape[-2]
    with_values = V is not None
    if log_w is None:
        log_w = np.zeros(X.shape[:-1], dtype=dtype)
    Vk = V if with_values else np.zeros(X.shape[:-1] + (1,), dtype=dtype)
    lse, out = _lse_products(
        np.ascontiguousarray(Y.reshape(-1, m, Y.shape[-1])), np.ascontiguousarray(X.reshape(-1, n, X.shape[-1])),
        np.ascontiguousarray(log_w.reshape(-1, n), dtype=dtype),
        np.ascontiguousarray(Vk.reshape(-1, n, Vk.shape[-1]), dtype=dtype), dtype.type(scale), with_values,
    )
    lse = lse.reshape(lead + (m,))
    return lse, (out.reshape(lead + (m, out.shape[-1])) if with_values else None)
