"""Multi-scale near-neighbour KDE of Charikar, Kapralov, Nouri, Siminelakis (FOCS 2020), the
estimator behind Theorem 2.1, built as the STAG library builds it (docs/math.md §2.3) [C, R].

For a density guess ``mu``, the data are cut by kernel value into shells
``S_j = {x : 2^-j < k(x, q) <= 2^-(j-1)}``, ``j = 1..J`` with ``J = ceil(log2(1/mu))``
(radii ``r^2`` in ``[(j-1) ln 2, j ln 2)`` for ``k = exp(-r^2)``). Shell ``j`` only needs the
points of a subsample that keeps x with probability ``min(1, w_x/(n mu 2^j))`` (weights normalised
to maximum 1): it holds at most ``n mu 2^j`` points, so about one of them survives, and E2LSH at
the shell's radius finds it. The estimate ``sum_j sum_{x found, x in S_j} (w_x/n) k(x, q) / (pi_x P_found(x))``
is unbiased because ``P_found = 1 - (1 - p1(r/w)^k)^L`` is the exact probability that ``x`` shares a
bucket with ``q`` in one of the ``L`` tables; the outer region ``k <= 2^-J`` is estimated by uniform
sampling.

Layers: :class:`CKNSKDE` validates and builds; ``_query`` / ``_copies`` drive on arrays; the
per-shell work of the LSH shells comes from :data:`_SHELL_KERNELS` (NumPy reference, numba twin in
``kdetheory._numba.kde``); CuPy data use the device copies of ``kdetheory._cupy._ckns``.
Data-adaptive sizing (``sizing="adaptive"``) is the sequential rule of :func:`copies_stop`, driven by
the variance bound of :func:`copy_variance_bound`.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._array import to_numpy
from .._validation import check_choice, check_int, check_positive
from ..lsh.euclidean import BucketTables, _log_p1, hash_points, log_found_probability
from ._base import KDEEstimator, adaptive_search, density_levels, gathered_squared_distances, squared_distances
from ._mom import chebyshev_factor as _mom_chebyshev_factor
from ._mom import median_of_means, mom_shape

__all__ = ["CKNSKDE", "CKNSLevel", "CKNSShell", "CKNSUnit"]

_LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class CKNSShell:
    """LSH plan of shell ``j`` of a density guess (no randomness).

    Attributes
    ----------
    j : int
        Shell index: kernel values in ``(2^-j, 2^-(j-1)]``.
    k, L : int
        Hashes per key and tables of the shell's E2LSH.
    rate_max : float
        Largest keep-probability of the shell's subsample.
    brute : bool
        The subsample is scanned directly (expected size <= ``brute_force_max``).
    found : float
        Probability that a point at the shell's outer radius is found.
    cost : float
        Expected kernel + hash evaluations of the shell per query.
    r2 : (float, float)
        The shell in squared (rescaled) distance: ``[lo, hi)``.
    """

    j: int
    k: int
    L: int
    rate_max: float
    brute: bool
    found: float
    cost: float
    r2: tuple


@dataclasses.dataclass(frozen=True)
class CKNSUnit:
    """One shell of one copy: its subsample and (for LSH shells) its tables.

    Attributes
    ----------
    S : (s,) int64 ndarray
        Sorted data indices kept (probability ``pi_x``).
    coef : (s,) float64 ndarray
        ``w_x / (n pi_x)``.
    lsh : bool
        Searched with E2LSH (else scanned).
    projections, offsets : ndarrays or None
    tables : BucketTables or None
    coef_pos : ndarray or None
        ``coef`` per stored table position.
    """

    S: np.ndarray
    coef: np.ndarray
    lsh: bool
    projections: np.ndarray | None = None
    offsets: np.ndarray | None = None
    tables: BucketTables | None = None
    coef_pos: np.ndarray | None = None

    @property
    def cost(self) -> int:
        """Upper bound on one query's kernel + hash evaluations in this unit."""
        return int(self.S.size) + (self.tables.n_tables * self.tables.n_concat if self.lsh else 0)


@dataclasses.dataclass(frozen=True)
class CKNSLevel:
    """One density guess of :class:`CKNSKDE`.

    Attributes
    ----------
    budget : float
        Density guess (relative to the largest weight).
    J : int
        Number of shells.
    shells : tuple of CKNSShell
    n_out : int
        Uniform samples of the outer region per copy.
    n_copies, n_groups : int
        Independent copies and median-of-means groups.
    exact : bool
        The level answers exactly (nothing built).
    cost : float
        Upper bound on one query's kernel + hash evaluations (``inf`` when exact).
    copies : tuple of tuple of CKNSUnit
        ``copies[c][s]``: shell ``s`` of copy ``c``.
    variance : (float, float)
        ``(A, B)`` of :func:`copy_variance_bound`: one copy's variance is at most ``A mu + B mu^2``.
    stop_plan : tuple of (int, int, float, float)
        Adaptive sizing: the checkpoints ``(t, G, kappa, delta_k)`` of :func:`copies_stop` (empty for
        worst case).
    term_range : float or None
        ``2 b`` when every shell is scanned (a copy is then a sum of independent terms in
        ``[0, 2b]`` and the adaptive rule uses Bernstein's inequality), else None.
    device : object or None
        CuPy data: the scanned shells of every copy flattened on the device
        (:class:`kdetheory._cupy._ckns.ScannedShells`).
    """

    budget: float
    J: int
    shells: tuple
    n_out: int
    n_copies: int
    n_groups: int
    exact: bool
    cost: float
    copies: tuple = ()
    variance: tuple = (0.0, 0.0)
    stop_plan: tuple = ()
    term_range: float | None = None
    device: object = None


