"""Theorem 3.4: KDEformer (Algorithm 1) at the theorem's sample count satisfies eq. (2),
``||D~^-1 A Pi^T Pi V - D^-1 A V|| <= eps ||D^-1 A|| ||V||``, with probability >= 1 - delta;
and its normaliser is within (1 +- eps/3) of D on every row (Algorithm 1, step 1)."""
from __future__ import annotations

import numpy as np

from kdetheory.attention import row_sums
from kdetheory.attention.kdeformer import kdeformer
from kdetheory.linalg import relative_spectral_error

from . import _instances
from ._harness import ClaimResult, ClaimSpec, binomial_failure_test, check_size, trial_generators, verdict_from_binomial

EPS = 0.5


def attention_trial(Q, K, V, eps, delta, kde, gen, backend="auto", n_samples=None):
    """(spectral error, all rows of D~ within 1 +- eps/3, m, cost) for one run of Algorithm 1."""
    res = kdeformer(Q, K, V, eps=eps, delta=delta, kde=kde, n_samples=n_samples, rng=gen, backend=backend)
    err = relative_spectral_error(res.output, Q, K, V, rng=0, backend=backend)
    log_d = np.asarray(row_sums(Q, K, log=True, backend=backend))
    rows_ok = bool(np.all(np.abs(np.expm1(np.asarray(res.log_row_sums) - log_d)) <= eps / 3))
    return err, rows_ok, res.n_samples, res.cost


def run(size="quick", rng=0, backend="auto") -> ClaimResult:
    check_size(size, "theorem_3_4_attention")
    n, trials, delta = (256, 30, 0.2) if size == "quick" else (1024, 100, 0.1)
    gen_inst, *gens = trial_generators(rng, 1 + trials)
    real = _instances.minilm(n)
    label, Q, K, V = real if real is not None else _instances.synthetic("clustered", n, 16, gen_inst)
    out = [attention_trial(Q, K, V, EPS, delta, "hbe", g, backend) for g in gens]
    errors = np.array([o[0] for o in out])
    row_fail = int(sum(not o[1] for o in out))
    m = out[0][2]
    test = binomial_failure_test(int(np.sum(errors > EPS)), trials, delta)
    rows_test = binomial_failure_test(row_fail, trials, delta)
    verdicts = {verdict_from_binomial(test), verdict_from_binomial(rows_test)}
    verdict = "fails" if "fails" in verdicts else ("inconclusive" if "inconclusive" in verdicts else "holds")
    kev = np.mean([o[3]["total"]["kernel_evaluations"] for o in out])
    return ClaimResult(
        name="theorem_3_4_attention", source="Theorem 3.4 / Algorithm 1",
        claim="With m = O(eps^-2 log n (srank(D^-1 A) + srank(V))), KDEformer satisfies eq. (2) w.p. >= 1 - delta",
        data=f"{label}; kde = hbe; {trials} independent runs",
        measured={"failures": test.failures, "row_sum_failures": row_fail, "trials": trials, "m": m, "n_keys": K.shape[0],
                  "max_error": float(errors.max()), "median_error": float(np.median(errors)),
                  "kernel_evals_vs_exact": float(kev / (Q.shape[0] * K.shape[0]))},
        expected=f"error <= eps = {EPS} and all rows within 1 +- eps/3, each failing w.p. <= delta = {delta}",
        verdict=verdict, seeds=[rng],
        details=(f"The theorem's m (matrix-Bernstein constants) is {m} for {K.shape[0]} keys: "
                 + ("more samples than keys, so at this size the guarantee costs more than exact attention."
                    if m > K.shape[0] else "fewer samples than keys.")),
    )


SPEC = ClaimSpec("theorem_3_4_attention", "Theorem 3.4", "spectral-norm guarantee of KDEformer", run)
