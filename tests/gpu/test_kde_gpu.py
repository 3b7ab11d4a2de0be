"""GPU (CuPy) paths of the KDE estimators: same seed, same answer as the host (except the GPU-native HBE,
which draws on the device: see tests/gpu/test_hbe_gpu.py); CuPy in, CuPy out.

Skips cleanly without CuPy or a CUDA device.
"""
import numpy as np
import pytest

from kdetheory._array import cupy_available

pytestmark = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")

from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities  # noqa: E402
from kdetheory.kde import (CKNSKDE, ExactKDE, HashingBasedKDE, RandomSamplingKDE,  # noqa: E402
                           gaussian_kde)
from kdetheory.lsh import EuclideanLSH  # noqa: E402

H = 1.5


@pytest.fixture(scope="module")
def data():
    X = clustered_points(20000, 5, n_clusters=6, spread=0.5, separation=4.0, rng=0)
    Y, _, mu = queries_at_densities(X, [0.1, 0.05, 0.02], 10, bandwidth=H, rng=1)
    return X, Y, mu


def _cp():
    from kdetheory._array import get_cupy

    return get_cupy()


MAKERS = [
    lambda X, **kw: ExactKDE(X, bandwidth=H, **kw),
    lambda X, **kw: RandomSamplingKDE(X, bandwidth=H, eps=0.5, mu_min=0.02, **kw),
    lambda X, **kw: RandomSamplingKDE(X, bandwidth=H, eps=0.5, mu_min=0.02, permuted=True, **kw),
    lambda X, **kw: HashingBasedKDE(X, bandwidth=H, eps=0.5, mu_min=0.02, variance_constant=0.3,
                                    exact_fallback=False, **kw),
    lambda X, **kw: CKNSKDE(X, bandwidth=H, eps=0.5, mu_min=0.02, n_copies=20, brute_force_max=0,
                            exact_fallback=False, **kw),
]


@pytest.mark.parametrize("make", MAKERS)
def test_cupy_in_cupy_out_and_matches_host(make, data):
    cp = _cp()
    X, Y, mu = data
    host = make(X, rng=3, backend="numpy").query(Y, rng=4)
    dev = make(cp.asarray(X), rng=3).query(cp.asarray(Y), rng=4)
    assert type(dev.estimate).__module__.split(".")[0] == "cupy"
    if make in (MAKERS[1], MAKERS[2], MAKERS[3]):
        # The GPU-native HBE and random sampling draw on the device (no upload of T x m uniforms or m x s
        # indices), so they give the same estimator, not the same numbers: their distributions are tested in
        # tests/gpu/test_hbe_gpu.py and tests/gpu/test_sampling_gpu.py (the same code path bit for bit against
        # the host in tests/test_hbe_device_standin.py and tests/test_sampling_device_standin.py).
        est = cp.asnumpy(dev.estimate)
        assert np.all(np.isfinite(est)) and np.all(est >= 0) and np.all(est <= 1.0)
        if make is not MAKERS[3]:  # worst-case random sampling: the same sample count per query
            assert np.array_equal(dev.kernel_evaluations, host.kernel_evaluations)
        return
    # Same draws on every backend; hashing floors of GPU GEMMs can differ from the host's only for
    # points within rounding of a bucket boundary, so compare the answers, not bit patterns.
    np.testing.assert_allclose(cp.asnumpy(dev.estimate), host.estimate, rtol=1e-9)
    assert np.array_equal(dev.kernel_evaluations, host.kernel_evaluations)


def test_gpu_hash_matches_host():
    cp = _cp()
    X = np.random.default_rng(0).normal(size=(5000, 16))
    lsh = EuclideanLSH(16, 6, 4.0, n_tables=8, rng=1)
    agree = (cp.asnumpy(lsh.hash(cp.asarray(X))) == lsh.hash(X)).mean()
    assert agree > 1 - 1e-6


def test_gpu_random_sampling_is_accurate(data):
    cp = _cp()
    X, Y, mu = data
    est = RandomSamplingKDE(cp.asarray(X), bandwidth=H, eps=0.3, delta=0.05, mu_min=0.02, rng=0)
    r = est.query(cp.asarray(np.repeat(Y, 10, axis=0)))
    err = np.abs(cp.asnumpy(r.estimate) - np.repeat(mu, 10)) / np.repeat(mu, 10)
    from scipy.stats import binomtest

    assert binomtest(int((err > 0.3).sum()), err.size, 0.05, alternative="greater").pvalue >= 1e-6
    np.testing.assert_allclose(cp.asnumpy(gaussian_kde(cp.asarray(X), cp.asarray(Y), bandwidth=H)), mu,
                               rtol=1e-10)
