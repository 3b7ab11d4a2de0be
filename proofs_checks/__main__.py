"""``python -m proofs_checks``: run the paper's checkable claims, print verdicts, write results and figures.

Exit status: 0 when every claim ran (a verdict of "fails" is a finding, not a crash), 1 when any claim ended in
"error", 2 for bad command-line arguments, 130 when stopped by Ctrl-C (the claims that had finished are written).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from pathlib import Path

from ._io import remove_claim_data, save_claim_data
from ._records import SIZES, ClaimResult
from ._registry import claim_names, load_claim
from ._report import format_markdown, format_table, machine_info
from ._runner import RunInterrupted, error_result, run_claims
from ._timing import format_plan, plan
from .results import default_folder

_BACKENDS = ("auto", "numpy", "numba", "cupy")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m proofs_checks``."""
    p = argparse.ArgumentParser(prog="python -m proofs_checks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZES, default="quick", help="quick (CI-sized) or full (the report)")
    p.add_argument("--claims", "--only", dest="claims", nargs="+", metavar="NAME",
                   help="run only these claims (see --list)")
    p.add_argument("--backend", choices=_BACKENDS, default="auto", help="compute path passed to every claim")
    p.add_argument("--seed", type=int, default=0, help="seed given to every claim as rng (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH ('-' for stdout)")
    p.add_argument("--out", "--results", dest="out", metavar="DIR",
                   help="results folder (default ./results for --size quick, ./results/full for --size full)")
    p.add_argument("--merge", action="store_true",
                   help="keep the records in --out of claims not run now (a full run made in parts)")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--estimate", action="store_true",
                   help="print each selected claim's expected time at this size (from recorded runs) and exit")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster at ADDRESS (tcp://host:8786; its workers need this package "
                        "installed), or 'local': a Dask LocalCluster of --jobs workers on this machine")
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
              "run `python -m figures --results DIR` from the repository root", file=out)
        return
    make_all(results_dir, results_dir / "figures", out=out)


def write_results(results: list[ClaimResult], results_dir: Path, args: argparse.Namespace,
                  note: str = "") -> tuple[list[ClaimResult], str]:
    """Write the records to ``claims.json`` and ``claims.md``, the machines and settings to ``run.json``, and each
    claim's figure data; return the records written (with ``--merge``, the earlier ones not re-run as well) and
    their JSON text."""
    results_dir.mkdir(parents=True, exist_ok=True)
    earlier, parts = _earlier_records(results_dir, {r.name for r in results}) if args.merge else ([], [])
    for r in results:
        if r.figure_data:
            save_claim_data(r.name, r.figure_data, results_dir)
        else:
            remove_claim_data(r.name, results_dir)
    settings = {"size": args.size, "seed": args.seed, "backend": args.backend,
                "scheduler": args.scheduler or "none", "jobs": args.jobs or "cpu count"}
    parts = [*parts, {**machine_info(), "run": settings, "claims": [r.name for r in results],
                      "complete": not note, "note": note}]
    if earlier:  # records of several runs: report order
        order = {name: k for k, name in enumerate(claim_names())}
        results = sorted([*earlier, *results], key=lambda r: order.get(r.name, len(order)))
    text = json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False) + "\n"
    (results_dir / "claims.json").write_text(text)
    (results_dir / "claims.md").write_text(format_markdown(results, parts, note))
    (results_dir / "run.json").write_text(json.dumps({"parts": parts}, indent=2) + "\n")
    return results, text


def _earlier_records(results_dir: Path, rerun: set) -> tuple[list[ClaimResult], list[dict]]:
    """The records in ``results_dir`` of claims not in ``rerun``, and the runs (parts) that made them."""
    records, run = results_dir / "claims.json", results_dir / "run.json"
    if not records.exists():
        return [], []
    if not run.exists():
        raise ValueError(f"--merge: {records} has no run.json beside it, so the machine and date of its records "
                         "are unknown; write this run to an empty --out folder instead")
    kept = [ClaimResult.from_dict(r) for r in json.loads(records.read_text()) if r["name"] not in rerun]
    names = {r.name for r in kept}
    # a part none of whose claims survive made no record here any more
    parts = [p for p in json.loads(run.read_text())["parts"] if names & set(p["claims"])]
    return kept, parts


def _write_partial(finished: list[ClaimResult], names: list[str], results_dir: Path,
                   args: argparse.Namespace) -> None:
    """After Ctrl-C: keep what finished, say what did not, leave no traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the files in half
    done = {r.name for r in finished}
    missing = [n for n in names if n not in done]
    order = {n: i for i, n in enumerate(names)}
    finished = sorted(finished, key=lambda r: order[r.name])
    note = f"interrupted: {len(finished)} of {len(names)} claims finished; not run: {', '.join(missing)}"
    write_results(finished, results_dir, args, note)
    print(f"\n{note}\nwrote {results_dir / 'claims.json'} and {results_dir / 'claims.md'}", file=sys.stderr)


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
    results_dir = Path(args.out) if args.out else default_folder(args.size)
    if args.merge:
        try:  # refuse now, not after an hour of claims
            _earlier_records(results_dir, set())
        except (ValueError, KeyError, TypeError) as exc:
            parser.error(f"--merge: cannot read the earlier records in {results_dir}: {exc}")
    if args.estimate:
        print(format_plan(plan(names, args.size, args.jobs, results_dir)))
        return 0

    failed = []
    try:
        specs, failed = _load_specs(names)
        if args.jobs != 1 or args.scheduler:
            # longest first (unknown times count as longest), so that the workers finish together; inline
            # runs keep the report's order, which is what a debugger expects. The report's order is restored below.
            expected = {name: t for name, t, _ in plan(names, args.size, args.jobs, results_dir)["claims"]}
            specs.sort(key=lambda spec: -(expected[spec.name] if expected[spec.name] is not None else float("inf")))
        ran = run_claims(specs, size=args.size, seed=args.seed, backend=args.backend, scheduler=args.scheduler,
                         processes=args.jobs)
    except RunInterrupted as stop:
        _write_partial([*stop.finished, *failed], names, results_dir, args)
        return 130
    except KeyboardInterrupt:  # before any claim started: nothing to keep
        print("\ninterrupted before any claim finished; nothing written", file=sys.stderr)
        return 130
    by_name = {r.name: r for r in [*ran, *failed]}
    results = [by_name[n] for n in names]

    written, text = write_results(results, results_dir, args)
    # with --json - stdout carries the JSON alone, so the human-readable table goes to stderr
    table_out = sys.stderr if args.json == "-" else sys.stdout
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json:
        Path(args.json).write_text(text)

    print(format_table(written), file=table_out)
    print(f"\nwrote {results_dir / 'claims.json'} and {results_dir / 'claims.md'}", file=table_out)
    if not args.no_figures:
        _make_figures(results_dir, table_out)
    errors = [r.name for r in results if r.verdict == "error"]
    if errors:
        print(f"error in {len(errors)} claim(s): {', '.join(errors)} (tracebacks in claims.md)", file=sys.stderr)
    return 1 if errors else 0


def cli() -> int:
    """The installed command ``proofs-checks`` (same as ``python -m proofs_checks``): :func:`main` on
    ``sys.argv``, with a Ctrl-C outside the claims (while writing files or figures) ending quietly with 130."""
    try:
        return main()
    except KeyboardInterrupt:  # Ctrl-C while writing files or figures: stop quietly
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
