"""Theorem 2.1 (fast Gaussian KDE, CKNS 2020 as restated by KDEformer), checked on the toolkit's estimators.

* ``theorem_2_1_relative_error``: for ``mu(q) >= mu_min`` every estimator answers within ``(1 +- eps) mu(q)`` with
  probability ``>= 1 - delta``; calibrated binomial test on the failure count, with the work per query reported so
  that a check passed by falling back to the exact sum is visible as such.
* ``theorem_2_1_cost_exponent``: the exponent tau of per-query work (kernel + hash evaluations) against ``1/mu`` at
  a fixed accuracy (mean relative error <= 0.1), the small form of ``benchmarks/kde.py`` (whose estimator
  factories and bandwidth rule are reused here).
* ``kde_runtime_vs_diameter`` (docs/math.md §8.19): KDEformer's KDE-stage work against the diameter gamma.

Work is counted (evaluations from the estimators' own reports), never timed: the count is what the theorem bounds.
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from kdetheory.attention.kdeformer import kdeformer
from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities
from kdetheory.datasets.synthetic import bounded_diameter_instance
from kdetheory.kde import CKNSKDE, HashingBasedKDE, RandomSamplingKDE

from ._harness import ClaimResult, ClaimSpec, check_size, slope_fit, trial_generators
from ._verdicts import (
    binomial_verdict, comparison_verdict, exact_regime, interval_verdict, trials_for_power, upper_bound_verdict,
    verdict_word,
)
from .protocols.kde import bandwidth_for_density, estimator_factories

__all__ = ["RELATIVE_ERROR", "COST_EXPONENT", "RUNTIME_DIAMETER", "kde_instance"]

DIM = 16
#: relative error and failure probability of claim 1 (the benchmark's HBE setting); eps = 0.5 keeps sample budgets
#: below n at this size
EPS, DELTA, MU_MIN = 0.5, 0.2, 0.005
#: the binomial test of claim 1: false-fail rate ALPHA when the failure rate is delta, power 0.99 against an
#: estimator that fails in half of the trials (2.5 delta); one trial = one fresh build and one query drawn at random
ALPHA, VIOLATION = 1e-5, 0.5
ERROR_TARGETS = (0.1, 0.05, 0.02, 0.01)
#: HBE relative-variance model V = 0.5 mu^-3/4: above the relative variance that ``hbe_variance_vs_density``
#: measures on this instance family (about 1.9, 2.6, 2.9 at mu = 0.1, 0.03, 0.01 against 2.8, 6.9, 16), so the
#: guarantee's premise holds; the rehashing default (e^1.854) makes every level below mu ~ 0.2 exact at n = 2e4.
HBE_VARIANCE_CONSTANT = 0.5
#: size -> (n, builds, queries per target density). Full: trials_for_power(DELTA, VIOLATION, ALPHA) = 103 builds
#: per estimator; quick runs 8 and is inconclusive by design (HBE builds take ~4 s each on 2 cores).
ERROR_SIZES = {"quick": (20_000, 8, 5), "full": (20_000, 103, 20)}


def kde_instance(n, targets, per_target, gen, d=DIM):
    """Clustered points, the benchmark's bandwidth and queries placed at the target densities.

    Parameters
    ----------
    n : int
    targets : sequence of float
        Target densities of the queries.
    per_target : int
    gen : numpy.random.Generator
    d : int, default 16

    Returns
    -------
    X, h, Y, target, mu
        Data, bandwidth, queries, each query's target and its exact density on all of ``X``.
    """
    X = clustered_points(n, d, rng=gen)
    # The benchmark's rule (95th percentile of data densities = 0.15) on a 4000-point subsample: the same scale at a
    # fraction of the cost (the density is an average, so a uniform subsample estimates it).
    h = bandwidth_for_density(X[:4000], gen)
    # seed_window=4: queries sit beside a small group of points, the hard case for uniform sampling (as benchmarked)
    Y, target, mu = queries_at_densities(X, targets, per_target, bandwidth=h, seed_window=4.0,
                                         reference_size=5000, rng=gen)
    return X, h, Y, target, mu


def _error_estimators(X, h, backend):
    """name -> factory(rng) of the estimators of claim 1, each at (EPS, DELTA, MU_MIN)."""
    kw = dict(eps=EPS, delta=DELTA, mu_min=MU_MIN, bandwidth=h, backend=backend)
    return {
        "RS": lambda r: RandomSamplingKDE(X, permuted=False, rng=r, **kw),
        "RSP": lambda r: RandomSamplingKDE(X, permuted=True, rng=r, **kw),
        "HBE": lambda r: HashingBasedKDE(X, variance_constant=HBE_VARIANCE_CONSTANT, rng=r, **kw),
        "HBE (default V)": lambda r: HashingBasedKDE(X, rng=r, **kw),
        "CKNS": lambda r: CKNSKDE(X, rng=r, **kw),
    }


def run_relative_error(size="quick", rng=0, backend="auto") -> ClaimResult:
    """Failures of ``|z - mu| <= eps mu`` over independent trials (fresh build, one random covered query each)."""
    check_size(size, "theorem_2_1_relative_error")
    n, builds, per = ERROR_SIZES[size]
    gen_inst, *gens = trial_generators(rng, 1 + builds)
    X, h, Y, _, mu = kde_instance(n, ERROR_TARGETS, per, gen_inst)
    covered = np.flatnonzero(mu >= MU_MIN)  # the guarantee covers only these queries
    need = trials_for_power(DELTA, VIOLATION, ALPHA)
    rows, verdicts = {}, {}
    for name, make in _error_estimators(X, h, backend).items():
        failures = pooled_failures = 0
        work, exact = [], []
        for g in gens:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a level too large for max_stored answers exactly: counted below
                est = make(g)
            res = est.query(Y[covered], rng=g)
            err = np.abs(np.asarray(res.estimate, dtype=float) - mu[covered]) / mu[covered]
            # Queries of one build share its tables, so only one of them, picked at random, is a trial.
            failures += int(err[g.integers(covered.size)] > EPS)
            pooled_failures += int(np.sum(err > EPS))
            work.append((res.kernel_evaluations + res.hash_evaluations) / n)
            # n kernel evaluations for one query means an exact level answered it (sampling never costs that here)
            exact.append(res.kernel_evaluations >= n)
        work, exact = np.concatenate(work), np.concatenate(exact)
        work_fraction = float(work.mean())
        v = binomial_verdict(failures, builds, DELTA, ALPHA, VIOLATION)
        verdicts[name] = exact_regime(1.0 if exact.all() else work_fraction, v)
        rows[name] = {"failures": failures, "trials": builds, "verdict": verdicts[name],
                      "pooled_failure_rate": pooled_failures / (builds * covered.size),
                      "work_fraction": work_fraction, "exact_fraction": float(exact.mean())}
    words = {k: verdict_word(v) for k, v in verdicts.items()}
    if "fails" in words.values():
        verdict = "fails"
    elif all(words[k] == "holds" for k in ("RS", "RSP", "HBE")):
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return ClaimResult(
        name="theorem_2_1_relative_error", source="Theorem 2.1 (docs/math.md §2.1)",
        claim="For mu(q) >= mu_min, QUERYKDE returns z with (1 - eps) mu(q) <= z <= (1 + eps) mu(q) with "
              "probability >= 1 - delta, for each estimator",
        data=f"clustered d = {DIM}, n = {n}, bandwidth {h:.3g}; {per} queries at each density in {ERROR_TARGETS} "
             f"(exact mu recomputed; {covered.size} with mu >= mu_min); {builds} independent builds per estimator, "
             f"one random covered query each; eps = {EPS}, delta = {DELTA}, mu_min = {MU_MIN}",
        measured=rows,
        expected=f"failure rate <= delta = {DELTA}: exact one-sided binomial test, false-fail rate {ALPHA:g}, power "
                 f"0.99 against a failure rate of {VIOLATION} with {need} trials (fewer: inconclusive); work fraction "
                 "< 1 (an estimator that answered exactly is inconclusive, exact regime)",
        verdict=verdict, seeds=[rng],
        details="; ".join(
            [f"{k}: {v}" for k, v in verdicts.items()]
            + ["one trial per build: queries of a build share its tables and are not independent; the pooled "
               "failure rate over all covered queries is reported, not tested",
               f"HBE uses variance_constant = {HBE_VARIANCE_CONSTANT} (measured variance is below this model); "
               "'HBE (default V)' is the rehashing constant",
               "holds needs RS, RSP and HBE to hold (sampled, enough trials, not significant); fails if any "
               "estimator's failure rate is significantly above delta"]),
    )


# ------------------------------------------------------------------------------------------------------------------
# Claim 2: the exponent tau of the work at fixed accuracy

GOAL = 0.1  # mean relative error at which work is compared (benchmarks/kde.py)
MIN_POINTS = 4  # a 3-point fit has 1 degree of freedom: its 95% CI is +-12.7 standard errors and separates nothing
COST_SIZES = {
    "quick": dict(n=20_000, targets=(1e-1, 5e-2, 2e-2, 1e-2, 5e-3, 2e-3, 1e-3), per=20,
                  grids={"RS": [2**k for k in range(3, 15)], "RSP": [2**k for k in range(3, 15)],
                         "HBE": [0.003, 0.01, 0.03], "CKNS": [2, 8]}),
    "full": dict(n=100_000, targets=(1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4), per=20,
                 grids={"RS": [2**k for k in range(3, 17)], "RSP": [2**k for k in range(3, 17)],
                        "HBE": [0.001, 0.003, 0.01, 0.03, 0.1], "CKNS": [2, 8, 32]}),
}
HASHING = ("HBE", "CKNS")


def _cheapest(X, h, Y, target, mu, targets, knobs, make, gen):
    """Per target density: (work, knob, error) of the cheapest knob with mean error <= GOAL that never went exact."""
    n = X.shape[0]
    best = {}
    for v in knobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = make(X, h, min(targets) / 2, v, gen)
        res = est.query(Y, rng=gen)
        err = np.abs(np.asarray(res.estimate, dtype=float) - mu) / mu
        work = res.kernel_evaluations + res.hash_evaluations
        for t in targets:
            sel = target == t
            w, e = float(work[sel].mean()), float(err[sel].mean())
            # an exact level (n kernel evaluations) or a budget of n or more is not the estimator's own scaling
            if e <= GOAL and w < n and not np.any(res.kernel_evaluations[sel] >= n):
                if t not in best or w < best[t][0]:
                    best[t] = (w, v, e)
    return best


def run_cost_exponent(size="quick", rng=0, backend="auto") -> ClaimResult:
    """tau = slope of log(work) on log(1/mu) at mean relative error <= 0.1, per estimator."""
    check_size(size, "theorem_2_1_cost_exponent")
    cfg = COST_SIZES[size]
    n, targets = cfg["n"], cfg["targets"]
    gen_inst, *gens = trial_generators(rng, 1 + len(cfg["grids"]))
    X, h, Y, target, mu = kde_instance(n, targets, cfg["per"], gen_inst)
    mu_t = np.array([mu[target == t].mean() for t in targets])
    factories = {name: make for name, _, make in estimator_factories(False)}
    measured, fig = {}, {"n": n, "targets": np.array(targets), "mu": mu_t, "estimators": list(cfg["grids"])}
    for (name, knobs), g in zip(cfg["grids"].items(), gens):
        best = _cheapest(X, h, Y, target, mu, targets, knobs, factories[name], g)
        work = np.array([best[t][0] if t in best else np.nan for t in targets])
        ok = np.isfinite(work)
        row = {"work": {f"{t:g}": (best[t][0] if t in best else None) for t in targets},
               "knob": {f"{t:g}": (best[t][1] if t in best else None) for t in targets}, "points": int(ok.sum())}
        if ok.sum() >= MIN_POINTS:
            fit = slope_fit(1.0 / mu_t[ok], work[ok])
            row.update(tau=fit.slope, tau_ci=[fit.ci_low, fit.ci_high])
            fig[f"{name}_fit"] = np.array([fit.slope, fit.intercept])
        measured[name] = row
        fig[f"{name}_work"] = work
    cheapest = {}
    for i, t in enumerate(targets):
        options = {k: fig[f"{k}_work"][i] for k in cfg["grids"] if np.isfinite(fig[f"{k}_work"][i])}
        cheapest[f"{t:g}"] = min(options, key=options.get) if options else "exact (none reached the goal below n)"
    measured["cheapest_per_density"] = cheapest
    fitted = [k for k in HASHING if "tau" in measured[k]]
    # every fitted point stayed below n work without an exact level (see _cheapest): the randomized path ran
    work_fraction = float(np.nanmax([fig[f"{k}_work"] for k in cfg["grids"]]) / n)
    measured["work_fraction_max"] = work_fraction
    if "tau" not in measured["RS"] or not fitted:
        verdict = "inconclusive"
        why = (f"fewer than {MIN_POINTS} densities where RS and at least one hashing estimator reached mean error "
               f"<= {GOAL} below the exact cost")
    else:
        rs_ci = tuple(measured["RS"]["tau_ci"])
        # claim: tau(hashing) < tau(RS); each comparison holds or fails only when the 95% CIs are separated
        comparisons = {k: comparison_verdict(tuple(measured[k]["tau_ci"]), rs_ci, "a < b") for k in fitted}
        words = {k: verdict_word(v) for k, v in comparisons.items()}
        if "holds" in words.values():
            verdict = "holds"
        elif all(w == "fails" for w in words.values()):
            verdict = "fails"
        else:
            verdict = "inconclusive"
        verdict = verdict_word(exact_regime(work_fraction, verdict))
        why = "; ".join(f"{k} vs RS: {v}" for k, v in comparisons.items())
    taus = ", ".join(f"{k} {measured[k]['tau']:.2f} [{measured[k]['tau_ci'][0]:.2f}, {measured[k]['tau_ci'][1]:.2f}]"
                     if "tau" in measured[k] else f"{k} n/a ({measured[k]['points']} points)" for k in cfg["grids"])
    return ClaimResult(
        name="theorem_2_1_cost_exponent", source="Theorem 2.1 (docs/math.md §2.1 trade-off table, §2.3)",
        claim="Per-query work of a (1 +- eps) KDE grows like mu^-tau, with tau smaller for hashing estimators "
              "(0.173 CKNS data-dependent, 1/4 data-independent, 1/2 HBE) than for random sampling (1)",
        data=f"clustered d = {DIM}, n = {n}, bandwidth {h:.3g}; {cfg['per']} queries per density in {targets}; "
             f"knob grids {cfg['grids']}; mu_min = {min(targets) / 2:g}",
        measured=measured,
        expected="holds: some hashing estimator's tau CI lies below random sampling's; fails: every fitted hashing "
                 "tau CI lies above it; otherwise (overlap) inconclusive. benchmarks/kde.py found hashing cheaper "
                 "only at small mu on clustered data at n = 1e5 (and never on GloVe), so at small n sampling may win",
        verdict=verdict, seeds=[rng],
        details=f"{why}. tau (95% CI): {taus}. Cheapest per density: {cheapest}. Work = kernel + hash "
                f"evaluations per query of the cheapest knob with mean relative error <= {GOAL}, over densities "
                "where it stayed below n without exact fallback; the HBE and CKNS factories are those of "
                "benchmarks/kde.py (their own eps/delta; the backend argument is not used by them)",
        figure_data=fig,
    )


# ------------------------------------------------------------------------------------------------------------------
# Claim 6 (docs/math.md §8.19): KDE-stage work versus the diameter

STAGES = ("row_sums_kde", "column_norm_kde")
#: worst-case sizing (the estimators by name): their budgets e^{tau gamma^2/2} eps^-2 log(n/delta) exceed n here, so
#: every stage saturates at exact; kept to show it (their rows carry no slope)
RUNTIME_KDES = ("sampling", "hbe")
#: size -> (n, diameter constants c with gamma^2 = c ln n) of the worst-case runs
RUNTIME_SIZES = {"quick": (512, (0.25, 0.5, 1.0, 2.0, 4.0)), "full": (4096, (0.125, 0.25, 0.5, 1.0, 2.0, 4.0))}
#: the data-adaptive random-sampling KDE (empirical-Bernstein stopping, same (1 +- eps, delta) guarantee), and its
#: grid: small c, where the queries' true densities keep the stopped sample counts below n (measured on the 2-core
#: CPU, 2026-12-01: at n = 2048 the column stage reaches exact at c = 1/2, the row stage at c = 1)
ADAPTIVE_KDE = "sampling_adaptive"
ADAPTIVE_RUNTIME_SIZES = {"quick": (2048, (0.03125, 0.0625, 0.125, 0.25, 0.5)),
                          "full": (4096, (0.03125, 0.0625, 0.125, 0.25, 0.5))}
RUNTIME_EPS, RUNTIME_M = 0.9, 64
SATURATED = 0.9  # work >= 0.9 n^2 in a stage: the KDE answered (almost) exactly
SLOPE_TOL = 0.25  # the o(1) terms and the log(n/delta) factor bend the line at small gamma


def _tau_slope(kde, stage):
    """Predicted slope of log(work) on gamma^2: tau/2 for the row sums, tau for the column norms (docs/math.md
    §8.19)."""
    tau = {"sampling": 1.0, "hbe": 0.5, ADAPTIVE_KDE: 1.0}[kde]
    return tau / 2 if stage == "row_sums_kde" else tau


def _stage_work(cost, stage):
    """Kernel plus hash evaluations of one stage of Algorithm 1's cost record (an AttentionCost or a dict)."""
    if isinstance(cost, dict):
        return cost[stage]["kernel_evaluations"] + cost[stage]["hash_evaluations"]
    (found,) = [st for st in cost.stages if st.name == stage]
    return found.kernel_evaluations + found.hash_evaluations


