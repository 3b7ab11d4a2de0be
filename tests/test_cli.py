"""Tests of ``python -m proofs_checks`` and of the figure plumbing (``figures.make_all``, ``figures._style``)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from figures import _style
from figures.make_all import make_all
from proofs_checks import _registry
from proofs_checks.__main__ import main
from proofs_checks._harness import ClaimResult, ClaimSpec, save_claim_data

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


# ---------------------------------------------------------------------------------------------- figures

FIG_DEMO = '''
NAME = "demo_figure"
CLAIMS = ("demo_claim",)

def make(results_dir, outdir):
    from figures import _style
    from proofs_checks._harness import load_claim_data
    data = load_claim_data("demo_claim", results_dir)
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
