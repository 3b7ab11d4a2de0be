"""Shared measurement tools of the benchmarks: timers, machine ceilings, peak memory, machine.

GPU timings synchronise the device around the timed region, warm up first and report the
median of repeats (the lent machine's METHOD.md); CPU timings use perf_counter medians.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import time
import tracemalloc

import numpy as np


def machine(xp=np) -> str:
    """One line naming the machine: CPU model and cores, and the GPU when xp is cupy."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if xp is not np:
        props = xp.cuda.runtime.getDeviceProperties(0)
        text += f"; GPU {props['name'].decode()} ({props['totalGlobalMem'] / 2**30:.0f} GiB)"
    return text


def today() -> str:
    return datetime.date.today().isoformat()


def sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def median_time(fn, xp=np, *, repeat=3, warmup=1):
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs (device synchronised)."""
    for _ in range(warmup):
        fn()
    sync(xp)
    times = []
    for _ in range(repeat):
        sync(xp)
        t0 = time.perf_counter()
        fn()
        sync(xp)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_rate(xp=np, dtype=np.float32, n=None):
    """Measured matrix-product rate in FLOP/s (square products of a size that fills the device)."""
    n = n or (8192 if xp is not np else 2048)
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    t = median_time(lambda: a @ b, xp, repeat=5)
    return 2.0 * n**3 / t


def bandwidth(xp=np, n_bytes=None):
    """Measured copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    n_bytes = n_bytes or (2**31 if xp is not np else 2**28)
    a = xp.ones(n_bytes // 4, dtype=np.float32)
    b = xp.empty_like(a)
    t = median_time(lambda: b.__setitem__(slice(None), a), xp, repeat=5)
    return 2.0 * n_bytes / t


class _PeakHook:
    """CuPy memory hook tracking the peak of bytes held by the pool's live allocations."""

    def __init__(self, cp):
        from cupy.cuda import memory_hook

        outer = self

        class Hook(memory_hook.MemoryHook):
            name = "kdetheory_peak"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                outer.live[mem_ptr] = mem_size
                outer.current += mem_size
                outer.peak = max(outer.peak, outer.current)

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
                outer.current -= outer.live.pop(mem_ptr, 0)

        self.hook, self.live, self.current, self.peak = Hook(), {}, 0, 0


@contextlib.contextmanager
def peak_memory(xp=np):
    """Yield a dict whose ``"bytes"`` is, on exit, the peak memory allocated inside the block
    (host: tracemalloc, which NumPy reports to; GPU: a CuPy memory-pool hook)."""
    box = {"bytes": 0}
    if xp is np:
        tracemalloc.start()
        try:
            yield box
        finally:
            box["bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    else:
        tracker = _PeakHook(xp)
        with tracker.hook:
            yield box
        box["bytes"] = tracker.peak


def spectral_norm_tall(M):
    """||M||_2 for a tall matrix via the eigenvalues of the small Gram matrix, in float64 on the host."""
    from kdetheory._array import to_numpy

    M = to_numpy(M).astype(np.float64).reshape(-1, M.shape[-2], M.shape[-1])
    return np.array([np.sqrt(max(np.linalg.eigvalsh(m.T @ m)[-1], 0.0)) for m in M])


def to_host(a):
    """``a`` as a NumPy array (copied from the GPU when needed)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def xp_of(a):
    """The array namespace (numpy or cupy) of ``a``."""
    from kdetheory._array import namespace

    return namespace(a)
