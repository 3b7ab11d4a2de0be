"""Angular (random-hyperplane) LSH and the Gray-code ordering of its buckets.

docs/math.md §5, Definition 7.1 and Claim 1 (reconstructed): r hyperplanes w_1..w_r with
i.i.d. N(0, 1) entries; bit l of x is ``1[<w_l, x> > 0]`` and the bucket id is
``sum_l bit_l 2^l``. Two points at angle theta disagree on each bit independently with
probability theta/pi, so ``Pr[h(x) = h(y)] = (1 - theta/pi)^r``.

The 2^r buckets are listed in reflected-binary Gray-code order ``g(i) = i XOR (i >> 1)``:
consecutive buckets differ in exactly one bit, i.e. they are cells that share a facet.
Sorting points by bucket then needs the *position* of a bucket in that list, the inverse
permutation ``g^-1``. The authors' code sorts by ``g(id)`` instead (docs/math.md §6.4), which
lists the buckets in the order ``g^-1(0), g^-1(1), ...``; both are offered through
``order="gray" | "authors"``.
"""
from __future__ import annotations

import numpy as np

from .._array import namespace, to_namespace
from .._rng import as_generator
from .._validation import check_choice, check_int, check_matrix

__all__ = [
    "AngularLSH",
    "gray_code",
    "inverse_gray_code",
    "gray_code_order",
    "gray_code_rank",
    "order_adjacency",
    "ORDERS",
]

#: Bucket orders: "gray" is the true reflected Gray code, "authors" the order of docs/math.md §6.4.
ORDERS = ("gray", "authors")
_MAX_HASHES = 30  # bucket ids and ranks stay exact in int64 and sort keys rank * n + i in int64


def check_n_hashes(n_hashes):
    """``n_hashes`` must be an int in 1..30 (2^30 buckets is already far beyond any n)."""
    return check_int("n_hashes", n_hashes, minimum=1, maximum=_MAX_HASHES)


def gray_code(i):
    """Reflected binary Gray code ``g(i) = i XOR (i >> 1)`` (elementwise, any int array)."""
    return i ^ (i >> 1)


def inverse_gray_code(g, n_hashes):
    """The inverse of :func:`gray_code` on ``n_hashes``-bit integers: the prefix XOR
    ``g ^ (g >> 1) ^ (g >> 2) ^ ...`` (log2(n_hashes) doubling steps)."""
    i = g.copy() if hasattr(g, "copy") else g
    shift = 1
    while shift < n_hashes:
        i = i ^ (i >> shift)
        shift *= 2
    return i


def gray_code_order(n_hashes, *, order="gray"):
    """The 2^r bucket ids in the order the blocks are laid out.

    Parameters
    ----------
    n_hashes : int in 1..30
        Number r of hyperplanes.
    order : {"gray", "authors"}, default "gray"
        "gray": ``g(0), g(1), ..., g(2^r - 1)`` with ``g(i) = i XOR (i >> 1)``, so consecutive
        entries differ in exactly one bit. "authors": ``g^-1(0), g^-1(1), ...``, the order
        produced by the authors' code, which sorts points by ``g(id)`` (docs/math.md §6.4); it
        coincides with the Gray order only for r <= 2.

    Returns
    -------
    (2^r,) int64 array
        A permutation of ``0 .. 2^r - 1``.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Section 4 and Figure 5; docs/math.md §5, Definition 7.1.
    """
    r = check_n_hashes(n_hashes)
    check_choice("order", order, ORDERS)
    i = np.arange(2**r, dtype=np.int64)
    return gray_code(i) if order == "gray" else inverse_gray_code(i, r)


def gray_code_rank(bucket_ids, n_hashes, *, order="gray"):
    """Position of each bucket in :func:`gray_code_order`: the key to sort points by.

    Parameters
    ----------
    bucket_ids : int array, any shape
        Bucket ids in ``0 .. 2^r - 1`` (NumPy or CuPy).
    n_hashes : int in 1..30
    order : {"gray", "authors"}, default "gray"
        "gray" returns ``g^-1(id)`` (so sorted points visit buckets in Gray order);
        "authors" returns ``g(id)``, the authors' sort key (docs/math.md §6.4).

    Returns
    -------
    int64 array of the same shape and array type
        ``gray_code_order(r, order=order)[rank] == bucket_ids``.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Section 4 and Figure 5 (Gray-code bucket order).
    """
    r = check_n_hashes(n_hashes)
    check_choice("order", order, ORDERS)
    if not hasattr(bucket_ids, "dtype") or bucket_ids.dtype.kind not in "iu":
        got = f"an array of dtype {bucket_ids.dtype}" if hasattr(bucket_ids, "dtype") else f"a {type(bucket_ids).__name__}"
        raise TypeError(f"bucket_ids: got {got}; pass an integer NumPy or CuPy array (e.g. AngularLSH(...).bucket_ids(X)).")
    ids = bucket_ids.astype(np.int64)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= 2**r):
        raise ValueError(f"bucket_ids: got ids in [{int(ids.min())}, {int(ids.max())}]; pass ids in 0..{2**r - 1} for {r} hyperplanes.")
    return inverse_gray_code(ids, r) if order == "gray" else gray_code(ids)


