"""The practical KDEformer (paper Section 4, Algorithm 3): angular LSH with Gray-code blocks,
exact block-diagonal part plus an importance-sampled residual (docs/math.md §4 and §6)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _config
from .._array import namespace, resolve_backend, to_namespace, to_numpy
from .._rng import as_generator
from .._validation import check_choice, check_int
from ..amm import sampling_probabilities
from ..lsh.angular import ORDERS, AngularLSH, check_n_hashes
from . import _blocks
from ._batch import flatten_leading, with_ones
from ._blocks import BlockPartition
from ._cost import AttentionCost, StageCost
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
    cost : AttentionCost
        Stages ``hashing`` (points hashed, r hyperplanes each), ``sorting``, ``probabilities``,
        ``sparse`` (the exact block entries) and ``residual`` (n_q m sampled entries); ``samples``
        and ``feature_dimension = bucket_size + n_samples`` (the paper's budget, docs/math.md §4);
        ``details`` keeps ``exact_entries``, ``hyperplanes``, ``flops`` (a dict by stage),
        ``total_flops``, ``bucket_size``, ``n_samples`` and ``n_blocks``.
    lsh : AngularLSH
        The hash that was used (shared by every sequence of the batch).
    """

    output: object
    log_row_sums: object
    sparse: object
    residual: object
    log_shift: object
    cost: AttentionCost | None = None
    lsh: AngularLSH | None = None

    @property
    def row_sums(self):
        """``D~_ii = A_spar 1 + est(A_res 1)`` (may overflow where the logits are huge)."""
        return namespace(self.log_row_sums).exp(self.log_row_sums)


def _sort_by_bucket(X, lsh, order, xp):
    """Permutation (B, n) sorting each sequence by bucket position; ties keep input order.

    The key ``rank * n + i`` is unique, so every backend's sort gives the same permutation."""
    return xp.argsort(lsh.sort_keys(X, order=order), axis=-1)


def _gather_rows(X, idx, xp):
    """``X[b, idx[b, i]]`` for (B, n, c) X and (B, n') idx, as one flat ``take`` (no broadcast index arrays)."""
    B, n, c = X.shape
    flat = (idx + xp.arange(B, dtype=idx.dtype)[:, None] * n).ravel()
    return xp.take(X.reshape(B * n, c), flat, axis=0).reshape(B, idx.shape[1], c)


def _column_norm_estimates(Qs, Ks, part, rows, xp):
    """Estimated squared column norms of ``D^-1 A_res`` (B, n_k), up to a common factor.

    ``c_j = sum_{i in S} [block(i) != block(j)] exp(2 (logit_ij - log D_i))`` over the sorted
    query positions ``rows`` (a uniform sample with replacement, drawn by the caller); ``D_i`` is
    exact for those queries (their full logit rows are computed anyway). Cost O(|S| n_k d).
    Lemma 3.1 only needs constant-factor accuracy of the *shares* c_j / sum c.
    """
    logits = Qs[:, xp.asarray(rows)] @ xp.swapaxes(Ks, -1, -2)  # (B, |S|, n_k)
    mx = logits.max(axis=-1, keepdims=True)
    log_d = mx + xp.log(xp.exp(logits - mx).sum(axis=-1, keepdims=True))
    k_block = xp.asarray(np.repeat(np.arange(part.n_blocks), np.diff(part.k_start)))
    own = xp.asarray(part.q_block[rows])[:, None] == k_block[None, :]
    z = xp.where(own, -xp.inf, 2 * (logits - log_d))
    zmax = z.max(axis=(-2, -1), keepdims=True)
    zmax = xp.where(xp.isfinite(zmax), zmax, 0)
    return xp.exp(z - zmax).sum(axis=-2)


def _probabilities(sampling, Qs, Ks, Vs, part, rows, xp):
    """Sampling distribution over sorted key positions, (B, n_k) float64 in namespace ``xp``.

    "uniform" and "values" stay on the device (no synchronisation); "columns" computes the
    Lemma 3.1 shares with :func:`kdetheory.amm.sampling_probabilities` on the host."""
    B, n_k, _ = Ks.shape
    if sampling == "uniform":
        return xp.full((B, n_k), 1.0 / n_k)
    Vs64 = Vs.astype(np.float64)
    sq = (Vs64 * Vs64).sum(axis=-1) + 1.0  # ||[v_j, 1]||^2
    if sampling == "values":
        # Authors' rule (docs/math.md §6.2): ||[v_j,1]||_2 / sigma_max([V,1])^2 + 1/n_k. sigma_max^2 is
        # the exact top eigenvalue of the (d_v+1)^2 Gram matrix (the code ran 20 power iterations).
        V1 = with_ones(Vs64, xp)
        sigma2 = _top_eigenvalue(xp.swapaxes(V1, -1, -2) @ V1, xp)
        p = xp.sqrt(sq) / sigma2[:, None] + 1.0 / n_k
        return p / p.sum(axis=-1, keepdims=True)
    c = to_numpy(_column_norm_estimates(Qs, Ks, part, rows, xp)).astype(np.float64)
    sq = to_numpy(sq)
    return to_namespace(np.stack([sampling_probabilities(c[b], sq[b]) for b in range(B)]), xp)


