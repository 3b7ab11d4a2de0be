"""Performer / FAVOR+ with positive random features (Choromanski et al., ICLR 2021)."""
from __future__ import annotations

from ..._rng import as_generator
from ..._validation import check_int
from .._batch import with_ones
from .._cost import AttentionCost, StageCost
from ._common import (
    QKV_PARAMETERS,
    ApproxResult,
    fill_doc,
    prepare,
    shifted_positive_features,
)


@fill_doc(qkv_parameters=QKV_PARAMETERS)
def performer(Q, K, V, *, n_features, orthogonal=False, scale=1.0, rng=None):
    """Performer attention ``phi(Q) (phi(K)^T [V, 1])``, normalised by its last column.

    Parameters
    ----------
    {qkv_parameters}
    n_features : int >= 1
        Number m of random features (the feature dimension; budget F gives m = F, docs/math.md §7.1).
    orthogonal : bool, default False
        Orthogonal blocks of directions (FAVOR+) instead of i.i.d. Gaussian ones (the paper's
        Figure 4 used Gaussian).
    scale : float, default 1.0
        ``A = exp(scale Q K^T)``; applied as ``sqrt(scale)`` on both sides.
    rng : None, int, SeedSequence or Generator
        Draws the directions (shared by every sequence of the batch).

    Returns
    -------
    ApproxResult
        ``output`` (..., n_q, d_v), ``log_row_sums`` (estimate of log D), ``cost``.

    Notes
    -----
    ``exp(<q, k>) = E_w[phi_w(q) phi_w(k)]`` with ``phi_w(x) = exp(w^T x - ||x||^2 / 2)`` and
    ``w ~ N(0, I)``: each entry of A is estimated without bias, with a variance that grows like
    ``exp(||q||^2 + ||k||^2)`` (an entrywise, not a spectral, guarantee). No stabilising epsilon
    is added. For stability the log-features of each query are shifted by their own maximum
    and those of the keys by one global maximum per sequence; both shifts cancel in the
    ratio (and are added back in ``log_row_sums``). Cost O((n_q + n_k) m (d + d_v)); no entry of
    A is computed (``cost.work_fraction`` is 0). Runs natively on the GPU for CuPy inputs (the
    m x d directions are drawn on the host).

    References
    ----------
    Choromanski et al., "Rethinking attention with Performers", ICLR 2021 (FAVOR+);
    KDEformer (ICML 2023), Section 5 / Figure 4 (baseline, docs/math.md §7.0–§7.1).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    m = check_int("n_features", n_features, minimum=1)
    gen = as_generator(rng)
    phi_q, phi_k, cq, ck = shifted_positive_features(Qb, Kb, m, orthogonal, scale, gen, xp)
    kv = xp.swapaxes(phi_k, -1, -2) @ with_ones(Vb, xp)
    num = phi_q @ kv
    dv = Vb.shape[-1]
    out = num[..., :dv] / num[..., dv:]
    log_d = xp.log(num[..., dv]) + cq + ck[:, None]
    B, n_q, d = Qb.shape
    n_k = Kb.shape[-2]
    # No entry of A is computed: the features replace every kernel evaluation.
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, feature_dimension=m,
        stages=(StageCost("features", flops=2 * B * (n_q + n_k) * m * d),
                StageCost("products", flops=2 * B * (n_q + n_k) * m * (dv + 1))),
        details={"features": m, "orthogonal": bool(orthogonal)},
    )
    return ApproxResult(output=out.reshape(lead + out.shape[-2:]), log_row_sums=log_d.reshape(lead + (n_q,)), cost=cost)
