"""Device-resident copies of :class:`~kdetheory.kde.CKNSKDE` (the GPU-native CKNS shells).

The same estimator, the same random numbers and the same per-query costs as the host reference
(``CKNSKDE._copies`` / ``_unit_estimate`` and ``_shell_numpy`` of ``kdetheory.kde.ckns``;
docs/math.md §2.3), with every array in the namespace of its inputs:

* scanned shells (subsamples of at most ``brute_force_max`` expected points): the subsample
  indices, coefficients and shell bounds of every copy of a level, concatenated copy by copy and
  uploaded once at build (:class:`ScannedShells`); a query batch gathers them, takes squared
  distances by differences, masks each entry's shell and sums per copy with one ``bincount``
  (chunked over queries to ``_config.CHUNK_BYTES``);
* LSH shells: the subsample is hashed with one GEMM (``hash_points``) into
  :class:`~kdetheory._cupy._hbe.DeviceBucketTables` (keys sorted by a 64-bit mix, buckets as
  segment offsets, lookup by a segmented ``searchsorted`` and a full-key compare); the query's
  buckets are expanded on the device, a point found in several tables counts once (sort of
  ``query * n + index``, first of each run), and ``coef k / P_found`` is summed per query;
* outer region: uniform indices (drawn on the host by the reference's generator) gathered on
  the device.

Host steps (stated, and what they move): the build draws the subsamples, projections and offsets
on the host with the estimator's generator and uploads them (indices and coefficients, ``L k d``
floats per LSH shell), plus the tables' mix check (one boolean per try); a query uploads its
outer-region indices (``m n_out`` integers per copy) and reads back one integer per LSH shell of a
copy (how many bucket members to gather). Tables, samples and kernel values stay on the device;
the driver reads one estimate and one count per query and level (the adaptive rule reads its
batches of copies, ``m x t`` values).

Namespace generic: with NumPy arrays this is a step-by-step stand-in of the GPU path, which is how
the CPU suite checks it (tests/test_ckns_device_standin.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import _config
from ..kde._base import gathered_squared_distances, squared_distances
from ..lsh.euclidean import hash_points
from ._hbe import DeviceBucketTables, _xp_of, log_p1

__all__ = ["ScannedShells", "device_copies", "device_unit"]


@dataclasses.dataclass(frozen=True)
class ScannedShells:
    """The scanned (non-LSH) shells of every copy of one level, concatenated copy by copy.

    Attributes
    ----------
    index : (N,) int64 array
        Data index of each entry (device).
    coef : (N,) float64 array
        ``w_x / (n pi_x)`` of each entry.
    copy : (N,) int64 array
        The copy each entry belongs to.
    lo, hi : (N,) float64 arrays
        The entry's shell in squared (rescaled) distance, ``[lo, hi)``.
    ptr : (C + 1,) int64 ndarray (host)
        Copy ``c`` holds entries ``ptr[c] .. ptr[c+1]-1``.
    """

    index: object
    coef: object
    copy: object
    lo: object
    hi: object
    ptr: np.ndarray

    @classmethod
    def from_copies(cls, copies, shells, xp):
        """Flatten the scanned units of ``copies`` (``copies[c][s]``, host ``S`` and ``coef``) and upload once."""
        parts = {"index": [], "coef": [], "copy": [], "lo": [], "hi": []}
        ptr = [0]
        for c, units in enumerate(copies):
            size = 0
            for shell, unit in zip(shells, units):
                s = unit.S.size
                if unit.lsh or s == 0:
                    continue
                parts["index"].append(unit.S)
                parts["coef"].append(unit.coef)
                parts["copy"].append(np.full(s, c, dtype=np.int64))
                parts["lo"].append(np.full(s, shell.r2[0]))
                parts["hi"].append(np.full(s, shell.r2[1]))
                size += s
            ptr.append(ptr[-1] + size)
        dtypes = {"index": np.int64, "coef": np.float64, "copy": np.int64, "lo": np.float64, "hi": np.float64}
        arrays = {k: xp.asarray(np.concatenate(v) if v else np.zeros(0, dtype=dtypes[k]), dtype=dtypes[k])
                  for k, v in parts.items()}
        return cls(ptr=np.asarray(ptr, dtype=np.int64), **arrays)

    @property
    def nbytes(self):
        """Bytes held on the device."""
        return int(sum(a.nbytes for a in (self.index, self.coef, self.copy, self.lo, self.hi)))


def device_unit(Xs, S, coef, projections, offsets, weights):
    """One LSH shell of one copy on the device: the twin of the host branch of ``CKNSKDE._build_unit``.

    Parameters
    ----------
    Xs : (n, d) array
        Rescaled data (device).
    S : (s,) int64 ndarray
        Sorted subsample (host; drawn by the estimator's generator).
    coef : (s,) float64 ndarray
        ``w_x / (n pi_x)``.
    projections, offsets : (L, k, d), (L, k) float64 ndarrays
        The shell's E2LSH (host draws, uploaded here once).
    weights : (n,) float64 array
        Normalised weights (device).

    Returns
    -------
    CKNSUnit
        ``S`` and ``coef`` kept on the host (they also feed :class:`ScannedShells` and the cost
        count); projections, offsets, tables and ``coef_pos`` on the device.
    """
    from ..kde.ckns import CKNSUnit

    xp = _xp_of(Xs)
    S_dev = xp.asarray(S)
    # in the data's dtype, as hash_points would cast them on every query
    P, O = xp.asarray(projections, dtype=Xs.dtype), xp.asarray(offsets, dtype=Xs.dtype)
    codes = hash_points(Xs[S_dev], P, O)  # one GEMM: (L, s, k) keys
    tab = DeviceBucketTables([(codes, xp.broadcast_to(S_dev, (P.shape[0], S.size)))], weights)
    coef_pos = xp.asarray(coef)[xp.searchsorted(S_dev, tab.members)]
    return CKNSUnit(S=S, coef=coef, lsh=True, projections=P, offsets=O, tables=tab, coef_pos=coef_pos)


def _lsh_shell(Xh, Yq, shell, unit, codes, width):
    """Twin of ``kdetheory.kde.ckns._shell_numpy``: ``sum coef_x k(x, q) / P_found(x)`` over the distinct
    points found in any of the shell's tables that lie in the shell; (z, distinct points evaluated)."""
    xp = _xp_of(Xh)
    tab, m = unit.tables, Yq.shape[0]
    bucket = tab.lookup(codes).ravel()  # (L * m,), table-major
    b = xp.where(bucket >= 0, bucket, 0)
    lens = xp.where(bucket >= 0, tab.last[b] - tab.first[b], 0)
    ends = xp.cumsum(lens)
    total = int(ends[-1]) if ends.size else 0  # the one read back: how many members to gather
    if total == 0:
        return xp.zeros(m), xp.zeros(m, dtype=xp.int64)
    i = xp.arange(total)
    owner = xp.searchsorted(ends, i, side="right")  # the (table, query) entry of each gathered member
    pos = tab.first[b][owner] + i - (ends - lens)[owner]
    qq = owner % m
    # a point found in several tables counts once (its coef is the same in every table)
    key = qq * Xh.shape[0] + tab.members[pos]
    order = xp.argsort(key)
    key, pos, qq = key[order], pos[order], qq[order]
    first = xp.ones(total, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    pos, qq = pos[first], qq[first]
    r2 = squared_distances(Xh[tab.members[pos]], Yq[qq])
    lo, hi = shell.r2
    inside = (r2 >= lo) & (r2 < hi)
    p = xp.exp(shell.k * log_p1(xp.sqrt(r2) / width))
    found = -xp.expm1(shell.L * xp.log1p(-xp.minimum(p, 1.0)))
    vals = xp.where(inside, unit.coef_pos[pos] * xp.exp(-r2) / xp.where(inside, found, 1.0), 0.0)
    return xp.bincount(qq, weights=vals, minlength=m), xp.bincount(qq, minlength=m).astype(xp.int64)


def device_copies(Xh, Yq, Ysel, weights, level, c0, c1, out, width):
    """Estimates of copies ``c0 .. c1-1`` of a level: the twin of ``CKNSKDE._copies``' host loop.

    Parameters
    ----------
    Xh : (n, d) float64 array
        Rescaled data (device).
    Yq : (m, d) float64 array
        Rescaled queries (device).
    Ysel : (m, d) array
        The same queries in the data's dtype (hashed like the stored points).
    weights : (n,) float64 array
        Normalised weights (device).
    level : CKNSLevel
        Its ``device`` holds the :class:`ScannedShells`; its LSH units hold device tables.
    c0, c1 : int
        Copy range.
    out : (c1 - c0, m, n_out) int64 ndarray
        Outer-region indices (host draws; uploaded here).
    width : float
        E2LSH bucket width.

    Returns
    -------
    Z : (m, c1 - c0) float64 array; kev, hev : (m,) int64 arrays (all in the namespace of ``Xh``)
    """
    xp = _xp_of(Xh)
    m, C = Yq.shape[0], c1 - c0
    Z = xp.zeros((m, C))
    kev = xp.zeros(m, dtype=xp.int64)
    hev = xp.zeros(m, dtype=xp.int64)
    sc = level.device
    a, b = int(sc.ptr[c0]), int(sc.ptr[c1])
    if b > a:  # every scanned shell of the range at once: gather, mask, one bincount per block of queries
        idx, coef, copy = sc.index[a:b], sc.coef[a:b], sc.copy[a:b] - c0
        lo, hi = sc.lo[a:b], sc.hi[a:b]
        rows = _config.block_shape(m, b - a, 8, temporaries=2 * Xh.shape[1] + 4)[0]
        for r0 in range(0, m, rows):
            Yr = Yq[r0:r0 + rows]
            mr = Yr.shape[0]
            r2 = gathered_squared_distances(Xh, Yr, xp.broadcast_to(idx, (mr, b - a)))
            vals = xp.where((r2 >= lo) & (r2 < hi), xp.exp(-r2), 0.0) * coef
            cell = (xp.arange(mr)[:, None] * C + copy[None, :]).ravel()
            Z[r0:r0 + mr] += xp.bincount(cell, weights=vals.ravel(), minlength=mr * C).reshape(mr, C)
        kev += b - a
    for c in range(c0, c1):  # LSH shells: their own tables
        for shell, unit in zip(level.shells, level.copies[c]):
            if not unit.lsh:
                continue
            z, k_ev = _lsh_shell(Xh, Yq, shell, unit, hash_points(Ysel, unit.projections, unit.offsets), width)
            Z[:, c - c0] += z
            kev += k_ev
            hev += shell.L * shell.k
    # outer region k <= 2^-J: uniform sampling, only points beyond the last shell count
    o = xp.asarray(out)
    J2 = level.J * float(np.log(2.0))
    for c in range(C):
        r2 = gathered_squared_distances(Xh, Yq, o[c])
        Z[:, c] += (weights[o[c]] * xp.exp(-r2) * (r2 >= J2)).mean(axis=1)
    kev += C * level.n_out
    return Z, kev, hev
