"""Random-sampling KDE: the tau = 1 baseline of Theorem 2.1, over a permuted copy (default) or plain.

``Z = w_J k(x_J, q)`` with ``J`` uniform in ``{1..n}`` is unbiased for ``mu(q)`` with relative
variance ``E[Z^2]/mu^2 - 1 <= w_max / mu`` (since ``E[(w k)^2] <= w_max mu``); the median of means
of ``O(w_max eps^-2 log(1/delta) / mu_min)`` samples is within ``1 +- eps`` of ``mu`` with
probability ``>= 1 - delta`` whenever ``mu >= mu_min``. Every sample lies in ``[0, w_max]``, so
stopping on an empirical-Bernstein confidence sequence (``sizing="adaptive"``) keeps the same
guarantee with a number of samples set by the query's own density and variance.

Backends: everything runs in the namespace of the data. With CuPy the indices are drawn on the
device (:func:`device_indices`), the kernel values, the median of means and the stopping rule
stay there, and only per-query vectors (estimates, counts) come back to the host.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._array import namespace, to_numpy
from .._validation import check_choice, check_int
from ._base import KDEEstimator, gathered_squared_distances
from .exact import _EXPANSION_TOLERANCE
from ._mom import bernstein_stop, median_of_means, mom_shape

__all__ = ["RandomSamplingKDE", "sampled_kernel_values"]


def device_indices(gen, n, shape, xp):
    """I.i.d. uniform indices in ``{0, ..., n-1}``, drawn where the data live.

    Parameters
    ----------
    gen : numpy.random.Generator
        The query's generator.
    n : int >= 1
        Number of points.
    shape : int or tuple of int
    xp : module
        ``numpy`` or ``cupy``: where the indices are drawn.

    Returns
    -------
    int64 array of ``shape`` in the namespace ``xp``.

    Notes
    -----
    NumPy: ``gen.integers(0, n, shape)``, the host reference's stream. CuPy: ``floor(u n)`` of the
    counter-based uniforms of :func:`kdetheory._cupy._hbe.device_uniforms` (one launch, seeded by one
    draw of ``gen``, nothing of size ``shape`` uploaded, no generator state to reseed per call), so
    the same seed gives the same estimator, not the same numbers, on the GPU: the documented
    exception of that function. ``u`` has 53 random bits, so an index's probability is off from
    ``1/n`` by at most ``2^-53`` (relative ``n 2^-53``). With ``xp = numpy`` the device code path
    runs on the host reference's draws (the CPU stand-in tests).
    """
    if xp is np:
        return gen.integers(0, n, shape)
    from .._cupy._hbe import device_uniforms

    u = device_uniforms(gen, shape, xp)
    return xp.minimum((u * n).astype(xp.int64), n - 1)


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
    (m, s) array, namespace of ``Xs``; squared distances by
    :func:`~kdetheory.kde._base.gathered_squared_distances` (chunked to ``_config.CHUNK_BYTES``).
    """
    xp = namespace(Xs)
    idx = xp.asarray(idx)
    out = gathered_squared_distances(Xs, Ys, idx)
    # exp of a non-positive number: bounded, never overflows (in place: one (m, s) block besides w_idx)
    xp.negative(out, out=out)
    xp.exp(out, out=out)
    out *= weights[idx]
    return out


def permuted_positions(starts, t0, t1, n):
    """Positions ``(start_i + t) mod n``, ``t = t0 .. t1-1``, of each query's block of the shuffled copy.

    Parameters
    ----------
    starts : (m,) int array (NumPy or CuPy)
    t0, t1 : int
        Sample range.
    n : int
        Length of the shuffled copy.

    Returns
    -------
    (m, t1 - t0) int64 array, namespace of ``starts``: one gather for a whole block of queries (the
    device form of :func:`permuted_block_values`).
    """
    xp = namespace(starts)
    return (starts[:, None] + xp.arange(t0, t1, dtype=xp.int64)) % n


