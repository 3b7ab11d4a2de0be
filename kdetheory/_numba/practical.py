"""numba twins of :func:`kdetheory.attention._blocks.block_diagonal_products` and
:func:`~kdetheory.attention._blocks.masked_sampled_products`: one (batch, sorted query) pair
per parallel iteration, a single pass with a running maximum (online softmax)."""
from __future__ import annotations

import math

import numba
import numpy as np

from .. import _config

_JIT = dict(parallel=_config.NUMBA_PARALLEL, fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)


@numba.njit(**_JIT)
def _block_diagonal(Qs, Ks, V1s, k_start, q_block):
    B, n_q, d = Qs.shape
    p = V1s.shape[2]
    mx = np.empty((B, n_q), dtype=Qs.dtype)
    acc = np.zeros((B, n_q, p), dtype=Qs.dtype)
    for flat in numba.prange(B * n_q):
        b = flat // n_q
        i = flat % n_q
        t = q_block[i]
        run_max = -np.inf
        for j in range(k_start[t], k_start[t + 1]):
            s = 0.0
            for k in range(d):
                s += Qs[b, i, k] * Ks[b, j, k]
            if s > run_max:
                # Rescale what was accumulated under the old maximum (never overflows).
                r = math.exp(run_max - s)
                for k in range(p):
                    acc[b, i, k] *= r
                run_max = s
            e = math.exp(s - run_max)
            for k in range(p):
                acc[b, i, k] += e * V1s[b, j, k]
        mx[b, i] = run_max
    return mx, acc


@numba.njit(**_JIT)
def _masked_sampled(Qs, K_samp, V1_samp, log_w, k_block, q_block):
    B, n_q, d = Qs.shape
    m = K_samp.shape[1]
    p = V1_samp.shape[2]
    mx = np.empty((B, n_q), dtype=Qs.dtype)
    acc = np.zeros((B, n_q, p), dtype=Qs.dtype)
    for flat in numba.prange(B * n_q):
        b = flat // n_q
        i = flat % n_q
        t = q_block[i]
        run_max = -np.inf
        for s_ in range(m):
            if k_block[b, s_] == t:
                continue  # this entry is already in the exact sparse part
            s = 0.0
            for k in range(d):
                s += Qs[b, i, k] * K_samp[b, s_, k]
            s += log_w[b, s_]
            if s > run_max:
                r = math.exp(run_max - s)
                for k in range(p):
                    acc[b, i, k] *= r
                run_max = s
            e = math.exp(s - run_max)
            for k in range(p):
                acc[b, i, k] += e * V1_samp[b, s_, k]
        mx[b, i] = run_max
    return mx, acc


def block_diagonal_products(Qs, Ks, V1s, part):
    """Same contract as the NumPy reference (host arrays only)."""
    c = np.ascontiguousarray
    return _block_diagonal(c(Qs), c(Ks), c(V1s), part.k_start, part.q_block)


def masked_sampled_products(Qs, K_samp, V1_samp, log_w, k_block, part):
    """Same contract as the NumPy reference (host arrays only)."""
    c = np.ascontiguousarray
    return _masked_sampled(c(Qs), c(K_samp), c(V1_samp), c(log_w, dtype=Qs.dtype), c(k_block, dtype=np.int64), part.q_block)
