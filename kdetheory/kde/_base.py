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
import time

import numpy as np

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
    """

    estimate: object
    below_mu_min: np.ndarray
    kernel_evaluations: np.ndarray
    hash_evaluations: np.ndarray
    levels_visited: np.ndarray


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
    """Base class: validate, normalise ``rng`` once, build; then answer queries.

    Parameters
    ----------
    X : (n, d) array
        Data points (NumPy or CuPy, finite; float64 default, float32 kept).
    eps : float in (0, 1), default 0.1
        Target relative error.
    delta : float in (0, 1), default 0.05
        Target failure probability per query.
    mu_min : float in (0, 1], default 1e-3
        Smallest density the guarantee covers (``mu~`` in Theorem 2.1).
    bandwidth : float > 0, default 1.0
        ``h`` in ``exp(-||x - q||^2 / (2 h^2))``.
    weights : (n,) array, optional
        Non-negative weights; the density is ``(1/n) sum_j w_j k(x_j, q)``.
    rng : None, int, SeedSequence or Generator
        Randomness of the build and (unless ``query`` gets its own) of the queries.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute path (same seed, same answer on every backend).

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
        mu_min = check_positive("mu_min", mu_min)
        if mu_min > 1:
            raise ValueError(f"mu_min: got {mu_min!r}; pass a density guess in (0, 1].")
        self.mu_min = mu_min
        self.bandwidth = check_positive("bandwidth", bandwidth)
        X = check_matrix("X", X)
        self._xp = namespace(X, weights)
        self.weights = check_weights("weights", weights, X.shape[0], xp=self._xp, dtype=X.dtype)
        self.X = X
        self.backend = resolve_backend(backend, self._xp, auto=self._auto_backend)
        self._rng = as_generator(rng)
        # Rescaled so that the kernel is exp(-r^2) (SPEC section 2.3 notation).
        self._scale = 1.0 / (math.sqrt(2.0) * self.bandwidth)
        self._Xs = X * X.dtype.type(self._scale)
        self._w_host = to_numpy(self.weights).astype(np.float64)
        self._w_max = float(self._w_host.max())
        start = time.perf_counter()
        info = self._build() or {}
        self._preprocessing = PreprocessingCost(
            seconds=time.perf_counter() - start, bytes=int(info.get("bytes", 0)),
            n_tables=int(info.get("n_tables", 0)), kernel_evaluations=int(info.get("kernel_evaluations", 0)),
            hash_evaluations=int(info.get("hash_evaluations", 0)))

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
        est, below, kev, hev, lev = self._query(Ys, Y, gen)
        xp = namespace(Y)
        return KDEResult(estimate=to_namespace(est, xp), below_mu_min=np.asarray(to_numpy(below), dtype=bool),
                         kernel_evaluations=np.asarray(kev, dtype=np.int64),
                         hash_evaluations=np.asarray(hev, dtype=np.int64),
                         levels_visited=np.asarray(lev, dtype=np.int64))

    @abc.abstractmethod
    def _build(self):
        """Build the structure; return a dict with bytes, n_tables, kernel/hash evaluations."""

    @abc.abstractmethod
    def _query(self, Ys, Y, gen):
        """Return (estimate, below_mu_min, kernel_evaluations, hash_evaluations, levels_visited)."""

    def _sampling_level(self, Y, level, rng):
        """Inputs of a ``samples()`` call of a multi-level estimator: the scaled, validated queries,
        the level (which must use its tables, not the exact fallback) and the generator."""
        Y = check_matrix("Y", Y, dtype=self.X.dtype)
        check_same_columns("X", self.X, "Y", Y)
        lev = self.levels[level]
        if lev["exact"]:
            raise ValueError(f"level: got {level}, a level that answers exactly (it has no tables); pick one "
                             f"of {[i for i, l in enumerate(self.levels) if not l['exact']]}.")
        gen = self._rng if rng is None else as_generator(rng)
        return Y * Y.dtype.type(self._scale), lev, gen

    def _exact(self, Y):
        """Exact densities at the rows of ``Y`` (original coordinates), as a host float64 array."""
        from .exact import gaussian_kde

        backend = "numpy" if self.backend == "numba" and Y.shape[0] > 64 else self.backend
        return to_numpy(gaussian_kde(self.X, Y, bandwidth=self.bandwidth, weights=self.weights,
                                     backend=backend)).astype(np.float64)


def density_levels(mu_min, ratio):
    """Budget densities ``b_j = ratio^-(j+1)`` (the last clamped to ``mu_min``) of the adaptive search."""
    J = max(0, math.ceil(math.log(1.0 / mu_min) / math.log(ratio) - 1.0 - 1e-12))
    budgets = [ratio ** -(j + 1) for j in range(J)] + [mu_min]
    return budgets


def adaptive_search(m, budgets, ratio, eps, estimate_level):
    """Adaptive search over decreasing density guesses (CS17; SPEC section 2.2, reconstructed).

    Level ``j`` is tuned to densities ``>= b_j`` and accepts its estimate ``Z`` when
    ``Z >= ratio * b_j``; a rejected query skips ahead to the first level whose budget b_j is
    ``<= Z``. The last level (``b_J = mu_min``) accepts ``Z >= (1 - eps) mu_min`` and flags the rest
    ``below_mu_min``. An accepted estimate of a density below ``b_j`` needs a relative deviation
    ``>= 1`` (Chebyshev with ``eps = 1``) and is rare; a level whose density is in range answers
    within ``1 +- eps`` with the level's probability.

    Parameters
    ----------
    m : int
        Number of queries.
    budgets : list of float
        ``b_0 > b_1 > ... > b_J = mu_min``.
    estimate_level : callable ``(j, idx) -> (Z, kernel_evals, hash_evals, exact)``
        Estimates for the queries ``idx`` at level ``j``; ``exact`` True when ``Z`` is exact.

    Returns
    -------
    estimate, below, kernel_evaluations, hash_evaluations, levels_visited : (m,) ndarrays
    """
    J = len(budgets) - 1
    level = np.zeros(m, dtype=np.int64)
    done = np.zeros(m, dtype=bool)
    est = np.zeros(m)
    below = np.zeros(m, dtype=bool)
    kev = np.zeros(m, dtype=np.int64)
    hev = np.zeros(m, dtype=np.int64)
    lev = np.zeros(m, dtype=np.int64)
    log_ratio = math.log(ratio)
    for j in range(J + 1):
        idx = np.flatnonzero(~done & (level == j))
        if idx.size == 0:
            continue
        Z, k_j, h_j, exact = estimate_level(j, idx)
        est[idx] = Z
        kev[idx] += k_j
        hev[idx] += h_j
        lev[idx] += 1
        if exact:
            done[idx] = True
            below[idx] = Z < budgets[-1]
            continue
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
    return est, below, kev, hev, lev
