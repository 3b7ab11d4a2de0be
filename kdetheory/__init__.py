"""kdetheory: a reference toolkit for kernel-density-based attention (KDEformer, ICML 2023).

Subpackages: :mod:`kdetheory.kde` (exact and fast KDE), :mod:`kdetheory.attention`
(exact, KDEformer, baselines), :mod:`kdetheory.amm` (Lemma 3.1), :mod:`kdetheory.lsh`,
:mod:`kdetheory.linalg` (spectral norms, stable rank),
:mod:`kdetheory.testing` (hypothesis strategies), :mod:`kdetheory.datasets`.
"""
from . import amm, attention, kde, linalg, lsh
from ._rng import as_generator

__version__ = "0.1.0"
__all__ = ["amm", "attention", "kde", "linalg", "lsh", "as_generator", "__version__"]
