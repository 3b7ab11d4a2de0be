"""Baselines of the KDEformer comparison (docs/math.md §7.0) and the newest peers, one module per method, one
calling convention: ``f(Q, K, V, *, <budget>, scale=1.0, rng=None) -> result with .output and .cost``
(``cost`` an :class:`~kdetheory.attention._cost.AttentionCost`)."""
from ..._array import wrap_public
from .._cost import AttentionCost, StageCost
from ._common import ApproxResult
from .budget import METHODS, budget_parameters, feature_dimension
from .coreset import coreset_attention
from .nystrom import nystrom
from .performer import performer
from .reformer import reformer
from .sampling import hyperattention, uniform_sampling
from .scatterbrain import scatterbrain
from .thinformer import thinformer
from .vattention import vattention

__all__ = [
    "ApproxResult",
    "AttentionCost",
    "METHODS",
    "StageCost",
    "budget_parameters",
    "coreset_attention",
    "feature_dimension",
    "hyperattention",
    "nystrom",
    "performer",
    "reformer",
    "scatterbrain",
    "thinformer",
    "uniform_sampling",
    "vattention",
]
wrap_public(globals(), __all__)  # PyTorch / JAX arrays in, the caller's array type out (DLPack, no copy)
