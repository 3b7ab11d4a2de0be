"""Device-resident bucket tables and per-table samples of :class:`~kdetheory.kde.HashingBasedKDE`.

The GPU-native hashing-based estimator (Charikar and Siminelakis, FOCS 2017; docs/math.md
sections 2.2 and 2.3): the same estimator, the same draws and the same per-query costs as the
host reference (:class:`~kdetheory.lsh.euclidean.BucketTables` and ``_sample_numpy`` /
``_bucket_numpy`` of ``kdetheory.kde.hbe``), with every array in the namespace of its inputs:

* hashing: one GEMM + floor per chunk of tables (``hash_points``, unchanged);
* tables: each table's stored keys sorted by a 64-bit mix, buckets as segment offsets
  (``first``/``last``), a monotone ``cdf_key`` per table for the weighted draw;
* lookup: a segmented binary search of the query's mix in its table's bucket mixes, then a
  compare of the full integer key;
* sampling: a segmented binary search of ``rank + u`` in ``cdf_key``; kernel / collision ratio on
  the device;
* fused (CuPy, form "sample", ``_config.HBE_FUSED``): :func:`fused_sample_samples` does all of the
  above, and the median of means, for a chunk of queries at one level in one launch of ``hbe.cu``
  (about 40 namespace calls otherwise); the namespace functions stay the reference it is tested
  against and the fallback when the knob is off.

Every function is namespace generic: with CuPy arrays it runs on the GPU; with NumPy arrays it is
a step-by-step stand-in of the device path that gives the host reference's values (same sort
order, same draws), which is how the CPU test suite checks this code.

Exact keys: the build re-mixes a level with a new salt until no two distinct keys of one table
share a mix (probability about ``s^2 / 2^65`` per table per try), so a bucket is found by its mix
alone and the full-key compare rejects a query whose distinct key happens to share a stored mix.
No false collision can enter the estimate, which stays unbiased.

Host steps (stated, and counted where they move data):

* the build draws the projections, offsets and subsample indices on the host with the
  estimator's generator (the reference's stream) and uploads them once per level (``T k d``
  floats, ``T s`` indices); it reads back one boolean per level and salt (the mix check);
* a query reads back nothing here; the driver's adaptive search moves one estimate and one count
  per query and level to the host in one transfer (``kdetheory.kde.hbe``), never a table or a
  sample matrix (the adaptive sizing's stopping rule, which runs on the host, does read its
  batches of samples);
* the whole-bucket form reads back one integer per call (the number of gathered members).
"""
from __future__ import annotations

import math

import numpy as np

from ..kde._base import squared_distances

__all__ = ["DeviceBucketTables", "device_bucket_samples", "device_sample_samples", "device_uniforms",
           "fused_sample_samples", "key_mix", "log_p1"]

_MIX_MULT = 0x9E3779B97F4A7C15
_MIX_SEED = 0xCBF29CE484222325
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _xp_of(a):
    """NumPy or CuPy, whichever holds ``a`` (imports CuPy only for CuPy arrays)."""
    if isinstance(a, np.ndarray):
        return np
    import cupy

    return cupy


def _erf(xp):
    if xp is np:
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf


