"""numba twin of :func:`kdetheory._stream.lse_products`: one query row per parallel
iteration, a single pass over the points with a running maximum (online log-sum-exp)."""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config


@numba.njit(parallel=_config.NUMBA_PARALLEL, fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
def _lse_products(Y, X, log_w, V, scale, with_values):
    m, d = Y.shape
    n = X.shape[0]
    p = V.shape[1]
    lse = np.empty(m, dtype=Y.dtype)
    out = np.zeros((m, p), dtype=Y.dtype)
    for i in numba.prange(m):
        run_max = -np.inf
        run_sum = 0.0
        acc = np.zeros(p, dtype=Y.dtype)
        for j in range(n):
            lw = log_w[j]
            if lw == -np.inf:
                continue
            t = 0.0
            for k in range(d):
                t += Y[i, k] * X[j, k]
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
                    acc[k] += e * V[j, k]
        if run_sum == 0.0:
            lse[i] = -np.inf
        else:
            lse[i] = run_max + math.log(run_sum)
            if with_values:
                for k in range(p):
                    out[i, k] = acc[k] / run_sum
    return lse, out


def lse_products(Y, X, log_w, V=None, *, scale=1.0):
    """Same contract as :func:`kdetheory._stream.lse_products` (host arrays only)."""
    dtype = Y.dtype
    with_values = V is not None
    Vk = V if with_values else np.zeros((X.shape[0], 1), dtype=dtype)
    lse, out = _lse_products(
        np.ascontiguousarray(Y), np.ascontiguousarray(X), np.ascontiguousarray(log_w, dtype=dtype),
        np.ascontiguousarray(Vk, dtype=dtype), dtype.type(scale), with_values,
    )
    return lse, (out if with_values else None)
