"""Hashing-based estimator (Charikar and Siminelakis, FOCS 2017) with p-stable Euclidean LSH.

For a query ``q`` and a hash table ``h``, let ``B`` be the stored points in ``q``'s bucket.
One sample is ``Z = (W_B / s) k(X, q) / p(X, q)`` with ``X`` drawn from ``B`` in proportion to
its weight (``W_B`` the bucket's weight, ``s`` the number of stored points, ``p`` the exact
collision probability), or the whole-bucket form ``Z = (1/s) sum_{x in B} w_x k(x, q)/p(x, q)``.
Both are unbiased for ``mu(q)``; every table gives one independent sample (SPEC section 2.2).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _config
from .._array import to_numpy
from .._validation import check_choice, check_int, check_positive
from ..lsh.euclidean import BucketTables, _log_p1, hash_points
from ._base import KDEEstimator, adaptive_search, density_levels
from ._mom import median_of_means, mom_shape

__all__ = ["HashingBasedKDE"]

#: Empirical relative-variance constant of the rehashing code: V(mu) = e^1.854 mu^-3/4 [C].
DEFAULT_VARIANCE_CONSTANT = math.exp(1.854)


class HashingBasedKDE(KDEEstimator):
    """Charikar-Siminelakis hashing-based estimator with an adaptive density search.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`.
    beta : float, default 0.5
        Collision profile ``p(r) ~ exp(-beta_j r)`` with ``beta_j = beta * t_j``,
        ``t_j = sqrt(ln(1/mu_j))`` in units where the kernel is ``exp(-r^2)``. ``beta = 1/2``
        minimises the worst case over two-shell instances (relative variance ``O(mu^-3/4)``);
        ``beta = 1`` is the rehashing choice and degrades towards ``1/mu`` (SPEC section 2.3).
    variance_constant, variance_exponent : float, default e^1.854, 0.75
        Relative-variance model ``V(mu) = C mu^-a`` that sizes each level. The default is the
        rehashing code's empirical constant; it is conservative on clustered data (SPEC
        section 2.3 measured ~20 at mu = 1e-3 where the model gives ~1100). Tune it to trade
        guarantee for speed; the (1 +- eps) guarantee holds only if ``V`` bounds the truth.
    form : {"sample", "bucket"}, default "sample"
        One weighted draw per bucket (1 kernel evaluation per table; CS17) or the whole bucket
        (``|B|`` kernel evaluations; never a higher variance).
    subsample : None, int or "auto", default "auto"
        Points stored per table: all ``n`` (None), a fixed number, or ``min(n, 16 / mu_j)``
        at level ``j`` ("auto"); a fresh uniform subsample per table, the estimate scaled by
        ``1/s``. Subsampling adds at most ``w_max / (s mu)`` to the relative variance, which is
        added to ``V``.
    level_ratio : float, default 2
        Density guesses ``mu_j = level_ratio^-(j+1)`` down to ``mu_min``.
    max_stored : int, default 2**26
        Largest number of hash values (``T k s`` keys plus ``T k d`` projection entries, 8 bytes
        each while building) of one level; a level that would exceed it answers exactly instead,
        with a warning.

    exact_fallback : bool, default True
        Answer a level exactly when its expected query cost reaches ``n`` kernel evaluations;
        False keeps the structure (to measure its cost and variance where exact would be cheaper).

    Notes
    -----
    Per level ``j`` (density guess ``mu_j``; SPEC section 2.3, reconstructed):
    ``k_j = 3 ceil(R beta_j)`` concatenated hashes with ``R = sqrt(ln(1/mu_min))``, width
    ``w_j = sqrt(2/pi) k_j / beta_j``, and ``group_size x n_groups`` tables from
    :func:`~kdetheory.kde._mom.mom_shape` with relative variance ``V(mu_j)`` and failure
    probability ``delta/3`` per level (a query visits at most ~2 levels in range, plus false
    early acceptances that need a relative deviation >= 1). A level whose query cost
    ``T_j (1 + k_j)`` (one kernel and ``k_j`` hashes per table, each ~``d`` flops) reaches the
    ``n`` kernel evaluations of the exact sum answers exactly. The query accepts the first level whose estimate is
    ``>= level_ratio * mu_j`` and otherwise skips ahead (:func:`~kdetheory.kde._base.adaptive_search`).

    Guarantee (reconstructed, given ``V`` bounds the relative variance): for ``mu(q) >= mu_min``
    the estimate is within ``(1 +- eps) mu(q)`` with probability about ``1 - delta``.
    Cost per query at level ``j``: ``T_j`` tables, ``k_j`` hash evaluations and one kernel
    evaluation (form "sample") per table; ``T_j ~ eps^-2 log(1/delta) V(mu)``, so the measured
    ``tau`` is the exponent of ``V`` (1/2 + o(1) in theory with ball-carving LSH, 3/4 for
    p-stable LSH in the worst case).

    References
    ----------
    Charikar, Siminelakis, "Hashing-based-estimators for kernel density in high dimensions",
    FOCS 2017; Datar et al., SoCG 2004 (p-stable LSH); KDEformer (ICML 2023), Theorem 2.1.
    """

    _auto_backend = "numba"

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None, rng=None,
                 backend="auto", beta=0.5, variance_constant=DEFAULT_VARIANCE_CONSTANT,
                 variance_exponent=0.75, form="sample", subsample="auto", level_ratio=2.0,
                 max_stored=2**26, exact_fallback=True):
        self.beta = check_positive("beta", beta)
        self.variance_constant = check_positive("variance_constant", variance_constant)
        self.variance_exponent = float(variance_exponent)
        if not 0 <= self.variance_exponent <= 1:
            raise ValueError(f"variance_exponent: got {variance_exponent!r}; pass a number in [0, 1].")
        self.form = check_choice("form", form, ("sample", "bucket"))
        if subsample not in (None, "auto"):
            subsample = check_int("subsample", subsample, minimum=1)
        self.subsample = subsample
        self.level_ratio = check_positive("level_ratio", level_ratio)
        if self.level_ratio <= 1:
            raise ValueError(f"level_ratio: got {level_ratio!r}; pass a number > 1.")
        self.max_stored = check_int("max_stored", max_stored, minimum=1)
        self.exact_fallback = bool(exact_fallback)
        super().__init__(X, eps=eps, delta=delta, mu_min=mu_min, bandwidth=bandwidth, weights=weights,
                         rng=rng, backend=backend)

    def variance(self, mu):
        """Relative-variance model ``V(mu) = variance_constant * mu^-variance_exponent``."""
        return self.variance_constant * mu ** -self.variance_exponent

    def _build(self):
        n, d = self.n, self.d
        self.budgets = density_levels(self.mu_min, self.level_ratio)
        R = math.sqrt(math.log(1.0 / self.mu_min))
        self.levels = []
        cost = {"bytes": 0, "n_tables": 0, "hash_evaluations": 0}
        for b in self.budgets:
            t = math.sqrt(math.log(1.0 / b))
            beta_j = max(self.beta * t, 1e-3)
            k = max(1, 3 * math.ceil(R * beta_j))
            width = math.sqrt(2.0 / math.pi) * k / beta_j
            if self.subsample is None:
                s = n
            elif self.subsample == "auto":
                s = min(n, math.ceil(16.0 / b))
            else:
                s = min(n, self.subsample)
            V = self.variance(b) + (self._w_max / (s * b) if s < n else 0.0)
            size, groups = mom_shape(V, self.eps, self.delta / 3.0)
            T = size * groups
            level = {"budget": b, "k": k, "width": width, "size": s, "n_tables": T,
                     "group_size": size, "n_groups": groups, "exact": self.exact_fallback and T * (1 + k) >= n}
            if not level["exact"] and T * k * (s + d) > self.max_stored:
                warnings.warn(f"HashingBasedKDE: level mu={b:.3g} needs {T} tables of {s} points, more than "
                              f"max_stored={self.max_stored}; it answers exactly. Raise eps, lower "
                              "variance_constant or pass a smaller subsample.", stacklevel=4)
                level["exact"] = True
            if not level["exact"]:
                self._build_level(level)
                cost["bytes"] += level["tables"].nbytes + level["projections"].nbytes
                cost["n_tables"] += T
                cost["hash_evaluations"] += T * s * k
            self.levels.append(level)
        self._Xh = np.ascontiguousarray(to_numpy(self._Xs), dtype=np.float64)
        return cost

    def _build_level(self, level):
        gen, xp, n = self._rng, self._xp, self.n
        T, k, s, d = level["n_tables"], level["k"], level["size"], self.d
        proj = gen.standard_normal((T, k, d)) / level["width"]
        offs = gen.random((T, k))
        members = np.empty((T, s), dtype=np.int64)
        # Keys fit in int32 unless a projection exceeds 2^31 (|<g, x>/w| <= ||x|| ||g|| / w): half the memory.
        bound = float(to_numpy(xp.sqrt((self._Xs * self._Xs).sum(axis=1)).max())) * \
            float(np.sqrt((proj * proj).sum(axis=2)).max()) + 2
        codes = np.empty((T, s, k), dtype=np.int32 if bound < 2**31 - 1 else np.int64)
        # Large subsamples: hash all n points with one BLAS GEMM per chunk of tables and keep the
        # sampled rows (far faster than gathering s x d copies); small ones: gather, then hash.
        hash_all = 8 * s >= n
        width = n if hash_all else s
        chunk = max(1, _config.CHUNK_BYTES // max(1, 4 * width * (d + k) * self._Xs.dtype.itemsize))
        for t0 in range(0, T, chunk):
            t1 = min(T, t0 + chunk)
            if s == n:
                idx = np.broadcast_to(np.arange(n), (t1 - t0, n))
            else:
                idx = np.stack([gen.choice(n, s, replace=False) for _ in range(t1 - t0)])
            members[t0:t1] = idx
            if hash_all:
                tc = t1 - t0
                A = xp.asarray(proj[t0:t1].reshape(tc * k, d), dtype=self._Xs.dtype)
                full = (self._Xs @ A.T).reshape(n, tc, k)  # one GEMM: every point, every table of the chunk
                rows = xp.asarray(idx)
                picked = full[rows, xp.arange(tc)[:, None], :]  # (tc, s, k): table t keeps its subsample
                picked += xp.asarray(offs[t0:t1, None, :], dtype=self._Xs.dtype)
                codes[t0:t1] = to_numpy(xp.floor(picked).astype(xp.int64))
                continue
            A = xp.asarray(proj[t0:t1], dtype=self._Xs.dtype)
            c = xp.floor(xp.matmul(self._Xs[xp.asarray(idx)], A.transpose(0, 2, 1))
                         + xp.asarray(offs[t0:t1, None, :], dtype=self._Xs.dtype))
            codes[t0:t1] = to_numpy(c.astype(xp.int64))
        level["projections"], level["offsets"] = proj, offs
        level["tables"] = BucketTables(codes, members, self._w_host)

    def samples(self, Y, *, level=-1, rng=None):
        """The raw per-table samples of one level (unbiased for ``mu``; to measure ``V(mu)``).

        Parameters
        ----------
        Y : (m, d) array
            Queries.
        level : int, default -1
            Index into :attr:`budgets` (the last level is tuned to ``mu_min``).
        rng : None, int, SeedSequence or Generator, optional

        Returns
        -------
        (m, n_tables) float64 ndarray
            Sample ``t`` of query ``i`` uses table ``t`` alone; their mean is unbiased and
            their relative variance is what :meth:`variance` models.
        """
        Ys, lev, gen = self._sampling_level(Y, level, rng)
        Yh = np.ascontiguousarray(to_numpy(Ys), dtype=np.float64)
        return self._level_samples(lev, Ys, Yh, np.arange(Ys.shape[0]), gen)[0]

    def _query(self, Ys, Y, gen):
        Yh = np.ascontiguousarray(to_numpy(Ys), dtype=np.float64)

        def estimate_level(j, idx):
            level = self.levels[j]
            if level["exact"]:
                return self._exact(Y[idx]), self.n, 0, True
            Z, kev = self._level_samples(level, Ys, Yh, idx, gen)
            est = median_of_means(Z, level["n_groups"])
            return est, kev, level["n_tables"] * level["k"], False

        est, below, kev, hev, lev = adaptive_search(Y.shape[0], self.budgets, self.level_ratio, self.eps,
                                                    estimate_level)
        return est.astype(self.X.dtype), below, kev, hev, lev

    def _level_samples(self, level, Ys, Yh, idx, gen):
        """(len(idx), T) samples and kernel evaluations per query, chunked over queries."""
        T, k, d = level["n_tables"], level["k"], self.d
        rows = max(1, _config.CHUNK_BYTES // max(1, 4 * T * (k + d + 4) * 8))
        Z = np.empty((idx.size, T))
        kev = np.empty(idx.size, dtype=np.int64)
        for r0 in range(0, idx.size, rows):
            sel = idx[r0:r0 + rows]
            codes = hash_points(Ys[self._xp.asarray(sel)], level["projections"], level["offsets"])
            u = gen.random((T, sel.size))  # drawn for both forms: same stream on every backend
            Z[r0:r0 + rows], kev[r0:r0 + rows] = self._bucket_samples(level, Yh[sel], codes, u)
        return Z, kev

    def _bucket_samples(self, level, Yq, codes, u):
        tab, s, k, w = level["tables"], level["size"], level["k"], level["width"]
        if self.backend == "numba":
            from .._numba import kde as nk

            bucket = tab.lookup(codes, "numba")
            if self.form == "sample":
                return nk.hbe_sample(self._Xh, Yq, tab.members, tab.first, tab.last, tab.bucket_ptr,
                                     tab.cdf_key, tab.bucket_weight, bucket, u, s, k, w)
            return nk.hbe_bucket(self._Xh, Yq, self._w_host, tab.members, tab.first, tab.last, bucket, s, k, w)
        bucket = tab.lookup(codes, "numpy")
        T, m = bucket.shape
        Z = np.zeros((T, m))
        if self.form == "sample":
            pos = tab.draw(bucket, u)
            hit = pos >= 0
            qi = np.broadcast_to(np.arange(m), (T, m))[hit]
            r2 = _sqdist(self._Xh[tab.members[pos[hit]]], Yq[qi])
            Z[hit] = tab.bucket_weight[bucket[hit]] / s * _kernel_over_collision(r2, k, w)
            return Z.T, hit.sum(axis=0)
        kev = np.zeros(m, dtype=np.int64)
        for t in range(T):
            q = np.flatnonzero(bucket[t] >= 0)
            pos, owner = tab.expand(bucket[t, q])
            qq = q[owner]
            a = tab.members[pos]
            r2 = _sqdist(self._Xh[a], Yq[qq])
            vals = self._w_host[a] * _kernel_over_collision(r2, k, w)
            Z[t] = np.bincount(qq, weights=vals, minlength=m) / s
            kev += np.bincount(qq, minlength=m)
        return Z.T, kev


def _kernel_over_collision(r2, n_concat, width):
    """``k(x, q) / p(x, q) = exp(-r^2) / p1(r / w)^k`` for squared distances ``r2`` (the numba twin
    is ``kdetheory._numba.kde.kernel_over_collision``)."""
    return np.exp(-r2 - n_concat * _log_p1(np.sqrt(r2) / width))


def _sqdist(A, B):
    """Row-wise squared distances of two (p, d) arrays (differences first: no cancellation)."""
    D = A - B
    return np.einsum("ij,ij->i", D, D)
