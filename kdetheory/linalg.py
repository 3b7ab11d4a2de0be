"""Spectral norms, stable rank and the error metric of the paper's guarantee (eq. 2)."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
from scipy.sparse.linalg import LinearOperator, aslinearoperator, svds

from . import _config
from ._array import is_cupy_array, namespace, to_numpy, wrap_public
from ._rng import as_generator
from ._validation import check_choice, check_matrix, float_dtype

__all__ = ["spectral_norm", "stable_rank", "relative_spectral_error"]

_METHODS = ("auto", "exact", "lanczos", "power")


def _as_operand(name, M):
    """A LinearOperator stays one, a scipy.sparse matrix becomes one, anything else a validated dense host array."""
    if isinstance(M, LinearOperator):
        return M
    if scipy.sparse.issparse(M):
        if M.dtype.kind not in "fiub":
            raise TypeError(f"{name}: got a sparse matrix of dtype {M.dtype}; pass a real one, e.g. M.real.astype(float).")
        if M.ndim != 2 or 0 in M.shape:
            raise ValueError(f"{name}: got a sparse matrix of shape {M.shape}; pass a non-empty 2-D one.")
        data = M.data if hasattr(M, "data") else M.tocoo().data
        if not np.isfinite(data).all():
            raise ValueError(f"{name}: got {int((~np.isfinite(data)).sum())} NaN or infinite stored entries; remove them.")
        return aslinearoperator(M.astype(float_dtype(M.dtype)))
    M = check_matrix(name, M)
    return to_numpy(M) if is_cupy_array(M) else M


def _gram_norm(M):
    """``||M||_2`` from the top eigenvalue of the smaller Gram matrix: O(p q min(p, q)), no SVD.

    The top eigenvalue of a Gram matrix is perfectly conditioned (Weyl: an error E moves it by
    at most ||E||), so ``sigma_max`` keeps a relative accuracy of about ``max(p, q) u``. A CuPy ``M``
    forms the Gram matrix on the device; only that ``min(p, q)``-square matrix is copied to the host.
    """
    M = M.astype(np.float64) if is_cupy_array(M) else np.asarray(M, dtype=np.float64)
    G = to_numpy(M.T @ M if M.shape[0] >= M.shape[1] else M @ M.T)
    return float(np.sqrt(max(np.linalg.eigvalsh(G)[-1], 0.0)))


def _check_rtol(rtol):
    """``rtol`` in (0, 1): the relative accuracy asked of an iterative norm (None: ``_config.NORM_RTOL``)."""
    if rtol is None:
        return _config.NORM_RTOL
    if not (isinstance(rtol, numbers.Real) and not isinstance(rtol, bool) and 0 < float(rtol) < 1):
        raise ValueError(f"rtol: got {rtol!r}; pass a relative tolerance strictly between 0 and 1, e.g. 1e-4.")
    return float(rtol)


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
    M : (p, q) array, scipy.sparse matrix or scipy.sparse.linalg.LinearOperator
        A dense NumPy/CuPy matrix, a sparse matrix (used through its products) or a
        matrix-free operator (for example :func:`kdetheory.attention.softmax_matrix`).
    method : {"auto", "exact", "lanczos", "power"}
        "exact": the largest eigenvalue of the smaller Gram matrix ``M^T M`` or ``M M^T``
        (LAPACK, dense only; relative accuracy about ``max(p, q)`` units of rounding).
        "lanczos": ``scipy.sparse.linalg.svds`` (ARPACK) for the top singular value. "power":
        power iteration on ``M^T M``. "auto": exact for dense matrices with at most
        ``_config.EXACT_NORM_MAX_ENTRIES`` entries, else Lanczos.
    rng : None, int, SeedSequence or Generator
        Starting vector of the iterative methods (results are reproducible given ``rng``).
    rtol : float in (0, 1), optional
        Relative accuracy of the iterative methods; ``None`` takes ``_config.NORM_RTOL``. An
        error metric needs a few digits, not ten. Each Lanczos step is one product with M and
        one with M^T; ARPACK needs about 40 products whatever the tolerance, and tighter ones
        add restarts where the top of the spectrum is clustered (measured on a 2048-token
        softmax matrix with large logits: 43 products at 1e-4, 63 at 1e-6, 103 at 1e-12). The
        exact method ignores it.

    Returns
    -------
    float

    Notes
    -----
    Runs on the host: CuPy matrices are copied to host memory (matrix-free operators such as
    :func:`~kdetheory.attention.softmax_matrix` compute their products on their own device).
    Lanczos converges to the top singular value to about ``rtol`` relative accuracy; the power
    method needs a spectral gap and is provided as the simplest cross-check.
    """
    check_choice("method", method, _METHODS)
    M = _as_operand("M", M)
    rtol = _check_rtol(rtol)
    dense = not isinstance(M, LinearOperator)
    if method == "auto":
        method = "exact" if dense and M.size <= _config.EXACT_NORM_MAX_ENTRIES else "lanczos"
    if method == "exact":
        if not dense:
            raise ValueError("method: got 'exact' for a matrix-free operator; pass method='lanczos' or 'power'.")
        return _gram_norm(M)
    gen = as_generator(rng)
    op = aslinearoperator(M)
    if method == "power" or min(op.shape) < 3:
        if min(op.shape) < 3 and dense:
            return _gram_norm(M)
        return _power(op, gen, rtol, _config.POWER_MAXITER)
    v0 = gen.standard_normal(min(op.shape))
    s = svds(op, k=1, tol=rtol, v0=v0, return_singular_vectors=False, solver="arpack")
    return float(s[0])


