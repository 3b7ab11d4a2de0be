"""Baselines of the KDEformer comparison (SPEC 7.0), one module per method, one calling
convention: ``f(Q, K, V, *, <budget>, scale=1.0, rng=None) -> result with .output and .cost``."""
from ._common import ApproxResult
from .budget import METHODS, budget_parameters, feature_dimension
from .nystrom import nystrom
from .performer import performer
from .reformer import reformer
from .sampling import hyperattention, uniform_sampling
from .scatterbrain import scatterbrain

__all__ = [
    "ApproxResult",
    "METHODS",
    "budget_parameters",
    "feature_dimension",
    "hyperattention",
    "nystrom",
    "performer",
    "reformer",
    "scatterbrain",
    "uniform_sampling",
]
