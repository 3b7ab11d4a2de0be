"""Reformer's LSH attention (Kitaev, Kaiser, Levskaya, ICLR 2020), on the target A = exp(Q K^T)."""
from __future__ import annotations

import math

import numpy as np

from ..._config import block_shape
from ..._rng import as_generator
from ..._validation import check_int
from .._batch import with_ones
from .._blocks import BlockPartition
from .._cost import AttentionCost, StageCost
from ._common import QKV_PARAMETERS, SCALE_PARAMETER, ApproxResult, fill_doc, prepare

_SELF_LOGIT = -1e5  # Reformer's "mask self unless there is no other target": a very small logit


def _angular_buckets(X, rotation, xp):
    """Reformer's hash: argmax over [x R, -x R] (n_buckets = 2 * columns of R)."""
    proj = X @ xp.asarray(rotation).astype(X.dtype)
    return xp.argmax(xp.concatenate([proj, -proj], axis=-1), axis=-1).astype(np.int64)


def _sort(h, xp):
    n = h.shape[-1]
    return xp.argsort(h * n + xp.arange(n, dtype=np.int64), axis=-1)  # ties keep sequence order


def _scatter(values_sorted, perm, xp):
    """Inverse of gathering by ``perm``: out[b, perm[b, u]] = values_sorted[b, u]."""
    out = xp.empty_like(values_sorted)
    out[xp.arange(perm.shape[0])[:, None], perm] = values_sorted
    return out


def _window(part):
    """Keys each query block sees: its own block and the previous one (cyclically), padded."""
    qi, q_ok, ki, k_ok = part.padded_indices()
    nb = part.n_blocks
    if nb > 1:
        prev = (np.arange(nb) - 1) % nb
        ki, k_ok = np.concatenate([ki, ki[prev]], axis=1), np.concatenate([k_ok, k_ok[prev]], axis=1)
    return qi, q_ok, ki, k_ok


