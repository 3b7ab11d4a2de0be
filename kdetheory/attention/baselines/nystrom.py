"""Nystromformer (Xiong et al., AAAI 2021) with segment-mean landmarks and an exact pseudo-inverse."""
from __future__ import annotations

import numpy as np

from ..._validation import check_int
from ._common import ApproxResult, prepare


def _segment_means(X, n_segments, xp):
    """Means of ``n_segments`` contiguous segments of the rows (sizes differ by at most one)."""
    n = X.shape[-2]
    bounds = (np.arange(n_segments + 1) * n) // n_segments
    csum = xp.concatenate([xp.zeros_like(X[..., :1, :]), xp.cumsum(X, axis=-2)], axis=-2)
    sizes = xp.asarray(np.diff(bounds).astype(X.dtype))[:, None]
    hi, lo = xp.asarray(bounds[1:]), xp.asarray(bounds[:-1])
    return (csum[..., hi, :] - csum[..., lo, :]) / sizes


def _softmax(logits, xp):
    e = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def nystrom(Q, K, V, *, n_landmarks, scale=1.0, rng=None):
    """Nystrom attention ``softmax(Q L_K^T) pinv(softmax(L_Q L_K^T)) softmax(L_Q K^T) V``.

    Parameters
    ----------
    Q : (..., n_q, d) array
    K : (..., n_k, d) array
    V : (..., n_k, d_v) array
    n_landmarks : int in 1..min(n_q, n_k)
        Number L of landmarks: segment means of L contiguous segments of Q and of K. The
        feature dimension is L (budget F gives L = 1.5 F, KDEformer's feature dimension).
    scale : float, default 1.0
    rng : ignored
        Deterministic; accepted for a uniform calling convention.

    Returns
    -------
    ApproxResult
        ``log_row_sums`` is None (the three factors are normalised separately).

    Notes
    -----
    No guarantee in general; exact when ``L = n_q = n_k`` (then ``F1 pinv(F2) F3 = S pinv(S) S
    = S``). The pseudo-inverse is the exact (SVD) one, not the paper's iterative approximation.
    Cost O((n_q + n_k) L (d + d_v) + L^3); memory O((n_q + n_k) L).

    References
    ----------
    Xiong et al., "Nystromformer: a Nystrom-based algorithm for approximating self-attention",
    AAAI 2021; KDEformer (ICML 2023), baselines (SPEC 7.0).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    L = check_int("n_landmarks", n_landmarks, minimum=1, maximum=min(n_q, n_k))
    LQ, LK = _segment_means(Qb, L, xp), _segment_means(Kb, L, xp)
    T = xp.swapaxes
    F1 = _softmax(Qb @ T(LK, -1, -2), xp)
    F2 = _softmax(LQ @ T(LK, -1, -2), xp)
    F3V = _softmax(LQ @ T(Kb, -1, -2), xp) @ Vb
    out = F1 @ (xp.linalg.pinv(F2) @ F3V)
    cost = {
        "feature_dimension": L,
        "landmarks": L,
        "flops": {"products": 2 * B * L * ((n_q + n_k) * d + n_k * dv + n_q * dv + L * (d + dv)),
                  "pinv": 11 * B * L**3},
    }
    return ApproxResult(output=out.reshape(lead + (n_q, dv)), cost=cost)
