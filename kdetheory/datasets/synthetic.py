"""Synthetic instances for the KDEformer claims: each generator is deterministic given ``rng``.

Every generator returns float64 NumPy arrays. Attention instances are *pre-scaled*: the
attention target is ``A = exp(Q K^T)`` with no further ``1/sqrt(d)`` (docs/math.md §1), so the norms
chosen here are the norms that enter the exponential.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.optimize import brentq

from .. import _config
from .._rng import as_generator
from .._validation import check_choice, check_int, check_positive, check_weights

__all__ = [
    "gaussian_mixture",
    "attention_instance",
    "bounded_diameter_instance",
    "heavy_tailed_values",
    "matrix_with_stable_rank",
    "ATTENTION_KINDS",
    "CENTRE_LAYOUTS",
]

#: The regimes :func:`attention_instance` can produce.
ATTENTION_KINDS = ("clustered", "peaky", "flat", "glove_like", "far_queries")

#: Where :func:`gaussian_mixture` puts its centres.
CENTRE_LAYOUTS = ("sphere", "gaussian")

# GloVe 6B-50d, first 8192 words: median row norm 4.99, std of log-norm 0.126, and the
# norm of the mean vector is about half the median norm (a shared "frequency" direction).
_GLOVE_MEDIAN_NORM = 5.0
_GLOVE_LOG_NORM_STD = 0.13
_GLOVE_MEAN_COSINE = 0.5
# The authors' GloVe demo divides Q (= K) by 10**0.25 (docs/math.md §7.1).
_GLOVE_DEMO_DIVISOR = 10.0 ** 0.25
# |<q, k>| <= _FLAT_LOGIT_BOUND in the "flat" regime.
_FLAT_LOGIT_BOUND = 0.1


def _is_finite_real(x):
    """A real number (not a bool, not a string) that is finite."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _unit_rows(x):
    """Rows of ``x`` scaled to unit Euclidean norm (rows are Gaussian, so never zero a.s.)."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_directions(rng, k, d):
    """``k`` independent uniform directions on the unit sphere of R^d, shape (k, d)."""
    return _unit_rows(rng.standard_normal((k, d)))


def _clustered_directions(rng, centres, n, spread):
    """Unit vectors near randomly chosen ``centres``: centre plus Gaussian noise of norm ~spread.

    The noise is scaled by 1/sqrt(d) so its norm is about ``spread`` in every dimension,
    which keeps the cosine between two members of one cluster near 1/(1 + spread^2)
    independently of d.
    """
    d = centres.shape[1]
    labels = rng.integers(centres.shape[0], size=n)
    noise = rng.standard_normal((n, d)) * (spread / math.sqrt(d))
    return _unit_rows(centres[labels] + noise)


def gaussian_mixture(n, d, *, n_clusters=8, cluster_std=0.1, radius=1.0, centres="sphere", weights=None,
                     rng=None):
    """Points drawn from a mixture of isotropic Gaussians (planted clusters).

    Each point picks a cluster ``z_i`` (uniformly, or with the given ``weights``) and adds
    isotropic Gaussian noise to its centre, so densities are high near the centres and low in
    between. This is the one Gaussian-mixture generator of the package:
    :func:`kdetheory.datasets.kde_instances.clustered_points` is this function with Gaussian
    centres and geometric weights.

    Parameters
    ----------
    n : int
        Number of points, ``n >= 1``.
    d : int
        Dimension, ``d >= 1``.
    n_clusters : int, default 8
        Number of centres, ``>= 1``.
    cluster_std : float, default 0.1
        Standard deviation of each coordinate of the noise, ``>= 0``.
    radius : float, default 1.0
        Scale of the centres, ``> 0``: their norm for ``centres="sphere"``, the standard
        deviation of each of their coordinates for ``centres="gaussian"``.
    centres : {"sphere", "gaussian"}, default "sphere"
        ``"sphere"``: centres uniform on the sphere of norm ``radius``. ``"gaussian"``:
        centres ``radius * g_k`` with ``g_k ~ N(0, I_d)`` (about ``radius * sqrt(2 d)`` apart).
    weights : (n_clusters,) array_like of float >= 0, optional
        Mixture weights (normalised to sum 1; at least one positive). None: uniform.
    rng : None, int, SeedSequence or Generator
        Source of randomness; the same seed gives the same points.

    Returns
    -------
    X : ndarray of shape (n, d), float64
        ``X[i] = c_{z_i} + cluster_std * g_i`` with ``g_i ~ N(0, I_d)``.

    Notes
    -----
    The draws, in this order: one ``(n_clusters, d)`` standard normal matrix (the centres,
    rows normalised to ``radius`` for ``"sphere"``), the labels (``Generator.integers`` without
    weights, ``Generator.choice`` with them), one ``(n, d)`` standard normal matrix (the noise).
    The order is part of the contract: the claims and tests that fix a seed rely on it.

    Examples
    --------
    >>> X = gaussian_mixture(100, 5, rng=0)
    >>> X.shape
    (100, 5)
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    n_clusters = check_int("n_clusters", n_clusters, minimum=1)
    if not _is_finite_real(cluster_std) or cluster_std < 0:
        raise ValueError(f"cluster_std: got {cluster_std!r}; pass a finite number >= 0.")
    radius = check_positive("radius", radius)
    centres = check_choice("centres", centres, CENTRE_LAYOUTS)
    if weights is not None:
        weights = check_weights("weights", weights, n_clusters)
        if not float(weights.sum()) > 0:
            raise ValueError("weights: got all zeros; pass at least one positive weight (None for uniform).")
    gen = as_generator(rng)
    raw = gen.standard_normal((n_clusters, d))
    centre_points = radius * (_unit_rows(raw) if centres == "sphere" else raw)
    if weights is None:
        labels = gen.integers(n_clusters, size=n)
    else:
        labels = gen.choice(n_clusters, size=n, p=weights / weights.sum())
    return centre_points[labels] + float(cluster_std) * gen.standard_normal((n, d))


