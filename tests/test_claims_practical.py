"""The practical-KDEformer claim checks (docs/math.md §8.10–§8.16) run through their own code at reduced sizes.

Guarantees that hold whenever the implementation is right are asserted (Gray adjacency, Claim 1, residual
unbiasedness, sparse exactness, FLOP counts); for Figures 2 and 4, whose verdicts the data may legitimately
contradict, only the shape of the record is asserted. Sizes are reduced by patching each module's size table, so
the code under test is exactly the code of ``python -m proofs_checks``.
"""
import json

import numpy as np
import pytest

from kdetheory.datasets import missing_real_data, real_data_available
from proofs_checks import angular_lsh, figure_2_stable_rank, figure_4_budget, flop_ratios, practical_estimator
from proofs_checks._harness import VERDICTS, ClaimResult


def _well_formed(result, name):
    assert isinstance(result, ClaimResult)
    assert result.name == name and result.verdict in VERDICTS and result.verdict != "error"
    assert result.claim and result.source and result.data and result.expected
    json.dumps(result.to_dict())  # the record must be JSON-serialisable for the report


def test_gray_adjacency_exact_and_authors_order():
    res = angular_lsh.run_gray_adjacency()
    _well_formed(res, "gray_code_adjacency")
    assert all(v == 1.0 for v in res.measured["gray"].values())
    authors = res.measured["authors"]
    assert authors[7] == pytest.approx(96 / 127, abs=0)  # 96 of the 127 steps are single-bit flips
    assert authors[3] == pytest.approx(6 / 7, abs=0) and authors[1] == authors[2] == 1.0
    assert res.measured["authors_r7_max_hamming"] == 4
    assert all(res.measured["sorted_layout_matches_order"].values())
    assert res.verdict == "holds"
    fig = res.figure_data
    assert fig["fig5_points"].shape == (fig["fig5_bucket"].size, 2)
    assert set(np.unique(fig["fig5_block"])) == {0, 1, 2, 3}


def test_detectable_shift_matches_binomial_power():
    p0, trials = 0.3, 5000
    shift = angular_lsh.detectable_shift(trials, p0)
    assert 0 < shift < 0.1
    # A larger number of trials resolves a smaller shift.
    assert angular_lsh.detectable_shift(4 * trials, p0) < shift


def test_claim_1_collision_and_hamming_not_rejected():
    res = angular_lsh.run_claim_1()
    _well_formed(res, "claim_1_angular_lsh")
    assert res.measured["min_p_value"] >= angular_lsh.ALPHA  # no test significant for the correct hash
    assert res.verdict == "holds"  # and 20,000 trials have the power to resolve a 0.03 error
    for cell in res.measured["cells"]:
        assert cell["measured"] == pytest.approx(cell["expected"], abs=0.02)


def test_residual_estimator_unbiased_with_half_slope(monkeypatch):
    monkeypatch.setitem(practical_estimator.RESIDUAL_SIZES, "quick", (128, 8, 16, 16, 3, (4, 16, 64, 256)))
    res = practical_estimator.run_residual_unbiased()
    _well_formed(res, "practical_residual_unbiased")
    assert res.measured["max_abs_z"] < res.measured["z_critical"]
    assert abs(res.measured["slope"] - (-0.5)) <= 0.1
    assert np.all(np.diff(res.measured["median_relative_error"]) < 0)
    assert res.measured["work_fraction"] == (16 + 16) / 128 and res.verdict != "fails"


def test_residual_claim_fails_on_a_biased_residual(monkeypatch):
    """A residual 5 % too large: the z-test along the target rejects it (issue 10: the slope rule alone said holds)."""
    monkeypatch.setitem(practical_estimator.RESIDUAL_SIZES, "quick", (128, 8, 16, 16, 3, (4, 16, 64, 256)))
    draws = practical_estimator._draws
    monkeypatch.setattr(practical_estimator, "_draws", lambda *a, **k: 1.05 * draws(*a, **k))
    res = practical_estimator.run_residual_unbiased()
    assert res.verdict == "fails", res.details


