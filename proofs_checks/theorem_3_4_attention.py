"""Theorem 3.4: KDEformer (Algorithm 1) satisfies eq. (2),
``||D~^-1 A Pi^T Pi V - D^-1 A V|| <= eps ||D^-1 A|| ||V||``, with probability >= 1 - delta, checked where its
randomized path runs: the row-sum KDE samples (kernel evaluations below n_q n_k) and m < n_k keys are sampled.

Each independent run of Algorithm 1 (fresh build and seed) is scored on the events the proof composes
(docs/math.md §4 Algorithm 1, §5 Theorem 3.2):

* step 1: every row of D~ within ``1 +- eps/3`` of D (allowed failure rate delta/3);
* step 2: the sampling shares within the column-norm KDE's accuracy of the ideal Lemma 3.1 shares
  ``p*_j = (c_j/|c| + ||v_j||^2/||V||_F^2)/2`` (c_j the exact ``D~``-weighted column norms), i.e.
  ``(1-eps0)/(1+eps0) <= p_j/p*_j <= (1+eps0)/(1-eps0)`` (allowed failure rate delta/3);
* eq. (2) at the run's m (allowed failure rate delta);
* D~ and the output are (nearly) unbiased: the mean over runs of ``mean_i D~_ii/D_ii - 1`` and of
  ``<O~, O>/||O||_F^2 - 1`` is zero within a z-test designed to catch a 2 % bias (the proof rests on
  E[Pi^T Pi] = I and on unbiased KDEs; a biased D~ or biased weights stay inside the loose eps/3 band).

Each part's verdict is withheld as ``inconclusive (exact regime)`` when the stage it tests answered exactly
(work fraction >= 1 in any run); an observed violation stays a failure in any regime.

Two sizings of the random-sampling KDE inside Algorithm 1 are run, each on its own instance with its own
independent runs and its own parts: ``worst_case`` (median of means sized at the density floor: the row-sum stage
samples but the column-norm stage, and so the whole algorithm, does exact work or more) and ``adaptive``
(empirical-Bernstein stopping, same (1 +- eps, delta) guarantee; docs/math.md §2.4). In full, the adaptive instance
has 2048 queries so that the column-norm stage samples too and the total work is below n_q n_k: step 2 and eq. (2)
are then decided on a sampling path. (At n_q <= 1024 the column-norm stage's per-key stopping reaches the cap of
1.5 n_q samples and answers exactly; 2048 x 16384 costs about 4 CPU seconds a run, so quick stays on 64 queries.)
The unbiasedness parts belong to the worst-case sizing only: adaptive stopping returns the midpoint of the stopped
empirical-Bernstein bracket, which is within ``1 +- eps`` of the density (all that Theorem 3.2's composition uses)
but is not an unbiased estimate (measured on the quick instance, 2026-12-01: D~ low by 2.0 %, sd 0.08 % per run).
For that sizing the two bias statistics are reported as diagnostics, with the verdict the z-test would give, and
do not enter the claim's verdict. The claim's verdict combines one verdict per statement: a part withheld as exact
regime in one sizing gives way to the other sizing's decision on a sampling path (:func:`statement_verdicts`).

The theorem's own m (:func:`kdetheory.amm.required_samples` with the run's srank bound) is reported beside the
smallest m of a grid at which the empirical (1 - delta)-quantile of the eq. (2) error meets eps.

The reference (exact D, D^-1 A V, ||D^-1 A||_2) is computed here from dense logit blocks, without library code.
Instances: queries and keys in a ball of radius r (diameter <= 2r, Corollary 3.4's bounded-diameter regime), values
with heavy-tailed norms. eps = 0.9 because the KDE sample budget grows like eps^-2 and must fall below n_k.
"""
from __future__ import annotations

import functools

import numpy as np

from kdetheory.amm import SamplingMatrix, sampling_probabilities
from kdetheory.attention.kdeformer import COLUMN_NORM_EPS, kdeformer, sampled_attention
from kdetheory.kde import RandomSamplingKDE

from ._harness import ClaimResult, ClaimSpec, check_size, trial_generators
from ._verdicts import (
    binomial_verdict,
    exact_regime,
    mean_bias_verdict,
    trials_for_mean_bias,
    trials_for_power,
    verdict_word,
)

