"""The records of a claim check: :class:`ClaimSpec` (what to run) and :class:`ClaimResult` (what it found).

A result's name becomes a file name under the results folder, so names are checked here, once, by
:func:`check_name`; :func:`check_size` validates the ``size`` argument every claim's ``run`` takes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ._jsonable import to_jsonable

__all__ = ["VERDICTS", "SIZES", "ClaimResult", "ClaimSpec", "check_name", "check_size"]

VERDICTS = ("holds", "fails", "inconclusive", "skipped", "error")
SIZES = ("quick", "full")

# Names become file names under results/: keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_name(name, func: str) -> str:
    """Return ``name`` if it is a non-empty string of letters, digits, ``_``, ``.``, ``-``; else raise ValueError.

    Parameters
    ----------
    name : str
        A claim name; it becomes a file name under the results folder.
    func : str
        The caller, named in the error message.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{func}: name={name!r} must be a non-empty string of letters, digits, '_', '.', '-' "
            "(it becomes a file name under results/)"
        )
    return name


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """The outcome of checking one claim of the paper.

    Attributes
    ----------
    name : str
        Registry name of the claim, e.g. ``"column_norm_formula"``.
    claim : str
        The claim in words.
    source : str
        Where it comes from: ``"Lemma 3.1"``, ``"docs/math.md §1"``, ``"Figure 2"``.
    data : str
        What the check ran on (instance family, sizes, number of trials).
    measured : dict or float
        The measured quantities.
    expected : str or dict or float
        The bound or expected value it is compared with.
    verdict : str
        One of ``"holds"``, ``"fails"``, ``"inconclusive"``, ``"skipped"``, ``"error"``.
    seeds : list
        Seed entropy used, so the run can be repeated exactly.
    details : str
        Free text: how the verdict was reached, or the traceback for ``"error"``.
    elapsed_s : float
        Wall-clock seconds of the check.
    figure_data : dict or None
        Arrays and scalars for the claim's figure; written by the driver with :func:`save_claim_data`
        and left out of :meth:`to_dict`.
    """

    name: str
    claim: str
    source: str
    data: str
    measured: Any
    expected: Any
    verdict: str
    seeds: list = dataclasses.field(default_factory=list)
    details: str = ""
    elapsed_s: float = 0.0
    figure_data: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(
                f"ClaimResult: verdict={self.verdict!r} for claim {self.name!r} is not valid; use one of {VERDICTS}"
            )
        check_name(self.name, "ClaimResult")

    @classmethod
    def from_dict(cls, record: dict) -> "ClaimResult":
        """The record :meth:`to_dict` wrote (numbers as JSON keeps them; ``figure_data`` stays on disk).

        Raises
        ------
        ValueError
            When ``record`` lacks a field or has one :class:`ClaimResult` does not know.
        """
        if not isinstance(record, dict):
            raise TypeError(f"ClaimResult.from_dict: record must be a dict, got {type(record).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"figure_data"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not required <= set(record) <= names:
            raise ValueError(f"ClaimResult.from_dict: record has fields {sorted(record)}; need {sorted(required)} "
                             f"and at most {sorted(names)} (was it written by ClaimResult.to_dict?)")
        return cls(**record)

    def to_dict(self) -> dict:
        """Return a JSON-safe dict of every field except ``figure_data`` (numpy types become Python ones)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "figure_data"}
        return to_jsonable(fields)


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """A checkable claim: its name, source, statement and the function that checks it.

    Attributes
    ----------
    name, source, claim : str
        As in :class:`ClaimResult`.
    run : callable
        ``run(size="quick" | "full", rng=0, backend="auto") -> ClaimResult``; must be a module-level function so
        that it can be sent to worker processes.
    """

    name: str
    source: str
    claim: str
    run: Any


def check_size(size: str, claim: str) -> str:
    """Validate the ``size`` argument of a claim's ``run`` (``"quick"`` for CI, ``"full"`` for the report)."""
    if size not in SIZES:
        raise ValueError(f"{claim}: size={size!r} is not valid; pass one of {SIZES}")
    return size