def _top_eigenvalue(gram, xp):
    """Largest eigenvalue of each (N x N) Gram matrix: LAPACK on the host, one fused kernel on the GPU
    (``kdetheory._cupy._practical``: repeated squaring and a Rayleigh quotient, exact to rounding
    unless the top two eigenvalues agree to ~3e-3, and then off by less than their gap)."""
    if xp is np:
        return np.linalg.eigvalsh(gram)[..., -1]
    from .._cupy._practical import top_eigenvalue

    return top_eigenvalue(gram)


def _draw(p, u, xp):
    """Inverse-CDF draws: row b of ``u`` (B, m) uniforms in [0, 1) mapped through row b of ``p``.

    One batched search: row b's CDF is shifted by b so that a single sorted searchsorted serves
    every row (no loop, no host round trip on the GPU)."""
    B, n = p.shape
    cdf = xp.cumsum(p, axis=-1)
    cdf /= cdf[:, -1:]
    offset = xp.arange(B, dtype=np.float64)[:, None]
    idx = xp.searchsorted((cdf + offset).ravel(), (u + offset).ravel(), side="right")
    idx = idx.reshape(B, -1) - n * xp.arange(B)[:, None]
    return xp.clip(idx, 0, n - 1)


def _cost(B, n_q, n_k, d, dv, part, r, m, sampling, n_norm_queries):
    """The :class:`AttentionCost` of one call; ``details`` keeps the per-stage FLOP dict and counts."""
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
    norm_entries = B * n_norm_queries * n_k if sampling == "columns" and m > 0 else 0
    stages = (
        StageCost("hashing", hash_evaluations=B * (n_q + n_k), flops=flops["hashing"]),
        StageCost("sorting", flops=flops["sorting"]),
        StageCost("probabilities", kernel_evaluations=norm_entries, flops=flops["probabilities"]),
        StageCost("sparse", kernel_evaluations=entries, flops=flops["sparse"]),
        StageCost("residual", kernel_evaluations=B * n_q * m, flops=flops["residual"]),
    )
    details = {
        "exact_entries": entries,
        "hyperplanes": r,
        "flops": flops,
        "total_flops": int(sum(flops.values())),
        "bucket_size": part.bucket_size,
        "n_samples": m,
        "n_blocks": part.n_blocks,
    }
    return AttentionCost(batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, stages=stages, samples=B * m,
                         feature_dimension=part.bucket_size + m, details=details)


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
        sequences (unlike the authors' reshape, docs/math.md §6.5).
    n_samples : int >= 0
        Number m of key columns sampled i.i.d. with replacement for the residual
        (per sequence). ``0`` keeps the sparse part only.
    n_hashes : int in 1..30, default 7
        Number r of hyperplanes of the angular LSH (the paper's code uses 7).
    sampling : {"values", "columns", "uniform"}, default "values"
        Residual sampling distribution p over keys.

        * "values": the authors' rule exactly (docs/math.md §6.2),
          ``p_j ∝ ||[v_j, 1]||_2 / sigma_max([V, 1])^2 + 1/n_k``; sigma_max^2 is computed
          exactly from the (d_v+1)^2 Gram matrix, where the authors ran 20 power iterations.
        * "columns": Lemma 3.1, ``p_j = (c_j/sum c + ||[v_j,1]||^2/||[V,1]||_F^2) / 2`` via
          :func:`kdetheory.amm.sampling_probabilities`, where ``c_j`` estimates the squared
          column norms of the residual softmax matrix ``D^-1 A_res`` from ``n_norm_queries``
          uniformly sampled queries (their full logit rows and exact D_i; cost
          O(n_norm_queries n_k d)). ``[V, 1]`` rather than V because the ones column is
          estimated by the same product (docs/math.md §6.11); it also keeps every p_j > 0.
        * "uniform": ``p_j = 1/n_k`` (HyperAttention's choice).
    order : {"gray", "authors"}, default "gray"
        Bucket order of the sort: the true Gray code, or the authors' inverse order (docs/math.md §6.4).
    scale : float, default 1.0
        Logit scale: ``A = exp(scale Q K^T)``.
    n_norm_queries : int >= 1, default 64
        Query sample size of the column-norm estimate (``sampling="columns"`` only).
    lsh : AngularLSH, optional
        A fixed hash (dimension d). Default: a fresh one drawn from ``rng`` with ``n_hashes``
        hyperplanes. One hash is shared by queries, keys and every sequence of the batch
        (the ViT file's convention; the root file redrew one per head, docs/math.md §6.8).
    rng : None, int, SeedSequence or Generator
        Every random number (hash directions, the column-norm query sample, one uniform per
        key sample) is drawn on the host from it, first and in that order, so every backend
        gets identical draws; the uniforms become samples by an inverse-CDF search on the
        inputs' device.
    backend : {"auto", "numpy", "numba", "cupy"}
        "auto" is "numba" on the host when ``bucket_size + n_samples <=
        _config.PRACTICAL_NUMBA_MAX_BUDGET`` (256) and "numpy" (batched BLAS) above, as measured
        on 2 cores; "cupy" for CuPy inputs (host inputs with "cupy" are computed on the GPU and
        come back as NumPy).

        Runs natively on the GPU: hashing (one matrix product and sign bits), the Gray-rank
        sort (``cupy.argsort``), the sampling distribution and the draw, both products (the
        fused kernel, sampled keys gathered inside it) and the final merge, normalisation and
        un-permutation (one fused pass). Exceptions: ``sampling="columns"`` computes the Lemma
        3.1 shares on the host (one round trip), and input validation reads one flag per array.

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
    column (a ratio estimator: consistent, slightly biased; no KDE structure, docs/math.md §6.1).
    Every exponential is shifted by a per-query maximum common to both parts, so the ratio
    is unchanged and nothing overflows. ``D~ > 0`` always: every query's own block is a
    non-empty set of keys whose exact positive terms are part of ``D~``, and every sampled
    term is positive (positive weights), so no guard can trigger.

    References
    ----------
    KDEformer (Zandieh, Han, Daliri, Karbasi, ICML 2023), Section 4 and Figures 3, 5, 6;
    the body of Algorithm 3 follows the authors' public code (docs/math.md §4, §6), with the
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
    backend = resolve_backend(backend, xp, auto="numba" if b + m <= _config.PRACTICAL_NUMBA_MAX_BUDGET else "numpy")
    gen = as_generator(rng)
    if backend == "cupy" and xp is np:  # host inputs computed on the GPU: same draws, host results
        from .._array import get_cupy

        cp = get_cupy()
        res = kdeformer_practical(cp.asarray(Q), cp.asarray(K), cp.asarray(V), bucket_size=b, n_samples=m, n_hashes=r,
                                  sampling=sampling, order=order, scale=scale, n_norm_queries=n_norm, lsh=lsh, rng=gen)
        arrays = {f: getattr(res, f).get() for f in ("output", "log_row_sums", "sparse", "residual", "log_shift")}
        return PracticalResult(**arrays, cost=res.cost, lsh=res.lsh)
    if lsh is None:
        lsh = AngularLSH(d, r, rng=gen)
    elif not isinstance(lsh, AngularLSH) or lsh.dim != d:
        raise ValueError(f"lsh: got {lsh!r}; pass an AngularLSH of dimension {d} or None.")
    r = lsh.n_hashes
    Qb, Kb, Vb, lead = flatten_leading(Q, K, V)
    B = Qb.shape[0]
    # Every host draw happens here, before any device work, in a fixed order (hash, query sample,
    # uniforms): every backend sees the same numbers and the GPU path never waits for the host.
    rows = gen.integers(0, n_q, size=n_norm) if m > 0 and sampling == "columns" else None
    u = to_namespace(gen.random((B, m)), xp) if m > 0 else None

    # Steps 1-2: hash (one GEMM and sign bits), sort by Gray-code position (scale-free).
    perm_q, perm_k = _sort_by_bucket(Qb, lsh, order, xp), _sort_by_bucket(Kb, lsh, order, xp)
    Qs, Ks, Vs = _gather_rows(Qb, perm_q, xp), _gather_rows(Kb, perm_k, xp), _gather_rows(Vb, perm_k, xp)
    part = BlockPartition.build(n_q, n_k, b)

    # Step 3: exact diagonal blocks (key ranges of the one reduction).
    mx_s, acc_s = _blocks.block_diagonal_products(Qs, Ks, Vs, part, scale, backend)
    # Step 4: residual samples in the sorted key frame (distribution and draw on the inputs' device),
    # gathered inside the reduction, masked where they fall in the query's own block.
    if m > 0:
        p = _probabilities(sampling, Qs * Q.dtype.type(scale) if sampling == "columns" else Qs, Ks, Vs, part, rows, xp)
        pos = _draw(p, u, xp)
        log_w = (-xp.log(m * xp.take_along_axis(p, pos, axis=-1))).astype(Q.dtype)
        mx_r, acc_r = _blocks.masked_sampled_products(Qs, Ks, Vs, pos, log_w, part, scale, backend)
    else:
        mx_r, acc_r = xp.full_like(mx_s, -xp.inf), xp.zeros_like(acc_s)

    # Step 5: common shift, ratio, un-permute the queries (one fused pass on the GPU).
    out, log_d, sparse, residual, shift = _blocks.finish(mx_s, acc_s, mx_r, acc_r, perm_q, backend)
    cost = _cost(B, n_q, n_k, d, dv, part, r, m, sampling, n_norm)
    return PracticalResult(
        output=out.reshape(lead + (n_q, dv)),
        log_row_sums=log_d.reshape(lead + (n_q,)),
        sparse=sparse.reshape(lead + (n_q, dv + 1)),
        residual=residual.reshape(lead + (n_q, dv + 1)),
        log_shift=shift.reshape(lead + (n_q,)),
        cost=cost,
        lsh=lsh,
    )
