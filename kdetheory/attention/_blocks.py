"""Block machinery of the practical KDEformer (SPEC section 4, Algorithm 3), written once
against an array namespace ``xp`` (NumPy or CuPy).

Everything here works in the *sorted frame*: queries and keys already permuted by their
LSH bucket position. Results are kept as max-shifted accumulators ``(mx, acc)`` with
``acc = sum exp(logit - mx) [v, 1]``; two of them are merged with a common shift, so the
ratio numerator/denominator never sees an overflow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _config
from .._stream import shifted_exp_


@dataclass(frozen=True)
class BlockPartition:
    """Contiguous blocks of the sorted keys and queries.

    Keys: ``n_blocks = ceil(n_k / b)`` blocks ``[t b, min((t+1) b, n_k))``; only the last one
    may be shorter. Queries: the same number of blocks, block t starting at
    ``floor(t b n_q / n_k)``, i.e. query blocks are proportional to key blocks. With
    ``n_k % b == 0`` and ``n_q % n_blocks == 0`` this is exactly the equal split of the
    paper and code (``n_q b / n_k`` queries per block); otherwise no block ever mixes two
    sequences (the authors' reshape does, SPEC 6.5). With n_q = n_k query and key blocks
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
        n_blocks = -(-n_k // bucket_size)
        k_start = np.minimum(np.arange(n_blocks + 1, dtype=np.int64) * bucket_size, n_k)
        q_start = (k_start * n_q) // n_k
        # 'right' skips empty query blocks (q_start[t] == q_start[t + 1]).
        q_block = np.searchsorted(q_start, np.arange(n_q), side="right") - 1
        return cls(n_q, n_k, bucket_size, k_start, q_start, q_block.astype(np.int64))

    @property
    def n_blocks(self) -> int:
        return self.k_start.shape[0] - 1

    @property
    def exact_entries(self) -> int:
        """Number of entries of A computed exactly per sequence: sum_t |Q_t| |K_t|."""
        return int(np.sum(np.diff(self.q_start) * np.diff(self.k_start)))

    def padded_indices(self):
        """Gather indices (n_blocks, q_max) and (n_blocks, b) with validity masks."""
        q_max = max(1, int(np.diff(self.q_start).max()))
        qi = self.q_start[:-1, None] + np.arange(q_max)
        ki = self.k_start[:-1, None] + np.arange(self.bucket_size)
        q_ok, k_ok = qi < self.q_start[1:, None], ki < self.k_start[1:, None]
        return np.minimum(qi, self.n_q - 1), q_ok, np.minimum(ki, self.n_k - 1), k_ok


def _rows_per_chunk(total_rows, cols, itemsize, temporaries=2):
    return max(1, min(total_rows, _config.CHUNK_BYTES // max(1, temporaries * cols * itemsize)))


def _shifted_sums(logits, values, xp):
    """Max-shifted ``(mx, exp(logits - mx) @ values)`` along the last axis; -inf rows give (-inf, 0).

    Overwrites ``logits`` (its exponentials are computed in place)."""
    mx = logits.max(axis=-1)
    shift = xp.where(xp.isfinite(mx), mx, 0)
    return mx, shifted_exp_(logits, shift, xp) @ values


def block_diagonal_products(Qs, Ks, V1s, part, xp):
    """Exact ``A_spar [V, 1]`` on the sorted arrays, max-shifted per query.

    Parameters
    ----------
    Qs : (B, n_q, d) sorted, pre-scaled queries
    Ks : (B, n_k, d) sorted keys
    V1s : (B, n_k, p) sorted values with the ones column appended
    part : BlockPartition

    Returns
    -------
    mx : (B, n_q) per-query maximum logit over its own block
    acc : (B, n_q, p) ``sum_{j in block} exp(logit_ij - mx_i) [v_j, 1]``
    """
    B, n_q, _ = Qs.shape
    qi, q_ok, ki, k_ok = (xp.asarray(a) for a in part.padded_indices())
    nb, q_max = qi.shape
    b = ki.shape[1]
    mx = xp.empty((B, n_q), dtype=Qs.dtype)
    acc = xp.empty((B, n_q, V1s.shape[-1]), dtype=Qs.dtype)
    key_mask = xp.where(k_ok, 0, -xp.inf).astype(Qs.dtype)  # (nb, b): padding keys weigh 0
    step = _rows_per_chunk(B * nb, q_max * b, Qs.dtype.itemsize)
    # Walk over (batch, block) pairs in chunks; each chunk is one batched matmul.
    for c0 in range(0, B * nb, step):
        flat = np.arange(c0, min(c0 + step, B * nb))
        bi, ti = xp.asarray(flat // nb), xp.asarray(flat % nb)
        q = Qs[bi[:, None], qi[ti]]  # (c, q_max, d)
        k = Ks[bi[:, None], ki[ti]]  # (c, b, d)
        v = V1s[bi[:, None], ki[ti]]  # (c, b, p)
        logits = q @ xp.swapaxes(k, -1, -2)
        logits += key_mask[ti][:, None, :]
        m_c, a_c = _shifted_sums(logits, v, xp)
        ok = q_ok[ti]
        rows = qi[ti][ok]
        bsel = xp.broadcast_to(bi[:, None], ok.shape)[ok]
        mx[bsel, rows] = m_c[ok]
        acc[bsel, rows] = a_c[ok]
    return mx, acc


def masked_sampled_products(Qs, K_samp, V1_samp, log_w, k_block, part, xp):
    """Importance-sampled ``A_res [V, 1]``: sampled columns in the query's own block are masked.

    Parameters
    ----------
    Qs : (B, n_q, d) sorted, pre-scaled queries
    K_samp : (B, m, d) sampled keys
    V1_samp : (B, m, p) their values with the ones column
    log_w : (B, m) ``log(1 / (m p_j))`` of each sample
    k_block : (B, m) block of each sampled key
    part : BlockPartition

    Returns
    -------
    mx : (B, n_q) maximum of ``logit + log_w`` over unmasked samples (-inf if none)
    acc : (B, n_q, p) ``sum_s [block(i) != block(j_s)] exp(logit + log_w - mx) [v, 1]``
    """
    B, n_q, _ = Qs.shape
    m = K_samp.shape[1]
    q_block = xp.asarray(part.q_block)
    mx = xp.empty((B, n_q), dtype=Qs.dtype)
    acc = xp.empty((B, n_q, V1_samp.shape[-1]), dtype=Qs.dtype)
    step = _rows_per_chunk(n_q, max(1, m) * B, Qs.dtype.itemsize)
    Kt = xp.swapaxes(K_samp, -1, -2)
    for r0 in range(0, n_q, step):
        logits = Qs[:, r0:r0 + step] @ Kt
        logits += log_w[:, None, :]
        own = q_block[r0:r0 + step][None, :, None] == k_block[:, None, :]
        logits = xp.where(own, -xp.inf, logits)  # (measured faster than an in-place putmask here)
        mx[:, r0:r0 + step], acc[:, r0:r0 + step] = _shifted_sums(logits, V1_samp, xp)
    return mx, acc


def merge(mx_a, acc_a, mx_b, acc_b, xp):
    """Merge two max-shifted accumulators under the common shift ``max(mx_a, mx_b)``.

    Returns ``(shift, acc_a', acc_b')`` with both parts relative to ``exp(shift)``; ``mx_a``
    must be finite (the sparse part always holds the query's own block, never empty).
    """
    shift = xp.maximum(mx_a, mx_b)
    fa = xp.exp(mx_a - shift)[..., None]
    fb = xp.exp(mx_b - shift)[..., None]  # exp(-inf) = 0 when no sample survived the mask
    return shift, acc_a * fa, acc_b * fb