@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def reformer(Q, K, V, *, bucket_size, n_rounds=8, n_buckets=None, shared_qk=False, scale=1.0, rng=None):
    """Reformer LSH attention: hash, sort, chunked attention with look-back, rounds merged.

    Parameters
    ----------
    {qkv_parameters}
    bucket_size : int in 1..n_k
        Chunk size b; every query attends to the keys of its chunk and of the previous chunk
        (2b keys per round). Budget F gives b = F/2 (docs/math.md §7.1), feature dimension 2b = F.
    n_rounds : int >= 1, default 8
        Independent hashing rounds (the authors' comparison used 8 hashes).
    n_buckets : int, optional
        Even number of hash buckets; default ``2 ceil(n_k / (2 b))`` (average bucket ~ chunk).
    shared_qk : bool, default False
        Reformer's own convention (use when K is Q): keys are the normalised queries
        ``q_j / ||q_j||`` (K is ignored) and a query attends to itself only when it has no
        other target. Default False: the same target ``A = exp(scale Q K^T)`` as every other
        method, with the given K (queries and keys hashed by the same rotation).
    {scale_parameter}
    rng : None, int, SeedSequence or Generator
        Draws the random rotations (shared by every sequence of the batch).

    Returns
    -------
    ApproxResult
        ``output``, ``log_row_sums`` (log of the sum over the attended union), ``cost``.

    Notes
    -----
    A heuristic (no guarantee): each query's softmax is restricted to the union of the keys it
    meets over the rounds. Rounds are merged by log-sum-exp, and a key met in c rounds has its
    logit lowered by log c, so the result is exactly the softmax over that union. Queries and
    keys are sorted by (bucket, position) and cut into the same blocks as KDEformer's
    (``BlockPartition``: no block straddles two sequences). The authors' Figure 4 wrapper
    used ``shared_qk`` with normalised keys and the self mask, which changes the target
    being approximated (and penalises Reformer); here that is opt-in.

    Cost O(R n b (d + d_v + R)) with the multiplicity count done as R byte-wide comparisons per
    logit; ``cost`` counts every logit of the padded blocks (``details["attended_entries"]``:
    those that are not padding) and one hash per point and round. Runs natively on the GPU for
    CuPy inputs (the rotations are drawn on the host).

    References
    ----------
    Kitaev, Kaiser, Levskaya, "Reformer: the efficient transformer", ICLR 2020, Section 2;
    KDEformer (ICML 2023), Figure 4 baseline (docs/math.md §7.0–§7.1).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    b = check_int("bucket_size", bucket_size, minimum=1, maximum=n_k)
    R = check_int("n_rounds", n_rounds, minimum=1)
    if shared_qk:
        if n_q != n_k:
            raise ValueError(f"shared_qk: got True with n_q={n_q} != n_k={n_k}; shared-QK attention needs K = Q.")
        # q / ||q|| does not depend on the (positive) scale Qb carries.
        Kb = Qb / xp.sqrt((Qb * Qb).sum(axis=-1, keepdims=True) + np.finfo(Qb.dtype).tiny)
    nh = 2 * math.ceil(n_k / (2 * b)) if n_buckets is None else check_int("n_buckets", n_buckets, minimum=2)
    if nh % 2:
        raise ValueError(f"n_buckets: got {nh}; pass an even number (buckets come from argmax over [xR, -xR]).")
    gen = as_generator(rng)
    V1 = with_ones(Vb, xp)
    part = BlockPartition.build(n_q, n_k, b)
    qi, q_ok, wi, w_ok = (xp.asarray(a) for a in _window(part))
    nb, q_max, width = part.n_blocks, qi.shape[1], wi.shape[1]
    k_chunk_sorted = xp.asarray(np.arange(n_k) // b)
    q_chunk_sorted = xp.asarray(part.q_block)

    perms, q_chunk, k_chunk = [], [], []
    for _ in range(R):
        rot = gen.standard_normal((d, nh // 2))
        pq, pk = _sort(_angular_buckets(Qb, rot, xp), xp), _sort(_angular_buckets(Kb, rot, xp), xp)
        perms.append((pq, pk))
        q_chunk.append(_scatter(xp.broadcast_to(q_chunk_sorted, (B, n_q)).copy(), pq, xp))
        k_chunk.append(_scatter(xp.broadcast_to(k_chunk_sorted, (B, n_k)).copy(), pk, xp))
    # Chunk of every query and key in every round, (R, B, n), in the narrowest integer type: the
    # multiplicity count below is R byte-wide comparisons per logit, the bulk of the work.
    small = np.int8 if nb <= 127 else np.int16 if nb <= 32767 else np.int64
    q_chunk = xp.stack(q_chunk).astype(small)
    q_prev = ((q_chunk.astype(np.int64) - 1) % nb).astype(small)  # look-back chunk (itself if nb = 1)
    k_chunk = xp.stack(k_chunk).astype(small)
    log_count = xp.log(xp.arange(1, R + 1, dtype=Qb.dtype))  # log c for c = 1..R

    lse = xp.empty((R, B, n_q), dtype=Qb.dtype)
    outs = xp.empty((R, B, n_q, dv), dtype=Qb.dtype)
    key_pad = xp.where(w_ok, 0, -xp.inf).astype(Qb.dtype)
    step, _ = block_shape(B * nb, q_max * width, Qb.dtype.itemsize, temporaries=3 + R)
    for r, (pq, pk) in enumerate(perms):
        lse_s = xp.empty((B, n_q), dtype=Qb.dtype)
        acc_s = xp.empty((B, n_q, dv + 1), dtype=Qb.dtype)
        for c0 in range(0, B * nb, step):
            flat = np.arange(c0, min(c0 + step, B * nb))
            bi, ti = xp.asarray(flat // nb), xp.asarray(flat % nb)
            oq, ok = pq[bi[:, None], qi[ti]], pk[bi[:, None], wi[ti]]  # original indices
            logits = Qb[bi[:, None], oq] @ xp.swapaxes(Kb[bi[:, None], ok], -1, -2)
            if shared_qk:
                logits = xp.where(oq[:, :, None] == ok[:, None, :], Qb.dtype.type(_SELF_LOGIT), logits)
            # Multiplicity of (query, key) over all rounds: key in the query's window in round r'.
            ck, cq, cp = k_chunk[:, bi[:, None], ok], q_chunk[:, bi[:, None], oq], q_prev[:, bi[:, None], oq]
            count = xp.zeros(logits.shape, dtype=np.uint8 if R < 256 else np.int64)
            for r2 in range(R):
                count += (ck[r2][:, None, :] == cq[r2][..., None]) | (ck[r2][:, None, :] == cp[r2][..., None])
            # Padding keys (clipped indices) may count 0: floor at 1, key_pad removes them anyway.
            logits = logits - log_count[xp.maximum(count, 1) - 1] + key_pad[ti][:, None, :]
            mx = logits.max(axis=-1)
            acc = xp.exp(logits - mx[..., None]) @ V1[bi[:, None], ok]
            keep = q_ok[ti]
            bsel = xp.broadcast_to(bi[:, None], keep.shape)[keep]
            rows = qi[ti][keep]
            lse_s[bsel, rows] = (mx + xp.log(acc[..., dv]))[keep]
            acc_s[bsel, rows] = acc[keep]
        lse[r] = _scatter(lse_s, pq, xp)
        outs[r] = _scatter(acc_s[..., :dv] / acc_s[..., dv:], pq, xp)
    top = lse.max(axis=0)
    w = xp.exp(lse - top)
    log_d = top + xp.log(w.sum(axis=0))
    out = (w[..., None] * outs).sum(axis=0) / w.sum(axis=0)[..., None]
    attended = B * R * int(np.sum(np.diff(part.q_start) * _window(part)[3].sum(axis=1)))
    computed = B * R * nb * q_max * width  # logits of the padded blocks, all computed
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, feature_dimension=int(width),
        stages=(StageCost("hashing", hash_evaluations=B * R * (n_q + n_k), flops=2 * B * R * (n_q + n_k) * d * (nh // 2)),
                StageCost("chunked_attention", kernel_evaluations=computed, flops=2 * computed * (d + dv + 1))),
        details={"bucket_size": b, "n_rounds": R, "n_buckets": nh, "attended_entries": attended},
    )
    return ApproxResult(output=out.reshape(lead + (n_q, dv)), log_row_sums=log_d.reshape(lead + (n_q,)), cost=cost)