def bernoulli_sample(gen, rates, rate_max):
    """Indices kept independently with probability ``rates`` (each <= ``rate_max``), sorted.

    A Bernoulli(rate_max) process is a Binomial(n, rate_max) count of uniformly chosen distinct
    indices; thinning each by ``rates / rate_max`` gives the rates. O(n rate_max) work, no loop,
    and no cumulative sum that could overflow at tiny rates.
    """
    n = rates.size
    if rate_max >= 1.0:
        cand = np.arange(n)
    else:
        cand = np.sort(gen.choice(n, int(gen.binomial(n, rate_max)), replace=False))
    keep = gen.random(cand.size) * rate_max < rates[cand]
    return cand[keep]


def copy_variance_bound(budget, shells, n_out):
    """``(A, B)`` with ``Var(copy) <= A mu + B mu^2`` for every query, whatever its density ``mu``.

    Parameters
    ----------
    budget : float
        Density guess ``b`` of the level (weights normalised to maximum 1).
    shells : sequence of CKNSShell
    n_out : int
        Uniform samples of the outer region per copy.

    Returns
    -------
    A, B : float
        ``A = 2 b / P_min + 2^-J / n_out`` and ``B = 1 / P_min - 1``, ``P_min`` the smallest find
        probability at a shell's outer radius (1 for scanned shells).

    Notes
    -----
    Derivation (docs/math.md §2.3, CKNS as STAG builds it). In shell ``j`` a point ``x`` enters the
    copy with ``xi_x = 1{kept} 1{found}``, ``E xi_x = pi_x P_x``, and contributes
    ``c_x k_x xi_x / P_x`` with ``c_x = w_x / (n pi_x)``. Where ``pi_x < 1``, ``c_x = b 2^j`` and
    ``k_x <= 2^-(j-1)``, so ``c_x k_x <= 2 b``. The diagonal of the variance is
    ``(c_x k_x)^2 pi_x (1/P_x - pi_x) <= (w_x k_x / n) 2 b / P_x`` (or ``(w_x k_x/n)^2 (1/P_x - 1)``
    where ``pi_x = 1``); for ``x != y`` the keeps are independent and ``Pr[both found] <=
    min(P_x, P_y)``, so the covariance is at most ``(w_x k_x/n)(w_y k_y/n)(1/P_j - 1)``. Summing,
    ``Var(Z_j) <= (2 b / P_j) mu_j + (1/P_j - 1) mu_j^2`` with ``mu_j`` the shell's share of ``mu``.
    Shells use independent subsamples and tables, and ``sum_j mu_j^2 <= mu^2``. The outer region
    is a mean of ``n_out`` uniform samples in ``[0, 2^-J]``: variance ``<= 2^-J mu / n_out``.
    Hence the bound; at ``mu >= b`` the relative variance is at most ``A / b + B``, which sizes the
    worst case (``2/P_min + 1/4 + (1/P_min - 1)``: STAG's tables make ``P_min ~ 1 - 1/n``).
    """
    p_min = min(s.found for s in shells)
    J = max(s.j for s in shells)
    return 2.0 * budget / p_min + 2.0 ** -J / n_out, 1.0 / p_min - 1.0


def variance_interval(M, kappa, A, B):
    """``[lo, hi] = {mu >= 0 : (M - mu)^2 <= kappa (A mu + B mu^2)}`` elementwise for ``M >= 0``.

    The means ``mu`` consistent with a median of means ``M`` whose deviation is at most
    ``sqrt(kappa Var)`` when ``Var <= A mu + B mu^2`` (a quadratic in ``mu``); ``hi = inf`` when
    ``kappa B >= 1``. ``lo`` is taken as ``M^2 / (a hi)`` (product of the roots: no cancellation).
    """
    M = np.asarray(M, dtype=np.float64)
    a = 1.0 - kappa * B
    if a <= 0:
        return np.zeros_like(M), np.full_like(M, np.inf)
    beta = 2.0 * M + kappa * A
    hi = (beta + np.sqrt(kappa * A * (4.0 * M + kappa * A) + 4.0 * kappa * B * M * M)) / (2.0 * a)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(hi > 0, M * M / (a * np.where(hi > 0, hi, 1.0)), 0.0)
    return lo, hi