def _diameter_work(kdes, n, cs, gens, backend):
    """Per (kde, stage): KDE-stage work at each c, one fresh instance per c and one fresh seed per run."""
    work = {(k, s): np.zeros(len(cs)) for k in kdes for s in STAGES}
    for i, c in enumerate(cs):
        Q, K, V = bounded_diameter_instance(n, DIM, c=c, rng=gens[i])
        for j, kde in enumerate(kdes):
            estimator = functools.partial(RandomSamplingKDE, sizing="adaptive") if kde == ADAPTIVE_KDE else kde
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = kdeformer(Q, K, V, eps=RUNTIME_EPS, n_samples=RUNTIME_M, kde=estimator,
                                rng=gens[len(cs) * (1 + j) + i], backend=backend)
            for s in STAGES:
                work[kde, s][i] = _stage_work(res.cost, s)
    return work


def _diameter_slope(kde, stage, gamma2, w, n):
    """Slope of log(work) on gamma^2 over the unsaturated points, and its verdict.

    Worst-case sizing: the budget is e^{tau gamma^2/2} times factors free of gamma, so the slope must match
    (interval inside the predicted slope +- SLOPE_TOL). Adaptive sizing stops on the query's own variance, which
    is at most the worst case's (relative variance <= 1/mu <= e^{tau gamma^2/2} for the row sums, e^{tau gamma^2}
    for the column norms at diameter sqrt(2) gamma, up to constants) and may grow
    slower: the slope is bounded, so the rule is an upper bound (interval below predicted + SLOPE_TOL holds, above
    it fails); whether it also matches the predicted slope is reported beside.
    """
    live = w < SATURATED * n**2
    row = {"work_fraction": (w / n**2).tolist(), "unsaturated_points": int(live.sum())}
    if live.sum() < 3:
        return row, None
    # log(work) = a + slope * gamma^2 is a log-log fit of work against e^(gamma^2)
    fit = slope_fit(np.exp(gamma2[live]), w[live])
    expected = _tau_slope(kde, stage)
    match = interval_verdict(fit.ci_low, fit.ci_high, expected, SLOPE_TOL)
    v = upper_bound_verdict(fit.ci_low, fit.ci_high, expected + SLOPE_TOL) if kde == ADAPTIVE_KDE else match
    row.update(slope=fit.slope, slope_ci=[fit.ci_low, fit.ci_high], expected_slope=expected, verdict=v,
               matches_expected_slope=match)
    return row, v


