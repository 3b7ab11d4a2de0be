"""Tests of the theory claims' own machinery (Theorems 3.2-3.4, Lemma 3.1, Corollary 3.4, Figure 4 fair).

The references of the claims (dense softmax, weighted column norms, exponential KDE) are compared with the
library; the verdict rules are driven to holds, fails and inconclusive; and each randomized part is shown to fail
when the quantity it measures is biased by 5 % (a mutant applied by monkeypatching, so the check has teeth).

False-fail rate: the only randomized assertions are the "clean estimator is not called biased" checks, each a
two-sided z-test at alpha = 1e-5 (the claims' ALPHA); this file's family is <= 3e-5 per run. The full claims run
at their quick size behind ``-m slow``.
"""
from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pytest

from kdetheory.amm import sampling_probabilities
from kdetheory.attention import row_sums, softmax_attention
from kdetheory.kde import exp_kde
from kdetheory.linalg import stable_rank
from proofs_checks import corollary_3_4_runtime as cor
from proofs_checks import figure_4_budget as fig4
from proofs_checks import lemma_3_1_amm as lem
from proofs_checks import theorem_3_3_wexpkde as t33
from proofs_checks import theorem_3_4_attention as t34
from proofs_checks._verdicts import mean_bias_verdict

kdeformer_module = importlib.import_module("kdetheory.attention.kdeformer")


def small_instance(seed=0, n_q=24, n_k=300, d=4, radius=1.0):
    return t34.ball_instance(n_q, n_k, d, radius, np.random.default_rng(seed))


# ------------------------------------------------------------------------------------------------------------
# Independent references agree with the library


def test_ball_instance_diameter_bounded():
    Q, K, V = small_instance(radius=0.7)
    dist = np.sqrt(((Q[:, None, :] - K[None, :, :]) ** 2).sum(-1))
    assert dist.max() <= 1.4 + 1e-12
    assert np.all(V.mean(axis=0) > 0)  # the common mean direction the bias statistic needs


def test_dense_reference_matches_library():
    Q, K, V = small_instance()
    log_d, out, p_norm = t34.dense_reference(Q, K, V, chunk=64)  # several chunks
    np.testing.assert_allclose(log_d, row_sums(Q, K, log=True), rtol=1e-12)
    np.testing.assert_allclose(out, softmax_attention(Q, K, V), rtol=1e-10, atol=1e-12)
    P = np.exp(Q @ K.T - log_d[:, None])
    assert math.isclose(p_norm, np.linalg.norm(P, 2), rel_tol=1e-10)


def test_weighted_column_norms_match_definition():
    Q, K, _ = small_instance()
    log_d = row_sums(Q, K, log=True)
    c = t34.weighted_column_norms(Q, K, log_d, chunk=50)
    direct = (np.exp(2 * Q @ K.T) * np.exp(-2 * log_d)[:, None]).sum(axis=0)
    np.testing.assert_allclose(c, direct / direct.max(), rtol=1e-10)


def test_exp_kde_reference_matches_library():
    rng = np.random.default_rng(3)
    X, Y, log_v = rng.normal(size=(200, 5)) * 0.5, rng.normal(size=(7, 5)) * 0.5, rng.uniform(-3, 0, 200)
    np.testing.assert_allclose(t33.exp_kde_reference(X, Y, log_v), exp_kde(X, Y, weights=np.exp(log_v), log=True),
                               rtol=1e-12)


def test_amm_setup_norms_and_stable_ranks():
    Q, K, V = small_instance()
    P = lem.softmax_rows(Q, K)
    setup = lem.amm_setup(P, V)
    assert math.isclose(setup["scale"], np.linalg.norm(P, 2) * np.linalg.norm(V, 2), rel_tol=1e-10)
    assert math.isclose(setup["srank_x"], stable_rank(P), rel_tol=1e-10)
    assert math.isclose(setup["srank_y"], stable_rank(V), rel_tol=1e-10)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)


def test_trivial_outputs():
    Q, K, V = small_instance()
    exact = softmax_attention(Q, K, V)
    t = fig4.trivial_outputs(Q, K, V, exact)
    assert t["zeros"]["paper_error"] == 1.0
    mean_v = np.tile(V.mean(axis=0), (Q.shape[0], 1))
    assert math.isclose(t["mean_of_v"]["paper_error"],
                        np.linalg.norm(mean_v - exact, 2) / np.linalg.norm(exact, 2), rel_tol=1e-10)


