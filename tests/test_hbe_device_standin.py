"""Stand-in tests of the GPU-native hashing-based KDE (issue 14, item 3), run on the CPU.

``kdetheory._cupy._hbe`` is namespace generic, so its code path runs on NumPy arrays. An estimator whose
``_on_device`` is forced on with NumPy data must give the host reference's estimates and per-query kernel /
hash counts exactly (same seed, same draws), move only per-query vectors to the host, keep buckets exact under a
colliding mix, and search segments like ``np.searchsorted``. The same code on CuPy is tested in
tests/gpu/test_hbe_gpu.py. No statistical test here (all comparisons are exact).
"""

import numpy as np
import pytest
from standin_data import H, standin_instance

from kdetheory._array import cupy_available
from kdetheory._cupy import _hbe
from kdetheory.kde import HashingBasedKDE
from kdetheory.kde import hbe as hbe_module
from kdetheory.lsh.euclidean import BucketTables

gpu = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")


class StandIn(HashingBasedKDE):
    """The device code path on NumPy arrays (``kdetheory._cupy._hbe`` run with ``xp = numpy``)."""

    _on_device = True


def _kw(**kw):
    base = dict(bandwidth=H, eps=0.5, mu_min=0.05, variance_constant=0.3, exact_fallback=False)
    base.update(kw)
    return base


# ------------------------------------------------------------------------------------------------------------------
# stand-in: the device code path, run on NumPy arrays


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizing", ["worst_case", "adaptive"])
@pytest.mark.parametrize("form", ["sample", "bucket"])
def test_standin_matches_host_reference(form, sizing, dtype):
    """Same seed, same answer: estimates, kernel / hash evaluations, samples and levels per query all equal the
    NumPy reference's (weighted data, so the weighted draw and the bucket weights are exercised)."""
    X, Y, _ = standin_instance(dtype=dtype)
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    kw = _kw(form=form, sizing=sizing, weights=w, backend="numpy")
    ref = HashingBasedKDE(X, rng=3, **kw).query(Y, rng=4)
    dev = StandIn(X, rng=3, **kw).query(Y, rng=4)
    assert dev.estimate.dtype == ref.estimate.dtype == dtype
    np.testing.assert_allclose(dev.estimate, ref.estimate, rtol=1e-12 if dtype == np.float64 else 1e-6)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert np.all(ref.hash_evaluations > 0)  # the tables answered


class FusedStandIn(StandIn):
    """The driver's fused-kernel route on NumPy arrays, the kernel emulated by :func:`_emulated_fused`."""

    _fused = True


def _emulated_fused(Xh, Yh, rows, level, codes, u, table0, n_groups=0, Z=None, est=None, kev=None):
    """``fused_sample_samples``' contract (outputs filled in place; query i is row ``rows[i]`` of the full ``Yh``)
    computed by the namespace path it is tested against on the GPU (tests/gpu/test_hbe_gpu.py)."""
    from kdetheory.kde._mom import median_of_means

    T, m, _ = codes.shape
    est, kev = (np.empty(m) if a is None else a for a in (est, kev))  # allocated when omitted
    assert Z.shape == (m, T) and Z.flags.c_contiguous and rows.shape == (m,) and rows.dtype == np.int64
    assert est.shape == kev.shape == (m,) and est.flags.c_contiguous and kev.flags.c_contiguous
    Zr, kr = _hbe.device_sample_samples(Xh, Yh[rows], None, level, codes, u, table0)
    Z[...], kev[...] = Zr, kr
    if n_groups:
        est[...] = median_of_means(Zr, n_groups)
    return Z, est, kev


@pytest.mark.parametrize("sizing", ["worst_case", "adaptive"])
def test_fused_route_of_the_driver_matches_host_reference(monkeypatch, sizing):
    """The driver's fused route (rows passed instead of gathered queries, outputs written into slices of one
    (2, m) array, counts as whole floats, chunks over queries) gives the host reference's answers exactly, with
    one transfer per level visited (adaptive sizing: per batch of tables). Small chunks force several query chunks
    per level."""
    from kdetheory import _config

    monkeypatch.setattr(_hbe, "fused_sample_samples", _emulated_fused)
    monkeypatch.setattr(_config, "CHUNK_BYTES", 2**14)
    X, Y, _ = standin_instance()
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    kw = _kw(sizing=sizing, weights=w, backend="numpy")
    ref = HashingBasedKDE(X, rng=3, **kw).query(Y, rng=4)
    sizes = _counting_to_numpy(monkeypatch)
    calls = _counting_level_calls(monkeypatch, FusedStandIn)
    est = FusedStandIn(X, rng=3, **kw)
    build = len(sizes)
    dev = est.query(Y, rng=4)
    np.testing.assert_allclose(dev.estimate, ref.estimate, rtol=1e-12)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    if sizing == "worst_case":
        assert sizes[build:] == [2 * c for c in calls], (sizes[build:], calls)
    else:  # each batch of the stopping rule: its samples and counts in one transfer
        assert calls and len(sizes[build:]) == len(calls), (sizes[build:], calls)
    assert _config.block_shape(Y.shape[0], est.levels[-1].n_tables, 8,
                               temporaries=4 * (est.levels[-1].k + X.shape[1] + 4))[0] < Y.shape[0]  # chunked


