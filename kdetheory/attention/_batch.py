"""Batched attention inputs: leading (batch, head) axes flattened to one, and the ones column.

Every attention method works on ``(B, n, c)`` stacks: :func:`flatten_leading` folds any leading
axes into ``B`` and gives them back for the output. Every method also pushes ``[V, 1]`` instead
of ``V`` through its products (:func:`with_ones`): the last column then carries the normaliser
``D = A 1`` through the same product as the numerator ``A V`` (docs/math.md §1), so one pass
gives both and their ratio.
"""
from __future__ import annotations

__all__ = ["flatten_leading", "with_ones"]


def flatten_leading(*arrays):
    """Reshape ``(..., n_i, c_i)`` arrays that share their leading axes to ``(B, n_i, c_i)``.

    Parameters
    ----------
    *arrays : arrays of shape (..., n_i, c_i)
        At least one, with equal leading axes (as :func:`kdetheory.attention.exact.check_qkv`
        guarantees); NumPy or CuPy.

    Returns
    -------
    tuple
        ``(*flat, lead)``: each array as a ``(B, n_i, c_i)`` view where possible, ``B`` the
        product of the leading axes (1 for a 2-D input), then ``lead``, the leading shape, so
        that ``out.reshape(lead + out.shape[-2:])`` restores it.
    """
    if not arrays:
        raise TypeError("flatten_leading: got no arrays; pass at least one (..., n, c) array.")
    lead = tuple(arrays[0].shape[:-2])
    for i, a in enumerate(arrays):
        if tuple(a.shape[:-2]) != lead:
            raise ValueError(f"arrays[{i}]: got leading axes {tuple(a.shape[:-2])} but arrays[0] has {lead}; "
                             "pass arrays with matching batch/head axes.")
    return (*(a.reshape((-1,) + tuple(a.shape[-2:])) for a in arrays), lead)


def with_ones(V, xp):
    """``[V, 1]``: ``V`` (..., n, d_v) with a column of ones appended, (..., n, d_v + 1), same dtype.

    Parameters
    ----------
    V : (..., n, d_v) array
    xp : module
        The namespace of ``V`` (numpy or cupy).

    Returns
    -------
    (..., n, d_v + 1) array
        ``A [V, 1] = [A V, D]``: the ones column carries the normaliser through the same product.
    """
    return xp.concatenate([V, xp.ones(V.shape[:-1] + (1,), dtype=V.dtype)], axis=-1)
