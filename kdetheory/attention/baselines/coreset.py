"""Weighted key coreset by randomly pivoted Cholesky (WildCat-style), with its max-norm bound.

``exp(<q, k>) = e^{||q||^2/2} g(q, k) e^{||k||^2/2}`` with the Gaussian kernel
``g(x, y) = exp(-||x - y||^2 / 2)`` (feature map phi, ``||phi(x)|| = 1``). The query factor
cancels in the softmax ratio, so with the key weights ``w_j = e^{||k_j||^2/2} [v_j, 1]``

    (A [V, 1])_i = e^{||q_i||^2/2} <phi(q_i), Phi w>,      Phi w = sum_j phi(k_j) w_j.

Projecting ``Phi w`` onto the span of a few keys' features ``phi(k_s), s in S`` gives a
weighted coreset: ``sum_j g(q, k_j) w_j ~ g(q, K_S) W`` with ``W = G_SS^-1 G_S: w`` (G the
Gaussian Gram matrix of the keys, G_S: its rows at S). The pivots S come from randomly
pivoted Cholesky (RPCholesky): each new pivot is drawn with probability proportional to the
diagonal of the residual ``G - G_:S G_SS^-1 G_S:``; it needs that diagonal and s columns of G.
"""
from __future__ import annotations

import math

import numpy as np

from ..._array import dlpack_aware, to_numpy
from ..._rng import as_generator
from ..._validation import check_int
from .._batch import with_ones
from .._cost import AttentionCost, StageCost
from ._common import QKV_PARAMETERS, fill_doc, host_result, prepare

__all__ = ["rpcholesky", "coreset_attention"]


def rpcholesky(K, n_pivots, gen):
    """Randomly pivoted partial Cholesky of the Gaussian Gram matrix ``G_ij = exp(-||k_i - k_j||^2/2)``.

    Parameters
    ----------
    K : (n, d) ndarray, float64
        Keys of one sequence (already carrying the logit scale).
    n_pivots : int in 1..n
    gen : numpy.random.Generator

    Returns
    -------
    pivots : (s,) int64
        Chosen keys in order, ``s <= n_pivots`` (fewer only when the residual vanishes first,
        e.g. for repeated keys).
    F : (n, s) ndarray
        ``G^ = F F^T = G_:S G_SS^-1 G_S:``; ``F[pivots]`` is lower triangular.
    residual_trace : float
        ``tr(G - G^)`` (at most n, since diag G = 1).

    Notes
    -----
    Chen, Epperly, Tropp, Webber (2023), Algorithm 2: pivot ``s_t ~ diag(G - F F^T)``, new
    column ``(G_{:, s_t} - F F_{s_t}^T) / sqrt(residual_{s_t})``. Cost: s columns of G
    (``n s`` kernel entries) and O(n s^2) FLOPs.
    """
    n = K.shape[0]
    sq = np.einsum("ij,ij->i", K, K)
    diag = np.ones(n)
    F = np.zeros((n, n_pivots))
    pivots = []
    for t in range(n_pivots):
        total = diag.sum()
        if not total > 1e-13 * n:  # the residual is rounding noise: a further pivot would divide by ~0
            break
        s = int(gen.choice(n, p=diag / total))
        col = np.exp(K @ K[s] - 0.5 * (sq + sq[s])) - F[:, :t] @ F[s, :t]
        col /= math.sqrt(diag[s])
        F[:, t] = col
        diag = np.maximum(diag - col * col, 0.0)
        diag[s] = 0.0  # interpolated exactly from now on
        pivots.append(s)
    t = len(pivots)
    return np.array(pivots, dtype=np.int64), F[:, :t], float(diag.sum())


