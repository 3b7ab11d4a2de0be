"""CuPy twin of :func:`kdetheory.attention._blocks.finish`: one fused pass that merges the two
parts of the practical KDEformer, normalises, and un-permutes the queries."""
from __future__ import annotations

from . import _module


def finish(mx_s, acc_s, mx_r, acc_r, perm_q):
    """Same contract as :func:`kdetheory.attention._blocks.finish` (CuPy arrays).

    One thread per accumulator entry; each writes its row at the query's input position, so
    no inverse permutation and no separate gathers are needed.
    """
    import cupy as cp

    B, n_q, p1 = acc_s.shape
    dtype = acc_s.dtype
    fn = _module.module(dtype.name, 1, p1 - 1, 1, 16, False).get_function("finish")
    out = cp.empty((B, n_q, p1 - 1), dtype=dtype)
    log_d, shift = cp.empty((B, n_q), dtype=dtype), cp.empty((B, n_q), dtype=dtype)
    sparse, residual = cp.empty_like(acc_s), cp.empty_like(acc_s)
    total = B * n_q * p1
    c = cp.ascontiguousarray
    fn((-(-total // 256),), (256,), (c(mx_s), c(acc_s), c(mx_r), c(acc_r), c(perm_q, dtype=cp.int64),
                                     cp.int32(B), cp.int32(n_q), out, log_d, sparse, residual, shift))
    return out, log_d, sparse, residual, shift
