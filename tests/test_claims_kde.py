"""The KDE claim checks (Theorem 2.1; docs/math.md §8.7–§8.9, §8.19) run through their own code at reduced sizes.

What must hold when the implementation is right is asserted: the E2LSH collision tests are not significant (and the
wrong rehashing formula is), HBE samples show no significant bias, the estimators' (1 +- eps) failures are not
significant, uniform sampling's relative variance is at most 1/mu. Verdicts that the data may legitimately
contradict (the exponent tau, the growth with the diameter) are not asserted, only the records' shape. Sizes are
reduced by patching each module's size table, so the code under test is the code of ``python -m proofs_checks``.
"""
import dataclasses
import json

import numpy as np
import pytest

from figures import fig_kde_cost
from kdetheory.kde import RandomSamplingKDE
from proofs_checks import hbe_claims, theorem_2_1_kde
from proofs_checks._harness import VERDICTS, ClaimResult, save_claim_data


def _well_formed(result, name):
    assert isinstance(result, ClaimResult)
    assert result.name == name and result.verdict in VERDICTS and result.verdict != "error"
    assert result.claim and result.source and result.data and result.expected and result.seeds == [0]
    json.dumps(result.to_dict())  # the record must be JSON-serialisable for the report


def test_e2lsh_collision_matches_formula_and_rejects_rehashing(monkeypatch):
    monkeypatch.setitem(hbe_claims.COLLISION_TRIALS, "quick", 50_000)
    res = hbe_claims.run_collision()
    _well_formed(res, "e2lsh_collision_probability")
    assert res.measured["min_p_value"] >= hbe_claims.ALPHA  # the correct formula is never rejected
    for cell in res.measured["cells"]:
        assert cell["measured"] == pytest.approx(cell["expected"], abs=0.01)
        if cell["k"] == 1 and cell["c"] >= 0.5:
            # erf(1/c) is off by >= 0.04 there: 50,000 trials reject it
            assert cell["rehashing_p_value"] < hbe_claims.ALPHA
    assert res.verdict in ("holds", "inconclusive")


def test_rehashing_formula_value_from_spec():
    # docs/math.md §2.2: at c = 1 the rehashing formula gives 0.529 against the true 0.369
    assert float(hbe_claims.rehashing_p1(1.0)) == pytest.approx(0.529, abs=5e-4)


def test_table_z_detects_bias_and_accepts_unbiased_samples():
    gen = np.random.default_rng(7)
    mu = np.array([0.5, 2.0, 1.0])
    Z = mu[:, None] * gen.exponential(1.0, (3, 4000))  # mean mu, heavy-ish tail
    assert abs(hbe_claims.table_z(Z, mu)[2]) < 5
    bias, se, z = hbe_claims.table_z(1.1 * Z, mu)
    assert bias == pytest.approx(0.1, abs=5 * se) and z > 5


def test_hbe_unbiased_not_rejected(monkeypatch):
    monkeypatch.setitem(hbe_claims.UNBIASED_SIZES, "quick", (2000, 8, 1500))
    res = hbe_claims.run_unbiased()
    _well_formed(res, "hbe_unbiased")
    z_crit = res.measured["z_critical"]
    for form in ("sample", "bucket"):
        row = res.measured[form]
        assert abs(row["z"]) <= z_crit and row["max_abs_query_z"] <= z_crit
        assert row["tables"] >= 1000 and row["relative_variance"] > 0


def test_relative_error_failures_not_significant_and_work_reported(monkeypatch):
    monkeypatch.setitem(theorem_2_1_kde.ERROR_SIZES, "quick", (8000, 3, 8))
    res = theorem_2_1_kde.run_relative_error()
    _well_formed(res, "theorem_2_1_relative_error")
    assert set(res.measured) == {"RS", "RSP", "HBE", "HBE (default V)", "CKNS"}
    for name, row in res.measured.items():
        assert row["verdict"] != "fails", name  # (1 +- eps) failures are not significantly above delta
        assert row["trials"] == 3  # one trial per independent build
        assert 0 <= row["exact_fraction"] <= 1 and row["work_fraction"] > 0
        if row["exact_fraction"] == 1:
            assert row["verdict"].startswith("inconclusive (exact regime"), name
    # uniform sampling at eps = 0.5, mu_min = 0.005 needs 4000 samples < n: the randomized path runs
    assert res.measured["RS"]["exact_fraction"] == 0 and res.measured["RS"]["work_fraction"] < 1
    # 3 trials cannot have power 0.99 against a failure rate of 0.5: never "holds"
    assert res.measured["RS"]["verdict"].startswith("inconclusive (too few trials")
    assert res.verdict == "inconclusive"


