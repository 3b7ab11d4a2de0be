"""Locality-sensitive hashing: p-stable Euclidean LSH (Datar et al. 2004) and its bucket tables,
and angular (random-hyperplane) LSH with the Gray-code bucket order of KDEformer's Section 4."""
from .angular import AngularLSH, gray_code_order, gray_code_rank, order_adjacency
from .euclidean import EuclideanLSH, e2lsh_collision_probability

__all__ = [
    "AngularLSH",
    "EuclideanLSH",
    "e2lsh_collision_probability",
    "gray_code_order",
    "gray_code_rank",
    "order_adjacency",
]
