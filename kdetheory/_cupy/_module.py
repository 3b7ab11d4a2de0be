"""Build, cache and launch-configure the CUDA modules ``online_softmax.cu`` and ``hbe.cu``."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .. import _config

_SOURCE = Path(__file__).with_name("online_softmax.cu")
_HBE_SOURCE = Path(__file__).with_name("hbe.cu")
#: device functions shared by hbe.cu and the elementwise kernels of ``_hbe.py``
HBE_COMMON = Path(__file__).with_name("hbe_common.cuh")
_THREADS = 256
_SMEM_LIMIT = 227 * 1024  # per-block opt-in limit of Hopper (and Ampere A100: 163 KiB, checked at launch)


def tiles(dtype, d, p, asynchronous):
    """``(TM, BK)``: rows per thread and keys per tile, the largest that fit shared memory.

    float32: ``16 * _config.FUSED_ROWS_PER_THREAD`` queries (64 by default) x 64 keys per block;
    float64: the same queries x 32 keys (twice the bytes per value)."""
    itemsize = np.dtype(dtype).itemsize
    bk = 64 if itemsize == 4 else 32
    for tm in (_config.FUSED_ROWS_PER_THREAD, 4, 2, 1):
        if shared_bytes(itemsize, d, p, tm, bk, asynchronous) <= _SMEM_LIMIT:
            return tm, bk
    raise ValueError(f"Q: got feature dimension {d} (values {p}); the fused GPU kernel holds a tile of "
                     f"{d} features in shared memory and supports about d <= 1000 in float32; use backend='numpy'.")


def asynchronous(dtype, d, p, *arrays):
    """True when key and value rows are whole 16-byte chunks at 16-byte addresses (cp.async path)."""
    vec = 16 // np.dtype(dtype).itemsize
    return d % vec == 0 and p % vec == 0 and all(a is None or a.data.ptr % 16 == 0 for a in arrays)


def shared_bytes(itemsize, d, p, tm, bk, asynchronous):
    """Dynamic shared memory of one block (the layout at the top of ``online_softmax`` in the .cu file)."""
    bq, vec, nbuf = 16 * tm, 16 // itemsize, 2 if asynchronous else 1
    ds = d + (vec if asynchronous else 1)
    pp = -(-p // 16) * 16
    return itemsize * (d * bq + nbuf * bk * ds + nbuf * bk * pp + (bk * (bq + vec) if p > 0 else 0) + nbuf * bk) + 4 * nbuf * bk


@functools.lru_cache(maxsize=None)
def module(dtype_name, d, p, tm, bk, asynchronous):
    """The compiled ``cupy.RawModule`` for one (dtype, d, p, TM, BK, ASYNC); NVRTC compiles it once."""
    import cupy as cp

    t = {"float32": "float", "float64": "double"}[dtype_name]
    options = ("-std=c++17", f"-DKD_T={t}", f"-DKD_D={d}", f"-DKD_P={p}", f"-DKD_TM={tm}", f"-DKD_BK={bk}",
               f"-DKD_ASYNC={int(asynchronous)}")
    return cp.RawModule(code=_SOURCE.read_text(), options=options)


@functools.lru_cache(maxsize=None)
def kernel(dtype_name, d, p, tm, bk, asynchronous):
    """``online_softmax`` of :func:`module`, its dynamic shared memory limit raised as needed."""
    fn = module(dtype_name, d, p, tm, bk, asynchronous).get_function("online_softmax")
    nbytes = shared_bytes(np.dtype(dtype_name).itemsize, d, p, tm, bk, asynchronous)
    if nbytes > 48 * 1024:
        fn.max_dynamic_shared_size_bytes = nbytes
    return fn, nbytes


@functools.lru_cache(maxsize=None)
def multiprocessors():
    import cupy as cp

    return cp.cuda.Device().attributes["MultiProcessorCount"]


@functools.lru_cache(maxsize=None)
def hbe_kernel(key_dtype_name):
    """``hbe_sample_level`` of ``hbe.cu`` for stored keys of dtype ``key_dtype_name`` ("int32" or "int64");
    NVRTC compiles it once per key type."""
    import cupy as cp

    key = {"int32": "int", "int64": "long long"}[key_dtype_name]
    code = HBE_COMMON.read_text() + "\n" + _HBE_SOURCE.read_text()
    return cp.RawModule(code=code, options=("-std=c++17", f"-DKD_KEY={key}")).get_function(
        "hbe_sample_level")