def bernstein_interval(mean, t, delta, A, B, term_range):
    """``[lo, hi]``: the ``mu`` with ``(m - mu)^2 <= kappa (A mu + B mu^2) + 2 a |m - mu|`` elementwise,
    ``kappa = 2 L / t``, ``a = L R / (3 t)``, ``L = ln(2 / delta)``, ``R = term_range``.

    Bernstein's inequality for a mean ``m`` of ``t`` copies that are each a sum of independent terms in
    ``[0, R]`` (variance of a copy at most ``A mu + B mu^2``): ``P[|m - mu| >= r] <= delta`` for the
    ``r`` with ``r^2 = kappa Var + 2 a r``. Each side of ``mu = m`` is a quadratic in the distance
    ``|m - mu|``; ``hi = inf`` when ``kappa B >= 1``.
    """
    m = np.asarray(mean, dtype=np.float64)
    L = math.log(2.0 / delta)
    kappa, a = 2.0 * L / t, L * term_range / (3.0 * t)
    alpha = 1.0 - kappa * B
    if alpha <= 0:
        return np.zeros_like(m), np.full_like(m, np.inf)
    gamma = kappa * (A * m + B * m * m)
    b_hi = 2.0 * a + kappa * A + 2.0 * kappa * B * m
    b_lo = kappa * A + 2.0 * kappa * B * m - 2.0 * a
    hi = m + (b_hi + np.sqrt(b_hi * b_hi + 4.0 * alpha * gamma)) / (2.0 * alpha)
    lo = np.maximum(0.0, m - (np.sqrt(b_lo * b_lo + 4.0 * alpha * gamma) - b_lo) / (2.0 * alpha))
    return lo, hi


#: copy counts at which :func:`copies_stop` tests its rule: FIRST_CHECKPOINT, then x COPY_GROWTH
FIRST_CHECKPOINT = 4
COPY_GROWTH = 1.5


def copy_checkpoints(max_copies, first=FIRST_CHECKPOINT):
    """Copy counts ``first, 1.5 first, ... , max_copies`` (rounded up) at which the adaptive rule may stop."""
    points, t = [], float(first)
    while math.ceil(t) < max_copies:
        if not points or math.ceil(t) > points[-1]:
            points.append(math.ceil(t))
        t *= COPY_GROWTH
    return points + [int(max_copies)]


@functools.lru_cache(maxsize=4096)
def chebyshev_factor(n_groups, delta):
    """Smallest ``c`` with ``P[Binomial(G, 1/c) >= (G + 1)/2] <= delta`` for odd ``G`` (``inf`` if none)."""
    return 1.0 / delta if n_groups == 1 else _mom_chebyshev_factor(n_groups, delta)


