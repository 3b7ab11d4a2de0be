"""Corollary 3.4: for bounded diameter, max ||q_i - k_j||^2 <= c ln n, KDEformer's work is
sub-quadratic, ~ n^(1 + c tau) for the KDE stages plus n m d for the product.

Work is counted (kernel and hash evaluations, from the result's cost report), not timed: the
count is what the theorem bounds and it does not depend on the machine. Wall time versus
exact attention is in benchmarks/ (the crossover n is a property of the implementation).
"""
from __future__ import annotations

import numpy as np

from kdetheory.attention.kdeformer import kdeformer
from kdetheory.datasets.synthetic import bounded_diameter_instance

from ._harness import ClaimResult, ClaimSpec, check_size, slope_fit, trial_generators

C_DIAMETER, EPS, M = 1.0, 0.5, 64
KDES = ("sampling", "hbe", "ckns")


def work(n, kde, gen, backend="auto", d=16):
    """Kernel plus hash evaluations of one KDEformer run at size n (fixed m)."""
    Q, K, V = bounded_diameter_instance(n, d, c=C_DIAMETER, rng=gen)
    res = kdeformer(Q, K, V, eps=EPS, n_samples=M, kde=kde, rng=gen, backend=backend)
    kde_work = sum(res.cost[s]["kernel_evaluations"] + res.cost[s]["hash_evaluations"] for s in ("row_sums_kde", "column_norm_kde"))
    return kde_work, res.cost["total"]["kernel_evaluations"] + res.cost["total"]["hash_evaluations"]


def run(size="quick", rng=0, backend="auto") -> ClaimResult:
    check_size(size, "corollary_3_4_runtime")
    sizes = (256, 512, 1024, 2048) if size == "quick" else (1024, 2048, 4096, 8192, 16384)
    gens = trial_generators(rng, len(sizes) * len(KDES))
    measured, curves = {}, {}
    for k, kde in enumerate(KDES):
        kde_work, total = zip(*(work(n, kde, gens[k * len(sizes) + i], backend) for i, n in enumerate(sizes)))
        fit = slope_fit(sizes, kde_work)
        measured[kde] = {"exponent": fit.slope, "exponent_ci": [fit.ci_low, fit.ci_high],
                         "kde_work_over_exact_at_largest": float(kde_work[-1]) / (2 * sizes[-1] ** 2)}
        curves[kde] = np.array(total, dtype=float)
    # When the KDEs' sample budgets exceed the class sizes they evaluate exactly (the
    # Theorem-2.1 constants eps^-2 log(n/delta) mu^-tau are larger than n): the asymptotic
    # exponent is then not observable at these sizes, which is not evidence against it. The
    # exact fallback caps the work at ~2 n^2, so a slope fitted on nearly saturated points can
    # dip below 2 without any saving: "holds" needs the work to be well below exact as well.
    ratio = {k: measured[k]["kde_work_over_exact_at_largest"] for k in KDES}
    sub = [measured[k]["exponent_ci"][1] < 2 and ratio[k] < 0.5 for k in KDES]
    above = [measured[k]["exponent_ci"][0] >= 2 for k in KDES]
    exact_regime = all(r >= 0.9 for r in ratio.values())
    if exact_regime:
        verdict = "inconclusive"
    elif any(sub):
        verdict = "holds"
    else:
        verdict = "fails" if all(above) else "inconclusive"
    return ClaimResult(
        name="corollary_3_4_runtime", source="Corollary 3.4",
        claim="For max ||q - k||^2 <= c ln n, KDEformer's work grows sub-quadratically in n",
        data=f"bounded-diameter synthetic, c = {C_DIAMETER}, d = 16, m = {M}, n in {sizes}",
        measured=measured, expected="fitted exponent of the KDE work < 2 (theory: 1 + c tau, tau = 1 for sampling, about 1/2 for HBE)",
        verdict=verdict, seeds=[rng],
        details=("holds when at least one KDE backend's exponent is below 2 with 95% confidence and its work at "
                 "the largest n is under half of exact. "
                 + ("At every size here the KDE sample budgets exceeded n, so both KDE stages ran exactly "
                    "(work / exact >= 0.9): the sub-quadratic regime starts beyond these n." if exact_regime else "")),
        figure_data={"n": np.array(sizes), **{f"work_{k}": v for k, v in curves.items()}},
    )


SPEC = ClaimSpec("corollary_3_4_runtime", "Corollary 3.4", "sub-quadratic work for bounded diameter", run)
