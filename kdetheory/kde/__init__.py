"""Kernel density estimation: exact sums and the fast estimators of Theorem 2.1."""
from .._array import wrap_public
from ._base import KDEEstimator, KDEResult, PreprocessingCost
from .ckns import CKNSKDE
from .exact import ExactKDE, exp_kde, gaussian_kde
from .hbe import HashingBasedKDE
from .sampling import RandomSamplingKDE
from .weighted_exp import WeightedExpKDE, WeightedExpKDEResult

__all__ = [
    "CKNSKDE",
    "ExactKDE",
    "HashingBasedKDE",
    "KDEEstimator",
    "KDEResult",
    "PreprocessingCost",
    "RandomSamplingKDE",
    "WeightedExpKDE",
    "WeightedExpKDEResult",
    "exp_kde",
    "gaussian_kde",
]
wrap_public(globals(), __all__)  # PyTorch / JAX arrays in, the caller's array type out (DLPack, no copy)