__all__ = ["SPEC", "ball_instance", "combine", "dense_reference", "describe", "gate", "kde_factory", "noise_floor",
           "sizing_parts", "stage_fraction", "statement_verdicts", "trials_needed"]

EPS, DELTA, ALPHA = 0.9, 0.2, 1e-5
#: Failure rates a broken implementation would have; the trial count gives power 0.99 against them.
VIOLATION_ROWS, VIOLATION_EQ2 = 0.7, 0.8
#: The smallest relative bias the unbiasedness parts detect with power 0.99, and the per-run sd they assume
#: (measured over 26 runs on the quick instance: D~ 2e-5, output 0.009 at the theorem's m; the design allows more).
BIAS, RUN_SD_ROWS, RUN_SD_OUTPUT = 0.02, 0.002, 0.012
M_GRID = (4, 16, 64, 256)
#: size -> sizing -> (n_q, n_k, d, radius). Radius 0.9 with the queries in one cluster makes the column norms of
#: D^-1 A uneven (max/min about 2.7), so sampling without them (p from the value norms alone) leaves step 2's band,
#: while the worst-case row-sum KDE's budget stays below n_k (at 2^16 keys). Full keeps the worst case at the quick
#: instance (its 256 x 2^18 instance took 113 s and decided nothing more) to pay for the adaptive 2048 x 2^14 runs.
SIZES = {"quick": {"worst_case": (64, 1 << 16, 16, 0.9), "adaptive": (64, 1 << 14, 16, 0.9)},
         "full": {"worst_case": (64, 1 << 16, 16, 0.9), "adaptive": (2048, 1 << 14, 16, 0.9)}}
QUERY_CLUSTERS, SPREAD = 1, 0.3


