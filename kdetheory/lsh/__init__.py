"""Locality-sensitive hashing: p-stable Euclidean LSH (Datar et al. 2004) and its bucket tables."""
from .euclidean import EuclideanLSH, e2lsh_collision_probability

__all__ = ["EuclideanLSH", "e2lsh_collision_probability"]
