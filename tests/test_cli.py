"""Tests of ``python -m proofs_checks`` and of the figure plumbing (``figures.make_all``, ``figures._style``)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from figures import _style
from figures.make_all import make_all
from proofs_checks import _registry
from proofs_checks.__main__ import cli, main
from proofs_checks._runner import run_claims
from proofs_checks._io import save_claim_data
from proofs_checks._jsonable import to_jsonable
from proofs_checks._records import ClaimResult, ClaimSpec

REPO = Path(__file__).resolve().parents[1]
IDENTITIES = ["exp_gaussian_identity", "column_norm_formula", "softmax_row_stochastic"]


def test_list_names_every_claim(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in IDENTITIES:
        assert name in out
    assert "cannot be loaded" not in out


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "proofs_checks", "--list"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "column_norm_formula" in proc.stdout


def test_identity_claims_hold_and_are_written(tmp_path, capsys):
    results = tmp_path / "results"
    extra_json = tmp_path / "copy.json"
    code = main(["--claims", *IDENTITIES, "--no-figures", "--results", str(results), "--jobs", "2",
                 "--json", str(extra_json)])
    assert code == 0
    records = json.loads((results / "claims.json").read_text())
    assert [r["name"] for r in records] == IDENTITIES
    for r in records:
        assert {"claim", "source", "data", "measured", "expected", "verdict"} <= set(r)
        assert r["verdict"] == "holds", r
    assert json.loads(extra_json.read_text()) == records
    md = (results / "claims.md").read_text()
    assert "| claim | source | measured | expected | verdict |" in md
    assert "CPUs" in md and "numpy" in md
    assert (results / "softmax_row_stochastic.npz").exists()  # figure data saved by the driver
    table = capsys.readouterr().out
    assert "holds" in table and "column_norm_formula" in table


def test_unknown_claim_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--claims", "no_such_claim", "--no-figures"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no_such_claim" in err and "exp_gaussian_identity" in err


def _raise_claim(size="quick", rng=0, backend="auto"):
    raise RuntimeError("deliberate failure of a fake claim")


def _failing_verdict_claim(size="quick", rng=0, backend="auto"):
    return ClaimResult(name="fake_fails", claim="a false statement", source="test", data="none",
                       measured={"x": 2.0}, expected="x <= 1", verdict="fails", seeds=[rng])


FAKE_ERROR = ClaimSpec(name="fake_error", source="test", claim="raises", run=_raise_claim)
FAKE_FAILS = ClaimSpec(name="fake_fails", source="test", claim="a false statement", run=_failing_verdict_claim)


def test_claim_error_gives_nonzero_exit_and_run_goes_on(tmp_path, capsys):
    results = tmp_path / "r"
    with _registry.temporary_claims(FAKE_ERROR, FAKE_FAILS):
        code = main(["--claims", "fake_error", "fake_fails", "exp_gaussian_identity", "--no-figures",
                     "--results", str(results), "--jobs", "1"])
    assert "fake_error" not in _registry.claim_names()  # the hook leaves the registry as it was
    assert code == 1
    records = {r["name"]: r for r in json.loads((results / "claims.json").read_text())}
    assert records["fake_error"]["verdict"] == "error"
    assert "deliberate failure" in records["fake_error"]["details"]
    assert records["fake_fails"]["verdict"] == "fails"
    assert records["exp_gaussian_identity"]["verdict"] == "holds"
    assert "fake_error" in capsys.readouterr().err


def test_fails_verdict_is_not_a_crash(tmp_path):
    with _registry.temporary_claims(FAKE_FAILS):
        code = main(["--claims", "fake_fails", "--no-figures", "--results", str(tmp_path), "--jobs", "1"])
    assert code == 0


def test_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--seed", "-1", "--no-figures"])
    assert exc.value.code == 2
    assert "--seed" in capsys.readouterr().err


def test_registry_rejects_unknown_names():
    with pytest.raises(_registry.UnknownClaimError, match="valid claims are: exp_gaussian_identity"):
        _registry.load_claim("nope")


# ---------------------------------------------------------------------------------------------- any folder, any worker

#: Fake claims for runs in subprocesses; importable there (and by their worker processes) through PYTHONPATH.
FAKE_CLAIMS = """
import os, sys, time
from proofs_checks import _registry
from proofs_checks._records import ClaimResult, ClaimSpec