def attention_instance(n, d, *, kind="clustered", d_v=None, n_keys=None, rng=None):
    """Queries, keys and values in one of five attention regimes (pre-scaled).

    The attention matrix of the instance is ``A = exp(Q K^T)`` (no extra ``1/sqrt(d)``):
    the regimes are set by the norms chosen below. Values are i.i.d. standard normal.

    Parameters
    ----------
    n : int
        Number of queries, ``>= 1``.
    d : int
        Dimension of queries and keys, ``>= 1``.
    kind : {"clustered", "peaky", "flat", "glove_like", "far_queries"}
        The regime (see Notes).
    d_v : int, optional
        Dimension of the values; defaults to ``d``.
    n_keys : int, optional
        Number of keys and values; defaults to ``n``. ``"glove_like"`` has ``K = Q`` and
        therefore requires ``n_keys == n`` (or None).
    rng : None, int, SeedSequence or Generator
        Source of randomness; the same seed gives the same instance.

    Returns
    -------
    Q : ndarray of shape (n, d), float64
    K : ndarray of shape (n_keys, d), float64
    V : ndarray of shape (n_keys, d_v), float64

    Notes
    -----
    Below ``N = n_keys`` and "max row entry" is ``max_j (D^{-1} A)_{ij}`` of the softmax
    matrix, measured on seeds 0-1 for (n, d) in {(1024, 16), (2048, 64), (8192, 50..100)}.

    * ``"clustered"``: 8 shared cluster directions; ``||q_i||^2 = ||k_j||^2 = ln N``, so a
      query's logit with its own cluster is about ``ln(N)/2`` and about 0 with the others.
      About 85-90% of each row's mass lies on the query's own cluster (``N/8`` keys); the
      max row entry is small, typically 20-45 / N.
    * ``"peaky"``: keys as in "clustered" but with ``||k_j||^2 = 2 ln N``; each query is a
      slightly perturbed copy (noise norm 0.1) of a random key, so its logit with that key
      beats the rest of its cluster by about ``ln N``. Max row entry typically 0.55-0.82.
    * ``"flat"``: clustered directions with ``||q_i|| = ||k_j|| = sqrt(0.1)``, hence
      ``|<q_i, k_j>| <= 0.1`` and every softmax entry lies in ``[e^{-0.2}/N, e^{0.2}/N]``:
      rows are nearly uniform (max row entry at most ``1.23 / N``, guaranteed).
    * ``"glove_like"``: ``K = Q``; rows have a shared mean direction (cosine 0.5 with it, as
      for word vectors), an anisotropic remainder (spectrum ``~ 1/sqrt(i)``) and log-normal
      norms (median 5, log-sd 0.13, matching GloVe 6B-50d's first 8192 words), then
      ``Q <- Q / 10**0.25`` exactly as the authors' GloVe demo (docs/math.md §7.1). At n = 8192 the
      median max row entry is about 0.017 and the mean about 0.06 (real GloVe 6B-50d under
      the same protocol: 0.020 and 0.060); at n = 1024-2048 the median is 0.06-0.08.
    * ``"far_queries"``: keys on 8 clusters with unit norm; queries from the same clusters
      shifted by one vector ``u`` with ``||u||^2 = 2 ln N``. The Gaussian-kernel density
      ``mu_i = (1/N) sum_j exp(-||q_i - k_j||^2 / 2)`` has median 0.4-0.6 / N (versus
      ``400-3000 / N`` without the shift): the small-density regime of the KDE bounds.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    kind = check_choice("kind", kind, ATTENTION_KINDS)
    d_v = d if d_v is None else check_int("d_v", d_v, minimum=1)
    if kind == "glove_like":
        if n_keys is not None and n_keys != n:
            raise ValueError(
                f"n_keys: got {n_keys!r} with kind='glove_like', whose keys equal its queries; "
                f"pass n_keys=None or n_keys={n}."
            )
        n_keys = n
    n_keys = n if n_keys is None else check_int("n_keys", n_keys, minimum=1)
    gen = as_generator(rng)
    Q, K = _QK_BUILDERS[kind](gen, n, n_keys, d)
    V = gen.standard_normal((n_keys, d_v))
    return Q, K, V


def _clustered_qk(gen, n, n_keys, d):
    centres = _random_directions(gen, 8, d)
    norm = math.sqrt(max(math.log(n_keys), 1.0))  # ln N < 1 for tiny N: keep logits O(1)
    K = norm * _clustered_directions(gen, centres, n_keys, 1.0)
    Q = norm * _clustered_directions(gen, centres, n, 1.0)
    return Q, K


def _peaky_qk(gen, n, n_keys, d):
    centres = _random_directions(gen, 8, d)
    norm = math.sqrt(max(2.0 * math.log(n_keys), 2.0))
    K = norm * _clustered_directions(gen, centres, n_keys, 1.0)
    # Each query copies one key: its self-logit ||k||^2 = 2 ln N exceeds the logits with
    # other keys of the cluster (cosine ~1/2) by ~ln N, which concentrates the row.
    picked = gen.integers(n_keys, size=n)
    Q = K[picked] + gen.standard_normal((n, d)) * (0.1 / math.sqrt(d))
    return Q, K


def _flat_qk(gen, n, n_keys, d):
    centres = _random_directions(gen, 8, d)
    norm = math.sqrt(_FLAT_LOGIT_BOUND)  # Cauchy-Schwarz: |<q, k>| <= 0.1 exactly
    K = norm * _clustered_directions(gen, centres, n_keys, 1.0)
    Q = norm * _clustered_directions(gen, centres, n, 1.0)
    return Q, K


def _glove_like_qk(gen, n, n_keys, d):
    mean_direction = _random_directions(gen, 1, d)[0]
    # Anisotropic remainder: coordinate i has scale 1/sqrt(i), like the slowly decaying
    # singular values of word-vector matrices.
    spectrum = 1.0 / np.sqrt(np.arange(1, d + 1))
    remainder = _unit_rows(gen.standard_normal((n, d)) * spectrum)
    a = _GLOVE_MEAN_COSINE
    directions = _unit_rows(a * mean_direction + math.sqrt(1.0 - a * a) * remainder)
    norms = _GLOVE_MEDIAN_NORM * np.exp(_GLOVE_LOG_NORM_STD * gen.standard_normal(n))
    Q = directions * (norms / _GLOVE_DEMO_DIVISOR)[:, None]
    return Q, Q.copy()


def _far_queries_qk(gen, n, n_keys, d):
    centres = _random_directions(gen, 8, d)
    K = _clustered_directions(gen, centres, n_keys, 1.0)
    shift = math.sqrt(max(2.0 * math.log(n_keys), 2.0)) * _random_directions(gen, 1, d)[0]
    Q = _clustered_directions(gen, centres, n, 1.0) + shift
    return Q, K


_QK_BUILDERS = {
    "clustered": _clustered_qk,
    "peaky": _peaky_qk,
    "flat": _flat_qk,
    "glove_like": _glove_like_qk,
    "far_queries": _far_queries_qk,
}


def _max_squared_distance(Q, K):
    """max_{i,j} ||q_i - k_j||^2, computed exactly in row blocks of bounded memory."""
    k_sq = np.einsum("ij,ij->i", K, K)
    rows = _config.block_shape(Q.shape[0], K.shape[0], 8, temporaries=1)[0]
    best = 0.0
    for start in range(0, Q.shape[0], rows):
        q = Q[start:start + rows]
        sq = np.einsum("ij,ij->i", q, q)[:, None] + k_sq[None, :] - 2.0 * (q @ K.T)
        best = max(best, float(sq.max()))
    return best


def bounded_diameter_instance(n, d, *, c=1.0, d_v=None, rng=None):
    """Queries and keys whose squared diameter is at most ``c ln n`` (Corollary 3.4).

    Parameters
    ----------
    n : int
        Number of queries and of keys, ``n >= 2`` (so that ``ln n > 0``).
    d : int
        Dimension, ``>= 1``.
    c : float, default 1.0
        Diameter constant, ``> 0``.
    d_v : int, optional
        Dimension of the values; defaults to ``d``.
    rng : None, int, SeedSequence or Generator
        Source of randomness.

    Returns
    -------
    Q : ndarray of shape (n, d), float64
    K : ndarray of shape (n, d), float64
    V : ndarray of shape (n, d_v), float64
        Standard normal values.

    Notes
    -----
    Q and K are drawn from one Gaussian mixture (8 clusters) and then multiplied by a common
    factor so that ``max_{i,j} ||q_i - k_j||^2 = (1 - 1e-9) c ln n``: the bound of
    Corollary 3.4 holds, and is nearly tight, so runtime checks see the full diameter
    ``gamma^2 = c ln n``. The margin 1e-9 absorbs rounding. The maximum is computed exactly
    in O(n^2 d) time (blocks of ``_config.CHUNK_BYTES``), the same cost as exact attention,
    and the bound is re-checked on the returned arrays.

    References
    ----------
    Zandieh et al., KDEformer, ICML 2023, Corollary 3.4 (reconstructed statement, docs/math.md §5).
    """
    n = check_int("n", n, minimum=2)
    d = check_int("d", d, minimum=1)
    c = check_positive("c", c)
    d_v = d if d_v is None else check_int("d_v", d_v, minimum=1)
    gen = as_generator(rng)
    centres = _random_directions(gen, 8, d)
    Q = _clustered_directions(gen, centres, n, 1.0)
    K = _clustered_directions(gen, centres, n, 1.0)
    target = (1.0 - 1e-9) * c * math.log(n)
    # Distances scale linearly with a common factor, so one rescale meets the target.
    scale = math.sqrt(target / _max_squared_distance(Q, K))
    Q *= scale
    K *= scale
    diameter_sq = _max_squared_distance(Q, K)
    if not diameter_sq <= c * math.log(n):
        raise AssertionError(  # pragma: no cover - a violated guarantee is a bug here
            f"bounded_diameter_instance: max ||q - k||^2 = {diameter_sq!r} exceeds c ln n = {c * math.log(n)!r}"
        )
    V = gen.standard_normal((n, d_v))
    return Q, K, V


def heavy_tailed_values(n, d_v, *, tail=2.0, rng=None):
    """Value rows with Pareto-distributed norms (a few rows dominate ``||V||_F``).

    Parameters
    ----------
    n : int
        Number of rows, ``>= 1``.
    d_v : int
        Number of columns, ``>= 1``.
    tail : float, default 2.0
        Pareto tail index alpha > 0: ``P(s_i > t) = t^{-alpha}`` for ``t >= 1``. Smaller is
        heavier; for ``alpha <= 2`` the squared row norms have infinite mean.
    rng : None, int, SeedSequence or Generator
        Source of randomness.

    Returns
    -------
    V : ndarray of shape (n, d_v), float64
        ``V[i] = s_i * g_i / sqrt(d_v)`` with ``g_i ~ N(0, I)`` and ``s_i ~ Pareto(alpha)``
        (minimum 1), so ``||V[i]|| ~ s_i`` and the row norms have tail index ``alpha``.
        Useful for importance sampling by row norms (Lemma 3.1): uniform sampling fails
        on such values.
    """
    n = check_int("n", n, minimum=1)
    d_v = check_int("d_v", d_v, minimum=1)
    tail = check_positive("tail", tail)
    gen = as_generator(rng)
    row_scale = 1.0 + gen.pareto(tail, size=n)  # numpy's pareto is Lomax: shift to min 1
    return gen.standard_normal((n, d_v)) * (row_scale / math.sqrt(d_v))[:, None]


def _singular_values_with_stable_rank(k, srank):
    """k non-increasing singular values, the first equal to 1, with sum(s^2) = srank.

    A power law s_i = i^{-p} (smooth decay, like attention spectra) with p >= 0 chosen by
    root finding; s_1 is then re-solved in closed form, s_1^2 = S / (srank - 1) with S the
    tail's squared sum, so that the stable rank is met to rounding. Finally all values are
    divided by s_1 to make the spectral norm exactly 1.
    """
    if k == 1 or srank == 1.0:
        s = np.zeros(k)
        s[0] = 1.0
        return s
    i = np.arange(1, k + 1, dtype=float)
    if srank >= k:
        return np.ones(k)

    def excess(p):
        return float(np.sum(i ** (-2.0 * p))) - srank

    hi = 1.0
    while excess(hi) > 0:  # sum i^{-2p} decreases from k (p = 0) to 1 (p -> inf)
        hi *= 2.0
    p = brentq(excess, 0.0, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    tail_sq = float(np.sum(i[1:] ** (-2.0 * p)))
    s = i ** (-p)
    s[0] = math.sqrt(tail_sq / (srank - 1.0))
    return s / s[0]


def _haar_orthonormal_columns(gen, rows, k):
    """A (rows, k) matrix with orthonormal columns, Haar distributed (QR with sign fix)."""
    q, r = np.linalg.qr(gen.standard_normal((rows, k)))
    return q * np.sign(np.diag(r))


def matrix_with_stable_rank(n, m, srank, *, rng=None):
    """A matrix with prescribed stable rank ``||M||_F^2 / ||M||_op^2 = srank``.

    Parameters
    ----------
    n, m : int
        Shape of the matrix, both ``>= 1``.
    srank : float
        Target stable rank, ``1 <= srank <= min(n, m)``.
    rng : None, int, SeedSequence or Generator
        Source of randomness (the singular vectors).

    Returns
    -------
    M : ndarray of shape (n, m), float64
        ``M = U diag(s) W^T`` with Haar-random orthonormal ``U`` (n x k), ``W`` (m x k),
        ``k = min(n, m)``, spectral norm ``s_1 = 1`` and power-law decaying ``s_2..s_k``.
        The stable rank equals ``srank`` up to rounding (relative error ~1e-14; 1e-10 is
        the tested tolerance). Used for the AMM bounds of Lemma 3.1 and Theorem 3.2, whose
        sample counts scale with stable rank.
    """
    n = check_int("n", n, minimum=1)
    m = check_int("m", m, minimum=1)
    k = min(n, m)
    if not _is_finite_real(srank) or not 1.0 <= float(srank) <= k:
        raise ValueError(
            f"srank: got {srank!r}; pass a number between 1 and min(n, m) = {k} "
            "(stable rank is at least 1 and at most the rank)."
        )
    gen = as_generator(rng)
    s = _singular_values_with_stable_rank(k, float(srank))
    U = _haar_orthonormal_columns(gen, n, k)
    W = _haar_orthonormal_columns(gen, m, k)
    return (U * s) @ W.T