# ------------------------------------------------------------------------------------------------------------
# Verdict plumbing


def test_gate_keeps_failures_and_withholds_exact_holds():
    assert t34.gate(0.5, "holds") == "holds"
    assert t34.gate(1.0, "holds").startswith("inconclusive (exact regime")
    assert t34.gate(2.0, "fails") == "fails"


def test_combine():
    assert t34.combine({"a": "holds", "b": "holds"}) == "holds"
    assert t34.combine({"a": "holds", "b": "inconclusive (x)"}) == "inconclusive"
    assert t34.combine({"a": "inconclusive (x)", "b": "fails"}) == "fails"


def _rows(kde_errors, other_errors, costs=(10, 20, 40, 80)):
    rows = []
    for seed, (ek, eo) in enumerate(zip(kde_errors, other_errors)):
        for x, a, b in zip(costs, ek, eo):
            rows.append({"method": "kdeformer", "seed": seed, "flops": x, "paper_error": a})
            rows.append({"method": "performer", "seed": seed, "flops": 2 * x, "paper_error": b})
    return rows


def test_axis_comparison_holds_fails_inconclusive():
    low, high = [[0.1, 0.08, 0.06, 0.05]] * 2, [[0.5, 0.45, 0.4, 0.35]] * 2
    assert fig4.axis_verdict(fig4.axis_comparison(_rows(low, high), "flops", "performer", [0, 1])) == "holds"
    assert fig4.axis_verdict(fig4.axis_comparison(_rows(high, low), "flops", "performer", [0, 1])) == "fails"
    mixed = fig4.axis_comparison(_rows([[0.1] * 4, [0.6] * 4], [[0.3] * 4, [0.3] * 4]), "flops", "performer", [0, 1])
    assert fig4.axis_verdict(mixed).startswith("inconclusive")
    # the comparison happens at equal cost: performer's curve is shifted to twice the cost
    assert all(20 * (1 - 1e-9) <= c[0] <= 80 * (1 + 1e-9) for c in mixed)


def test_axis_comparison_without_common_range():
    rows = _rows([[0.1] * 4] * 2, [[0.2] * 4] * 2, costs=(1, 2, 3, 4))
    for r in rows:
        if r["method"] == "performer":
            r["flops"] *= 100
    assert fig4.axis_verdict(fig4.axis_comparison(rows, "flops", "performer", [0, 1])).startswith("inconclusive")


def test_figure_4_docstring_no_longer_claims_neutral_axis():
    assert "can only favour" not in fig4.__doc__


# ------------------------------------------------------------------------------------------------------------
# Corollary 3.4: the sizing rule behind "the n at which the measurement would decide"


def test_stage_budgets_grow_slower_than_n():
    small, large = cor.stage_budgets(1 << 12), cor.stage_budgets(1 << 24)
    assert all(b > 0 for b in small + large)
    assert sum(large) / (1 << 24) < sum(small) / (1 << 12)


