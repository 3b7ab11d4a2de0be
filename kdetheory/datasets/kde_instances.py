"""KDE instances with controlled query densities (for the estimators of Theorem 2.1).

* :func:`clustered_points`: a Gaussian mixture with well-separated clusters of geometric sizes,
  the regime where hashing-based estimators should beat uniform sampling (docs/math.md §2.3);
  a preset of :func:`kdetheory.datasets.synthetic.gaussian_mixture`.
* :func:`queries_at_densities`: queries ``q = x + rho u`` on random rays from data points, with
  ``rho`` set by bisection so that the Gaussian density ``mu_X(q)`` hits each target.
* :func:`far_queries`: queries whose density is below any reasonable ``mu_min``.
"""
from __future__ import annotations

import numpy as np

from .._rng import as_generator
from .._validation import check_int, check_matrix, check_positive
from ..kde.exact import gaussian_kde
from .synthetic import gaussian_mixture

__all__ = ["clustered_points", "queries_at_densities", "far_queries"]


def clustered_points(n, d, *, n_clusters=32, spread=1.0, separation=8.0, rng=None):
    """Gaussian-mixture points with cluster sizes decaying geometrically.

    The KDE instances' preset of :func:`kdetheory.datasets.gaussian_mixture`: Gaussian
    centres, weights ``0.8^c``, ``cluster_std=spread`` and ``radius=separation`` (same draws,
    same points for a given seed).

    Parameters
    ----------
    n, d : int
        Number of points and dimension.
    n_clusters : int, default 32
        Number of clusters; cluster ``c`` gets a share proportional to ``0.8^c``.
    spread : float, default 1.0
        Standard deviation of each coordinate inside a cluster, ``> 0``.
    separation : float, default 8.0
        Standard deviation of the cluster centres per coordinate, ``> 0`` (centres are
        ``separation * sqrt(2 d)`` apart on average, far beyond ``spread``).
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    (n, d) float64 ndarray
    """
    n_clusters = check_int("n_clusters", n_clusters, minimum=1)
    spread = check_positive("spread", spread)
    separation = check_positive("separation", separation)
    return gaussian_mixture(n, d, n_clusters=n_clusters, cluster_std=spread, radius=separation,
                            centres="gaussian", weights=0.8 ** np.arange(n_clusters), rng=rng)


def queries_at_densities(X, densities, n_per_density, *, bandwidth=1.0, reference_size=20000,
                         n_bisect=24, seed_window=None, rng=None):
    """Queries whose Gaussian KDE is close to each target density.

    Each query starts at a random data point ``x`` (whose density must exceed the target), picks
    a random direction ``u`` and bisects ``rho`` in ``q = x + rho u`` until the density on a
    random reference subset of ``X`` (at most ``reference_size`` points) equals the target; the
    returned densities are then computed exactly on all of ``X``.

    Parameters
    ----------
    X : (n, d) array
    densities : sequence of float in (0, 1)
        Target densities.
    n_per_density : int
        Queries per target.
    bandwidth : float, default 1.0
    reference_size : int, default 20000
        Points used while bisecting (the exact density of the result is returned).
    n_bisect : int, default 24
        Bisection steps on ``log rho``.
    seed_window : float, optional
        Start only from data points whose density is below ``seed_window * target`` (when at
        least ``min(n_per_density, 5)`` exist): the query then sits beside a small group of points
        that carries most of its density, the hard case for uniform sampling. By default any point
        above ``1.5 * target`` may start a ray; far from the data the density is spread over many
        points with similar kernel values, the easy case.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    Y : (len(densities) * n_per_density, d) float64 ndarray
        Queries grouped by target.
    target : (len(Y),) float64 ndarray
        The target of each query.
    mu : (len(Y),) float64 ndarray
        Exact density of each query on all of ``X``.
    """
    X = np.asarray(check_matrix("X", X), dtype=np.float64)
    n_per = check_int("n_per_density", n_per_density, minimum=1)
    bandwidth = check_positive("bandwidth", bandwidth)
    gen = as_generator(rng)
    n, d = X.shape
    ref = X if n <= reference_size else X[gen.choice(n, reference_size, replace=False)]
    seed_pool = X[gen.choice(n, min(n, 4000), replace=False)]
    seed_mu = gaussian_kde(ref, seed_pool, bandwidth=bandwidth)
    Ys, targets = [], []
    for target in densities:
        target = float(target)
        ok = np.flatnonzero(seed_mu > 1.5 * target)
        near = ok[seed_mu[ok] < (seed_window or np.inf) * target]
        if seed_window is not None and near.size >= min(n_per, 5):
            # start where the density is already close to the target: the query then sits next to a
            # small group of points (mass concentrated, hard for uniform sampling), not out in the void
            ok = near
        if ok.size == 0:
            raise ValueError(f"densities: no data point has density above {target:.3g} at bandwidth "
                             f"{bandwidth:.3g}; lower the target or raise the bandwidth.")
        start = seed_pool[gen.choice(ok, n_per)]
        u = gen.standard_normal((n_per, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        lo = np.zeros(n_per)
        hi = np.full(n_per, bandwidth)
        # grow hi until the density at x + hi u is below the target
        for _ in range(60):
            above = gaussian_kde(ref, start + hi[:, None] * u, bandwidth=bandwidth) > target
            if not above.any():
                break
            hi[above] *= 2.0
        for _ in range(n_bisect):
            mid = 0.5 * (lo + hi)
            above = gaussian_kde(ref, start + mid[:, None] * u, bandwidth=bandwidth) > target
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        Ys.append(start + (0.5 * (lo + hi))[:, None] * u)
        targets.append(np.full(n_per, target))
    Y = np.concatenate(Ys)
    return Y, np.concatenate(targets), gaussian_kde(X, Y, bandwidth=bandwidth)


def far_queries(X, m, *, bandwidth=1.0, distance=30.0, rng=None):
    """Queries at ``distance`` bandwidths beyond the data's bounding sphere (density ~ 0).

    Returns
    -------
    (m, d) float64 ndarray
        Every query is at least ``distance * bandwidth`` from every point of ``X``, so its
        density is below ``exp(-distance^2 / 2)``.
    """
    X = np.asarray(check_matrix("X", X), dtype=np.float64)
    m = check_int("m", m, minimum=1)
    gen = as_generator(rng)
    centre = X.mean(axis=0)
    radius = np.linalg.norm(X - centre, axis=1).max()
    u = gen.standard_normal((m, X.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return centre + (radius + distance * bandwidth) * u
