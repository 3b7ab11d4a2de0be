"""Fused elementwise kernels for the GPU path of the streaming log-sum-exp routine.

``logits = exp(logits - shift[..., None])`` in NumPy semantics is two passes over the block
(and a temporary in CuPy); the kernel below does it in one pass, in place.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _shifted_exp_kernel():
    import cupy as cp

    return cp.ElementwiseKernel("T shift", "T x", "x = exp(x - shift)", "kdetheory_shifted_exp")


def shifted_exp_(logits, shift):
    """In place: ``logits <- exp(logits - shift[..., None])``; returns ``logits``."""
    _shifted_exp_kernel()(shift[..., None], logits)
    return logits
