"""The GPU-native hashing-based KDE (issue 14, item 3): device tables, lookups, draws and kernels.

Two kinds of test:

* stand-in tests (run everywhere): ``kdetheory._cupy._hbe`` is namespace generic, so its code path runs on
  NumPy arrays. An estimator whose ``_on_device`` is forced on with NumPy data must give the host reference's
  estimates and per-query kernel / hash counts exactly (same seed, same draws), move only per-query vectors to
  the host, keep buckets exact under a colliding mix, and search segments like ``np.searchsorted``;
* GPU tests (skip cleanly without CuPy and a CUDA device): the same tables as the host build, the same lookups
  and per-query counts, CuPy results with no table- or sample-sized transfer, and calibrated unbiasedness of one
  table's sample over fresh builds (the design of tests/test_unbiased.py).

Statistical family of this file: 2 mean tests at ALPHA = 1e-6 each (2e-6 of the suite's 1e-4 per run); power 0.99
against a 2 % relative bias.
"""
import warnings

import numpy as np
import pytest

from kdetheory._array import cupy_available
from kdetheory._cupy import _hbe
from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities
from kdetheory.kde import HashingBasedKDE
from kdetheory.kde import hbe as hbe_module
from kdetheory.lsh.euclidean import BucketTables
from proofs_checks._verdicts import mean_bias_verdict, trials_for_mean_bias

H = 1.5
gpu = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")


class StandIn(HashingBasedKDE):
    """The device code path on NumPy arrays (``kdetheory._cupy._hbe`` run with ``xp = numpy``)."""

    _on_device = True


