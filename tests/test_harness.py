"""Tests of the claim machinery (statistics, records, data files, results, run planning, protocols) and the runner."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from proofs_checks import _harness, _registry, _timing, results
from proofs_checks._io import load_claim_data, save_claim_data
from proofs_checks._jsonable import to_jsonable
from proofs_checks._records import ClaimResult, ClaimSpec
from proofs_checks._report import summarize
from proofs_checks._runner import grid, run_claims, run_tasks
from proofs_checks._seeds import trial_generators
from proofs_checks._stats import binomial_failure_test, critical_failures, slope_fit
from proofs_checks._verdicts import interval_verdict, trials_for_power
from proofs_checks._timing import FULL_BUDGET_S, format_plan, makespan, plan
from proofs_checks.protocols.budget import ROWS, sweep, synthetic_instance
from proofs_checks.protocols.kde import bandwidth_for_density, estimator_factories

ALPHA = 1e-6


# ---------------------------------------------------------------------------------------------- binomial test


@pytest.mark.parametrize("delta", [0.05, 0.01])
def test_binomial_test_rejects_4delta_and_accepts_delta(delta):
    trials = trials_for_power(delta, 4 * delta, ALPHA)
    gen = np.random.default_rng(12345)
    # 20 simulated experiments each: a faulty (4 delta) implementation must be caught every time at this power
    # level (a miss has probability <= 0.01 each, so a seeded run that misses would point at a real defect), and
    # a correct one must never be flagged (false alarm probability <= 1e-6 each).
    faulty = [binomial_failure_test(int(f), trials, delta).significant for f in gen.binomial(trials, 4 * delta, 20)]
    correct = [binomial_failure_test(int(f), trials, delta).significant for f in gen.binomial(trials, delta, 20)]
    assert sum(faulty) >= 19
    assert not any(correct)


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
    with pytest.raises(TypeError, match="alpha"):
        binomial_failure_test(1, 10, 0.1, alpha="0.01")


# ---------------------------------------------------------------------------------------------- slope fits


def test_slope_fit_recovers_known_slope():
    gen = np.random.default_rng(7)
    m = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=float)
    err = 0.9 * m**-0.5 * np.exp(0.03 * gen.standard_normal(m.size))
    fit = slope_fit(m, err)
    assert abs(fit.slope + 0.5) < 0.05
    assert fit.ci_low < -0.5 < fit.ci_high
    assert math.exp(fit.intercept) == pytest.approx(0.9, rel=0.2)
    assert interval_verdict(fit.ci_low, fit.ci_high, -0.5, 0.1) == "holds"
    assert interval_verdict(fit.ci_low, fit.ci_high, -1.0, 0.1) == "fails"


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


def test_claim_result_from_dict_round_trip_and_bad_records():
    r = _result(measured={"err": 0.25}, elapsed_s=1.5, details="why")
    assert ClaimResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    d = r.to_dict()
    with pytest.raises(ValueError, match="fields"):
        ClaimResult.from_dict({k: v for k, v in d.items() if k != "verdict"})
    with pytest.raises(ValueError, match="fields"):
        ClaimResult.from_dict({**d, "colour": "red"})
    with pytest.raises(TypeError, match="dict"):
        ClaimResult.from_dict([d])


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


def test_results_module_reads_what_a_run_wrote(tmp_path):
    save_claim_data("demo_claim", {"m": np.array([1.0, 2.0]), "label": "x"}, tmp_path)
    assert results.available("demo_claim", tmp_path) and not results.available("other", tmp_path)
    back = results.load("demo_claim", tmp_path)
    np.testing.assert_array_equal(back["m"], [1.0, 2.0])
    assert back["label"] == "x"
    with pytest.raises(FileNotFoundError, match="--out"):
        results.load("other", tmp_path)
    with pytest.raises(ValueError, match="name"):
        results.available("../escape", tmp_path)
    with pytest.raises(FileNotFoundError, match="claims.json"):
        results.records(tmp_path)
    (tmp_path / "claims.json").write_text(json.dumps([_result().to_dict()]))
    assert [r["name"] for r in results.records(tmp_path)] == ["demo"]


def test_harness_shim_re_exports_the_split_modules():
    assert _harness.ClaimResult is ClaimResult and _harness.slope_fit is slope_fit
    assert _harness.load_claim_data is load_claim_data and _harness.trial_generators is trial_generators
    for name in _harness.__all__:
        assert hasattr(_harness, name), name


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


def sigint_ignored(_):
    """Module-level so that worker processes can import it."""
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_pool_workers_leave_ctrl_c_to_the_driver():
    # a terminal's Ctrl-C reaches every worker; only the driver may act on it (and print nothing but a summary)
    assert run_tasks(sigint_ignored, [0, 1], processes=2, progress=False) == [True, True]


def test_run_tasks_on_error_and_on_result_hooks():
    seen = {}
    out = run_tasks(fail_on_three, range(5), processes=2, progress=False, on_result=seen.__setitem__,
                    on_error=lambda task, exc: f"error {task}: {exc}")
    assert out == [0, 1, 2, "error 3: task three fails", 4]
    assert seen == dict(enumerate(out))
    assert run_tasks(fail_on_three, range(5), processes=1, progress=False,
                     on_error=lambda task, exc: None) == [0, 1, 2, None, 4]
    with pytest.raises(TypeError, match="on_error"):
        run_tasks(square_plus, [], on_error=3)


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



# ---------------------------------------------------------------------------------------------- run planning


def test_makespan_longest_first():
    assert makespan([], 2) == 0
    # longest first gives {3, 2, 2} and {3, 2}; the optimum 6 is {3, 3} and {2, 2, 2}
    assert makespan([3, 3, 2, 2, 2], 2) == 7
    assert makespan([10, 1, 1, 1], 2) == 10
    assert makespan([5, 4, 3], 1) == 12
    with pytest.raises(ValueError, match="jobs"):
        makespan([1.0], 0)
    with pytest.raises(ValueError, match="non-negative"):
        makespan([-1.0], 1)


def test_plan_prefers_this_machines_records(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    rec = [_result(name="a", elapsed_s=100.0).to_dict(),
           _result(name="crashed", verdict="error", elapsed_s=1.0).to_dict()]
    (full / "claims.json").write_text(json.dumps(rec))
    p = plan(["a", "crashed", "never"], "full", jobs=2, folder=full)
    rows = {name: (t, source) for name, t, source in p["claims"]}
    assert rows["a"][0] == 100.0 and "claims.json" in rows["a"][1]
    assert rows["crashed"][0] is None  # the time to crash is not the time to run
    assert p["unknown"] == ["crashed", "never"] and p["wall_s"] == 100.0
    text = format_plan(p)
    assert "no recorded time for: crashed, never" in text and f"{FULL_BUDGET_S / 60:.0f} min" in text
    assert "cannot tell" in text
    assert "(within budget)" in format_plan(plan(["a"], "full", jobs=2, folder=full))
    assert "(OVER budget)" in format_plan(plan(["a"] * 40, "full", jobs=1, folder=full))
    with pytest.raises(ValueError, match="size"):
        plan(["a"], "huge")


def test_plan_falls_back_to_the_design_table(tmp_path, monkeypatch):
    monkeypatch.setitem(_timing.RECORDED, "full", {"b": 50.0, "c": 400.0})
    p = plan(["b", "c"], "full", jobs=1, folder=tmp_path)  # no claims.json there
    assert p["wall_s"] == 450.0 and not p["unknown"]
    assert [source for _, _, source in p["claims"]] == ["recorded", "recorded"]
    assert "recorded times: CPU seconds" in format_plan(p)


def test_design_table_fits_the_full_budget():
    # the promise of issue 15: the full size runs within an hour on the 2-core machine (2 workers); claims without a
    # recorded time are listed by --estimate, and a later full run's records replace these numbers
    assert makespan(list(_timing.RECORDED["full"].values()), 2) <= FULL_BUDGET_S
    assert set(_timing.RECORDED["quick"]) >= set(_timing.RECORDED["full"])


# ---------------------------------------------------------------------------------------------- protocols


def test_bandwidth_for_density_hits_its_level():
    X = np.random.default_rng(3).standard_normal((2000, 4))
    h = bandwidth_for_density(X, 0, quantile=50, level=0.2)
    from kdetheory.kde import gaussian_kde

    gen = np.random.default_rng(0)  # the same subsample the rule drew
    ref = X[gen.choice(2000, 2000, replace=False)]
    assert np.percentile(gaussian_kde(ref, ref[:500], bandwidth=h), 50) == pytest.approx(0.2, rel=1e-6)
    for bad in ({"quantile": 0}, {"quantile": 100}, {"level": 1.0}, {"level": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            bandwidth_for_density(X, 0, **bad)
    with pytest.raises(ValueError, match="X"):
        bandwidth_for_density(np.full((3, 2), np.nan), 0)
    with pytest.raises(ValueError, match="X"):
        bandwidth_for_density(np.ones(3), 0)


def test_estimator_factories_and_sweep_validate():
    assert [name for name, _, _ in estimator_factories(True)] == ["RS", "RSP", "HBE", "CKNS", "CKNS-LSH"]
    with pytest.raises(TypeError, match="quick"):
        estimator_factories("yes")
    with pytest.raises(ValueError, match="budgets"):
        sweep([], [0], [0])
    with pytest.raises(ValueError, match="seeds"):
        sweep([], [64], [-1])


def test_budget_sweep_runs_every_method_on_a_small_instance():
    # check=True asserts once that the sweep's shortcut metric equals kdetheory.linalg.relative_spectral_error
    rows = sweep([("synthetic", 128, synthetic_instance)], [32], [0], verbose=False, check=True)
    assert [r["method"] for r in rows] == list(ROWS)
    for r in rows:
        assert r["n"] == 128 and r["budget"] == 32 and r["seed"] == 0
        assert math.isfinite(r["paper_error"]) and r["paper_error"] > 0, r
        assert math.isfinite(r["guarantee_error"]) and r["guarantee_error"] > 0, r
        assert r["kernel_evaluations"] is None or 0 <= r["kernel_evaluations"] <= 128 * 128 * 8, r


def overriding_claim(size="quick", rng=0, backend="auto"):
    """Module-level so that worker processes can import it."""
    return ClaimResult(name="exp_gaussian_identity", claim="override", source="test", data="none",
                       measured={"override": True}, expected="", verdict="skipped")


def test_run_claims_sends_a_temporary_override_itself():
    # a registered name overridden by temporary_claims exists in this process only: workers must get the spec
    fake = ClaimSpec("exp_gaussian_identity", "test", "override", overriding_claim)
    with _registry.temporary_claims(fake):
        # two claims, so that two worker processes run them (one claim would run inline)
        result, other = run_claims([fake, _registry.load_claim("column_norm_formula")], processes=2, progress=False)
    assert result.measured == {"override": True} and result.verdict == "skipped", result
    assert other.name == "column_norm_formula" and other.verdict == "holds", other.details
