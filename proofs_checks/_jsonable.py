"""Plain-JSON form of measured values: numpy scalars and arrays, tuples, paths and non-finite floats.

Records (:mod:`proofs_checks._records`), statistics (:mod:`proofs_checks._stats`) and the files written by
:mod:`proofs_checks._io` all go through :func:`to_jsonable`, so one rule decides how a value is stored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and non-finite floats into plain JSON values.

    Parameters
    ----------
    value : Any
        A number, string, array, an object with a ``to_dict()`` method (:class:`BinomialTest`,
        :class:`SlopeFit`), or nested dict/list/tuple of those.

    Returns
    -------
    Any
        The same structure made of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
        Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` because strict JSON has no
        literal for them and a bound of ``inf`` is a meaningful measurement.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if hasattr(value, "to_dict") and not isinstance(value, type):  # BinomialTest, SlopeFit, ClaimResult
        return to_jsonable(value.to_dict())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, complex):
        raise TypeError(f"to_jsonable: complex value {value!r} has no JSON form; store real and imaginary parts")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.random.SeedSequence):
        return to_jsonable(value.entropy)
    raise TypeError(
        f"to_jsonable: cannot convert {type(value).__name__} value {value!r} to JSON; "
        "pass numbers, strings, numpy arrays or dicts/lists of them"
    )
