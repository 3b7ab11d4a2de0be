"""The GPU-native CKNS copies (issue 14, item 3) on CuPy: same seed, same answer as the host reference.

The host draws every random number of both paths (subsamples, projections, offsets, outer-region indices), so a
CuPy estimator must reproduce the NumPy reference: estimates to rounding (the hashing GEMM on the GPU can floor a
point within rounding of a bucket boundary differently, so answers are compared, not bit patterns) and per-query
kernel / hash / copy counts exactly, for both sizings; its structures must live on the device (scanned shells,
tables, the data in float64) and a worst-case query must hand the driver nothing larger than one value per query.
The namespace-generic code path itself is checked on the CPU by tests/test_ckns_device_standin.py. No statistical
test here (all comparisons are exact or to rounding).

Skips cleanly without CuPy or a CUDA device.
"""
import numpy as np
import pytest

from kdetheory._array import cupy_available
from kdetheory._cupy import _ckns, _hbe
from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities
from kdetheory.kde import CKNSKDE
from kdetheory.kde import ckns as ckns_module

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

H = 1.5


def _cp():
    from kdetheory._array import get_cupy

    return get_cupy()


@pytest.fixture(scope="module")
def data(blob):
    return blob  # tests/gpu/conftest.py (bandwidth H)


def _kw(sizing, **kw):
    base = {"bandwidth": H, "eps": 0.5, "mu_min": 0.02, "brute_force_max": 50, "exact_fallback": False,
            "sizing": sizing, "n_copies": 20 if sizing == "worst_case" else 120}
    base.update(kw)
    return base


@pytest.mark.parametrize("sizing", ["worst_case", "adaptive"])
def test_gpu_matches_host(data, sizing):
    cp = _cp()
    X, Y, _ = data
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    host = CKNSKDE(X, rng=3, backend="numpy", weights=w, **_kw(sizing)).query(Y, rng=4)
    dev = CKNSKDE(cp.asarray(X), rng=3, weights=cp.asarray(w), **_kw(sizing)).query(cp.asarray(Y), rng=4)
    assert isinstance(dev.estimate, cp.ndarray) and dev.estimate.dtype == np.float64
    np.testing.assert_allclose(cp.asnumpy(dev.estimate), host.estimate, rtol=1e-9)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(host, field), err_msg=field)
    assert host.hash_evaluations.any() and np.all(host.samples > 0)


def test_gpu_float32_stays_float32(data):
    """float32 data: float32 CuPy answers (the float32 GEMMs of cuBLAS and the host BLAS round differently, so a
    point within rounding of a bucket boundary may hash differently: no bitwise comparison with the host here;
    the stand-in test compares the float32 code path exactly)."""
    cp = _cp()
    X, Y, _ = data
    res = CKNSKDE(cp.asarray(X, dtype=cp.float32), rng=3, **_kw("worst_case")).query(cp.asarray(Y, dtype=cp.float32),
                                                                                    rng=4)
    est = cp.asnumpy(res.estimate)
    assert res.estimate.dtype == np.float32 and np.all(np.isfinite(est)) and np.all(est >= 0)


def test_gpu_structures_live_on_the_device(data):
    cp = _cp()
    X, _, _ = data
    est = CKNSKDE(cp.asarray(X), **_kw("worst_case", brute_force_max=0), rng=1)  # every shell hashed
    assert isinstance(est._Xh, cp.ndarray) and est._Xh.dtype == np.float64
    n_lsh = 0
    for lev in est.levels:
        if lev.exact:
            continue
        sc = lev.device
        assert isinstance(sc, _ckns.ScannedShells)
        assert all(isinstance(a, cp.ndarray) for a in (sc.index, sc.coef, sc.copy, sc.lo, sc.hi))
        for units in lev.copies:
            for u in units:
                if u.lsh:
                    n_lsh += 1
                    assert isinstance(u.tables, _hbe.DeviceBucketTables) and isinstance(u.tables.members, cp.ndarray)
                    assert isinstance(u.coef_pos, cp.ndarray) and isinstance(u.projections, cp.ndarray)
    assert n_lsh > 0
    # no (n, d) host array anywhere on the estimator
    assert not any(isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[0] == X.shape[0] for v in vars(est).values())


def test_gpu_moves_only_per_query_vectors(data, monkeypatch):
    cp = _cp()
    X, Y, _ = data
    sizes = []
    real = ckns_module.to_numpy

    def counted(a):
        sizes.append(int(a.size) if hasattr(a, "size") else 1)
        return real(a)

    monkeypatch.setattr(ckns_module, "to_numpy", counted)
    est = CKNSKDE(cp.asarray(X), **_kw("worst_case"), rng=2)
    assert sizes == []
    est.query(cp.asarray(Y), rng=3)
    assert sizes and max(sizes) <= Y.shape[0]


def test_gpu_larger_lsh_instance_matches_host():
    """n = 50,000 in 16 dimensions, every shell hashed (brute_force_max=0): larger tables and buckets."""
    cp = _cp()
    X = clustered_points(50000, 16, rng=1)
    Y, _, _ = queries_at_densities(X, [3e-3, 1e-3], 8, bandwidth=2.0, rng=2)
    kw = {"bandwidth": 2.0, "eps": 0.5, "mu_min": 1e-3, "brute_force_max": 0, "exact_fallback": False,
          "n_copies": 6}
    host = CKNSKDE(X, rng=5, backend="numpy", **kw).query(Y, rng=6)
    dev = CKNSKDE(cp.asarray(X), rng=5, **kw).query(cp.asarray(Y), rng=6)
    np.testing.assert_allclose(cp.asnumpy(dev.estimate), host.estimate, rtol=1e-9)
    np.testing.assert_array_equal(dev.kernel_evaluations, host.kernel_evaluations)
    np.testing.assert_array_equal(dev.hash_evaluations, host.hash_evaluations)
