"""The list of checkable claims.

To add a claim, write a module ``proofs_checks/<module>.py`` that defines ``NAME``, ``SOURCE``, ``CLAIM`` and
``run(size="quick", rng=0, backend="auto") -> ClaimResult``, then add ONE line to :data:`CLAIMS`::

    "lemma_3_1_amm": "proofs_checks.lemma_3_1_amm",

A module holding several claims defines one :class:`~proofs_checks._records.ClaimSpec` per claim and each gets its
own line, ``"name": "proofs_checks.module:ATTRIBUTE"``. Modules are imported only when a claim is loaded, so a
broken module costs only its own claims.
"""

from __future__ import annotations

import contextlib
import importlib

from ._records import ClaimSpec

__all__ = ["CLAIMS", "UnknownClaimError", "claim_names", "importable_by_name", "load_claim", "temporary_claims"]

#: Registry name -> "package.module" or "package.module:ATTRIBUTE". Order is the order of the report.
CLAIMS: dict[str, str] = {
    # Section 1: the identities the analysis rests on
    "exp_gaussian_identity": "proofs_checks.identities:EXP_GAUSSIAN_IDENTITY",
    "column_norm_formula": "proofs_checks.identities:COLUMN_NORM_FORMULA",
    "softmax_row_stochastic": "proofs_checks.identities:SOFTMAX_ROW_STOCHASTIC",
    # Theorem 2.1: fast Gaussian KDE
    "theorem_2_1_relative_error": "proofs_checks.theorem_2_1_kde:RELATIVE_ERROR",
    "theorem_2_1_cost_exponent": "proofs_checks.theorem_2_1_kde:COST_EXPONENT",
    "e2lsh_collision_probability": "proofs_checks.hbe_claims:COLLISION",
    "hbe_unbiased": "proofs_checks.hbe_claims:UNBIASED",
    "hbe_variance_vs_density": "proofs_checks.hbe_claims:VARIANCE",
    # Section 3: Lemma 3.1, Algorithms 1-2, Theorems 3.2-3.4, Corollary 3.4
    "lemma_3_1_amm_guarantee": "proofs_checks.lemma_3_1_amm:GUARANTEE",
    "lemma_3_1_amm_scaling": "proofs_checks.lemma_3_1_amm:SCALING",
    "theorem_3_2_composition": "proofs_checks.theorem_3_2_composition:SPEC",
    "theorem_3_3_wexpkde": "proofs_checks.theorem_3_3_wexpkde:SPEC",
    "theorem_3_4_attention": "proofs_checks.theorem_3_4_attention:SPEC",
    "corollary_3_4_runtime": "proofs_checks.corollary_3_4_runtime:SPEC",
    "kde_runtime_vs_diameter": "proofs_checks.theorem_2_1_kde:RUNTIME_DIAMETER",
    # Section 4: the practical method (Definition 7.1, Claim 1, Algorithm 3, Figures 2 and 4, FLOP counts)
    "claim_1_angular_lsh": "proofs_checks.angular_lsh:CLAIM_1",
    "gray_code_adjacency": "proofs_checks.angular_lsh:GRAY_ADJACENCY",
    "practical_sparse_exact": "proofs_checks.practical_estimator:SPARSE_EXACT",
    "practical_residual_unbiased": "proofs_checks.practical_estimator:RESIDUAL_UNBIASED",
    "figure_2_stable_rank": "proofs_checks.figure_2_stable_rank:SPEC",
    "figure_4_budget": "proofs_checks.figure_4_budget:SPEC",
    "flop_ratios": "proofs_checks.flop_ratios:SPEC",
    "end_to_end_minilm": "proofs_checks.end_to_end:SPEC",
    "guarantee_audit": "proofs_checks.guarantee_audit:SPEC",
}


class UnknownClaimError(LookupError):
    """A claim name that is not in the registry (the message lists the valid names)."""


# Claims added at run time by tests (never by the package itself); looked up before CLAIMS.
_EXTRA: dict[str, ClaimSpec] = {}


def claim_names() -> list[str]:
    """All registered claim names, in report order."""
    return list(CLAIMS) + [name for name in _EXTRA if name not in CLAIMS]


def importable_by_name(name: str) -> bool:
    """True when a worker process can load claim ``name`` from the registry alone (it is registered and not
    overridden by :func:`temporary_claims`, whose claims exist in this process only)."""
    return name in CLAIMS and name not in _EXTRA


def load_claim(name: str) -> ClaimSpec:
    """Import the claim called ``name`` and return its :class:`ClaimSpec`.

    Raises
    ------
    UnknownClaimError
        For an unknown name; the message lists the valid ones.
    ImportError, TypeError
        When the target module cannot be imported or does not expose ``NAME``, ``SOURCE``, ``CLAIM``, ``run``.
    """
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in CLAIMS:
        raise UnknownClaimError(f"unknown claim {name!r}; valid claims are: {', '.join(claim_names())}")
    target = CLAIMS[name]
    module_name, _, attribute = target.partition(":")
    obj = importlib.import_module(module_name)
    if attribute:
        obj = getattr(obj, attribute)
        if not isinstance(obj, ClaimSpec):
            raise TypeError(f"registry entry {name!r} -> {target!r} is a {type(obj).__name__}, not a ClaimSpec")
        spec = obj
    else:
        missing = [a for a in ("NAME", "SOURCE", "CLAIM", "run") if not hasattr(obj, a)]
        if missing:
            raise TypeError(f"claim module {module_name!r} (registry entry {name!r}) lacks {', '.join(missing)}")
        spec = ClaimSpec(obj.NAME, obj.SOURCE, obj.CLAIM, obj.run)
    if spec.name != name:
        raise ValueError(f"registry entry {name!r} -> {target!r} declares name {spec.name!r}; make them equal")
    return spec


@contextlib.contextmanager
def temporary_claims(*specs: ClaimSpec):
    """Register extra claims for the duration of a ``with`` block (a hook for tests).

    Claims registered this way are visible in this process only; run them with ``jobs=1`` or with ``run``
    functions importable by worker processes.
    """
    for spec in specs:
        if not isinstance(spec, ClaimSpec):
            raise TypeError(f"temporary_claims: expected ClaimSpec objects, got {type(spec).__name__}")
    saved = dict(_EXTRA)
    _EXTRA.update({spec.name: spec for spec in specs})
    try:
        yield
    finally:
        _EXTRA.clear()
        _EXTRA.update(saved)