def test_reference_block_mask_is_independent_of_the_library():
    """The claim's block mask is built from the definitions (no BlockPartition): on a hand-made case with
    hyperplanes e_1, e_2 the buckets, the Gray order and the blocks are known."""
    class Hyperplanes:  # duck-typed hash: only the directions are read
        directions = np.eye(2)
    # bucket ids (bit l = [x_l > 0]): (+,+) -> 3, (-,+) -> 2, (+,-) -> 1, (-,-) -> 0; Gray positions 2, 3, 1, 0
    K = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert [practical_estimator.bucket_position(k, Hyperplanes.directions) for k in K] == [2, 3, 1, 0]
    assert [practical_estimator.bucket_position(k, Hyperplanes.directions, "authors") for k in K] == [2, 3, 1, 0]
    mask = practical_estimator.block_mask(K, K, Hyperplanes(), 2)
    # sorted order: keys 3, 2 | 0, 1 -> blocks {3, 2} and {0, 1}
    expected = np.zeros((4, 4), dtype=bool)
    for block in ({2, 3}, {0, 1}):
        for i in block:
            expected[i, list(block)] = True
    assert np.array_equal(mask, expected)


def test_block_mask_matches_library_sparse_part():
    res = practical_estimator.run_sparse_exact()
    _well_formed(res, "practical_sparse_exact")
    assert res.measured["max_rel_error"] <= practical_estimator.SPARSE_RTOL
    assert {r["backend"] for r in res.measured["runs"]} == {"numpy", "numba"}
    assert res.verdict == "holds"


def test_flop_ratios_match_spec():
    res = flop_ratios.run()
    _well_formed(res, "flop_ratios")
    t2t, biggan = res.measured["settings"]["T2T-ViT layer 1"], res.measured["settings"]["BigGAN"]
    assert t2t["exact_mmac"] == pytest.approx(1258.815488)  # 3136^2 * (64 + 64) MACs
    assert biggan["exact_mmac"] == pytest.approx(1342.17728)  # 4096 * 1024 * (64 + 256)
    assert round(t2t["ratio_authors_accounting"], 1) == 18.3 and round(t2t["kdeformer_mmac_authors"], 1) == 68.7
    assert round(biggan["ratio_authors_accounting"], 2) == 4.15 and round(biggan["kdeformer_mmac_authors"]) == 324
    assert res.verdict == "holds"


def test_figure_2_record_well_formed(monkeypatch):
    monkeypatch.setitem(figure_2_stable_rank.SIZES, "quick", (48, 8, 128, 16))
    res = figure_2_stable_rank.run()
    _well_formed(res, "figure_2_stable_rank")
    fig = res.figure_data
    for kind in ("peaky", "flat"):
        s = res.measured["synthetic"][kind]
        assert s["srank"] >= 1 - 1e-9 and s["srank_res"] >= 1 - 1e-9
        assert fig[f"sv_{kind}"].shape == (128,) and fig[f"sv_res_{kind}"].shape == (128,)
    assert fig["fig3_P"].shape == fig["fig3_mask"].shape
    np.testing.assert_allclose(fig["fig3_P"].sum(axis=1), 1.0, rtol=1e-12)
    if real_data_available("minilm"):
        assert res.measured["heads"] == 72
        assert 0 <= res.measured["heads_reduced"] <= 72
        assert fig["real_ratio"].shape == (6, 12)
    else:
        assert res.verdict == "skipped" and res.details == f"skipped: {missing_real_data('minilm')}"


def test_figure_4_record_well_formed(monkeypatch):
    monkeypatch.setitem(figure_4_budget.SIZES, "quick", (256, (16, 32, 64), (0,)))
    res = figure_4_budget.run()
    _well_formed(res, "figure_4_budget")
    if not real_data_available("glove"):
        assert res.verdict == "skipped"
        return
    table = res.measured["median_paper_error"]
    for method in ("kdeformer", *figure_4_budget.COMPARATORS):
        errors = np.asarray(list(table[method].values()))
        assert errors.shape == (3,) and np.all(errors > 0)
    assert len(res.measured["mean_of_v_error"]) == len(res.figure_data["instances"])
    # one verdict per cost axis and comparator, each from the interval rule
    assert all(v.split(" ", 1)[0] in ("holds", "fails", "inconclusive") for v in res.measured["axes"].values())
