"""Hashing-based estimator (Charikar and Siminelakis, FOCS 2017) with p-stable Euclidean LSH.

For a query ``q`` and a hash table ``h``, let ``B`` be the stored points in ``q``'s bucket.
One sample is ``Z = (W_B / s) k(X, q) / p(X, q)`` with ``X`` drawn from ``B`` in proportion to
its weight (``W_B`` the bucket's weight, ``s`` the number of stored points, ``p`` the exact
collision probability), or the whole-bucket form ``Z = (1/s) sum_{x in B} w_x k(x, q)/p(x, q)``.
Both are unbiased for ``mu(q)``; every table gives one independent sample (docs/math.md §2.2).

Layers: :class:`HashingBasedKDE` validates and builds; ``_query`` / ``_level_samples`` drive on
arrays; the per-bucket work comes from :data:`_BUCKET_KERNELS` (NumPy reference, numba twin in
``kdetheory._numba.kde``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import minimize_scalar

from .. import _config
from .._array import to_numpy
from .._validation import check_choice, check_int, check_positive
from ..lsh.euclidean import BucketTables, _log_p1, hash_points
from ._base import KDEEstimator, adaptive_search, density_levels, squared_distances, warn_exact_levels
from ._mom import bernstein_min_samples, bernstein_stop, median_of_means, mom_shape

__all__ = ["HashingBasedKDE", "HBELevel"]

#: Empirical relative-variance constant of the rehashing code: V(mu) = e^1.854 mu^-3/4 [C].
DEFAULT_VARIANCE_CONSTANT = math.exp(1.854)


@dataclasses.dataclass(frozen=True)
class HBELevel:
    """One density guess of :class:`HashingBasedKDE` and its tables.

    Attributes
    ----------
    budget : float
        Density guess ``mu_j`` (relative to the largest weight).
    k : int
        Hashes concatenated per key.
    width : float
        Bucket width ``w_j``.
    size : int
        Points stored per table (a fresh uniform subsample each).
    n_tables, group_size, n_groups : int
        Tables built; worst-case median-of-means shape (``group_size * n_groups`` tables).
    value_range : float
        Largest value one sample can take (``max_r k(r) / p(r)``; adaptive sizing's ``R``).
    cost : float
        Upper bound on one query's kernel + hash evaluations at this level (``inf`` when exact).
    exact : bool
        The level answers exactly (no tables).
    too_large : bool
        It answers exactly because its tables would exceed ``max_stored``.
    projections : (n_tables, k, d) float64 array or None
    offsets : (n_tables, k) float64 array or None
        Host float64 arrays; with CuPy data, device arrays in the data's dtype (the dtype the
        hash GEMM computes in, so a query casts nothing).
    tables : BucketTables, DeviceBucketTables (CuPy data) or None
    """

    budget: float
    k: int
    width: float
    size: int
    n_tables: int
    group_size: int
    n_groups: int
    value_range: float
    cost: float
    exact: bool
    too_large: bool = False
    projections: np.ndarray | None = None
    offsets: np.ndarray | None = None
    tables: BucketTables | None = None


def max_importance_weight(n_concat, width):
    """``max_r exp(-r^2) / p1(r / w)^k``: the largest ``k(x, q) / p(x, q)`` of a level.

    ``log`` of the ratio is ``-r^2 - k log p1(r/w)``: about ``+k sqrt(2/pi) r / w`` near 0 and
    ``+k log r`` far out, so its maximum lies below ``r = 2 max(k / w, sqrt(k)) + 5``. A grid
    locates it and a bounded scalar search refines it; 1e-9 relative is added for rounding.
    """
    hi = 2.0 * max(n_concat / width, math.sqrt(n_concat)) + 5.0
    r = np.linspace(0.0, hi, 4001)
    g = -r * r - n_concat * _log_p1(r / width)
    i = int(np.argmax(g))
    lo_r, hi_r = r[max(i - 1, 0)], r[min(i + 1, r.size - 1)]
    res = minimize_scalar(lambda x: x * x + n_concat * float(_log_p1(np.array(x / width))),
                          bounds=(lo_r, hi_r), method="bounded", options={"xatol": 1e-12})
    return math.exp(max(float(g[i]), -float(res.fun))) * (1.0 + 1e-9)


class HashingBasedKDE(KDEEstimator):
    """Charikar-Siminelakis hashing-based estimator with an adaptive density search.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`. ``backend="cupy"`` (CuPy inputs) keeps
        the tables, lookups, draws and kernel evaluations on the GPU (``kdetheory._cupy._hbe``;
        its docstring lists the few host steps). Form "sample" runs one fused launch per level and
        chunk of queries (``kdetheory/_cupy/hbe.cu``; ``_config.HBE_FUSED = False`` selects the
        step-by-step CuPy path, which gives the same values with the same seed).
    beta : float, default 0.5
        Collision profile ``p(r) ~ exp(-beta_j r)`` with ``beta_j = beta * t_j``,
        ``t_j = sqrt(ln(1/mu_j))`` in units where the kernel is ``exp(-r^2)``. ``beta = 1/2``
        minimises the worst case over two-shell instances (relative variance ``O(mu^-3/4)``);
        ``beta = 1`` is the rehashing choice and degrades towards ``1/mu`` (docs/math.md §2.3).
    variance_constant, variance_exponent : float, default e^1.854, 0.75
        Relative-variance model ``V(mu) = C mu^-a`` that sizes each level (worst-case sizing).
        The default is the rehashing code's empirical constant; it is conservative on clustered
        data (docs/math.md §2.3 measured ~20 at mu = 1e-3 where the model gives ~1100).
        The (1 +- eps) guarantee of worst-case sizing holds only if ``V`` bounds the truth.
    sizing : {"worst_case", "adaptive"}, default "worst_case"
        "worst_case": every query reads the ``group_size x n_groups`` tables sized by ``V``.
        "adaptive": the tables are read in growing batches until the empirical-Bernstein rule of
        :func:`~kdetheory.kde._mom.bernstein_stop` certifies ``(1 +- eps)`` (samples lie in
        ``[0, value_range]``, so no variance model is needed); a query that exhausts the level's
        tables answers exactly. Tables built per level: the worst-case count, capped where a
        query would cost ``n/4``. Samples lie in ``[0, R]`` with ``R ~ 1``, as for random sampling,
        so the rule needs about ``3 R ln(1/delta) / (eps mu)`` tables even at zero variance: it pays
        where the variance term dominates, i.e. at large ``eps mu``.
    form : {"sample", "bucket"}, default "sample"
        One weighted draw per bucket (1 kernel evaluation per table; CS17) or the whole bucket
        (``|B|`` kernel evaluations; never a higher variance).
    subsample : None, int or "auto", default "auto"
        Points stored per table ("lean tables", CS17): all ``n`` (None), a fixed number, or
        ``min(n, 16 / mu_j)`` at level ``j`` ("auto"); a fresh uniform subsample per table, the
        estimate scaled by ``1/s`` (still unbiased). Memory per level is then
        ``O(tables / mu_j)``, not ``O(tables n)``; subsampling adds at most ``1 / (s mu)`` to the
        relative variance, which is added to ``V``.
    level_ratio : float, default 2
        Density guesses ``mu_j = level_ratio^-(j+1)`` down to ``mu_min``.
    max_stored : int, default 2**26
        Largest number of hash values (``T k s`` keys plus ``T k d`` projection entries) of one
        level; a level that would exceed it answers exactly instead (one summary warning, and
        ``HBELevel.too_large``). The build holds at most the level's tables plus one chunk of
        ``_config.CHUNK_BYTES`` of temporaries.
    exact_fallback : bool, default True
        Answer exactly where the hashing would cost more than ``n/2`` kernel + hash evaluations: a
        level whose cost bound exceeds ``n/2`` is not built, and a query answers exactly once what it
        has spent plus the next level's bound exceeds ``n/2`` (so a query costs at most ``n/2``
        from the tables, or ``n/2 + n`` with the exact sum). False
        keeps every structure (to measure its cost and variance where exact would be cheaper).
        The bound counts one kernel evaluation per table, exact for form "sample" only.

    Notes
    -----
    Per level ``j`` (density guess ``mu_j``; docs/math.md §2.3, reconstructed):
    ``k_j = 3 ceil(R beta_j)`` concatenated hashes with ``R = sqrt(ln(1/mu_min))``, width
    ``w_j = sqrt(2/pi) k_j / beta_j``, and ``group_size x n_groups`` tables from
    :func:`~kdetheory.kde._mom.mom_shape` with relative variance ``V(mu_j)`` and failure
    probability ``delta/3`` per level (a query visits at most ~2 levels in range, plus false
    early acceptances that need a relative deviation >= 1). Levels whose acceptance threshold
    exceeds the largest possible density are skipped. The query accepts the first level whose
    estimate is ``>= level_ratio * mu_j`` and otherwise skips ahead
    (:func:`~kdetheory.kde._base.adaptive_search`).

    Guarantee (reconstructed, given ``V`` bounds the relative variance for worst-case sizing;
    unconditional for adaptive sizing): for ``mu(q) >= mu_min`` the estimate is within
    ``(1 +- eps) mu(q)`` with probability about ``1 - delta``. Cost per query at level ``j``:
    ``T_j`` tables, ``k_j`` hash evaluations and one kernel evaluation (form "sample") per
    table; ``T_j ~ eps^-2 log(1/delta) V(mu)``, so the measured ``tau`` is the exponent of ``V``
    (1/2 + o(1) in theory with ball-carving LSH, 3/4 for p-stable LSH in the worst case).

    References
    ----------
    Charikar, Siminelakis, "Hashing-based-estimators for kernel density in high dimensions",
    FOCS 2017; Datar et al., SoCG 2004 (p-stable LSH); Mnih, Szepesvari, Audibert, ICML 2008
    (empirical-Bernstein stopping); KDEformer (ICML 2023), Theorem 2.1.
    """

    _auto_backend = "numba"

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None, rng=None,
                 backend="auto", beta=0.5, variance_constant=DEFAULT_VARIANCE_CONSTANT,
                 variance_exponent=0.75, sizing="worst_case", form="sample", subsample="auto", level_ratio=2.0,
                 max_stored=2**26, exact_fallback=True):
        self.beta = check_positive("beta", beta)
        self.variance_constant = check_positive("variance_constant", variance_constant)
        self.variance_exponent = float(variance_exponent)
        if not 0 <= self.variance_exponent <= 1:
            raise ValueError(f"variance_exponent: got {variance_exponent!r}; pass a number in [0, 1].")
        self.sizing = check_choice("sizing", sizing, ("worst_case", "adaptive"))
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

    # ------------------------------------------------------------------------------ build

    def _plan(self, b):
        """The level for density guess ``b`` before its tables exist (no randomness)."""
        n, d = self.n, self.d
        R = math.sqrt(-math.log(self._mu_floor))
        t = math.sqrt(-math.log(b))
        beta_j = max(self.beta * t, 1e-3)
        k = max(1, 3 * math.ceil(R * beta_j))
        width = math.sqrt(2.0 / math.pi) * k / beta_j
        if self.subsample is None:
            s = n
        elif self.subsample == "auto":
            s = min(n, math.ceil(16.0 / b))
        else:
            s = min(n, self.subsample)
        V = self.variance(b) + (1.0 / (s * b) if s < n else 0.0)
        size, groups = mom_shape(V, self.eps, self.delta / 3.0)
        # Form "bucket" reads |B| points per table, which no a-priori bound short of s limits: its
        # cost is counted as one kernel per table, like form "sample" (its rule is nominal only).
        per_table = k + 1
        value_range = max_importance_weight(k, width)
        T = size * groups
        exact = False
        if self.sizing == "adaptive":
            # A quarter of n per level: two adaptive levels fit the search's hashing budget of n/2.
            T = min(T, max(1, n // (4 * per_table)))
            # Not even a zero-variance stream at density ratio * b could stop within T tables.
            exact = self.exact_fallback and T < bernstein_min_samples(self.eps, self.delta / 3.0, value_range,
                                                                      min(1.0, self.level_ratio * b))
        cost = T * per_table
        exact = exact or (self.exact_fallback and cost > 0.5 * n)
        too_large = not exact and T * k * (s + d) > self.max_stored
        return HBELevel(budget=b, k=k, width=width, size=s, n_tables=T, group_size=size, n_groups=groups,
                        value_range=value_range, cost=math.inf if exact or too_large else float(cost),
                        exact=exact or too_large, too_large=too_large)

    def _build(self):
        self.budgets = density_levels(self._mu_floor, self.level_ratio)
        self.levels = []
        cost = {"bytes": 0, "n_tables": 0, "hash_evaluations": 0}
        for b in self.budgets:
            level = self._plan(b)
            if not level.exact:
                level = self._build_level(level)
                cost["bytes"] += level.tables.nbytes + level.projections.nbytes + level.offsets.nbytes
                cost["n_tables"] += level.n_tables
                cost["hash_evaluations"] += level.n_tables * level.size * level.k
            self.levels.append(level)
        advice = [f"raise max_stored (now {self.max_stored})"]
        if self.subsample != "auto":
            advice.append("pass subsample='auto'")
        if self.sizing == "worst_case":
            advice.append("pass sizing='adaptive'")
            if self.variance_constant > 1.0:
                advice.append("lower variance_constant (the guarantee needs it to bound the variance)")
        if self.eps < 0.5:
            advice.append("raise eps")
        warn_exact_levels("HashingBasedKDE", [lev.budget for lev in self.levels if lev.too_large], advice)
        self._Xh = self._float64(self._Xs)
        return cost

    @property
    def _on_device(self):
        """Tables, draws and kernels stay in the namespace of the data (CuPy: on the GPU)."""
        return self.backend == "cupy"

    def _float64(self, A):
        """``A`` as float64 where the samples are computed: the device, or a contiguous host copy."""
        if self._on_device:
            return self._xp.asarray(A, dtype=np.float64)
        return np.ascontiguousarray(to_numpy(A), dtype=np.float64)

    def _build_level(self, level):
        """Draw the level's projections and subsamples and build its tables, one chunk of tables at a time."""
        gen, xp, n = self._rng, self._xp, self.n
        T, k, s, d = level.n_tables, level.k, level.size, self.d
        proj = gen.standard_normal((T, k, d)) / level.width
        offs = gen.random((T, k))
        # Keys fit in int32 unless a projection exceeds 2^31 (|<g, x>/w| <= ||x|| ||g|| / w): half the memory.
        bound = float(to_numpy(xp.sqrt((self._Xs * self._Xs).sum(axis=1)).max())) * \
            float(np.sqrt((proj * proj).sum(axis=2)).max()) + 2
        key_type = np.int32 if bound < 2**31 - 1 else np.int64
        # Large subsamples: hash all n points with one BLAS GEMM per chunk of tables and keep the
        # sampled rows (far faster than gathering s x d copies); small ones: gather, then hash.
        hash_all = 8 * s >= n
        width = n if hash_all else s
        chunk = _config.block_shape(T, width, self._Xs.dtype.itemsize, temporaries=8 * (d + k))[0]

        def chunks():
            for t0 in range(0, T, chunk):
                t1 = min(T, t0 + chunk)
                idx = np.broadcast_to(np.arange(n), (t1 - t0, n)) if s == n else \
                    np.stack([gen.choice(n, s, replace=False) for _ in range(t1 - t0)])
                if hash_all:
                    tc = t1 - t0
                    A = xp.asarray(proj[t0:t1].reshape(tc * k, d), dtype=self._Xs.dtype)
                    full = (self._Xs @ A.T).reshape(n, tc, k)  # one GEMM: every point, every table of the chunk
                    picked = full[xp.asarray(idx), xp.arange(tc)[:, None], :]  # (tc, s, k): table t's subsample
                    del full
                else:
                    A = xp.asarray(proj[t0:t1], dtype=self._Xs.dtype)
                    picked = xp.matmul(self._Xs[xp.asarray(idx)], A.transpose(0, 2, 1))
                picked += xp.asarray(offs[t0:t1, None, :], dtype=self._Xs.dtype)
                codes = xp.floor(picked).astype(key_type)
                yield (codes if self._on_device else to_numpy(codes)), idx

        if self._on_device:
            from .._cupy._hbe import DeviceBucketTables

            self._w_dev = xp.asarray(self._w_host)  # uploaded once; the tables' weights
            tables = DeviceBucketTables(chunks(), self._w_dev)
            # kept on the device in the hash GEMM's dtype: a query then uploads nothing but its row indices
            proj, offs = xp.asarray(proj, dtype=self._Xs.dtype), xp.asarray(offs, dtype=self._Xs.dtype)
        else:
            tables = BucketTables(chunks(), self._w_host)
        return dataclasses.replace(level, projections=proj, offsets=offs, tables=tables)

    # ------------------------------------------------------------------------------ query

    def samples(self, Y, *, level=-1, rng=None):
        """The raw per-table samples of one level (unbiased for ``mu``; to measure ``V(mu)``).

        Parameters
        ----------
        Y : (m, d) array
            Queries.
        level : int, default -1
            Index into :attr:`levels` (the last level is tuned to ``mu_min``); it must have tables.
        rng : None, int, SeedSequence or Generator, optional

        Returns
        -------
        (m, n_tables) float64 ndarray
            Sample ``t`` of query ``i`` uses table ``t`` alone; their mean is unbiased for ``mu``
            (in the units of the weights) and their relative variance is what :meth:`variance`
            models.
        """
        Ys, lev, gen = self._sampling_level(Y, level, rng)
        Yh = self._float64(Ys)
        return self._level_samples(lev, Ys, Yh, np.arange(Ys.shape[0]), gen, 0, lev.n_tables)[0] * self._w_scale

    def _query(self, Ys, Y, gen):
        Yh = self._float64(Ys)
        J = len(self.levels) - 1
        exact = (lambda idx: self._exact(Y[self._xp.asarray(idx)]))

        def estimate_level(j, idx):
            level = self.levels[j]
            if self.sizing == "worst_case":
                est, kev = self._level_estimates(level, Ys, Yh, idx, gen)
                used = np.full(idx.size, level.n_tables)
                return est, kev, used * level.k, used, np.zeros(idx.size, bool)
            kev = np.zeros(idx.size, dtype=np.int64)

            def draw(sub, t0, t1):
                Z, k_ev = self._level_samples(level, Ys, Yh, idx[sub], gen, t0, t1)
                if not self._on_device:
                    kev[sub] += k_ev
                    return Z
                # The stopping rule runs on the host: samples and counts come back in one transfer.
                both = to_numpy(self._xp.concatenate([Z, k_ev[:, None].astype(np.float64)], axis=1))
                kev[sub] += both[:, -1].astype(np.int64)
                return both[:, :-1]

            floor = self._mu_floor if j == J else self.level_ratio * level.budget
            est, used, low = bernstein_stop(draw, idx.size, self.eps, self.delta / 3.0, level.value_range,
                                            level.n_tables, floor=floor)
            final = np.isnan(est)  # tables exhausted without a certified answer: the exact sum
            if final.any():
                est[final] = exact(idx[final])
                kev[final] += self.n
            # at the last level "upper bound < mu_min" is a certified rejection: final, flagged below mu_min
            return est, kev, used * level.k, used, final | (low if j == J else False)

        return adaptive_search(Y.shape[0], self.budgets, self.level_ratio, self.eps, estimate_level, exact,
                               [lev.cost for lev in self.levels], self.n,
                               0.5 * self.n if self.exact_fallback else math.inf, self._mu_max)

    def _uniforms(self, gen, shape):
        """Uniforms of the draws: ``gen.random`` on the host; on the GPU from a device generator
        seeded by ``gen`` (:func:`kdetheory._cupy._hbe.device_uniforms`)."""
        if not self._on_device:
            return gen.random(shape)
        from .._cupy._hbe import device_uniforms

        return device_uniforms(gen, shape, self._xp)

    @property
    def _fused(self):
        """The fused GPU kernel answers (CuPy data, form "sample", ``_config.HBE_FUSED``); the NumPy
        stand-in of the device path runs the namespace functions it is tested against."""
        return self._on_device and self.form == "sample" and _config.HBE_FUSED and self._xp is not np

    def _level_estimates(self, level, Ys, Yh, idx, gen):
        """Worst-case sizing: the median-of-means estimate over all of the level's tables and the kernel
        evaluations of each query in ``idx``, as host arrays (device path: both in one transfer)."""
        if self._fused:
            out = self._xp.empty((2, idx.size))
            self._level_samples(level, Ys, Yh, idx, gen, 0, level.n_tables, n_groups=level.n_groups, out=out)
            est, kev = to_numpy(out)
            return est, kev.astype(np.int64)
        Z, kev = self._level_samples(level, Ys, Yh, idx, gen, 0, level.n_tables)
        if not self._on_device:
            return median_of_means(Z, level.n_groups, np), kev
        xp = self._xp  # the (m, T) samples stay on the device; one (2, m) array comes back
        est, kev = to_numpy(xp.stack([median_of_means(Z, level.n_groups, xp), kev.astype(np.float64)]))
        return est, kev.astype(np.int64)

    def _level_samples(self, level, Ys, Yh, idx, gen, t0, t1, n_groups=0, out=None):
        """(len(idx), t1 - t0) samples from tables ``t0 .. t1-1`` and kernel evaluations per query,
        chunked over queries to ``_config.CHUNK_BYTES``. Fused path only: ``out`` (2, len(idx)) receives
        the median of means over ``n_groups`` groups of tables (row 0) and the kernel evaluations (row 1)."""
        T, k, d = t1 - t0, level.k, self.d
        rows = _config.block_shape(idx.size, T, 8, temporaries=4 * (k + d + 4))[0]
        xp = self._xp if self._on_device else np
        Z = xp.empty((idx.size, T))
        kev = xp.empty(idx.size, dtype=np.int64)
        path = "device" if self._on_device else "numba" if self.backend == "numba" else "numpy"
        kernel = _BUCKET_KERNELS[path][self.form]
        weights = self._w_dev if self._on_device else self._w_host
        every_row = idx.size == Ys.shape[0] and np.array_equal(idx, np.arange(idx.size))
        for r0 in range(0, idx.size, rows):
            sel = idx[r0:r0 + rows]
            r1 = r0 + sel.size
            sel_x = xp.asarray(sel)  # uploaded once per chunk on the device
            Yc = Ys if every_row and sel.size == idx.size else Ys[self._xp.asarray(sel)]
            codes = hash_points(Yc, level.projections[t0:t1], level.offsets[t0:t1])
            u = self._uniforms(gen, (T, sel.size))  # drawn for both forms: same stream on every host backend
            if self._fused:
                from .._cupy._hbe import fused_sample_samples

                est_c, kev_c = (out[0, r0:r1], out[1, r0:r1]) if out is not None else (None, None)
                _, _, kev_c = fused_sample_samples(self._Xh, Yh, sel_x, level, codes, u, t0, n_groups,
                                                   Z=Z[r0:r1], est=est_c, kev=kev_c)
                if out is None:
                    kev[r0:r1] = kev_c
                continue
            Z[r0:r1], kev[r0:r1] = kernel(self._Xh, Yh[sel_x], weights, level, codes, u, t0)
        return Z, kev


def _sample_numpy(Xh, Yq, weights, level, codes, u, table0):
    """NumPy reference of the one-draw-per-bucket samples.

    Parameters
    ----------
    Xh, Yq : (n, d), (m, d) float64 ndarrays
        Rescaled data and queries.
    weights : (n,) float64 ndarray
        Normalised weights (unused: the bucket's weight and the weighted draw carry them).
    level : HBELevel
    codes : (T, m, k) int64 array
        Query keys in tables ``table0 ..``.
    u : (T, m) float64 ndarray
        Uniforms of the draws.
    table0 : int

    Returns
    -------
    Z : (m, T) float64 ndarray; kev : (m,) int64 ndarray
    """
    tab, s = level.tables, level.size
    bucket = tab.lookup(codes, "numpy", table0)
    T, m = bucket.shape
    Z = np.zeros((T, m))
    pos = tab.draw(bucket, u, table0)
    hit = pos >= 0
    qi = np.broadcast_to(np.arange(m), (T, m))[hit]
    r2 = squared_distances(Xh[tab.members[pos[hit]]], Yq[qi])
    Z[hit] = tab.bucket_weight[bucket[hit]] / s * _kernel_over_collision(r2, level.k, level.width)
    return Z.T, hit.sum(axis=0)


def _bucket_numpy(Xh, Yq, weights, level, codes, u, table0):
    """NumPy reference of the whole-bucket samples (same signature as :func:`_sample_numpy`)."""
    tab, s = level.tables, level.size
    bucket = tab.lookup(codes, "numpy", table0)
    T, m = bucket.shape
    Z = np.zeros((T, m))
    kev = np.zeros(m, dtype=np.int64)
    for t in range(T):
        q = np.flatnonzero(bucket[t] >= 0)
        pos, owner = tab.expand(bucket[t, q])
        qq = q[owner]
        a = tab.members[pos]
        vals = weights[a] * _kernel_over_collision(squared_distances(Xh[a], Yq[qq]), level.k, level.width)
        Z[t] = np.bincount(qq, weights=vals, minlength=m) / s
        kev += np.bincount(qq, minlength=m)
    return Z.T, kev


def _sample_numba(Xh, Yq, weights, level, codes, u, table0):
    """numba twin of :func:`_sample_numpy` (same draws, same values)."""
    from .._numba import kde as nk

    return nk.hbe_sample(Xh, Yq, level, level.tables.lookup(codes, "numba", table0), u, table0)


def _bucket_numba(Xh, Yq, weights, level, codes, u, table0):
    """numba twin of :func:`_bucket_numpy`."""
    from .._numba import kde as nk

    return nk.hbe_bucket(Xh, Yq, weights, level, level.tables.lookup(codes, "numba", table0))


def _sample_device(Xh, Yq, weights, level, codes, u, table0):
    """Device twin of :func:`_sample_numpy` (tables, draws and kernels stay on the GPU)."""
    from .._cupy._hbe import device_sample_samples

    return device_sample_samples(Xh, Yq, weights, level, codes, u, table0)


def _bucket_device(Xh, Yq, weights, level, codes, u, table0):
    """Device twin of :func:`_bucket_numpy`."""
    from .._cupy._hbe import device_bucket_samples

    return device_bucket_samples(Xh, Yq, weights, level, codes, u, table0)


#: backend -> form -> per-bucket kernel ("device": CuPy inputs, tables on the GPU)
_BUCKET_KERNELS = {"numpy": {"sample": _sample_numpy, "bucket": _bucket_numpy},
                   "numba": {"sample": _sample_numba, "bucket": _bucket_numba},
                   "device": {"sample": _sample_device, "bucket": _bucket_device}}


def _kernel_over_collision(r2, n_concat, width):
    """``k(x, q) / p(x, q) = exp(-r^2) / p1(r / w)^k`` for squared distances ``r2`` (the numba twin
    is ``kdetheory._numba.kde.kernel_over_collision``)."""
    return np.exp(-r2 - n_concat * _log_p1(np.sqrt(r2) / width))
