"""Every checkable claim of the KDEformer paper as a program that measures it and gives a verdict.

Run ``python -m proofs_checks`` (``--list`` shows the claims). A claim is registered in
:mod:`proofs_checks._registry` and exposes ``run(size="quick" | "full", rng=0, backend="auto") -> ClaimResult``;
the shared statistics (binomial failure test, log-log slope fit, seeded trials) are in
:mod:`proofs_checks._harness`, and :func:`proofs_checks._runner.run_tasks` runs any sweep locally or on Dask.
"""

from ._harness import ClaimResult, ClaimSpec
from ._registry import claim_names, load_claim

__all__ = ["ClaimResult", "ClaimSpec", "claim_names", "load_claim"]
