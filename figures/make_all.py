"""Discover the figure scripts ``figures/fig_*.py`` and make those whose claim data exists.

A figure script is a module ``figures/fig_<something>.py`` with::

    NAME = "figure_2_stable_rank"          # output file stem; name the paper figure
    CLAIMS = ("figure_2_stable_rank",)     # claims whose saved data it reads
    def make(results_dir, outdir): ...     # proofs_checks.results.load, draw, return _style.save(fig, NAME, outdir)

Figures only read ``results/<claim>.npz|json`` (written by ``python -m proofs_checks``); they never compute an
estimator, so regenerating them is cheap and they always show the data the report was made from.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from proofs_checks import results

from . import _style

__all__ = ["FigureOutcome", "discover", "make_all"]

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class FigureOutcome:
    """What happened to one figure script: status is "made", "skipped" or "error"."""

    name: str
    status: str
    message: str = ""
    paths: tuple = ()


def _import_script(path: Path):
    if path.parent.resolve() == _PACKAGE_DIR:
        return importlib.import_module(f"{__package__}.{path.stem}")
    # Scripts outside the package (tests, users' own figures) are loaded by file and must use absolute imports.
    spec = importlib.util.spec_from_file_location(f"_figure_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def discover(directory=None) -> list[Path]:
    """Paths of the figure scripts ``fig_*.py`` in ``directory`` (default: this package), sorted by name."""
    directory = _PACKAGE_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"discover: directory={str(directory)!r} is not a directory of fig_*.py scripts")
    return sorted(directory.glob("fig_*.py"))


def _load(path: Path):
    """The script's module, or a FigureOutcome saying why it cannot be used."""
    try:
        module = _import_script(path)
    except Exception:  # one broken script must not stop the others
        return FigureOutcome(path.stem, "error", traceback.format_exc())
    missing = [a for a in ("NAME", "CLAIMS", "make") if not hasattr(module, a)]
    if missing:
        return FigureOutcome(path.stem, "error", f"{path.name} lacks {', '.join(missing)}")
    return module


def _render(module, results_dir: Path, outdir: Path) -> FigureOutcome:
    claims = [module.CLAIMS] if isinstance(module.CLAIMS, str) else list(module.CLAIMS)
    missing = [c for c in claims if not results.available(c, results_dir)]
    if missing:
        return FigureOutcome(module.NAME, "skipped",
                             f"no data for {', '.join(missing)} in {results_dir}; "
                             f"run python -m proofs_checks --claims {' '.join(missing)} --out {results_dir} --merge")
    try:
        paths = module.make(results_dir, outdir)
    except Exception:
        return FigureOutcome(module.NAME, "error", traceback.format_exc())
    return FigureOutcome(module.NAME, "made", "", tuple(Path(p) for p in (paths or ())))


def make_all(results_dir="results", outdir=None, *, names=None, directory=None, out=None):
    """Make every figure whose data exists; report each one on ``out``.

    Parameters
    ----------
    results_dir : str or path, default "results"
        Where ``python -m proofs_checks`` saved the claim data.
    outdir : str or path, optional
        Where images go; default ``<results_dir>/figures``.
    names : iterable of str, optional
        Only the scripts with these file stems (``fig_...``) or NAMEs.
    directory : str or path, optional
        Look for scripts here instead of in this package.
    out : file, optional
        Where the one-line report of each figure goes (default: ``sys.stdout`` at call time).

    Returns
    -------
    list of FigureOutcome
    """
    out = sys.stdout if out is None else out
    results_dir = Path(results_dir)
    outdir = results_dir / "figures" if outdir is None else Path(outdir)
    scripts = discover(directory)
    wanted = None if names is None else set(names)
    _style.apply()
    outcomes = []
    for path in scripts:
        loaded = _load(path)
        name = loaded.name if isinstance(loaded, FigureOutcome) else loaded.NAME
        if wanted is not None and not {path.stem, name} & wanted:
            continue
        outcome = loaded if isinstance(loaded, FigureOutcome) else _render(loaded, results_dir, outdir)
        outcomes.append(outcome)
        where = ", ".join(str(p) for p in outcome.paths)
        text = where if outcome.status == "made" else outcome.message.rstrip()
        print(f"figure {outcome.name}: {outcome.status}{': ' + text if text else ''}", file=out)
    if not scripts:
        print(f"figures: no fig_*.py scripts in {directory or _PACKAGE_DIR}", file=out)
    return outcomes