def key_mix(codes, salt=0):
    """64-bit mix of integer keys along the last axis, in the namespace of ``codes``.

    ``salt = 0`` gives exactly :func:`kdetheory.lsh.euclidean.key_mix` (so the stand-in orders
    buckets like the host tables); another salt starts the mix elsewhere.
    """
    xp = _xp_of(codes)
    seed = np.uint64((_MIX_SEED + salt * _MIX_MULT) % 2**64)
    if xp is not np:  # one fused launch instead of four per key column
        codes = xp.ascontiguousarray(codes)
        rows = xp.arange(codes.size // max(codes.shape[-1], 1)).reshape(codes.shape[:-1])
        return _cuda_kernel(xp, "key_mix")(codes, codes.shape[-1], seed, rows)
    h = xp.full(codes.shape[:-1], seed, dtype=xp.uint64)
    mult, shift = xp.uint64(_MIX_MULT), xp.uint64(29)
    for j in range(codes.shape[-1]):
        h ^= codes[..., j].astype(xp.uint64)
        h *= mult
        h ^= h >> shift
    return h


def log_p1(c):
    """``log p1(c)`` of p-stable LSH (``kdetheory.lsh.euclidean._log_p1`` without boolean indexing)."""
    xp = _xp_of(c)
    big = c >= 1e-100
    cp = xp.where(big, c, 1.0)
    p = _erf(xp)(1.0 / (math.sqrt(2.0) * cp)) + _SQRT_2_OVER_PI * cp * xp.expm1(-0.5 / (cp * cp))
    return xp.where(big, xp.log(xp.maximum(p, np.finfo(np.float64).tiny)), -_SQRT_2_OVER_PI * c)


def kernel_over_collision(r2, n_concat, width):
    """``exp(-r^2) / p1(r / w)^k`` for squared distances ``r2`` (any namespace)."""
    xp = _xp_of(r2)
    if xp is not np:  # one fused launch (the same formula as log_p1, in CUDA's erf / expm1 / log)
        return _cuda_kernel(xp, "kernel_over_collision")(r2, float(n_concat), float(width))
    return xp.exp(-r2 - n_concat * log_p1(xp.sqrt(r2) / width))


def segment_search(values, lo, hi, targets, side, steps):
    """Vectorised ``searchsorted`` of each target in its own sorted segment ``values[lo:hi]``.

    Parameters
    ----------
    values : (N,) array, sorted within every segment
    lo, hi : int64 arrays (any shape, the same as ``targets``)
        Segment bounds.
    targets : array
    side : {"left", "right"}
    steps : int
        At least ``(longest segment).bit_length()`` (a host integer: no device sync).

    Returns
    -------
    int64 array
        ``lo + np.searchsorted(values[lo:hi], target, side)`` elementwise.
    """
    xp = _xp_of(values)
    if xp is not np:  # one fused launch on the GPU instead of ~8 per halving step
        return _cuda_kernel(xp, "segment_search")(values, lo, hi, xp.asarray(targets, dtype=values.dtype),
                                                  side == "right")
    lo, hi = lo.copy(), hi.copy()
    last = max(values.shape[0] - 1, 0)
    for _ in range(steps):
        active = lo < hi
        mid = (lo + hi) // 2
        v = values[xp.minimum(mid, last)]
        go = active & ((v < targets) if side == "left" else (v <= targets))
        lo = xp.where(go, mid + 1, lo)
        hi = xp.where(active & ~go, mid, hi)
    return lo


_KERNELS = {}

#: CUDA twins of the NumPy loops above: (in params, out params, body); compiled at first use by NVRTC
_KERNEL_SOURCES = {
    # segment_search's halving loop: same comparisons, same result
    "segment_search": ("raw T values, int64 lo0, int64 hi0, T target, bool right", "int64 out", """
        long long lo = lo0, hi = hi0;
        while (lo < hi) {
            long long mid = (lo + hi) >> 1;
            T v = values[mid];
            if (right ? (v <= target) : (v < target)) lo = mid + 1; else hi = mid;
        }
        out = lo;"""),
    # key_mix over one row of k integer hashes (int32 or int64, sign-extended like numpy's astype(uint64))
    "key_mix": ("raw I codes, int64 k, uint64 seed, int64 row", "uint64 h", """
        unsigned long long x = seed;
        for (long long j = 0; j < k; ++j) {
            x ^= (unsigned long long)(long long)codes[row * k + j];
            x *= 0x9E3779B97F4A7C15ULL;
            x ^= x >> 29;
        }
        h = x;"""),
    # splitmix64 of a counter (device_uniforms): the top 53 bits as a double in [0, 1)
    "uniforms": ("uint64 seed", "float64 u", """
        unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        u = (double)(z >> 11) * 1.1102230246251565e-16;"""),
    # exp(-r^2) / p1(r / w)^k with log p1 as in log_p1: the device function of hbe_common.cuh (the preamble)
    "kernel_over_collision": ("float64 r2, float64 k, float64 width", "float64 out", """
        out = kernel_over_collision(r2, k, width);"""),
}


def _cuda_kernel(cp, name):
    if name not in _KERNELS:
        from ._module import HBE_COMMON

        preamble = HBE_COMMON.read_text() if name == "kernel_over_collision" else ""
        _KERNELS[name] = cp.ElementwiseKernel(*_KERNEL_SOURCES[name], "kdetheory_hbe_" + name, preamble=preamble)
    return _KERNELS[name]


class DeviceBucketTables:
    """Exact-key bucket tables held in the namespace of their inputs (the GPU twin of ``BucketTables``).

    Same layout and attribute names as :class:`~kdetheory.lsh.euclidean.BucketTables` (``first``,
    ``last``, ``bucket_ptr``, ``bucket_mix``, ``bucket_key``, ``members``, ``bucket_weight``,
    ``cdf_key``), plus ``salt`` (the mix salt that makes each table's mixes distinct per key).

    Parameters
    ----------
    chunks : iterable of ``(codes, members)``
        ``codes`` a (T_c, s, k) integer array of the stored points' keys (device), ``members`` the
        (T_c, s) data indices (host or device; uploaded once).
    weights : (n,) float64 array
        Normalised weights, in the namespace of the codes.
    """

    def __init__(self, chunks, weights):
        codes, members = [], []
        for c, mem in chunks:
            xp = _xp_of(c)
            codes.append(c)
            members.append(xp.asarray(mem, dtype=xp.int64))
        codes = xp.concatenate(codes) if len(codes) > 1 else codes[0]
        members = xp.concatenate(members) if len(members) > 1 else members[0]
        T, s, k = codes.shape
        self.n_tables, self.size, self.n_concat = T, s, k
        salt = 0
        while True:
            mixes = key_mix(codes, salt)
            order = xp.argsort(mixes, axis=1, kind="stable") if xp is np else xp.argsort(mixes, axis=1)
            rows = xp.arange(T)[:, None]
            m_sorted, c_sorted = mixes[rows, order], codes[rows, order]
            same_mix = m_sorted[:, 1:] == m_sorted[:, :-1]
            same_key = (c_sorted[:, 1:] == c_sorted[:, :-1]).all(axis=2)
            if not bool((same_mix & ~same_key).any()):  # one boolean read back per try
                break
            salt += 1
        self.salt = salt
        del codes, mixes  # the build's peak: keys, their sorted copy and one (T, s, k) comparison
        mem = members[rows, order].ravel()
        new_bucket = xp.ones((T, s), dtype=bool)
        new_bucket[:, 1:] = ~same_mix
        flat_new = new_bucket.ravel()
        first = xp.flatnonzero(flat_new)
        last = xp.concatenate([first[1:], xp.asarray([T * s], dtype=first.dtype)])
        per_table = new_bucket.sum(axis=1)
        bucket_of = xp.cumsum(flat_new) - 1
        w = weights[mem]
        running = xp.cumsum(w.reshape(T, s), axis=1).ravel()
        cum_within = running - (running[first] - w[first])[bucket_of]
        bucket_weight = cum_within[last - 1]
        bw = bucket_weight[bucket_of]
        frac = xp.where(bw > 0, cum_within / xp.where(bw > 0, bw, 1.0), 1.0)
        frac[last - 1] = 1.0  # the last member of a bucket closes it exactly
        self.bucket_ptr = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(per_table).astype(xp.int64)])
        rank = bucket_of - self.bucket_ptr[:-1][xp.arange(T * s) // max(s, 1)]
        self.first, self.last, self.members = first.astype(xp.int64), last.astype(xp.int64), mem
        self.bucket_mix = m_sorted.ravel()[first]
        self.bucket_key = c_sorted.reshape(T * s, k)[first]
        self.bucket_weight = bucket_weight
        self.cdf_key = rank + frac
        self._steps = (s + 1).bit_length()

    @property
    def nbytes(self):
        """Bytes held by the tables (device memory on the GPU)."""
        return int(sum(a.nbytes for a in (self.first, self.last, self.bucket_ptr, self.bucket_mix,
                                          self.bucket_key, self.members, self.bucket_weight, self.cdf_key)))

    def lookup(self, query_codes, table0=0):
        """(T, m) global bucket of each query in tables ``table0 ..`` (``-1``: no stored point has its key)."""
        xp = _xp_of(query_codes)
        T = query_codes.shape[0]
        t = xp.arange(table0, table0 + T)[:, None]
        lo, hi = self.bucket_ptr[t], self.bucket_ptr[t + 1]
        mixes = key_mix(query_codes, self.salt)
        lo, hi = xp.broadcast_to(lo, mixes.shape), xp.broadcast_to(hi, mixes.shape)
        b = segment_search(self.bucket_mix, lo, hi, mixes, "left", self._steps)
        safe = xp.minimum(b, max(self.bucket_mix.shape[0] - 1, 0))
        found = (b < hi) & (self.bucket_mix[safe] == mixes) & \
            (self.bucket_key[safe] == query_codes).all(axis=2)  # full-key compare: exact buckets
        return xp.where(found, b, -1)

    def draw(self, bucket, u, table0=0):
        """Member position drawn in proportion to weight from each bucket (``-1`` for ``bucket < 0``)."""
        xp = _xp_of(bucket)
        T = bucket.shape[0]
        t = xp.arange(table0, table0 + T)[:, None]
        hit = bucket >= 0
        b = xp.where(hit, bucket, 0)
        base = xp.broadcast_to(t * self.size, bucket.shape)
        p = segment_search(self.cdf_key, base, base + self.size, (b - self.bucket_ptr[t]) + u, "right",
                           self._steps)
        p = xp.minimum(xp.maximum(p, self.first[b]), self.last[b] - 1)
        return xp.where(hit, p, -1)


def device_uniforms(gen, shape, xp):
    """Uniforms of the draws, in ``[0, 1)``.

    With the NumPy stand-in: ``gen.random(shape)``, the host reference's stream. On the GPU: one
    launch of a counter-based generator seeded by one draw of ``gen`` (nothing uploaded, no
    generator state): entry ``i`` (C order) is the top 53 bits of the ``(i + 1)``-th output of
    SplitMix64 started at the seed, times ``2^-53`` (Steele, Lea, Flood, OOPSLA 2014; finaliser
    constants of Vigna). A cuRAND generator per call instead costs an allocation and a reseed,
    milliseconds per call for XORWOW, about the whole query's budget. This is the package's one
    documented exception to "same seed, same result on every backend": the GPU draws differ from
    the host's, the estimator and its distribution do not.
    """
    if xp is np:
        return gen.random(shape)
    out = xp.empty(shape, dtype=xp.float64)
    _cuda_kernel(xp, "uniforms")(np.uint64(gen.integers(2**63)), out)
    return out


def device_sample_samples(Xh, Yq, weights, level, codes, u, table0):
    """One weighted draw per bucket (form "sample"): the twin of ``kdetheory.kde.hbe._sample_numpy``.

    Parameters
    ----------
    Xh, Yq : (n, d), (m, d) float64 arrays (device)
    weights : (n,) float64 array
        Unused (the bucket's weight and the weighted draw carry them); the kernels share a signature.
    level : HBELevel whose ``tables`` is a :class:`DeviceBucketTables`
    codes : (T, m, k) int64 array (device)
    u : (T, m) float64 array of uniforms
    table0 : int

    Returns
    -------
    Z : (m, T) float64 array; kev : (m,) int64 array (both in the namespace of the inputs)
    """
    xp = _xp_of(Xh)
    tab = level.tables
    bucket = tab.lookup(codes, table0)
    pos = tab.draw(bucket, u, table0)
    hit = pos >= 0
    a = tab.members[xp.where(hit, pos, 0)]
    T, m = a.shape
    r2 = squared_distances(Xh[a.ravel()], xp.broadcast_to(Yq, (T, m, Yq.shape[1])).reshape(T * m, -1)).reshape(T, m)
    val = tab.bucket_weight[xp.where(hit, bucket, 0)] / level.size * \
        kernel_over_collision(r2, level.k, level.width)
    Z = xp.where(hit, val, 0.0)
    return Z.T, hit.sum(axis=0).astype(xp.int64)


#: threads per block of the fused level kernel (one block per query walks its tables)
_FUSED_THREADS = 128


def fused_sample_samples(Xh, Yh, rows, level, codes, u, table0, n_groups=0, Z=None, est=None, kev=None):
    """One launch of ``hbe.cu``'s ``hbe_sample_level``: :func:`device_sample_samples` (and the median of means
    of ``kdetheory.kde._mom``) fused, for CuPy arrays.

    Same estimator and the same arithmetic as the namespace path (the same mix, searches, draw and kernel /
    collision ratio); only the order of the ``d`` terms of ``r^2`` and of a group's sum may differ, so the
    values agree to rounding (about 1e-15 relative).

    Parameters
    ----------
    Xh : (n, d) float64 cupy array
        Rescaled data.
    Yh : (M, d) float64 cupy array
        Rescaled queries; query ``i`` of this call is row ``rows[i]`` (no gathered copy).
    rows : (m,) int64 cupy array
    level : HBELevel whose ``tables`` is a :class:`DeviceBucketTables`
    codes : (T, m, k) integer cupy array
        Query keys in tables ``table0 .. table0 + T - 1`` (``hash_points``'s output; its transpose is
        contiguous, so nothing is copied).
    u : (T, m) float64 cupy array
        Uniforms of the draws.
    table0 : int
    n_groups : int, default 0
        ``> 0``: also the median over ``n_groups`` contiguous groups of tables of the group means (``T`` must
        be a multiple of it); 0: samples and counts only.
    Z, est, kev : cupy arrays, optional
        Outputs to fill: (m, T) float64 C-contiguous; (m,) float64 contiguous each (``est`` only read when
        ``n_groups > 0``). Allocated when omitted.

    Returns
    -------
    Z : (m, T) float64; est : (m,) float64 (undefined where ``n_groups == 0``); kev : (m,) float64 kernel
    evaluations (whole numbers), all cupy arrays.
    """
    tab = level.tables
    T, m, k = codes.shape
    if n_groups < 0 or (n_groups and T % n_groups):
        raise ValueError(f"n_groups: got {n_groups} for {T} tables; pass 0 or a divisor of the table count.")
    if tab.bucket_key.dtype.name not in ("int32", "int64"):
        raise TypeError(f"level.tables.bucket_key: got dtype {tab.bucket_key.dtype}; the fused kernel reads int32 "
                        "or int64 keys (build the tables with kdetheory.kde.HashingBasedKDE).")
    import cupy as cp

    from ._module import hbe_kernel

    Z = cp.empty((m, T)) if Z is None else Z
    est = cp.empty(m) if est is None else est
    kev = cp.empty(m) if kev is None else kev
    if m == 0:
        return Z, est, kev
    keys = cp.ascontiguousarray(codes.transpose(1, 0, 2), dtype=cp.int64)  # (m, T, k): a view of the GEMM output
    seed = np.uint64((_MIX_SEED + tab.salt * _MIX_MULT) % 2**64)
    args = (keys, tab.bucket_mix, tab.bucket_key, tab.bucket_ptr, tab.first, tab.last, tab.members,
            tab.bucket_weight, tab.cdf_key, cp.ascontiguousarray(Xh, dtype=cp.float64),
            cp.ascontiguousarray(Yh, dtype=cp.float64), cp.ascontiguousarray(rows, dtype=cp.int64),
            cp.ascontiguousarray(u, dtype=cp.float64), np.int32(m), np.int32(T), np.int32(k), np.int32(Xh.shape[1]),
            np.int64(tab.size), np.int64(table0), seed, np.float64(level.width), np.int32(n_groups), Z, est, kev)
    hbe_kernel(tab.bucket_key.dtype.name)((m,), (_FUSED_THREADS,), args, shared_mem=8 * max(n_groups, 1))
    return Z, est, kev


def device_bucket_samples(Xh, Yq, weights, level, codes, u, table0):
    """Whole-bucket form: the twin of ``kdetheory.kde.hbe._bucket_numpy`` (one integer read back:
    the number of gathered members, to size the gather)."""
    xp = _xp_of(Xh)
    tab = level.tables
    T, m = codes.shape[:2]
    bucket = tab.lookup(codes, table0).ravel()
    b = xp.where(bucket >= 0, bucket, 0)
    lens = xp.where(bucket >= 0, tab.last[b] - tab.first[b], 0)
    ends = xp.cumsum(lens)
    total = int(ends[-1]) if ends.size else 0
    i = xp.arange(total)
    owner = xp.searchsorted(ends, i, side="right")  # the (table, query) entry of each gathered member
    pos = tab.first[b][owner] + i - (ends - lens)[owner]
    a = tab.members[pos]
    qq = owner % m
    vals = weights[a] * kernel_over_collision(squared_distances(Xh[a], Yq[qq]), level.k, level.width)
    Z = xp.bincount(owner, weights=vals, minlength=T * m).reshape(T, m) / level.size
    kev = lens.reshape(T, m).sum(axis=0).astype(xp.int64)
    return Z.T, kev
