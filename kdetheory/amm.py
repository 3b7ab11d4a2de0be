"""Approximate matrix multiplication by importance sampling (KDEformer Lemma 3.1).

``X^T Y`` (X: n x q, Y: n x d) is estimated by ``X^T Pi^T Pi Y`` where Pi samples m rows
i.i.d. from a distribution p on [n] and rescales them: row r of Pi is
``e_{l_r}^T / sqrt(m p_{l_r})``, so ``E[Pi^T Pi] = I`` (docs/math.md §1). Pi is never formed:
a :class:`SamplingMatrix` holds the indices and the scales.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._array import namespace, to_namespace, to_numpy, wrap_public
from ._rng import as_generator
from ._validation import (
    check_int,
    check_matrix,
    check_open_unit,
    check_positive,
    check_same_rows,
    result_float_dtype,
)

__all__ = [
    "SamplingMatrix",
    "AMMResult",
    "sampling_probabilities",
    "lemma_constant",
    "amm",
    "required_samples",
]


def _check_sq_norms(name, a):
    a = check_matrix(name, a, ndim=1)
    if bool((a < 0).any()):
        raise ValueError(f"{name}: got negative entries (min {float(a.min()):.3g}); pass squared norms, which are >= 0.")
    return a


def sampling_probabilities(x_sq_norms, y_sq_norms=None, *, mix=0.5):
    """The sampling distribution of Lemma 3.1: ``p = mix * a/sum(a) + (1 - mix) * b/sum(b)``.

    Parameters
    ----------
    x_sq_norms : (n,) array
        Squared row norms ``a_i = ||x_i||^2`` of X (or estimates of them; KDEformer estimates
        the column norms of D^-1 A with a weighted exponential KDE).
    y_sq_norms : (n,) array, optional
        Squared row norms ``b_i = ||y_i||^2`` of Y. Omitted: sample by ``a`` alone.
    mix : float in [0, 1], default 0.5
        Weight of the X term. ``mix = 1/2`` gives ``p_i >= (1/2)(a_i/|a| + b_i/|b|)``, twice
        the ``1/4`` that the reconstructed Lemma 3.1 asks for, which leaves room for
        constant-factor errors in estimated norms.

    Returns
    -------
    (n,) array
        A probability vector (same array type as the input). A zero vector ``a`` (or ``b``)
        contributes the uniform distribution in its place.

    Notes
    -----
    Computed on the host: CuPy norms are copied to host memory (n numbers) and the result back.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Lemma 3.1 (reconstructed, docs/math.md §3).
    """
    a = _check_sq_norms("x_sq_norms", x_sq_norms)
    xp = namespace(a)
    if not (isinstance(mix, numbers.Real) and not isinstance(mix, bool) and 0.0 <= float(mix) <= 1.0):
        raise ValueError(f"mix: got {mix!r}; pass a number in [0, 1].")

    def share(v):
        return to_namespace(_shares(to_numpy(v)), xp).astype(v.dtype)

    if y_sq_norms is None:
        return share(a)
    b = _check_sq_norms("y_sq_norms", y_sq_norms)
    if b.shape != a.shape:
        raise ValueError(f"y_sq_norms: got shape {tuple(b.shape)} but x_sq_norms has {tuple(a.shape)}; pass one norm per row.")
    return mix * share(a) + (1.0 - mix) * share(to_namespace(b, xp))


def _shares(v):
    """``v / sum(v)``, or the uniform distribution when ``v`` is all zero (it then carries no information)."""
    total = float(v.sum())
    return v / total if total > 0 else np.full(v.shape, 1.0 / v.shape[0])


def lemma_constant(probabilities, x_sq_norms, y_sq_norms):
    """The largest ``c`` with ``p_i >= c * (a_i/|a| + b_i/|b|)`` for all i (Lemma 3.1 needs 1/4).

    Parameters
    ----------
    probabilities : (n,) array
    x_sq_norms, y_sq_norms : (n,) arrays
        Squared row norms of X and Y (an all-zero vector counts as uniform shares, as in
        :func:`sampling_probabilities`).

    Returns
    -------
    float
        ``min_i p_i / (a_i/|a| + b_i/|b|)``.
    """
    p = to_numpy(check_matrix("probabilities", probabilities, ndim=1))
    a = to_numpy(_check_sq_norms("x_sq_norms", x_sq_norms))
    b = to_numpy(_check_sq_norms("y_sq_norms", y_sq_norms))
    if not (p.shape == a.shape == b.shape):
        raise ValueError(f"probabilities: got shapes {p.shape}, {a.shape}, {b.shape}; pass three (n,) vectors.")
    share = _shares(a) + _shares(b)
    return float(np.min(p / share))


@dataclass(frozen=True)
class SamplingMatrix:
    """A row-sampling matrix Pi (m x n) stored as indices and scales, never densely.

    Attributes
    ----------
    indices : (m,) int64 array
        Sampled rows ``l_1..l_m`` (i.i.d., with replacement).
    probabilities : (n,) array
        The distribution p they were drawn from.
    n : int
        Number of rows of the matrices Pi multiplies.
    """

    indices: np.ndarray
    probabilities: np.ndarray
    n: int

    @classmethod
    def draw(cls, probabilities, n_samples, *, rng=None):
        """Draw ``n_samples`` i.i.d. indices from ``probabilities`` (host randomness).

        ``probabilities`` must be non-negative and sum to 1 up to the rounding of its own dtype
        (``sqrt(eps)`` relative, NumPy's rule for ``Generator.choice``: 3.5e-4 for float32,
        1.5e-8 for float64); it is renormalised to sum to 1 exactly (in float64) before use.
        """
        p = check_matrix("probabilities", probabilities, ndim=1)
        tol = math.sqrt(np.finfo(p.dtype).eps)
        p_host = to_numpy(p).astype(np.float64)
        total = float(p_host.sum())
        if bool((p_host < 0).any()) or not math.isclose(total, 1.0, rel_tol=tol):
            raise ValueError(
                f"probabilities: got entries summing to {total:.6g} (min {float(p_host.min()):.3g}); pass a "
                f"non-negative vector summing to 1 (to {tol:.1e} relative, the tolerance of {p.dtype})."
            )
        m = check_int("n_samples", n_samples, minimum=1)
        p_host = p_host / total
        idx = as_generator(rng).choice(p_host.shape[0], size=m, replace=True, p=p_host)
        return cls(indices=idx.astype(np.int64), probabilities=p_host, n=p_host.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.indices.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """``1 / (m p_l)`` per sample: the diagonal of ``Pi Pi^T`` restricted to the samples."""
        return 1.0 / (self.n_samples * self.probabilities[self.indices])

    @property
    def scales(self) -> np.ndarray:
        """``1 / sqrt(m p_l)`` per sample: the non-zero entries of Pi."""
        return np.sqrt(self.weights)

    def apply(self, Y):
        """``Pi @ Y`` for Y of shape (n, ...): the sampled, rescaled rows, shape (m, ...)."""
        xp = namespace(Y)
        if Y.shape[0] != self.n:
            raise ValueError(f"Y: got {Y.shape[0]} rows; this sampling matrix acts on {self.n} rows.")
        idx = to_namespace(self.indices, xp)
        scales = to_namespace(self.scales, xp).astype(Y.dtype)
        return Y[idx] * scales.reshape((-1,) + (1,) * (Y.ndim - 1))


@dataclass(frozen=True)
class AMMResult:
    """Result of :func:`amm`: the estimate of ``X^T Y`` and the sampling matrix used."""

    product: object
    sampling: SamplingMatrix


def amm(X, Y, *, n_samples, probabilities=None, rng=None):
    """Approximate ``X^T Y`` by ``(Pi X)^T (Pi Y)`` with Lemma 3.1's importance sampling.

    Parameters
    ----------
    X : (n, q) array
    Y : (n, d) array
    n_samples : int
        Number m of sampled rows (see :func:`required_samples`).
    probabilities : (n,) array, optional
        Sampling distribution; default ``sampling_probabilities(||x_i||^2, ||y_i||^2)``.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    AMMResult
        ``product`` of shape (q, d) (unbiased: ``E[product] = X^T Y``) and ``sampling``.

    Notes
    -----
    Lemma 3.1 (reconstructed): if ``p_i >= (1/4)(||x_i||^2/||X||_F^2 + ||y_i||^2/||Y||_F^2)``
    and ``m = Omega(eps^-2 log n (srank X + srank Y))`` then
    ``||X^T Pi^T Pi Y - X^T Y||_2 <= eps ||X||_2 ||Y||_2`` with probability ``1 - 1/poly(n)``.
    Cost O(m (q + d) + q d m). The product runs natively on the GPU for CuPy inputs; the
    distribution and the m indices are computed and drawn on the host (n + m numbers copied).
    The result dtype is NumPy's promotion of X and Y.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Lemma 3.1; Hsu (2014); Cohen, Nelson, Woodruff (2016).
    """
    X = check_matrix("X", X)
    Y = check_matrix("Y", Y)
    dtype = result_float_dtype(X, Y)
    X, Y = X.astype(dtype, copy=False), Y.astype(dtype, copy=False)
    check_same_rows("X", X, "Y", Y)
    namespace(X, Y)  # mixed NumPy / CuPy inputs raise here
    if probabilities is None:
        probabilities = sampling_probabilities((X * X).sum(axis=1), (Y * Y).sum(axis=1))
    else:
        probabilities = check_matrix("probabilities", probabilities, ndim=1)
        if probabilities.shape != (X.shape[0],):
            raise ValueError(f"probabilities: got shape {tuple(probabilities.shape)}; pass ({X.shape[0]},).")
    S = SamplingMatrix.draw(probabilities, n_samples, rng=rng)
    return AMMResult(product=S.apply(X).T @ S.apply(Y), sampling=S)


def required_samples(eps, delta, srank_x, srank_y, n, *, c=0.5):
    """A sufficient sample count for Lemma 3.1, with every constant explicit.

    ``m = ceil( 2 (sigma2 + L eps / 3) ln(n / delta) / eps^2 )`` with
    ``sigma2 = max(srank_x, srank_y) / c`` and ``L = sqrt(srank_x srank_y) / (2c) + 1``.

    Parameters
    ----------
    eps, delta : float in (0, 1)
        Target relative spectral error and failure probability.
    srank_x, srank_y : float >= 1
        Stable ranks of X and Y (for attention: srank(D^-1 A) and srank(V)).
    n : int
        The dimension term of the bound: the sum of the column counts of X and Y (for
        attention n_q + d_v); the paper writes ``log n``.
    c : float, default 0.5
        The constant of the sampling condition ``p_i >= c (a_i/|a| + b_i/|b|)``; 1/2 for
        :func:`sampling_probabilities` with exact norms, 1/4 in the lemma as reconstructed.

    Returns
    -------
    int

    Notes
    -----
    Derived here (not quoted from the paper, whose constants were not available): each
    sampled term ``Z = x_l y_l^T / p_l`` has ``||Z|| <= ||X||_F ||Y||_F / (2c)`` by AM-GM and
    ``||E[Z Z^T]|| <= ||Y||_F^2 ||X||_2^2 / c``; the rectangular matrix Bernstein inequality
    (Tropp 2015, Theorem 6.1.1) then gives failure probability at most ``delta``. It is a
    worst-case bound: measured errors are typically ``~ sqrt((srank_x + srank_y) / m)``
    (docs/math.md §3), far below it.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Lemma 3.1 and Theorem 3.4 (sample count).
    """
    eps = check_open_unit("eps", eps)
    delta = check_open_unit("delta", delta)
    for name, s in (("srank_x", srank_x), ("srank_y", srank_y)):
        if not (isinstance(s, numbers.Real) and not isinstance(s, bool) and float(s) >= 1.0 - 1e-9 and np.isfinite(s)):
            raise ValueError(f"{name}: got {s!r}; a stable rank is a finite number >= 1.")
    n = check_int("n", n, minimum=1)
    c = check_positive("c", c)
    sigma2 = max(srank_x, srank_y) / c
    lip = math.sqrt(srank_x * srank_y) / (2 * c) + 1.0
    return int(math.ceil(2.0 * (sigma2 + lip * eps / 3.0) * math.log(max(n, 2) / delta) / eps**2))


wrap_public(globals(), __all__)  # PyTorch / JAX arrays in, the caller's array type out (DLPack, no copy)