def permuted_block_values(Xp, x2, wp, Ys, starts, t0, t1, tolerance):
    """Samples ``t0 .. t1-1`` of each query's block of the shuffled copy (wrapping around).

    Parameters
    ----------
    Xp : (n, d) array
        Shuffled, rescaled points, centred (at their mean).
    x2 : (n,) array
        ``||x||^2`` of the rows of ``Xp``.
    wp : (n,) array
        Their (normalised) weights.
    Ys : (m, d) array
        Rescaled queries, centred like ``Xp``.
    starts : (m,) int ndarray
        First position of each query's block.
    t0, t1 : int
        Sample range, ``t1 - t0 <= n``.
    tolerance : float
        Largest error bound in the exponent accepted from the expanded form (below).

    Returns
    -------
    (m, t1 - t0) array, namespace of ``Xp``: ``w exp(-||x - y||^2)``, each value in ``[0, w]``.

    Notes
    -----
    One contiguous slice (two when it wraps) and one matrix-vector product per query: the
    memory-friendly layout of DEANN's RSP, far faster than gathering random rows. The squared
    distance is expanded as ``||x||^2 + ||y||^2 - 2<x, y>`` (clamped at 0) when its rounding error,
    at most ``(d + 4) u (max ||x||^2 + ||y||^2)``, is within ``tolerance``; otherwise (bandwidths far
    below the spread of the data) it is taken by direct differences.
    """
    xp = namespace(Xp)
    n, d = Xp.shape
    u = float(np.finfo(Xp.dtype).eps)
    R2 = float(x2.max())
    out = xp.empty((Ys.shape[0], t1 - t0), dtype=Xp.dtype)
    for i in range(Ys.shape[0]):
        a = (int(starts[i]) + t0) % n
        b = a + t1 - t0
        rows = slice(a, b) if b <= n else xp.concatenate([xp.arange(a, n), xp.arange(0, b - n)])
        block, y = Xp[rows], Ys[i]
        y2 = float((y * y).sum())
        if (d + 4) * u * (R2 + y2) <= tolerance:
            r2 = xp.maximum(x2[rows] + y2 - 2.0 * (block @ y), 0.0)
        else:
            D = block - y
            r2 = (D * D).sum(axis=1)
        out[i] = wp[rows] * xp.exp(-r2)
    return out