def test_sampling_threshold_is_where_budgets_fall_below_n():
    n = cor.sampling_threshold(1.0)
    assert n is not None and sum(cor.stage_budgets(n)) + cor.M < n
    assert sum(cor.stage_budgets(n // 2)) + cor.M >= n // 2
    assert cor.sampling_threshold(0.5) >= n


# ------------------------------------------------------------------------------------------------------------
# Teeth: a 5 % bias makes the unbiasedness parts fail


def _biased_kdeformer(monkeypatch, field, factor=1.05):
    """Algorithm 1 with its sampled product (``field="output"``) or its D~ (``"row_sums"``) biased by 5 %."""
    real = kdeformer_module.kdeformer

    def biased(*args, **kwargs):
        res = real(*args, **kwargs)
        if field == "output":
            return dataclasses.replace(res, output=res.output * factor)
        return dataclasses.replace(res, log_row_sums=res.log_row_sums + math.log(factor), output=res.output / factor)

    monkeypatch.setattr(t34, "kdeformer", biased)


def _bias_verdicts(runs=12):
    Q, K, V = small_instance(n_q=16, n_k=400)
    ref = t34.dense_reference(Q, K, V)
    out = [t34.attention_run(Q, K, V, ref, g) for g in np.random.SeedSequence(11).spawn(runs)]
    rows = mean_bias_verdict([o["row_bias"] for o in out], t34.ALPHA, t34.BIAS, t34.RUN_SD_ROWS)
    output = mean_bias_verdict([o["output_bias"] for o in out], t34.ALPHA, t34.BIAS, t34.RUN_SD_OUTPUT)
    return rows, output


def test_attention_run_scores_clean_algorithm_as_unbiased():
    rows, output = _bias_verdicts()
    assert rows != "fails" and output != "fails"


@pytest.mark.parametrize("field", ["output", "row_sums"])
def test_attention_run_catches_five_percent_bias(monkeypatch, field):
    _biased_kdeformer(monkeypatch, field)
    rows, output = _bias_verdicts()
    assert output == "fails"  # a biased D~ biases the output by 1/1.05
    if field == "row_sums":
        assert rows == "fails"


def test_attention_run_catches_sampling_without_column_norms(monkeypatch):
    """Step 2's band: Lemma 3.1 shares built from the value norms alone leave it on the claim's instance shape."""
    real = kdeformer_module.kdeformer

    def without_column_norms(Q, K, V, **kwargs):
        res = real(Q, K, V, **kwargs)
        values_only = sampling_probabilities(np.ones(K.shape[0]), np.sum(V * V, axis=1))
        return dataclasses.replace(res, probabilities=values_only)

    Q, K, V = t34.ball_instance(32, 2000, 16, t34.SIZES["quick"][3], np.random.default_rng(2), t34.QUERY_CLUSTERS,
                                t34.SPREAD)
    ref = t34.dense_reference(Q, K, V)
    assert t34.attention_run(Q, K, V, ref, np.random.default_rng(0))["shares_ok"]
    monkeypatch.setattr(t34, "kdeformer", without_column_norms)
    assert not t34.attention_run(Q, K, V, ref, np.random.default_rng(0))["shares_ok"]


def test_wexpkde_build_catches_five_percent_bias(monkeypatch):
    X, Y, log_v = t33._instances("quick", np.random.default_rng(4))["spread weights"]
    X, Y = X[:4000], Y[:20]
    log_v = log_v[:4000]
    exact = t33.exp_kde_reference(X, Y, log_v)

    def biases():
        return [t33.wexpkde_build(X, Y, log_v, exact, "sampling", np.random.default_rng(g))[2]
                for g in np.random.SeedSequence(8).spawn(6)]

    assert mean_bias_verdict(biases(), t33.ALPHA, t33.BIAS) != "fails"

    class Biased(t33.WeightedExpKDE):
        def query(self, Y):
            res = super().query(Y)
            return dataclasses.replace(res, log_estimate=res.log_estimate + math.log(1.05))

    monkeypatch.setattr(t33, "WeightedExpKDE", Biased)
    assert mean_bias_verdict(biases(), t33.ALPHA, t33.BIAS) == "fails"


def test_amm_draw_catches_five_percent_bias(monkeypatch):
    Q, K, V = small_instance()
    P = lem.softmax_rows(Q, K)
    setup = lem.amm_setup(P, V)
    real = lem.amm

    def biased(*args, **kwargs):
        res = real(*args, **kwargs)
        return dataclasses.replace(res, product=res.product * 1.05)

    gens = np.random.SeedSequence(5).spawn(60)
    clean = [lem.amm_draw(P, V, setup, 150, np.random.default_rng(g))[1] for g in gens]
    monkeypatch.setattr(lem, "amm", biased)
    mutated = [lem.amm_draw(P, V, setup, 150, np.random.default_rng(g))[1] for g in gens]
    assert mean_bias_verdict(clean, lem.ALPHA, lem.BIAS) != "fails"
    assert mean_bias_verdict(mutated, lem.ALPHA, lem.BIAS) == "fails"


# ------------------------------------------------------------------------------------------------------------
# The claims themselves at their quick size (minutes: behind -m slow)


@pytest.mark.slow
@pytest.mark.parametrize("module, attribute", [
    ("proofs_checks.theorem_3_2_composition", "SPEC"),
    ("proofs_checks.theorem_3_3_wexpkde", "SPEC"),
    ("proofs_checks.theorem_3_4_attention", "SPEC"),
    ("proofs_checks.lemma_3_1_amm", "GUARANTEE"),
    ("proofs_checks.lemma_3_1_amm", "SCALING"),
    ("proofs_checks.corollary_3_4_runtime", "SPEC"),
    ("proofs_checks.figure_4_budget", "SPEC"),
])
def test_claim_quick_runs(module, attribute):
    result = getattr(importlib.import_module(module), attribute).run("quick", rng=0)
    assert result.verdict in ("holds", "fails", "inconclusive", "skipped")
    assert result.details
