"""Compatibility re-exports of the claim machinery, which now lives in one module per purpose.

* :mod:`proofs_checks._records`: :class:`ClaimResult`, :class:`ClaimSpec`, ``VERDICTS``, ``SIZES``, :func:`check_size`
* :mod:`proofs_checks._seeds`: :func:`trial_generators`
* :mod:`proofs_checks._stats`: binomial failure test, critical failure counts, log-log slope fit
* :mod:`proofs_checks._verdicts`: the verdict rules and :func:`trials_for_power` (exact binomial design)
* :mod:`proofs_checks._jsonable`: :func:`to_jsonable`
* :mod:`proofs_checks._io`: a claim's figure data on disk (figures read it through :mod:`proofs_checks.results`)
* :mod:`proofs_checks._report`: :func:`summarize` and the report tables

New code imports from those modules; this one keeps ``from ._harness import ...`` working until every claim
module has switched.
"""

from ._io import has_claim_data, load_claim_data, remove_claim_data, save_claim_data
from ._jsonable import to_jsonable
from ._records import SIZES, VERDICTS, ClaimResult, ClaimSpec, check_size
from ._report import summarize
from ._seeds import trial_generators
from ._stats import (
    BinomialTest,
    SlopeFit,
    binomial_failure_test,
    critical_failures,
    slope_fit,
)
from ._verdicts import trials_for_power

__all__ = [
    "VERDICTS",
    "SIZES",
    "check_size",
    "ClaimResult",
    "ClaimSpec",
    "BinomialTest",
    "SlopeFit",
    "binomial_failure_test",
    "trials_for_power",
    "critical_failures",
    "slope_fit",
    "trial_generators",
    "to_jsonable",
    "save_claim_data",
    "load_claim_data",
    "remove_claim_data",
    "has_claim_data",
    "summarize",
]
