"""CuPy twin of the host path of :meth:`kdetheory.lsh.angular.AngularLSH.sort_keys`: sign bits,
bucket id, Gray rank and sort key of every point in one fused elementwise kernel."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _kernel():
    import cupy as cp

    # One thread per point: bit l of the id is [proj_l > 0]; the rank is g^-1(id) (prefix XOR,
    # doubling steps) for the Gray order or g(id) = id ^ (id >> 1) for the authors' order.
    return cp.ElementwiseKernel(
        "raw T proj, int32 r, int64 n, bool gray", "int64 key",
        """
        long long id = 0;
        for (int l = 0; l < r; ++l) if (proj[i * r + l] > 0) id |= 1LL << l;
        long long rank = id;
        if (gray) { for (int s = 1; s < r; s <<= 1) rank ^= rank >> s; }
        else rank = id ^ (id >> 1);
        key = rank * n + (i % n);
        """,
        "kdetheory_angular_sort_keys",
    )


def sort_keys(proj, n, gray):
    """Keys ``rank * n + position`` from the projections ``proj`` (..., n, r), C-contiguous on the GPU.

    Parameters
    ----------
    proj : (..., n, r) cupy array
        ``X W`` of the points.
    n : int
        Points per sequence.
    gray : bool
        Gray order (``True``) or the authors' order.

    Returns
    -------
    (..., n) int64 cupy array
    """
    import cupy as cp

    proj = cp.ascontiguousarray(proj)
    key = cp.empty(proj.shape[:-1], dtype=cp.int64)
    _kernel()(proj, proj.shape[-1], n, gray, key)
    return key
