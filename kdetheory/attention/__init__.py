"""Softmax attention: exact reference, KDEformer (theory and practice) and baselines."""
from .exact import row_sums, softmax_attention, softmax_matrix

__all__ = ["row_sums", "softmax_attention", "softmax_matrix"]
