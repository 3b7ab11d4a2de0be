"""Exact softmax attention, its normaliser D, and the softmax matrix D^-1 A as a
matrix-free operator (docs/math.md §1: A = exp(scale * Q K^T), D = diag(A 1)).
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .._array import namespace, resolve_backend, to_numpy
from .._config import block_shape
from .._stream import lse_products_on
from .._validation import check_matrix, check_positive, check_same_columns, check_same_rows, result_float_dtype

__all__ = ["softmax_attention", "row_sums", "softmax_matrix", "check_qkv"]


def check_qkv(Q, K, V=None, *, scale=1.0):
    """Validate attention inputs: Q (..., n_q, d), K (..., n_k, d), V (..., n_k, d_v) with
    equal leading (batch, head) axes; returns float arrays of one dtype (NumPy's promotion of
    the three: float32 only when all are float32), the namespace and the scale."""
    Q = check_matrix("Q", Q, ndim=range(2, 8))
    K = check_matrix("K", K, ndim=range(2, 8))
    V = None if V is None else check_matrix("V", V, ndim=range(2, 8))
    dtype = result_float_dtype(Q, K, V)
    Q, K = Q.astype(dtype, copy=False), K.astype(dtype, copy=False)
    check_same_columns("Q", Q, "K", K)
    if Q.shape[:-2] != K.shape[:-2]:
        raise ValueError(f"K: got leading axes {K.shape[:-2]} but Q has {Q.shape[:-2]}; pass matching batch/head axes.")
    if V is not None:
        V = V.astype(dtype, copy=False)
        check_same_rows("K", K, "V", V)
        if V.shape[:-2] != K.shape[:-2]:
            raise ValueError(f"V: got leading axes {V.shape[:-2]} but K has {K.shape[:-2]}; pass matching batch/head axes.")
    xp = namespace(Q, K, V)
    scale = check_positive("scale", scale)
    return Q, K, V, xp, scale


def softmax_attention(Q, K, V, *, scale=1.0, backend="auto"):
    """Exact softmax attention ``Att = D^-1 A V`` with ``A = exp(scale * Q K^T)``.

    Parameters
    ----------
    Q : (..., n_q, d) array
    K : (..., n_k, d) array
    V : (..., n_k, d_v) array
        Leading (batch, head) axes must agree. NumPy or CuPy.
    scale : float, default 1.0
        Logit scale (``1/sqrt(d)`` for the usual transformer convention; the paper's
        algorithms take pre-scaled inputs, i.e. ``scale=1``).
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    (..., n_q, d_v) array

    Notes
    -----
    Exact up to rounding, for any logit magnitude (online max-shifted softmax); never holds
    an n_q-by-n_k matrix larger than ``_config.CHUNK_BYTES``.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Section 1 (the target of the approximation).
    """
    Q, K, V, xp, scale = check_qkv(Q, K, V, scale=scale)
    backend = resolve_backend(backend, xp)
    return lse_products_on(backend, Q, K, None, V, scale=scale)[1]


def row_sums(Q, K, *, scale=1.0, log=False, backend="auto"):
    """The attention normaliser ``D_ii = sum_j exp(scale * <q_i, k_j>)``.

    Parameters
    ----------
    Q : (..., n_q, d) array
    K : (..., n_k, d) array
    scale : float, default 1.0
    log : bool, default False
        Return ``log D_ii`` (finite for logits in the thousands, where ``D`` overflows).
    backend : {"auto", "numpy", "numba", "cupy"}

    Returns
    -------
    (..., n_q) array

    Raises
    ------
    OverflowError
        With ``log=False`` when ``D`` overflows the dtype (pass ``log=True``).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Section 1; Definition 3.1 with X = K, Y = Q, v = 1.
    """
    Q, K, _, xp, scale = check_qkv(Q, K, scale=scale)
    backend = resolve_backend(backend, xp)
    lse = lse_products_on(backend, Q, K, None, scale=scale)[0]
    if log:
        return lse
    if bool((lse > np.log(np.finfo(lse.dtype).max)).any()):
        raise OverflowError("row_sums: D overflows the dtype; call row_sums(..., log=True).")
    return xp.exp(lse)


class SoftmaxMatrix(LinearOperator):
    """Matrix-free ``P = D^-1 A`` (n_q x n_k) with ``A = exp(scale Q K^T)``.

    ``P @ x`` and ``P.T @ y`` cost O(n_q n_k (d + k)) for k right-hand sides and hold at most
    one chunk of P at a time. When the whole of P fits in one chunk (``_config.CHUNK_BYTES``)
    it is computed once and kept, so iterative methods (Lanczos needs tens of products) pay
    for the exponentials once. Host (NumPy) vectors in and out, whatever the inputs' device,
    so that scipy.sparse.linalg (svds, eigsh) can use it directly.
    """

    def __init__(self, Q, K, scale, xp):
        self.Q, self.K, self.scale, self.xp = Q, K, scale, xp
        self.log_d = xp.asarray(lse_products_on("numpy" if xp is np else "cupy", Q, K, None, scale=scale)[0])
        super().__init__(dtype=np.dtype(Q.dtype), shape=(Q.shape[0], K.shape[0]))
        rows, _ = block_shape(Q.shape[0], K.shape[0], Q.dtype.itemsize, temporaries=1)
        self._rows = rows
        self._dense = next(self._computed_blocks())[1] if rows >= Q.shape[0] else None

    def _computed_blocks(self):
        xp, Q = self.xp, self.Q
        for r0 in range(0, Q.shape[0], self._rows):
            logits = (Q[r0:r0 + self._rows] * self.scale) @ self.K.T
            logits -= self.log_d[r0:r0 + self._rows, None]
            yield r0, xp.exp(logits, out=logits)

    def _blocks(self):
        return iter([(0, self._dense)]) if self._dense is not None else self._computed_blocks()

    def frobenius_norm_sq(self):
        """``||P||_F^2 = sum_ij P_ij^2`` in one pass over the blocks, O(n_q n_k d) (float)."""
        return float(sum(float((P * P).sum()) for _, P in self._blocks()))

    def _matmat(self, x):
        xp = self.xp
        x = xp.asarray(np.asarray(x, dtype=self.dtype))
        out = xp.empty((self.shape[0], x.shape[1]), dtype=self.dtype)
        for r0, P in self._blocks():
            out[r0:r0 + P.shape[0]] = P @ x
        return to_numpy(out)

    def _rmatmat(self, y):
        xp = self.xp
        y = xp.asarray(np.asarray(y, dtype=self.dtype))
        out = xp.zeros((self.shape[1], y.shape[1]), dtype=self.dtype)
        for r0, P in self._blocks():
            out += P.T @ y[r0:r0 + P.shape[0]]
        return to_numpy(out)

    def _matvec(self, x):
        return self._matmat(np.reshape(x, (-1, 1))).ravel()

    def _rmatvec(self, y):
        return self._rmatmat(np.reshape(y, (-1, 1))).ravel()

    def _adjoint(self):
        return _Transposed(self)

    _transpose = _adjoint

    def todense(self):
        """The dense (n_q, n_k) matrix as a NumPy array (small problems and tests only)."""
        return self._matmat(np.eye(self.shape[1], dtype=self.dtype))


class _Transposed(LinearOperator):
    def __init__(self, op):
        self.op = op
        super().__init__(dtype=op.dtype, shape=(op.shape[1], op.shape[0]))

    def _matmat(self, x):
        return self.op._rmatmat(x)

    def _rmatmat(self, y):
        return self.op._matmat(y)

    def _matvec(self, x):
        return self.op._rmatvec(x)

    def _rmatvec(self, y):
        return self.op._matvec(y)

    def _adjoint(self):
        return self.op

    _transpose = _adjoint


def softmax_matrix(Q, K, *, scale=1.0):
    """The softmax matrix ``D^-1 A`` as a matrix-free :class:`scipy.sparse.linalg.LinearOperator`.

    Parameters
    ----------
    Q : (n_q, d) array
    K : (n_k, d) array
    scale : float, default 1.0

    Returns
    -------
    SoftmaxMatrix
        A LinearOperator of shape (n_q, n_k) supporting ``@``, ``.T``, ``.H`` and
        ``.todense()``; it never stores the matrix (memory O(CHUNK_BYTES)).

    Notes
    -----
    Row-stochastic: ``P 1 = 1`` and ``sqrt(n_q / n_k) <= ||P||_2 <= sqrt(n_q)`` (so at least 1 when n_q >= n_k; docs/math.md §1).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), eq. (2): the right-hand side uses ``||D^-1 A||_op``.
    """
    Q, K, _, xp, scale = check_qkv(Q, K, scale=scale)
    if Q.ndim != 2:
        raise ValueError(f"Q: got shape {tuple(Q.shape)}; softmax_matrix takes one (n_q, d) head at a time.")
    return SoftmaxMatrix(Q, K, scale, xp)
