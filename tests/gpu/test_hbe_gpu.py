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
from kdetheory.kde import HashingBasedKDE
from kdetheory.kde import hbe as hbe_module
from proofs_checks._verdicts import mean_bias_verdict, trials_for_mean_bias

H = 1.5
gpu = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")


from test_hbe_device_standin import StandIn, _counting_to_numpy, _instance, _kw  # noqa: E402,F401  (shared helpers)


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
