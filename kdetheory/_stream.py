"""The one online-softmax reduction of the package, with key ranges and index lists.

Every exact kernel sum, exact attention and both products of the practical KDEformer are calls
of :func:`online_softmax` (docs/math.md §1 and §4). For queries ``q_i`` (scaled by ``s``),
keys ``k_j``, values ``v_j`` and per-key log-weights, it returns for every query the
max-shifted accumulator

    mx_i  = max_{j in S_i} (s <q_i, k_j> + w_j)
    acc_i = sum_{j in S_i} exp(s <q_i, k_j> + w_j - mx_i) [v_j, 1]                    (1)

over a per-query key set ``S_i`` made of two parts (the idea of pykeops's ``ranges``):

* a contiguous **range** ``[lo_t, hi_t)`` of keys, one per query block ``t`` (all keys when no
  ranges are given), with weights ``w_j = log_w_j`` (0 when ``log_w`` is None);
* an **index list** ``j_1 .. j_m`` (per batch element, repetitions allowed) with weights
  ``index_log_w``; an entry that falls inside the query's own range is *excluded*, so the
  sampled part never counts a key the range part holds exactly (the residual of Algorithm 3).

``sum_range=False`` keeps the range only as the exclusion mask. Nothing is ever exponentiated
unshifted (the running maximum of the "online softmax"), so logits in the thousands are exact.

Three kernels compute (1), chosen from :data:`KERNELS` by backend name: the NumPy reference
below (chunked batched GEMMs, at most ``_config.CHUNK_BYTES`` of logits at a time), its numba
twin ``kdetheory._numba._stream`` (one loop per query) and the fused CUDA kernel
``kdetheory._cupy._stream`` (logits never leave the chip).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ._config import block_shape

__all__ = ["KeyRanges", "KERNELS", "online_softmax", "online_softmax_reference", "lse_products_on", "block_shape"]

#: Kernel of :func:`online_softmax` per backend: (module, function), imported on first use so
#: that ``import kdetheory`` pays neither numba's compile time nor CuPy's import.
KERNELS = {
    "numpy": ("kdetheory._stream", "online_softmax_reference"),
    "numba": ("kdetheory._numba._stream", "online_softmax"),
    "cupy": ("kdetheory._cupy._stream", "online_softmax"),
}


@dataclass(frozen=True)
class KeyRanges:
    """Query blocks and the contiguous key range each one sees.

    Query rows ``q_start[t] <= i < q_start[t + 1]`` form block ``t``; its keys are
    ``k_lo[t] <= j < k_hi[t]`` (empty when ``k_lo[t] >= k_hi[t]``). Host int64 arrays, shared
    by every batch element.
    """

    q_start: np.ndarray  # (T + 1,), from 0 to n_q, non-decreasing
    k_lo: np.ndarray  # (T,)
    k_hi: np.ndarray  # (T,)

    @classmethod
    def full(cls, n_q: int, n_k: int) -> "KeyRanges":
        """One block: every query sees every key."""
        return cls(np.array([0, n_q], np.int64), np.array([0], np.int64), np.array([n_k], np.int64))

    @classmethod
    def empty(cls, n_q: int) -> "KeyRanges":
        """One block with no keys: no range part, and no index entry is excluded."""
        return cls(np.array([0, n_q], np.int64), np.array([0], np.int64), np.array([0], np.int64))

    @property
    def n_blocks(self) -> int:
        return self.k_lo.shape[0]

    def per_query(self):
        """``(q_block, lo, hi)``: each query's block and key range, (n_q,) int64 arrays."""
        counts = np.diff(self.q_start)
        q_block = np.repeat(np.arange(self.n_blocks, dtype=np.int64), counts)
        return q_block, self.k_lo[q_block], self.k_hi[q_block]


def online_softmax(Q, K, V=None, *, scale=1.0, log_w=None, ranges=None, sum_range=True, index=None,
                   index_log_w=None, backend="numpy"):
    """Evaluate (1) of the module docstring on one backend (the driver: arrays only, no validation).

    Parameters
    ----------
    Q : (B, n_q, d) array
    K : (B, n_k, d) array
    V : (B, n_k, p) array or None
        ``p = 0`` when None: only the weight sums are accumulated.
    scale : float
        Logit scale ``s``.
    log_w : (B, n_k) array or None
        Log-weights of the range keys; ``-inf`` removes a key. None: all 0.
    ranges : KeyRanges or None
        None: one block, every query sees all n_k keys (required when ``index`` is given).
    sum_range : bool, default True
        Sum the range keys; False uses the ranges only to exclude index entries.
    index : (B, m) integer array or None
        Key positions of the index list (each in ``0 .. n_k - 1``).
    index_log_w : (B, m) array or None
        Log-weights of the index entries (required with ``index``).
    backend : {"numpy", "numba", "cupy"}
        Arrays of that backend's namespace (cupy arrays for "cupy").

    Returns
    -------
    mx : (B, n_q) array
        ``-inf`` where the key set is empty.
    acc : (B, n_q, p + 1) array
        The last column is ``sum exp(logit - mx)``; zeros where the key set is empty.
    """
    if index is not None and ranges is None:
        raise ValueError("ranges: got None with an index list; pass KeyRanges (KeyRanges.empty(n_q) for no exclusion).")
    ranges = KeyRanges.full(Q.shape[1], K.shape[1]) if ranges is None else ranges
    module, name = KERNELS[backend]
    kernel = getattr(importlib.import_module(module), name)
    return kernel(Q, K, V, scale=scale, log_w=log_w, ranges=ranges, sum_range=sum_range, index=index,
                  index_log_w=index_log_w)


