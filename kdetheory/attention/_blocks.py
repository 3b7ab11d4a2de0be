"""Block machinery of the practical KDEformer (docs/math.md §4, Algorithm 3).

Everything here works in the *sorted frame*: queries and keys already permuted by their
LSH bucket position. Both products are calls of the one reduction
:func:`kdetheory._stream.online_softmax` (the diagonal blocks as key ranges, the residual as
an index list masked by those ranges) and are kept as max-shifted accumulators ``(mx, acc)``
with ``acc = sum exp(logit - mx) [v, 1]``; two of them are merged with a common shift, so the
ratio numerator/denominator never sees an overflow.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .._config import block_shape
from .._stream import KeyRanges, online_softmax


@dataclass(frozen=True)
class BlockPartition:
    """Contiguous blocks of the sorted keys and queries.

    Keys: ``n_blocks = ceil(n_k / b)`` blocks ``[t b, min((t+1) b, n_k))``; only the last one
    may be shorter. Queries: the same number of blocks, block t starting at
    ``floor(t b n_q / n_k)``, i.e. query blocks are proportional to key blocks. With
    ``n_k % b == 0`` and ``n_q % n_blocks == 0`` this is exactly the equal split of the
    paper and code (``n_q b / n_k`` queries per block); otherwise no block ever mixes two
    sequences (the authors' reshape does, docs/math.md §6.5). With n_q = n_k query and key blocks
    coincide.
    """

    n_q: int
    n_k: int
    bucket_size: int
    k_start: np.ndarray  # (n_blocks + 1,), last entry n_k
    q_start: np.ndarray  # (n_blocks + 1,), last entry n_q
    q_block: np.ndarray  # (n_q,) block of each sorted query position

    @classmethod
    def build(cls, n_q, n_k, bucket_size):
        """The partition of ``n_q`` sorted queries and ``n_k`` sorted keys into key blocks of
        ``bucket_size`` (cached: its arrays are read-only and shared by every call with the same sizes)."""
        return _build_partition(cls, n_q, n_k, bucket_size)

    @classmethod
    def _build(cls, n_q, n_k, bucket_size):
        n_blocks = -(-n_k // bucket_size)
        k_start = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * bucket_size, n_k)
        q_start = (k_start * n_q) // n_k
        # 'right' skips empty query blocks (q_start[t] == q_start[t + 1]).
        q_block = np.searchsorted(q_start, np.arange(n_q), side="right") - 1
        arrays = [k_start, q_start, q_block.astype(np.int64)]
        for a in arrays:
            a.setflags(write=False)
        return cls(n_q, n_k, bucket_size, *arrays)

    @property
    def n_blocks(self) -> int:
        return self.k_start.shape[0] - 1

    @property
    def exact_entries(self) -> int:
        """Number of entries of A computed exactly per sequence: sum_t |Q_t| |K_t|."""
        return int(np.sum(np.diff(self.q_start) * np.diff(self.k_start)))

    @property
    def ranges(self) -> KeyRanges:
        """Query block t sees the keys of key block t (the reduction's key ranges)."""
        return KeyRanges(self.q_start, self.k_start[:-1], self.k_start[1:])

    def padded_indices(self):
        """Gather indices (n_blocks, q_max) and (n_blocks, b) with validity masks."""
        q_max = max(1, int(np.diff(self.q_start).max()))
        qi = self.q_start[:-1, None] + np.arange(q_max)
        ki = self.k_start[:-1, None] + np.arange(self.bucket_size)
        q_ok, k_ok = qi < self.q_start[1:, None], ki < self.k_start[1:, None]
        return np.minimum(qi, self.n_q - 1), q_ok, np.minimum(ki, self.n_k - 1), k_ok


@functools.lru_cache(maxsize=64)
def _build_partition(cls, n_q, n_k, bucket_size):
    return cls._build(n_q, n_k, bucket_size)


def _rows_per_chunk(total_rows, cols, itemsize, temporaries=2):
    """Rows of a ``rows x cols`` chunked loop within the chunk budget (``_config.block_shape``)."""
    return block_shape(total_rows, cols, itemsize, temporaries=temporaries)[0]


def block_diagonal_products(Qs, Ks, Vs, part, scale, backend):
    """Exact ``A_spar [V, 1]`` on the sorted arrays: each query against its own key block.

    Parameters
    ----------
    Qs : (B, n_q, d) sorted queries
    Ks : (B, n_k, d) sorted keys
    Vs : (B, n_k, d_v) sorted values
    part : BlockPartition
    scale : float
        Logit scale: ``logit_ij = scale <q_i, k_j>``.
    backend : {"numpy", "numba", "cupy"}

    Returns
    -------
    mx : (B, n_q) per-query maximum logit over its own block
    acc : (B, n_q, d_v + 1) ``sum_{j in block} exp(logit_ij - mx_i) [v_j, 1]``
    """
    return online_softmax(Qs, Ks, Vs, scale=scale, ranges=part.ranges, backend=backend)


def masked_sampled_products(Qs, Ks, Vs, index, log_w, part, scale, backend):
    """Importance-sampled ``A_res [V, 1]``: sampled keys in the query's own block are masked.

    Parameters
    ----------
    Qs : (B, n_q, d) sorted queries
    Ks : (B, n_k, d) sorted keys
    Vs : (B, n_k, d_v) sorted values
    index : (B, m) int64 sorted key position of each sample (gathered inside the kernel)
    log_w : (B, m) ``log(1 / (m p_j))`` of each sample
    part : BlockPartition
    scale : float
        Logit scale: ``logit_ij = scale <q_i, k_j>``.
    backend : {"numpy", "numba", "cupy"}

    Returns
    -------
    mx : (B, n_q) maximum of ``logit + log_w`` over unmasked samples (-inf if none)
    acc : (B, n_q, d_v + 1) ``sum_s [block(i) != block(j_s)] exp(logit + log_w - mx) [v, 1]``
    """
    return online_softmax(Qs, Ks, Vs, scale=scale, ranges=part.ranges, sum_range=False, index=index,
                          index_log_w=log_w, backend=backend)


def merge(mx_a, acc_a, mx_b, acc_b, xp):
    """Merge two max-shifted accumulators under the common shift ``max(mx_a, mx_b)``.

    Returns ``(shift, acc_a', acc_b')`` with both parts relative to ``exp(shift)``; ``mx_a``
    must be finite (the sparse part always holds the query's own block, never empty).
    """
    shift = xp.maximum(mx_a, mx_b)
    fa = xp.exp(mx_a - shift)[..., None]
    fb = xp.exp(mx_b - shift)[..., None]  # exp(-inf) = 0 when no sample survived the mask
    return shift, acc_a * fa, acc_b * fb


def finish(mx_s, acc_s, mx_r, acc_r, perm_q, backend):
    """Merge the two parts, normalise, and put the queries back in their input order.

    Parameters
    ----------
    mx_s, acc_s : (B, n_q), (B, n_q, p + 1) the sparse part (sorted frame)
    mx_r, acc_r : (B, n_q), (B, n_q, p + 1) the residual part (sorted frame)
    perm_q : (B, n_q) int64 sorted position -> input position
    backend : {"numpy", "numba", "cupy"}
        "cupy" runs one fused kernel (``kdetheory._cupy._blocks.finish``); the others the array
        code below.

    Returns
    -------
    output : (B, n_q, p) ``(sparse + residual)[:p] / (sparse + residual)[p]``
    log_d : (B, n_q) ``shift + log((sparse + residual)[p])``
    sparse, residual : (B, n_q, p + 1) both parts relative to ``exp(shift)``
    shift : (B, n_q) ``max(mx_s, mx_r)``
    All in the input order of the queries.
    """
    if backend == "cupy":
        from .._cupy._blocks import finish as fused

        return fused(mx_s, acc_s, mx_r, acc_r, perm_q)
    xp = np
    shift, sparse, residual = merge(mx_s, acc_s, mx_r, acc_r, xp)
    total = sparse + residual
    out = total[..., :-1] / total[..., -1:]
    log_d = shift + xp.log(total[..., -1])
    B, n_q = perm_q.shape
    inv = xp.empty_like(perm_q)
    inv[xp.arange(B)[:, None], perm_q] = xp.arange(n_q, dtype=perm_q.dtype)
    rows = lambda a: xp.take_along_axis(a, inv[..., None], axis=-2)  # noqa: E731
    return (rows(out), xp.take_along_axis(log_d, inv, axis=-1), rows(sparse), rows(residual),
            xp.take_along_axis(shift, inv, axis=-1))
