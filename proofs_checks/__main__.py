"""``python -m proofs_checks``: run the paper's checkable claims, print verdicts, write results and figures.

Exit status: 0 when every claim ran (a verdict of "fails" is a finding, not a crash), 1 when any claim ended in
"error", 2 for bad command-line arguments.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import traceback
from pathlib import Path

from ._harness import SIZES, ClaimResult, remove_claim_data, save_claim_data, summarize
from ._registry import claim_names, load_claim
from ._runner import error_result, run_claims

_BACKENDS = ("auto", "numpy", "numba", "cupy")
_VERSION_OF = ("kdetheory", "numpy", "scipy", "numba", "cupy", "cupy-cuda12x", "cupy-cuda13x", "matplotlib",
               "dask", "distributed")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m proofs_checks``."""
    p = argparse.ArgumentParser(prog="python -m proofs_checks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZES, default="quick", help="quick (CI-sized) or full (the report)")
    p.add_argument("--claims", nargs="+", metavar="NAME", help="run only these claims (see --list)")
    p.add_argument("--backend", choices=_BACKENDS, default="auto", help="compute path passed to every claim")
    p.add_argument("--seed", type=int, default=0, help="seed given to every claim as rng (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH ('-' for stdout)")
    p.add_argument("--results", metavar="DIR", default="results", help="results directory (default ./results)")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster at ADDRESS (tcp://host:8786)")
    p.add_argument("--no-figures", action="store_true", help="do not regenerate the figures afterwards")
    p.add_argument("--jobs", type=int, metavar="N", help="local worker processes (default: CPU count; 1 = inline)")
    return p


def list_claims(out=None) -> None:
    """Print every registered claim with its source and statement (or why it cannot be imported)."""
    out = sys.stdout if out is None else out  # looked up at call time, so redirected stdout is honoured
    for name in claim_names():
        try:
            spec = load_claim(name)
            print(f"{name:<28} {spec.source:<34} {spec.claim}", file=out)
        except Exception as exc:  # listing must survive a broken module; say what is wrong with it
            print(f"{name:<28} (cannot be loaded: {type(exc).__name__}: {exc})", file=out)


def _versions() -> dict:
    found = {}
    for dist in _VERSION_OF:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "kdetheory" not in found:  # a source checkout that is not pip-installed
        try:
            import kdetheory

            found["kdetheory"] = f"{kdetheory.__version__} (source tree)"
        except Exception:
            found["kdetheory"] = "not importable"
    return found


def machine_info() -> dict:
    """Date, platform, CPU count, Python and package versions, for the report header."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
    }


def format_table(results: list[ClaimResult]) -> str:
    """The verdict table printed on the terminal."""
    header = ("claim", "source", "measured", "expected", "verdict")
    rows = [(r.name, summarize(r.source, 30), summarize(r.measured, 44), summarize(r.expected, 40), r.verdict)
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_markdown(results: list[ClaimResult], info: dict, args: argparse.Namespace) -> str:
    """``results/claims.md``: run metadata, the verdict table, and the details of every claim not holding."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        "# Claim checks",
        "",
        f"* date: {info['date']}",
        f"* machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}",
        f"* packages: {versions}",
        f"* run: size={args.size}, seed={args.seed}, backend={args.backend}",
        "",
        "| claim | source | measured | expected | verdict | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = (r.name, r.source, summarize(r.measured, 80), summarize(r.expected, 80), f"**{r.verdict}**",
                 f"{r.elapsed_s:.2f}")
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    for r in results:
        if r.verdict != "holds" and r.details:
            lines += ["", f"## {r.name}: {r.verdict}", "", "```", r.details.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _load_specs(names):
    specs, failed = [], []
    for name in names:
        try:
            specs.append(load_claim(name))
        except Exception:  # reported as an "error" verdict so the other claims still run
            failed.append(error_result(name, "", "", traceback.format_exc()))
    return specs, failed


def _make_figures(results_dir: Path, out) -> None:
    try:
        from figures.make_all import make_all
    except ImportError as exc:
        print(f"figures: skipped, the figures package is not importable here ({exc}); "
              "run from the repository root", file=out)
        return
    make_all(results_dir, results_dir / "figures", out=out)


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        list_claims()
        return 0
    valid = claim_names()
    names = list(dict.fromkeys(args.claims or valid))  # a name given twice runs once
    unknown = [n for n in names if n not in valid]
    if unknown:
        parser.error(f"--claims: unknown {', '.join(unknown)}; valid claims are: {', '.join(valid)}")
    if args.seed < 0:
        parser.error(f"--seed: got {args.seed}; pass a non-negative integer")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs: got {args.jobs}; pass a positive number of processes (1 runs inline)")

    specs, failed = _load_specs(names)
    ran = run_claims(specs, size=args.size, seed=args.seed, backend=args.backend, scheduler=args.scheduler,
                     processes=args.jobs)
    by_name = {r.name: r for r in [*ran, *failed]}
    results = [by_name[n] for n in names]

    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.figure_data:
            save_claim_data(r.name, r.figure_data, results_dir)
        else:
            remove_claim_data(r.name, results_dir)
    records = [r.to_dict() for r in results]
    text = json.dumps(records, indent=2, allow_nan=False) + "\n"
    (results_dir / "claims.json").write_text(text)
    (results_dir / "claims.md").write_text(format_markdown(results, machine_info(), args))
    # with --json - stdout carries the JSON alone, so the human-readable table goes to stderr
    table_out = sys.stderr if args.json == "-" else sys.stdout
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json:
        Path(args.json).write_text(text)

    print(format_table(results), file=table_out)
    print(f"\nwrote {results_dir / 'claims.json'} and {results_dir / 'claims.md'}", file=table_out)
    if not args.no_figures:
        _make_figures(results_dir, table_out)
    errors = [r.name for r in results if r.verdict == "error"]
    if errors:
        print(f"error in {len(errors)} claim(s): {', '.join(errors)} (tracebacks in claims.md)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