def _log_residual_norms(log_g, F_S):
    """``log ||(I - P) phi(q)||`` per query from its Gaussian kernel row ``log g(q, K_S)`` (n_q, s).

    ``||(I-P) phi(q)||^2 = 1 - ||F_S^-1 g(S, q)||^2`` lies in [0, 1]; rounding can leave it a
    few ulps off near 0, which the audit allows for.
    """
    u = np.linalg.solve(F_S, np.exp(log_g).T)  # (s, n_q)
    ratio = np.clip(1.0 - np.einsum("sq,sq->q", u, u), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return 0.5 * np.log(ratio)


@dlpack_aware
@fill_doc(qkv_parameters=QKV_PARAMETERS)
def coreset_attention(Q, K, V, *, n_pivots, scale=1.0, rng=None, error_bound=False):
    """Attention through a weighted coreset of ``s`` keys chosen by randomly pivoted Cholesky.

    Parameters
    ----------
    {qkv_parameters}
    n_pivots : int in 1..n_k
        Coreset size s (the feature dimension: each query touches s keys).
    scale : float, default 1.0
        ``A = exp(scale Q K^T)``; applied as ``sqrt(scale)`` on both sides.
    rng : None, int, SeedSequence or Generator
        Pivot draws (independent per sequence of the batch).
    error_bound : bool, default False
        Also compute the guarantee below for every output entry (O(n_q s^2) more work, not
        counted in the cost): ``details["output_error_bound"]``, a host array shaped like the
        output, bounding ``|output - exact|`` entrywise (``inf`` where it certifies nothing).

    Returns
    -------
    ApproxResult
        ``output`` (..., n_q, d_v) = ``N^ / D^`` with ``[N^, D^] = g(Q, K_S) W``;
        ``log_row_sums`` (..., n_q), the log of the estimate of ``D`` (NaN in fallback rows);
        ``cost``: :class:`~kdetheory.attention._cost.AttentionCost` with ``details``
        ``n_pivots`` (per sequence, as used), ``fallback_rows``, the per-sequence
        ``residual_trace`` ``tr(G - G^)``, and ``output_error_bound`` when asked for.

    Notes
    -----
    Guarantee (deterministic, a posteriori; audited by the guarantee claim): with ``P`` the
    projection onto span phi(K_S) and ``D^_i`` in the same units (query factor removed),
    ``sum_j g(q_i, k_j) w_jc - g(q_i, K_S) W_c = <(I-P) phi(q_i), (I-P) Phi w_c>``, so by
    Cauchy-Schwarz and ``w^T (G - G^) w <= ||w||^2 tr(G - G^)``

        e_ic = ||(I-P) phi(q_i)|| ||w_c|| sqrt(tr(G - G^))

    bounds the error of each numerator column and (c = d_v + 1) of the normaliser, and
    ``|o^_ic - o_ic| <= (e_ic + |o^_ic| e_i,dv+1) / (D^_i - e_i,dv+1)`` when the denominator
    is positive (``error_bound=True`` returns this bound; ``inf`` where it certifies nothing).
    RPCholesky controls ``tr(G - G^)``: in expectation it is at most ``(1 + e) tr(G - [[G]]_r)``
    once ``s >= r/e + r log(1/(e eta))``, ``eta = tr(G - [[G]]_r) / tr(G)`` the relative tail
    (Chen et al. 2023, Theorem 3.1). ``D^`` estimates a positive sum but is not forced positive;
    rows with ``D^ <= 0`` fall back to softmax over the coreset keys (counted in
    ``details["fallback_rows"]``). At ``s = n_k`` the projection is the identity and the output
    is exact up to rounding. Cost: s columns of G (``n_k s`` kernel entries), ``n_q s`` kernel
    entries for the queries, O(n_k s^2 + n_q s d_v) other FLOPs.

    References
    ----------
    Chen, Epperly, Tropp, Webber, "Randomly pivoted Cholesky", CPAM 2024 (Algorithm 2, Thm 3.1);
    the weighted-coreset use for attention follows WildCat (Mackey group, 2025), reimplemented
    from the projection argument above.
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    s_max = check_int("n_pivots", n_pivots, minimum=1, maximum=n_k)
    gens = as_generator(rng).spawn(B)
    root = math.sqrt(scale)
    # Q carries the whole scale from prepare(); split it evenly so the kernel acts on K sqrt(scale).
    Qh = to_numpy(Qb).astype(np.float64) / root
    Kh = to_numpy(Kb).astype(np.float64) * root
    V1 = to_numpy(with_ones(Vb, xp)).astype(np.float64)
    out = np.empty((B, n_q, dv))
    log_d = np.full((B, n_q), np.nan)
    bound = np.full((B, n_q, dv), np.inf) if error_bound else None
    used, traces, fallback = [], [], 0
    for b in range(B):
        q, k = Qh[b], Kh[b]
        k_sq = np.einsum("ij,ij->i", k, k)
        piv, F, trace = rpcholesky(k, s_max, gens[b])
        # Key weights w_j = e^{(||k_j||^2 - max)/2} [v_j, 1]: the common factor cancels in the ratio.
        w = np.exp(0.5 * (k_sq - k_sq.max()))[:, None] * V1[b]
        # W = G_SS^-1 G_S: w = F_S^-T F^T w  (G_SS = F_S F_S^T, G_S: = F_S F^T): solve, never invert.
        W = np.linalg.solve(F[piv].T, F.T @ w)
        log_g = q @ k[piv].T - 0.5 * (np.einsum("ij,ij->i", q, q)[:, None] + k_sq[piv][None, :])
        shift = log_g.max(axis=1, keepdims=True)
        acc = np.exp(log_g - shift) @ W
        den = acc[:, dv]
        bad = ~(den > 0)
        if bad.any():  # the normaliser is not positive: plain softmax over the coreset keys
            acc[bad] = np.exp(log_g[bad] - shift[bad]) @ (np.exp(0.5 * k_sq[piv])[:, None] * V1[b][piv])
            fallback += int(bad.sum())
        out[b] = acc[:, :dv] / acc[:, dv:]
        ok = ~bad
        log_d[b, ok] = (shift[ok, 0] + np.log(den[ok]) + 0.5 * np.einsum("ij,ij->i", q[ok], q[ok])
                        + 0.5 * k_sq.max())
        if error_bound and ok.any():
            log_e = _log_residual_norms(log_g[ok], F[piv]) + 0.5 * (math.log(trace) if trace > 0 else -np.inf)
            with np.errstate(divide="ignore"):
                log_w = np.log(np.linalg.norm(w, axis=0))  # ||w_c||, (dv + 1,)
            r = np.exp(log_e[:, None] + log_w[None, :] - shift[ok] - np.log(den[ok])[:, None])  # e / D^
            r_n, r_d = r[:, :dv], r[:, dv:]
            with np.errstate(divide="ignore", invalid="ignore"):
                bound[b, ok] = np.where(r_d < 1, (r_n + np.abs(out[b, ok]) * r_d) / (1 - r_d), np.inf)
        used.append(len(piv))
        traces.append(trace)
    s_tot = int(sum(used))
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv,
        stages=(
            StageCost("rpcholesky", kernel_evaluations=n_k * s_tot,
                      flops=2 * n_k * s_tot * d + sum(2 * n_k * u * u for u in used)),
            StageCost("weights", flops=sum(2 * n_k * u * (dv + 1) + u * u * (dv + 1) for u in used)),
            StageCost("coreset_product", kernel_evaluations=n_q * s_tot, flops=2 * n_q * s_tot * (d + dv + 1)),
        ),
        samples=s_tot, feature_dimension=s_max,
        details={"n_pivots": tuple(used), "fallback_rows": fallback,
                 "residual_trace": tuple(traces),
                 **({"output_error_bound": bound.reshape(lead + (n_q, dv))} if error_bound else {})},
    )
    return host_result(out, log_d, lead, cost, xp, Qb.dtype)
