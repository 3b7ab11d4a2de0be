"""Every tolerance, chunk size, tuning threshold and numba flag of the package, in one place.

Modelled on STUMPY's ``config.py``: module attributes with documented defaults, read by the
drivers *at call time* (``_config.CHUNK_BYTES``, never ``from _config import CHUNK_BYTES``), and
:func:`reset` to restore them. Change a value at run time by assigning the attribute::

    from kdetheory import _config
    _config.CHUNK_BYTES = 2**20   # every chunked loop now holds at most 1 MiB of temporaries
    ...
    _config.reset()

Exception: the ``NUMBA_*`` flags are bound when a ``kdetheory._numba`` module is first imported
(``numba.njit`` compiles with the values it sees then, and ``cache=True`` stores the result on
disk). Set them through the environment variables named below *before* the first import; a
change afterwards has no effect on kernels already compiled.
"""
from __future__ import annotations

import os

__all__ = ["block_shape", "reset"]


def _env_bool(name, default):
    return os.environ.get(name, str(int(default))).strip().lower() not in ("0", "false", "no", "")


def _defaults():
    return {
        # Largest temporary block (bytes) any driver may hold: an (rows x cols) matrix of logits,
        # times its temporaries, is never larger than this. Override with KDETHEORY_CHUNK_BYTES.
        "CHUNK_BYTES": int(os.environ.get("KDETHEORY_CHUNK_BYTES", 256 * 2**20)),
        # Dense matrices with at most this many entries get an exact spectral norm (LAPACK SVD);
        # larger ones, and matrix-free operators, use Lanczos (scipy.sparse.linalg.svds).
        "EXACT_NORM_MAX_ENTRIES": 4096 * 512,
        # Relative tolerance of the Lanczos / power-method spectral norm.
        "NORM_RTOL": 1e-6,  # an error metric needs a few digits: 63 Lanczos products vs 83 at 1e-10 (measured)
        # Iteration cap of the power method.
        "POWER_MAXITER": 10_000,
        # kdeformer_practical, backend="auto" on the host: numba's per-query loops while
        # bucket_size + n_samples <= this, batched BLAS above (measured on 2 cores, n = 2048..8192,
        # d = 50: per-block BLAS calls are tiny below ~384).
        "PRACTICAL_NUMBA_MAX_BUDGET": 256,
        # Rows per thread of the fused GPU online-softmax kernel (kdetheory/_cupy): a block of 256
        # threads holds 16 x this many queries (64 by default); lowered automatically when the
        # tiles do not fit shared memory (large d).
        "FUSED_ROWS_PER_THREAD": 4,
        # GPU HashingBasedKDE, form "sample": one fused launch per level and chunk of queries
        # (kdetheory/_cupy/hbe.cu) instead of ~40 CuPy calls; False selects the namespace path
        # (kdetheory._cupy._hbe.device_sample_samples), the reference the fused kernel is tested against.
        "HBE_FUSED": True,
    }


#: See :func:`_defaults` for the meaning of each value.
CHUNK_BYTES: int
EXACT_NORM_MAX_ENTRIES: int
NORM_RTOL: float
POWER_MAXITER: int
PRACTICAL_NUMBA_MAX_BUDGET: int
FUSED_ROWS_PER_THREAD: int
HBE_FUSED: bool

#: numba flags (STUMPY/pynndescent style), bound at the first import of a ``kdetheory._numba``
#: module (see the module docstring): KDETHEORY_NUMBA_PARALLEL, KDETHEORY_NUMBA_FASTMATH and
#: KDETHEORY_NUMBA_CACHE ("0" or "1"). fastmath stays off: it would reassociate sums and make
#: float64 results irreproducible.
NUMBA_PARALLEL: bool = _env_bool("KDETHEORY_NUMBA_PARALLEL", True)
NUMBA_FASTMATH: bool = _env_bool("KDETHEORY_NUMBA_FASTMATH", False)
NUMBA_CACHE: bool = _env_bool("KDETHEORY_NUMBA_CACHE", True)


def reset() -> None:
    """Restore every run-time value (not the ``NUMBA_*`` flags) to its default."""
    globals().update(_defaults())


reset()


def block_shape(rows: int, cols: int, itemsize: int, *, temporaries: int = 2, batch: int = 1) -> tuple[int, int]:
    """Row and column block sizes of a chunked loop over a ``batch x rows x cols`` matrix.

    The one chunk-size formula of the package: ``batch * r * c * temporaries * itemsize`` stays
    within ``CHUNK_BYTES`` (read at call time), with ``c`` as large as possible (whole rows
    first, so most loops need one column block) and both at least 1.

    Parameters
    ----------
    rows, cols : int >= 0
        Extent of the full matrix (per batch element).
    itemsize : int
        Bytes per entry.
    temporaries : int, default 2
        How many blocks of that shape the loop holds at once.
    batch : int, default 1
        Leading (batch, head) extent processed together.

    Returns
    -------
    (r, c) : tuple of int
        ``1 <= r <= max(rows, 1)`` and ``1 <= c <= max(cols, 1)``.
    """
    entries = max(1, CHUNK_BYTES // max(1, temporaries * itemsize * max(1, batch)))
    c = max(1, min(cols, entries))
    r = max(1, min(rows, entries // c))
    return r, c
