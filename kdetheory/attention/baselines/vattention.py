"""vAttention-style verified sparse attention: exact sink, window and top-k keys, plus a uniform
sample of the remaining keys whose size comes from an (eps, delta) rule.

For query i let ``I_i`` be its deterministic keys (the first ``n_sink`` keys, the ``window``
keys around its position, and the ``top_k`` highest-scoring others) and ``R_i`` the rest,
``r_i = |R_i|``. With ``x_j = e^{l_ij}`` and ``y_j = e^{l_ij} v_j``,

    D_i = sum_{I_i} x_j + sum_{R_i} x_j,   N_i = sum_{I_i} y_j + sum_{R_i} y_j,

and the residual sums are estimated from ``s_i`` keys drawn uniformly without replacement from
``R_i`` (``r_i / s_i`` times their sum: unbiased). The output is ``N^_i / D^_i``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ... import _config
from ..._array import dlpack_aware, to_numpy
from ..._rng import as_generator
from ..._validation import check_int, check_open_unit
from .._batch import with_ones
from .._cost import AttentionCost, StageCost
from ._common import QKV_PARAMETERS, SCALE_PARAMETER, fill_doc, host_result, prepare

__all__ = ["vattention", "vattention_sample_size"]


def vattention_sample_size(r, sigma_d, trace_n, d_est, n_norm_est, *, eps, delta):
    """Sample size of the (eps, delta) rule for one query's residual (vectorised over queries).

    Parameters
    ----------
    r : array of int
        Residual sizes ``r_i``.
    sigma_d : array
        Standard deviation of ``x_j`` over the residual (estimated from the base sample).
    trace_n : array
        Trace of the covariance of ``y_j`` over the residual (same).
    d_est, n_norm_est : arrays
        Estimates of ``D_i`` and ``||N_i||``.
    eps, delta : float in (0, 1)

    Returns
    -------
    ndarray of int
        ``s_i``, at most ``r_i``.

    Notes
    -----
    If ``|D^ - D| <= e D`` and ``||N^ - N|| <= e ||N||`` then
    ``||N^/D^ - N/D|| <= 2e/(1-e) ||N/D||``, which is ``eps`` for ``e = eps/(2+eps)``. Each part
    is given failure probability ``delta/2`` through the central limit theorem:
    ``z = Phi^-1(1 - delta/4)`` (two-sided) and, for ``s0`` draws with replacement,
    ``s0_D = (z r sigma_D / (e D))^2`` and ``s0_N = z^2 r^2 tr(Sigma_N) / (e ||N||)^2`` (the
    vector version sums the coordinate variances). Drawing without replacement multiplies the
    variance by ``(r - s)/(r - 1)``, so ``s = ceil(s0 r / (s0 + r - 1))`` suffices. The CLT and
    the plug-in variances make this a heuristic guarantee, as in the vAttention paper.
    """
    e = eps / (2.0 + eps)
    z = stats.norm.isf(delta / 4.0)
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_d = (z * r * sigma_d / (e * d_est)) ** 2
        s_n = z * z * r * r * trace_n / (e * n_norm_est) ** 2
    s0 = np.nan_to_num(np.maximum(s_d, s_n), nan=np.inf, posinf=np.inf)
    with np.errstate(invalid="ignore"):
        s = np.where(np.isinf(s0), r, np.ceil(s0 * r / np.maximum(s0 + r - 1.0, 1.0)))
    return np.minimum(s, r).astype(np.int64)


def _deterministic_keys(scores, n_q, n_k, q0, n_sink, window, top_k):
    """Boolean (rows, n_k) mask of sinks, local window and top-k (by ``scores``) per query (rows q0..)."""
    rows = scores.shape[0]
    det = np.zeros((rows, n_k), dtype=bool)
    det[:, :n_sink] = True
    # Query position on the key axis (n_q may differ from n_k): floor(i n_k / n_q).
    lo = ((np.arange(q0, q0 + rows) * n_k) // n_q)[:, None] - window // 2
    j = np.arange(n_k)[None, :]
    det |= (j >= lo) & (j < lo + window)
    if top_k > 0:
        free = np.where(det, -np.inf, scores)
        k = min(top_k, n_k)
        top = np.argpartition(-free, k - 1, axis=1)[:, :k]
        chosen = np.take_along_axis(free, top, axis=1) > -np.inf  # never re-add a deterministic key
        det[np.repeat(np.arange(rows), k)[chosen.ravel()], top.ravel()[chosen.ravel()]] = True
    return det


@dlpack_aware
@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def vattention(Q, K, V, *, n_sink=1, window=0, top_k=0, n_samples=None, eps=None, delta=None, n_base=16,
               top_k_sketch=None, scale=1.0, rng=None):
    """vAttention-style attention: exact sink, window and top-k keys plus a sampled residual.

    Parameters
    ----------
    {qkv_parameters}
    n_sink : int >= 0, default 1
        The first keys, always attended exactly (attention sinks; ``[CLS]`` for an encoder).
    window : int >= 0, default 0
        The ``window`` keys at positions ``p - window // 2 .. p - window // 2 + window - 1``
        around the query's position ``p = floor(i n_k / n_q)``, attended exactly.
    top_k : int >= 0, default 0
        The highest-scoring remaining keys per query, attended exactly.
    n_samples : int >= 0, optional
        Fixed residual sample size per query (capped at the residual size). Give either this or
        ``eps`` and ``delta``.
    eps, delta : float in (0, 1), optional
        The (eps, delta) rule: each query's sample size from :func:`vattention_sample_size`
        with the residual's variances estimated from its first ``n_base`` draws.
    n_base : int >= 2, default 16
        Base sample size of the (eps, delta) rule (part of the final sample).
    top_k_sketch : int >= 1, optional
        Select the top-k keys by scores from an r-dimensional Gaussian sketch
        ``<q P, k P>`` (``P`` d x r, entries N(0, 1/r)) instead of the exact logits (None: exact
        "oracle" top-k, which costs all ``n_q n_k`` logits).
    {scale_parameter}
    rng : None, int, SeedSequence or Generator
        Residual samples (independent for every query) and the sketch.

    Returns
    -------
    ApproxResult
        ``output`` (..., n_q, d_v), ``log_row_sums`` (log D^), ``cost``: an
        :class:`~kdetheory.attention._cost.AttentionCost` whose ``details`` hold
        ``deterministic_keys`` and ``sampled_keys`` (totals over the batch) and
        ``mean_sample_size``.

    Notes
    -----
    Guarantee (the vAttention paper's, CLT-based): with the (eps, delta) rule,
    ``||o^_i - o_i||_2 <= eps ||o_i||_2`` for each query with probability about ``1 - delta``
    (derivation in :func:`vattention_sample_size`). The estimate is exact when ``s_i = r_i``
    (every residual key drawn), e.g. at full budget. The logits are formed densely here (in
    row chunks of ``CHUNK_BYTES``) for simplicity; the cost record counts only the entries the
    method needs: the deterministic keys, the samples, and the top-k selection (all ``n_q n_k``
    logits for oracle top-k, ``2 n_q n_k r`` FLOPs and no kernel entries for a sketch).

    References
    ----------
    Desai et al., "vAttention: Verified Sparse Attention" (2025): deterministic sink, local and
    top-k heavy hitters plus uniformly sampled residual with an (eps, delta) sample-size rule;
    reimplemented from that description.
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    n_sink = check_int("n_sink", n_sink, minimum=0, maximum=n_k)
    window = check_int("window", window, minimum=0)
    top_k = check_int("top_k", top_k, minimum=0, maximum=n_k)
    n_base = check_int("n_base", n_base, minimum=2)
    if (n_samples is None) == (eps is None or delta is None) or (eps is None) != (delta is None):
        raise ValueError(
            f"n_samples, eps, delta: got n_samples={n_samples!r}, eps={eps!r}, delta={delta!r}; pass either "
            "n_samples (a fixed sample size) or both eps and delta (the (eps, delta) rule)."
        )
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples, minimum=0)
    else:
        eps, delta = check_open_unit("eps", eps), check_open_unit("delta", delta)
    if top_k_sketch is not None:
        top_k_sketch = check_int("top_k_sketch", top_k_sketch, minimum=1)
    gen = as_generator(rng)
    P = gen.standard_normal((d, top_k_sketch)) / math.sqrt(top_k_sketch) if top_k_sketch else None
    Qh, Kh, Vh = (to_numpy(X).astype(np.float64) for X in (Qb, Kb, Vb))
    V1 = with_ones(Vh, np)
    out = np.empty((B, n_q, dv))
    log_d = np.empty((B, n_q))
    n_det = n_samp = 0
    rows = _config.block_shape(n_q, n_k, 8, temporaries=8)[0]  # about 8 float or int temporaries per row
    for b in range(B):
        sk_q, sk_k = (Qh[b] @ P, Kh[b] @ P) if P is not None else (None, None)
        for q0 in range(0, n_q, rows):
            q1 = min(n_q, q0 + rows)
            logits = Qh[b, q0:q1] @ Kh[b].T
            scores = logits if P is None else sk_q[q0:q1] @ sk_k.T
            det = _deterministic_keys(scores, n_q, n_k, q0, n_sink, window, top_k)
            shift = logits.max(axis=1, keepdims=True)
            x = np.exp(logits - shift)
            r = n_k - det.sum(axis=1)
            # Draw order of the residual keys: a uniform random permutation of R_i per query.
            priority = np.where(det, np.inf, gen.random(logits.shape))
            rank = np.argsort(np.argsort(priority, axis=1), axis=1)
            if n_samples is not None:
                s = np.minimum(n_samples, r)
            else:
                s = _rule_sizes(x, Vh[b], det, rank, r, n_base, eps, delta)
            drawn = rank < s[:, None]
            w = np.where(det, 1.0, np.where(drawn, r[:, None] / np.maximum(s, 1)[:, None], 0.0))
            num = (w * x) @ V1[b]
            out[b, q0:q1] = num[:, :dv] / num[:, dv:]
            log_d[b, q0:q1] = shift[:, 0] + np.log(num[:, dv])
            n_det += int(det.sum())
            n_samp += int(s.sum())
    selection = (StageCost("top_k_selection", kernel_evaluations=B * n_q * n_k, flops=2 * B * n_q * n_k * d)
                 if P is None else
                 StageCost("top_k_selection", flops=2 * B * (n_q + n_k) * d * top_k_sketch
                           + 2 * B * n_q * n_k * top_k_sketch))
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv,
        stages=(selection if top_k > 0 else StageCost("top_k_selection"),
                StageCost("deterministic", kernel_evaluations=n_det, flops=2 * n_det * (d + dv + 1)),
                StageCost("sampled", kernel_evaluations=n_samp, flops=2 * n_samp * (d + dv + 1))),
        samples=n_samp,
        feature_dimension=None if n_samples is None else n_sink + window + top_k + n_samples,
        details={"deterministic_keys": n_det, "sampled_keys": n_samp,
                 "mean_sample_size": n_samp / (B * n_q)},
    )
    return host_result(out, log_d, lead, cost, xp, Qb.dtype)


def _rule_sizes(x, V, det, rank, r, n_base, eps, delta):
    """Per-query sample sizes of the (eps, delta) rule from the first ``n_base`` residual draws."""
    base = rank < np.minimum(n_base, r)[:, None]
    t = np.maximum(base.sum(axis=1), 1)
    xb = np.where(base, x, 0.0)
    mean_x = xb.sum(axis=1) / t
    var_x = np.where(base, (x - mean_x[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(t - 1, 1)
    y_mean = (xb @ V) / t[:, None]
    y_sq = (xb * x) @ (V * V)  # sum over the base of x_j^2 v_jc^2
    var_y = (y_sq - t[:, None] * y_mean**2) / np.maximum(t - 1, 1)[:, None]
    xd = np.where(det, x, 0.0)
    d_est = xd.sum(axis=1) + r * mean_x
    n_est = np.linalg.norm(xd @ V + r[:, None] * y_mean, axis=1)
    s = vattention_sample_size(r, np.sqrt(var_x), np.maximum(var_y, 0.0).sum(axis=1), d_est, n_est,
                               eps=eps, delta=delta)
    return np.maximum(s, np.minimum(n_base, r))