def order_adjacency(n_hashes, *, order="gray"):
    """Fraction of consecutive buckets in the order that are at Hamming distance 1.

    Parameters
    ----------
    n_hashes : int in 1..30
    order : {"gray", "authors"}, default "gray"

    Returns
    -------
    float
        1.0 for ``order="gray"``; docs/math.md §6.4 measured 0.756 (r = 7) and 0.857 (r = 3) for
        ``order="authors"``.

    References
    ----------
    KDEformer (Zandieh et al., ICML 2023), Figure 5 (cells at Hamming distance 1 are neighbours).
    """
    seq = gray_code_order(n_hashes, order=order)
    diff = seq[1:] ^ seq[:-1]
    hamming = np.array([bin(int(x)).count("1") for x in diff])
    return float(np.mean(hamming == 1)) if hamming.size else 1.0


class AngularLSH:
    """Random-hyperplane (angular) LSH with r bits, shared by every point it hashes.

    Parameters
    ----------
    dim : int >= 1
        Dimension d of the points.
    n_hashes : int in 1..30
        Number r of hyperplanes; there are 2^r buckets.
    rng : None, int, SeedSequence or Generator
        Draws the directions ``W`` (d x r, i.i.d. N(0, 1)) once, at construction; hashing
        is deterministic afterwards.

    Attributes
    ----------
    directions : (d, r) float64 NumPy array

    Notes
    -----
    Claim 1 (reconstructed): for x, y at angle theta,
    ``Pr[h(x) = h(y)] = (1 - theta/pi)^r`` and the Hamming distance of the codes is
    Binomial(r, theta/pi). The bucket of a point does not depend on its norm.

    References
    ----------
    Charikar, "Similarity estimation techniques from rounding algorithms" (STOC 2002);
    KDEformer (Zandieh et al., ICML 2023), Section 4, Definition 7.1 (reconstructed).
    """

    def __init__(self, dim, n_hashes, *, rng=None):
        self.dim = check_int("dim", dim, minimum=1)
        self.n_hashes = check_n_hashes(n_hashes)
        self.directions = as_generator(rng).standard_normal((self.dim, self.n_hashes))

    def _projections(self, X):
        X = check_matrix("X", X, ndim=range(1, 8))
        if X.shape[-1] != self.dim:
            raise ValueError(f"X: got points of dimension {X.shape[-1]}; this LSH hashes dimension {self.dim}.")
        xp = namespace(X)
        return X @ to_namespace(self.directions, xp).astype(X.dtype), xp

    def codes(self, X):
        """The r-bit codes ``1[<w_l, x> > 0]``.

        Parameters
        ----------
        X : (..., d) array

        Returns
        -------
        (..., r) uint8 array of 0/1 (array type of X); column l is bit l.
        """
        proj, _ = self._projections(X)
        return (proj > 0).astype(np.uint8)

    def bucket_ids(self, X):
        """Bucket ids ``sum_l bit_l 2^l`` in ``0 .. 2^r - 1``, shape ``X.shape[:-1]`` (int64)."""
        proj, xp = self._projections(X)
        powers = xp.asarray(1 << np.arange(self.n_hashes, dtype=np.int64))
        return ((proj > 0).astype(np.int64) * powers).sum(axis=-1)

    def ranks(self, X, *, order="gray"):
        """Position of each point's bucket in the bucket order (see :func:`gray_code_rank`)."""
        return gray_code_rank(self.bucket_ids(X), self.n_hashes, order=order)

    def sort_keys(self, X, *, order="gray"):
        """Sort keys ``rank * n + position`` of the points, unique within each sequence.

        Parameters
        ----------
        X : (..., n, d) array
        order : {"gray", "authors"}, default "gray"

        Returns
        -------
        (..., n) int64 array (array type of X)
            Sorting a sequence by its keys orders it by bucket position (:meth:`ranks`), ties
            in input order, identically on every backend.

        Notes
        -----
        Hashing is one matrix product ``X W`` and sign bits. On the GPU the bits, the bucket id,
        the Gray rank and the key come from one fused elementwise kernel over the projections
        (``kdetheory._cupy._lsh``); on the host from :meth:`ranks`.
        """
        check_choice("order", order, ORDERS)
        n = X.shape[-2]
        proj, xp = self._projections(X)
        if xp is np:
            rank = gray_code_rank(((proj > 0).astype(np.int64) * (1 << np.arange(self.n_hashes, dtype=np.int64))).sum(axis=-1),
                                  self.n_hashes, order=order)
            return rank * n + np.arange(n, dtype=np.int64)
        from .._cupy._lsh import sort_keys

        return sort_keys(proj, n, order == "gray")

    def __repr__(self):
        return f"AngularLSH(dim={self.dim}, n_hashes={self.n_hashes})"