class _Scaled:
    """A random-sampling KDE whose estimates are multiplied by ``factor`` (a broken estimator)."""

    def __init__(self, factor, *args, **kwargs):
        self.factor, self.inner = factor, RandomSamplingKDE(*args, **kwargs)

    def query(self, Y, rng=None):
        res = self.inner.query(Y, rng=rng)
        return dataclasses.replace(res, estimate=self.factor * np.asarray(res.estimate))


@pytest.mark.parametrize("factor,verdict", [(1.0, "holds"), (1.6, "fails")])
def test_relative_error_verdict_can_hold_and_fail(monkeypatch, factor, verdict):
    """With enough independent builds the claim says "holds" for sampling estimators and "fails" for one whose
    answers are 60 % too large (outside 1 +- eps for every query)."""
    builds = theorem_2_1_kde.trials_for_power(theorem_2_1_kde.DELTA, theorem_2_1_kde.VIOLATION,
                                              theorem_2_1_kde.ALPHA)
    monkeypatch.setitem(theorem_2_1_kde.ERROR_SIZES, "quick", (8000, builds, 2))

    def estimators(X, h, backend):
        kw = dict(eps=theorem_2_1_kde.EPS, delta=theorem_2_1_kde.DELTA, mu_min=theorem_2_1_kde.MU_MIN, bandwidth=h)
        return {name: (lambda r, p=permuted: _Scaled(factor, X, rng=r, permuted=p, **kw))
                for name, permuted in (("RS", False), ("RSP", True), ("HBE", False))}

    monkeypatch.setattr(theorem_2_1_kde, "_error_estimators", estimators)
    res = theorem_2_1_kde.run_relative_error()
    assert res.verdict == verdict, res.details
    assert all(row["work_fraction"] < 1 for row in res.measured.values())


def test_cost_exponent_record_and_figure(monkeypatch, tmp_path):
    small = dict(n=4000, targets=(1e-1, 3e-2, 1e-2, 3e-3), per=6,
                 grids={"RS": [64, 256, 1024], "RSP": [256], "HBE": [0.01], "CKNS": [2]})
    monkeypatch.setitem(theorem_2_1_kde.COST_SIZES, "quick", small)
    res = theorem_2_1_kde.run_cost_exponent()
    _well_formed(res, "theorem_2_1_cost_exponent")
    for name in small["grids"]:
        row = res.measured[name]
        assert row["points"] == sum(w is not None for w in row["work"].values())
        assert all(w is None or w < small["n"] for w in row["work"].values())  # exact fallbacks are excluded
        assert ("tau" in row) == (row["points"] >= theorem_2_1_kde.MIN_POINTS)
    save_claim_data(res.name, res.figure_data, tmp_path)
    paths = fig_kde_cost.make(tmp_path, tmp_path / "fig")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_variance_vs_density_sampling_bound(monkeypatch):
    monkeypatch.setitem(hbe_claims.VARIANCE_SIZES, "quick", (4000, (1e-1, 3e-2, 1e-2), 4, 100))
    res = hbe_claims.run_variance()
    _well_formed(res, "hbe_variance_vs_density")
    assert res.measured["rs_below_1_over_mu_everywhere"]  # E[k^2] <= E[k] = mu because k <= 1
    assert len(res.measured["hbe_relative_variance"]) == 3
    assert all(v > 0 for v in res.measured["hbe_relative_variance"])


def test_runtime_vs_diameter_saturated_is_not_holds(monkeypatch):
    monkeypatch.setitem(theorem_2_1_kde.RUNTIME_SIZES, "quick", (128, (0.5, 1.0, 2.0)))
    # adaptive sizing at n = 128 and large c saturates too (the stopped counts reach the cap of 1.5 n)
    monkeypatch.setitem(theorem_2_1_kde.ADAPTIVE_RUNTIME_SIZES, "quick", (128, (2.0, 4.0, 8.0)))
    res = theorem_2_1_kde.run_runtime_diameter()
    _well_formed(res, "kde_runtime_vs_diameter")
    kdes = theorem_2_1_kde.RUNTIME_KDES + (theorem_2_1_kde.ADAPTIVE_KDE,)
    rows = [res.measured[f"{k}/{s}"] for k in kdes for s in theorem_2_1_kde.STAGES]
    assert all(len(r["work_fraction"]) == 3 for r in rows)
    if all(r["unsaturated_points"] < 3 for r in rows):  # nothing to fit: the exponential law is not observable
        assert res.verdict == "inconclusive"
