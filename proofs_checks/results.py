"""Read what ``python -m proofs_checks`` wrote: the verdict records and each claim's figure data.

This is the public way for figures, notebooks and the README to reach results; the file layout behind it
(``claims.json``, ``<name>.npz``, ``<name>.json``) is private to :mod:`proofs_checks._io`.

Examples
--------
>>> from proofs_checks import results
>>> if results.available("figure_2_stable_rank", "results"):          # doctest: +SKIP
...     data = results.load("figure_2_stable_rank", "results")
"""

from __future__ import annotations

import json
from pathlib import Path

from ._io import has_claim_data, load_claim_data

__all__ = ["DEFAULT_DIR", "default_folder", "load", "available", "records"]

#: Where ``python -m proofs_checks`` writes quick runs when ``--out`` is not given (relative to the working folder).
DEFAULT_DIR = Path("results")


def default_folder(size: str) -> Path:
    """Where ``python -m proofs_checks --size SIZE`` writes without ``--out``: ``results`` for ``"quick"``,
    ``results/full`` for ``"full"`` (so a full run never overwrites the quick records)."""
    if size not in ("quick", "full"):
        raise ValueError(f"default_folder: size={size!r} is not valid; pass 'quick' or 'full'")
    return DEFAULT_DIR / "full" if size == "full" else DEFAULT_DIR


def load(name: str, results_dir=DEFAULT_DIR) -> dict:
    """The figure data claim ``name`` saved in ``results_dir``: arrays and scalars in one dict.

    Parameters
    ----------
    name : str
        Registry name of the claim, e.g. ``"figure_4_budget"`` (``python -m proofs_checks --list``).
    results_dir : str or path, default ``results``
        The folder a run wrote to (its ``--out``).

    Returns
    -------
    dict
        ``numpy.ndarray`` values for arrays, plain Python values for the rest.

    Raises
    ------
    ValueError
        When ``name`` is not a valid claim name.
    FileNotFoundError
        When the claim has no data there; the message says which command writes it.
    """
    return load_claim_data(name, results_dir)


def available(name: str, results_dir=DEFAULT_DIR) -> bool:
    """True when :func:`load` would find data for claim ``name`` in ``results_dir``."""
    return has_claim_data(name, results_dir)


def records(results_dir=DEFAULT_DIR) -> list[dict]:
    """The verdict records of the run in ``results_dir`` (``claims.json``), one dict per claim in report order.

    Raises
    ------
    FileNotFoundError
        When ``results_dir`` holds no ``claims.json``; run ``python -m proofs_checks --out DIR`` first.
    """
    path = Path(results_dir) / "claims.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"records: no claims.json in {Path(results_dir)}; run `python -m proofs_checks --out {results_dir}` first"
        )
    return json.loads(path.read_text())
