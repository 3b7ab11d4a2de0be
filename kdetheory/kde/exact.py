"""Exact kernel sums: the Gaussian KDE and the weighted exponential KDE (Definition 3.1).

Both are thin wrappers over the streaming log-sum-exp routine (``kdetheory._stream``):
chunked to ``_config.CHUNK_BYTES``, max-shifted, NumPy / numba / CuPy.
"""
from __future__ import annotations

import numpy as np

from .._array import namespace, resolve_backend
from .._stream import lse_products_on
from .._validation import check_matrix, check_positive, check_same_columns, check_weights

__all__ = ["gaussian_kde", "exp_kde", "log_weights"]


def log_weights(weights, xp):
    """log of non-negative weights, with log 0 = -inf (a point that contributes nothing)."""
    with np.errstate(divide="ignore"):
        return xp.log(weights)


def _prepare(X, Y, weights):
    X = check_matrix("X", X)
    Y = check_matrix("Y", Y, dtype=X.dtype)
    check_same_columns("X", X, "Y", Y)
    xp = namespace(X, Y, weights)
    w = check_weights("weights", weights, X.shape[0], xp=xp, dtype=X.dtype)
    return X, Y, w, xp


def gaussian_kde(X, Y, *, bandwidth=1.0, weights=None, log=False, backend="auto"):
    """Exact Gaussian kernel density of the rows of ``X`` at the rows of ``Y``.

    ``mu_i = (1/n) * sum_j w_j * exp(-||x_j - y_i||^2 / (2 * bandwidth^2))``

    Parameters
    ----------
    X : (n, d) array
        Data points (NumPy or CuPy; float64 by default, float32 kept).
    Y : (m, d) array
        Query points, same namespace as ``X``.
    bandwidth : float, default 1.0
        Kernel bandwidth ``h > 0``. ``h = 1`` is the normalisation of Theorem 2.1
        (``exp(-||x - y||^2 / 2)``).
    weights : (n,) array, optional
        Non-negative weights ``w_j`` (ones by default). The sum is divided by ``n``, not by
        ``sum(w)``.
    log : bool, default False
        Return ``log(mu)`` (``-inf`` where every weight is zero).
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute path; "auto" is BLAS (numpy) on the host and CuPy for CuPy inputs.

    Returns
    -------
    (m,) array
        The densities (or their logarithms), same array type as the inputs.

    Notes
    -----
    Exact to floating-point rounding: the squared distance is expanded as
    ``||x||^2 + ||y||^2 - 2<x, y>`` after both sets are translated by the mean of ``X`` (the
    kernel is translation invariant), which keeps the cancellation error of order
    ``eps_machine * spread(X, Y)^2 / h^2``. Memory: ``O(CHUNK_BYTES)`` beyond the inputs.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Theorem 2.1 (the density it approximates).
    """
    bandwidth = check_positive("bandwidth", bandwidth)
    X, Y, w, xp = _prepare(X, Y, weights)
    backend = resolve_backend(backend, xp)
    centre = X.mean(axis=0)
    Xc, Yc = X - centre, Y - centre
    inv_h2 = 1.0 / bandwidth**2
    # -||x - y||^2 / 2h^2 = <y, x>/h^2 - ||x||^2/2h^2 - ||y||^2/2h^2
    log_w = log_weights(w, xp) - 0.5 * inv_h2 * (Xc * Xc).sum(axis=1)
    lse, _ = lse_products_on(backend, Yc, Xc, log_w, scale=inv_h2)
    # Python floats keep float32 inputs float32 (a NumPy float64 scalar would promote them).
    lse = xp.asarray(lse) - 0.5 * inv_h2 * (Yc * Yc).sum(axis=1) - float(np.log(X.shape[0]))
    return lse if log else xp.exp(lse)


def exp_kde(X, Y, *, weights=None, log=False, backend="auto"):
    """Exact weighted exponential kernel sum ``S_i = sum_j w_j * exp(<x_j, y_i>)``.

    This is the quantity that Definition 3.1 (Weighted Exponential KDE) approximates; the
    normaliser D of attention is ``exp_kde(K, Q)`` and the squared column norms of the
    softmax matrix are ``exp_kde(sqrt(2) Q, sqrt(2) K, weights=D**-2)`` (SPEC section 1).

    Parameters
    ----------
    X : (n, d) array
        Data points ``x_j``.
    Y : (m, d) array
        Queries ``y_i``.
    weights : (n,) array, optional
        Non-negative weights (ones by default).
    log : bool, default False
        Return ``log S`` instead of ``S``. Use it when inner products are large: ``log S`` is
        accurate for inner products in the thousands while ``S`` would overflow.
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    (m,) array
        ``S`` (or ``log S``; ``-inf`` where every weight is zero).

    Raises
    ------
    OverflowError
        With ``log=False`` when some ``S_i`` exceeds the largest float of the dtype: pass
        ``log=True`` (never a silent ``inf``).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Definition 3.1.
    """
    X, Y, w, xp = _prepare(X, Y, weights)
    backend = resolve_backend(backend, xp)
    lse, _ = lse_products_on(backend, Y, X, log_weights(w, xp))
    lse = xp.asarray(lse)
    if log:
        return lse
    limit = np.log(np.finfo(lse.dtype).max)
    if bool((lse > limit).any()):
        raise OverflowError(
            f"exp_kde: the largest sum is exp({float(lse.max()):.4g}), beyond the {lse.dtype} "
            "range; call exp_kde(..., log=True) for the logarithm."
        )
    return xp.exp(lse)


from ._base import KDEEstimator  # noqa: E402  (appended estimator class; avoids a circular import)


class ExactKDE(KDEEstimator):
    """Exact Gaussian KDE behind the estimator interface (the reference every estimator is timed against).

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`; ``eps`` and ``delta`` are validated but
        unused (the answer is exact).

    Notes
    -----
    Cost per query: ``n`` kernel evaluations, computed chunked by :func:`gaussian_kde`.
    ``below_mu_min`` is ``mu < mu_min`` exactly.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Theorem 2.1 (the quantity approximated).
    """

    def _build(self):
        return {"bytes": 0}

    def _query(self, Ys, Y, gen):
        est = gaussian_kde(self.X, Y, bandwidth=self.bandwidth, weights=self.weights, backend=self.backend)
        est = est.astype(self.X.dtype, copy=False)  # gaussian_kde promotes float32 to float64 (NEP 50)
        m = Y.shape[0]
        ones = np.ones(m, dtype=np.int64)
        return est, est < self.mu_min, ones * self.n, 0 * ones, ones
