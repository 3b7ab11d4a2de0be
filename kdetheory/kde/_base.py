"""The common interface of the fast KDE estimators (Theorem 2.1): preprocess once, query many.

Every estimator answers ``mu_X(q) = (1/n) sum_j w_j exp(-||x_j - q||^2 / (2 h^2))`` and returns a
:class:`KDEResult` that counts its work (kernel evaluations, hash evaluations, density levels),
so that the exponent ``tau`` of Theorem 2.1 (query cost ~ d eps^-2 mu^-tau) can be measured.
Internally the points are rescaled by ``1/(sqrt(2) h)`` so that the kernel is ``exp(-r^2)``.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import numbers
import time
import warnings

import numpy as np

from .. import _config
from .._array import namespace, resolve_backend, to_namespace, to_numpy
from .._rng import as_generator
from .._validation import (check_matrix, check_open_unit, check_positive, check_same_columns,
                           check_weights)

__all__ = ["KDEResult", "PreprocessingCost", "KDEEstimator"]


@dataclasses.dataclass(frozen=True)
class KDEResult:
    """Answers of an approximate KDE query and what they cost.

    Attributes
    ----------
    estimate : (m,) array
        Density estimates, same array type as the queries.
    below_mu_min : (m,) bool ndarray
        True where the estimator found the density below ``mu_min`` (the estimate is then
        not covered by the (1 +- eps) guarantee).
    kernel_evaluations : (m,) int64 ndarray
        Kernel values ``k(x, q)`` computed per query.
    hash_evaluations : (m,) int64 ndarray
        Scalar hash values ``h_i(q)`` computed per query (``k`` per table).
    levels_visited : (m,) int64 ndarray
        Density guesses tried per query (1 for non-adaptive estimators).
    samples : (m,) int64 ndarray
        Independent random samples (kernel samples, hash tables or copies) averaged per query,
        over every level visited; 0 for an exact answer. With ``sizing="adaptive"`` this is where
        the data-dependent budget shows.
    """

    estimate: object
    below_mu_min: np.ndarray
    kernel_evaluations: np.ndarray
    hash_evaluations: np.ndarray
    levels_visited: np.ndarray
    samples: np.ndarray


@dataclasses.dataclass(frozen=True)
class PreprocessingCost:
    """What building an estimator cost.

    Attributes
    ----------
    seconds : float
        Wall-clock build time.
    bytes : int
        Memory held by the built structure (beyond the data itself).
    n_tables : int
        Hash tables built.
    kernel_evaluations : int
        Kernel values computed while building.
    hash_evaluations : int
        Scalar hash values computed while building (``k`` per stored point per table).
    """

    seconds: float
    bytes: int
    n_tables: int
    kernel_evaluations: int
    hash_evaluations: int


class KDEEstimator(abc.ABC):
    """Base class: validate, normalise ``rng`` and the weights once, build; then answer queries.

    Three layers: ``__init__`` and :meth:`query` validate (the public layer); the subclasses'
    ``_build`` / ``_query`` drive on arrays, with weights normalised to maximum 1; their per-bucket
    kernels come from one table per routine (NumPy reference and numba twin).

    Parameters
    ----------
    X : (n, d) array
        Data points (NumPy or CuPy, finite; float64 default, float32 kept).
    eps : float in (0, 1), default 0.1
        Target relative error.
    delta : float in (0, 1), default 0.05
        Target failure probability per query.
    mu_min : float in (0, max(1, max(weights))], default 1e-3
        Smallest density the guarantee covers (``mu~`` in Theorem 2.1), in the units of the weights.
    bandwidth : float > 0, default 1.0
        ``h`` in ``exp(-||x - q||^2 / (2 h^2))``.
    weights : (n,) array, optional
        Non-negative weights; the density is ``(1/n) sum_j w_j k(x_j, q)``. They are divided by
        their maximum internally (relative errors are scale free) and the estimates scaled back,
        so weights of 1e-100 or 1e300 behave like their normalised copy; ``mu_min`` is in the
        units of the weights. All-zero weights give density 0 everywhere.
    rng : None, int, SeedSequence or Generator
        Randomness of the build and (unless ``query`` gets its own) of the queries.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute path (same seed, same answer on every backend).

    Raises
    ------
    ValueError
        Bad arguments, or ``mu_min`` below what float64 can represent relative to the largest
        weight (``mu_min / max(weights) < 2.2e-308``).

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Theorem 2.1; Charikar, Kapralov, Nouri,
    Siminelakis, FOCS 2020.
    """

    #: what backend="auto" means on the host for this estimator
    _auto_backend = "numpy"

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None,
                 rng=None, backend="auto"):
        self.eps = check_open_unit("eps", eps)
        self.delta = check_open_unit("delta", delta)
        self.mu_min = check_positive("mu_min", mu_min)
        self.bandwidth = check_positive("bandwidth", bandwidth)
        X = check_matrix("X", X)
        self._xp = namespace(X, weights)
        self.weights = check_weights("weights", weights, X.shape[0], xp=self._xp, dtype=X.dtype)
        self.X = X
        self.backend = resolve_backend(backend, self._xp, auto=self._auto_backend)
        self._rng = as_generator(rng)
        # Rescaled so that the kernel is exp(-r^2) (docs/math.md §2.3 notation).
        self._scale = 1.0 / (math.sqrt(2.0) * self.bandwidth)
        self._Xs = X * X.dtype.type(self._scale)
        self._init_weights(weights)
        start = time.perf_counter()
        info = self._build() or {}
        self._preprocessing = PreprocessingCost(
            seconds=time.perf_counter() - start, bytes=int(info.get("bytes", 0)),
            n_tables=int(info.get("n_tables", 0)), kernel_evaluations=int(info.get("kernel_evaluations", 0)),
            hash_evaluations=int(info.get("hash_evaluations", 0)))

    def _init_weights(self, weights):
        """Normalise the weights to maximum 1 (``_w``, ``_w_host``) and set the internal density
        floor ``_mu_floor = min(1, mu_min / w_max)``: every estimator works on densities <= 1."""
        w_host = to_numpy(self.weights).astype(np.float64)
        w_max = float(w_host.max())
        # All-zero weights: the structure is built on unit weights and every estimate scaled by 0.
        self._w_scale = w_max
        unit = w_host / w_max if w_max > 0 else np.ones_like(w_host)
        self._w_host = unit
        self._w = self._xp.asarray(unit, dtype=self.X.dtype)
        if self.mu_min > max(1.0, w_max):
            raise ValueError(f"mu_min: got {self.mu_min!r}, but no density exceeds max(1, largest weight) = "
                             f"{max(1.0, w_max):.3g}; pass a density guess at most that.")
        floor = self.mu_min / w_max if w_max > 0 else 1.0
        if floor < np.finfo(np.float64).tiny:
            of = "" if weights is None else f" relative to the largest weight {w_max:.3g}"
            raise ValueError(
                f"mu_min: got {self.mu_min!r}{of}; densities below 2.2e-308 times the largest weight are "
                "not representable in float64 (1/mu_min overflows); pass mu_min >= "
                f"{np.finfo(np.float64).tiny * max(w_max, 1e-300):.3g}.")
        self._mu_floor = min(1.0, floor)
        #: the largest density the normalised weights allow (kernel values are <= 1)
        self._mu_max = float(unit.mean())

    @property
    def n(self) -> int:
        """Number of data points."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Dimension of the data."""
        return int(self.X.shape[1])

    @property
    def preprocessing(self) -> PreprocessingCost:
        """Cost of the build."""
        return self._preprocessing

    def query(self, Y, *, rng=None) -> KDEResult:
        """Approximate densities at the rows of ``Y``.

        Parameters
        ----------
        Y : (m, d) array
            Queries, same namespace and dimension as ``X``.
        rng : None, int, SeedSequence or Generator, optional
            Randomness of this call; by default the estimator's own generator is advanced.

        Returns
        -------
        KDEResult
        """
        Y = check_matrix("Y", Y, dtype=self.X.dtype)
        check_same_columns("X", self.X, "Y", Y)
        namespace(self.X, Y)  # raises on mixed NumPy / CuPy
        gen = self._rng if rng is None else as_generator(rng)
        Ys = Y * Y.dtype.type(self._scale)
        xp = namespace(Y)
        m = Y.shape[0]
        if self._w_scale == 0:  # every weight zero: the density is 0, nothing to sample
            zeros = np.zeros(m, dtype=np.int64)
            return KDEResult(estimate=xp.zeros(m, dtype=Y.dtype), below_mu_min=np.ones(m, dtype=bool),
                             kernel_evaluations=zeros, hash_evaluations=zeros, levels_visited=zeros, samples=zeros)
        est, below, kev, hev, lev, used = self._query(Ys, Y, gen)
        # Scaling back by the largest weight: a Python float keeps float32 estimates float32.
        est = to_namespace(est, xp).astype(Y.dtype, copy=False) * self._w_scale
        return KDEResult(estimate=est, below_mu_min=np.asarray(to_numpy(below), dtype=bool),
                         kernel_evaluations=np.asarray(kev, dtype=np.int64),
                         hash_evaluations=np.asarray(hev, dtype=np.int64),
                         levels_visited=np.asarray(lev, dtype=np.int64), samples=np.asarray(used, dtype=np.int64))

    @abc.abstractmethod
    def _build(self):
        """Build the structure; return a dict with bytes, n_tables, kernel/hash evaluations."""

    @abc.abstractmethod
    def _query(self, Ys, Y, gen):
        """Driver on normalised weights: return (estimate, below_mu_min, kernel_evaluations,
        hash_evaluations, levels_visited, samples), the estimate relative to the largest weight."""

    def _sampling_level(self, Y, level, rng):
        """Inputs of a ``samples()`` call of a multi-level estimator: the scaled, validated queries,
        the level (which must use its tables, not the exact fallback) and the generator."""
        Y = check_matrix("Y", Y, dtype=self.X.dtype)
        check_same_columns("X", self.X, "Y", Y)
        hashed = [i for i, lev in enumerate(self.levels) if not lev.exact]
        if not hashed:
            raise ValueError(f"level: got {level!r}, but every level of this estimator answers exactly (none "
                             "has tables to sample); build it with exact_fallback=False or a larger eps.")
        if isinstance(level, bool) or not isinstance(level, numbers.Integral) \
                or not -len(self.levels) <= level < len(self.levels):
            raise ValueError(f"level: got {level!r}; pass an int index into the {len(self.levels)} levels "
                             f"(-{len(self.levels)} .. {len(self.levels) - 1}); levels with tables: {hashed}.")
        lev = self.levels[level]
        if lev.exact:
            raise ValueError(f"level: got {level}, a level that answers exactly (it has no tables); pick one "
                             f"of {hashed}.")
        gen = self._rng if rng is None else as_generator(rng)
        return Y * Y.dtype.type(self._scale), lev, gen

    def _exact(self, Y):
        """Exact densities (normalised weights) at the rows of ``Y`` (original coordinates), host float64."""
        from .exact import gaussian_kde

        backend = "numpy" if self.backend == "numba" and Y.shape[0] > 64 else self.backend
        return to_numpy(gaussian_kde(self.X, Y, bandwidth=self.bandwidth, weights=self._w,
                                     backend=backend)).astype(np.float64)


