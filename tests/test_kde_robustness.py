"""Regression tests of issue 12 for the KDE layer: exactness at tiny bandwidths, extreme weights and
density floors, the cost of the adaptive search, memory of the HBE build, and clear errors.

No test here is statistical: every assertion is deterministic given the seeds.
"""
import math
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from kdetheory import _config
from kdetheory.kde import CKNSKDE, ExactKDE, HashingBasedKDE, RandomSamplingKDE, gaussian_kde
from kdetheory.kde.exact import _EXPANSION_TOLERANCE
from kdetheory.lsh import EuclideanLSH


def direct_log_kde(X, Y, h, w=None):
    """log of the Gaussian KDE in float64 from direct differences (the reference)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    r2 = ((Y[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    with np.errstate(divide="ignore"):
        return logsumexp(np.log(w)[None, :] - r2 / (2.0 * h * h), axis=1) - math.log(X.shape[0])


# ------------------------------------------------------------------ item 1: exact at tiny bandwidth

@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype, bandwidth", [(np.float32, 1e-4), (np.float32, 1e-6), (np.float64, 1e-8)])
def test_gaussian_kde_exact_at_tiny_bandwidth_issue_reproducer(backend, dtype, bandwidth):
    X = np.random.default_rng(0).standard_normal((500, 4)) + 5
    Xd = X.astype(dtype)
    got = gaussian_kde(Xd, Xd[:5], bandwidth=bandwidth, backend=backend)
    assert got.dtype == dtype
    # every query is a data point far (>> h) from the others: the density is 1/n = 0.002
    np.testing.assert_allclose(got, 0.002, rtol=8 * np.finfo(dtype).eps)
    ex = ExactKDE(Xd, bandwidth=bandwidth, backend=backend).query(Xd[:5]).estimate
    assert ex.dtype == dtype
    np.testing.assert_allclose(ex, got, rtol=8 * np.finfo(dtype).eps)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       log10_h=st.floats(-9.0, 1.0), offset=st.sampled_from([0.0, 5.0, 1e3]),
       dtype=st.sampled_from([np.float32, np.float64]), backend=st.sampled_from(["numpy", "numba"]),
       near=st.booleans(), weighted=st.booleans())
def test_gaussian_kde_matches_direct_differences(n, d, seed, log10_h, offset, dtype, backend, near, weighted):
    """Relative error <= the expansion tolerance plus rounding, at bandwidths down to 1e-9 with offset data."""
    rng = np.random.default_rng(seed)
    h = 10.0**log10_h
    X = (rng.standard_normal((n, d)) + offset).astype(dtype)
    # queries on data points, beside them (a few bandwidths away) or anywhere
    Y = X[rng.integers(0, n, 4)] + (rng.standard_normal((4, d)) * (h if near else 1.0)).astype(dtype)
    w = rng.random(n).astype(dtype) if weighted else None
    got = gaussian_kde(X, Y, bandwidth=h, weights=w, log=True, backend=backend)
    assert got.dtype == dtype
    ref = direct_log_kde(X, Y, h, w)  # the same (rounded) inputs, exact arithmetic in float64
    u = float(np.finfo(dtype).eps)
    tol = 2 * _EXPANSION_TOLERANCE[np.dtype(dtype).itemsize] + 8 * (n + d + 8) * u
    visible = ref > math.log(np.finfo(dtype).tiny) + 10  # below that the dtype underflows
    np.testing.assert_allclose(got[visible], ref[visible], rtol=0, atol=tol)
    w_max = 1.0 if w is None else float(w.max())
    assert (np.exp(got.astype(np.float64)) <= w_max * (1 + 4 * u)).all()  # never above the max weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_bandwidth_gives_mean_weight_and_tiny_one_is_refused(dtype):
    X = np.random.default_rng(1).standard_normal((50, 3)).astype(dtype)
    w = np.random.default_rng(2).random(50).astype(dtype)
    np.testing.assert_allclose(gaussian_kde(X, X[:3], bandwidth=1e200, weights=w), w.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="bandwidth: got 1e-200"):
        gaussian_kde(X, X[:3], bandwidth=1e-200)


# --------------------------------------------------- items 6, 7: extreme weights and density floors

@pytest.mark.parametrize("cls", [CKNSKDE, HashingBasedKDE, RandomSamplingKDE])
@pytest.mark.parametrize("scale", [1e-100, 1e-20, 1e300])
def test_weights_are_scale_free(cls, scale):
    """Weights c*w with mu_min c*mu give exactly c times the answers of (w, mu) for the same seeds."""
    X = np.random.default_rng(0).standard_normal((20000, 3))
    w = np.random.default_rng(1).random(20000)
    kw = dict(eps=0.5, delta=0.2, bandwidth=1.5, rng=3)
    start = time.perf_counter()
    big = cls(X, weights=scale * w, mu_min=scale * 0.01, **kw).query(X[:20], rng=4)
    assert time.perf_counter() - start < 60  # weights 1e-100 used to hang the CKNS build
    ref = cls(X, weights=w, mu_min=0.01, **kw).query(X[:20], rng=4)
    np.testing.assert_allclose(big.estimate, scale * ref.estimate, rtol=1e-12)
    assert np.array_equal(big.below_mu_min, ref.below_mu_min)
    assert np.array_equal(big.kernel_evaluations, ref.kernel_evaluations)


@pytest.mark.parametrize("cls", [CKNSKDE, HashingBasedKDE, RandomSamplingKDE, ExactKDE])
def test_zero_weights_give_zero_density(cls):
    X = np.random.default_rng(0).standard_normal((300, 3))
    res = cls(X, weights=np.zeros(300), rng=0).query(X[:5])
    assert (res.estimate == 0).all() and res.below_mu_min.all()


@pytest.mark.parametrize("cls", [CKNSKDE, HashingBasedKDE, RandomSamplingKDE])
def test_tiny_weights_with_default_mu_min_flag_everything(cls):
    X = np.random.default_rng(0).standard_normal((2000, 3))
    res = cls(X, weights=np.full(2000, 1e-100), rng=0).query(X[:5])
    assert res.below_mu_min.all()
    np.testing.assert_allclose(res.estimate, 1e-100 * gaussian_kde(X, X[:5]), rtol=1e-12)


@pytest.mark.parametrize("cls", [CKNSKDE, HashingBasedKDE, RandomSamplingKDE, ExactKDE])
def test_mu_min_beyond_float64_names_mu_min(cls):
    X = np.random.default_rng(0).standard_normal((300, 3))
    with pytest.raises(ValueError, match="mu_min: got 1e-320"):
        cls(X, mu_min=1e-320)
    with pytest.raises(ValueError, match="mu_min: got 1e-20 relative to the largest weight 1e\\+300"):
        cls(X, mu_min=1e-20, weights=np.full(300, 1e300))
    res = cls(X, mu_min=1e-300, rng=0).query(X[:3])  # the smallest floors still build and answer
    np.testing.assert_allclose(res.estimate, gaussian_kde(X, X[:3]), rtol=1e-12)


# ---------------------------------------------------- item 9: the adaptive search never costs much more

def test_adaptive_search_costs_at_most_exact_on_the_issue_instance():
    rng = np.random.default_rng(0)
    X = 0.5 * rng.standard_normal((20000, 8))
    Y = X[:200] + 0.1
    n = X.shape[0]
    for cls, bound in ((HashingBasedKDE, n), (CKNSKDE, 1.5 * n)):
        res = cls(X, eps=0.5, mu_min=1e-2, rng=0).query(Y)
        work = res.kernel_evaluations + res.hash_evaluations
        # a query spends at most n/2 on the structure, plus n if it then falls back to the exact sum
        assert work.max() <= bound, (cls.__name__, work.max())
        exact = res.samples == 0
        if exact.any():
            np.testing.assert_allclose(res.estimate[exact], gaussian_kde(X, Y[exact]), rtol=1e-12)


def test_levels_above_the_largest_density_are_skipped():
    X = np.random.default_rng(0).standard_normal((4000, 5))
    est = HashingBasedKDE(X, eps=0.5, mu_min=0.01, variance_constant=0.3, exact_fallback=False, rng=0)
    assert est.level_ratio * est.levels[0].budget >= 1.0  # level 0 could only accept a density >= 1
    res = est.query(X[:50])
    assert (res.levels_visited <= len(est.levels) - 1).all()
    assert (res.hash_evaluations < res.levels_visited * 0 + sum(l.n_tables * l.k for l in est.levels[1:])).all()


# ------------------------------------------------------- item 11: the fast sampling layout is the default

def test_random_sampling_defaults_to_the_permuted_layout():
    X = np.random.default_rng(0).standard_normal((500, 3))
    assert RandomSamplingKDE(X).permuted
    assert not RandomSamplingKDE(X, permuted=False).permuted


# ------------------------------------------------------------ item 12: the HBE build keeps its budget

def test_hbe_reports_what_it_holds_and_builds_within_its_budget(monkeypatch):
    monkeypatch.setattr(_config, "CHUNK_BYTES", 8 * 2**20)
    X = 0.5 * np.random.default_rng(0).standard_normal((20000, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        try:
            est = HashingBasedKDE(X, eps=0.5, mu_min=0.05, exact_fallback=False, rng=0)
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    reported = est.preprocessing.bytes
    assert reported > 20 * 2**20  # a real structure (about 60 MiB here)
    assert abs(held - reported) <= 0.02 * reported + 2**20  # the report is what the object holds
    assert peak <= held + 4 * _config.CHUNK_BYTES  # temporaries stay within a few chunks


# ------------------------------------------------------------------- items 20, 21, 26: clear messages

def test_samples_level_errors():
    X = np.random.default_rng(0).standard_normal((4000, 5))
    est = HashingBasedKDE(X, eps=0.5, mu_min=0.01, variance_constant=0.3, exact_fallback=False, rng=0)
    for bad in (99, -99, 1.5, True):
        with pytest.raises(ValueError, match=r"level: got .*pass an int index into the \d+ levels"):
            est.samples(X[:2], level=bad)
    every_exact = HashingBasedKDE(X, eps=0.1, mu_min=0.001, rng=0)
    assert all(lev.exact for lev in every_exact.levels)
    with pytest.raises(ValueError, match="every level of this estimator answers exactly"):
        every_exact.samples(X[:2])


@pytest.mark.parametrize("eps, raise_eps", [(0.9, False), (0.2, True)])
def test_one_summary_warning_with_advice_that_applies(eps, raise_eps):
    X = np.random.default_rng(0).standard_normal((4000, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = HashingBasedKDE(X, eps=eps, mu_min=1e-3, exact_fallback=False, max_stored=10**5, rng=0)
    ours = [w for w in caught if "HashingBasedKDE" in str(w.message)]
    assert len(ours) == 1 and sum(lev.too_large for lev in est.levels) > 1
    assert ("raise eps" in str(ours[0].message)) == raise_eps
    assert ours[0].filename == __file__  # points at the caller


def test_euclidean_lsh_rng_is_optional():
    lsh = EuclideanLSH(3, 2, 1.0, n_tables=4)
    assert lsh.hash(np.zeros((5, 3))).shape == (4, 5, 2)


@pytest.mark.parametrize("cls", [RandomSamplingKDE, HashingBasedKDE])
def test_sizing_is_validated(cls):
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match="sizing: got 'fast'"):
        cls(X, sizing="fast")
    with pytest.raises(ValueError, match="mu_min: got 1.5"):
        cls(X, mu_min=1.5)
