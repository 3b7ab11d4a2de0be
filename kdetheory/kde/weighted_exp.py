"""Weighted exponential KDE (Definition 3.1) by reduction to Gaussian KDE (Algorithm 2).

Reconstructed (SPEC section 4, Algorithm 2): the published pseudocode was not available; this
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

from .._array import namespace, to_numpy
from .._rng import as_generator
from .._validation import check_choice, check_matrix, check_open_unit, check_positive, check_same_columns, check_weights
from .exact import log_weights

__all__ = ["WeightedExpKDE", "WeightedExpKDEResult", "ESTIMATORS"]

#: Gaussian-KDE estimators available inside the reduction, by name.
ESTIMATORS = ("exact", "sampling", "hbe", "ckns")


def _gaussian_estimator_class(name):
    from . import ckns, exact, hbe, sampling

    return {
        "exact": exact.ExactKDE,
        "sampling": sampling.RandomSamplingKDE,
        "hbe": hbe.HashingBasedKDE,
        "ckns": ckns.CKNSKDE,
    }[name]


@dataclass(frozen=True)
class WeightedExpKDEResult:
    """Answer of :meth:`WeightedExpKDE.query`.

    Attributes
    ----------
    log_estimate : (m,) array
        ``log z_i`` (``-inf`` when every weight is zero). Use it when sums overflow.
    kernel_evaluations, hash_evaluations : (m,) int64 arrays
        Work per query, summed over the weight classes (exact fallbacks included).
    classes_used : (m,) int64 array
        Classes evaluated per query (the rest were truncated as negligible).
    exact_fallbacks : (m,) int64 array
        Classes in which the Gaussian estimator reported a density below its ``mu_min`` and
        the class sum was computed exactly instead (never a silent wrong number).
    diameter : (m,) array
        The upper bound on ``max_j ||x_j - y_i||`` used for truncation and density bounds.
    """

    log_estimate: object
    kernel_evaluations: np.ndarray
    hash_evaluations: np.ndarray
    classes_used: np.ndarray
    exact_fallbacks: np.ndarray
    diameter: np.ndarray

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
    estimator : {"hbe", "ckns", "sampling", "exact"}, default "hbe"
        The Gaussian KDE of Theorem 2.1 used inside each class.
    log_weights : (n,) array, optional
        ``log v_j`` (``-inf`` for zero weights), for weights that under- or overflow, such as
        ``D^-2`` in KDEformer's column norms.
    diameter : float, optional
        A known bound on ``max ||x_j - y_i||``. Sets the class estimators' density floor to the
        Theorem-3.3 value ``mu_min = e^{-(diameter^2 + 2 ln 2)/2}``. Without it the estimators
        search adaptively down to ``mu_min``.
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
    ``L = O(log(n/eps) + Delta^2)``: sub-linear per query only for bounded diameter.
    Everything is computed in the log domain, so weights may span hundreds of orders of
    magnitude.

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
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        if diameter is not None:
            diameter = check_positive("diameter", diameter)
        if not (isinstance(mu_min, numbers.Real) and 0 < float(mu_min) <= 1):
            raise ValueError(f"mu_min: got {mu_min!r}; pass a number in (0, 1].")
        self.backend = backend
        self._rng = as_generator(rng)
        log_v = self._log_weights(X, weights, log_weights)
        self.n, self.d = X.shape
        self._build(to_numpy(X), to_numpy(log_v), diameter, float(mu_min))

    def _log_weights(self, X, weights, log_w):
        xp = self.xp
        if weights is not None and log_w is not None:
            raise ValueError("log_weights: got both weights and log_weights; pass only one of them.")
        if log_w is None:
            return log_weights(check_weights("weights", weights, X.shape[0], xp=xp, dtype=X.dtype), xp)
        log_w = xp.asarray(log_w, dtype=X.dtype)
        if log_w.shape != (X.shape[0],) or bool(xp.isnan(log_w).any()) or bool(xp.isposinf(log_w).any()):
            raise ValueError(
                f"log_weights: got shape {tuple(log_w.shape)} with NaN or +inf entries; pass ({X.shape[0]},) "
                "finite values or -inf for zero weights."
            )
        return log_w

    def _build(self, X, log_v, diameter, mu_min):
        live = np.isfinite(log_v)  # step 1: drop v_j = 0
        self._X_live = X[live]
        if not live.any():
            self.classes = []
            self.centre, self.radius = np.zeros(X.shape[1]), 0.0
            return
        log_w = log_v[live] + 0.5 * np.sum(self._X_live**2, axis=1)  # w_j = v_j e^{||x_j||^2/2}
        self.log_w_max = float(log_w.max())
        # Class l holds W 2^-(l+1) < w_j <= W 2^-l (step 2).
        level = np.floor((self.log_w_max - log_w) / math.log(2)).astype(np.int64)
        self.centre = self._X_live.mean(axis=0)
        self.radius = float(np.sqrt(np.max(np.sum((self._X_live - self.centre) ** 2, axis=1))))
        levels = np.unique(level)
        Est = _gaussian_estimator_class(self.estimator)
        class_delta = self.delta / len(levels)
        if diameter is not None:
            mu_min = min(1.0, 0.5 * math.exp(-0.5 * diameter**2))
        self.mu_min = mu_min
        self.classes = []
        for lvl, gen in zip(levels, self._rng.spawn(len(levels))):
            members = np.flatnonzero(level == lvl)
            log_W = self.log_w_max - lvl * math.log(2)
            # Extra coordinate sqrt(2 ln(W_l / w_j)) in [0, sqrt(2 ln 2)] (step 3).
            extra = np.sqrt(np.maximum(2.0 * (log_W - log_w[members]), 0.0))
            Xhat = np.hstack([self._X_live[members], extra[:, None]])
            est = Est(self._to_xp(Xhat), eps=self.eps / 2, delta=class_delta, mu_min=mu_min,
                      bandwidth=1.0, rng=gen, backend=self.backend)
            self.classes.append((log_W, Xhat, est))

    def _to_xp(self, a):
        return a if self.xp is np else self.xp.asarray(a)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

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
        from .exact import gaussian_kde

        Y = check_matrix("Y", Y)
        check_same_columns("X", np.empty((0, self.d)), "Y", Y)
        Yh = to_numpy(Y)
        m = Yh.shape[0]
        zeros = lambda: np.zeros(m, dtype=np.int64)  # noqa: E731
        kev, hev, used, fallbacks = zeros(), zeros(), zeros(), zeros()
        diam = self.radius + np.sqrt(np.sum((Yh - self.centre) ** 2, axis=1))  # >= max_j ||x_j - y_i||
        if not self.classes:
            return WeightedExpKDEResult(self._to_xp(np.full(m, -np.inf)), kev, hev, used, fallbacks, diam)
        # Per-query truncation (step 2): drop the lightest classes while their total weight
        # sum_l W_l |J_l| stays below (eps/2) W e^{-Delta_i^2/2} <= (eps/2) * (heaviest term).
        log_mass = np.array([log_W + math.log(Xhat.shape[0]) for log_W, Xhat, _ in self.classes])
        tail = np.logaddexp.accumulate(log_mass[::-1])[::-1]  # log of the mass of classes l..L-1
        budget = math.log(self.eps / 2) + self.log_w_max - 0.5 * diam**2
        Yhat = np.hstack([Yh, np.zeros((m, 1))])
        terms = np.full((len(self.classes), m), -np.inf)
        for c, (log_W, Xhat, est) in enumerate(self.classes):
            # Classes are ordered heaviest first, so the kept ones form a prefix: class c is
            # evaluated for query i unless the whole suffix c..L-1 is negligible for it.
            rows = np.flatnonzero(tail[c] > budget)
            if rows.size == 0:
                continue
            res = est.query(self._to_xp(Yhat[rows]))
            mu = to_numpy(res.estimate).astype(float)
            low = to_numpy(res.below_mu_min).astype(bool)
            kev[rows] += to_numpy(res.kernel_evaluations)
            hev[rows] += to_numpy(res.hash_evaluations)
            used[rows] += 1
            if low.any():  # density under the floor: evaluate this class exactly for those queries
                mu[low] = to_numpy(gaussian_kde(Xhat, Yhat[rows[low]]))
                kev[rows[low]] += Xhat.shape[0]
                fallbacks[rows[low]] += 1
            with np.errstate(divide="ignore"):
                terms[c, rows] = log_W + math.log(Xhat.shape[0]) + np.log(mu)
        log_z = 0.5 * np.sum(Yh**2, axis=1) + np.logaddexp.reduce(terms, axis=0)
        return WeightedExpKDEResult(self._to_xp(log_z), kev, hev, used, fallbacks, diam)
