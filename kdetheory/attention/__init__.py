"""Softmax attention: exact reference, KDEformer (theory and practice) and baselines."""
from .._array import wrap_public
from . import baselines
from ._cost import AttentionCost, StageCost
from .exact import row_sums, softmax_attention, softmax_matrix
from .kdeformer import KDEformerResult, diameter_bound, kdeformer, sampled_attention
from .practical import PracticalResult, kdeformer_practical

__all__ = [
    "baselines",
    "AttentionCost",
    "StageCost",
    "row_sums",
    "softmax_attention",
    "softmax_matrix",
    "kdeformer",
    "sampled_attention",
    "diameter_bound",
    "KDEformerResult",
    "kdeformer_practical",
    "PracticalResult",
]
wrap_public(globals(), __all__)  # PyTorch / JAX arrays in, the caller's array type out (DLPack, no copy)
