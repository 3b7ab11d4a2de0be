"""Weighted exponential KDE (Definition 3.1) by reduction to Gaussian KDE (Algorithm 2).

Reconstructed (docs/math.md §4, Algorithm 2): the published pseudocode was not available; this
is a derivation that meets the stated guarantee.

    S(y) = sum_j v_j e^{<x_j, y>} = e^{||y||^2/2} sum_j w_j e^{-||x_j - y||^2 / 2},
    w_j = v_j e^{||x_j||^2 / 2}.

Weights are split into classes J_l = {j : W_l / 2 < w_j <= W_l}, W_l = W 2^-l. Inside a class
the weight is made exact by one extra coordinate, x^_j = [x_j ; sqrt(2 ln(W_l / w_j))] and
y^ = [y ; 0], since w_j e^{-||x_j - y||^2/2} = W_l e^{-||x^_j - y^||^2/2}. Each class is then
an *unweighted* Gaussian KDE whose density at any query is at least e^{-(Delta^2 + 2 ln 2)/2}
(Delta = the diameter), which is what makes Theorem 2.1 applicable.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .._array import namespace, resolve_backend, to_numpy
from .._rng import as_generator
from .._stream import lse_products_on
from .._validation import (check_choice, check_matrix, check_open_unit, check_positive, check_same_columns,
                           check_weights, result_float_dtype)
from .exact import log_weights

__all__ = ["WeightedExpKDE", "WeightedExpKDEResult", "WeightClass", "ESTIMATORS", "resolve_estimator"]

#: Gaussian-KDE estimators available inside the reduction, by name.
ESTIMATORS = ("exact", "sampling", "hbe", "ckns")

#: The smallest exponent tau of any known Gaussian-KDE query time ``eps^-2 mu^-tau`` (Charikar,
#: Kapralov, Nouri, Siminelakis, FOCS 2020: tau = 0.173 + o(1)). A class of n points whose density
#: floor is below ``n^(-1/tau)`` cannot be estimated with fewer than n kernel evaluations by any
#: of them, so it is summed exactly (in the log domain) instead of handing the estimator a floor
#: that may underflow.
BEST_KDE_EXPONENT = 0.173


def _named_estimator(name):
    from . import ckns, exact, hbe, sampling

    return {
        "exact": exact.ExactKDE,
        "sampling": sampling.RandomSamplingKDE,
        "hbe": hbe.HashingBasedKDE,
        "ckns": ckns.CKNSKDE,
    }[name]


def resolve_estimator(argument, estimator):
    """Validate a Gaussian-KDE choice given by name or as a factory; return ``(factory, label)``.

    Parameters
    ----------
    argument : str
        The caller's argument name, for messages (``"estimator"``, ``"kde"``).
    estimator : str or callable
        One of :data:`ESTIMATORS`, or a callable ``f(X, *, eps, delta, mu_min, bandwidth, rng,
        backend)`` returning an object whose ``query(Y)`` answers a
        :class:`~kdetheory.kde.KDEResult` (a :class:`~kdetheory.kde.KDEEstimator` subclass, or
        ``functools.partial(HashingBasedKDE, variance_constant=0.01)`` to pass settings of its own).

    Returns
    -------
    (callable, str)
        The factory and a label (the name, or the factory's repr).
    """
    if isinstance(estimator, str):
        check_choice(argument, estimator, ESTIMATORS)
        return _named_estimator(estimator), estimator
    if callable(estimator):
        return estimator, repr(estimator)
    raise TypeError(
        f"{argument}: got {estimator!r} of type {type(estimator).__name__}; pass one of {ESTIMATORS} or an "
        "estimator factory such as functools.partial(HashingBasedKDE, variance_constant=0.01)."
    )


@dataclass(frozen=True)
class WeightClass:
    """One weight class ``J_l`` of Algorithm 2 (step 2).

    Attributes
    ----------
    log_W : float
        ``log W_l``: every member has ``W_l / 2 < w_j <= W_l``.
    points : (|J_l|, d + 1) float64 array
        The lifted points ``x^_j = [x_j ; sqrt(2 ln(W_l / w_j))]`` (step 3), in the namespace of
        the data (NumPy, or CuPy on the GPU).
    log_v : (|J_l|,) float64 array
        The members' ``log v_j``, for summing the class exactly in the log domain (namespace of
        the data).
    estimator : object or None
        The Gaussian KDE built on ``points``; None when the class is summed exactly (the
        ``"exact"`` estimator, or a density floor below what any estimator can beat, see
        :data:`BEST_KDE_EXPONENT`).
    """

    log_W: float
    points: np.ndarray
    log_v: np.ndarray
    estimator: object

    @property
    def size(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True)
class WeightedExpKDEResult:
    """Answer of :meth:`WeightedExpKDE.query`.

    Attributes
    ----------
    log_estimate : (m,) array
        ``log z_i`` (``-inf`` when every weight is zero). Use it when sums overflow. Its dtype is
        NumPy's promotion of the data, weights and queries (float32 only if all are float32).
    kernel_evaluations, hash_evaluations : (m,) int64 arrays
        Work per query, summed over the weight classes (exact classes and fallbacks included).
    classes_used : (m,) int64 array
        Classes evaluated per query (the rest were truncated as negligible).
    exact_fallbacks : (m,) int64 array
        Classes in which the Gaussian estimator reported a density below its ``mu_min`` and
        the class sum was computed exactly instead (never a silent wrong number).
    diameter : (m,) array
        The upper bound on ``max_j ||x_j - y_i||`` used for truncation and density bounds.
    exact_classes : (m,) int64 array
        Classes summed exactly by design (no estimator built for them), per query.
    """

    log_estimate: object
    kernel_evaluations: np.ndarray
    hash_evaluations: np.ndarray
    classes_used: np.ndarray
    exact_fallbacks: np.ndarray
    diameter: np.ndarray
    exact_classes: np.ndarray

    @property
    def estimate(self):
        """``z_i`` itself (may overflow to inf for huge inner products: use ``log_estimate``)."""
        xp = namespace(self.log_estimate)
        with np.errstate(over="ignore"):
            return xp.exp(self.log_estimate)


class WeightedExpKDE:
    """epsilon-approximate weighted exponential KDE (Definition 3.1) via Algorithm 2.

    Parameters
    ----------
    X : (n, d) array
        Data points ``x_j``.
    weights : (n,) array, optional
        Non-negative weights ``v_j``; ones by default. Exclusive with ``log_weights``.
    eps : float in (0, 1), default 0.1
        Relative accuracy: every answer satisfies ``(1 - eps) S_i <= z_i <= (1 + eps) S_i``.
    delta : float in (0, 1), default 0.05
        Failure probability per query (each class estimator gets ``delta / n_classes``).
    estimator : {"hbe", "ckns", "sampling", "exact"} or callable, default "hbe"
        The Gaussian KDE of Theorem 2.1 used inside each class, by name or as a factory called
        ``factory(X^, eps=, delta=, mu_min=, bandwidth=1.0, rng=, backend=)`` (e.g.
        ``functools.partial(HashingBasedKDE, variance_constant=0.01)``), see
        :func:`resolve_estimator`. ``"exact"`` sums every class exactly in the log domain.
    log_weights : (n,) array, optional
        ``log v_j`` (``-inf`` for zero weights), for weights that under- or overflow, such as
        ``D^-2`` in KDEformer's column norms.
    diameter : float >= 0, optional
        A known bound on ``max ||x_j - y_i||``. Sets the class estimators' density floor to the
        Theorem-3.3 value ``mu_min = e^{-(diameter^2 + 2 ln 2)/2}``, kept in the log domain (it
        underflows for diameters above about 38). 0 (identical points) is the easiest case.
        Without it the estimators search adaptively down to ``mu_min``.
    mu_min : float in (0, 1], default 1e-4
        Density floor of the adaptive search when ``diameter`` is not given. Classes whose
        density at a query is below it are evaluated exactly for that query (and counted).
    rng : None, int, SeedSequence or Generator
    backend : {"auto", "numpy", "numba", "cupy"}

    Notes
    -----
    Guarantee (Theorem 3.3, reconstructed): each class term is (1 +- eps/2)-accurate with
    probability ``1 - delta / L``; classes whose total weight is below
    ``(eps/2) W e^{-Delta_i^2/2}`` are truncated per query; so ``z_i`` is (1 +- eps)-accurate
    with probability ``>= 1 - delta``. Runtime
    ``O(L [P(n, mu, eps) + m d eps^-2 mu^-tau])`` with ``mu = e^{-Delta^2/2}/2`` and
    ``L = O(log(n/eps) + Delta^2)``: sub-linear per query only for bounded diameter. A class of
    ``n_l`` points whose floor is below ``n_l^(-1/0.173)`` (no known estimator beats n_l kernel
    evaluations there, :data:`BEST_KDE_EXPONENT`) is summed exactly and reported in
    ``exact_classes``. Everything is computed in the log domain, so weights may span hundreds
    of orders of magnitude and inner products may reach the thousands.

    Backends: the points, the lifted classes, their log-weights and the queries stay in the
    namespace of the data; with CuPy every class estimator is built on device points and the
    exact classes are summed on the device (``lse_products_on(backend="cupy")``). Only per-key
    and per-query vectors cross to the host: the squared norms that assign the weight classes
    (n floats), and per class the (m,)-vectors of estimates and counts, which are combined
    across classes in the log domain on the host (an ``L x m`` array) and returned in the
    data's namespace.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Definition 3.1, Algorithm 2, Theorem 3.3.
    """

    def __init__(self, X, weights=None, *, eps=0.1, delta=0.05, estimator="hbe", log_weights=None,
                 diameter=None, mu_min=1e-4, rng=None, backend="auto"):
        X = check_matrix("X", X)
        self.xp = namespace(X, weights, log_weights)
        self.eps = check_open_unit("eps", eps)
        self.delta = check_open_unit("delta", delta)
        self._factory, self.estimator = resolve_estimator("estimator", estimator)
        if diameter is not None:
            diameter = check_positive("diameter", diameter, allow_zero=True)
        if not (isinstance(mu_min, numbers.Real) and not isinstance(mu_min, bool) and 0 < float(mu_min) <= 1):
            raise ValueError(f"mu_min: got {mu_min!r}; pass a number in (0, 1].")
        self.backend = backend
        # where the exact class sums run: the data's device, or the host backend asked for
        self._exact_backend = resolve_backend(backend if backend in ("numpy", "numba") else "auto", np) \
            if self.xp is np else resolve_backend(backend, self.xp)
        self._rng = as_generator(rng)
        log_v, self.dtype = self._log_weights(X, weights, log_weights)
        self.n, self.d = X.shape
        # The density floor, in the log domain: e^{-(diameter^2 + 2 ln 2)/2} underflows for large diameters.
        self.log_mu_min = -0.5 * diameter * diameter - math.log(2.0) if diameter is not None else math.log(float(mu_min))
        self._build(X.astype(np.float64), log_v)

    @property
    def mu_min(self) -> float:
        """The density floor ``e^{log_mu_min}`` (0.0 where it underflows; the code uses the log)."""
        return math.exp(self.log_mu_min)

    def _log_weights(self, X, weights, log_w):
        """Host float64 ``log v`` and the result dtype (promotion of X and the weights)."""
        xp = self.xp
        if weights is not None and log_w is not None:
            raise ValueError("log_weights: got both weights and log_weights; pass only one of them.")
        if log_w is None:
            if weights is None:
                return np.zeros(X.shape[0]), X.dtype
            w = check_weights("weights", weights, X.shape[0], xp=xp, dtype=None)
            return log_weights(to_numpy(w).astype(np.float64), np), result_float_dtype(X, w)
        log_w = xp.asarray(log_w)
        if log_w.dtype.kind not in "fiu":
            raise TypeError(f"log_weights: got dtype {log_w.dtype}; pass real floating-point log-weights.")
        dtype = result_float_dtype(X, log_w)
        log_w = to_numpy(log_w).astype(np.float64)
        if log_w.shape != (X.shape[0],) or np.isnan(log_w).any() or np.isposinf(log_w).any():
            raise ValueError(
                f"log_weights: got shape {tuple(log_w.shape)} with NaN or +inf entries; pass ({X.shape[0]},) "
                "finite values or -inf for zero weights."
            )
        return log_w, dtype

    def _build(self, X, log_v):
        """Weight classes of the float64 points ``X`` (namespace of the data) and host ``log v``."""
        xp = self.xp
        live = np.isfinite(log_v)  # step 1: drop v_j = 0
        X_live, log_v = X[self._to_xp(live)], log_v[live]
        self.classes = []
        if not live.any():
            self.centre, self.radius = xp.zeros(X.shape[1]), 0.0
            return
        # w_j = v_j e^{||x_j||^2/2}; the n squared norms come to the host to assign the classes
        log_w = log_v + 0.5 * to_numpy(xp.sum(X_live**2, axis=1))
        self.log_w_max = float(log_w.max())
        # Class l holds W 2^-(l+1) < w_j <= W 2^-l (step 2).
        level = np.floor((self.log_w_max - log_w) / math.log(2)).astype(np.int64)
        self.centre = X_live.mean(axis=0)
        self.radius = float(xp.sqrt(xp.max(xp.sum((X_live - self.centre) ** 2, axis=1))))
        levels = np.unique(level)
        class_delta = self.delta / len(levels)
        for lvl, gen in zip(levels, self._rng.spawn(len(levels))):
            members = np.flatnonzero(level == lvl)
            log_W = self.log_w_max - lvl * math.log(2)
            # Extra coordinate sqrt(2 ln(W_l / w_j)) in [0, sqrt(2 ln 2)] (step 3).
            extra = np.sqrt(np.maximum(2.0 * (log_W - log_w[members]), 0.0))
            points = xp.hstack([X_live[self._to_xp(members)], self._to_xp(extra)[:, None]])
            est = None
            if self.estimator != "exact" and self.log_mu_min >= -math.log(members.size) / BEST_KDE_EXPONENT:
                est = self._factory(points, eps=self.eps / 2, delta=class_delta,
                                    mu_min=math.exp(self.log_mu_min), bandwidth=1.0, rng=gen, backend=self.backend)
                if not callable(getattr(est, "query", None)):
                    raise TypeError(f"estimator: the factory returned a {type(est).__name__} without a query(Y) "
                                    "method; return a Gaussian KDE estimator such as HashingBasedKDE.")
            self.classes.append(WeightClass(float(log_W), points, self._to_xp(log_v[members]), est))

    def _to_xp(self, a):
        return a if self.xp is np else self.xp.asarray(a)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def _exact_terms(self, cls, Y, sq_half):
        """``log sum_{j in J_l} v_j e^{<x_j, y>} - ||y||^2/2`` for rows of Y (float64, namespace of the data):
        the class term, exactly, in logs; a host (len(Y),) vector."""
        xp = self.xp
        lse = lse_products_on(self._exact_backend, Y, xp.ascontiguousarray(cls.points[:, :-1]), cls.log_v)[0]
        return to_numpy(lse).astype(np.float64) - sq_half

    def query(self, Y):
        """Answer ``z_i ~ sum_j v_j e^{<x_j, y_i>}`` for every row of ``Y``.

        Parameters
        ----------
        Y : (m, d) array
            Queries (same array type as ``X``).

        Returns
        -------
        WeightedExpKDEResult
        """
        Y = check_matrix("Y", Y)
        check_same_columns("X", np.empty((0, self.d)), "Y", Y)
        if namespace(Y) is not self.xp:
            raise ValueError(f"Y: got a {type(Y).__module__.split('.')[0]} array but X was a "
                             f"{self.xp.__name__} one; pass both as NumPy or both as CuPy arrays.")
        dtype = np.result_type(self.dtype, Y.dtype)
        xp = self.xp
        Y64 = Y.astype(np.float64)  # stays in the data's namespace; (m,)-vectors come to the host
        m = Y64.shape[0]
        kev, hev, used, fallbacks, exact = (np.zeros(m, dtype=np.int64) for _ in range(5))
        diam = self.radius + to_numpy(xp.sqrt(xp.sum((Y64 - self.centre) ** 2, axis=1)))  # >= max_j ||x_j - y_i||
        if not self.classes:
            return WeightedExpKDEResult(self._out(np.full(m, -np.inf), dtype), kev, hev, used, fallbacks, diam, exact)
        # Per-query truncation (step 2): drop the lightest classes while their total weight
        # sum_l W_l |J_l| stays below (eps/2) W e^{-Delta_i^2/2} <= (eps/2) * (heaviest term).
        log_mass = np.array([c.log_W + math.log(c.size) for c in self.classes])
        tail = np.logaddexp.accumulate(log_mass[::-1])[::-1]  # log of the mass of classes l..L-1
        budget = math.log(self.eps / 2) + self.log_w_max - 0.5 * diam**2
        sq_half = 0.5 * to_numpy(xp.sum(Y64**2, axis=1))
        Yhat = xp.hstack([Y64, xp.zeros((m, 1))])
        terms = np.full((len(self.classes), m), -np.inf)
        for c, cls in enumerate(self.classes):
            # Classes are ordered heaviest first, so the kept ones form a prefix: class c is
            # evaluated for query i unless the whole suffix c..L-1 is negligible for it.
            rows = np.flatnonzero(tail[c] > budget)
            if rows.size == 0:
                continue
            used[rows] += 1
            if cls.estimator is None:
                terms[c, rows] = self._exact_terms(cls, Y64[self._to_xp(rows)], sq_half[rows])
                kev[rows] += cls.size
                exact[rows] += 1
                continue
            res = cls.estimator.query(Yhat[self._to_xp(rows)])
            mu = to_numpy(res.estimate).astype(np.float64)
            low = to_numpy(res.below_mu_min).astype(bool)
            kev[rows] += to_numpy(res.kernel_evaluations).astype(np.int64)
            hev[rows] += to_numpy(res.hash_evaluations).astype(np.int64)
            with np.errstate(divide="ignore"):
                terms[c, rows] = cls.log_W + math.log(cls.size) + np.log(mu)
            if low.any():  # density under the floor: sum this class exactly for those queries
                terms[c, rows[low]] = self._exact_terms(cls, Y64[self._to_xp(rows[low])], sq_half[rows[low]])
                kev[rows[low]] += cls.size
                fallbacks[rows[low]] += 1
        log_z = sq_half + np.logaddexp.reduce(terms, axis=0)
        return WeightedExpKDEResult(self._out(log_z, dtype), kev, hev, used, fallbacks, diam, exact)

    def _out(self, log_z, dtype):
        return self._to_xp(log_z.astype(dtype))
