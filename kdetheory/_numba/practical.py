"""numba twins of :func:`kdetheory.attention._blocks.block_diagonal_products` and
:func:`~kdetheory.attention._blocks.masked_sampled_products`: one (batch, sorted query) pair
per parallel iteration, a single pass with a running maximum (online softmax)."""
from __future__ import annotations

import numba
import numpy as np

from .exact import _JIT, online_update


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
            run_max = online_update(acc[b, i], run_max, s, V1s[b, j])
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
            run_max = online_update(acc[b, i], run_max, s + log_w[b, s_], V1_samp[b, s_])
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