def _checkpoint_shape(t, delta):
    """``(kappa, G)`` minimising ``kappa = c(G, delta) / floor(t / G)`` over odd ``G <= t``."""
    top = min(t, 2 * int(4 * math.log(1.0 / delta)) + 3)
    return min((chebyshev_factor(G, delta) / (t // G), G) for G in range(1, top + 1, 2))


def checkpoint(t, delta, term_range=None):
    """One checkpoint ``(t, G, kappa, delta)`` of :func:`copies_stop` with miss probability ``delta``:
    the median of ``G`` group means with Chebyshev factor ``kappa`` (``term_range`` None), or the
    plain mean under Bernstein's inequality (``G = 1``, ``kappa`` unused)."""
    if term_range is not None:
        return t, 1, math.nan, delta
    kappa, G = _checkpoint_shape(t, delta)
    return t, G, kappa, delta


def checkpoint_interval(stat, point, variance, term_range=None):
    """``[lo, hi]`` of the means consistent with the statistic ``stat`` of a checkpoint (see :func:`checkpoint`)."""
    t, _, kappa, delta = point
    if term_range is None:
        return variance_interval(stat, kappa, *variance)
    return bernstein_interval(stat, t, delta, *variance, term_range)


def stop_plan(max_copies, delta, first=FIRST_CHECKPOINT, term_range=None):
    """Checkpoints ``(t, G, kappa, delta_k)`` of :func:`copies_stop` for at most ``max_copies`` copies,
    the first at ``first``, each missing ``mu`` with probability at most ``delta_k = delta / K``
    (``K`` checkpoints)."""
    ts = copy_checkpoints(max_copies, first)
    return tuple(checkpoint(t, delta / len(ts), term_range) for t in ts)


def certifies(mean, eps, variance, point, term_range=None):
    """Whether the statistic ``mean`` certifies ``(1 +- eps)`` at the checkpoint ``point``."""
    lo, hi = checkpoint_interval(mean, point, variance, term_range)
    return bool((1.0 + eps) * lo >= (1.0 - eps) * hi)


def _fewest_copies(mean, eps, variance, delta, limit, term_range, plan_for):
    """Smallest count ``t <= limit`` of the sequence FIRST_CHECKPOINT, then ``max(t + 1, ceil(1.1 t))``, whose checkpoint
    certifies a stream with statistic ``mean`` when ``delta`` is split over ``plan_for(t)``; None if none does."""
    t = FIRST_CHECKPOINT
    while t <= limit:
        if certifies(mean, eps, variance, checkpoint(t, delta / len(plan_for(t)), term_range), term_range):
            return t
        t = max(t + 1, math.ceil(t * 1.1))
    return None


def first_checkpoint(mean, eps, variance, delta, max_copies, term_range=None):
    """Fewest copies at which a stream with statistic ``mean`` could stop, for a plan whose
    checkpoints run from there to ``max_copies`` (``None`` when not even ``max_copies`` suffice).
    No query of a level certifies earlier than one at the top of its densities, so starting the
    plan there saves checkpoints, hence union-bound budget, for nothing."""
    return _fewest_copies(mean, eps, variance, delta, max_copies, term_range,
                          lambda t: copy_checkpoints(max_copies, t))


def copies_to_certify(mean, eps, variance, delta, limit, term_range=None):
    """Fewest copies ``T <= limit`` whose last checkpoint certifies a stream with statistic ``mean``
    (``limit + 1`` when none does)."""
    T = _fewest_copies(mean, eps, variance, delta, limit, term_range, copy_checkpoints)
    return limit + 1 if T is None else T


def copies_stop(draw, m, eps, variance, plan, floor=0.0, term_range=None):
    """Sequential (1 +- eps) estimates from independent copies with a known variance bound
    (the data-adaptive sizing of :class:`CKNSKDE`).

    Parameters
    ----------
    draw : callable ``(idx, t0, t1) -> (len(idx), t1 - t0) float64 ndarray``
        Copies ``t0 .. t1-1`` of the streams ``idx``: independent, unbiased for ``mu_i``, with
        variance at most ``A mu_i + B mu_i^2``.
    m : int
        Number of streams (queries).
    eps : float
        Target relative error.
    variance : (float, float)
        ``(A, B)``.
    plan : sequence of (t, G, kappa, delta_k)
        From :func:`stop_plan` (its ``delta`` is the failure probability of the whole rule).
    floor : float, default 0
        A stream also stops once its upper bound falls below ``floor`` (then ``mu < floor``, with
        the same probability); its estimate is the median of means, flagged.
    term_range : float, optional
        ``R`` when every copy is a sum of independent terms in ``[0, R]`` (CKNS levels whose shells
        are all scanned: ``R = 2 b``): the intervals come from Bernstein's inequality on the plain
        mean (:func:`bernstein_interval`): about 3.5 times fewer copies than the median of means (measured).

    Returns
    -------
    estimate : (m,) float64 ndarray
        NaN where the stream did not stop within the plan's last checkpoint.
    used : (m,) int64 ndarray
        Copies drawn per stream.
    below : (m,) bool ndarray
        Streams stopped by ``floor``.

    Notes
    -----
    At checkpoint ``k`` the median ``M`` of ``G`` group means (groups of at least
    ``L = floor(t/G)`` consecutive copies) misses ``mu`` by more than ``r`` only if half the
    groups do; each does with probability ``<= Var / (L r^2)`` (Chebyshev), so with
    ``kappa = c / L`` and ``P[Binomial(G, 1/c) >= (G+1)/2] <= delta/K``, ``(M - mu)^2 <= kappa
    (A mu + B mu^2)`` at every checkpoint at once with probability ``>= 1 - delta`` (union bound).
    That set of ``mu`` is the interval ``[lo, hi]`` of :func:`variance_interval`; the rule stops once
    ``(1 + eps) lo >= (1 - eps) hi`` (EBStop's rule, Mnih, Szepesvari, Audibert, ICML 2008). Then every
    value in ``[(1 - eps) hi, (1 + eps) lo]`` is within ``eps mu`` of every ``mu`` in the interval; the
    rule returns the one nearest the plain mean of the ``t`` copies (EBStop's midpoint is biased
    towards ``lo`` here, because the interval is skewed upwards when the variance grows with ``mu``,
    and so is the median of skewed group means). No range of a copy is needed: only the second
    moment, which CKNS bounds a priori. With ``term_range`` the median of means is replaced by the
    mean and Chebyshev by Bernstein's inequality for the copies' independent terms (each point's
    ``xi_x c_x k_x <= 2 b`` and each outer sample's ``<= 2^-J / n_out``): a copy's range is huge, its
    terms' is not.
    """
    est = np.full(m, np.nan)
    used = np.zeros(m, dtype=np.int64)
    below = np.zeros(m, dtype=bool)
    Z = np.empty((m, plan[-1][0])) if plan else np.empty((m, 0))
    active = np.arange(m)
    t_prev = 0
    for point in plan:
        t, G = point[0], point[1]
        if active.size == 0:
            break
        Z[active, t_prev:t] = draw(active, t_prev, t)
        used[active] = t
        t_prev = t
        bounds = (np.arange(G + 1) * t) // G
        means = np.add.reduceat(Z[active, :t], bounds[:-1], axis=1) / np.diff(bounds)
        M = np.median(means, axis=1)
        lo, hi = checkpoint_interval(M, point, variance, term_range)
        low = hi < floor
        stop = ~low & ((1.0 + eps) * lo >= (1.0 - eps) * hi)
        est[active[low]] = M[low]
        below[active[low]] = True
        # every value in [(1 - eps) hi, (1 + eps) lo] is within eps of every mu in [lo, hi]: the one
        # nearest the plain mean of the copies (EBStop's midpoint, and the median of skewed group
        # means, would pull every answer down)
        mean = Z[active[stop], :t].mean(axis=1)
        est[active[stop]] = np.clip(mean, (1.0 - eps) * hi[stop], (1.0 + eps) * lo[stop])
        active = active[~(stop | low)]
    return est, used, below


class CKNSKDE(KDEEstimator):
    """CKNS multi-scale estimator (data-independent E2LSH), with density guessing.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`. ``backend="cupy"`` (CuPy data) keeps every
        copy on the GPU: subsample indices and coefficients, the shells' tables (hashed with one
        GEMM, sorted keys with segment offsets, looked up by a segmented ``searchsorted`` and a
        full-key compare), the scans and the kernel values (``kdetheory._cupy._ckns``). The host
        draws the random numbers (subsamples, projections, outer-region indices: the same stream
        as the host reference, so the same seed gives the same answer) and uploads them; no
        ``(n, d)`` array crosses the bus after the data.
    width : float, default 4.0
        E2LSH bucket width (STAG's ``w = 4``), in units where the kernel is ``exp(-r^2)``.
    table_constant : float, default 1.0
        ``C2`` in ``K2 = max(1, C2 ln n)``; shell ``j`` gets ``L_j = ceil(K2 2^phi_j)`` tables of
        ``k_j = max(1, floor(-phi_j / log2 p1(r_j/w)))`` hashes, ``phi_j = ceil((j/J)(J - j + 1))``.
    brute_force_max : int, default 3000
        Shell subsamples with at most this many points are scanned directly (no LSH), as in STAG.
    n_copies : int, optional
        Independent copies per level (overrides the count derived from ``eps`` and ``delta``); with
        ``sizing="adaptive"`` the most copies a query may read.
    n_groups : int, optional
        Median-of-means groups when ``n_copies`` is given (default 1: a plain mean; worst case only).
    level_ratio : float, default 4
        Density guesses ``level_ratio^-(j+1)`` down to ``mu_min`` (STAG uses guesses 4x apart).
    sizing : {"worst_case", "adaptive"}, default "worst_case"
        "worst_case": every query reads the level's median of means sized by the relative variance
        at ``mu = b`` (below). "adaptive": copies are read in growing batches until the sequential
        rule of :func:`copies_stop` (Bernstein on the mean where every shell is scanned, else a
        median of means) certifies ``(1 +- eps)`` (or that ``mu`` is below the level's acceptance
        threshold), with failure probability ``delta / (number of levels)`` per level; a query that
        exhausts the level's copies answers exactly.
    exact_fallback : bool, default True
        Answer exactly where the structure would cost more than ``n/2``: a level whose expected
        cost exceeds ``n/2`` (adaptive: whose copies, capped at a cost of ``n/4``, cannot certify
        even a query at the top of the densities the level serves, ``min(mu_max, ratio^2 b)``) is not
        built, and a query answers exactly
        once what it has spent plus the next level's cost bound exceeds ``n/2`` (never more than
        ``n/2 + n`` in all). False keeps every structure (to measure its cost and variance where
        exact would be cheaper).

    Notes
    -----
    One copy's variance is at most ``A mu + B mu^2`` for every query (:func:`copy_variance_bound`,
    derived there: ``A = 2 b / P_min + 2^-J / n_out``, ``B = 1/P_min - 1``, ``P_min`` the smallest
    find probability at a shell's outer radius). Worst-case sizing takes the median of means of
    :func:`~kdetheory.kde._mom.mom_shape` copies at relative variance ``A/b + B`` (its value at
    ``mu = b``) with failure probability ``delta/3`` per level, and the adaptive search of
    :func:`~kdetheory.kde._base.adaptive_search` (STAG's acceptance rule ``>= (n mu)^0.9`` is a
    heuristic and is not used).

    Adaptive sizing cannot use the empirical-Bernstein rule of the other estimators: a copy's value
    has no useful a-priori range. Its largest value (every subsampled point in the innermost shell)
    is about ``2 n b J / P_min``, i.e. ``R / mu ~ 2 n J`` at ``mu = b``, and even the realised range of
    a built copy (``~2 / P_min``, the subsample holding ``~1/(b 2^j)`` points of value ``<= 2b``) makes
    that rule need ``>= R ln(2/delta) / (eps mu / 2)`` copies, about ``70 / b`` at eps = 0.2, against
    about ``500`` for the worst case. So the adaptive rule (:func:`copies_stop`) uses the a-priori
    second moment instead, and is valid for every ``mu`` (its rejections are certified too). Where
    every shell of a level is scanned (the usual case: a shell is hashed only when its subsample
    exceeds ``brute_force_max`` points), a copy is a sum of independent terms in ``[0, 2b]`` (each
    kept point's ``c_x k_x`` and each outer sample's share), so Bernstein's inequality bounds the
    mean of the copies with the variance bound and that small term range; levels with LSH shells
    (whose finds are correlated through the shared tables) use a median of means with Chebyshev.
    Measured (tests/test_ckns_adaptive.py, ``mu/b`` of 5-7, eps 0.3, delta 0.2, scanned shells):
    39-87 copies per query, mean 59, against 375 for worst-case sizing, 0 failures in 251 builds.
    The median-of-means variant pays a price of 2-3 for its union bound over levels and
    checkpoints and reads about ``(A/mu + B)/(A/b + B)`` of the worst-case copies times that price
    (measured 142-213 on the same instance). Either adapts to the query's density, not to its
    empirical variance (the bound is within about 1.6x of the measured variance for scanned shells).

    The LSH here is data-independent, so the theoretical exponent is about ``tau = 1/4``
    (CKNS data-independent), not the ``0.173`` of Theorem 2.1, which needs data-dependent LSH.
    Cost per query: hash evaluations ``sum_j L_j k_j`` and the kernel evaluations of the
    distinct points found (or scanned) per copy; ``KDEResult.samples`` counts the copies read.

    References
    ----------
    Charikar, Kapralov, Nouri, Siminelakis, "Kernel density estimation through density
    constrained near neighbor search", FOCS 2020; Mnih, Szepesvari, Audibert, ICML 2008
    (the stopping rule); KDEformer (ICML 2023), Theorem 2.1.
    """

    _auto_backend = "numba"

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None, rng=None,
                 backend="auto", width=4.0, table_constant=1.0, brute_force_max=3000, n_copies=None,
                 n_groups=None, level_ratio=4.0, sizing="worst_case", exact_fallback=True):
        self.width = check_positive("width", width)
        self.table_constant = check_positive("table_constant", table_constant)
        self.brute_force_max = check_int("brute_force_max", brute_force_max, minimum=0)
        self._n_copies = None if n_copies is None else check_int("n_copies", n_copies, minimum=1)
        self._n_groups_arg = None if n_groups is None else check_int("n_groups", n_groups, minimum=1)
        self.level_ratio = check_positive("level_ratio", level_ratio)
        if self.level_ratio <= 1:
            raise ValueError(f"level_ratio: got {level_ratio!r}; pass a number > 1.")
        self.sizing = check_choice("sizing", sizing, ("worst_case", "adaptive"))
        if self.sizing == "adaptive" and n_groups is not None:
            raise ValueError(f"n_groups: got {n_groups!r} with sizing='adaptive', whose stopping rule picks its own "
                             "groups; pass one or the other.")
        self.exact_fallback = bool(exact_fallback)
        super().__init__(X, eps=eps, delta=delta, mu_min=mu_min, bandwidth=bandwidth, weights=weights,
                         rng=rng, backend=backend)

    @property
    def _on_device(self):
        """Copies, tables, scans and kernels stay in the namespace of the data (CuPy: on the GPU)."""
        return self.backend == "cupy"

    def _shell_plan(self, b):
        """LSH parameters of the shells of guess ``b`` (no randomness)."""
        n = self.n
        J = max(1, math.ceil(-math.log2(b) - 1e-12))
        K2 = max(1.0, self.table_constant * math.log(n))
        shells = []
        for j in range(1, J + 1):
            r_j = math.sqrt(j * _LN2)
            phi = math.ceil((j / J) * (J - j + 1))
            log2_p = float(_log_p1(np.array(r_j / self.width))) / _LN2
            k = max(1, math.floor(-phi / log2_p))
            L = math.ceil(K2 * 2.0**phi)
            rate_max = min(1.0, 1.0 / (n * b * 2.0**j))
            expected = n * rate_max
            brute = expected <= self.brute_force_max
            found = 1.0 if brute else math.exp(float(log_found_probability(r_j, self.width, k, L)))
            shells.append(CKNSShell(j=j, k=k, L=L, rate_max=rate_max, brute=brute, found=found,
                                    cost=expected if brute else L * k + K2, r2=((j - 1) * _LN2, j * _LN2)))
        n_out = max(1, math.ceil(4.0 * 2.0**-J / b))
        return J, tuple(shells), n_out

    def _copy_count(self, b, variance, per_copy, term_range):
        """(copies to build, groups, stop plan, exact) of guess ``b`` for the sizing mode."""
        A, B = variance
        if self.sizing == "worst_case":
            if self._n_copies is None:
                size, groups = mom_shape(A / b + B, self.eps, self.delta / 3.0)
            else:
                groups = self._n_groups_arg or 1
                size = max(1, math.ceil(self._n_copies / groups))
            copies = size * groups
            return copies, groups, (), self.exact_fallback and copies * per_copy > 0.5 * self.n
        delta = self.delta / len(self.budgets)  # union bound over every level a query may visit
        if self._n_copies is not None:
            copies = self._n_copies
        else:
            # enough copies to certify a query at the guess itself, capped (fallback on) at a cost of n/4
            cap = max(1, math.floor(0.25 * self.n / per_copy)) if self.exact_fallback else 2**40
            copies = min(copies_to_certify(b, self.eps, variance, delta, cap, term_range), cap)
        # The top of the densities the level serves (those below the previous level's threshold
        # ratio^2 b): the plan starts where a query there could stop, and the level is not worth
        # building when not even such a query could within its copies.
        top = min(self._mu_max, self.level_ratio ** 2 * b)
        first = first_checkpoint(top, self.eps, variance, delta, copies, term_range)
        exact = self.exact_fallback and (first is None or copies * per_copy > 0.5 * self.n)
        return copies, 1, (() if exact else stop_plan(copies, delta, first or copies, term_range)), exact

    def _build(self):
        self.budgets = density_levels(self._mu_floor, self.level_ratio)
        self.levels = []
        # float64 where the copies are evaluated: the device (CuPy data), else a contiguous host copy
        self._Xh = self._xp.asarray(self._Xs, dtype=np.float64) if self._on_device else \
            np.ascontiguousarray(to_numpy(self._Xs), dtype=np.float64)
        self._w_dev = self._xp.asarray(self._w_host) if self._on_device else None
        cost = {"bytes": 0, "n_tables": 0, "hash_evaluations": 0}
        J_last = len(self.budgets) - 1
        too_costly = False
        for j, b in enumerate(self.budgets):
            # Not built: a level the search never visits (its acceptance threshold reaches the largest
            # possible density; adaptive_search skips it), and every level below one too costly to
            # build (costs grow as the guess falls; at weights 1e300 and mu_min 1e-3 there are
            # hundreds of levels).
            if too_costly or (j < J_last and self.level_ratio * b >= self._mu_max):
                self.levels.append(CKNSLevel(budget=b, J=0, shells=(), n_out=0, n_copies=0, n_groups=1,
                                             exact=True, cost=math.inf))
                continue
            J, shells, n_out = self._shell_plan(b)
            variance = copy_variance_bound(b, shells, n_out)
            per_copy = sum(s.cost for s in shells) + n_out
            # every shell scanned: a copy is a sum of independent terms in [0, 2b] (Bernstein applies)
            term_range = 2.0 * b if all(s.brute for s in shells) else None
            copies, groups, plan, exact = self._copy_count(b, variance, per_copy, term_range)
            # keep-probabilities min(1, w_x / (n b 2^j)) per shell, shared by every copy
            rates = [] if exact else [np.minimum(1.0, self._w_host / (self.n * b * 2.0 ** s.j)) for s in shells]
            built = () if exact else tuple(tuple(self._build_unit(s, r, cost) for s, r in zip(shells, rates))
                                           for _ in range(copies))
            bound = math.inf if exact else float(sum(u.cost for units in built for u in units) + copies * n_out)
            device = None
            if self._on_device and not exact:
                from .._cupy._ckns import ScannedShells

                device = ScannedShells.from_copies(built, shells, self._xp)
                cost["bytes"] += device.nbytes
            self.levels.append(CKNSLevel(budget=b, J=J, shells=shells, n_out=n_out, n_copies=copies,
                                         n_groups=groups, exact=exact, cost=bound, copies=built,
                                         variance=variance, stop_plan=plan, term_range=term_range,
                                         device=device))
            too_costly = exact
        return cost

    def _build_unit(self, shell, rates, cost):
        gen, n = self._rng, self.n
        S = bernoulli_sample(gen, rates, shell.rate_max)
        coef = self._w_host[S] / (n * rates[S])  # w_x / (n pi_x)
        cost["bytes"] += S.nbytes + coef.nbytes
        if shell.brute or S.size == 0:
            return CKNSUnit(S=S, coef=coef, lsh=False)
        L, k = shell.L, shell.k
        proj = gen.standard_normal((L, k, self.d)) / self.width
        offs = gen.random((L, k))
        if self._on_device:
            from .._cupy._ckns import device_unit

            unit = device_unit(self._Xs, S, coef, proj, offs, self._w_dev)
        else:
            codes = hash_points(self._Xs[S], proj, offs)
            tab = BucketTables([(codes, np.broadcast_to(S, (L, S.size)))], self._w_host)
            unit = CKNSUnit(S=S, coef=coef, lsh=True, projections=proj, offsets=offs, tables=tab,
                            coef_pos=coef[np.searchsorted(S, tab.members)])
        cost["bytes"] += unit.tables.nbytes + proj.nbytes + offs.nbytes + unit.coef_pos.nbytes
        cost["n_tables"] += L
        cost["hash_evaluations"] += L * k * S.size
        return unit

    def samples(self, Y, *, level=-1, rng=None):
        """The per-copy estimates of one level (each unbiased for ``mu``, in the units of the weights).

        Parameters
        ----------
        Y : (m, d) array
        level : int, default -1
            Index into :attr:`levels`; it must have copies (not answer exactly).
        rng : None, int, SeedSequence or Generator, optional

        Returns
        -------
        (m, n_copies) float64 ndarray
        """
        Ys, lev, gen = self._sampling_level(Y, level, rng)
        return to_numpy(self._copies(lev, Ys, np.arange(Ys.shape[0]), gen)[0]) * self._w_scale

    def _query(self, Ys, Y, gen):
        J = len(self.levels) - 1
        exact = (lambda idx: self._exact(Y[self._xp.asarray(idx)]))

        def estimate_level(j, idx):
            level = self.levels[j]
            if self.sizing == "worst_case":
                Z, kev, hev = self._copies(level, Ys, idx, gen)
                est = to_numpy(median_of_means(Z, level.n_groups, self._xp if self._on_device else np))
                used = np.full(idx.size, level.n_copies)
                return est, to_numpy(kev), to_numpy(hev), used, np.zeros(idx.size, dtype=bool)
            kev = np.zeros(idx.size, dtype=np.int64)
            hev = np.zeros(idx.size, dtype=np.int64)

            def draw(sub, t0, t1):
                Z, k_ev, h_ev = self._copies(level, Ys, idx[sub], gen, t0, t1)
                kev[sub] += to_numpy(k_ev)
                hev[sub] += to_numpy(h_ev)
                return to_numpy(Z)  # the stopping rule runs on the host (device path: one (m, t) transfer)

            floor = self._mu_floor if j == J else self.level_ratio * level.budget
            est, used, low = copies_stop(draw, idx.size, self.eps, level.variance, level.stop_plan, floor,
                                         level.term_range)
            final = np.isnan(est)  # copies exhausted without a certified answer: the exact sum
            if final.any():
                est[final] = exact(idx[final])
                kev[final] += self.n
            # at the last level a stream stopped by "upper bound < mu_min" is a certified rejection, not an
            # estimate to compare with (1 - eps) mu_min: final, so the search flags it below mu_min
            return est, kev, hev, used, final | (low if j == J else False)

        return adaptive_search(Y.shape[0], self.budgets, self.level_ratio, self.eps, estimate_level, exact,
                               [lev.cost for lev in self.levels], self.n,
                               0.5 * self.n if self.exact_fallback else math.inf, self._mu_max)

    def _copies(self, level, Ys, idx, gen, c0=0, c1=None):
        """(len(idx), c1 - c0) estimates of copies ``c0 .. c1-1``, kernel and hash evaluations per query.

        The outer region's uniform indices of all these copies are drawn first, in one call (the
        same stream on every backend); the device path (CuPy data) is ``kdetheory._cupy._ckns``.
        """
        c1 = level.n_copies if c1 is None else c1
        out = gen.integers(0, self.n, (c1 - c0, idx.size, level.n_out))
        Ysel = Ys[self._xp.asarray(idx)]  # the data's dtype: queries are hashed like the stored points
        if self._on_device:
            from .._cupy._ckns import device_copies

            return device_copies(self._Xh, self._xp.asarray(Ysel, dtype=np.float64), Ysel, self._w_dev, level,
                                 c0, c1, out, self.width)
        Yq = np.ascontiguousarray(Ysel, dtype=np.float64)
        m = idx.size
        Z = np.zeros((m, c1 - c0))
        kev = np.zeros(m, dtype=np.int64)
        hev = np.zeros(m, dtype=np.int64)
        J2 = level.J * _LN2
        for c, units in enumerate(level.copies[c0:c1]):  # column c holds copy c0 + c
            for shell, unit in zip(level.shells, units):
                z, k_ev, h_ev = self._unit_estimate(shell, unit, Ysel, Yq)
                Z[:, c] += z
                kev += k_ev
                hev += h_ev
            # outer region k <= 2^-J: uniform sampling, only points beyond the last shell count
            r2 = gathered_squared_distances(self._Xh, Yq, out[c])
            Z[:, c] += (self._w_host[out[c]] * np.exp(-r2) * (r2 >= J2)).mean(axis=1)
            kev += level.n_out
        return Z, kev, hev

    def _unit_estimate(self, shell, unit, Ysel, Yq):
        """Contribution of one shell of one copy: (z, kernel evaluations, hash evaluations)."""
        m = Yq.shape[0]
        S = unit.S
        lo, hi = shell.r2
        if S.size == 0:
            return np.zeros(m), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        if not unit.lsh:
            r2 = gathered_squared_distances(self._Xh, Yq, np.broadcast_to(S, (m, S.size)))
            inside = (r2 >= lo) & (r2 < hi)
            z = (np.exp(-r2) * inside) @ unit.coef
            return z, np.full(m, S.size, dtype=np.int64), np.zeros(m, dtype=np.int64)
        codes = hash_points(Ysel, unit.projections, unit.offsets)
        kernel = _SHELL_KERNELS["numba" if self.backend == "numba" else "numpy"]
        z, kev = kernel(self._Xh, Yq, shell, unit, codes, self.width)
        return z, kev, np.full(m, shell.L * shell.k, dtype=np.int64)


def _shell_numpy(Xh, Yq, shell, unit, codes, width):
    """NumPy reference of one LSH shell: ``sum coef_x k(x, q) / P_found(x)`` over the distinct
    points found in any of the shell's tables that lie in the shell.

    Parameters
    ----------
    Xh, Yq : (n, d), (m, d) float64 ndarrays
        Rescaled data and queries.
    shell : CKNSShell
    unit : CKNSUnit
    codes : (L, m, k) int64 array
        The queries' keys.
    width : float

    Returns
    -------
    z : (m,) float64 ndarray; kev : (m,) int64 ndarray (distinct points evaluated)
    """
    tab, m = unit.tables, Yq.shape[0]
    lo, hi = shell.r2
    bucket = tab.lookup(codes, "numpy")
    t_idx, q_idx = np.nonzero(bucket >= 0)
    pos, owner = tab.expand(bucket[t_idx, q_idx])
    qq = q_idx[owner]
    # a point found in several tables counts once
    _, first_seen = np.unique(qq * Xh.shape[0] + tab.members[pos], return_index=True)
    pos, qq = pos[first_seen], qq[first_seen]
    r2 = squared_distances(Xh[tab.members[pos]], Yq[qq])
    inside = (r2 >= lo) & (r2 < hi)
    found = np.exp(log_found_probability(np.sqrt(r2[inside]), width, shell.k, shell.L))
    vals = unit.coef_pos[pos[inside]] * np.exp(-r2[inside]) / found
    return np.bincount(qq[inside], weights=vals, minlength=m), np.bincount(qq, minlength=m).astype(np.int64)


def _shell_numba(Xh, Yq, shell, unit, codes, width):
    """numba twin of :func:`_shell_numpy`."""
    from .._numba.kde import ckns_shell

    return ckns_shell(Xh, Yq, shell, unit, unit.tables.lookup(codes, "numba"), width)


#: backend -> per-shell kernel of the host path (CuPy data: ``kdetheory._cupy._ckns``)
_SHELL_KERNELS = {"numpy": _shell_numpy, "numba": _shell_numba}
