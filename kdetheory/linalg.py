"""Spectral norms, stable rank and the error metric of the paper's guarantee (eq. 2)."""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator, svds

from . import _config
from ._array import is_cupy_array, namespace, to_numpy
from ._rng import as_generator
from ._validation import check_choice, check_matrix

__all__ = ["spectral_norm", "stable_rank", "relative_spectral_error"]

_METHODS = ("auto", "exact", "lanczos", "power")


def _as_operand(name, M):
    if isinstance(M, LinearOperator):
        return M
    M = check_matrix(name, M)
    return to_numpy(M) if is_cupy_array(M) else M


def _power(op, rng, rtol, maxiter):
    x = rng.standard_normal(op.shape[1])
    x /= np.linalg.norm(x)
    sigma = 0.0
    for _ in range(maxiter):
        y = op.rmatvec(op.matvec(x))
        new = np.sqrt(np.linalg.norm(y))
        if new == 0:
            return 0.0
        x = y / np.linalg.norm(y)
        if abs(new - sigma) <= rtol * new:
            return float(new)
        sigma = new
    return float(sigma)


def spectral_norm(M, *, method="auto", rng=None, rtol=None):
    """The operator (spectral) norm ``||M||_2``, the largest singular value.

    Parameters
    ----------
    M : (p, q) array or scipy.sparse.linalg.LinearOperator
        A dense NumPy/CuPy matrix or a matrix-free operator (for example
        :func:`kdetheory.attention.softmax_matrix`). CuPy matrices are copied to the host.
    method : {"auto", "exact", "lanczos", "power"}
        "exact": LAPACK SVD (dense only). "lanczos": ``scipy.sparse.linalg.svds`` (ARPACK)
        for the top singular value. "power": power iteration on ``M^T M``. "auto": exact for
        dense matrices with at most ``_config.EXACT_NORM_MAX_ENTRIES`` entries, else Lanczos.
    rng : None, int, SeedSequence or Generator
        Starting vector of the iterative methods (results are reproducible given ``rng``).
    rtol : float, optional
        Relative tolerance of the iterative methods (``_config.NORM_RTOL`` by default).

    Returns
    -------
    float

    Notes
    -----
    Lanczos converges to the top singular value to ``rtol`` relative accuracy; the power
    method needs a spectral gap and is provided as the simplest cross-check.
    """
    check_choice("method", method, _METHODS)
    M = _as_operand("M", M)
    rtol = _config.NORM_RTOL if rtol is None else rtol
    dense = not isinstance(M, LinearOperator)
    if method == "auto":
        method = "exact" if dense and M.size <= _config.EXACT_NORM_MAX_ENTRIES else "lanczos"
    if method == "exact":
        if not dense:
            raise ValueError("method: got 'exact' for a matrix-free operator; pass method='lanczos' or 'power'.")
        return float(np.linalg.norm(M, 2))
    gen = as_generator(rng)
    op = aslinearoperator(M)
    if method == "power" or min(op.shape) < 3:
        if min(op.shape) < 3 and dense:
            return float(np.linalg.norm(M, 2))
        return _power(op, gen, rtol, _config.POWER_MAXITER)
    v0 = gen.standard_normal(min(op.shape))
    s = svds(op, k=1, tol=rtol, v0=v0, return_singular_vectors=False, solver="arpack")
    return float(s[0])


def stable_rank(M, *, rng=None):
    """Stable rank ``srank(M) = ||M||_F^2 / ||M||_2^2``, in ``[1, rank M]``.

    Parameters
    ----------
    M : (p, q) array, or a :class:`~kdetheory.attention.exact.SoftmaxMatrix` operator
        For an operator, ``||M||_F^2`` is computed by applying it to the identity in blocks.
    rng : optional
        Starting vector for the Lanczos norm (large or matrix-free inputs).

    Returns
    -------
    float
        ``nan`` for the zero matrix.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Lemma 3.1 and Figure 2 (stable rank of D^-1 A).
    """
    M = _as_operand("M", M)
    if isinstance(M, LinearOperator):
        fro2 = 0.0
        q = M.shape[1]
        step = max(1, _config.CHUNK_BYTES // (8 * max(1, M.shape[0])))
        for c0 in range(0, q, step):
            block = np.eye(q, min(step, q - c0), -c0)
            fro2 += float(np.sum(M.matmat(block) ** 2))
    else:
        fro2 = float(np.sum(M * M))
    top = spectral_norm(M, rng=rng)
    return fro2 / top**2 if top > 0 else float("nan")


def relative_spectral_error(approx, Q, K, V, *, scale=1.0, rng=None, backend="auto"):
    """The metric of the paper's guarantee: ``||approx - D^-1 A V||_2 / (||D^-1 A||_2 ||V||_2)``.

    Parameters
    ----------
    approx : (n_q, d_v) array
        An approximation of softmax attention.
    Q : (n_q, d) array
    K : (n_k, d) array
    V : (n_k, d_v) array
    scale : float, default 1.0
        Logit scale, as in :func:`kdetheory.attention.softmax_attention`.
    rng : optional
        Starting vector of Lanczos for ``||D^-1 A||_2`` (n_q x n_k, never formed).
    backend : {"auto", "numpy", "numba", "cupy"}
        Backend of the exact attention.

    Returns
    -------
    float
        KDEformer's Theorem 3.4 promises a value ``<= eps`` with high probability.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), eq. (2) and Theorems 3.2 and 3.4.
    """
    from .attention.exact import softmax_attention, softmax_matrix

    exact = softmax_attention(Q, K, V, scale=scale, backend=backend)
    approx = check_matrix("approx", approx, dtype=exact.dtype)
    if approx.shape != exact.shape:
        raise ValueError(f"approx: got shape {tuple(approx.shape)}; pass the (n_q, d_v) = {tuple(exact.shape)} output.")
    namespace(approx, exact)
    err = spectral_norm(to_numpy(approx - exact))
    p_norm = spectral_norm(softmax_matrix(Q, K, scale=scale), rng=rng)
    return err / (p_norm * spectral_norm(to_numpy(V)))