def ball_instance(n_q, n_k, d, radius, gen, query_clusters=8, spread=0.5):
    """Queries and keys in the ball of radius ``radius`` (so every ||q_i - k_j|| <= 2 radius), values with
    heavy-tailed norms (Student-t scale) around a common mean, all float64.

    Points are unit cluster centres (8 of them) plus Gaussian noise of standard deviation ``spread``, scaled so
    that the largest norm is ``radius``; queries use the first ``query_clusters`` centres, keys all 8 (queries
    concentrated in few directions make the column norms of D^-1 A uneven)."""
    centres = gen.standard_normal((8, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def points(n, clusters):
        x = centres[gen.integers(0, clusters, n)] + spread * gen.standard_normal((n, d))
        return radius * x / np.linalg.norm(x, axis=1).max()

    # Values with a common mean direction (so the exact output is not ~0 and its bias is measurable).
    V = (1.0 + gen.standard_normal((n_k, d))) * np.abs(gen.standard_t(3, n_k))[:, None]
    return points(n_q, query_clusters), points(n_k, 8), V


def dense_reference(Q, K, V, chunk=1 << 13):
    """(log D, D^-1 A V, ||D^-1 A||_2) from dense logit blocks of ``chunk`` keys (two passes, max-shifted).

    A reference written without library code: ``||D^-1 A||_2^2`` is the top eigenvalue of the n_q x n_q Gram
    matrix ``sum_blocks P_b P_b^T``.
    """
    n_q = Q.shape[0]
    shift = np.full(n_q, -np.inf)
    for s in range(0, K.shape[0], chunk):
        shift = np.maximum(shift, (Q @ K[s:s + chunk].T).max(axis=1))
    total, out, gram = np.zeros(n_q), np.zeros((n_q, V.shape[1])), np.zeros((n_q, n_q))
    for s in range(0, K.shape[0], chunk):
        E = np.exp(Q @ K[s:s + chunk].T - shift[:, None])
        total += E.sum(axis=1)
        out += E @ V[s:s + chunk]
        gram += E @ E.T
    log_d = shift + np.log(total)
    scale = np.exp(shift - log_d)  # 1 / D_ii times the shift
    p_norm = float(np.sqrt(np.linalg.eigvalsh(gram * np.outer(scale, scale)).max()))
    return log_d, out * scale[:, None], p_norm


def weighted_column_norms(Q, K, log_row_sums, chunk=1 << 13):
    """``c_j = sum_i D~_ii^-2 e^{2 <q_i, k_j>}`` exactly (dense blocks): the quantity step 2 estimates."""
    out = np.empty(K.shape[0])
    for s in range(0, K.shape[0], chunk):
        L = 2.0 * (Q @ K[s:s + chunk].T) - 2.0 * log_row_sums[:, None]
        top = L.max(axis=0)
        out[s:s + chunk] = top + np.log(np.exp(L - top).sum(axis=0))
    return np.exp(out - out.max())  # shares only


def noise_floor(rel_error):
    """A relative error rounded to 1e-12: below that, float64 log/exp round trips are noise, and an exact answer
    must read as exactly unbiased (not as a tiny bias with zero spread)."""
    return float(np.round(rel_error, 12))


def stage_fraction(cost, stage):
    """Kernel evaluations of one stage over the ``n_q n_k`` of exact attention."""
    return cost.stage(stage).kernel_evaluations / cost.exact_kernel_evaluations


def gate(work_fraction, verdict):
    """:func:`exact_regime`, except that an observed violation stays a failure whatever the regime."""
    return verdict if verdict_word(verdict) == "fails" else exact_regime(work_fraction, verdict)


def combine(parts):
    """One verdict word for several parts: fails if any fails, else inconclusive if any is, else holds."""
    words = [verdict_word(v) for v in parts.values()]
    return "fails" if "fails" in words else ("inconclusive" if "inconclusive" in words else "holds")


def describe(parts):
    """``name: verdict`` lines (the reasons of inconclusive parts included) for ClaimResult.details."""
    return "; ".join(f"{k}: {v}" for k, v in parts.items())


def kde_factory(sizing):
    """The random-sampling KDE of Algorithm 1's two stages under one sizing (``"worst_case"`` or ``"adaptive"``)."""
    if sizing not in ("worst_case", "adaptive"):
        raise ValueError(f"kde_factory: sizing={sizing!r}; pass 'worst_case' or 'adaptive'")
    return functools.partial(RandomSamplingKDE, sizing=sizing)


def attention_run(Q, K, V, ref, gen, backend="auto", sizing="worst_case"):
    """Score one run of Algorithm 1 at the theorem's m (fresh build and seed): the events and statistics above."""
    log_d, exact, p_norm = ref
    v_norm = float(np.sqrt(np.linalg.eigvalsh(V.T @ V)[-1]))  # ||V||_2 from the d x d Gram (an n_k x d SVD is slow)
    res = kdeformer(Q, K, V, eps=EPS, delta=DELTA, kde=kde_factory(sizing), rng=gen, backend=backend)
    log_dt = np.asarray(res.log_row_sums, dtype=np.float64)
    ratio = np.exp(log_dt - log_d)
    ideal = sampling_probabilities(weighted_column_norms(Q, K, log_dt), np.sum(V * V, axis=1))
    share = np.asarray(res.probabilities) / ideal
    band = (1 + COLUMN_NORM_EPS) / (1 - COLUMN_NORM_EPS)
    out = np.asarray(res.output, dtype=np.float64)
    grid = []
    for m_g in M_GRID:  # the same D~ and p, fresh samples: the error of eq. (2) as a function of m
        S = SamplingMatrix.draw(res.probabilities, m_g, rng=gen)
        o = np.asarray(sampled_attention(Q, K, V, S, log_row_sums=log_dt, backend=backend))
        grid.append(np.linalg.norm(o - exact, 2) / (p_norm * v_norm))
    return {
        "rows_ok": bool(np.all(np.abs(ratio - 1) <= EPS / 3)),
        "shares_ok": bool(share.min() >= 1 / band and share.max() <= band),
        "error": float(np.linalg.norm(out - exact, 2) / (p_norm * v_norm)),
        "row_bias": noise_floor(ratio.mean() - 1),
        "output_bias": noise_floor(np.sum(out * exact) / np.sum(exact * exact) - 1),
        "grid": grid, "share_range": (float(share.min()), float(share.max())),
        "m": res.n_samples,
        "wf_rows": stage_fraction(res.cost, "row_sums_kde"), "wf_cols": stage_fraction(res.cost, "column_norm_kde"),
        "wf_samples": stage_fraction(res.cost, "sampled_product"), "wf_total": res.cost.work_fraction,
    }


def trials_needed():
    """Independent runs per sizing: power 0.99 for every binomial and mean-bias part at level ALPHA."""
    return max(trials_for_power(DELTA / 3, VIOLATION_ROWS, ALPHA), trials_for_power(DELTA, VIOLATION_EQ2, ALPHA),
               trials_for_mean_bias(RUN_SD_ROWS, BIAS, ALPHA), trials_for_mean_bias(RUN_SD_OUTPUT, BIAS, ALPHA))


#: The parts that decide the claim per sizing (the others are diagnostics): adaptive stopping is not unbiased.
DECIDING = {"worst_case": ("step 1 rows within 1+-eps/3", "step 2 sampling shares", "eq. (2)", "D~ unbiased",
                           "output unbiased"),
            "adaptive": ("step 1 rows within 1+-eps/3", "step 2 sampling shares", "eq. (2)")}


def sizing_parts(shape, sizing, gens, backend="auto"):
    """Instance, reference and ``len(gens) - 1`` independent runs of one sizing: (parts, measured, error grid);
    every part is in ``measured["parts"]``, only those of :data:`DECIDING` in ``parts``."""
    n_q, n_k, d, radius = shape
    gen_inst, *gens = gens
    Q, K, V = ball_instance(n_q, n_k, d, radius, gen_inst, QUERY_CLUSTERS, SPREAD)
    ref = dense_reference(Q, K, V)
    runs = [attention_run(Q, K, V, ref, g, backend, sizing) for g in gens]
    trials = len(runs)
    col = {k: np.array([r[k] for r in runs]) for k in runs[0] if k not in ("grid", "share_range")}
    grid = np.array([r["grid"] for r in runs])
    wf = {k: float(col[k].max()) for k in ("wf_rows", "wf_cols", "wf_samples", "wf_total")}
    row_fail, share_fail = int(np.sum(~col["rows_ok"])), int(np.sum(~col["shares_ok"]))
    eq2_fail = int(np.sum(col["error"] > EPS))
    parts = {
        "step 1 rows within 1+-eps/3": gate(wf["wf_rows"], binomial_verdict(row_fail, trials, DELTA / 3, ALPHA,
                                                                             VIOLATION_ROWS)),
        "step 2 sampling shares": gate(wf["wf_cols"], binomial_verdict(share_fail, trials, DELTA / 3, ALPHA,
                                                                      VIOLATION_ROWS)),
        "eq. (2)": gate(wf["wf_total"], binomial_verdict(eq2_fail, trials, DELTA, ALPHA, VIOLATION_EQ2)),
        "D~ unbiased": gate(wf["wf_rows"], mean_bias_verdict(col["row_bias"], ALPHA, BIAS, RUN_SD_ROWS)),
        "output unbiased": gate(max(wf["wf_rows"], wf["wf_samples"]),
                                mean_bias_verdict(col["output_bias"], ALPHA, BIAS, RUN_SD_OUTPUT)),
    }
    quantile = np.quantile(grid, 1 - DELTA, axis=0)
    meets = [mg for mg, q in zip(M_GRID, quantile) if q <= EPS]
    deciding = {k: v for k, v in parts.items() if k in DECIDING[sizing]}
    measured = {"instance": {"n_q": n_q, "n_k": n_k, "d": d, "radius": radius}, "trials": trials,
                "theorem_m": int(np.median(col["m"])), "empirical_m_meeting_eps": meets[0] if meets else None,
                "eq2_failures": eq2_fail, "row_failures": row_fail, "share_failures": share_fail,
                "max_error": float(col["error"].max()), "median_error": float(np.median(col["error"])),
                "row_bias_mean": float(col["row_bias"].mean()), "row_bias_sd": float(col["row_bias"].std(ddof=1)),
                "output_bias_mean": float(col["output_bias"].mean()),
                "output_bias_sd": float(col["output_bias"].std(ddof=1)),
                "share_ratio_range": [min(r["share_range"][0] for r in runs), max(r["share_range"][1] for r in runs)],
                "work_fraction": wf, "error_quantile_by_m": dict(zip(M_GRID, quantile.tolist())), "parts": parts,
                "diagnostics": {k: v for k, v in parts.items() if k not in deciding}}
    return deciding, measured, grid


def statement_verdicts(parts):
    """One verdict per statement (step 1, step 2, eq. (2), ...) from the ``"sizing: statement"`` parts: a part
    withheld as ``inconclusive (exact regime ...)`` gives way to another sizing that decided the same statement on a
    sampling path (fails wins over holds); otherwise the parts combine as in :func:`combine`."""
    by_statement = {}
    for key, verdict in parts.items():
        by_statement.setdefault(key.split(": ", 1)[1], []).append(verdict)
    out = {}
    for statement, verdicts in by_statement.items():
        decided = [v for v in verdicts if not v.startswith("inconclusive (exact regime")]
        out[statement] = combine(dict(enumerate(decided or verdicts)))
    return out


def run(size="quick", rng=0, backend="auto") -> ClaimResult:
    check_size(size, "theorem_3_4_attention")
    shapes = SIZES[size]
    trials = trials_needed()
    streams = iter(trial_generators(rng, len(shapes) * (1 + trials)))
    parts, measured, grids = {}, {}, {}
    for sizing, shape in shapes.items():
        p, measured[sizing], grids[sizing] = sizing_parts(shape, sizing, [next(streams) for _ in range(1 + trials)],
                                                          backend)
        parts.update({f"{sizing}: {k}": v for k, v in p.items()})
    statements = statement_verdicts(parts)
    diagnostics = "".join(f" Diagnostics, not deciding ({s} sizing): {describe(m['diagnostics'])}; D~ bias "
                          f"{m['row_bias_mean']:+.4f} (sd {m['row_bias_sd']:.4f}), output bias "
                          f"{m['output_bias_mean']:+.4f} (sd {m['output_bias_sd']:.4f})."
                          for s, m in measured.items() if m["diagnostics"])
    notes = " ".join(
        f"{s} ({m['instance']['n_q']} x {m['instance']['n_k']}): work fractions (max over runs) row-sum KDE "
        f"{m['work_fraction']['wf_rows']:.3f}, column-norm KDE {m['work_fraction']['wf_cols']:.3f}, distinct samples "
        f"{m['work_fraction']['wf_samples']:.3f}, total {m['work_fraction']['wf_total']:.3f}; theorem's m "
        f"{m['theorem_m']}; smallest m of {M_GRID} whose {1 - DELTA:.0%}-quantile error meets eps: "
        f"{m['empirical_m_meeting_eps'] or 'none'}." for s, m in measured.items())
    return ClaimResult(
        name="theorem_3_4_attention", source="Theorem 3.4 / Algorithm 1",
        claim="With m = O(eps^-2 log n (srank(D^-1 A) + srank(V))), KDEformer satisfies eq. (2) w.p. >= 1 - delta",
        data=("ball instances (queries in one cluster), heavy-tailed V; kde = random sampling, "
              + "; ".join(f"{s} sizing: n_q = {q}, n_k = {k}, d = {d}, radius {r}"
                          for s, (q, k, d, r) in shapes.items())
              + f"; m = the theorem's; {trials} independent runs per sizing"),
        measured={"trials": trials, **measured, "parts": parts, "statements": statements},
        expected=(f"each part holds: failure rates <= delta/3, delta/3, delta = {DELTA} at eps = {EPS} (binomial, "
                  f"alpha {ALPHA}, power 0.99 against {VIOLATION_ROWS}/{VIOLATION_EQ2}); mean biases 0 (z-test, "
                  f"alpha {ALPHA}, power 0.99 against {BIAS}); a part is decided only where its stage sampled in "
                  f"every run; family-wise false-fail rate <= 8 alpha = {8 * ALPHA:g} (8 deciding tests)"),
        verdict=combine(statements), seeds=[rng],
        details=("Statements: " + describe(statements) + ". Parts: " + describe(parts) + "." + diagnostics + " "
                 + notes),
        figure_data={"m_grid": np.array(M_GRID), "eps": EPS,
                     **{f"errors_by_m_{s}": g for s, g in grids.items()},
                     **{f"theorem_m_{s}": m["theorem_m"] for s, m in measured.items()}},
    )


SPEC = ClaimSpec("theorem_3_4_attention", "Theorem 3.4", "spectral-norm guarantee of KDEformer", run)