def squared_distances(A, B):
    """Row-wise ``||a_i - b_i||^2`` of two (p, d) arrays, by differences (no cancellation, never < 0)."""
    D = A - B
    return namespace(D).einsum("ij,ij->i", D, D)


def gathered_squared_distances(X, Y, idx):
    """``||x_idx[i, s] - y_i||^2`` for an (m, s) index array, by differences (no cancellation, never
    < 0), chunked over queries to ``_config.CHUNK_BYTES``.

    Parameters
    ----------
    X : (n, d) array
    Y : (m, d) array, same namespace as ``X`` (NumPy or CuPy)
    idx : (m, s) int array (host, or the namespace of ``X``)

    Returns
    -------
    (m, s) array in the namespace of ``X``, dtype the promotion of ``X`` and ``Y``.
    """
    xp = namespace(X, Y)
    idx = xp.asarray(idx)
    m, s = idx.shape
    out = xp.empty((m, s), dtype=np.result_type(X.dtype, Y.dtype))
    rows = _config.block_shape(m, s, out.dtype.itemsize, temporaries=2 * X.shape[1])[0]
    for r0 in range(0, m, rows):
        D = X[idx[r0:r0 + rows]] - Y[r0:r0 + rows, None, :]
        out[r0:r0 + rows] = xp.einsum("msd,msd->ms", D, D)
    return out