def run_runtime_diameter(size="quick", rng=0, backend="auto") -> ClaimResult:
    """KDE-stage work of kdeformer against gamma^2, slope of log(work) per estimator and stage."""
    check_size(size, "kde_runtime_vs_diameter")
    grids = {"worst_case": (RUNTIME_KDES, *RUNTIME_SIZES[size]), "adaptive": ((ADAPTIVE_KDE,),
                                                                          *ADAPTIVE_RUNTIME_SIZES[size])}
    streams = iter(trial_generators(rng, sum(len(cs) * (1 + len(k)) for k, _, cs in grids.values())))
    measured, fig, verdicts = {}, {}, []
    for sizing, (kdes, n, cs) in grids.items():
        gamma2 = np.array([c * math.log(n) for c in cs])  # bounded_diameter_instance: max ||q - k||^2 = c ln n
        work = _diameter_work(kdes, n, cs, [next(streams) for _ in range(len(cs) * (1 + len(kdes)))], backend)
        fig.update({f"gamma2_{sizing}": gamma2, f"n_{sizing}": n})
        for (kde, s), w in work.items():
            measured[f"{kde}/{s}"], v = _diameter_slope(kde, s, gamma2, w, n)
            fig[f"{kde}_{s}"] = w
            if v is not None:
                verdicts.append(verdict_word(v))
    if not verdicts:
        verdict = "inconclusive"  # exact regime: every stage answered (almost) exactly, nothing random ran
    else:
        verdict = "fails" if "fails" in verdicts else ("holds" if set(verdicts) == {"holds"} else "inconclusive")
    (n_w, cs_w), (n_a, cs_a) = RUNTIME_SIZES[size], ADAPTIVE_RUNTIME_SIZES[size]
    slopes = "; ".join(
        f"{k}: slope {r['slope']:.3f} (95% CI {r['slope_ci'][0]:.3f}, {r['slope_ci'][1]:.3f}) "
        + (f"at most {r['expected_slope']} + {SLOPE_TOL} -> {r['verdict']} (equal to {r['expected_slope']} +- "
           f"{SLOPE_TOL}: {r['matches_expected_slope']})" if k.startswith(ADAPTIVE_KDE) else
           f"against {r['expected_slope']} +- {SLOPE_TOL} -> {r['verdict']}")
        for k, r in measured.items() if "slope" in r)
    return ClaimResult(
        name="kde_runtime_vs_diameter", source="Theorem 3.4, Corollary 3.4 (docs/math.md §8.19)",
        claim="KDEformer's KDE work grows at most like exp(tau gamma^2 / 2) for the row sums and exp(tau gamma^2) "
              "for the column norms (tau = 1/2 HBE, 1 random sampling), gamma = max ||q_i - k_j||; with worst-case "
              "sizing exactly like it",
        data=f"bounded_diameter_instance d = {DIM}, eps = {RUNTIME_EPS}, m = {RUNTIME_M}; worst-case sizing "
             f"({', '.join(RUNTIME_KDES)}) at n = {n_w}, c in {cs_w}; adaptive random sampling at n = {n_a}, c in "
             f"{cs_a} (gamma^2 = c ln n)",
        measured=measured,
        expected=f"slope CI of log(work) on gamma^2, over the unsaturated points (work fraction < {SATURATED}), "
                 f"inside tau/2 (rows) and tau (columns) +- {SLOPE_TOL} for worst-case sizing (interval rule), and "
                 f"below tau/2 + {SLOPE_TOL} (rows), tau + {SLOPE_TOL} (columns) for adaptive sizing (upper-bound "
                 "rule: the stopped count follows the instance's variance, bounded by the worst case's)",
        verdict=verdict, seeds=[rng],
        details=("every stage saturated at the exact cost n^2 over this range: the exponential law is not observable "
                 "at this n, so the verdict is inconclusive" if not verdicts else
                 f"slopes fitted over the unsaturated points only: {slopes}. Stages without a slope saturated "
                 "(worst-case budgets exceed n)"),
        figure_data=fig,
    )


RELATIVE_ERROR = ClaimSpec("theorem_2_1_relative_error", "Theorem 2.1", "KDE (1 +- eps) with prob. >= 1 - delta",
                           run_relative_error)
COST_EXPONENT = ClaimSpec("theorem_2_1_cost_exponent", "Theorem 2.1", "KDE work ~ mu^-tau, tau below sampling's",
                          run_cost_exponent)
RUNTIME_DIAMETER = ClaimSpec("kde_runtime_vs_diameter", "docs/math.md §8.19", "KDE-stage work ~ exp(tau gamma^2 / 2)",
                             run_runtime_diameter)
