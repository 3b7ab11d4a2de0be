"""Every checkable claim of the KDEformer paper as a program that measures it and gives a verdict.

Run ``python -m proofs_checks`` from any folder (``--list`` shows the claims, ``--estimate`` the expected time,
``--out DIR`` where records go). A claim is registered in :mod:`proofs_checks._registry` and exposes
``run(size="quick" | "full", rng=0, backend="auto") -> ClaimResult``. The machinery is one module per purpose:
records (:mod:`._records`), seeds (:mod:`._seeds`), statistics (:mod:`._stats`), JSON (:mod:`._jsonable`),
files (:mod:`._io`), report text (:mod:`._report`), run planning (:mod:`._timing`), and
:func:`proofs_checks._runner.run_tasks`, which runs any sweep locally or on Dask. Protocols shared with the
benchmarks are in :mod:`proofs_checks.protocols`; figures and notebooks read results through
:mod:`proofs_checks.results`.
"""

from ._records import ClaimResult, ClaimSpec
from ._registry import claim_names, load_claim

__all__ = ["ClaimResult", "ClaimSpec", "claim_names", "load_claim"]
