"""The small clustered instance shared by the device stand-in tests (tests/test_*_device_standin.py)."""
import numpy as np

from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities

#: bandwidth of the instance
H = 1.5


def standin_instance(n=1501, d=5, m=21, dtype=np.float64):  # odd sizes on purpose
    """``(X, Y, mu)``: ``n`` points in 4 clusters and ``m`` queries at densities 0.15, 0.1, 0.05 (bandwidth ``H``)."""
    X = clustered_points(n, d, n_clusters=4, spread=0.5, separation=4.0, rng=0)
    Y, _, mu = queries_at_densities(X, [0.15, 0.1, 0.05], m // 3, bandwidth=H, rng=1)
    return X.astype(dtype), Y.astype(dtype), mu
