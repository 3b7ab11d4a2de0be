"""Multi-scale near-neighbour KDE of Charikar, Kapralov, Nouri, Siminelakis (FOCS 2020), the
estimator behind Theorem 2.1, built as the STAG library builds it (SPEC section 2.3) [C, R].

For a density guess ``mu``, the data are cut by kernel value into shells
``S_j = {x : 2^-j < k(x, q) <= 2^-(j-1)}``, ``j = 1..J`` with ``J = ceil(log2(1/mu))``
(radii ``r^2`` in ``[(j-1) ln 2, j ln 2)`` for ``k = exp(-r^2)``). Shell ``j`` only needs the
points of a subsample that keeps x with probability ``min(1, w_x/(n mu 2^j))`` (``1/(n mu 2^j)`` unweighted): it holds at most
``n mu 2^j`` points, so about one of them survives, and E2LSH at the shell's radius finds it.
The estimate ``sum_j sum_{x found, x in S_j} (w_x/n) k(x, q) / (pi_x P_found(x))`` is unbiased
because ``P_found = 1 - (1 - p1(r/w)^k)^L`` is the exact probability that ``x`` shares a bucket
with ``q`` in one of the ``L`` tables; the outer region ``k <= 2^-J`` is estimated by uniform
sampling.
"""
from __future__ import annotations

import math

import numpy as np

from .._array import to_numpy
from .._validation import check_int, check_positive
from ..lsh.euclidean import BucketTables, _log_p1, hash_points, log_found_probability
from ._base import KDEEstimator, adaptive_search, density_levels
from ._mom import median_of_means, mom_shape

__all__ = ["CKNSKDE"]

_LN2 = math.log(2.0)


def _bernoulli_sample(gen, rates, rate_max):
    """Indices kept independently with probability ``rates`` (sorted), in O(n * rate_max) draws:
    geometric gaps give a Bernoulli(rate_max) process, thinned by rates / rate_max."""
    n = rates.size
    if rate_max >= 1.0:
        cand = np.arange(n)
    else:
        chunks, pos = [], -1
        while pos < n:
            gaps = gen.geometric(rate_max, size=max(16, int(1.2 * n * rate_max) + 16))
            idx = pos + np.cumsum(gaps)
            chunks.append(idx)
            pos = int(idx[-1])
        cand = np.concatenate(chunks)
        cand = cand[cand < n]
    keep = gen.random(cand.size) * rate_max < rates[cand]
    return cand[keep]


