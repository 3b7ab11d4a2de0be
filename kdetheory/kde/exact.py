"""Exact kernel sums: the Gaussian KDE and the weighted exponential KDE (Definition 3.1).

Both are thin wrappers over the streaming log-sum-exp routine (``kdetheory._stream``):
chunked to ``_config.CHUNK_BYTES``, max-shifted, NumPy / numba / CuPy.
"""
from __future__ import annotations

import math

import numpy as np

from .._array import namespace, resolve_backend
from .._stream import block_shape, lse_products_on
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


#: Largest worst-case error (absolute, in the exponent, hence relative in the density) that the
#: expanded form ||x||^2 + ||y||^2 - 2<x, y> may carry before a query is recomputed by direct
#: differences. float32's 2^-10 is ~10^4 units of its rounding: the worst-case bound below is far
#: above the typical error, and a tighter value would send ordinary float32 work (GloVe at h = 1.5)
#: down the slower direct path.
_EXPANSION_TOLERANCE = {8: 2.0**-33, 4: 2.0**-10}


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
        The densities (or their logarithms), same array type and dtype as ``X``.

    Raises
    ------
    ValueError
        Bad input, or a bandwidth so small that squared distances in its units overflow float64.

    Notes
    -----
    Exact to floating-point rounding on every backend and dtype. The fast path expands
    ``||x - y||^2 = ||x||^2 + ||y||^2 - 2<x, y>`` on data centred at the mean of ``X`` (the kernel
    is translation invariant) and streams it through the chunked log-sum-exp. That expansion
    cancels when the bandwidth is small against the spread of the data: its error in the
    exponent is at most ``E_i = (d + 4) u (R^2 + ||y_i||^2 + 2 ||c|| (R + ||y_i||)) / h^2`` (``u`` the
    unit roundoff, ``R`` the largest centred norm, ``c`` the centre). Queries with ``E_i`` above
    ``_EXPANSION_TOLERANCE`` (2^-33 in float64, 2^-10 in float32) are recomputed in float64 by
    :func:`_direct_lse`: the expansion only screens which points lie within the log-sum-exp window
    of the query's nearest points, and those squared distances are taken by direct differences
    (never negative). The result never exceeds the mean weight (each kernel value is <= 1).
    Memory: ``O(CHUNK_BYTES)`` beyond the inputs.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Theorem 2.1 (the density it approximates).
    """
    bandwidth = check_positive("bandwidth", bandwidth)
    X, Y, w, xp = _prepare(X, Y, weights)
    backend = resolve_backend(backend, xp)
    inv_h = 1.0 / bandwidth
    inv_h2 = inv_h * inv_h  # a product, not a power: 1e200**-2 underflows to 0 instead of raising
    centre = X.mean(axis=0)
    Xc, Yc = X - centre, Y - centre
    x2, y2 = (Xc * Xc).sum(axis=1), (Yc * Yc).sum(axis=1)
    R2, c_norm = float(x2.max()), float(xp.sqrt((centre * centre).sum()))
    spread2 = (math.sqrt(R2) + math.sqrt(float(y2.max()))) ** 2
    if not math.isfinite(spread2 * inv_h2 + inv_h2):
        raise ValueError(
            f"bandwidth: got {bandwidth!r}; squared distances in units of it (up to {spread2:.3g} / h^2) "
            "overflow float64, so every density underflows to 0 except at coincident points; pass a "
            f"bandwidth >= {max(math.sqrt(spread2 * 1e-300), 1e-150):.3g}.")
    lw = log_weights(w, xp)
    # -||x - y||^2 / 2h^2 = <y, x>/h^2 - ||x||^2/2h^2 - ||y||^2/2h^2
    lse, _ = lse_products_on(backend, Yc, Xc, lw - 0.5 * inv_h2 * x2, scale=inv_h2)
    # Python floats keep float32 inputs float32 (a NumPy float64 scalar would promote them).
    lse = xp.asarray(lse) - 0.5 * inv_h2 * y2
    u = float(np.finfo(X.dtype).eps)
    y_norm = xp.sqrt(y2)
    bound = (X.shape[1] + 4) * u * inv_h2 * (R2 + y2 + 2.0 * c_norm * (math.sqrt(R2) + y_norm))
    redo = xp.flatnonzero(bound > _EXPANSION_TOLERANCE[X.dtype.itemsize])
    if redo.size:
        lse[redo] = _direct_lse(X, Y[redo], lw, inv_h2, out_eps=u).astype(X.dtype)
    # Each kernel value is <= 1, so mu <= mean(w): rounding never lifts a density above it.
    with np.errstate(divide="ignore"):
        log_mean_w = float(np.log(float(w.sum()) / X.shape[0]))
    lse = xp.minimum(lse - float(np.log(X.shape[0])), log_mean_w)
    return lse if log else xp.exp(lse)


def _direct_lse(X, Y, log_w, inv_h2, *, out_eps):
    """``log sum_j exp(log_w_j - ||x_j - y_i||^2 inv_h2 / 2)`` in float64, with every squared
    distance that matters taken by direct differences.

    Parameters
    ----------
    X : (n, d) array
    Y : (m, d) array, same namespace
    log_w : (n,) array
        Log-weights (``-inf`` for weight zero).
    inv_h2 : float
        ``1 / h^2``.
    out_eps : float
        Unit roundoff of the caller's dtype: points whose kernel term is below ``out_eps / n``
        of the largest one cannot change the result and are skipped.

    Returns
    -------
    (m,) float64 array, namespace of ``X``.

    Notes
    -----
    The expanded form, in float64 on centred data, gives every exponent to within
    ``E_i = 2 (d + 4) u64 (R^2 + ||y_i||^2 + 2 ||c|| (R + ||y_i||)) / h^2 + 4 u64 max|log_w|``. A point
    whose screened exponent is below the running maximum minus ``2 E_i + W`` (``W = ln n + ln(1/out_eps) + 2``)
    is truly below the final maximum minus ``W``: all of them together change the sum by less
    than ``out_eps e^-2`` relative. The others (the query's nearest points, usually a handful) are
    recomputed from ``x_j - y_i`` and merged with the online (max-shifted) log-sum-exp; the
    blocks are sized so that the gathered differences stay within ``CHUNK_BYTES``.
    """
    xp = namespace(X)
    n, d = X.shape
    X64, Y64, lw = X.astype(xp.float64), Y.astype(xp.float64), log_w.astype(xp.float64)
    centre = X64.mean(axis=0)
    Xc, Yc = X64 - centre, Y64 - centre
    x2, y2 = (Xc * Xc).sum(axis=1), (Yc * Yc).sum(axis=1)
    R2, c_norm = float(x2.max()), float(xp.sqrt((centre * centre).sum()))
    u = float(np.finfo(np.float64).eps)
    finite_lw = lw[xp.isfinite(lw)]
    lw_max = float(xp.abs(finite_lw).max()) if finite_lw.size else 0.0
    err = 2 * (d + 4) * u * inv_h2 * (R2 + y2 + 2.0 * c_norm * (math.sqrt(R2) + xp.sqrt(y2))) + 4 * u * lw_max
    window = 2.0 * err + math.log(n) + math.log(1.0 / out_eps) + 2.0
    rows, cols = block_shape(Y.shape[0], n, 8, temporaries=d + 4)
    out = xp.empty(Y.shape[0], dtype=xp.float64)
    for r0 in range(0, Y.shape[0], rows):
        r1 = min(Y.shape[0], r0 + rows)
        run_max = xp.full(r1 - r0, -xp.inf)
        screen_max = xp.full(r1 - r0, -xp.inf)
        acc = xp.zeros(r1 - r0)
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            screen = inv_h2 * (Yc[r0:r1] @ Xc[c0:c1].T) - 0.5 * inv_h2 * x2[c0:c1] \
                - 0.5 * inv_h2 * y2[r0:r1, None] + lw[c0:c1]
            screen_max = xp.maximum(screen_max, screen.max(axis=1))
            ri, ci = xp.nonzero(screen >= (screen_max - window[r0:r1])[:, None])
            D = X64[c0 + ci] - Y64[r0 + ri]
            expo = xp.full(screen.shape, -xp.inf)
            expo[ri, ci] = lw[c0 + ci] - 0.5 * inv_h2 * (D * D).sum(axis=1)
            new_max = xp.maximum(run_max, expo.max(axis=1))
            shift = xp.where(xp.isfinite(new_max), new_max, 0.0)
            acc = acc * xp.exp(run_max - shift) + xp.exp(expo - shift[:, None]).sum(axis=1)
            run_max = new_max
        with np.errstate(divide="ignore"):
            out[r0:r1] = xp.where(acc > 0, xp.log(xp.where(acc > 0, acc, 1.0)) + run_max, -xp.inf)
    return out


def exp_kde(X, Y, *, weights=None, log=False, backend="auto"):
    """Exact weighted exponential kernel sum ``S_i = sum_j w_j * exp(<x_j, y_i>)``.

    This is the quantity that Definition 3.1 (Weighted Exponential KDE) approximates; the
    normaliser D of attention is ``exp_kde(K, Q)`` and the squared column norms of the
    softmax matrix are ``exp_kde(sqrt(2) Q, sqrt(2) K, weights=D**-2)`` (docs/math.md §1).

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
        est = gaussian_kde(self.X, Y, bandwidth=self.bandwidth, weights=self._w, backend=self.backend)
        ones = np.ones(Y.shape[0], dtype=np.int64)
        return est, est < self._mu_floor, ones * self.n, 0 * ones, ones, 0 * ones