def _slow(size="quick", rng=0, backend="auto"):
    with open(os.environ["FAKE_MARKER"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    raise AssertionError("the test interrupts this claim long before it ends")

def _die(size="quick", rng=0, backend="auto"):
    os._exit(3)  # the worker process dies in the middle of the claim

def _raise(size="quick", rng=0, backend="auto"):
    raise RuntimeError("deliberate failure of a fake claim")

def _quick(size="quick", rng=0, backend="auto"):
    open(os.environ["FAKE_MARKER"] + ".quick", "w").close()
    return ClaimResult(name="fake_quick", claim="returns", source="test", data="none", measured={}, expected="",
                       verdict="holds")

FAKES = (ClaimSpec("fake_slow", "test", "sleeps until interrupted", _slow),
         ClaimSpec("fake_dies", "test", "kills its worker process", _die),
         ClaimSpec("fake_raises", "test", "raises", _raise),
         ClaimSpec("fake_quick", "test", "returns", _quick))

def main():
    from proofs_checks.__main__ import cli
    with _registry.temporary_claims(*FAKES):
        sys.exit(cli())
"""


@pytest.fixture
def elsewhere(tmp_path):
    """A working folder outside the repository and an environment that can import the fake claims."""
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "fake_claims.py").write_text(FAKE_CLAIMS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = os.pathsep.join(p for p in (str(fakes), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "FAKE_MARKER": str(tmp_path / "started")}
    return cwd, env, tmp_path / "started"


def _with_fakes(*args):
    return [sys.executable, "-c", "import fake_claims; fake_claims.main()", *args]


def _records(folder):
    return {r["name"]: r for r in json.loads((folder / "claims.json").read_text())}


def test_runs_from_any_folder_with_out(elsewhere):
    cwd, env, _ = elsewhere
    listing = subprocess.run([sys.executable, "-m", "proofs_checks", "--list"], cwd=cwd, env=env,
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert "cannot be loaded" not in listing.stdout, listing.stdout  # every claim imports outside the repository
    proc = subprocess.run([sys.executable, "-m", "proofs_checks", "--only", *IDENTITIES, "--no-figures",
                           "--out", "here", "--jobs", "1"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [r["verdict"] for r in _records(cwd / "here").values()] == ["holds"] * 3
    assert sorted(p.name for p in cwd.iterdir()) == ["here"]  # --out is the only thing written
    (run,) = json.loads((cwd / "here" / "run.json").read_text())["parts"]
    assert run["complete"] and run["run"]["size"] == "quick" and run["cpu_count"] and run["date"]
    assert run["claims"] == IDENTITIES


def test_a_dying_worker_costs_only_its_own_claim(elsewhere):
    cwd, env, _ = elsewhere
    proc = subprocess.run(_with_fakes("--claims", "exp_gaussian_identity", "fake_dies", "column_norm_formula",
                                      "fake_raises", "--no-figures", "--out", "r", "--jobs", "2"),
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # an error row is an error exit
    records = _records(cwd / "r")
    assert list(records) == ["exp_gaussian_identity", "fake_dies", "column_norm_formula", "fake_raises"]
    assert records["exp_gaussian_identity"]["verdict"] == records["column_norm_formula"]["verdict"] == "holds"
    assert records["fake_dies"]["verdict"] == "error" and "BrokenProcessPool" in records["fake_dies"]["details"]
    assert records["fake_raises"]["verdict"] == "error" and "deliberate failure" in records["fake_raises"]["details"]
    assert "fake_dies" in proc.stderr and "fake_raises" in proc.stderr


def _interrupt(proc, marker, group, settle=0.0):
    deadline = time.monotonic() + 240
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow claim never started"
        time.sleep(0.1)
    time.sleep(settle)
    if group:  # a terminal's Ctrl-C reaches the whole process group, workers included
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    return out, err, time.monotonic() - start, int(marker.read_text())


def test_ctrl_c_writes_finished_claims_and_exits_130(elsewhere):
    cwd, env, marker = elsewhere
    # inline (--jobs 1) claims run in the order given, so both identities have finished when the slow one starts
    proc = subprocess.Popen(_with_fakes("--claims", "exp_gaussian_identity", "column_norm_formula", "fake_slow",
                                        "--no-figures", "--out", "r", "--jobs", "1"),
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err, _, _ = _interrupt(proc, marker, group=False)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted: 2 of 3 claims finished; not run: fake_slow" in err
    records = _records(cwd / "r")
    assert list(records) == ["exp_gaussian_identity", "column_norm_formula"]
    assert all(r["verdict"] == "holds" for r in records.values())
    assert "interrupted" in (cwd / "r" / "claims.md").read_text()
    assert json.loads((cwd / "r" / "run.json").read_text())["parts"][0]["complete"] is False


def test_ctrl_c_to_the_process_group_stops_the_workers_quietly(elsewhere):
    cwd, env, marker = elsewhere
    proc = subprocess.Popen(_with_fakes("--claims", "fake_slow", "fake_quick", "--no-figures",
                                        "--out", "r", "--jobs", "2"),
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    quick = Path(str(marker) + ".quick")
    deadline = time.monotonic() + 240
    while not quick.exists():  # one worker sleeps in fake_slow, the other has finished fake_quick and idles
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    _, err, seconds, worker_pid = _interrupt(proc, marker, group=True, settle=1.0)
    assert proc.returncode == 130, err
    # neither the driver nor a worker (busy or idle) prints a traceback
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "SpawnProcess" not in err, err
    assert seconds < 30  # the worker sleeping for 120 s was stopped, not waited for
    assert (cwd / "r" / "claims.md").exists()
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


def _start(args, cwd, env=None):
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_scheduler_started_elsewhere(elsewhere, tmp_path):
    """Issue 12 item 8: a Dask scheduler and worker started in other folders, without the fake claims' module."""
    pytest.importorskip("dask.distributed")
    cwd, env, _ = elsewhere
    info = tmp_path / "scheduler.json"
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(info),
                     "--port", "0", "--no-dashboard"], worker_dir, plain_env)]
    try:
        deadline = time.monotonic() + 120
        while not info.exists():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.2)
        procs.append(_start([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(info),
                             "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], worker_dir, plain_env))
        address = json.loads(info.read_text())["address"]
        proc = subprocess.run(_with_fakes("--scheduler", address, "--claims", *IDENTITIES, "fake_raises",
                                          "--no-figures", "--out", "r"),
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    records = _records(cwd / "r")
    assert proc.returncode == 1, proc.stderr
    assert [records[n]["verdict"] for n in IDENTITIES] == ["holds"] * 3, proc.stderr
    # the worker cannot import the fake claim's module: that claim alone is an error
    assert records["fake_raises"]["verdict"] == "error" and "fake_claims" in records["fake_raises"]["details"]


SMALL = ["exp_gaussian_identity", "column_norm_formula", "softmax_row_stochastic", "e2lsh_collision_probability",
         "lemma_3_1_amm_scaling", "practical_sparse_exact"]


def test_dask_local_cluster_matches_the_local_run():
    """Issue 15 item 4: the same claims on a 2-worker LocalCluster give the same records and figure data."""
    pytest.importorskip("dask.distributed")
    specs = [_registry.load_claim(name) for name in SMALL]
    local = run_claims(specs, processes=1, progress=False)
    remote = run_claims(specs, scheduler="local", processes=2, progress=False)  # what --scheduler local runs
    for a, b in zip(local, remote):
        assert a.verdict != "error", a.details
        da, db = a.to_dict(), b.to_dict()
        da.pop("elapsed_s"), db.pop("elapsed_s")
        _assert_same(da, db, a.name)
        assert (a.figure_data is None) == (b.figure_data is None), a.name
        for key, value in (a.figure_data or {}).items():
            _assert_same(to_jsonable(value), to_jsonable(b.figure_data[key]), f"{a.name}: figure_data[{key!r}]")


def _assert_same(a, b, where):
    """Equal records: verdicts, text, counts and seeds exactly; floats to 1e-12 relative, because Dask workers run
    BLAS single-threaded and a threaded BLAS sums in another order (last-bit differences, seen in
    lemma_3_1_amm_scaling); a different seed or sample moves them by far more."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=0), where
    else:
        assert type(a) is type(b) and a == b, where


def test_merge_builds_one_report_from_parts(tmp_path, capsys):
    out = tmp_path / "full"
    assert main(["--claims", IDENTITIES[2], "--no-figures", "--out", str(out), "--jobs", "1"]) == 0
    assert main(["--claims", IDENTITIES[0], "--no-figures", "--out", str(out), "--jobs", "1", "--merge"]) == 0
    assert [r["name"] for r in json.loads((out / "claims.json").read_text())] == [IDENTITIES[0], IDENTITIES[2]]
    parts = json.loads((out / "run.json").read_text())["parts"]
    assert [p["claims"] for p in parts] == [[IDENTITIES[2]], [IDENTITIES[0]]]
    assert "Part 2 of 2: exp_gaussian_identity" in (out / "claims.md").read_text()
    assert (out / f"{IDENTITIES[2]}.npz").exists()  # the earlier part's figure data stays
    # re-running a claim replaces its record, and a part left with no record is dropped
    assert main(["--claims", IDENTITIES[2], "--no-figures", "--out", str(out), "--jobs", "1", "--merge"]) == 0
    parts = json.loads((out / "run.json").read_text())["parts"]
    assert [p["claims"] for p in parts] == [[IDENTITIES[0]], [IDENTITIES[2]]]
    # without --merge a run replaces the folder's records
    assert main(["--claims", IDENTITIES[1], "--no-figures", "--out", str(out), "--jobs", "1"]) == 0
    assert [r["name"] for r in json.loads((out / "claims.json").read_text())] == [IDENTITIES[1]]
    (out / "run.json").unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--claims", IDENTITIES[0], "--no-figures", "--out", str(out), "--merge"])
    assert exc.value.code == 2 and "run.json" in capsys.readouterr().err


def test_installed_command_points_at_the_cli():
    import importlib
    import tomllib

    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["proofs-checks"]
    module, _, attribute = target.partition(":")
    assert getattr(importlib.import_module(module), attribute) is cli


def test_estimate_prints_a_plan(capsys):
    assert main(["--estimate", "--size", "full", "--claims", *IDENTITIES, "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "size=full, 2 worker(s)" in out and "design budget of the full size: 60 min" in out
    for name in IDENTITIES:
        assert name in out


# ---------------------------------------------------------------------------------------------- figures

FIG_DEMO = '''
NAME = "demo_figure"
CLAIMS = ("demo_claim",)

def make(results_dir, outdir):
    from figures import _style
    from proofs_checks import results
    data = results.load("demo_claim", results_dir)
    fig, ax = _style.plt.subplots()
    ax.loglog(data["m"], data["err"], color=_style.color_for("kdeformer"), label="kdeformer")
    return _style.save(fig, NAME, outdir)
'''
FIG_MISSING = 'NAME = "needs_data"\nCLAIMS = ("never_ran",)\ndef make(results_dir, outdir):\n    raise AssertionError\n'
FIG_BROKEN = 'NAME = "broken"\nCLAIMS = ("demo_claim",)\ndef make(results_dir, outdir):\n    1 / 0\n'


def test_make_all_makes_skips_and_reports_errors(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for stem, text in {"fig_demo": FIG_DEMO, "fig_missing": FIG_MISSING, "fig_broken": FIG_BROKEN,
                       "not_a_figure": "raise SystemExit"}.items():
        (scripts / f"{stem}.py").write_text(textwrap.dedent(text))
    results = tmp_path / "results"
    save_claim_data("demo_claim", {"m": np.array([1.0, 2.0, 4.0]), "err": np.array([1.0, 0.7, 0.5])}, results)
    outcomes = {o.name: o for o in make_all(results, tmp_path / "img", directory=scripts, out=sys.stderr)}
    assert set(outcomes) == {"demo_figure", "needs_data", "broken"}
    assert outcomes["demo_figure"].status == "made"
    assert (tmp_path / "img" / "demo_figure.png").exists() and (tmp_path / "img" / "demo_figure.pdf").exists()
    assert outcomes["needs_data"].status == "skipped" and "never_ran" in outcomes["needs_data"].message
    assert outcomes["broken"].status == "error" and "ZeroDivisionError" in outcomes["broken"].message
    only = make_all(results, tmp_path / "img2", names=["fig_demo"], directory=scripts, out=sys.stderr)
    assert [o.name for o in only] == ["demo_figure"]


def test_figures_module_cli_runs_on_empty_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "figures", "--results", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_method_colours_are_stable():
    assert _style.color_for("KDEformer") == _style.color_for("kdeformer") == _style.METHOD_COLORS["kdeformer"]
    assert _style.color_for("Scatter-Brain") == _style.METHOD_COLORS["scatterbrain"]
    assert _style.color_for("my_new_method") == _style.color_for("my_new_method")
    assert len({_style.color_for(m) for m in ("kdeformer", "performer", "reformer", "scatterbrain")}) == 4
    with pytest.raises(ValueError, match="method"):
        _style.color_for("--")
    with pytest.raises(ValueError, match="file stem"):
        _style.save(_style.plt.figure(), "a/b", ".")
