"""Sampling baselines: uniform key sampling, and HyperAttention (sorted-LSH blocks + uniform keys)."""
from __future__ import annotations

import math

import numpy as np

from ..._array import resolve_backend, to_namespace
from ..._rng import as_generator
from ..._stream import lse_products_on
from ..._validation import check_int
from .._cost import AttentionCost, StageCost
from ..practical import kdeformer_practical
from ._common import QKV_PARAMETERS, SCALE_PARAMETER, ApproxResult, fill_doc, prepare


@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def uniform_sampling(Q, K, V, *, n_samples, scale=1.0, rng=None):
    """Attention over ``s`` keys drawn uniformly without replacement, each weighted ``n_k / s``.

    Parameters
    ----------
    {qkv_parameters}
    n_samples : int in 1..n_k
        Number s of keys per sequence (the feature dimension; budget F gives s = 1.5 F).
    {scale_parameter}
    rng : None, int, SeedSequence or Generator
        One independent key subset per sequence of the batch.

    Returns
    -------
    ApproxResult
        ``log_row_sums`` is the log of ``D~_ii = (n_k/s) sum_{j in S} exp(logit_ij)``.

    Notes
    -----
    Every key is kept with probability s/n_k, so ``(n_k/s) sum_{j in S} exp(logit_ij) [v_j, 1]``
    is unbiased for ``A [V, 1]``; the output is the ratio (consistent, slightly biased), and
    the weights cancel in it. Without replacement, ``s = n_k`` is exact.
    Cost O(n_q s (d + d_v)): ``n_q s`` kernel entries per sequence. Runs natively on the GPU for
    CuPy inputs (the key subsets are drawn on the host and copied over, B s indices).

    References
    ----------
    KDEformer (ICML 2023), baselines (docs/math.md §7.0).
    """
    Qb, Kb, Vb, lead, xp = prepare(Q, K, V, scale)
    B, n_q, d = Qb.shape
    n_k, dv = Kb.shape[1], Vb.shape[-1]
    s = check_int("n_samples", n_samples, minimum=1, maximum=n_k)
    gen = as_generator(rng)
    idx = np.argsort(gen.random((B, n_k)), axis=-1)[:, :s]  # a uniform s-subset per sequence
    idx_x = to_namespace(idx, xp)
    take = lambda X: xp.take_along_axis(X, idx_x[..., None], axis=-2)  # noqa: E731
    log_w = xp.full((B, s), math.log(n_k / s), dtype=Qb.dtype)
    # The softmax over the sampled keys; their common weight n_k/s cancels in it and enters log D~ only.
    log_d, out = lse_products_on(resolve_backend("auto", xp), Qb, take(Kb), log_w, take(Vb))
    cost = AttentionCost(
        batch=B, n_queries=n_q, n_keys=n_k, d=d, d_v=dv, samples=B * s, feature_dimension=s,
        stages=(StageCost("sampled", kernel_evaluations=B * n_q * s, flops=2 * B * n_q * s * (d + dv + 1)),),
    )
    return ApproxResult(output=out.reshape(lead + (n_q, dv)), log_row_sums=log_d.reshape(lead + (n_q,)), cost=cost)


@fill_doc(qkv_parameters=QKV_PARAMETERS, scale_parameter=SCALE_PARAMETER)
def hyperattention(Q, K, V, *, bucket_size, n_samples, n_hashes=7, scale=1.0, rng=None, backend="auto"):
    """HyperAttention-style attention: exact sorted-LSH diagonal blocks plus uniformly sampled keys.

    Parameters
    ----------
    {qkv_parameters}
    bucket_size : int in 1..n_k
        Block size b of the sorted angular-LSH blocks.
    n_samples : int >= 0
        Number m of uniformly sampled keys (i.i.d., weight n_k/m each). Budget F gives b = F/2,
        m = F: feature dimension b + m = 1.5 F, equal to KDEformer's.
    n_hashes : int in 1..30, default 7
    {scale_parameter}
    rng : None, int, SeedSequence or Generator
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    PracticalResult
        Same fields as KDEformer's (``output``, ``row_sums``, ``cost``, ...).

    Notes
    -----
    The two parts are combined without double counting: sampled keys that fall in the
    query's own block are masked out (those entries are already exact), so the sampled part
    estimates exactly the off-block residual, and both parts are merged under one per-query
    shift (the log-sum-exp merge of the public code). With the same LSH sort and blocks this
    is KDEformer's Algorithm 3 with ``sampling="uniform"``: comparing the two at equal (b, m)
    isolates the effect of the sampling distribution. Unlike the public HyperAttention code,
    short sequences (< 4096 tokens) are not switched to exact attention.

    References
    ----------
    Han, Jayaram, Karbasi, Mirrokni, Woodruff, Zandieh, "HyperAttention: long-context attention
    in near-linear time", ICLR 2024 (docs/math.md §7.0).
    """
    return kdeformer_practical(Q, K, V, bucket_size=bucket_size, n_samples=n_samples, n_hashes=n_hashes,
                               sampling="uniform", scale=scale, rng=rng, backend=backend)
