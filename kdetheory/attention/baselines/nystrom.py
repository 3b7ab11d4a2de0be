"""Nystromformer (Xiong et al., AAAI 2021) with segment-mean landmarks and its iterative pseudo-inverse."""
from __future__ import annotations

import numpy as np

from ..._validation import check_int
from .._cost import AttentionCost, StageCost
from ._common import QKV_PARAMETERS, SCALE_PARAMETER, ApproxResult, fill_doc, prepare


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


def iterative_pinv(A, n_iterations, xp):
    """Nystromformer's iterative approximation Z of ``pinv(A)``, for A of shape (..., L, L).

    ``Z_0 = A^T / (||A||_1 ||A||_inf)``, ``Z_{k+1} = Z_k (13 I - A Z_k (15 I - A Z_k (7 I - A Z_k))) / 4``.

    Why it is bounded (derived here): in A's singular basis every iterate is ``V diag(z) U^T``
    and ``x = sigma z`` follows ``x <- f(x) = x (13 - 15 x + 7 x^2 - x^3) / 4``, where
    ``f' = (1 - x)^2 (13 - 4 x) / 4 >= 0`` and ``1 - f(x) = (1 - x)^3 (4 - x) / 4``. Starting from
    ``x_0 = sigma^2 / (||A||_1 ||A||_inf) in [0, 1]`` it stays in [0, 1] and converges cubically to 1
    (Z -> pinv(A)) where sigma is not tiny, while growing by at most 13/4 per step where it is.
    So ``||Z_k||_2 <= max_sigma min(1/sigma, (13/4)^k sigma / sqrt(||A||_1 ||A||_inf)) <= (13/4)^(k/2)``
    when ``||A||_1 ||A||_inf >= 1`` (true for a row-stochastic A): directions the exact
    pseudo-inverse would blow up are damped instead.

    Parameters
    ----------
    A : (..., L, L) array
    n_iterations : int >= 1
    xp : module
        numpy or cupy.

    Returns
    -------
    (..., L, L) array
        Z, same dtype as A; cost ``(8 k + 2) L^3`` FLOPs per matrix.
    """
    norm_1 = xp.abs(A).sum(axis=-2).max(axis=-1)  # largest column sum
    norm_inf = xp.abs(A).sum(axis=-1).max(axis=-1)  # largest row sum (1 for a row-stochastic A)
    Z = xp.swapaxes(A, -1, -2) / (norm_1 * norm_inf)[..., None, None]
    eye = xp.eye(A.shape[-1], dtype=A.dtype)
    for _ in range(n_iterations):
        AZ = A @ Z
        Z = 0.25 * (Z @ (13 * eye - AZ @ (15 * eye - AZ @ (7 * eye - AZ))))
    return Z


@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def nystrom(Q, K, V, *, n_landmarks, pinv_iterations=6, scale=1.0, rng=None):
    """Nystrom attention ``softmax(Q L_K^T) Z softmax(L_Q K^T) V`` with ``Z ~ pinv(softmax(L_Q L_K^T))``.

    Parameters
    ----------
    {qkv_parameters}
    n_landmarks : int in 1..min(n_q, n_k)
        Number L of landmarks: segment means of L contiguous segments of Q and of K. The
        feature dimension is L (budget F gives L = 1.5 F, KDEformer's feature dimension).
    pinv_iterations : int >= 1, default 6
        Iterations k of Nystromformer's iterative pseudo-inverse (:func:`iterative_pinv`; the
        paper uses 6).
    {scale_parameter}
    rng : ignored
        Deterministic; accepted for a uniform calling convention.

    Returns
    -------
    ApproxResult
        ``log_row_sums`` is None (the three factors are normalised separately).
        ``cost.details["pinv_inf_norm"]`` is ``||Z||_inf``, the largest absolute row sum of Z.

    Notes
    -----
    No accuracy guarantee in general, but a bounded output: the rows of the outer factors are
    probability vectors, so ``max |output| <= ||Z||_inf max |V| <= sqrt(L) (13/4)^(k/2) max |V|``
    (137 max |V| at L = 16, k = 6), where the exact pseudo-inverse of a near-singular landmark
    softmax gives outputs 1e12 times max |V|. Exact when ``L = n_q = n_k`` once the iteration
    has converged (then ``F1 Z F3 = S pinv(S) S = S``), which takes about
    ``log(||F2||_1 / sigma_min(F2)^2) / log(13/4)`` iterations plus a few cubic ones.
    Runs natively on the GPU for CuPy inputs.
    Cost O((n_q + n_k) L (d + d_v) + k L^3); memory O((n_q + n_k) L).

    References
    ----------
    Xiong et al., "Nystromformer: a Nystrom-based algorithm for approximating self-attention",
    AAAI 2021 (segment means, iterative pseudo-inverse); KDEformer (ICML 2023), baselines
    (docs/math.md §7.0).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    L = check_int("n_landmarks", n_landmarks, minimum=1, maximum=min(n_q, n_k))
    k = check_int("pinv_iterations", pinv_iterations, minimum=1)
    LQ, LK = _segment_means(Qb, L, xp), _segment_means(Kb, L, xp)
    T = xp.swapaxes
    F1 = _softmax(Qb @ T(LK, -1, -2), xp)
    F2 = _softmax(LQ @ T(LK, -1, -2), xp)
    F3V = _softmax(LQ @ T(Kb, -1, -2), xp) @ Vb
    Z = iterative_pinv(F2, k, xp)
    out = F1 @ (Z @ F3V)
    # Logits computed: queries x key landmarks, landmarks x landmarks, query landmarks x keys.
    entries = B * L * (n_q + L + n_k)
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, feature_dimension=L,
        stages=(StageCost("landmark_softmax", kernel_evaluations=entries, flops=2 * entries * d),
                StageCost("pinv", flops=B * (8 * k + 2) * L**3),
                StageCost("products", flops=2 * B * L * dv * (n_k + L + n_q))),
        details={"landmarks": L, "pinv_iterations": k, "pinv_inf_norm": float(xp.abs(Z).sum(axis=-1).max())},
    )
    return ApproxResult(output=out.reshape(lead + (n_q, dv)), cost=cost)
