"""Tests of proofs_checks._harness (statistics, records, data files) and proofs_checks._runner."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from proofs_checks._harness import (
    ClaimResult,
    SlopeFit,
    binomial_failure_test,
    critical_failures,
    load_claim_data,
    save_claim_data,
    slope_fit,
    summarize,
    to_jsonable,
    trial_generators,
    trials_for_power,
    verdict_from_binomial,
    verdict_from_slope,
)
from proofs_checks._runner import grid, run_tasks

ALPHA = 1e-6


# ---------------------------------------------------------------------------------------------- binomial test


@pytest.mark.parametrize("delta", [0.05, 0.01])
def test_binomial_test_rejects_4delta_and_accepts_delta(delta):
    trials = trials_for_power(delta, ALPHA, factor=4, power=0.99)
    gen = np.random.default_rng(12345)
    # 20 simulated experiments each: a faulty (4 delta) implementation must be caught every time at this power
    # level (a miss has probability <= 0.01 each, so a seeded run that misses would point at a real defect), and
    # a correct one must never be flagged (false alarm probability <= 1e-6 each).
    faulty = [binomial_failure_test(int(f), trials, delta).significant for f in gen.binomial(trials, 4 * delta, 20)]
    correct = [binomial_failure_test(int(f), trials, delta).significant for f in gen.binomial(trials, delta, 20)]
    assert sum(faulty) >= 19
    assert not any(correct)


def test_trials_for_power_is_the_smallest_count():
    delta = 0.02
    n = trials_for_power(delta, ALPHA, factor=4, power=0.99)

    def power(trials):
        c = critical_failures(trials, delta, ALPHA)
        return stats.binom.sf(c - 1, trials, 4 * delta)

    assert power(n) >= 0.99
    assert all(power(m) < 0.99 for m in range(1, n))


@pytest.mark.parametrize("trials,delta", [(50, 0.05), (333, 0.01), (1000, 0.1), (7, 0.3)])
def test_critical_failures_matches_binomtest(trials, delta):
    c = critical_failures(trials, delta, ALPHA)
    if c <= trials:
        assert binomial_failure_test(c, trials, delta, ALPHA).significant
    assert not binomial_failure_test(c - 1, trials, delta, ALPHA).significant


def test_binomial_test_fields_and_bad_input():
    t = binomial_failure_test(3, 100, 0.01)
    assert t.p_value == pytest.approx(stats.binom.sf(2, 100, 0.01))
    assert t.rate == 0.03
    assert json.dumps(t.to_dict())
    with pytest.raises(ValueError, match="delta"):
        binomial_failure_test(1, 10, 1.5)
    with pytest.raises(ValueError, match="exceeds trials"):
        binomial_failure_test(11, 10, 0.1)
    with pytest.raises(TypeError, match="trials"):
        binomial_failure_test(1, 10.0, 0.1)
    with pytest.raises(ValueError, match="factor"):
        trials_for_power(0.3, factor=4)


def test_verdict_from_binomial():
    delta = 0.05
    enough = trials_for_power(delta)
    assert verdict_from_binomial(binomial_failure_test(int(delta * enough), enough, delta)) == "holds"
    assert verdict_from_binomial(binomial_failure_test(enough // 2, enough, delta)) == "fails"
    assert verdict_from_binomial(binomial_failure_test(0, 10, delta)) == "inconclusive"
    with pytest.raises(TypeError):
        verdict_from_binomial(0.5)


# ---------------------------------------------------------------------------------------------- slope fits


def test_slope_fit_recovers_known_slope():
    gen = np.random.default_rng(7)
    m = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=float)
    err = 0.9 * m**-0.5 * np.exp(0.03 * gen.standard_normal(m.size))
    fit = slope_fit(m, err)
    assert abs(fit.slope + 0.5) < 0.05
    assert fit.ci_low < -0.5 < fit.ci_high
    assert math.exp(fit.intercept) == pytest.approx(0.9, rel=0.2)
    assert verdict_from_slope(fit, -0.5, 0.1) == "holds"
    assert verdict_from_slope(fit, -1.0, 0.1) == "fails"


def test_slope_fit_exact_line_and_bad_input():
    fit = slope_fit([1, 2, 4], [3, 12, 48])
    assert fit.slope == pytest.approx(2.0)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="positive"):
        slope_fit([1, 2, 3], [1, -1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        slope_fit([1, 2], [1, 2])
    with pytest.raises(ValueError, match="distinct"):
        slope_fit([2, 2, 2], [1, 2, 3])


def test_verdict_from_slope_inconclusive_when_ci_straddles():
    wide = SlopeFit(slope=-0.8, intercept=0.0, stderr=0.5, ci_low=-2.0, ci_high=0.4, r_value=-0.5, n=4)
    assert verdict_from_slope(wide, -0.5, 0.1) == "inconclusive"
    assert verdict_from_slope(-0.8, -0.5, 0.1) == "fails"
    assert verdict_from_slope(-0.45, -0.5, 0.1) == "holds"


# ---------------------------------------------------------------------------------------------- seeds


def test_trial_generators_reproducible_and_independent():
    a = [g.standard_normal(4) for g in trial_generators(3, 5)]
    b = [g.standard_normal(4) for g in trial_generators(3, 5)]
    c = [g.standard_normal(4) for g in trial_generators(4, 5)]
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert len({tuple(x) for x in a}) == 5  # distinct streams
    assert not np.array_equal(np.array(a), np.array(c))
    with pytest.raises(ValueError, match="seed=None"):
        trial_generators(None, 2)
    with pytest.raises(TypeError, match="Generator"):
        trial_generators(np.random.default_rng(0), 2)


# ---------------------------------------------------------------------------------------------- records


def _result(**kw):
    base = dict(name="demo", claim="c", source="Lemma 3.1", data="d", measured={"err": np.float32(0.5)},
                expected="<= 1", verdict="holds", seeds=[np.int64(3)])
    return ClaimResult(**{**base, **kw})


def test_claim_result_to_dict_is_json_safe():
    test = binomial_failure_test(1, 10, 0.1)
    r = _result(measured={"err": np.float64(0.25), "n": np.int64(10), "arr": np.arange(3), "bad": np.inf,
                          "test": test}, figure_data={"x": np.arange(3)})
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["measured"] == {"err": 0.25, "n": 10, "arr": [0, 1, 2], "bad": "inf",
                                            "test": test.to_dict()}
    assert {"name", "claim", "source", "data", "measured", "expected", "verdict", "seeds"} <= set(d)
    assert "figure_data" not in d


def test_claim_result_rejects_bad_verdict_and_name():
    with pytest.raises(ValueError, match="verdict"):
        _result(verdict="passes")
    with pytest.raises(ValueError, match="name"):
        _result(name="../escape")


def test_to_jsonable_rejects_unknown_types():
    with pytest.raises(TypeError, match="cannot convert"):
        to_jsonable(object())


def test_save_and_load_claim_data(tmp_path):
    data = {"m": np.array([1, 2, 4]), "err": np.array([0.5, 0.3, 0.2]), "c": np.float64(0.8), "label": "amm"}
    written = save_claim_data("amm_demo", data, tmp_path)
    assert {p.name for p in written} == {"amm_demo.npz", "amm_demo.json"}
    back = load_claim_data("amm_demo", tmp_path)
    np.testing.assert_array_equal(back["m"], data["m"])
    assert back["c"] == 0.8 and back["label"] == "amm"
    save_claim_data("amm_demo", {"only": 1.0}, tmp_path)  # a later run replaces, never mixes
    assert set(load_claim_data("amm_demo", tmp_path)) == {"only"}
    with pytest.raises(FileNotFoundError, match="python -m proofs_checks"):
        load_claim_data("missing", tmp_path)
    with pytest.raises(TypeError, match="object array"):
        save_claim_data("bad", {"x": np.array([None, 1])}, tmp_path)


def test_summarize_truncates():
    assert summarize({"a": 1.23456789, "b": 2}) == "a=1.235, b=2"
    assert len(summarize("x" * 100, 20)) == 20


# ---------------------------------------------------------------------------------------------- runner


def square_plus(task):
    """Module-level so that worker processes can import it."""
    return task["x"] ** 2 + task["offset"]


def test_grid_product_order():
    assert grid(a=[1, 2], b="xy") == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
                                      {"a": 2, "b": "y"}]


def test_run_tasks_inline_and_processes_preserve_order():
    tasks = grid(x=range(8), offset=[0, 100])
    expected = [t["x"] ** 2 + t["offset"] for t in tasks]
    assert run_tasks(square_plus, tasks, processes=1, progress=False) == expected
    assert run_tasks(square_plus, tasks, processes=2, progress=False) == expected


def fail_on_three(x):
    if x == 3:
        raise RuntimeError("task three fails")
    return x


def test_run_tasks_propagates_errors_and_checks_processes():
    with pytest.raises(RuntimeError, match="task three"):
        run_tasks(fail_on_three, range(5), processes=2, progress=False)
    with pytest.raises(ValueError, match="processes"):
        run_tasks(square_plus, [{"x": 1, "offset": 0}], processes=0, progress=False)


def test_run_tasks_on_dask_local_cluster():
    distributed = pytest.importorskip("dask.distributed")
    tasks = grid(x=range(6), offset=[1])
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        # by address, as the CLI's --scheduler does
        assert run_tasks(square_plus, tasks, scheduler=cluster.scheduler_address, progress=False) == [
            x * x + 1 for x in range(6)
        ]
        with distributed.Client(cluster) as client:
            assert run_tasks(square_plus, tasks, scheduler=client, progress=False) == [x * x + 1 for x in range(6)]
    with pytest.raises(TypeError, match="scheduler"):
        run_tasks(square_plus, tasks, scheduler=8786, progress=False)