def _absorb(mx, acc, logits, values, xp):
    """One online-softmax step: fold ``exp(logits) @ values`` into ``(mx, acc)``; returns the new max.

    ``logits`` is overwritten (its shifted exponentials are computed in place)."""
    new = xp.maximum(mx, logits.max(axis=-1))
    # Rows that have seen no key keep max -inf; shift them by 0 to avoid inf - inf.
    shift = xp.where(xp.isfinite(new), new, 0)
    acc *= xp.exp(mx - shift)[..., None]
    logits -= shift[..., None]
    acc += xp.exp(logits, out=logits) @ values
    return new


def online_softmax_reference(Q, K, V=None, *, scale=1.0, log_w=None, ranges, sum_range=True, index=None,
                             index_log_w=None, xp=np):
    """NumPy reference kernel of :func:`online_softmax` (also runs on CuPy with ``xp=cupy``).

    Parameters
    ----------
    Q, K, V, scale, log_w, ranges, sum_range, index, index_log_w
        As in :func:`online_softmax` (``ranges`` given).
    xp : module
        Namespace of the arrays.

    Returns
    -------
    (mx, acc) as in :func:`online_softmax`.

    Notes
    -----
    Each query block is cut into row pieces; a group of pieces is one padded batch
    ``(B, G, r, c)`` of logits, within ``_config.CHUNK_BYTES`` (two temporaries). For that group
    the range keys are walked in column chunks ``lo_t + [c0, c0 + c)`` (gathered, masked past
    ``hi_t``), then the index entries in column chunks (masked inside ``[lo_t, hi_t)``), each
    chunk folded into the running ``(mx, acc)`` by :func:`_absorb`. With one block (exact sums)
    this is plain row x column chunking of a dense product; with the practical method's many
    small blocks, one batched GEMM covers hundreds of blocks.
    """
    B, n_q, _ = Q.shape
    n_k = K.shape[1]
    dtype = Q.dtype
    ones = xp.ones((B, n_k, 1), dtype=dtype)
    V1 = ones if V is None else xp.concatenate([V.astype(dtype, copy=False), ones], axis=-1)
    p1 = V1.shape[-1]
    m = 0 if index is None else index.shape[1]
    mx = xp.full((B, n_q), -xp.inf, dtype=dtype)
    acc = xp.zeros((B, n_q, p1), dtype=dtype)
    q_start, k_lo = np.asarray(ranges.q_start, np.int64), np.asarray(ranges.k_lo, np.int64)
    k_hi = np.maximum(np.asarray(ranges.k_hi, np.int64), k_lo)
    span = int((k_hi - k_lo).max()) if sum_range else 0
    rows, cols = block_shape(n_q, max(span, m, 1), dtype.itemsize, batch=B)
    # Row pieces: each block cut into pieces of at most `piece` rows, G pieces per group.
    counts = np.diff(q_start)
    piece = max(1, min(rows, int(counts.max(initial=1))))
    per_block = -(-counts // piece)
    blk = np.repeat(np.arange(counts.shape[0]), per_block)
    first = np.repeat(np.cumsum(per_block) - per_block, per_block)
    p_start = q_start[blk] + (np.arange(blk.shape[0]) - first) * piece
    p_stop = np.minimum(p_start + piece, q_start[blk + 1])
    group = max(1, rows // piece)
    lw = None if log_w is None else log_w.astype(dtype, copy=False)
    if index is not None:
        index = index.astype(np.int64, copy=False)
        ilw = index_log_w.astype(dtype, copy=False)
    arange_r, arange_c = np.arange(piece), np.arange(cols)
    for g0 in range(0, blk.shape[0], group):
        sel = slice(g0, g0 + group)
        r_idx = p_start[sel, None] + arange_r  # (G, r)
        r_ok = r_idx < p_stop[sel, None]
        r_idx = np.minimum(r_idx, n_q - 1)
        lo, hi = k_lo[blk[sel]], k_hi[blk[sel]]  # (G,)
        Qg = Q[:, xp.asarray(r_idx)] * dtype.type(scale)  # (B, G, r, d)
        mx_g = xp.full(Qg.shape[:-1], -xp.inf, dtype=dtype)
        acc_g = xp.zeros(Qg.shape[:-1] + (p1,), dtype=dtype)
        g_span = int((hi - lo).max()) if sum_range else 0
        for c0 in range(0, g_span, cols):
            if lo.shape[0] == 1:  # one piece: its keys are a slice (no copy, nothing to mask)
                keys = slice(int(lo[0]) + c0, min(int(lo[0]) + c0 + cols, int(hi[0])))
                logits = Qg @ xp.swapaxes(K[:, None, keys], -1, -2)  # (B, 1, r, c)
                if lw is not None:
                    logits += lw[:, None, None, keys]
                mx_g = _absorb(mx_g, acc_g, logits, V1[:, None, keys], xp)
                continue
            k_idx = lo[:, None] + c0 + arange_c  # (G, c)
            k_ok = xp.asarray(k_idx < hi[:, None])
            k_idx = xp.asarray(np.minimum(k_idx, n_k - 1))
            logits = Qg @ xp.swapaxes(K[:, k_idx], -1, -2)  # (B, G, r, c)
            if lw is not None:
                logits += lw[:, k_idx][:, :, None, :]
            logits = xp.where(k_ok[None, :, None, :], logits, -xp.inf)
            mx_g = _absorb(mx_g, acc_g, logits, V1[:, k_idx], xp)
        lo_x, hi_x = xp.asarray(lo)[None, :, None], xp.asarray(hi)[None, :, None]
        for s0 in range(0, m, cols):
            i_idx = index[:, s0:s0 + cols]  # (B, c)
            Ki = xp.take_along_axis(K, i_idx[..., None], axis=1)
            Vi = xp.take_along_axis(V1, i_idx[..., None], axis=1)
            logits = Qg @ xp.swapaxes(Ki, -1, -2)[:, None]  # (B, G, r, c)
            logits += ilw[:, None, None, s0:s0 + cols]
            inside = (i_idx[:, None, :] >= lo_x) & (i_idx[:, None, :] < hi_x)  # (B, G, c)
            logits = xp.where(inside[:, :, None, :], -xp.inf, logits)
            mx_g = _absorb(mx_g, acc_g, logits, Vi[:, None], xp)
        ok = xp.asarray(r_ok)
        rows_out = xp.asarray(r_idx)[ok]
        mx[:, rows_out] = mx_g[:, ok]
        acc[:, rows_out] = acc_g[:, ok]
    return mx, acc


def lse_products_on(backend, Y, X, log_w, V=None, *, scale=1.0):
    """Log-sum-exp and softmax-weighted products over all keys, on a concrete backend.

    For queries Y (..., m, d), points X (..., n, d), log-weights l (..., n) and optional values
    V (..., n, p): ``lse_i = log sum_j exp(scale <y_i, x_j> + l_j)`` and
    ``out_i = sum_j exp(scale <y_i, x_j> + l_j - lse_i) v_j`` (:func:`online_softmax` with one
    full range). Leading (batch, head) axes must agree; they go to the kernel as one batch axis.

    Parameters
    ----------
    backend : {"numpy", "numba", "cupy"}
        ``"cupy"`` with host inputs copies them to the GPU and the results back (array type
        in = array type out).
    Y, X, log_w, V, scale
        As above; ``log_w`` None means unit weights, ``-inf`` entries weight zero.

    Returns
    -------
    lse : (..., m) array
        ``-inf`` for a query whose every weight is zero.
    out : (..., m, p) array or None
        Zero rows where ``lse`` is ``-inf``.
    """
    lead, m = Y.shape[:-2], Y.shape[-2]
    on_host = backend == "cupy" and type(Y).__module__.split(".")[0] != "cupy"
    args = [None if a is None else a.reshape((-1,) + a.shape[len(lead):]) for a in (Y, X, log_w, V)]
    if on_host:
        from ._array import get_cupy

        cp = get_cupy()
        args = [None if a is None else cp.asarray(a) for a in args]
    xp = importlib.import_module("cupy") if backend == "cupy" else np
    Yb, Xb, lw, Vb = args
    mx, acc = online_softmax(Yb, Xb, Vb, scale=scale, log_w=lw, backend=backend)
    total = acc[..., -1]
    empty = total == 0
    with np.errstate(divide="ignore"):
        lse = xp.where(empty, -xp.inf, xp.log(xp.where(empty, 1, total)) + mx)
    out = None if V is None else acc[..., :-1] / xp.where(empty, 1, total)[..., None]
    lse = lse.reshape(lead + (m,))
    out = None if out is None else out.reshape(lead + (m, V.shape[-1]))
    if on_host:
        return lse.get(), (None if out is None else out.get())
    return lse, out