def stable_rank(M, *, rng=None, rtol=None):
    """Stable rank ``srank(M) = ||M||_F^2 / ||M||_2^2``, in ``[1, rank M]``.

    Parameters
    ----------
    M : (p, q) array, scipy.sparse matrix or LinearOperator
        A :class:`~kdetheory.attention.exact.SoftmaxMatrix` gives ``||M||_F^2`` from its own
        blocks in one pass; any other operator is applied to the identity in blocks.
    rng : optional
        Starting vector for the Lanczos norm (large or matrix-free inputs).
    rtol : float in (0, 1), optional
        Relative accuracy of the iterative norm (see :func:`spectral_norm`); the stable rank
        inherits about twice it.

    Returns
    -------
    float
        ``nan`` for the zero matrix.

    Notes
    -----
    Runs on the host, as :func:`spectral_norm`.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Lemma 3.1 and Figure 2 (stable rank of D^-1 A).
    """
    M = _as_operand("M", M)
    rtol = _check_rtol(rtol)
    if hasattr(M, "frobenius_norm_sq"):
        fro2 = M.frobenius_norm_sq()
    elif isinstance(M, LinearOperator):
        fro2 = 0.0
        q = M.shape[1]
        step, _ = _config.block_shape(q, M.shape[0], 8)  # identity columns per product: block and result
        for c0 in range(0, q, step):
            block = np.eye(q, min(step, q - c0), -c0)
            fro2 += float(np.sum(M.matmat(block) ** 2))
    else:
        fro2 = float(np.sum(M * M))
    top = spectral_norm(M, rng=rng, rtol=rtol)
    return fro2 / top**2 if top > 0 else float("nan")


def relative_spectral_error(approx, Q, K, V, *, scale=1.0, rng=None, rtol=None, backend="auto"):
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
        Starting vector of Lanczos for ``||D^-1 A||_2`` (n_q x n_k, formed only when it fits one
        chunk of ``_config.CHUNK_BYTES``).
    rtol : float in (0, 1), optional
        Relative accuracy of the Lanczos norms (see :func:`spectral_norm`); the error metric
        inherits about twice it.
    backend : {"auto", "numpy", "numba", "cupy"}
        Backend of the exact attention.

    Returns
    -------
    float
        KDEformer's Theorem 3.4 promises a value ``<= eps`` with high probability. ``0.0`` when
        ``approx`` equals the exact output; ``inf`` when ``V = 0`` (so the exact output is 0) but
        ``approx`` is not (``||D^-1 A||_2 >= 1`` always, so only ``V`` can make the scale vanish).

    Notes
    -----
    The exact attention runs on ``backend`` (natively on the GPU for CuPy inputs); the norms run
    on the host (:func:`spectral_norm`).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), eq. (2) and Theorems 3.2 and 3.4.
    """
    from .attention.exact import softmax_attention, softmax_matrix

    exact = softmax_attention(Q, K, V, scale=scale, backend=backend)
    approx = check_matrix("approx", approx)
    if approx.shape != exact.shape:
        raise ValueError(f"approx: got shape {tuple(approx.shape)}; pass the (n_q, d_v) = {tuple(exact.shape)} output.")
    namespace(approx, exact)
    rtol = _check_rtol(rtol)
    err = spectral_norm(to_numpy(approx - exact), rng=rng, rtol=rtol)
    if err == 0:
        return 0.0
    v_norm = spectral_norm(to_numpy(V), rng=rng, rtol=rtol)
    if v_norm == 0:
        return float("inf")
    return err / (spectral_norm(softmax_matrix(Q, K, scale=scale), rng=rng, rtol=rtol) * v_norm)


wrap_public(globals(), __all__)  # PyTorch / JAX arrays in, the caller's array type out (DLPack, no copy)
