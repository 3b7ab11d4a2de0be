"""Theorem 3.2 (correctness of Algorithm 1): a normaliser within (1 +- eps/3) and an AMM error
of eps/3 compose to a total error <= eps in the metric of eq. (2) (SPEC 8.5).

Measured adversarially: D~ = D (1 + s_i eps/3) with random signs s_i and with all signs equal
(the two extremes), and the AMM error measured exactly for each draw; the proof's bound is
``(e1 + e2)/(1 - e1)`` with e1 = eps/3 and e2 the measured AMM error.
"""
from __future__ import annotations

import numpy as np

from kdetheory.amm import SamplingMatrix, sampling_probabilities
from kdetheory.attention import row_sums, softmax_attention, softmax_matrix
from kdetheory.attention.kdeformer import sampled_attention
from kdetheory.linalg import spectral_norm

from . import _instances
from ._harness import ClaimResult, ClaimSpec, check_size, trial_generators

EPS = 0.3


def composition_trial(Q, K, V, eps, m, gen, signs="random", backend="auto"):
    """(total error, AMM error e2, bound (e1+e2)/(1-e1)) for one draw, all in units ||D^-1 A|| ||V||."""
    P = softmax_matrix(Q, K)
    unit = spectral_norm(P, rng=0) * spectral_norm(V)
    exact = softmax_attention(Q, K, V, backend=backend)
    a = np.sum(P.todense() ** 2, axis=0)
    S = SamplingMatrix.draw(sampling_probabilities(a, np.sum(V * V, axis=1)), m, rng=gen)
    amm_only = sampled_attention(Q, K, V, S, backend=backend)
    e2 = spectral_norm(amm_only - exact) / unit
    s = gen.choice([-1.0, 1.0], size=Q.shape[0]) if signs == "random" else np.full(Q.shape[0], 1.0 if signs == "up" else -1.0)
    e1 = eps / 3
    log_d = np.log(row_sums(Q, K, backend=backend)) + np.log1p(s * e1)
    total = spectral_norm(sampled_attention(Q, K, V, S, log_row_sums=log_d, backend=backend) - exact) / unit
    return total, e2, (e1 + e2) / (1 - e1)


def run(size="quick", rng=0, backend="auto") -> ClaimResult:
    check_size(size, "theorem_3_2_composition")
    n, trials = (256, 30) if size == "quick" else (1024, 200)
    gen_inst, *gens = trial_generators(rng, 1 + trials)
    label, Q, K, V = _instances.synthetic("clustered", n, 16, gen_inst)
    rows = []
    for t, g in enumerate(gens):
        signs = ("random", "up", "down")[t % 3]
        rows.append(composition_trial(Q, K, V, EPS, 4 * n, g, signs=signs, backend=backend))
    total, e2, bound = map(np.array, zip(*rows))
    inside = e2 <= EPS / 3  # the theorem's hypothesis on the AMM part
    violations = int(np.sum(total > bound * (1 + 1e-9)))
    within_eps = bool(np.all(total[inside] <= EPS))
    verdict = "holds" if violations == 0 and within_eps and inside.any() else ("inconclusive" if not inside.any() else "fails")
    return ClaimResult(
        name="theorem_3_2_composition", source="Theorem 3.2",
        claim="(1 +- eps/3) row sums and an eps/3 AMM error give ||D~^-1 A Pi^T Pi V - D^-1 A V|| <= eps ||D^-1 A|| ||V||",
        data=f"{label}; {trials} draws, m = {4 * n}; D~ perturbed by +-eps/3 (random, all up, all down)",
        measured={"max_total": float(total.max()), "max_amm": float(e2.max()), "bound_violations": violations,
                  "draws_meeting_hypothesis": int(inside.sum()), "max_total_when_hypothesis": float(total[inside].max()) if inside.any() else None},
        expected=f"total <= (e1 + e2)/(1 - e1) on every draw, and <= eps = {EPS} when e2 <= eps/3",
        verdict=verdict, seeds=[rng],
        details="A deterministic inequality: any violation is a failure (no statistics needed).",
    )


SPEC = ClaimSpec("theorem_3_2_composition", "Theorem 3.2", "error composition of Algorithm 1", run)
