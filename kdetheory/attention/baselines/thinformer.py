"""Thinformer: attention over key-value pairs thinned by kernel halving.

``exp(<q, k>) = e^{||q||^2/2} g(q, k) e^{||k||^2/2}`` with the Gaussian kernel
``g(x, y) = exp(-||x - y||^2/2)`` (feature map phi, ``||phi|| = 1``); the query factor cancels in
the softmax ratio. With the pair weights ``w_j = e^{(||k_j||^2 - max)/2} [v_j, 1]``, each
unnormalised output entry (numerator column c, or the normaliser for c = d_v + 1) is

    sum_j g(q, k_j) w_jc = <phi(q) (x) e_c, Phi>,      Phi = sum_j phi(k_j) (x) w_j,

a linear functional of the key-value pairs' embedding in the product kernel
``kappa(j, j') = g(k_j, k_j') <w_j, w_j'>``. Kernel halving splits the pairs into two halves whose
embeddings nearly agree, keeps one half and doubles its weight; ``g`` rounds keep
``n / 2^g`` pairs.
"""
from __future__ import annotations

import math

import numpy as np

from ... import _config
from ..._array import dlpack_aware, to_numpy
from ..._rng import as_generator
from ..._validation import check_int, check_open_unit
from .._batch import with_ones
from .._cost import AttentionCost, StageCost
from ._common import QKV_PARAMETERS, SCALE_PARAMETER, fill_doc, host_result, prepare

__all__ = ["kernel_halving", "thinformer"]


