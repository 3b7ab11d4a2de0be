"""KDEformer, the provable algorithm (Algorithm 1; Theorems 3.2 and 3.4).

Reconstructed (docs/math.md §4–§5): the published pseudocode was not available; this is a
derivation that meets the stated guarantee. The practical variant (Algorithm 3) lives in
``kdetheory.attention.practical``.

    1. D~ = WEXPKDE(X = K, Y = Q, v = 1, eps/3)                  (row sums, Def. 3.1)
    2. c_j ~ ||D~^-1 A e_j||^2 = WEXPKDE(X = sqrt2 Q, Y = sqrt2 K, v = D~^-2, eps_0)
    3. p_j = (c_j / sum c + ||v_j||^2 / ||V||_F^2) / 2             (Lemma 3.1)
    4. l_1..l_m ~ p i.i.d.;  output D~^-1 exp(Q K_l^T) diag(1/(m p_l)) V_l   in O(n m d).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._array import namespace, resolve_backend, to_namespace, to_numpy
from .._rng import as_generator
from .._stream import lse_products_on
from .._validation import check_int, check_matrix, check_open_unit, check_same_columns
from ..amm import SamplingMatrix, required_samples, sampling_probabilities
from ..kde.weighted_exp import WeightedExpKDE, resolve_estimator
from ..linalg import _gram_norm
from ._cost import AttentionCost, StageCost
from .exact import check_qkv

__all__ = ["kdeformer", "sampled_attention", "diameter_bound", "radius", "KDEformerResult", "column_norm_accuracy"]

#: Accuracy of the column-norm KDE: constant accuracy is all Lemma 3.1 needs (docs/math.md §4, Algorithm 1).
COLUMN_NORM_EPS = 0.2


def column_norm_accuracy(eps, eps0=COLUMN_NORM_EPS):
    """Band ratio B and Lemma 3.1 constant c = 1/(2B) achieved by estimated column norms.

    Parameters
    ----------
    eps : float in (0, 1)
        KDEformer's accuracy (the row sums are within 1 +- eps/3).
    eps0 : float in (0, 1), default 0.2
        Accuracy of the column-norm KDE.

    Returns
    -------
    (float, float)
        ``B = (1+eps0)/(1-eps0) * ((1+eps/3)/(1-eps/3))^2`` and ``c = 1/(2B)``: every estimate lies
        in ``[alpha t_j, B alpha t_j]`` for a common alpha, so the half-half mixture satisfies
        ``p_j >= c (a_j + b_j)`` in shares of the true norms (Lemma 3.1 asks for c >= 1/4).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Algorithm 1 step 2 and Lemma 3.1 (docs/math.md §4, reconstructed).
    """
    eps = check_open_unit("eps", eps)
    eps0 = check_open_unit("eps0", eps0)
    e = eps / 3
    band = (1 + eps0) / (1 - eps0) * ((1 + e) / (1 - e)) ** 2
    return band, 1.0 / (2.0 * band)


@dataclass(frozen=True)
class KDEformerResult:
    """Result of :func:`kdeformer`.

    Attributes
    ----------
    output : (n_q, d_v) array
        ``D~^-1 A Pi^T Pi V``.
    row_sums : (n_q,) array
        The diagonal of D~ (may overflow for huge logits: see ``log_row_sums``).
    log_row_sums : (n_q,) array
    indices : (m,) int64 array
        Sampled key indices ``l_1..l_m`` (with repetition).
    probabilities : (n_k,) array
        The sampling distribution p.
    n_samples : int
    column_norms : (n_k,) array
        Upper bounds on ``||D^-1 A e_j||^2`` (the estimates inflated by the KDE accuracies) that
        enter the srank bound; the sampling shares use the estimates themselves.
    srank_bound : float
        The upper bound on srank(D^-1 A) used for the theorem's sample count.
    lemma_constant : float
        c with ``p_j >= c (a_j + b_j)`` guaranteed by the KDE accuracies (Lemma 3.1 needs 1/4).
    cost : AttentionCost
        Stages ``row_sums_kde``, ``column_norm_kde`` (the KDEs' kernel and hash evaluations) and
        ``sampled_product`` (``n_q`` times the distinct sampled keys); ``cost.work_fraction`` is
        their kernel evaluations over the ``n_q n_k`` of exact attention (>= 1: the exact regime).
    """

    output: object
    row_sums: object
    log_row_sums: object
    indices: np.ndarray
    probabilities: np.ndarray
    n_samples: int
    column_norms: np.ndarray
    srank_bound: float
    lemma_constant: float
    cost: AttentionCost


def diameter_bound(Q, K):
    """An upper bound on the diameter ``gamma = max_{i,j} ||q_i - k_j||`` of Theorem 3.4 in O((n_q + n_k) d).

    Parameters
    ----------
    Q : (n_q, d) array
    K : (n_k, d) array

    Returns
    -------
    float
        ``min over c in {mean(Q), mean(K)} of max_i ||q_i - c|| + max_j ||k_j - c||`` (the triangle
        inequality makes each a valid bound). It is at most ``3 gamma`` and close to ``gamma`` when
        queries and keys fill the same ball; the density floor ``e^{-bound^2/2}/2`` derived from it
        is therefore valid but can be much smaller than Theorem 3.3's ``e^{-gamma^2/2}/2``.
        Computed in float64 in the namespace of the inputs (on the GPU for CuPy: only the
        scalar bound comes back).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Theorems 3.3-3.4 (the diameter in the runtime).
    """
    Q, K = check_matrix("Q", Q), check_matrix("K", K)
    check_same_columns("Q", Q, "K", K)
    namespace(Q, K)  # raises on mixed NumPy / CuPy
    Q64, K64 = Q.astype(np.float64), K.astype(np.float64)
    return min(radius(Q64, c) + radius(K64, c) for c in (Q64.mean(axis=0), K64.mean(axis=0)))


def radius(X, c):
    """``max_j ||x_j - c||`` as a float, for an (n, d) array ``X`` and a (d,) centre ``c`` of one namespace."""
    xp = namespace(X, c)
    return float(xp.sqrt(xp.max(xp.sum((X - c) ** 2, axis=1))))


def kdeformer(Q, K, V, *, eps, delta=0.1, n_samples=None, kde="hbe", scale=1.0, rng=None, backend="auto"):
    """Approximate softmax attention with KDEformer's spectral-norm guarantee (Algorithm 1).

    Parameters
    ----------
    Q : (n_q, d) array
    K : (n_k, d) array
    V : (n_k, d_v) array
        NumPy or CuPy (output of the same type); the dtype of every result is NumPy's promotion
        of the three (float32 only when all are float32).
    eps : float in (0, 1)
        Target relative spectral error of eq. (2).
    delta : float in (0, 1), default 0.1
        Failure probability (split in three: row sums, column norms, sampling).
    n_samples : int, optional
        Number m of sampled keys. ``None`` takes the sample count of Theorem 3.4 from
        :func:`kdetheory.amm.required_samples` at accuracy eps/3 (Theorem 3.2's split), with
        srank(D^-1 A) bounded from the column-norm estimates (never by forming D^-1 A).
    kde : {"hbe", "ckns", "sampling", "exact"} or callable, default "hbe"
        The Gaussian KDE inside the weighted exponential KDEs (Theorem 2.1's data structure), by
        name or as an estimator factory such as ``functools.partial(HashingBasedKDE,
        variance_constant=0.01)`` (see :func:`kdetheory.kde.weighted_exp.resolve_estimator`).
    scale : float, default 1.0
        Logit scale; inputs are pre-scaled by sqrt(scale) (the paper's convention, docs/math.md §1).
    rng : None, int, SeedSequence or Generator
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    KDEformerResult

    Notes
    -----
    Guarantee (Theorem 3.4, reconstructed): with ``m = O(eps^-2 log n (srank(D^-1 A) +
    srank(V)))``, ``||D~^-1 A Pi^T Pi V - D^-1 A V||_2 <= eps ||D^-1 A||_2 ||V||_2`` with
    probability ``>= 1 - delta``. Proof (Theorem 3.2): D~ within (1 +- eps/3) and AMM error
    eps/3 compose to ``(2 eps/3)/(1 - eps/3) <= eps``. The row-sum stage asks each query for
    failure probability ``delta / (3 n_q)``, so all rows hold at once with ``1 - delta/3``.
    The KDEs' density floor is ``e^{-G^2/2}/2`` with G >= gamma the bound of :func:`diameter_bound`
    (Theorem 3.3's floor when G = gamma, a smaller but still valid one otherwise), kept in the
    log domain: for logits in the hundreds or thousands no estimator is sub-linear and the
    weight classes are summed exactly (``cost.work_fraction`` then reaches 1 or more: the exact
    regime). Identical tokens (G = 0) are the easiest case. Runtime (Theorem 3.4): two weighted
    exponential KDEs, sub-quadratic only for bounded diameter ``max ||q_i - k_j||^2 = O(log n)``
    (Corollary 3.4), plus ``O(n_q m d)``.

    Backends: every stage runs in the namespace of the inputs. For CuPy inputs the diameter
    bound, the two weighted exponential KDEs (:class:`~kdetheory.kde.WeightedExpKDE`, whose
    Gaussian KDEs run where their own docstrings say; ``functools.partial(RandomSamplingKDE,
    sizing="adaptive")`` and ``"exact"`` stay on the GPU), the value norms and the sampled
    product run on the GPU; only per-query and per-key vectors (log row sums, column norms,
    sampling probabilities, sampled indices) and the ``d_v x d_v`` Gram matrix of ``V`` cross
    to the host.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Algorithm 1, Theorems 3.2 and 3.4, Corollary 3.4.
    """
    Q, K, V, xp, scale = check_qkv(Q, K, V, scale=scale)
    if Q.ndim != 2:
        raise ValueError(f"Q: got shape {tuple(Q.shape)}; kdeformer takes one (n_q, d) head at a time.")
    eps = check_open_unit("eps", eps)
    delta = check_open_unit("delta", delta)
    resolve_estimator("kde", kde)
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples, minimum=1)
    backend = resolve_backend(backend, xp)
    root = math.sqrt(scale)
    return _kdeformer(Q * root, K * root, V, eps, delta, n_samples, kde, as_generator(rng).spawn(3), xp, backend)


def _kdeformer(Qs, Ks, V, eps, delta, n_samples, kde, gens, xp, backend):
    """Algorithm 1 on validated, pre-scaled arrays (``gens``: row, column and sampling generators)."""
    rng_rows, rng_cols, rng_draw = gens
    n_q, n_k = Qs.shape[0], Ks.shape[0]

    # The diameter bound gamma >= max ||q_i - k_j|| fixes the KDEs' density floor (Theorem 3.4).
    gamma = diameter_bound(Qs, Ks)

    # Step 1: D~ within (1 +- eps/3) of D for every row, all at once w.p. 1 - delta/3.
    rows_kde = WeightedExpKDE(Ks, eps=eps / 3, delta=delta / (3 * n_q), estimator=kde, diameter=gamma,
                              rng=rng_rows, backend=backend)
    rows = rows_kde.query(Qs)
    log_d = to_numpy(rows.log_estimate).astype(np.float64)

    # Step 2: column norms ||D~^-1 A e_j||^2 = sum_i D~_ii^-2 e^{<sqrt2 q_i, sqrt2 k_j>}, constant accuracy.
    cols_kde = WeightedExpKDE(math.sqrt(2) * Qs, log_weights=to_namespace(-2.0 * log_d, xp), eps=COLUMN_NORM_EPS,
                              delta=delta / (3 * n_k), estimator=kde, diameter=math.sqrt(2) * gamma,
                              rng=rng_cols, backend=backend)
    cols = cols_kde.query(math.sqrt(2) * Ks)
    log_c = to_numpy(cols.log_estimate).astype(np.float64)

    # Step 3: Lemma 3.1 distribution, mixed half-half with the value norms.
    c = np.exp(log_c - log_c.max())  # shares only: the common factor cancels
    v_sq = to_numpy((V * V).sum(axis=1)).astype(np.float64)
    p = to_numpy(sampling_probabilities(c, v_sq))
    band, lemma_c = column_norm_accuracy(eps)

    # srank(D^-1 A) <= ||D^-1 A||_F^2 / max(n_q/n_k, max_j t_j): both from the estimates
    # (inflated by the band, so the bound holds whenever the KDEs do).
    t = np.exp(log_c + 2 * np.log1p(eps / 3) - np.log1p(-COLUMN_NORM_EPS))
    srank_bound = float(min(n_k, n_q, max(1.0, t.sum() / max(n_q / n_k, t.max() / band))))
    v_op = _spectral_norm(V)
    srank_v = float(v_sq.sum() / v_op**2) if v_op > 0 else 1.0
    if n_samples is None:
        n_samples = required_samples(eps / 3, delta / 3, srank_bound, max(1.0, srank_v), n_q + V.shape[1], c=lemma_c)

    # Step 4: sample and multiply in O(n_q m d).
    S = SamplingMatrix.draw(p, n_samples, rng=rng_draw)
    output, n_unique = _sampled_product(Qs, Ks, V, S, log_d, xp, backend)

    d, d_v = Qs.shape[1], V.shape[1]
    # A kernel evaluation of the (d+1)-dimensional Gaussian KDEs is one inner product: 2 (d + 1) FLOPs.
    kde_stages = [StageCost(name, kernel_evaluations=int(r.kernel_evaluations.sum()),
                            hash_evaluations=int(r.hash_evaluations.sum()),
                            flops=2 * (d + 1) * int(r.kernel_evaluations.sum()))
                  for name, r in (("row_sums_kde", rows), ("column_norm_kde", cols))]
    cost = AttentionCost(
        batch=1, n_queries=n_q, n_keys=n_k, d=d, d_v=d_v, samples=int(n_samples),
        stages=(*kde_stages, StageCost("sampled_product", kernel_evaluations=n_q * n_unique,
                                       flops=2 * n_q * n_unique * (d + d_v))),
        details={"distinct_samples": n_unique, "weight_classes": (rows_kde.n_classes, cols_kde.n_classes),
                 "exact_class_sums": (int(rows.exact_classes.sum()), int(cols.exact_classes.sum())),
                 "exact_fallbacks": (int(rows.exact_fallbacks.sum()), int(cols.exact_fallbacks.sum()))},
    )
    with np.errstate(over="ignore"):
        row_sums = np.exp(log_d).astype(Qs.dtype)
    return KDEformerResult(
        output=output, row_sums=to_namespace(row_sums, xp), log_row_sums=to_namespace(log_d.astype(Qs.dtype), xp),
        indices=S.indices, probabilities=p, n_samples=int(n_samples), column_norms=t,
        srank_bound=srank_bound, lemma_constant=lemma_c, cost=cost,
    )


def _spectral_norm(V):
    """``||V||_2`` in float64. NumPy: LAPACK's SVD, as always. CuPy: ``kdetheory.linalg._gram_norm``, the top
    eigenvalue of the ``d_v x d_v`` Gram matrix formed on the device (the only thing copied), instead of a host
    copy of V."""
    if namespace(V) is np:
        return float(np.linalg.norm(V.astype(np.float64), 2))
    return _gram_norm(V)


def _sampled_product(Qs, Ks, V, S, log_d, xp, backend):
    """``D~^-1 exp(Qs Ks_l^T) diag(1/(m p_l)) V_l`` with repeated samples merged; also the number of distinct keys."""
    uniq, counts = np.unique(S.indices, return_counts=True)
    log_weight = np.log(counts) - np.log(S.n_samples * S.probabilities[uniq])
    idx = to_namespace(uniq, xp)
    lse, out = lse_products_on(backend, Qs, Ks[idx], to_namespace(log_weight.astype(Qs.dtype), xp), V[idx])
    # sum_l w_l e^{<q_i,k_l>} v_l = e^{lse_i} out_i; divide by D~_ii in the log domain.
    factor = to_namespace(np.exp(to_numpy(lse) - log_d).astype(Qs.dtype), xp)
    return out * factor[:, None], len(uniq)


def sampled_attention(Q, K, V, sampling, *, log_row_sums=None, scale=1.0, backend="auto"):
    """``D~^-1 A Pi^T Pi V`` for a given sampling matrix Pi and normaliser D~ (Theorem 3.2's object).

    Parameters
    ----------
    Q : (n_q, d) array
    K : (n_k, d) array
    V : (n_k, d_v) array
    sampling : kdetheory.amm.SamplingMatrix
        Pi, acting on the n_k keys.
    log_row_sums : (n_q,) array, optional
        ``log D~_ii``; the exact ``log D_ii`` when omitted.
    scale : float, default 1.0
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    (n_q, d_v) array

    Notes
    -----
    Cost O(n_q m (d + d_v)) with m the number of distinct sampled keys; never forms A. Runs
    natively on the GPU for CuPy inputs (the m sampled indices are copied from the host).
    Theorem 3.2: if D~ is within (1 +- e1) of D and ``||D^-1 A Pi^T Pi V - D^-1 A V|| <= e2
    ||D^-1 A|| ||V||``, the error of this product is at most ``(e1 + e2)/(1 - e1)`` in the same
    units.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Algorithm 1 (output step) and Theorem 3.2.
    """
    from .exact import row_sums

    Q, K, V, xp, scale = check_qkv(Q, K, V, scale=scale)
    if Q.ndim != 2:
        raise ValueError(f"Q: got shape {tuple(Q.shape)}; sampled_attention takes one (n_q, d) head at a time "
                         "(loop over the leading batch/head axes).")
    if not isinstance(sampling, SamplingMatrix):
        raise TypeError(f"sampling: got {type(sampling).__name__}; pass a kdetheory.amm.SamplingMatrix over the "
                        f"{K.shape[0]} keys.")
    if sampling.n != K.shape[0]:
        raise ValueError(f"sampling: got a SamplingMatrix over {sampling.n} rows but K has {K.shape[0]} keys; "
                         f"draw it from a probability vector of length {K.shape[0]}.")
    backend = resolve_backend(backend, xp)
    if log_row_sums is None:
        log_d = to_numpy(row_sums(Q, K, scale=scale, log=True, backend=backend))
    else:
        log_d = to_numpy(log_row_sums).astype(np.float64)
        if log_d.shape != (Q.shape[0],) or not np.isfinite(log_d).all():
            raise ValueError(f"log_row_sums: got shape {log_d.shape} or non-finite entries; pass ({Q.shape[0]},) finite logs.")
    root = math.sqrt(scale)
    return _sampled_product(Q * root, K * root, V, sampling, log_d, xp, backend)[0]
