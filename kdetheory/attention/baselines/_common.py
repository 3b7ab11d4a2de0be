"""Shared pieces of the baselines: the result type, input preparation, host results, shared docstring
fragments, positive random features."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._array import to_namespace
from .._batch import flatten_leading
from .._cost import AttentionCost
from ..exact import check_qkv


@dataclass(frozen=True)
class ApproxResult:
    """Output of an approximate attention baseline (arrays of the input's array type).

    Attributes
    ----------
    output : (..., n_q, d_v) array
        The approximation of ``D^-1 A V``.
    log_row_sums : (..., n_q) array or None
        ``log`` of the method's estimate of ``D_ii`` where it has one (None for Nystrom,
        whose normalisation is built into its three softmax factors).
    cost : AttentionCost
        Stage-by-stage kernel entries, hash evaluations and FLOPs against exact attention
        (``cost.work_fraction``), ``feature_dimension`` (the budget convention of docs/math.md §7.1)
        and the method's own counts in ``cost.details``.
    """

    output: object
    log_row_sums: object = None
    cost: AttentionCost | None = None


def prepare(Q, K, V, scale):
    """Validate and flatten to (B, n, d); returns Qb (pre-scaled by ``scale``), Kb, Vb, lead, xp."""
    Q, K, V, xp, scale = check_qkv(Q, K, V, scale=scale)
    Qb, Kb, Vb, lead = flatten_leading(Q, K, V)
    return Qb * Q.dtype.type(scale), Kb, Vb, lead, xp


def host_result(out, log_d, lead, cost, xp, dtype):
    """:class:`ApproxResult` from host float64 ``out`` (B, n_q, d_v) and ``log_d`` (B, n_q): leading axes
    restored, moved to the inputs' namespace ``xp`` and cast to their ``dtype`` (the methods that compute
    on the host in float64)."""
    n_q = out.shape[-2]
    return ApproxResult(output=to_namespace(out.reshape(lead + out.shape[-2:]), xp).astype(dtype),
                        log_row_sums=to_namespace(log_d.reshape(lead + (n_q,)), xp).astype(dtype), cost=cost)


def fill_doc(**fragments):
    """Decorator: replace each ``{name}`` in the docstring by ``fragments[name]`` (other braces are left alone).

    The peers share their parameter descriptions this way; the rendered docstring is the full text."""
    def decorate(func):
        doc = func.__doc__
        for name, text in fragments.items():
            doc = doc.replace("{" + name + "}", text)
        func.__doc__ = doc
        return func
    return decorate


#: The Q, K, V entries of a numpydoc Parameters section (4-space indent, as inside a function).
QKV_PARAMETERS = """Q : (..., n_q, d) array
    K : (..., n_k, d) array
    V : (..., n_k, d_v) array
        Leading (batch, head) axes must agree; NumPy or CuPy, float64 or float32."""

#: The ``scale`` entry of a numpydoc Parameters section.
SCALE_PARAMETER = """scale : float, default 1.0
        ``A = exp(scale Q K^T)``."""


def random_directions(n_features, d, orthogonal, gen):
    """Performer directions w_1..w_m (m x d, host float64).

    Gaussian: i.i.d. N(0, I_d). Orthogonal (FAVOR+): blocks of d exactly orthogonal rows (QR of
    a Gaussian matrix), each row rescaled to the norm of an independent N(0, I_d) vector, so
    every row is still marginally N(0, I_d) and the estimator stays unbiased.
    """
    if not orthogonal:
        return gen.standard_normal((n_features, d))
    blocks = []
    for _ in range(math.ceil(n_features / d)):
        q, r = np.linalg.qr(gen.standard_normal((d, d)))
        # Fix the column signs (sign of diag R) so that q is Haar-distributed: LAPACK's
        # Householder convention otherwise biases the direction of every column.
        blocks.append((q * np.sign(np.diag(r))).T)
    W = np.concatenate(blocks)[:n_features]
    norms = np.linalg.norm(gen.standard_normal((n_features, d)), axis=1)
    return W * norms[:, None]


def log_positive_features(X, W, xp):
    """``log phi(x) = W x - ||x||^2 / 2 - log(m)/2``, shape (B, n, m) (positive random features)."""
    m = W.shape[0]
    Wx = xp.asarray(W).astype(X.dtype)
    return X @ Wx.T - 0.5 * (X * X).sum(axis=-1, keepdims=True) - X.dtype.type(0.5 * math.log(m))


def shifted_positive_features(Qb, Kb, n_features, orthogonal, scale, gen, xp):
    """Performer features of queries and keys, max-shifted for stability.

    ``Qb`` carries the logit scale (from :func:`prepare`); it is split evenly between the two
    sides (q sqrt(s), k sqrt(s)). Returns ``(phi_q, phi_k, cq, ck)`` with
    ``phi(q_i)^T phi(k_j) = phi_q[i]^T phi_k[j] * exp(cq[i] + ck)``: each query's log-features
    are shifted by their own maximum ``cq`` (B, n_q), the keys' by one maximum ``ck`` (B,) per
    sequence, so the shifts cancel in any ratio of the two.
    """
    s_half = Qb.dtype.type(float(scale) ** 0.5)
    W = random_directions(n_features, Qb.shape[-1], bool(orthogonal), gen)
    lq, lk = log_positive_features(Qb / s_half, W, xp), log_positive_features(Kb * s_half, W, xp)
    cq = lq.max(axis=-1)
    ck = lk.max(axis=(-2, -1))
    return xp.exp(lq - cq[..., None]), xp.exp(lk - ck[:, None, None]), cq, ck
