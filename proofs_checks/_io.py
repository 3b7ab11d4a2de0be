"""A claim's figure data on disk: ``<results_dir>/<name>.npz`` (arrays) and ``<name>.json`` (the rest).

Claims carry their figure data in ``ClaimResult.figure_data`` and never touch files, so they can run on any
worker; the command line writes it with :func:`save_claim_data`. Figures read it through the public
:mod:`proofs_checks.results`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._jsonable import to_jsonable
from ._records import check_name

__all__ = ["save_claim_data", "load_claim_data", "remove_claim_data", "has_claim_data"]


def save_claim_data(name: str, data: Mapping[str, Any], results_dir) -> list[Path]:
    """Write a claim's figure data as ``<results_dir>/<name>.npz`` (arrays) and ``<name>.json`` (the rest).

    Parameters
    ----------
    name : str
        Claim name.
    data : mapping of str to array or JSON-able value
        ``numpy.ndarray`` values go to the ``.npz`` file; everything else (numbers, strings, lists, dicts)
        must be JSON-able and goes to the ``.json`` file.
    results_dir : str or path
        Created if missing.

    Returns
    -------
    list of Path
        The files written. Stale files of the same name from an earlier run are removed, so that
        :func:`load_claim_data` never mixes two runs.
    """
    func = "save_claim_data"
    check_name(name, func)
    if not isinstance(data, Mapping):
        raise TypeError(f"{func}: data must be a dict of arrays and scalars, got {type(data).__name__}")
    arrays = {str(k): v for k, v in data.items() if isinstance(v, np.ndarray)}
    scalars = {str(k): v for k, v in data.items() if not isinstance(v, np.ndarray)}
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise TypeError(f"{func}: data[{key!r}] is an object array; store numeric arrays or lists")
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    npz, js = remove_claim_data(name, out)
    if arrays:
        np.savez(npz, **arrays)
        written.append(npz)
    if scalars:
        js.write_text(json.dumps(to_jsonable(scalars), indent=2, allow_nan=False) + "\n")
        written.append(js)
    return written


def remove_claim_data(name: str, results_dir) -> tuple[Path, Path]:
    """Delete ``<name>.npz`` and ``<name>.json`` from ``results_dir`` if present; return both paths.

    Used before a claim's new data is written, and for a claim that produced none this run (an error), so that
    a figure never shows the data of an earlier run as if it were current.
    """
    check_name(name, "remove_claim_data")
    out = Path(results_dir)
    paths = (out / f"{name}.npz", out / f"{name}.json")
    for path in paths:
        path.unlink(missing_ok=True)
    return paths


def load_claim_data(name: str, results_dir) -> dict:
    """Read back what :func:`save_claim_data` wrote, as one dict (arrays and scalars together).

    Raises
    ------
    FileNotFoundError
        When neither ``<name>.npz`` nor ``<name>.json`` exists; run ``python -m proofs_checks --claims <name>``.
    """
    func = "load_claim_data"
    check_name(name, func)
    out = Path(results_dir)
    npz, js = out / f"{name}.npz", out / f"{name}.json"
    if not npz.exists() and not js.exists():
        raise FileNotFoundError(
            f"{func}: no data for claim {name!r} in {out} (looked for {npz.name}, {js.name}); "
            f"run `python -m proofs_checks --claims {name} --out {out}` first"
        )
    data: dict = {}
    if js.exists():
        data.update(json.loads(js.read_text()))
    if npz.exists():
        with np.load(npz, allow_pickle=False) as f:
            data.update({k: f[k] for k in f.files})
    return data


def has_claim_data(name: str, results_dir) -> bool:
    """True when :func:`load_claim_data` would find data for ``name`` in ``results_dir``."""
    check_name(name, "has_claim_data")
    out = Path(results_dir)
    return (out / f"{name}.npz").exists() or (out / f"{name}.json").exists()
