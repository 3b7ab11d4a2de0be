"""The GPU-native hashing-based KDE (issue 14, item 3): device tables, lookups, draws and kernels.

Two kinds of test:

* stand-in tests (run everywhere): ``kdetheory._cupy._hbe`` is namespace generic, so its code path runs on
  NumPy arrays. An estimator whose ``_on_device`` is forced on with NumPy data must give the host reference's
  estimates and per-query kernel / hash counts exactly (same seed, same draws), move only per-query vectors to
  the host, keep buckets exact under a colliding mix, and search segments like ``np.searchsorted``;
* GPU tests (skip cleanly without CuPy and a CUDA device): the same tables as the host build, the same lookups
  and per-query counts, CuPy results with no table- or sample-sized transfer, and calibrated unbiasedness of one
  table's sample over fresh builds (the design of tests/test_unbiased.py).

Statistical family of this file: 2 mean tests and 1 Kolmogorov-Smirnov test at ALPHA = 1e-6 each (3e-6 of the
suite's 1e-4 per run); power 0.99 against a 2 % relative bias (mean tests). The fused kernel (hbe.cu) is checked
against the namespace path on the same uniforms (exact comparisons, no statistics).
"""
import warnings

import numpy as np
import pytest

from kdetheory._array import cupy_available
from kdetheory._cupy import _hbe
from kdetheory.kde import HashingBasedKDE
from kdetheory.kde import hbe as hbe_module
from proofs_checks._verdicts import mean_bias_verdict, trials_for_mean_bias

gpu = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")


from standin_data import H, standin_instance  # noqa: E402  (shared with the stand-in tests)
from test_hbe_device_standin import (  # noqa: E402,F401  (shared helpers)
    StandIn, _counting_level_calls, _counting_to_numpy, _kw)


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
    X, Y, _ = standin_instance()
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
    X, Y, mu = standin_instance(n=4099, d=7, m=33)
    sizes = _counting_to_numpy(monkeypatch)
    est = HashingBasedKDE(cp.asarray(X), rng=5, **_kw())
    res = est.query(cp.asarray(Y), rng=6)
    assert isinstance(res.estimate, cp.ndarray) and res.estimate.shape == (33,)
    assert max(sizes) <= 2 * Y.shape[0], sizes  # one (2, m) array of estimates and counts per level
    assert np.all(res.hash_evaluations > 0)  # the tables answered
    assert np.all(np.isfinite(cp.asnumpy(res.estimate)))


