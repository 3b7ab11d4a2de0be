"""Streaming log-sum-exp products: the one computational routine behind every exact
kernel sum and exact attention in the package (the NumPy/CuPy reference path).

For queries Y (m x d), points X (n x d), log-weights l (n,) and optional values V (n x p)
it returns, for every query row i,

    lse_i = log sum_j exp(s * <y_i, x_j> + l_j)                       (1)
    out_i = sum_j exp(s * <y_i, x_j> + l_j - lse_i) * v_j              (2)

without ever holding more than ``_config.CHUNK_BYTES`` of logits: queries are cut into row
blocks and points into column blocks, and column blocks are merged with the usual running
maximum (the "online softmax"), so every exp is max-shifted and nothing overflows.
"""
from __future__ import annotations

import numpy as np

from . import _config

__all__ = ["block_shape", "lse_products", "shifted_exp_"]


def block_shape(m: int, n: int, itemsize: int, *, temporaries: int = 2) -> tuple[int, int]:
    """Row and column block sizes so that ``temporaries`` (rows x cols) blocks fit the budget."""
    entries = max(1, _config.CHUNK_BYTES // (temporaries * itemsize))
    cols = min(n, entries)
    rows = max(1, min(m, entries // cols))
    return rows, cols


def shifted_exp_(block, shift, xp=np):
    """In place: ``block <- exp(block - shift[..., None])``, one pass on the GPU (a fused
    kernel), two in-place passes and no temporary on the host. Returns ``block``."""
    if xp is np:
        np.subtract(block, shift[..., None], out=block)
        return np.exp(block, out=block)
    from ._cupy.fused import shifted_exp_ as fused

    return fused(block, shift)


def lse_products(Y, X, log_w, V=None, *, scale=1.0, xp=np):
    """Evaluate (1) and, when ``V`` is given, (2) above, chunked and max-shifted.

    Parameters
    ----------
    Y : (..., m, d) array
    X : (..., n, d) array
    log_w : (..., n) array or None
        Log-weights; ``-inf`` marks a point with weight zero (it contributes nothing). None
        means all zero (unit weights).
    V : (..., n, p) array, optional
    scale : float
    xp : module
        numpy or cupy.

    Leading (batch, head) axes must agree; they are processed together by batched matrix
    products (no Python loop over them), and count towards the chunk budget.

    Returns
    -------
    lse : (..., m) array
        ``-inf`` for a query whose every weight is zero.
    out : (..., m, p) array or None
        Zero rows where ``lse`` is ``-inf``.
    """
    lead = Y.shape[:-2]
    m, n = Y.shape[-2], X.shape[-2]
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    dtype = Y.dtype
    rows, cols = block_shape(m * batch, n, dtype.itemsize)
    rows = max(1, rows // batch)
    # A ones column appended to V makes the row sums come out of the second matrix product:
    # one pass over the block fewer than a separate sum.
    ones = xp.ones(X.shape[:-1] + (1,), dtype=dtype)
    V1 = ones if V is None else xp.concatenate([V.astype(dtype, copy=False), ones], axis=-1)
    lse = xp.empty(lead + (m,), dtype=dtype)
    out = None if V is None else xp.empty(lead + (m, V.shape[-1]), dtype=dtype)
    for r0 in range(0, m, rows):
        Yb = Y[..., r0:r0 + rows, :] * dtype.type(scale)
        shape = Yb.shape[:-1]
        run_max = xp.full(shape, -xp.inf, dtype=dtype)
        acc = xp.zeros(shape + (V1.shape[-1],), dtype=dtype)  # [sum_j w_ij v_j, sum_j w_ij]
        for c0 in range(0, n, cols):
            logits = Yb @ xp.swapaxes(X[..., c0:c0 + cols, :], -1, -2)
            if log_w is not None:  # attention passes None: all weights one, one pass saved
                logits += log_w[..., None, c0:c0 + cols]
            new_max = xp.maximum(run_max, logits.max(axis=-1))
            # Rows that have seen only zero weights keep max -inf; shift by 0 there to avoid inf - inf.
            shift = xp.where(xp.isfinite(new_max), new_max, 0)
            acc *= xp.exp(run_max - shift)[..., None]
            acc += shifted_exp_(logits, shift, xp) @ V1[..., c0:c0 + cols, :]
            run_max = new_max
        run_sum = acc[..., -1]
        empty = run_sum == 0
        with np.errstate(divide="ignore"):
            lse[..., r0:r0 + rows] = xp.where(empty, -xp.inf, xp.log(xp.where(empty, 1, run_sum)) + run_max)
        if out is not None:
            out[..., r0:r0 + rows, :] = acc[..., :-1] / xp.where(empty, 1, run_sum)[..., None]
    return lse, out


def lse_products_on(backend, Y, X, log_w, V=None, *, scale=1.0):
    """Run the routine on a concrete backend ("numpy" | "numba" | "cupy"); leading axes allowed.

    Inputs are arrays of the backend's namespace except for ``"cupy"`` with host inputs,
    which are copied to the GPU and the results copied back (array type in = type out).
    """
    if backend == "numba":
        from ._numba.exact import lse_products as kernel

        return kernel(Y, X, log_w, V, scale=scale)
    if backend == "cupy":
        from ._array import get_cupy, is_cupy_array

        cp = get_cupy()
        on_host = not is_cupy_array(Y)
        args = [None if a is None else cp.asarray(a) for a in (Y, X, log_w, V)]
        lse, out = lse_products(*args, scale=scale, xp=cp)
        if on_host:
            return lse.get(), (None if out is None else out.get())
        return lse, out
    return lse_products(Y, X, log_w, V, scale=scale, xp=np)
