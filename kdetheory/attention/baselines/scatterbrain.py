"""ScatterBrain (Chen, Dao, Winsor, Song, Rudra, Re, NeurIPS 2021): Performer low rank plus an
exact sparse correction on a local window."""
from __future__ import annotations

import numpy as np

from ..._config import block_shape
from ..._rng import as_generator
from ..._validation import check_int
from .._batch import with_ones
from .._cost import AttentionCost, StageCost
from ._common import (
    QKV_PARAMETERS,
    SCALE_PARAMETER,
    ApproxResult,
    fill_doc,
    prepare,
    shifted_positive_features,
)


def _band_starts(n_q, n_k, w):
    """First key of each query's window: w consecutive keys centred on i n_k / n_q, clipped."""
    centre = (np.arange(n_q) * n_k) // n_q
    return np.clip(centre - w // 2, 0, n_k - w)


@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def scatterbrain(Q, K, V, *, n_features, local_size, orthogonal=False, scale=1.0, rng=None):
    """ScatterBrain: ``A ~ phi(Q) phi(K)^T`` off the window, exact ``exp(q k)`` on it.

    Parameters
    ----------
    {qkv_parameters}
    n_features : int >= 1
        Performer features m of the low-rank part.
    local_size : int in 0..n_k
        Window width w: query i's support S_i is the w consecutive keys centred at
        ``i n_k / n_q`` (clipped at the ends). Budget F gives w = F/2 and m = F, feature
        dimension F/2 + F (docs/math.md §7.1).
    orthogonal : bool, default False
    {scale_parameter}
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    ApproxResult

    Notes
    -----
    ``A~_ij = exp(<q_i,k_j>)`` for ``j in S_i`` and ``phi(q_i)^T phi(k_j)`` otherwise, i.e. the
    low-rank estimate plus the sparse correction ``(exp - phi phi)`` on the support; the
    output is ``A~ [V, 1]`` normalised by its last column. Entrywise unbiased, with lower
    variance than Performer alone. Both parts are expressed relative to one per-query shift
    ``max(c_i + c_k, max_{j in S_i} logit_ij)`` (c: the Performer log-feature maxima), so the
    exact and low-rank terms never overflow. Cost O((n_q + n_k) m (d + d_v) + n_q w (d + m)):
    the band's logits are computed per chunk of at most w queries over the chunk's key range
    (at most about 2 w keys), and ``cost`` counts every logit computed that way. Runs natively
    on the GPU for CuPy inputs (the directions are drawn on the host).

    References
    ----------
    Chen et al., "Scatterbrain: unifying sparse and low-rank attention", NeurIPS 2021;
    KDEformer (ICML 2023), Figure 4 baseline (docs/math.md §7.0–§7.1).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    m = check_int("n_features", n_features, minimum=1)
    w = check_int("local_size", local_size, minimum=0, maximum=n_k)
    gen = as_generator(rng)
    phi_q, phi_k, cq, ck = shifted_positive_features(Qb, Kb, m, orthogonal, scale, gen, xp)
    V1 = with_ones(Vb, xp)
    low = phi_q @ (xp.swapaxes(phi_k, -1, -2) @ V1)  # relative to exp(cq + ck)
    base = cq + ck[:, None]
    total = xp.empty_like(low)
    starts = _band_starts(n_q, n_k, w)
    # At most w query rows per chunk, so a chunk's key range (<= rows n_k/n_q + w) stays O(w).
    rows = max(1, min(w, block_shape(n_q, B * (2 * w + 1), Qb.dtype.itemsize, temporaries=4)[0])) if w else n_q
    entries = 0  # logits computed: each chunk's rectangle of rows x its key range
    for r0 in range(0, n_q, rows):
        r1 = min(n_q, r0 + rows)
        if w == 0:
            total[:, r0:r1] = low[:, r0:r1]
            continue
        k0, k1 = int(starts[r0]), int(starts[r1 - 1]) + w
        rel = np.arange(k0, k1)[None, :] - starts[r0:r1, None]
        in_band = xp.asarray((rel >= 0) & (rel < w))
        # Mask in the log domain: logits outside the band become -inf before any exp, so an
        # out-of-band logit above the shift can neither overflow nor leak into the sum.
        logits = xp.where(in_band, Qb[:, r0:r1] @ xp.swapaxes(Kb[:, k0:k1], -1, -2), -xp.inf)
        entries += B * (r1 - r0) * (k1 - k0)
        shift = xp.maximum(base[:, r0:r1], logits.max(axis=-1))
        exact = xp.exp(logits - shift[..., None])
        approx = (phi_q[:, r0:r1] @ xp.swapaxes(phi_k[:, k0:k1], -1, -2)) * xp.exp(base[:, r0:r1] - shift)[..., None]
        correction = (exact - xp.where(in_band, approx, 0)) @ V1[:, k0:k1]
        total[:, r0:r1] = low[:, r0:r1] * xp.exp(base[:, r0:r1] - shift)[..., None] + correction
        base[:, r0:r1] = shift
    out = total[..., :dv] / total[..., dv:]
    log_d = base + xp.log(total[..., dv])
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, feature_dimension=w + m,
        stages=(StageCost("features", flops=2 * B * (n_q + n_k) * m * (d + dv + 1)),
                StageCost("sparse", kernel_evaluations=entries, flops=2 * entries * (d + m + dv + 1))),
        details={"features": m, "local_size": w, "band_entries": B * n_q * w},
    )
    return ApproxResult(output=out.reshape(lead + (n_q, dv)), log_row_sums=log_d.reshape(lead + (n_q,)), cost=cost)
