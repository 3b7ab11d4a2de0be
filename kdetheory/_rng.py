"""Random-number handling: ``rng=None`` is normalised once, here (SciPy SPEC 7).

Every public function that draws randomness takes ``rng`` (None, int, SeedSequence or
Generator), calls :func:`as_generator` once, and draws all randomness on the host with
NumPy, so that every backend receives the same hashes and indices.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_generator", "spawn"]


def as_generator(rng=None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``rng``.

    Parameters
    ----------
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        ``None`` draws fresh OS entropy; an int or SeedSequence seeds a new PCG64
        generator; a Generator is returned unchanged (so callers share its stream).

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        For any other type (``numpy.random.RandomState`` included: legacy global-style
        state is not accepted; pass ``np.random.default_rng(seed)`` instead).
    ValueError
        For a negative integer seed.
    """
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: got the negative seed {rng}; pass a non-negative int.")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng: got an object of type {type(rng).__name__}; pass None, an int seed, "
        "a numpy.random.SeedSequence or a numpy.random.Generator."
    )


def spawn(rng, n: int) -> list[np.random.Generator]:
    """Return ``n`` statistically independent generators derived from ``rng``.

    Parameters
    ----------
    rng : None, int, SeedSequence or Generator
        Parent randomness (see :func:`as_generator`).
    n : int
        Number of children, ``n >= 0``.

    Returns
    -------
    list of numpy.random.Generator
        Independent streams (``Generator.spawn``, i.e. ``SeedSequence.spawn`` underneath).
    """
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n: got {n!r}; pass a non-negative int number of generators.")
    return as_generator(rng).spawn(int(n))