class CKNSKDE(KDEEstimator):
    """CKNS multi-scale estimator (data-independent E2LSH), with density guessing.

    Parameters
    ----------
    X, eps, delta, mu_min, bandwidth, weights, rng, backend
        See :class:`~kdetheory.kde._base.KDEEstimator`.
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
        Answer a level exactly when its expected query cost reaches ``n`` kernel evaluations;
        False keeps the structure (to measure its cost and variance where exact would be cheaper).

    Notes
    -----
    One copy has relative variance at most about ``2 / P_min + 1/4`` for ``mu >= mu_guess``
    (``P_min`` the smallest find probability at a shell's outer radius; reconstructed), and the
    estimate is the median of means of copies sized by :func:`~kdetheory.kde._mom.mom_shape`
    with failure probability ``delta/3`` per level. The adaptive search is that of
    :func:`~kdetheory.kde._base.adaptive_search` (STAG's acceptance rule ``>= (n mu)^0.9`` is a
    heuristic and is not used). A level whose expected query cost reaches ``n`` answers exactly.

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
        J = max(1, math.ceil(math.log2(1.0 / b) - 1e-12))
        K2 = max(1.0, self.table_constant * math.log(n))
        shells = []
        for j in range(1, J + 1):
            r_j = math.sqrt(j * _LN2)
            phi = math.ceil((j / J) * (J - j + 1))
            log2_p = float(_log_p1(np.array(r_j / self.width))) / _LN2
            k = max(1, math.floor(-phi / log2_p))
            L = math.ceil(K2 * 2.0**phi)
            rate_max = min(1.0, self._w_max / (n * b * 2.0**j))
            expected = n * rate_max
            brute = expected <= self.brute_force_max
            found = 1.0 if brute else math.exp(float(log_found_probability(r_j, self.width, k, L)))
            cost = expected if brute else L * k + K2
            shells.append({"j": j, "k": k, "L": L, "rate_max": rate_max, "brute": brute, "found": found,
                           "cost": cost, "r2": ((j - 1) * _LN2, j * _LN2)})
        n_out = max(1, math.ceil(4.0 * self._w_max * 2.0**-J / b))
        return J, shells, n_out

    def _build(self):
        n = self.n
        self.budgets = density_levels(self.mu_min, self.level_ratio)
        self.levels = []
        self._centre = self._Xs.mean(axis=0)
        self._Xh = np.ascontiguousarray(to_numpy(self._Xs), dtype=np.float64)
        self._Xc = np.ascontiguousarray(to_numpy(self._Xs - self._centre), dtype=np.float64)
        self._Xc_sq = (self._Xc * self._Xc).sum(axis=1)
        cost = {"bytes": 0, "n_tables": 0, "hash_evaluations": 0}
        for b in self.budgets:
            J, shells, n_out = self._shell_plan(b)
            V = 2.0 / min(s["found"] for s in shells) + 0.25
            if self._n_copies is None:
                size, groups = mom_shape(V, self.eps, self.delta / 3.0)
            else:
                groups = self._n_groups_arg or 1
                size = max(1, math.ceil(self._n_copies / groups))
            copies = size * groups
            per_copy = sum(s["cost"] for s in shells) + n_out
            level = {"budget": b, "J": J, "shells": shells, "n_out": n_out, "n_copies": copies,
                     "n_groups": groups, "exact": self.exact_fallback and copies * per_copy >= n,
                     "copies": []}
            if not level["exact"]:
                for _ in range(copies):
                    units = [self._build_unit(b, s, cost) for s in shells]
                    level["copies"].append(units)
            self.levels.append(level)
        return cost

    def _build_unit(self, b, shell, cost):
        gen, n = self._rng, self.n
        rates = np.minimum(1.0, self._w_host / (n * b * 2.0 ** shell["j"]))
        S = _bernoulli_sample(gen, rates, shell["rate_max"])
        coef = self._w_host[S] / (n * rates[S])  # w_x / (n pi_x)
        unit = {"S": S, "coef": coef, "lsh": not shell["brute"] and S.size > 0}
        cost["bytes"] += S.nbytes + coef.nbytes
        if unit["lsh"]:
            L, k = shell["L"], shell["k"]
            proj = gen.standard_normal((L, k, self.d)) / self.width
            offs = gen.random((L, k))
            codes = hash_points(self._Xs[self._xp.asarray(S)], proj, offs)
            tab = BucketTables(codes, np.broadcast_to(S, (L, S.size)), self._w_host)
            unit.update(proj=proj, offs=offs, tables=tab, coef_pos=coef[np.searchsorted(S, tab.members)])
            cost["bytes"] += tab.nbytes + proj.nbytes + unit["coef_pos"].nbytes
            cost["n_tables"] += L
            cost["hash_evaluations"] += L * k * S.size
        return unit

    def samples(self, Y, *, level=-1, rng=None):
        """The per-copy estimates of one level (each unbiased for ``mu``).

        Parameters
        ----------
        Y : (m, d) array
        level : int, default -1
            Index into :attr:`budgets`.
        rng : None, int, SeedSequence or Generator, optional

        Returns
        -------
        (m, n_copies) float64 ndarray
        """
        Ys, lev, gen = self._sampling_level(Y, level, rng)
        return self._copies(lev, Ys, np.arange(Ys.shape[0]), gen)[0]

    def _query(self, Ys, Y, gen):
        def estimate_level(j, idx):
            level = self.levels[j]
            if level["exact"]:
                return self._exact(Y[idx]), self.n, 0, True
            Z, kev, hev = self._copies(level, Ys, idx, gen)
            return median_of_means(Z, level["n_groups"]), kev, hev, False

        est, below, kev, hev, lev = adaptive_search(Y.shape[0], self.budgets, self.level_ratio, self.eps,
                                                    estimate_level)
        return est.astype(self.X.dtype), below, kev, hev, lev

    def _copies(self, level, Ys, idx, gen):
        """(len(idx), n_copies) per-copy estimates, kernel and hash evaluations per query."""
        Yh = np.ascontiguousarray(to_numpy(Ys), dtype=np.float64)
        Yc = Yh - to_numpy(self._centre)
        m = idx.size
        Z = np.zeros((m, level["n_copies"]))
        kev = np.zeros(m, dtype=np.int64)
        hev = np.zeros(m, dtype=np.int64)
        Ysel = Ys[self._xp.asarray(idx)]
        for c, units in enumerate(level["copies"]):
            for shell, unit in zip(level["shells"], units):
                z, k_ev, h_ev = self._unit_estimate(shell, unit, Ysel, Yh[idx], Yc[idx])
                Z[:, c] += z
                kev += k_ev
                hev += h_ev
            # outer region k <= 2^-J: uniform sampling, only points beyond the last shell count
            J2 = level["J"] * _LN2
            out = gen.integers(0, self.n, (m, level["n_out"]))
            r2 = _gemm_sqdist(self._Xc[out], self._Xc_sq[out], Yc[idx])
            Z[:, c] += (self._w_host[out] * np.exp(-r2) * (r2 >= J2)).mean(axis=1)
            kev += level["n_out"]
        return Z, kev, hev

    def _unit_estimate(self, shell, unit, Ysel, Yq, Ycq):
        """Contribution of one shell of one copy: (z, kernel evaluations, hash evaluations)."""
        m = Yq.shape[0]
        S = unit["S"]
        lo, hi = shell["r2"]
        if S.size == 0:
            return np.zeros(m), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        if not unit["lsh"]:
            r2 = _gemm_sqdist(self._Xc[S][None, :, :], self._Xc_sq[S][None, :], Ycq)
            inside = (r2 >= lo) & (r2 < hi)
            z = (np.exp(-r2) * inside) @ unit["coef"]
            return z, np.full(m, S.size, dtype=np.int64), np.zeros(m, dtype=np.int64)
        tab, k, L = unit["tables"], shell["k"], shell["L"]
        codes = hash_points(Ysel, unit["proj"], unit["offs"])
        hev = np.full(m, L * k, dtype=np.int64)
        if self.backend == "numba":
            from .._numba.kde import ckns_shell

            bucket = tab.lookup(codes, "numba")
            z, kev = ckns_shell(self._Xh, Yq, unit["coef_pos"], tab.members, tab.first, tab.last, bucket,
                                lo, hi, k, self.width, L)
            return z, kev, hev
        bucket = tab.lookup(codes, "numpy")
        t_idx, q_idx = np.nonzero(bucket >= 0)
        pos, owner = tab.expand(bucket[t_idx, q_idx])
        qq = q_idx[owner]
        # a point found in several tables counts once
        _, first_seen = np.unique(qq * self.n + tab.members[pos], return_index=True)
        pos, qq = pos[first_seen], qq[first_seen]
        a = tab.members[pos]
        D = self._Xh[a] - Yq[qq]
        r2 = np.einsum("ij,ij->i", D, D)
        inside = (r2 >= lo) & (r2 < hi)
        found = np.exp(log_found_probability(np.sqrt(r2[inside]), self.width, k, L))
        vals = unit["coef_pos"][pos[inside]] * np.exp(-r2[inside]) / found
        z = np.bincount(qq[inside], weights=vals, minlength=m)
        return z, np.bincount(qq, minlength=m).astype(np.int64), hev


def _gemm_sqdist(Xc, Xc_sq, Yc):
    """||x - y||^2 for (m, s, d) (or (1, s, d)) centred points and (m, d) queries, clipped at 0."""
    r2 = Xc_sq + (Yc * Yc).sum(axis=1)[:, None] - 2.0 * np.einsum("msd,md->ms", Xc, Yc) \
        if Xc.shape[0] == Yc.shape[0] else Xc_sq + (Yc * Yc).sum(axis=1)[:, None] - 2.0 * (Yc @ Xc[0].T)
    return np.maximum(r2, 0.0)
