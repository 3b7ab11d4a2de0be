"""Kernel density estimation: exact sums and the fast estimators of Theorem 2.1."""
from .exact import exp_kde, gaussian_kde

__all__ = ["exp_kde", "gaussian_kde"]
