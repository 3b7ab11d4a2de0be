"""The practical KDEformer (paper Section 4, Algorithm 3): angular LSH with Gray-code blocks,
exact block-diagonal part plus an importance-sampled residual (SPEC sections 4 and 6)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._array import namespace, resolve_backend, to_namespace, to_numpy
from .._rng import as_generator
from .._validation import check_choice, check_int
from ..amm import sampling_probabilities
from ..lsh.angular import ORDERS, AngularLSH, check_n_hashes
from . import _blocks
from ._blocks import BlockPartition
from .exact import check_qkv

__all__ = ["kdeformer_practical", "PracticalResult", "SAMPLINGS"]

#: Residual sampling distributions (see :func:`kdeformer_practical`).
SAMPLINGS = ("values", "columns", "uniform")


@dataclass(frozen=True)
class PracticalResult:
    """Result of :func:`kdeformer_practical` (arrays of the input's array type).

    Attributes
    ----------
    output : (..., n_q, d_v) array
        ``D~^-1 (A_spar V + est(A_res V))``.
    log_row_sums : (..., n_q) array
        ``log D~_ii`` (finite even where ``D~`` overflows).
    sparse, residual : (..., n_q, d_v + 1) arrays
        ``A_spar [V, 1]`` and ``est(A_res [V, 1])``, each multiplied by ``exp(-log_shift)``.
    log_shift : (..., n_q) array
        The per-query shift common to both parts.
    cost : dict
        ``exact_entries``, ``samples``, ``hash_evaluations`` (points hashed, r hyperplanes
        each), ``flops`` (a dict by stage), ``bucket_size``, ``n_samples``, ``n_blocks``,
        ``feature_dimension = bucket_size + n_samples`` (the paper's budget, SPEC 4).
    lsh : AngularLSH
        The hash that was used (shared by every sequence of the batch).
    """

    output: object
    log_row_sums: object
    sparse: object
    residual: object
    log_shift: object
    cost: dict = field(default_factory=dict)
    lsh: AngularLSH | None = None

    @property
    def row_sums(self):
        """``D~_ii = A_spar 1 + est(A_res 1)`` (may overflow where the logits are huge)."""
        return namespace(self.log_row_sums).exp(self.log_row_sums)


def _sort_by_bucket(X, lsh, order, xp):
    """Permutation (B, n) sorting each sequence by bucket position; ties keep input order.

    The key ``rank * n + i`` is unique, so every backend's sort gives the same permutation."""
    n = X.shape[-2]
    rank = lsh.ranks(X, order=order)
    key = rank * n + xp.arange(n, dtype=np.int64)
    return xp.argsort(key, axis=-1)


def _gather_rows(X, idx, xp):
    return xp.take_along_axis(X, idx[..., None], axis=-2)


def _column_norm_estimates(Qs, Ks, part, n_norm_queries, rng, xp):
    """Estimated squared column norms of ``D^-1 A_res`` (B, n_k), up to a common factor.

    ``c_j = sum_{i in S} [block(i) != block(j)] exp(2 (logit_ij - log D_i))`` over a uniform
    sample S of ``n_norm_queries`` sorted query positions (with replacement); ``D_i`` is exact
    for those queries (their full logit rows are computed anyway). Cost O(|S| n_k d). Lemma 3.1
    only needs constant-factor accuracy of the *shares* c_j / sum c.
    """
    B, n_q, _ = Qs.shape
    rows = rng.integers(0, n_q, size=n_norm_queries)
    logits = Qs[:, xp.asarray(rows)] @ xp.swapaxes(Ks, -1, -2)  # (B, |S|, n_k)
    mx = logits.max(axis=-1, keepdims=True)
    log_d = mx + xp.log(xp.exp(logits - mx).sum(axis=-1, keepdims=True))
    k_block = xp.asarray(np.repeat(np.arange(part.n_blocks), np.diff(part.k_start)))
    own = xp.asarray(part.q_block[rows])[:, None] == k_block[None, :]
    z = xp.where(own, -xp.inf, 2 * (logits - log_d))
    zmax = z.max(axis=(-2, -1), keepdims=True)
    zmax = xp.where(xp.isfinite(zmax), zmax, 0)
    return xp.exp(z - zmax).sum(axis=-2)


def _probabilities(sampling, Qs, Ks, V1s, part, n_norm_queries, rng, xp):
    """Sampling distribution over sorted key positions, (B, n_k) float64 on the host."""
    B, n_k, _ = Ks.shape
    if sampling == "uniform":
        return np.full((B, n_k), 1.0 / n_k)
    sq = to_numpy((V1s * V1s).sum(axis=-1)).astype(np.float64)  # ||[v_j, 1]||^2
    if sampling == "values":
        # Authors' rule (SPEC 6.2): ||[v_j,1]||_2 / sigma_max([V,1])^2 + 1/n_k. sigma_max^2 is the
        # exact top eigenvalue of the (d_v+1)^2 Gram matrix (the code ran 20 power iterations).
        gram = to_numpy(xp.swapaxes(V1s, -1, -2) @ V1s).astype(np.float64)
        sigma2 = np.linalg.eigvalsh(gram)[..., -1]
        p = np.sqrt(sq) / sigma2[:, None] + 1.0 / n_k
        return p / p.sum(axis=-1, keepdims=True)
    c = to_numpy(_column_norm_estimates(Qs, Ks, part, n_norm_queries, rng, xp)).astype(np.float64)
    return np.stack([sampling_probabilities(c[b], sq[b]) for b in range(B)])


def _draw(p, n_samples, rng):
    """``n_samples`` i.i.d. draws per row of ``p`` (B, n) by one batched inverse-CDF search.

    Row b's CDF is shifted by b so that a single sorted searchsorted serves every row."""
    B, n = p.shape
    cdf = np.cumsum(p, axis=-1)
    cdf /= cdf[:, -1:]
    offset = np.arange(B, dtype=np.float64)[:, None]
    u = rng.random((B, n_samples))
    idx = np.searchsorted((cdf + offset).ravel(), (u + offset).ravel(), side="right")
    idx = idx.reshape(B, n_samples) - n * np.arange(B)[:, None]
    return np.clip(idx, 0, n - 1)


def _cost(B, n_q, n_k, d, dv, part, r, m, sampling, n_norm_queries):
    entries = B * part.exact_entries
    flops = {
        "hashing": 2 * B * (n_q + n_k) * d * r,
        "sorting": int(B * (n_q * np.log2(max(n_q, 2)) + n_k * np.log2(max(n_k, 2)))),
        "sparse": 2 * entries * (d + dv + 1),
        "residual": 2 * B * n_q * m * (d + dv + 1),
        "probabilities": {
            "uniform": 0,
            "values": 2 * B * n_k * (dv + 1) ** 2,
            "columns": 2 * B * n_norm_queries * n_k * (d + 1),
        }[sampling],
    }
    return {
        "exact_entries": entries,
        "samples": B * m,
        "hash_evaluations": B * (n_q + n_k),
        "hyperplanes": r,
        "flops": flops,
        "total_flops": int(sum(flops.values())),
        "bucket_size": part.bucket_size,
        "n_samples": m,
        "n_blocks": part.n_blocks,
        "feature_dimension": part.bucket_size + m,
    }


def kdeformer_practical(Q, K, V, *, bucket_size, n_samples, n_hashes=7, sampling="values", order="gray",
                        scale=1.0, n_norm_queries=64, lsh=None, rng=None, backend="auto"):
    """Practical KDEformer: exact LSH-blocked diagonal plus sampled residual (Algorithm 3).

    Parameters
    ----------
    Q : (..., n_q, d) array
    K : (..., n_k, d) array
    V : (..., n_k, d_v) array
        Leading (batch, head) axes must agree. NumPy or CuPy; float64 or float32.
    bucket_size : int in 1..n_k
        Key block size b. Keys are cut into ``ceil(n_k / b)`` contiguous blocks of the sorted
        order (the last one shorter when b does not divide n_k) and queries into as many
        blocks, query block t starting at ``floor(t b n_q / n_k)``. This equals the paper's
        equal split whenever that split exists, and never lets a block straddle two
        sequences (unlike the authors' reshape, SPEC 6.5).
    n_samples : int >= 0
        Number m of key columns sampled i.i.d. with replacement for the residual
        (per sequence). ``0`` keeps the sparse part only.
    n_hashes : int in 1..30, default 7
        Number r of hyperplanes of the angular LSH (the paper's code uses 7).
    sampling : {"values", "columns", "uniform"}, default "values"
        Residual sampling distribution p over keys.

        * "values": the authors' rule exactly (SPEC 6.2),
          ``p_j ∝ ||[v_j, 1]||_2 / sigma_max([V, 1])^2 + 1/n_k``; sigma_max^2 is computed
          exactly from the (d_v+1)^2 Gram matrix, where the authors ran 20 power iterations.
        * "columns": Lemma 3.1, ``p_j = (c_j/sum c + ||[v_j,1]||^2/||[V,1]||_F^2) / 2`` via
          :func:`kdetheory.amm.sampling_probabilities`, where ``c_j`` estimates the squared
          column norms of the residual softmax matrix ``D^-1 A_res`` from ``n_norm_queries``
          uniformly sampled queries (their full logit rows and exact D_i; cost
          O(n_norm_queries n_k d)). ``[V, 1]`` rather than V because the ones column is
          estimated by the same product (SPEC 6.11); it also keeps every p_j > 0.
        * "uniform": ``p_j = 1/n_k`` (HyperAttention's choice).
    order : {"gray", "authors"}, default "gray"
        Bucket order of the sort: the true Gray code, or the authors' inverse order (SPEC 6.4).
    scale : float, default 1.0
        Logit scale: ``A = exp(scale Q K^T)``.
    n_norm_queries : int >= 1, default 64
        Query sample size of the column-norm estimate (``sampling="columns"`` only).
    lsh : AngularLSH, optional
        A fixed hash (dimension d). Default: a fresh one drawn from ``rng`` with ``n_hashes``
        hyperplanes. One hash is shared by queries, keys and every sequence of the batch
        (the ViT file's convention; the root file redrew one per head, SPEC 6.8).
    rng : None, int, SeedSequence or Generator
        All randomness (hash, query sample, key samples) is drawn on the host from it, so
        every backend gets identical draws.
    backend : {"auto", "numpy", "numba", "cupy"}
        "auto" is "numba" on the host when ``bucket_size + n_samples <= 256`` and "numpy"
        (batched BLAS) above, as measured on 2 cores; "cupy" for CuPy inputs.

    Returns
    -------
    PracticalResult
        ``output``, ``row_sums`` (D~), ``log_row_sums``, the two shifted parts and ``cost``.

    Raises
    ------
    ValueError, TypeError
        Bad shapes, non-finite values, bucket_size outside 1..n_k, n_samples < 0, n_hashes
        outside 1..30, an unknown sampling, order or backend.

    Notes
    -----
    ``D^-1 A = D^-1 A_spar + D^-1 A_res`` (Figure 3). ``A_spar`` holds the exact entries of
    the diagonal blocks (O(n_q b d)); the residual is estimated by
    ``sum_s [block(i) != block(j_s)] exp(<q_i, k_{j_s}>) [v_{j_s}, 1] / (m p_{j_s})``, an
    unbiased estimate of ``A_res [V, 1]`` (O(n_q m d)). The normaliser comes from the ones
    column (a ratio estimator: consistent, slightly biased; no KDE structure, SPEC 6.1).
    Every exponential is shifted by a per-query maximum common to both parts, so the ratio
    is unchanged and nothing overflows. ``D~ > 0`` always: every query's own block is a
    non-empty set of keys whose exact positive terms are part of ``D~``, and every sampled
    term is positive (positive weights), so no guard can trigger.

    References
    ----------
    KDEformer (Zandieh, Han, Daliri, Karbasi, ICML 2023), Section 4 and Figures 3, 5, 6;
    the body of Algorithm 3 follows the authors' public code (SPEC 4, 6), with the
    departures listed above.
    """
    Q, K, V, xp, scale = check_qkv(Q, K, V, scale=scale)
    n_q, n_k, d, dv = Q.shape[-2], K.shape[-2], Q.shape[-1], V.shape[-1]
    b = check_int("bucket_size", bucket_size, minimum=1, maximum=n_k)
    m = check_int("n_samples", n_samples, minimum=0)
    r = check_n_hashes(n_hashes)
    check_choice("sampling", sampling, SAMPLINGS)
    check_choice("order", order, ORDERS)
    n_norm = check_int("n_norm_queries", n_norm_queries, minimum=1)
    # Measured on 2 cores (n = 2048..8192, d = 50): numba's loops win for small blocks and sample
    # counts (per-block BLAS calls are tiny), batched BLAS wins from b + m ~ 384 on.
    backend = resolve_backend(backend, xp, auto="numba" if b + m <= 256 else "numpy")
    gen = as_generator(rng)
    if lsh is None:
        lsh = AngularLSH(d, r, rng=gen)
    elif not isinstance(lsh, AngularLSH) or lsh.dim != d:
        raise ValueError(f"lsh: got {lsh!r}; pass an AngularLSH of dimension {d} or None.")
    r = lsh.n_hashes

    lead = Q.shape[:-2]
    Qb = Q.reshape((-1, n_q, d)) * Q.dtype.type(scale)
    Kb, Vb = K.reshape((-1, n_k, d)), V.reshape((-1, n_k, dv))
    B = Qb.shape[0]
    V1 = xp.concatenate([Vb, xp.ones((B, n_k, 1), dtype=Q.dtype)], axis=-1)

    # Steps 1-2: hash, sort by Gray-code position (Q and K share the LSH; hashing is scale-free).
    perm_q, perm_k = _sort_by_bucket(Qb, lsh, order, xp), _sort_by_bucket(Kb, lsh, order, xp)
    Qs, Ks, V1s = _gather_rows(Qb, perm_q, xp), _gather_rows(Kb, perm_k, xp), _gather_rows(V1, perm_k, xp)
    part = BlockPartition.build(n_q, n_k, b)

    # Step 4 (draws first, host randomness): residual samples in the sorted key frame.
    if m > 0:
        p = _probabilities(sampling, Qs, Ks, V1s, part, n_norm, gen, xp)
        pos = _draw(p, m, gen)
        log_w = -np.log(m * np.take_along_axis(p, pos, axis=-1))
        k_block = pos // b
    # Step 3 and 4: the two products, max-shifted.
    if backend == "numba":
        from .._numba import practical as kernels

        mx_s, acc_s = kernels.block_diagonal_products(Qs, Ks, V1s, part)
    else:
        mx_s, acc_s = _blocks.block_diagonal_products(Qs, Ks, V1s, part, xp)
    if m > 0:
        pos_x = to_namespace(pos, xp)
        K_samp, V1_samp = _gather_rows(Ks, pos_x, xp), _gather_rows(V1s, pos_x, xp)
        log_w_x = to_namespace(log_w, xp).astype(Q.dtype)
        if backend == "numba":
            mx_r, acc_r = kernels.masked_sampled_products(Qs, K_samp, V1_samp, log_w_x, k_block, part)
        else:
            mx_r, acc_r = _blocks.masked_sampled_products(Qs, K_samp, V1_samp, log_w_x, to_namespace(k_block, xp), part, xp)
    else:
        mx_r, acc_r = xp.full_like(mx_s, -xp.inf), xp.zeros_like(acc_s)

    # Step 5: common shift, ratio, un-permute the queries.
    shift, sparse, residual = _blocks.merge(mx_s, acc_s, mx_r, acc_r, xp)
    total = sparse + residual
    out_sorted = total[..., :dv] / total[..., dv:]
    log_d = shift + xp.log(total[..., dv])
    inv = xp.empty_like(perm_q)
    inv[xp.arange(B)[:, None], perm_q] = xp.arange(n_q, dtype=perm_q.dtype)
    unsort = lambda a: _gather_rows(a, inv, xp)  # noqa: E731
    unsort1 = lambda a: xp.take_along_axis(a, inv, axis=-1)  # noqa: E731
    cost = _cost(B, n_q, n_k, d, dv, part, r, m, sampling, n_norm)
    return PracticalResult(
        output=unsort(out_sorted).reshape(lead + (n_q, dv)),
        log_row_sums=unsort1(log_d).reshape(lead + (n_q,)),
        sparse=unsort(sparse).reshape(lead + (n_q, dv + 1)),
        residual=unsort(residual).reshape(lead + (n_q, dv + 1)),
        log_shift=unsort1(shift).reshape(lead + (n_q,)),
        cost=cost,
        lsh=lsh,
    )
