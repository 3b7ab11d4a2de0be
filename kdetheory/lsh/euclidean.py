"""p-stable Euclidean LSH (Datar, Immorlica, Indyk, Mirrokni 2004) and exact bucket tables.

One hash is ``h(x) = floor(<g, x>/w + b)`` with ``g ~ N(0, I_d)`` and ``b ~ U[0, 1)``; ``k`` of
them are concatenated into the key of a table. Hashing a whole data set is one matrix product
``floor(X @ (G/w).T + b)`` per table (docs/math.md §2.3), the natural GPU path.

Buckets are keyed by the exact integer tuple: a 64-bit mix of the key only orders the buckets
and every lookup checks the full key, so no two distinct keys ever share a bucket (a silent
hash-combine collision would bias a hashing-based estimator).
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from .._array import namespace, to_numpy
from .._rng import as_generator
from .._validation import check_int, check_matrix, check_positive

__all__ = ["EuclideanLSH", "e2lsh_collision_probability"]

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def e2lsh_collision_probability(distance, width, n_concat=1):
    """Probability that two points at ``distance`` share a p-stable LSH key.

    With ``c = distance / width``,

        p1(c) = erf(1/(sqrt(2) c)) - sqrt(2/pi) * c * (1 - exp(-1/(2 c^2))),   p = p1(c)^k.

    Parameters
    ----------
    distance : array_like
        Euclidean distances ``r >= 0`` (any shape).
    width : float
        Bucket width ``w > 0``.
    n_concat : int, default 1
        Number ``k`` of concatenated hashes.

    Returns
    -------
    ndarray
        ``p1(r/w)^k``, same shape as ``distance``; 1 at ``r = 0``.

    Notes
    -----
    ``<g, x - q>/w`` is ``N(0, c^2)``; integrating the triangle ``max(0, 1 - |t|)`` (the chance
    that a uniform offset does not separate two points whose projections differ by ``t``)
    against that density gives ``p1``. The rehashing reference code uses ``erf(1/c)`` instead,
    which is wrong (0.529 instead of 0.369 at ``c = 1``; docs/math.md §2.2).

    References
    ----------
    Datar, Immorlica, Indyk, Mirrokni, "Locality-sensitive hashing scheme based on p-stable
    distributions", SoCG 2004, Section 3.2.
    """
    width = check_positive("width", width)
    n_concat = check_int("n_concat", n_concat, minimum=1)
    r = np.asarray(distance, dtype=np.float64)
    if bool((r < 0).any()) or not bool(np.isfinite(r).all()):
        raise ValueError("distance: got negative or non-finite distances; pass distances >= 0.")
    return np.exp(n_concat * _log_p1(r / width))


def _log_p1(c):
    """log p1(c) for c >= 0 (0 at c = 0); expm1 keeps 1 - exp(-x) accurate at large c."""
    c = np.asarray(c, dtype=np.float64)
    out = np.array(-_SQRT_2_OVER_PI * c, dtype=np.float64)  # p1 = 1 - sqrt(2/pi) c + O(c^3): exact for c < 1e-100
    big = c >= 1e-100
    cp = c[big]
    p = erf(1.0 / (np.sqrt(2.0) * cp)) + _SQRT_2_OVER_PI * cp * np.expm1(-0.5 / (cp * cp))
    # p1 > 0 for every finite c; rounding can only reach 0 for c beyond ~1e8 (never collides).
    out[big] = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    return out


def log_found_probability(distance, width, n_concat, n_tables):
    """log Pr[a point at ``distance`` shares a bucket with the query in >= 1 of ``n_tables``].

    ``1 - (1 - p1^k)^L``, computed as ``-expm1(L * log1p(-p1^k))`` (accurate for tiny ``p``).
    """
    p = np.exp(n_concat * _log_p1(np.asarray(distance, dtype=np.float64) / width))
    with np.errstate(divide="ignore"):
        return np.log(-np.expm1(n_tables * np.log1p(-np.minimum(p, 1.0))))


class EuclideanLSH:
    """``n_tables`` independent keys of ``n_concat`` concatenated p-stable hashes.

    ``h_i(x) = floor(<g_i, x>/w + b_i)``, ``g_i ~ N(0, I_dim)``, ``b_i ~ U[0, 1)``.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of the points.
    n_concat : int
        Hashes ``k`` per key.
    width : float
        Bucket width ``w``.
    n_tables : int, default 1
        Independent keys (tables) ``L``.
    rng : None, int, SeedSequence or Generator, optional
        Source of ``g`` and ``b`` (drawn once, on the host); None draws fresh entropy.

    Attributes
    ----------
    projections : (n_tables, n_concat, dim) float64 ndarray
        ``G / w``.
    offsets : (n_tables, n_concat) float64 ndarray
        ``b``.

    Notes
    -----
    Collision probability of two points at distance ``r``:
    :func:`e2lsh_collision_probability` ``(r, w, k)``.

    References
    ----------
    Datar et al., SoCG 2004; Charikar and Siminelakis, FOCS 2017 (use in hashing-based KDE).
    """

    def __init__(self, dim, n_concat, width, n_tables=1, *, rng=None):
        self.dim = check_int("dim", dim, minimum=1)
        self.n_concat = check_int("n_concat", n_concat, minimum=1)
        self.width = check_positive("width", width)
        self.n_tables = check_int("n_tables", n_tables, minimum=1)
        gen = as_generator(rng)
        self.projections = gen.standard_normal((self.n_tables, self.n_concat, self.dim)) / self.width
        self.offsets = gen.random((self.n_tables, self.n_concat))

    def hash(self, X):
        """Keys of the rows of ``X`` in every table.

        Parameters
        ----------
        X : (n, dim) array
            NumPy or CuPy; hashed in its own namespace (one matrix product per table).

        Returns
        -------
        (n_tables, n, n_concat) int64 array
            Same namespace as ``X``.
        """
        X = check_matrix("X", X)
        if X.shape[1] != self.dim:
            raise ValueError(f"X: got {X.shape[1]} columns but the hash was drawn for dim={self.dim}; "
                             "pass points of that dimension.")
        return hash_points(X, self.projections, self.offsets)


def hash_points(X, projections, offsets):
    """floor(X @ projections[t].T + offsets[t]) for every table t, in the namespace of ``X``."""
    xp = namespace(X)
    A = xp.asarray(projections, dtype=X.dtype)
    b = xp.asarray(offsets, dtype=X.dtype)
    T, k, _ = A.shape
    # One GEMM for all tables: (n, d) @ (d, T*k).
    codes = xp.floor(X @ A.reshape(T * k, -1).T + b.reshape(-1))
    return codes.astype(xp.int64).reshape(X.shape[0], T, k).transpose(1, 0, 2)


_MIX_MULT = np.uint64(0x9E3779B97F4A7C15)


def key_mix(codes):
    """64-bit mix of integer keys along the last axis (orders buckets; never trusted alone)."""
    codes = np.asarray(codes)
    h = np.full(codes.shape[:-1], np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    for j in range(codes.shape[-1]):
        h ^= codes[..., j].astype(np.uint64)
        h *= _MIX_MULT
        h ^= h >> np.uint64(29)
    return h


class BucketTables:
    """Exact-key bucket tables over per-table point sets (CSR layout, host arrays).

    Table ``t`` stores ``members[t*s:(t+1)*s]`` (indices into the data) sorted by bucket;
    bucket ``b`` of table ``t`` (``bucket_ptr[t] <= b < bucket_ptr[t+1]``) holds
    ``members[first[b]:last[b]]``, has key ``bucket_key[b]`` and total weight ``bucket_weight[b]``.
    ``cdf_key[i]`` is ``(bucket rank in its table) + (cumulative weight fraction within the bucket)``:
    a monotone array in which one ``searchsorted`` draws a member in proportion to its weight.

    Parameters
    ----------
    chunks : iterable of ``(codes, members)``
        Consecutive groups of tables: ``codes`` a (T_c, s, k) integer array of the stored points'
        keys, ``members`` the (T_c, s) int64 data index of each stored point. Passing the tables
        in groups keeps the build's temporaries to one group (the sort, the key comparisons).
    weights : (n,) float64 ndarray
        Weights of the data (ones for unweighted data).
    """

    def __init__(self, chunks, weights):
        parts = []
        n_tables = n_buckets = 0
        for codes, members in chunks:
            part = _csr_tables(to_numpy(codes), np.asarray(members), weights, n_tables, n_buckets)
            n_tables += part["n_tables"]
            n_buckets += part["bucket_mix"].size
            parts.append(part)
        self.n_tables, self.size, self.n_concat = n_tables, parts[0]["size"], parts[0]["n_concat"]
        for key in ("first", "last", "bucket_mix", "bucket_key", "members", "bucket_weight", "cdf_key"):
            # one array at a time, each part's copy released as soon as it is joined
            setattr(self, key, np.concatenate([p.pop(key) for p in parts]))
        self.bucket_ptr = np.concatenate([[0]] + [p["bucket_end"] for p in parts])

    @property
    def nbytes(self):
        """Bytes held by the tables."""
        return sum(a.nbytes for a in (self.first, self.last, self.bucket_ptr, self.bucket_mix,
                                      self.bucket_key, self.members, self.bucket_weight, self.cdf_key))

    def lookup(self, query_codes, backend="numpy", table0=0):
        """Bucket of each query in each table.

        Parameters
        ----------
        query_codes : (T, m, k) int64 array
            Keys of the queries in tables ``table0 .. table0 + T - 1``.
        backend : {"numpy", "numba"}
        table0 : int, default 0
            First table looked up.

        Returns
        -------
        bucket : (T, m) int64 ndarray
            Global bucket index, ``-1`` where the query's key has no stored point.
        """
        q = np.ascontiguousarray(to_numpy(query_codes))
        mixes = key_mix(q)
        T, m, _ = q.shape
        ptr = self.bucket_ptr[table0:table0 + T + 1]
        if backend == "numba":
            from .._numba.lsh import lookup_buckets

            return lookup_buckets(mixes, q, ptr, self.bucket_mix, self.bucket_key)
        out = np.full((T, m), -1, dtype=np.int64)
        for t in range(T):
            lo0, hi0 = ptr[t], ptr[t + 1]
            bm = self.bucket_mix[lo0:hi0]
            lo = np.searchsorted(bm, mixes[t], side="left")
            hi = np.searchsorted(bm, mixes[t], side="right")
            for off in range(int((hi - lo).max(initial=0))):
                cand = lo + off
                ok = cand < hi
                idx = lo0 + np.where(ok, cand, 0)
                match = ok & (self.bucket_key[idx] == q[t]).all(axis=1)
                out[t, match] = idx[match]
        return out

    def expand(self, buckets):
        """Every member of the given buckets, concatenated, with the index of its bucket entry.

        Parameters
        ----------
        buckets : (k,) int64 array of non-negative bucket indices

        Returns
        -------
        (positions, owner) : int64 arrays
            ``members[positions]`` are the points of ``buckets[0]``, then of ``buckets[1]``, ...;
            ``owner[i]`` is the index into ``buckets`` that position ``i`` came from.
        """
        lens = self.last[buckets] - self.first[buckets]
        # Start of each bucket's run, shifted so that adding a running index lands in it.
        pos = np.repeat(self.first[buckets] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        return pos, np.repeat(np.arange(len(buckets)), lens)

    def draw(self, bucket, u, table0=0):
        """Member drawn in proportion to weight from each bucket (``-1`` for empty lookups).

        ``bucket`` holds the lookups of tables ``table0 ..``; ``u`` has its shape with entries in
        [0, 1); the same ``u`` gives the same member on every backend (one ``searchsorted`` in the
        monotone ``cdf_key``).
        """
        T, m = bucket.shape
        pos = np.full((T, m), -1, dtype=np.int64)
        for t in range(T):
            hit = bucket[t] >= 0
            b = bucket[t, hit]
            rank = b - self.bucket_ptr[table0 + t]
            base = (table0 + t) * self.size
            p = base + np.searchsorted(self.cdf_key[base:base + self.size], rank + u[t, hit], side="right")
            pos[t, hit] = np.clip(p, self.first[b], self.last[b] - 1)
        return pos


def _csr_tables(codes, members, weights, table0, bucket0):
    """CSR arrays of the tables ``table0 .. table0 + T - 1`` (global positions and bucket indices)."""
    T, s, k = codes.shape
    mixes = key_mix(codes)
    order = np.argsort(mixes, axis=1, kind="stable")
    rows = np.arange(T)[:, None]
    mixes, codes, members = mixes[rows, order], codes[rows, order], members[rows, order]
    same_mix = mixes[:, 1:] == mixes[:, :-1]
    same_key = (codes[:, 1:] == codes[:, :-1]).all(axis=2)
    if bool((same_mix & ~same_key).any()):
        # Two distinct keys share a 64-bit mix: sort those tables fully so buckets stay contiguous.
        for t in np.flatnonzero((same_mix & ~same_key).any(axis=1)):
            o = np.lexsort(tuple(codes[t, :, j] for j in range(k - 1, -1, -1)) + (mixes[t],))
            mixes[t], codes[t], members[t] = mixes[t, o], codes[t, o], members[t, o]
        same_mix = mixes[:, 1:] == mixes[:, :-1]
        same_key = (codes[:, 1:] == codes[:, :-1]).all(axis=2)
    new_bucket = np.ones((T, s), dtype=bool)
    new_bucket[:, 1:] = ~(same_mix & same_key)
    del same_mix, same_key
    flat_new = new_bucket.ravel()
    first = np.flatnonzero(flat_new)
    last = np.append(first[1:], T * s)
    bucket_ptr = np.cumsum(new_bucket.sum(axis=1))  # local end of each table's buckets
    members = members.ravel().astype(np.int64)
    w = weights[members]
    bucket_weight = np.add.reduceat(w, first) if first.size else np.zeros(0)
    bucket_of = np.cumsum(flat_new) - 1
    # Running sums restart with every table (buckets never span two): the same values whatever
    # the grouping of tables, and no cancellation against the weight of all earlier tables.
    running = np.cumsum(w.reshape(T, s), axis=1).ravel()
    cum_within = running - np.repeat(running[first] - w[first], last - first)
    frac = np.ones_like(w)
    nonzero = bucket_weight[bucket_of] > 0
    frac[nonzero] = cum_within[nonzero] / bucket_weight[bucket_of][nonzero]
    frac[last - 1] = 1.0  # the last member of a bucket closes it exactly
    starts = np.concatenate(([0], bucket_ptr[:-1]))
    rank = bucket_of - starts[np.arange(T * s) // max(s, 1)]
    offset = table0 * s
    return {"n_tables": T, "size": s, "n_concat": k, "first": first + offset, "last": last + offset,
            "bucket_end": bucket_ptr + bucket0, "bucket_mix": mixes.ravel()[first],
            "bucket_key": codes.reshape(T * s, k)[first], "members": members, "bucket_weight": bucket_weight,
            "cdf_key": rank + frac}
