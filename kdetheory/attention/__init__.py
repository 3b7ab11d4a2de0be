"""Softmax attention: exact reference, KDEformer (theory and practice) and baselines."""
from . import baselines
from .exact import row_sums, softmax_attention, softmax_matrix
from .kdeformer import KDEformerResult, diameter_bound, kdeformer, sampled_attention
from .practical import PracticalResult, kdeformer_practical

__all__ = [
    "baselines",
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