def kernel_halving(G, delta_step, gen):
    """One round of kernel halving (self-balancing Hilbert walk) for a batch of Gram matrices.

    Parameters
    ----------
    G : (B, m, m) ndarray, m even
        Gram matrices of the points in their input order; pairs are ``(2i, 2i+1)``.
    delta_step : float in (0, 1)
        Failure probability allowed to each step's threshold.
    gen : numpy.random.Generator

    Returns
    -------
    keep : (B, m/2) int64
        Position of the kept point of each pair.
    sigma : (B,) ndarray
        Sub-Gaussian parameter of the walk ``psi = sum_kept phi - sum_dropped phi``.

    Notes
    -----
    Step i with ``f_i = phi(x_2i) - phi(x_2i+1)``: ``b_i^2 = ||f_i||^2``, ``alpha_i = <psi, f_i>``,
    threshold ``a_i = max(b_i sigma sqrt(2 log(2/delta_step)), b_i^2)``; keep ``x_2i`` (sign +1)
    with probability ``(1 - alpha_i/a_i)/2`` (clipped to [0, 1]: the rare event
    ``|alpha_i| > a_i``, probability at most delta_step, voids the guarantee), and update
    ``sigma^2 <- sigma^2 + b_i^2 (1 + sigma^2 (b_i^2 - 2 a_i) / a_i^2)_+``. Then for every fixed
    ``f`` in the space, ``<f, psi>`` is ``sigma ||f||``-sub-Gaussian (Dwivedi and Mackey,
    Kernel Thinning, the self-balancing walk behind KT-SPLIT, reimplemented from its statement).
    """
    B, m, _ = G.shape
    psi = np.zeros((B, m))  # <psi, phi(x_t)> for every point t
    sigma2 = np.zeros(B)
    keep = np.empty((B, m // 2), dtype=np.int64)
    log_term = math.sqrt(2.0 * math.log(2.0 / delta_step))
    for i in range(m // 2):
        x, y = 2 * i, 2 * i + 1
        b2 = np.maximum(G[:, x, x] + G[:, y, y] - 2.0 * G[:, x, y], 0.0)
        alpha = psi[:, x] - psi[:, y]
        a = np.maximum(np.sqrt(b2 * sigma2) * log_term, b2)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_plus = np.where(a > 0, np.clip(0.5 * (1.0 - alpha / a), 0.0, 1.0), 0.5)
            growth = np.where(a > 0, np.maximum(1.0 + sigma2 * (b2 - 2.0 * a) / (a * a), 0.0), 0.0)
        eta = np.where(gen.random(B) < p_plus, 1.0, -1.0)
        psi += eta[:, None] * (G[:, :, x] - G[:, :, y])
        sigma2 += b2 * growth
        keep[:, i] = np.where(eta > 0, x, y)
    return keep, np.sqrt(sigma2)


def _pair_gram(Kp, Wp):
    """Product-kernel Gram ``g(k, k') <w, w'>`` of gathered pairs, (B, m, m)."""
    sq = np.einsum("bmd,bmd->bm", Kp, Kp)
    log_g = Kp @ np.swapaxes(Kp, 1, 2) - 0.5 * (sq[:, :, None] + sq[:, None, :])
    return np.exp(log_g) * (Wp @ np.swapaxes(Wp, 1, 2))


@dlpack_aware
@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def thinformer(Q, K, V, *, n_rounds, delta=0.5, scale=1.0, rng=None, error_bound=False):
    """Thinformer attention: softmax attention over key-value pairs thinned by kernel halving.

    Parameters
    ----------
    {qkv_parameters}
    n_rounds : int >= 0
        Number g of halving rounds: about ``n_k / 2^g`` pairs are kept (the feature dimension).
        ``0`` is exact attention.
    delta : float in (0, 1), default 0.5
        Failure probability of the max-norm guarantee (half for the walks' thresholds, half for
        the union bound over the ``n_q (d_v + 1)`` output entries and the rounds).
    {scale_parameter}
    rng : None, int, SeedSequence or Generator
        The walks' coin flips (independent per sequence).
    error_bound : bool, default False
        Also return the guarantee below for every output entry in ``details["output_error_bound"]``
        (a host array shaped like the output; ``inf`` where it certifies nothing).

    Returns
    -------
    ApproxResult
        ``output`` (..., n_q, d_v) = ``N^ / D^`` over the kept pairs (weight ``2^g``; a pair left
        unpaired by an odd count is kept with its current weight); ``log_row_sums``; ``cost``
        (:class:`~kdetheory.attention._cost.AttentionCost`; ``details``: ``kept_pairs``,
        ``sigma`` per round and sequence).

    Notes
    -----
    Guarantee (kernel halving's sub-Gaussian bound, union-bounded): each round's error on an
    unnormalised entry is ``weight * <phi(q) (x) e_c, psi>`` with ``||phi(q) (x) e_c|| = 1``, so with
    probability at least ``1 - delta`` every entry satisfies
    ``|N^_ic - N_ic| <= e := sum_rounds weight_r sigma_r sqrt(2 log(4 n_q (d_v+1) g / delta))``
    (query factor removed), and ``|o^_ic - o_ic| <= e (1 + |o^_ic|) / (D^_i - e)`` when ``D^_i > e``.
    Cost: the walk uses the Gram matrix of the current pairs, ``m^2`` kernel entries per round
    (about ``4 n_k^2 / 3`` in all; quadratic in n_k: the near-linear KH-Compress variant of the
    paper is not implemented), then ``n_q n_k / 2^g`` logits for the thinned attention.

    References
    ----------
    Carrell, Gong, Shetty, Dwivedi, Mackey, "Low-rank thinning" (ICML 2025), Thinformer;
    Dwivedi and Mackey, "Kernel thinning" (COLT 2021), kernel halving / KT-SPLIT.
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    g = check_int("n_rounds", n_rounds, minimum=0)
    if n_k >> g < 1:
        raise ValueError(f"n_rounds: got {g}, but {n_k} keys cannot be halved {g} times; "
                         f"pass n_rounds <= {n_k.bit_length() - 1}.")
    delta = check_open_unit("delta", delta)
    gen = as_generator(rng)
    root = math.sqrt(scale)
    Qh = to_numpy(Qb).astype(np.float64) / root
    Kh = to_numpy(Kb).astype(np.float64) * root
    k_sq = np.einsum("bnd,bnd->bn", Kh, Kh)
    V1 = to_numpy(with_ones(Vb, xp)).astype(np.float64)
    W = np.exp(0.5 * (k_sq - k_sq.max(axis=1, keepdims=True)))[..., None] * V1  # pair weights w_j

    rows = np.arange(B)[:, None]
    pts = np.broadcast_to(np.arange(n_k), (B, n_k)).copy()
    extra, extra_w = [], []  # points left unpaired by an odd count, with their weights
    weight, sigmas, weights, gram = 1.0, [], [], 0
    total_steps = sum((n_k >> r) // 2 for r in range(g))
    for _ in range(g):
        if pts.shape[1] % 2:
            extra.append(pts[:, -1])
            extra_w.append(weight)
            pts = pts[:, :-1]
        m = pts.shape[1]
        gram += B * m * m
        # Gram matrices of `per` sequences at a time (three m x m temporaries each) within the chunk budget.
        per = _config.CHUNK_BYTES // (3 * 8 * m * m)
        if per < 1:
            raise ValueError(f"K: {n_k} keys need a {m} x {m} Gram matrix, above the chunk budget "
                             f"({_config.CHUNK_BYTES} bytes); raise kdetheory._config.CHUNK_BYTES or pass fewer keys.")
        parts = [kernel_halving(_pair_gram(Kh[rows[c:c + per], pts[c:c + per]], W[rows[c:c + per], pts[c:c + per]]),
                                delta / (2 * total_steps), gen) for c in range(0, B, per)]
        keep = np.concatenate([k for k, _ in parts])
        sigma = np.concatenate([sg for _, sg in parts])
        pts = np.take_along_axis(pts, keep, axis=1)
        sigmas.append(sigma)
        weights.append(weight)
        weight *= 2.0
    idx = np.concatenate([pts] + [e[:, None] for e in extra], axis=1)
    wts = np.array([weight] * pts.shape[1] + extra_w)
    # Units with the query factor removed: log(g(q, k) e^{(||k||^2 - M)/2}) = <q, k> - ||q||^2/2 - M/2.
    q_half = 0.5 * np.einsum("bnd,bnd->bn", Qh, Qh)[..., None]
    m_half = 0.5 * k_sq.max(axis=1)[:, None, None]
    log_u = Qh @ np.swapaxes(Kh[rows, idx], 1, 2) - q_half - m_half
    shift = log_u.max(axis=2, keepdims=True)
    acc = (np.exp(log_u - shift) * wts) @ V1[rows, idx]
    out = acc[..., :dv] / acc[..., dv:]
    log_d = (shift + q_half + m_half)[..., 0] + np.log(acc[..., dv])
    details = {"kept_pairs": int(idx.shape[1]), "sigma": tuple(map(tuple, sigmas))}
    if error_bound:
        # e in the same units; relative to D^ = e^{shift} acc_D.
        z = math.sqrt(2.0 * math.log(4.0 * n_q * (dv + 1) * max(g, 1) / delta))
        e = z * sum(w * sig for w, sig in zip(weights, sigmas)) if g else np.zeros(B)
        with np.errstate(divide="ignore"):
            r = np.exp(np.log(e)[:, None] - shift[..., 0] - np.log(acc[..., dv]))[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.where(r < 1, r * (1.0 + np.abs(out)) / (1.0 - r), np.inf)
        details["output_error_bound"] = bound.reshape(lead + (n_q, dv))
    s = idx.shape[1]
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv,
        stages=(StageCost("kernel_halving", kernel_evaluations=gram, flops=2 * gram * (d + dv + 1)),
                StageCost("thinned_attention", kernel_evaluations=B * n_q * s, flops=2 * B * n_q * s * (d + dv + 1))),
        samples=B * s, feature_dimension=s, details=details,
    )
    return host_result(out, log_d, lead, cost, xp, Qb.dtype)