class RandomSamplingKDE(KDEEstimator):
    """Uniform random sampling (tau = 1), over a once-permuted copy by default.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`.
    permuted : bool, default True
        DEANN's "RSP": shuffle ``X`` once at build time; each query evaluates one contiguous
        block of the shuffled copy (random start, wrapping around). Unbiased for every fixed
        shuffle (each point lies in exactly ``s`` of the ``n`` possible blocks); samples within a
        block are drawn without replacement. False draws ``s`` independent uniform indices per
        query (a random gather: several times slower per sample).
    sizing : {"worst_case", "adaptive"}, default "worst_case"
        "worst_case": ``group_size x n_groups`` samples from :func:`~kdetheory.kde._mom.mom_shape`
        with relative variance ``w_max / mu_min`` (the same for every query). "adaptive":
        stopping on an empirical-Bernstein confidence sequence per query
        (:func:`~kdetheory.kde._mom.bernstein_stop`, samples in ``[0, w_max]``), up to ``n // 2``
        samples, then the exact sum; same ``(1 +- eps, delta)`` guarantee for ``mu >= mu_min``.
        Its samples are i.i.d. uniform indices in either layout (the confidence sequence needs
        independent samples), so ``permuted`` only affects worst-case sizing.
    n_samples : int, optional
        Override the number of samples per query (worst-case sizing only).
    n_groups : int, optional
        Number of median-of-means groups when ``n_samples`` is given (default 1: a plain mean).

    Notes
    -----
    Worst case: when ``group_size x n_groups >= n`` the estimator answers exactly (``n`` kernel
    evaluations). ``below_mu_min`` flags estimates ``< (1 - eps) mu_min`` (worst case) or
    queries whose upper confidence bound fell below ``mu_min`` (adaptive): with probability
    ``>= 1 - delta`` such a query has ``mu < mu_min``. Cost per query: ``s`` kernel evaluations
    (``KDEResult.samples``), no hashing.

    Backends: runs in the namespace of ``X``. On the GPU the indices (and block starts) are drawn
    on the device (:func:`device_indices`: same seed, same estimator, not the same numbers as the
    host), the permuted blocks are gathered for a block of queries at once
    (:func:`permuted_positions`; the host keeps its per-query contiguous slices, faster there), the
    stopping rule runs on the device (one scalar read back per checkpoint), and the exact
    fallback is the device :func:`~kdetheory.kde.gaussian_kde`. The build uploads one permutation
    of ``n`` indices; a query moves only per-query vectors to the host.

    References
    ----------
    Karppa, Aumueller, Pagh, "DEANN", AISTATS 2022 (the permuted variant); Mnih, Szepesvari,
    Audibert, ICML 2008 (empirical-Bernstein stopping); KDEformer Theorem 2.1 (uniform sampling is
    the tau = 1 point on its trade-off curve).
    """

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None,
                 rng=None, backend="auto", permuted=True, sizing="worst_case", n_samples=None, n_groups=None):
        self.permuted = bool(permuted)
        self.sizing = check_choice("sizing", sizing, ("worst_case", "adaptive"))
        self._n_samples = None if n_samples is None else check_int("n_samples", n_samples, minimum=1)
        self._n_groups_arg = None if n_groups is None else check_int("n_groups", n_groups, minimum=1)
        if self.sizing == "adaptive" and n_samples is not None:
            raise ValueError("n_samples: got a fixed sample count with sizing='adaptive'; pass one or the other.")
        super().__init__(X, eps=eps, delta=delta, mu_min=mu_min, bandwidth=bandwidth, weights=weights,
                         rng=rng, backend=backend)

    def _build(self):
        if self._n_samples is None:
            self.group_size, self.n_groups = mom_shape(1.0 / self._mu_floor, self.eps, self.delta)
        else:
            self.n_groups = self._n_groups_arg or 1
            self.group_size = max(1, math.ceil(self._n_samples / self.n_groups))
        self.n_samples = self.group_size * self.n_groups
        #: most samples an adaptive query draws before it answers exactly instead
        self.max_samples = max(1, self.n // 2)
        self.exact = self.n_samples >= self.n if self.sizing == "worst_case" else False
        if self.exact or not self.permuted or self.sizing == "adaptive":
            return {"bytes": 0}
        xp = self._xp
        perm = xp.asarray(self._rng.permutation(self.n))
        self._centre = self._Xs.mean(axis=0)
        self._Xp = self._Xs[perm] - self._centre
        # squared norms for the host's expanded distances only (the device gathers by differences)
        self._x2 = None if self._on_device else (self._Xp * self._Xp).sum(axis=1)
        self._wp = self._w[perm]
        return {"bytes": self._Xp.nbytes + (0 if self._x2 is None else self._x2.nbytes) + self._wp.nbytes}

    @property
    def _on_device(self):
        """Draws and blocks in the namespace of the data (CuPy: on the GPU); the CPU stand-in tests
        force it on NumPy data."""
        return self.backend == "cupy"

    def _draw(self, Ys, gen):
        """``draw(idx, t0, t1)``: samples ``t0 .. t1-1`` of the queries ``Ys[idx]`` (namespace of ``X``):
        blocks of the permuted copy, or i.i.d. uniform indices (plain layout, and adaptive sizing,
        whose confidence sequence needs independent samples; a block is drawn without replacement)."""
        xp = self._xp if self._on_device else np
        if self.permuted and self.sizing == "worst_case":
            starts = device_indices(gen, self.n, Ys.shape[0], xp)
            Yc = Ys - self._centre
            if self._on_device:  # one gather per block of queries
                return lambda idx, t0, t1: sampled_kernel_values(
                    self._Xp, Yc[xp.asarray(idx)], permuted_positions(starts[xp.asarray(idx)], t0, t1, self.n), self._wp)
            tol = _EXPANSION_TOLERANCE[self.X.dtype.itemsize]
            return lambda idx, t0, t1: permuted_block_values(self._Xp, self._x2, self._wp, Yc[self._xp.asarray(idx)],
                                                             starts[idx], t0, t1, tol)
        return lambda idx, t0, t1: sampled_kernel_values(
            self._Xs, Ys[self._xp.asarray(idx)], device_indices(gen, self.n, (idx.size, t1 - t0), xp), self._w)

    def _query(self, Ys, Y, gen):
        m = Y.shape[0]
        ones = np.ones(m, dtype=np.int64)
        if self.exact:
            est = self._exact(Y)
            return est, est < self._mu_floor, ones * self.n, 0 * ones, ones, 0 * ones
        draw = self._draw(Ys, gen)
        if self.sizing == "adaptive":  # the stopping rule runs where the samples are drawn
            est, used, below = (to_numpy(a) for a in bernstein_stop(
                lambda idx, t0, t1: draw(idx, t0, t1).astype(np.float64),
                m, self.eps, self.delta, 1.0, self.max_samples, floor=self._mu_floor))
            kev = used.copy()
            unstopped = np.flatnonzero(np.isnan(est))
            if unstopped.size:  # budget spent without a certified answer: the exact sum
                est[unstopped] = self._exact(Y[self._xp.asarray(unstopped)])
                kev[unstopped] += self.n
                below[unstopped] = est[unstopped] < self._mu_floor
            below |= est < (1.0 - self.eps) * self._mu_floor  # certified, but below the floor
            return est, below, kev, 0 * ones, ones, used
        s = self.n_samples
        rows = _config.block_shape(m, s, self.X.dtype.itemsize)[0]
        est = np.concatenate([to_numpy(median_of_means(draw(np.arange(r0, min(m, r0 + rows)), 0, s), self.n_groups,
                                                       self._xp)).astype(np.float64) for r0 in range(0, m, rows)])
        below = est < (1.0 - self.eps) * self._mu_floor
        return est, below, ones * s, 0 * ones, ones, ones * s
