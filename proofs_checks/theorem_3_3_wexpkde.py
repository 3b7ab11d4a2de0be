"""Theorem 3.3 (analysis of Algorithm 2): the weighted exponential KDE is (1 +- eps)-accurate for
each query with probability >= 1 - delta, for every Gaussian estimator inside (SPEC 8.6)."""
from __future__ import annotations

import numpy as np

from kdetheory.kde import exp_kde
from kdetheory.attention.kdeformer import diameter_bound
from kdetheory.kde.weighted_exp import WeightedExpKDE

from . import _instances
from ._harness import ClaimResult, ClaimSpec, binomial_failure_test, check_size, trial_generators, verdict_from_binomial

EPS, DELTA = 0.2, 0.1
ESTIMATORS = ("exact", "sampling", "hbe", "ckns")


def wexpkde_failures(X, Y, log_v, estimator, gen, backend="auto"):
    """(failures, queries, mean kernel evaluations per query, classes) for one build."""
    kde = WeightedExpKDE(X, log_weights=log_v, eps=EPS, delta=DELTA, estimator=estimator, rng=gen, backend=backend,
                         diameter=diameter_bound(Y, X))
    res = kde.query(Y)
    exact = exp_kde(X, Y, weights=np.exp(log_v), log=True)
    rel = np.abs(np.expm1(np.asarray(res.log_estimate) - exact))
    return int(np.sum(rel > EPS)), len(rel), float(np.mean(res.kernel_evaluations)), kde.n_classes


def run(size="quick", rng=0, backend="auto") -> ClaimResult:
    check_size(size, "theorem_3_3_wexpkde")
    n, n_query, builds = (1000, 60, 3) if size == "quick" else (4000, 200, 10)
    gen_inst, *gens = trial_generators(rng, 1 + builds * len(ESTIMATORS))
    _, Q, K, _ = _instances.synthetic("clustered", n, 8, gen_inst)
    log_v = gen_inst.uniform(-20, 5, size=n)  # weights over ~11 orders of magnitude
    X, Y = K, Q[:n_query]
    measured, verdicts = {}, []
    for e, name in enumerate(ESTIMATORS):
        fails = total = 0
        kev, classes = [], 0
        for b in range(builds):
            f, t, k, classes = wexpkde_failures(X, Y, log_v, name, gens[e * builds + b], backend)
            fails, total = fails + f, total + t
            kev.append(k)
        test = binomial_failure_test(fails, total, DELTA)
        verdicts.append(verdict_from_binomial(test))
        measured[name] = {"failures": fails, "queries": total, "kernel_evals_per_query": float(np.mean(kev)),
                          "fraction_of_exact": float(np.mean(kev)) / n, "classes": classes, "verdict": verdicts[-1]}
    verdict = "fails" if "fails" in verdicts else ("inconclusive" if "inconclusive" in verdicts else "holds")
    return ClaimResult(
        name="theorem_3_3_wexpkde", source="Theorem 3.3 / Algorithm 2",
        claim="Algorithm 2 returns an eps-approximate weighted exponential KDE for each query w.p. >= 1 - delta",
        data=f"clustered synthetic, n = {n}, d = 8, weights spanning 11 decades; {builds} builds x {n_query} queries per estimator",
        measured=measured, expected=f"failure rate <= delta = {DELTA} at eps = {EPS} for every estimator",
        verdict=verdict, seeds=[rng],
    )


SPEC = ClaimSpec("theorem_3_3_wexpkde", "Theorem 3.3", "weighted exponential KDE accuracy", run)
