"""``python -m figures``: regenerate the figures from saved claim data (see :mod:`figures.make_all`)."""

from __future__ import annotations

import argparse
import sys

from .make_all import make_all


def main(argv=None) -> int:
    """Entry point; returns 1 when a figure script raised, else 0 (figures without data are skipped)."""
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    p.add_argument("--results", metavar="DIR", default="results", help="claim data directory (default ./results)")
    p.add_argument("--out", metavar="DIR", help="image directory (default <results>/figures)")
    p.add_argument("--figures", nargs="+", metavar="NAME", help="only these figures (file stem or NAME)")
    args = p.parse_args(argv)
    outcomes = make_all(args.results, args.out, names=args.figures)
    return 1 if any(o.status == "error" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
