"""CuPy twin of :func:`kdetheory._stream.online_softmax`: the fused CUDA kernel ``online_softmax.cu``.

One launch covers every (batch, query tile) pair and, when that leaves the GPU underused
(few queries, many keys: exact KDE), ``S`` splits of each tile's key sequence, whose partial
accumulators are merged here with the same max-shift rule.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _module


@functools.lru_cache(maxsize=64)
def _device_ranges(*arrays):
    """int32 device copies of a KeyRanges' arrays, given as (bytes, dtype) pairs and cached by content
    (one host-to-device copy per partition)."""
    import cupy as cp

    return tuple(cp.asarray(np.frombuffer(a, dtype=t).astype(np.int32)) for a, t in arrays)


def online_softmax(Q, K, V=None, *, scale=1.0, log_w=None, ranges, sum_range=True, index=None, index_log_w=None):
    """Fused kernel of :func:`kdetheory._stream.online_softmax` (CuPy arrays; same contract).

    Parameters and returns as there. float32 and float64; the logits of one (query tile, key
    tile) pair live in registers and shared memory only. Inputs are made C-contiguous and cast
    to Q's dtype (the index list to int32: n_k < 2^31).
    """
    import cupy as cp

    B, n_q, d = Q.shape
    n_k = K.shape[1]
    dtype = Q.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"Q: got dtype {dtype}; the fused kernel computes in float32 or float64.")
    p = 0 if V is None else V.shape[2]
    c = lambda a, t=dtype: None if a is None else cp.ascontiguousarray(a, dtype=t)  # noqa: E731
    Q, K, V = c(Q), c(K), c(V)
    asynchronous = _module.asynchronous(dtype, d, p, K, V)
    tm, bk = _module.tiles(dtype, d, p, asynchronous)
    fn, smem = _module.kernel(dtype.name, d, p, tm, bk, asynchronous)
    m = 0 if index is None else index.shape[1]
    q_start, k_lo, k_hi = _device_ranges(*((a.tobytes(), a.dtype.str) for a in map(
        np.asarray, (ranges.q_start, ranges.k_lo, ranges.k_hi))))
    n_qtiles = -(-n_q // (16 * tm))
    blocks = B * n_qtiles
    # Key tiles of the longest walk; split them when the query tiles alone leave SMs idle.
    span = int(np.max(np.asarray(ranges.k_hi) - np.asarray(ranges.k_lo), initial=0)) if sum_range else 0
    tiles = -(-span // bk) + -(-m // bk)
    target = 4 * _module.multiprocessors()
    n_split = int(max(1, min(-(-target // blocks), tiles // 4)))
    mx = cp.empty((n_split, B, n_q), dtype=dtype)
    acc = cp.empty((n_split, B, n_q, p + 1), dtype=dtype)
    null = lambda a: np.uint64(0) if a is None else a  # noqa: E731  (a null pointer)
    fn((blocks, n_split), (256,),
       (Q, K, null(V), null(c(log_w)), q_start, k_lo, k_hi, np.int32(ranges.k_lo.shape[0]),
        np.int32(bool(sum_range)), null(c(index, np.int32)), null(c(index_log_w)), np.int32(m),
        dtype.type(scale), np.int32(B), np.int32(n_q), np.int32(n_k), np.int32(n_qtiles), np.int32(n_split),
        mx, acc), shared_mem=smem)
    if n_split == 1:
        return mx[0], acc[0]
    top = mx.max(axis=0)
    shift = cp.where(cp.isfinite(top), top, 0)
    factor = cp.exp(mx - shift)
    return top, (acc * factor[..., None]).sum(axis=0)
