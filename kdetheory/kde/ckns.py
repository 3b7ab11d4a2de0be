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
``kdetheory._numba.kde``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._array import to_numpy
from .._validation import check_int, check_positive
from ..lsh.euclidean import BucketTables, _log_p1, hash_points, log_found_probability
from ._base import KDEEstimator, adaptive_search, density_levels, gathered_squared_distances, squared_distances
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


class CKNSKDE(KDEEstimator):
    """CKNS multi-scale estimator (data-independent E2LSH), with density guessing.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`. ``backend="cupy"`` hashes on the GPU and
        looks buckets up on the host (the GPU-native shells are not built yet).
    width : float, default 4.0
        E2LSH bucket width (STAG's ``w = 4``), in units where the kernel is ``exp(-r^2)``.
    table_constant : float, default 1.0
        ``C2`` in ``K2 = max(1, C2 ln n)``; shell ``j`` gets ``L_j = ceil(K2 2^phi_j)`` tables of
        ``k_j = max(1, floor(-phi_j / log2 p1(r_j/w)))`` hashes, ``phi_j = ceil((j/J)(J - j + 1))``.
    brute_force_max : int, default 3000
        Shell subsamples with at most this many points are scanned directly (no LSH), as in STAG.
    n_copies : int, optional
        Independent copies per level (overrides the count derived from ``eps`` and ``delta``).
    n_groups : int, optional
        Median-of-means groups when ``n_copies`` is given (default 1: a plain mean).
    level_ratio : float, default 4
        Density guesses ``level_ratio^-(j+1)`` down to ``mu_min`` (STAG uses guesses 4x apart).
    exact_fallback : bool, default True
        Answer exactly where the structure would cost more than ``n/2``: a level whose expected
        cost exceeds ``n/2`` is not built, and a query answers exactly once what it has spent plus
        the next level's cost bound exceeds ``n/2`` (never more than ``n/2 + n`` in all). False keeps every
        structure (to measure its cost and variance where exact would be cheaper).

    Notes
    -----
    One copy has relative variance at most about ``2 / P_min + 1/4`` for ``mu >= mu_guess``
    (``P_min`` the smallest find probability at a shell's outer radius; reconstructed), and the
    estimate is the median of means of copies sized by :func:`~kdetheory.kde._mom.mom_shape`
    with failure probability ``delta/3`` per level. The adaptive search is that of
    :func:`~kdetheory.kde._base.adaptive_search` (STAG's acceptance rule ``>= (n mu)^0.9`` is a
    heuristic and is not used). Only worst-case sizing is implemented: a copy's value has no
    small a-priori range, which the empirical-Bernstein rule of the other estimators needs.

    The LSH here is data-independent, so the theoretical exponent is about ``tau = 1/4``
    (CKNS data-independent), not the ``0.173`` of Theorem 2.1, which needs data-dependent LSH.
    Cost per query: hash evaluations ``sum_j L_j k_j`` and the kernel evaluations of the
    distinct points found (or scanned) per copy.

    References
    ----------
    Charikar, Kapralov, Nouri, Siminelakis, "Kernel density estimation through density
    constrained near neighbor search", FOCS 2020; KDEformer (ICML 2023), Theorem 2.1.
    """

    _auto_backend = "numba"

    def __init__(self, X, *, eps=0.1, delta=0.05, mu_min=1e-3, bandwidth=1.0, weights=None, rng=None,
                 backend="auto", width=4.0, table_constant=1.0, brute_force_max=3000, n_copies=None,
                 n_groups=None, level_ratio=4.0, exact_fallback=True):
        self.width = check_positive("width", width)
        self.table_constant = check_positive("table_constant", table_constant)
        self.brute_force_max = check_int("brute_force_max", brute_force_max, minimum=0)
        self._n_copies = None if n_copies is None else check_int("n_copies", n_copies, minimum=1)
        self._n_groups_arg = None if n_groups is None else check_int("n_groups", n_groups, minimum=1)
        self.level_ratio = check_positive("level_ratio", level_ratio)
        if self.level_ratio <= 1:
            raise ValueError(f"level_ratio: got {level_ratio!r}; pass a number > 1.")
        self.exact_fallback = bool(exact_fallback)
        super().__init__(X, eps=eps, delta=delta, mu_min=mu_min, bandwidth=bandwidth, weights=weights,
                         rng=rng, backend=backend)

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

    def _build(self):
        n = self.n
        self.budgets = density_levels(self._mu_floor, self.level_ratio)
        self.levels = []
        self._Xh = np.ascontiguousarray(to_numpy(self._Xs), dtype=np.float64)
        cost = {"bytes": 0, "n_tables": 0, "hash_evaluations": 0}
        for b in self.budgets:
            if self.levels and self.levels[-1].exact:
                # Costs grow as the guess falls: every deeper level is exact too (no need to plan
                # its shells: at weights 1e300 and mu_min 1e-3 there are hundreds of levels).
                self.levels.append(CKNSLevel(budget=b, J=0, shells=(), n_out=0, n_copies=0, n_groups=1,
                                             exact=True, cost=math.inf))
                continue
            J, shells, n_out = self._shell_plan(b)
            V = 2.0 / min(s.found for s in shells) + 0.25
            if self._n_copies is None:
                size, groups = mom_shape(V, self.eps, self.delta / 3.0)
            else:
                groups = self._n_groups_arg or 1
                size = max(1, math.ceil(self._n_copies / groups))
            copies = size * groups
            per_copy = sum(s.cost for s in shells) + n_out
            exact = self.exact_fallback and copies * per_copy > 0.5 * n
            built = () if exact else tuple(tuple(self._build_unit(b, s, cost) for s in shells)
                                           for _ in range(copies))
            bound = math.inf if exact else float(sum(u.cost for units in built for u in units) + copies * n_out)
            self.levels.append(CKNSLevel(budget=b, J=J, shells=shells, n_out=n_out, n_copies=copies,
                                         n_groups=groups, exact=exact, cost=bound, copies=built))
        return cost

    def _build_unit(self, b, shell, cost):
        gen, n = self._rng, self.n
        rates = np.minimum(1.0, self._w_host / (n * b * 2.0 ** shell.j))
        S = bernoulli_sample(gen, rates, shell.rate_max)
        coef = self._w_host[S] / (n * rates[S])  # w_x / (n pi_x)
        cost["bytes"] += S.nbytes + coef.nbytes
        if shell.brute or S.size == 0:
            return CKNSUnit(S=S, coef=coef, lsh=False)
        L, k = shell.L, shell.k
        proj = gen.standard_normal((L, k, self.d)) / self.width
        offs = gen.random((L, k))
        codes = hash_points(self._Xs[self._xp.asarray(S)], proj, offs)
        tab = BucketTables([(codes, np.broadcast_to(S, (L, S.size)))], self._w_host)
        unit = CKNSUnit(S=S, coef=coef, lsh=True, projections=proj, offsets=offs, tables=tab,
                        coef_pos=coef[np.searchsorted(S, tab.members)])
        cost["bytes"] += tab.nbytes + proj.nbytes + offs.nbytes + unit.coef_pos.nbytes
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
        return self._copies(lev, Ys, np.arange(Ys.shape[0]), gen)[0] * self._w_scale

    def _query(self, Ys, Y, gen):
        def estimate_level(j, idx):
            level = self.levels[j]
            Z, kev, hev = self._copies(level, Ys, idx, gen)
            used = np.full(idx.size, level.n_copies)
            return median_of_means(Z, level.n_groups), kev, hev, used, np.zeros(idx.size, dtype=bool)

        return adaptive_search(Y.shape[0], self.budgets, self.level_ratio, self.eps, estimate_level,
                               lambda idx: self._exact(Y[self._xp.asarray(idx)]),
                               [lev.cost for lev in self.levels], self.n,
                               0.5 * self.n if self.exact_fallback else math.inf, self._mu_max)

    def _copies(self, level, Ys, idx, gen):
        """(len(idx), n_copies) per-copy estimates, kernel and hash evaluations per query."""
        Yq = np.ascontiguousarray(to_numpy(Ys), dtype=np.float64)[idx]
        m = idx.size
        Z = np.zeros((m, level.n_copies))
        kev = np.zeros(m, dtype=np.int64)
        hev = np.zeros(m, dtype=np.int64)
        Ysel = Ys[self._xp.asarray(idx)]
        J2 = level.J * _LN2
        for c, units in enumerate(level.copies):
            for shell, unit in zip(level.shells, units):
                z, k_ev, h_ev = self._unit_estimate(shell, unit, Ysel, Yq)
                Z[:, c] += z
                kev += k_ev
                hev += h_ev
            # outer region k <= 2^-J: uniform sampling, only points beyond the last shell count
            out = gen.integers(0, self.n, (m, level.n_out))
            r2 = gathered_squared_distances(self._Xh, Yq, out)
            Z[:, c] += (self._w_host[out] * np.exp(-r2) * (r2 >= J2)).mean(axis=1)
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


#: backend -> per-shell kernel (CuPy inputs use the host kernels; see the class docstring)
_SHELL_KERNELS = {"numpy": _shell_numpy, "numba": _shell_numba}