def _salted_int64_tables(g, n=300, T=6, s=40, k=2):
    """Tables with int64 keys (beyond int32) re-salted once (salt 0 sends every key to one mix), unit weights (cdf
    fractions j / |B|), and queries whose keys are often absent."""
    real = _hbe.key_mix
    codes = g.integers(-2, 2, size=(T, s, k)) + 2**40
    members = np.stack([g.permutation(n)[:s] for _ in range(T)])
    try:
        _hbe.key_mix = lambda c, salt=0: real(c, salt) * np.uint64(salt > 0)
        tab = _hbe.DeviceBucketTables([(_cp().asarray(codes), members)], _cp().ones(n))
    finally:
        _hbe.key_mix = real
    assert tab.salt >= 1 and tab.bucket_key.dtype == np.int64
    return tab, g.integers(-3, 3, size=(T, 9, k)) + 2**40


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_fused_kernel_equals_namespace_path(dtype):
    """hbe.cu's fused level kernel equals the namespace path (device_sample_samples + median_of_means) on the same
    uniforms: samples and estimates to 1e-12 relative, kernel evaluations exactly. Odd sizes, a subset of query
    rows out of order, a table offset, int32 keys from a real build and int64 re-salted keys, absent keys, uniforms
    at the cdf's ties and next to 1. (The same comparison, run on this kernel compiled as host C++, caught 8 of 8
    mutants: search side of either search, the clamp, an off-by-one in r^2, a 2 % bias, the median's order
    statistic, transposed uniforms, a changed mix.)"""
    import types

    from kdetheory.kde._mom import median_of_means

    cp = _cp()
    X, Y, _ = standin_instance(n=1501, d=5, m=21, dtype=dtype)
    est = HashingBasedKDE(cp.asarray(X), rng=3, weights=cp.asarray(np.random.default_rng(5).uniform(0.2, 3, 1501)),
                          **_kw())
    Ys = cp.asarray(Y) * Y.dtype.type(est._scale)
    Yh = cp.asarray(Ys, dtype=cp.float64)
    rows = np.array([3, 0, 7, 20, 5, 11, 19])
    g = np.random.default_rng(8)
    cases = []
    for lev in est.levels:
        if not lev.exact:
            assert lev.tables.bucket_key.dtype == np.int32
            cases.append((lev, 0, lev.n_tables, lev.n_groups))
            cases.append((lev, 1, min(lev.n_tables, 6), 0))
    absent = False
    for lev, t0, t1, G in cases:
        codes = hbe_module.hash_points(Ys[cp.asarray(rows)], lev.projections[t0:t1], lev.offsets[t0:t1])
        u = cp.asarray(g.random((t1 - t0, rows.size)))
        Zr, kr = _hbe.device_sample_samples(est._Xh, Yh[cp.asarray(rows)], est._w_dev, lev, codes, u, t0)
        Zf, ef, kf = _hbe.fused_sample_samples(est._Xh, Yh, cp.asarray(rows), lev, codes, u, t0, G)
        Zr, Zf = cp.asnumpy(Zr), cp.asnumpy(Zf)
        np.testing.assert_allclose(Zf, Zr, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(cp.asnumpy(kf), cp.asnumpy(kr))
        if G:
            np.testing.assert_allclose(cp.asnumpy(ef), median_of_means(Zr, G), rtol=1e-12)
        absent |= bool((Zr == 0).any())
    assert absent  # some query keys are in no bucket of some table
    tab, qcodes = _salted_int64_tables(g)
    lev = types.SimpleNamespace(tables=tab, size=tab.size, k=2, width=1.7)
    Xd, Yd, qd = cp.asarray(g.standard_normal((300, 3))), cp.asarray(g.standard_normal((9, 3))), cp.asarray(qcodes)
    # uniforms that tie with the cdf (the search side matters) or make rank + u round up to rank + 1 (the clamp
    # to the bucket matters)
    u = cp.asarray(np.array([0.0, 0.25, 0.5, 0.75, np.nextafter(1.0, 0.0)])[g.integers(0, 5, size=(6, 9))])
    Zr, kr = _hbe.device_sample_samples(Xd, Yd, None, lev, qd, u, 0)
    Zf, ef, kf = _hbe.fused_sample_samples(Xd, Yd, cp.arange(9), lev, qd, u, 0, 3)
    np.testing.assert_allclose(cp.asnumpy(Zf), cp.asnumpy(Zr), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(cp.asnumpy(kf), cp.asnumpy(kr))
    np.testing.assert_allclose(cp.asnumpy(ef), median_of_means(cp.asnumpy(Zr), 3), rtol=1e-12)
    assert 0 < int(cp.asnumpy(kr).sum()) < 54  # some keys found, some absent


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("sizing", ["worst_case", "adaptive"])
def test_gpu_fused_query_equals_namespace_query(monkeypatch, sizing):
    """A whole query with the fused kernel (``_config.HBE_FUSED``) equals the namespace path's with the same seeds
    (the device uniforms are the same stream): estimates to 1e-12, counts and levels exactly; and the fused path
    moves one (2, m) array per level."""
    from kdetheory import _config

    cp = _cp()
    X, Y, _ = standin_instance(n=4099, d=7, m=33)
    res = {}
    for fused in (False, True):
        monkeypatch.setattr(_config, "HBE_FUSED", fused)
        est = HashingBasedKDE(cp.asarray(X), rng=5, **_kw(sizing=sizing))
        if fused:
            sizes = _counting_to_numpy(monkeypatch)
            calls = _counting_level_calls(monkeypatch, HashingBasedKDE)
        res[fused] = est.query(cp.asarray(Y), rng=6)
    if sizing == "worst_case":
        assert calls and sizes == [2 * c for c in calls], (sizes, calls)
    np.testing.assert_allclose(cp.asnumpy(res[True].estimate), cp.asnumpy(res[False].estimate), rtol=1e-12)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(res[True], field), getattr(res[False], field), err_msg=field)
    assert np.all(res[True].hash_evaluations > 0)


FAMILY_ALPHA = 3e-6
ALPHA = FAMILY_ALPHA / 3
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


@gpu
@pytest.mark.gpu
def test_gpu_device_uniforms_are_uniform():
    """The counter-based device uniforms: in [0, 1), a Kolmogorov-Smirnov test against U(0, 1) over 2^20 draws
    (false-fail rate ALPHA; its critical distance at ALPHA is sqrt(ln(2 / ALPHA) / 2^21) = 2.6e-3, so a CDF off by
    4e-3 anywhere fails with probability ~1), no lag-1 correlation and none between two seeds (|r| < 6 sd: false
    fail ~2e-9 each), and the shape is kept."""
    from scipy import stats

    cp = _cp()
    u = _hbe.device_uniforms(np.random.default_rng(1), (1024, 1024), cp)
    assert u.shape == (1024, 1024) and u.dtype == np.float64
    h = cp.asnumpy(u).ravel()
    assert h.min() >= 0.0 and h.max() < 1.0
    assert stats.kstest(h, "uniform").pvalue > ALPHA
    # neighbouring entries are not correlated (lag-1 correlation of 2^20 draws: sd 1e-3; 6 sd is ~1e-9 two-sided)
    assert abs(np.corrcoef(h[:-1], h[1:])[0, 1]) < 6e-3
    v = cp.asnumpy(_hbe.device_uniforms(np.random.default_rng(2), (1024, 1024), cp)).ravel()
    assert not np.array_equal(h, v) and abs(np.corrcoef(h, v)[0, 1]) < 6e-3