def _instance(n=1501, d=5, m=21, dtype=np.float64):  # odd sizes on purpose
    X = clustered_points(n, d, n_clusters=4, spread=0.5, separation=4.0, rng=0)
    Y, _, mu = queries_at_densities(X, [0.15, 0.1, 0.05], m // 3, bandwidth=H, rng=1)
    return X.astype(dtype), Y.astype(dtype), mu


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
    X, Y, _ = _instance(dtype=dtype)
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    kw = _kw(form=form, sizing=sizing, weights=w, backend="numpy")
    ref = HashingBasedKDE(X, rng=3, **kw).query(Y, rng=4)
    dev = StandIn(X, rng=3, **kw).query(Y, rng=4)
    assert dev.estimate.dtype == ref.estimate.dtype == dtype
    np.testing.assert_allclose(dev.estimate, ref.estimate, rtol=1e-12 if dtype == np.float64 else 1e-6)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert np.all(ref.hash_evaluations > 0)  # the tables answered


def test_standin_tables_equal_host_tables():
    """Every array of a level's device tables equals the host ``BucketTables`` of the same build."""
    X, _, _ = _instance()
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


def test_standin_moves_only_per_query_vectors(monkeypatch):
    """Build and worst-case query of the device path hand the driver nothing larger than one value per query
    (the host path moves every level's (T, s, k) keys and its (m, T) samples: the check has teeth)."""
    X, Y, _ = _instance()
    sizes = _counting_to_numpy(monkeypatch)
    dev = StandIn(X, rng=2, backend="numpy", **_kw())
    build_sizes = list(sizes)
    dev.query(Y, rng=3)
    assert max(build_sizes, default=0) <= 1, build_sizes  # the bound of the key type only
    assert sizes[len(build_sizes):] and max(sizes[len(build_sizes):]) <= Y.shape[0]
    sizes.clear()
    HashingBasedKDE(X, rng=2, backend="numpy", **_kw()).query(Y, rng=3)
    assert max(sizes) > Y.shape[0]  # the host path does move tables and samples


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


# ------------------------------------------------------------------------------------------------------------------
# GPU


def _cp():
    from kdetheory._array import get_cupy

    return get_cupy()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("form", ["sample", "bucket"])
def test_gpu_tables_lookups_and_counts_match_host(form):
    """Same seed: the GPU build's tables equal the host build's (bucket membership as sets: the device sort
    need not be stable), every lookup agrees, and per-query kernel evaluations of one level agree exactly."""
    cp = _cp()
    X, Y, _ = _instance()
    kw = _kw(form=form)
    ref = HashingBasedKDE(X, rng=7, backend="numpy", **kw)
    dev = HashingBasedKDE(cp.asarray(X), rng=7, **kw)
    for a, b in zip(ref.levels, dev.levels):
        tb = b.tables
        assert isinstance(tb, _hbe.DeviceBucketTables) and isinstance(tb.members, cp.ndarray)
        for key in ("first", "last", "bucket_ptr", "bucket_mix", "bucket_key", "bucket_weight"):
            np.testing.assert_array_equal(cp.asnumpy(getattr(tb, key)), getattr(a.tables, key), err_msg=key)
        mem = cp.asnumpy(tb.members)
        for f, l in zip(a.tables.first[:500], a.tables.last[:500]):
            assert set(mem[f:l]) == set(a.tables.members[f:l])
        codes = hbe_module.hash_points(cp.asarray(Y / (np.sqrt(2) * H)), a.projections, a.offsets)
        np.testing.assert_array_equal(cp.asnumpy(tb.lookup(codes)), a.tables.lookup(cp.asnumpy(codes)))
    idx = np.arange(Y.shape[0])
    Ys_h, Ys_d = Y / (np.sqrt(2) * H), cp.asarray(Y) * (1 / (np.sqrt(2) * H))
    lev_h, lev_d = ref.levels[-1], dev.levels[-1]
    _, kev_h = ref._level_samples(lev_h, Ys_h, Ys_h, idx, np.random.default_rng(1), 0, lev_h.n_tables)
    Z_d, kev_d = dev._level_samples(lev_d, Ys_d, cp.asarray(Ys_d, dtype=cp.float64), idx, np.random.default_rng(1),
                                    0, lev_d.n_tables)
    assert isinstance(Z_d, cp.ndarray) and isinstance(kev_d, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(kev_d), kev_h)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("side", ["left", "right"])
def test_gpu_segment_search_kernel_matches_searchsorted(side):
    """The fused CUDA search gives the NumPy loop's answer (uint64 keys and float64 cdf values)."""
    cp = _cp()
    g = np.random.default_rng(9)
    for dtype in (np.uint64, np.float64):
        lens = g.integers(0, 40, size=101)
        values = np.concatenate([np.sort(g.integers(0, 30, size=k)).astype(dtype) for k in lens])
        ends = np.cumsum(lens)
        lo, hi = np.repeat(ends - lens, 7), np.repeat(ends, 7)
        targets = g.integers(0, 31, size=lo.size).astype(dtype)
        expect = _hbe.segment_search(values, lo, hi, targets, side, int(lens.max()).bit_length() + 1)
        got = _hbe.segment_search(cp.asarray(values), cp.asarray(lo), cp.asarray(hi), cp.asarray(targets), side, 0)
        np.testing.assert_array_equal(cp.asnumpy(got), expect)


@gpu
@pytest.mark.gpu
def test_gpu_fused_key_mix_and_kernel_match_numpy():
    """The fused CUDA key mix equals the NumPy mix bit for bit (int32 and int64 keys, negative entries, salts);
    the fused kernel / collision ratio equals the NumPy formula to rounding."""
    cp = _cp()
    g = np.random.default_rng(12)
    for dtype in (np.int32, np.int64):
        codes = g.integers(-2**30, 2**30, size=(3, 17, 13)).astype(dtype)
        for salt in (0, 3):
            np.testing.assert_array_equal(cp.asnumpy(_hbe.key_mix(cp.asarray(codes), salt)), _hbe.key_mix(codes, salt))
        view = cp.asarray(codes).transpose(1, 0, 2)  # non-contiguous input
        np.testing.assert_array_equal(cp.asnumpy(_hbe.key_mix(view)), _hbe.key_mix(codes.transpose(1, 0, 2)))
    r2 = np.concatenate([[0.0, 1e-240], g.uniform(0, 60, 1000) ** 2])
    np.testing.assert_allclose(cp.asnumpy(_hbe.kernel_over_collision(cp.asarray(r2), 12, 3.7)),
                               _hbe.kernel_over_collision(r2, 12, 3.7), rtol=1e-12)


@gpu
@pytest.mark.gpu
def test_gpu_query_returns_cupy_without_large_transfers(monkeypatch):
    """CuPy in, CuPy out; the driver moves nothing larger than one value per query (odd sizes)."""
    cp = _cp()
    X, Y, mu = _instance(n=4099, d=7, m=33)
    sizes = _counting_to_numpy(monkeypatch)
    est = HashingBasedKDE(cp.asarray(X), rng=5, **_kw())
    res = est.query(cp.asarray(Y), rng=6)
    assert isinstance(res.estimate, cp.ndarray) and res.estimate.shape == (33,)
    assert max(sizes) <= Y.shape[0], sizes
    assert np.all(res.hash_evaluations > 0)  # the tables answered
    assert np.all(np.isfinite(cp.asnumpy(res.estimate)))


FAMILY_ALPHA = 2e-6
ALPHA = FAMILY_ALPHA / 2
BIAS, POWER, MARGIN, N_MIN = 0.02, 0.99, 1.25, 200
#: sd of one table's mean relative error over the 8 queries (tests/test_unbiased.py's instance and measurement)
HBE_SD = {"sample": 0.49, "bucket": 0.44}


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("form", ["sample", "bucket"])
def test_gpu_samples_unbiased(form):
    """One GPU table's sample is unbiased (CS17): tests/test_unbiased.py's calibrated design on the device path.
    A trial is one table (independent hash, offsets and subsample); fresh builds until N tables. False-fail rate
    ALPHA; power 0.99 against a 2 % relative bias."""
    cp = _cp()
    g = np.random.default_rng(20261201)
    X = 0.7 * g.standard_normal((2000, 4))
    Y = X[:8] + 0.1 * g.standard_normal((8, 4))
    mu = np.exp(-((X[None] - Y[:, None]) ** 2).sum(axis=2) / 2).mean(axis=1)
    sd = MARGIN * HBE_SD[form]
    n_trials = max(N_MIN, trials_for_mean_bias(sd, BIAS, ALPHA, POWER))
    seeds = iter(np.random.SeedSequence(list(f"gpuhbe{form}".encode())).spawn(1000))
    rel = []
    while sum(len(r) for r in rel) < n_trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = HashingBasedKDE(cp.asarray(X), eps=0.5, delta=0.2, mu_min=0.1, level_ratio=10.0,
                                  variance_constant=4.0, form=form, exact_fallback=False, rng=next(seeds))
        assert not est.levels[-1].exact and est.levels[-1].size < 2000
        Z = cp.asnumpy(est.samples(cp.asarray(Y), level=-1, rng=next(seeds)))
        rel.append((Z / mu[:, None]).mean(axis=0) - 1)
    rel = np.concatenate(rel)[:n_trials]
    verdict = mean_bias_verdict(rel, ALPHA, BIAS, max_rel_sd=sd, power=POWER)
    assert verdict == "holds", f"{verdict}: mean {rel.mean():+.4g} over {rel.size} (sd {rel.std(ddof=1):.3g})"
