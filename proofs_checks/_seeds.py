"""Independent, reproducible randomness for trials: one root seed spawned into one generator per trial.

Trials never share a global seed, so they can run in any order, on any worker, and be repeated from the
recorded entropy alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["trial_generators"]


def trial_generators(seed, n: int) -> list[np.random.Generator]:
    """Return ``n`` independent generators spawned from one seed.

    Parameters
    ----------
    seed : int, sequence of int or numpy.random.SeedSequence
        Root entropy. The same seed gives the same generators in the same order.
    n : int
        Number of generators (one per trial).

    Returns
    -------
    list of numpy.random.Generator
        ``[Generator(PCG64(s)) for s in SeedSequence(seed).spawn(n)]``: statistically independent streams,
        so trials can run in any order or on any worker.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"trial_generators: n={n!r} must be a non-negative int (the number of trials)")
    if isinstance(seed, np.random.Generator):
        raise TypeError(
            "trial_generators: seed is a Generator; pass its seed (int or SeedSequence) so that trials are "
            "reproducible from the recorded entropy"
        )
    if seed is None:
        raise ValueError("trial_generators: seed=None would give unrepeatable trials; pass an int such as 0")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.default_rng(child) for child in root.spawn(int(n))]
