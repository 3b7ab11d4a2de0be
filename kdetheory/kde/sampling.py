"""Random-sampling KDE: the tau = 1 baseline of Theorem 2.1, plain and over a permuted copy.

``Z = w_J k(x_J, q)`` with ``J`` uniform in ``{1..n}`` is unbiased for ``mu(q)`` with relative
variance ``E[Z^2]/mu^2 - 1 <= w_max / mu`` (since ``E[(w k)^2] <= w_max mu``); the median of means
of ``O(w_max eps^-2 log(1/delta) / mu_min)`` samples is within ``1 +- eps`` of ``mu`` with
probability ``>= 1 - delta`` whenever ``mu >= mu_min``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._array import namespace
from .._validation import check_int
from ._base import KDEEstimator
from ._mom import median_of_means, mom_shape

__all__ = ["RandomSamplingKDE", "sampled_kernel_values"]


def sampled_kernel_values(Xs, Ys, idx, weights):
    """``w_j exp(-||x_j - y_i||^2)`` for the sampled ``j = idx[i, s]`` (rescaled points).

    Parameters
    ----------
    Xs : (n, d) array
    Ys : (m, d) array
    idx : (m, s) int array (host or same namespace as Xs)
    weights : (n,) array

    Returns
    -------
    (m, s) array, namespace of ``Xs``; chunked over queries to ``_config.CHUNK_BYTES``.
    """
    xp = namespace(Xs)
    idx = xp.asarray(idx)
    m, s = idx.shape
    out = xp.empty((m, s), dtype=Xs.dtype)
    rows = max(1, _config.CHUNK_BYTES // max(1, 2 * s * Xs.shape[1] * Xs.dtype.itemsize))
    for r0 in range(0, m, rows):
        block = idx[r0:r0 + rows]
        diff = Xs[block] - Ys[r0:r0 + rows, None, :]
        # exp of a non-positive number: bounded, never overflows
        out[r0:r0 + rows] = weights[block] * xp.exp(-(diff * diff).sum(axis=2))
    return out


class RandomSamplingKDE(KDEEstimator):
    """Uniform random sampling with median of means (tau = 1).

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`.
    permuted : bool, default False
        DEANN's "RSP": shuffle ``X`` once at build time; each query evaluates one contiguous
        block of the shuffled copy (random start, wrapping around) with one matrix-vector
        product. Unbiased for every fixed shuffle (each point lies in exactly ``s`` of the ``n``
        possible blocks); samples within a block are drawn without replacement.
    n_samples : int, optional
        Override the number of samples per query (otherwise from ``eps``, ``delta``, ``mu_min``).
    n_groups : int, optional
        Number of median-of-means groups when ``n_samples`` is given (default 1: a plain mean).

    Notes
    -----
    Relative variance per sample ``<= w_max / mu_min``; :func:`~kdetheory.kde._mom.mom_shape`
    turns it into ``group_size x n_groups`` samples. When that is ``>= n`` the estimator answers
    exactly (``n`` kernel evaluations). ``below_mu_min`` flags estimates ``< (1 - eps) mu_min``:
    with probability ``>= 1 - delta`` such a query has ``mu < mu_min``.
    Cost per query: ``s`` kernel evaluations, no hashing.

    References
    ----------
    Karppa, Aumueller, Pagh, "DEANN", AISTATS 2022 (the permuted variant); KDEformer
    Theorem 2.1 (uniform sampling is the tau = 1 point on its trade-off curve).
    """

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None,
                 rng=None, backend="auto", permuted=False, n_samples=None, n_groups=None):
        self.permuted = bool(permuted)
        self._n_samples = None if n_samples is None else check_int("n_samples", n_samples, minimum=1)
        self._n_groups_arg = None if n_groups is None else check_int("n_groups", n_groups, minimum=1)
        super().__init__(X, eps=eps, delta=delta, mu_min=mu_min, bandwidth=bandwidth, weights=weights,
                         rng=rng, backend=backend)

    def _build(self):
        if self._n_samples is None:
            self.group_size, self.n_groups = mom_shape(self._w_max / self.mu_min, self.eps, self.delta)
        else:
            self.n_groups = self._n_groups_arg or 1
            self.group_size = max(1, math.ceil(self._n_samples / self.n_groups))
        self.n_samples = self.group_size * self.n_groups
        self.exact = self.n_samples >= self.n
        if self.exact or not self.permuted:
            return {"bytes": 0}
        xp = self._xp
        perm = xp.asarray(self._rng.permutation(self.n))
        Xc = self._Xs - self._Xs.mean(axis=0)
        self._centre = self._Xs.mean(axis=0)
        wrap = xp.arange(self.n_samples) % self.n
        # The shuffled copy is extended by its first s rows so every block is one contiguous slice.
        self._Xp = xp.concatenate([Xc[perm], Xc[perm][wrap]])
        self._Xp_sq = (self._Xp * self._Xp).sum(axis=1)
        self._wp = xp.concatenate([self.weights[perm], self.weights[perm][wrap]])
        return {"bytes": self._Xp.nbytes + self._Xp_sq.nbytes + self._wp.nbytes}

    def _query(self, Ys, Y, gen):
        m = Y.shape[0]
        ones = np.ones(m, dtype=np.int64)
        if self.exact:
            est = self._exact(Y)
            return est.astype(self.X.dtype), est < self.mu_min, ones * self.n, 0 * ones, ones
        xp = self._xp
        s = self.n_samples
        if self.permuted:
            starts = gen.integers(0, self.n, m)
            Yc = Ys - self._centre
            vals = xp.empty((m, s), dtype=Ys.dtype)
            for i in range(m):
                a = int(starts[i])
                block = self._Xp[a:a + s]
                # ||x - y||^2 = ||x||^2 + ||y||^2 - 2<x, y> on centred points (one GEMV per query)
                r2 = self._Xp_sq[a:a + s] + (Yc[i] * Yc[i]).sum() - 2.0 * (block @ Yc[i])
                vals[i] = self._wp[a:a + s] * xp.exp(-xp.maximum(r2, 0))
        else:
            idx = gen.integers(0, self.n, (m, s))
            vals = sampled_kernel_values(self._Xs, Ys, idx, self.weights)
        est = median_of_means(vals, self.n_groups, xp)
        below = est < (1.0 - self.eps) * self.mu_min
        return est, below, ones * s, 0 * ones, ones
