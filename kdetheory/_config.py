"""Every tolerance, chunk size and numba flag of the package, in one place.

Change values here (or at run time through the module attributes) rather than in the code
that uses them: drivers read them at call time.
"""
from __future__ import annotations

import os

#: Largest temporary block (bytes) any driver may hold: an (rows x cols) matrix of logits is
#: never larger than this. 256 MiB by default; override with KDETHEORY_CHUNK_BYTES.
CHUNK_BYTES: int = int(os.environ.get("KDETHEORY_CHUNK_BYTES", 256 * 2**20))

#: Dense matrices with at most this many entries get an exact spectral norm (LAPACK SVD);
#: larger ones, and matrix-free operators, use Lanczos (scipy.sparse.linalg.svds).
EXACT_NORM_MAX_ENTRIES: int = 4096 * 512

#: Relative tolerance of the Lanczos / power-method spectral norm.
NORM_RTOL: float = 1e-10

#: Iteration cap of the power method.
POWER_MAXITER: int = 10_000

#: numba flags (STUMPY/pynndescent style): kernels are compiled with these.
NUMBA_PARALLEL: bool = True
NUMBA_FASTMATH: bool = False  # fastmath would reassociate sums: keep float64 results reproducible
NUMBA_CACHE: bool = True
