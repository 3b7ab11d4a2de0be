"""numba twin of :meth:`kdetheory.lsh.euclidean.BucketTables.lookup`: binary search on the
64-bit key mix, then an exact comparison of the integer key (no silent collisions)."""
from __future__ import annotations

import numba
import numpy as np

from .. import _config


#: below this many (table, query) pairs a kernel runs serially: launching the thread pool costs
#: milliseconds, more than the work itself
PARALLEL_MIN_WORK = 1 << 16


def _jit_pair(func):
    """A serial and a parallel compilation of the same loop kernel (prange is range when serial)."""
    opts = dict(fastmath=_config.NUMBA_FASTMATH, cache=_config.NUMBA_CACHE)
    return numba.njit(parallel=False, **opts)(func), numba.njit(parallel=_config.NUMBA_PARALLEL, **opts)(func)


def _lookup(q_mix, q_codes, bucket_ptr, bucket_mix, bucket_key):
    """Bucket of every (table, query): binary search on the mix, then an exact key comparison.

    Parameters
    ----------
    q_mix : (T, m) uint64 ndarray
        64-bit mixes of the query keys.
    q_codes : (T, m, k) int64 ndarray
        The query keys.
    bucket_ptr : (T + 1,) int64 ndarray
        Table ``t``'s buckets are ``bucket_ptr[t] .. bucket_ptr[t+1] - 1`` (sorted by mix).
    bucket_mix : (B,) uint64 ndarray
    bucket_key : (B, k) integer ndarray

    Returns
    -------
    (T, m) int64 ndarray
        Global bucket index, ``-1`` where no stored key equals the query's.
    """
    T, m, k = q_codes.shape
    out = np.full((T, m), -1, dtype=np.int64)
    for t in numba.prange(T):
        lo0 = bucket_ptr[t]
        hi0 = bucket_ptr[t + 1]
        for i in range(m):
            target = q_mix[t, i]
            lo, hi = lo0, hi0
            while lo < hi:  # first bucket whose mix is >= target
                mid = (lo + hi) // 2
                if bucket_mix[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            b = lo
            while b < hi0 and bucket_mix[b] == target:
                same = True
                for j in range(k):
                    if bucket_key[b, j] != q_codes[t, i, j]:
                        same = False
                        break
                if same:
                    out[t, i] = b
                    break
                b += 1
    return out


_lookup_serial, _lookup_parallel = _jit_pair(_lookup)


def lookup_buckets(q_mix, q_codes, bucket_ptr, bucket_mix, bucket_key):
    """Global bucket index of each (table, query), ``-1`` when absent; host arrays only."""
    kernel = _lookup_parallel if q_mix.size >= PARALLEL_MIN_WORK else _lookup_serial
    return kernel(np.ascontiguousarray(q_mix), np.ascontiguousarray(q_codes, dtype=np.int64),
                   bucket_ptr, bucket_mix, np.ascontiguousarray(bucket_key))
