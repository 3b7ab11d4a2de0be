"""Fixtures shared by the GPU test files (collected only with tests/gpu; every test there is marked ``gpu``)."""
import pytest

from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities

#: bandwidth of the shared blob instance
BLOB_BANDWIDTH = 1.5


@pytest.fixture(scope="session")
def blob():
    """20,000 clustered points in 5 dimensions and 30 queries at densities 0.1, 0.05, 0.02 (bandwidth 1.5):
    ``(X, Y, mu)`` on the host."""
    X = clustered_points(20000, 5, n_clusters=6, spread=0.5, separation=4.0, rng=0)
    Y, _, mu = queries_at_densities(X, [0.1, 0.05, 0.02], 10, bandwidth=BLOB_BANDWIDTH, rng=1)
    return X, Y, mu
