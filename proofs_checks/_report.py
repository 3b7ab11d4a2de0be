"""What a run reports: the terminal table, ``claims.md`` and the machine/date header of both.

Pure formatting: functions here take records and return text, so the command line, a partial run stopped by
Ctrl-C and a notebook print the same thing.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from typing import Any, Mapping

import numpy as np

from ._records import ClaimResult

__all__ = ["summarize", "machine_info", "format_table", "format_markdown"]

_VERSION_OF = ("kdetheory", "numpy", "scipy", "numba", "cupy", "cupy-cuda12x", "cupy-cuda13x", "matplotlib",
               "dask", "distributed")


def summarize(value: Any, width: int = 48) -> str:
    """Short one-line text of a measured/expected value for tables (numbers with 4 significant digits)."""

    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        if isinstance(v, Mapping):
            return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple, np.ndarray)):
            return "[" + ", ".join(fmt(x) for x in list(v)[:6]) + (", ..." if len(v) > 6 else "") + "]"
        return str(v)

    text = " ".join(fmt(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


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


def format_markdown(results: list[ClaimResult], parts: list[Mapping[str, Any]], note: str = "") -> str:
    """``claims.md``: how the records were made, the verdict table, and the details of every claim not holding.

    Parameters
    ----------
    results : list of ClaimResult
        The records, in report order.
    parts : list of mapping
        The runs that made them, oldest first: each :func:`machine_info` plus ``"run"`` (the settings: size,
        seed, backend, ...) and ``"claims"`` (the names it ran). One part for a plain run; several when runs
        were merged into one results folder (``--merge``), and each record comes from the latest part naming it.
    note : str, optional
        A line printed under the header, e.g. that the run was interrupted and which claims did not finish.
    """
    if not parts:
        raise ValueError("format_markdown: parts is empty; pass at least the machine_info of this run")
    lines = ["# Claim checks", ""]
    for k, part in enumerate(parts):
        versions = ", ".join(f"{name} {v}" for name, v in part["versions"].items())
        settings = ", ".join(f"{key}={v}" for key, v in part["run"].items())
        if len(parts) > 1:
            lines += [f"Part {k + 1} of {len(parts)}: {', '.join(part['claims'])}", ""]
        lines += [
            f"* date: {part['date']}",
            f"* machine: {part['platform']}, {part['cpu_count']} CPUs, Python {part['python']}",
            f"* packages: {versions}",
            f"* run: {settings}",
            "",
        ]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
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
