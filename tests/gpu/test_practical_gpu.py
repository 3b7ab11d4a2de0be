"""GPU (CuPy) parity of the practical KDEformer and the baselines: skipped without CuPy and a GPU."""
import numpy as np
import pytest

from kdetheory._array import cupy_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]


def _instance(lead, n_q, n_k, d=16, dv=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return tuple((rng.standard_normal(lead + shape) * s).astype(dtype)
                 for shape, s in (((n_q, d), 0.4), ((n_k, d), 0.4), ((n_k, dv), 1.0)))


@pytest.mark.parametrize("sampling", ["values", "columns", "uniform"])
@pytest.mark.parametrize("n_q,n_k,b,m", [(300, 300, 32, 64), (257, 411, 50, 33)])
def test_practical_cupy_matches_numpy(sampling, n_q, n_k, b, m):
    import cupy as cp

    from kdetheory.attention.practical import kdeformer_practical

    Q, K, V = _instance((2, 3), n_q, n_k)
    ref = kdeformer_practical(Q, K, V, bucket_size=b, n_samples=m, sampling=sampling, rng=4, backend="numpy")
    gpu = kdeformer_practical(cp.asarray(Q), cp.asarray(K), cp.asarray(V), bucket_size=b, n_samples=m,
                              sampling=sampling, rng=4, backend="auto")
    assert isinstance(gpu.output, cp.ndarray)
    np.testing.assert_allclose(gpu.output.get(), ref.output, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gpu.log_row_sums.get(), ref.log_row_sums, rtol=1e-12)


def test_practical_cupy_float32():
    import cupy as cp

    from kdetheory.attention.practical import kdeformer_practical

    Q, K, V = _instance((2,), 256, 256, dtype=np.float32)
    ref = kdeformer_practical(Q, K, V, bucket_size=32, n_samples=64, rng=1, backend="numpy")
    gpu = kdeformer_practical(*(cp.asarray(a) for a in (Q, K, V)), bucket_size=32, n_samples=64, rng=1)
    assert gpu.output.dtype == cp.float32
    np.testing.assert_allclose(gpu.output.get(), ref.output, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [
    ("performer", {"n_features": 64}), ("scatterbrain", {"n_features": 64, "local_size": 32}),
    ("reformer", {"bucket_size": 32, "n_rounds": 2}), ("nystrom", {"n_landmarks": 32}),
    ("uniform_sampling", {"n_samples": 64}), ("hyperattention", {"bucket_size": 32, "n_samples": 64}),
])
def test_baselines_cupy_match_numpy(name, kwargs):
    import cupy as cp

    from kdetheory.attention import baselines

    f = getattr(baselines, name)
    Q, K, V = _instance((2,), 200, 240)
    ref = f(Q, K, V, rng=3, **kwargs).output
    gpu = f(cp.asarray(Q), cp.asarray(K), cp.asarray(V), rng=3, **kwargs).output
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(gpu.get(), ref, rtol=1e-9, atol=1e-11)