def density_levels(mu_min, ratio):
    """Budget densities ``b_j = ratio^-(j+1)`` (the last clamped to ``mu_min``) of the adaptive search."""
    J = max(0, math.ceil(-math.log(mu_min) / math.log(ratio) - 1.0 - 1e-12))
    return [ratio ** -(j + 1) for j in range(J)] + [mu_min]


def warn_exact_levels(owner, budgets, advice):
    """One summary warning for the levels of a multi-level estimator that answer exactly because
    their structure would be too large (``budgets``: their density guesses; ``advice``: the
    changes that would shrink them, already filtered to those that apply)."""
    if budgets:
        warnings.warn(f"{owner}: {len(budgets)} level(s) (density guesses {max(budgets):.3g} .. {min(budgets):.3g}) "
                      f"would exceed max_stored and answer exactly; to hash them {'; or '.join(advice)}.",
                      stacklevel=5)


def adaptive_search(m, budgets, ratio, eps, estimate_level, exact, level_cost, n, budget, mu_max=1.0):
    """Adaptive search over decreasing density guesses (CS17; docs/math.md §2.2, reconstructed).

    Level ``j`` is tuned to densities ``>= b_j`` and accepts its estimate ``Z`` when
    ``Z >= ratio * b_j``; a rejected query skips ahead to the first level whose budget b_j is
    ``<= Z``. The last level (``b_J = mu_min``) accepts ``Z >= (1 - eps) mu_min`` and flags the rest
    ``below_mu_min``. An accepted estimate of a density below ``b_j`` needs a relative deviation
    ``>= 1`` (Chebyshev with ``eps = 1``) and is rare; a level whose density is in range answers
    within ``1 +- eps`` with the level's probability.

    Two rules keep the search from costing much more than the exact sum: levels whose acceptance
    threshold ``ratio * b_j`` reaches the largest possible density ``mu_max`` are skipped (they
    could only accept by a deviation), and a query answers exactly instead of trying level ``j``
    once the work already spent plus the level's cost bound exceeds ``budget`` (``n/2`` when the
    estimators' exact fallback is on). So an answer from the structure costs at most ``budget``
    kernel + hash evaluations, and one that falls back to the exact sum at most ``budget + n``.

    Parameters
    ----------
    m : int
        Number of queries.
    budgets : list of float
        ``b_0 > b_1 > ... > b_J = mu_min``.
    estimate_level : callable ``(j, idx) -> (Z, kernel_evals, hash_evals, samples, final)``
        Estimates for the queries ``idx`` at the (hashed) level ``j``; ``final`` (bool per query)
        marks answers that are already exact (the search stops there).
    exact : callable ``idx -> Z``
        Exact densities of the queries ``idx`` (``n`` kernel evaluations each).
    level_cost : sequence of float
        Upper bound on the kernel + hash evaluations of one query at each level (``inf`` for a
        level that has no structure and always answers exactly).
    n : int
        Cost of the exact answer.
    budget : float
        Work a query may spend on the structure (``inf``: never replaced by the exact sum).
    mu_max : float
        Largest density the data allow.

    Returns
    -------
    estimate, below, kernel_evaluations, hash_evaluations, levels_visited, samples : (m,) ndarrays
    """
    J = len(budgets) - 1
    start = next((j for j in range(J) if ratio * budgets[j] < mu_max), J)
    level = np.full(m, start, dtype=np.int64)
    done = np.zeros(m, dtype=bool)
    est = np.zeros(m)
    below = np.zeros(m, dtype=bool)
    kev, hev, lev, used = (np.zeros(m, dtype=np.int64) for _ in range(4))
    log_ratio = math.log(ratio)
    for j in range(start, J + 1):
        idx = np.flatnonzero(~done & (level == j))
        if idx.size == 0:
            continue
        lev[idx] += 1
        to_exact = kev[idx] + hev[idx] + level_cost[j] > budget if math.isfinite(level_cost[j]) else \
            np.ones(idx.size, dtype=bool)
        if to_exact.any():
            ex = idx[to_exact]
            est[ex] = exact(ex)
            kev[ex] += n
            done[ex] = True
            below[ex] = est[ex] < budgets[-1]
            idx = idx[~to_exact]
            if idx.size == 0:
                continue
        Z, k_j, h_j, s_j, final = estimate_level(j, idx)
        est[idx] = Z
        kev[idx] += k_j
        hev[idx] += h_j
        used[idx] += s_j
        if final.any():
            done[idx[final]] = True
            below[idx[final]] = Z[final] < budgets[-1]
            Z, idx = Z[~final], idx[~final]
        threshold = (1.0 - eps) * budgets[-1] if j == J else ratio * budgets[j]
        accept = Z >= threshold
        done[idx[accept]] = True
        rejected = idx[~accept]
        if j == J:
            below[rejected] = True
            done[rejected] = True
            continue
        Zr = Z[~accept]
        with np.errstate(divide="ignore"):
            jump = np.where(Zr > 0, np.ceil(-np.log(np.where(Zr > 0, Zr, 1.0)) / log_ratio - 1e-12), J)
        level[rejected] = np.clip(jump, j + 1, J).astype(np.int64)
    return est, below, kev, hev, lev, used