def test_standin_tables_equal_host_tables():
    """Every array of a level's device tables equals the host ``BucketTables`` of the same build."""
    X, _, _ = standin_instance()
    ref, dev = HashingBasedKDE(X, rng=7, backend="numpy", **_kw()), StandIn(X, rng=7, backend="numpy", **_kw())
    for a, b in zip(ref.levels, dev.levels):
        assert isinstance(a.tables, BucketTables) and isinstance(b.tables, _hbe.DeviceBucketTables)
        assert b.tables.salt == 0
        for key in ("first", "last", "bucket_ptr", "bucket_mix", "bucket_key", "members", "bucket_weight", "cdf_key"):
            np.testing.assert_array_equal(getattr(b.tables, key), getattr(a.tables, key), err_msg=key)


def _counting_to_numpy(monkeypatch):
    sizes = []
    real = hbe_module.to_numpy

    def counted(a):
        sizes.append(int(np.size(a)))
        return real(a)

    monkeypatch.setattr(hbe_module, "to_numpy", counted)
    return sizes


def _counting_level_calls(monkeypatch, cls):
    calls = []
    real = cls._level_samples

    def counted(self, *a, **k):
        calls.append(a[3].size)
        return real(self, *a, **k)

    monkeypatch.setattr(cls, "_level_samples", counted)
    return calls


def test_standin_moves_only_per_query_vectors(monkeypatch):
    """Build and worst-case query of the device path hand the driver one transfer per level visited, of one
    estimate and one count per query (the host path moves every level's (T, s, k) keys and its (m, T) samples:
    the check has teeth)."""
    X, Y, _ = standin_instance()
    sizes = _counting_to_numpy(monkeypatch)
    calls = _counting_level_calls(monkeypatch, StandIn)
    dev = StandIn(X, rng=2, backend="numpy", **_kw())
    build_sizes = list(sizes)
    dev.query(Y, rng=3)
    assert max(build_sizes, default=0) <= 1, build_sizes  # the bound of the key type only
    query_sizes = sizes[len(build_sizes):]
    assert calls and query_sizes == [2 * c for c in calls], (query_sizes, calls)  # one (2, m_j) array per level
    sizes.clear()
    HashingBasedKDE(X, rng=2, backend="numpy", **_kw()).query(Y, rng=3)
    assert max(sizes) > 2 * Y.shape[0]  # the host path does move tables and samples


def test_resalt_keeps_buckets_exact(monkeypatch):
    """A mix that sends every key to one value (salt 0) is detected at build, and the re-salted tables hold
    exactly the stored points that share the query's full key."""
    real = _hbe.key_mix
    monkeypatch.setattr(_hbe, "key_mix", lambda codes, salt=0: real(codes, salt) * np.uint64(salt > 0))
    g = np.random.default_rng(11)
    codes = g.integers(-2, 2, size=(3, 50, 2))
    members = np.stack([g.permutation(80)[:50] for _ in range(3)])
    tab = _hbe.DeviceBucketTables([(codes, members)], np.ones(80))
    assert tab.salt == 1
    queries = g.integers(-3, 3, size=(3, 40, 2))
    bucket = tab.lookup(queries)
    for t in range(3):
        for i in range(40):
            expect = set(members[t][(codes[t] == queries[t, i]).all(axis=1)])
            b = bucket[t, i]
            got = set() if b < 0 else set(tab.members[tab.first[b]:tab.last[b]])
            assert got == expect


def test_full_key_compare_rejects_mix_twins(monkeypatch):
    """A query whose key shares a stored key's mix but differs from it finds no bucket (no false collision)."""
    monkeypatch.setattr(_hbe, "key_mix", lambda codes, salt=0: codes[..., 0].astype(np.uint64))
    codes = np.array([[[0, 5], [1, 5], [2, 7]]])
    tab = _hbe.DeviceBucketTables([(codes, np.array([[0, 1, 2]]))], np.ones(3))
    bucket = tab.lookup(np.array([[[1, 5], [1, 6], [2, 7], [3, 7]]]))
    np.testing.assert_array_equal(bucket, [[1, -1, 2, -1]])


@pytest.mark.parametrize("side", ["left", "right"])
def test_segment_search_matches_searchsorted(side):
    g = np.random.default_rng(4)
    lens = g.integers(0, 9, size=13)  # empty segments included
    values = np.concatenate([np.sort(g.integers(0, 6, size=k)).astype(float) for k in lens])
    ends = np.cumsum(lens)
    lo, hi = np.repeat(ends - lens, 5), np.repeat(ends, 5)
    targets = g.integers(-1, 7, size=lo.size) + 0.5 * g.integers(0, 2, size=lo.size)
    got = _hbe.segment_search(values, lo, hi, targets, side, int(lens.max()).bit_length() + 1)
    expect = [a + np.searchsorted(values[a:b], v, side=side) for a, b, v in zip(lo, hi, targets)]
    np.testing.assert_array_equal(got, expect)


def test_fused_kernel_rejects_bad_groups_and_key_types():
    """Input checks of the fused kernel (they run before CuPy is imported, so on any machine)."""
    import types

    tab = types.SimpleNamespace(bucket_key=np.zeros((1, 2), np.int32))
    lev = types.SimpleNamespace(tables=tab)
    codes = np.zeros((6, 3, 2), np.int64)
    with pytest.raises(ValueError, match="n_groups"):
        _hbe.fused_sample_samples(None, None, None, lev, codes, None, 0, 4)
    with pytest.raises(ValueError, match="n_groups"):
        _hbe.fused_sample_samples(None, None, None, lev, codes, None, 0, -1)
    tab.bucket_key = np.zeros((1, 2), np.uint16)
    with pytest.raises(TypeError, match="bucket_key"):
        _hbe.fused_sample_samples(None, None, None, lev, codes, None, 0, 3)
