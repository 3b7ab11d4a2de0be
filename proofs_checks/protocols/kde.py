"""The Gaussian KDE cost protocol of Theorem 2.1: a bandwidth rule and one factory per estimator.

Used by ``benchmarks/kde.py`` (the full sweep) and by the claims of :mod:`proofs_checks.theorem_2_1_kde` (its small
form), so that both measure the same estimators on the same instances.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from kdetheory.kde import CKNSKDE, HashingBasedKDE, RandomSamplingKDE, gaussian_kde

__all__ = ["bandwidth_for_density", "estimator_factories"]


def bandwidth_for_density(X, rng, quantile: float = 95, level: float = 0.15) -> float:
    """Bandwidth at which the ``quantile``-th percentile of the data points' densities equals ``level``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Data points, finite.
    rng : int, numpy.random.Generator or None
        Draws the reference subsample (at most 20,000 points) and its first 500 probe points.
    quantile : float, default 95
        Percentile of the probe densities that is matched, in (0, 100).
    level : float, default 0.15
        Target density (the Gaussian KDE of Theorem 2.1 lies in (0, 1]), in (0, 1).

    Returns
    -------
    float
        The bandwidth found by 40 bisection steps on a log scale over [1e-3, 1e3]: the density is increasing in
        the bandwidth, so the bisection converges to the one crossing (relative accuracy ~1e-10).
    """
    func = "bandwidth_for_density"
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{func}: X must be a non-empty (n, d) array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{func}: X contains NaN or inf; pass finite data points")
    for value, name, hi in ((quantile, "quantile", 100.0), (level, "level", 1.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < hi:
            raise ValueError(f"{func}: {name}={value!r} must be a real number in (0, {hi:g})")
    gen = np.random.default_rng(rng)
    ref = X[gen.choice(X.shape[0], min(X.shape[0], 20000), replace=False)]
    probe = ref[:500]
    lo, hi = 1e-3, 1e3
    for _ in range(40):
        h = math.sqrt(lo * hi)
        if np.percentile(gaussian_kde(ref, probe, bandwidth=h), quantile) > level:
            hi = h
        else:
            lo = h
    return math.sqrt(lo * hi)


def estimator_factories(quick: bool) -> list:
    """The estimators of the Theorem 2.1 cost sweep, each with its one budget knob.

    Parameters
    ----------
    quick : bool
        Fewer knob values (the CI-sized sweep) when True.

    Returns
    -------
    list of (name, knob values, factory)
        ``factory(X, bandwidth, mu_min, knob, rng)`` builds the estimator: random sampling (``RS``, knob = samples,
        i.i.d. gathers; ``RSP`` the permuted layout), hashing-based (``HBE``, knob = variance constant) and CKNS
        (``CKNS`` with brute-force small levels, ``CKNS-LSH`` hashing every level; knob = copies).
    """
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"estimator_factories: quick={quick!r} must be True or False")
    samples = [2**k for k in range(3, 18, 1 if not quick else 2)]
    return [
        ("RS", samples, lambda X, h, m, v, r: RandomSamplingKDE(X, bandwidth=h, mu_min=m, n_samples=v,
                                                                 permuted=False, rng=r)),
        ("RSP", samples, lambda X, h, m, v, r: RandomSamplingKDE(X, bandwidth=h, mu_min=m, n_samples=v,
                                                                  permuted=True, rng=r)),
        ("HBE", [0.001, 0.003, 0.01, 0.03, 0.1] if not quick else [0.001, 0.003, 0.01],
         # max_stored 2^29: up to ~2 GB of int32 keys while one level is built (the default 2^26 would
         # turn the deepest levels at n = 1e5 into exact fallbacks)
         lambda X, h, m, v, r: HashingBasedKDE(X, bandwidth=h, mu_min=m, eps=0.5, delta=0.2, variance_constant=v,
                                              max_stored=2**29, rng=r)),
        ("CKNS", [2, 8, 32] if not quick else [2, 8],
         lambda X, h, m, v, r: CKNSKDE(X, bandwidth=h, mu_min=m, n_copies=v, rng=r)),
        ("CKNS-LSH", [2, 8] if not quick else [2],
         lambda X, h, m, v, r: CKNSKDE(X, bandwidth=h, mu_min=m, n_copies=v, brute_force_max=0, rng=r)),
    ]
