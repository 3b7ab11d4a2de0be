"""GPU (CuPy) paths of random sampling, Algorithm 2 and Algorithm 1 (issue 14 item 3, issue 15 item 1).

On the device the random indices come from a device generator seeded by the host one (``device_indices``), so the
same seed gives the same estimator, not the same numbers, as the host: these tests check distributions and
guarantees, not bit patterns (the bit-for-bit comparison of the same code is tests/test_sampling_device_standin.py).

Statistics (family false-fail rate of this file <= 4e-6; every test seeded, each trial a fresh seed):

* ``test_random_sampling_unbiased_on_device``: per layout, 30 queries x 1000 independent estimates of 5000 samples;
  the largest |z| of the 30 relative means must stay below 5.6 (two-sided 2.1e-8 per query, 6.4e-7 per layout
  under an unbiased estimator with the CLT). Power: a 2 % bias moves z by about 9 at the 0.1-density queries
  (relative sd per estimate ~ sqrt(10 / 5000) = 0.045, over 1000 estimates 0.0014) and by about 4 at density 0.02.
* ``test_random_sampling_meets_eps_at_rate_delta``: per layout, 40 builds x 30 queries; failures of the
  ``(1 +- eps)`` guarantee are Binomial(1200, <= delta) with delta = 0.05; the test fails at >= 100 failures
  (P = 7.2e-7 under delta). Power: 0.98 at a true failure rate of 0.10, 0.80 at 0.09.
* ``test_weighted_exp_on_device_matches_exact_log_sums``: allows one miss of ``(1 +- eps)`` in 40 queries at
  delta = 1e-5 per query (P[two or more] <= 8e-8 per estimator).
"""
import functools
import sys

import numpy as np
import pytest
from scipy.stats import binom

import kdetheory._array
from kdetheory._array import cupy_available
from kdetheory.attention import kdeformer
from kdetheory.attention.kdeformer import diameter_bound
from kdetheory.datasets import bounded_diameter_instance
from kdetheory.kde import RandomSamplingKDE, WeightedExpKDE, gaussian_kde
from kdetheory.kde.exact import exp_kde
from kdetheory.linalg import relative_spectral_error

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

H = 1.5


def _cp():
    from kdetheory._array import get_cupy

    return get_cupy()


@pytest.fixture(scope="module")
def data(blob):
    return blob  # tests/gpu/conftest.py (bandwidth H)


@pytest.mark.parametrize("permuted", [False, True], ids=["plain", "permuted"])
def test_random_sampling_unbiased_on_device(permuted, data):
    cp = _cp()
    X, Y, mu = data
    reps = 1000
    est = RandomSamplingKDE(cp.asarray(X), bandwidth=H, n_samples=5000, permuted=permuted, rng=11)
    r = est.query(cp.asarray(np.repeat(Y, reps, axis=0)), rng=12)  # independent starts / indices per row
    rel = cp.asnumpy(r.estimate).reshape(len(Y), reps) / mu[:, None] - 1.0
    z = rel.mean(axis=1) / (rel.std(axis=1, ddof=1) / np.sqrt(reps))
    assert np.max(np.abs(z)) < 5.6, z
    assert np.all(r.samples == 5000)


@pytest.mark.parametrize("settings", [{"sizing": "adaptive"}, {"permuted": True}], ids=["adaptive", "permuted"])
def test_random_sampling_meets_eps_at_rate_delta(settings, data):
    cp = _cp()
    X, Y, mu = data
    eps, delta, builds = 0.3, 0.05, 40
    Xd, Yd = cp.asarray(X), cp.asarray(Y)
    fails, used = 0, []
    for seed in range(builds):
        r = RandomSamplingKDE(Xd, bandwidth=H, eps=eps, delta=delta, mu_min=0.02, rng=1000 + seed,
                              **settings).query(Yd, rng=5000 + seed)
        fails += int((np.abs(cp.asnumpy(r.estimate) - mu) > eps * mu).sum())
        used.append(r.samples)
    trials = builds * len(Y)
    limit = int(binom.isf(1e-6, trials, delta)) + 1
    assert fails < limit, (fails, trials, limit)
    assert 0 < np.mean(used) < X.shape[0]  # the estimates sampled


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", [{"sizing": "adaptive"}, {"permuted": True}, {"permuted": False}],
                         ids=["adaptive", "permuted", "plain"])
def test_random_sampling_cupy_in_cupy_out(settings, dtype, data):
    cp = _cp()
    X, Y, mu = data
    r = RandomSamplingKDE(cp.asarray(X, dtype=dtype), bandwidth=H, eps=0.5, mu_min=0.02, rng=0,
                          **settings).query(cp.asarray(Y, dtype=dtype), rng=1)
    assert isinstance(r.estimate, cp.ndarray) and r.estimate.dtype == dtype
    assert np.all(np.abs(cp.asnumpy(r.estimate) / mu - 1.0) < 1.0)  # a sanity band; accuracy is tested above


def test_random_sampling_exact_fallback_on_device(data):
    """Adaptive queries that cannot certify within n/2 samples get the device's exact sum."""
    cp = _cp()
    X, Y, _ = data
    Xs = cp.asarray(X[:64])
    r = RandomSamplingKDE(Xs, bandwidth=H, eps=0.05, delta=0.01, mu_min=0.02, sizing="adaptive",
                          rng=0).query(cp.asarray(Y), rng=1)
    assert np.all(r.kernel_evaluations > 64)
    np.testing.assert_allclose(cp.asnumpy(r.estimate), cp.asnumpy(gaussian_kde(Xs, cp.asarray(Y), bandwidth=H)),
                               rtol=1e-10)


@pytest.mark.parametrize("estimator", ["exact", "sampling", "adaptive"])
def test_weighted_exp_on_device_matches_exact_log_sums(estimator):
    """Algorithm 2 on CuPy: within (1 +- eps) of the exact weighted exponential sums (in logs) for every query
    (exact: to rounding); one miss allowed for the sampling estimators (see the module docstring)."""
    cp = _cp()
    g = np.random.default_rng(9)
    K, v, Q = 0.35 * g.normal(size=(4000, 6)), np.abs(g.normal(size=4000)) + 0.1, 0.35 * g.normal(size=(40, 6))
    kde = functools.partial(RandomSamplingKDE, sizing="adaptive") if estimator == "adaptive" else estimator
    eps = 0.2
    res = WeightedExpKDE(cp.asarray(K), cp.asarray(v), eps=eps, delta=1e-5, estimator=kde,
                         diameter=diameter_bound(Q, K), rng=4).query(cp.asarray(Q))
    assert isinstance(res.log_estimate, cp.ndarray)
    exact = exp_kde(K, Q, weights=v, log=True)
    err = np.abs(np.expm1(cp.asnumpy(res.log_estimate) - exact))
    if estimator == "exact":
        np.testing.assert_allclose(err, 0.0, atol=1e-10)
    else:
        assert (err > eps).sum() <= 1, err
        assert np.all(res.exact_classes < res.classes_used)  # the classes were estimated, not summed


def test_kdeformer_adaptive_sampling_on_device():
    """Algorithm 1 at n = 4096 with adaptive random sampling on CuPy: eq. (2) error <= eps on three seeds (measured
    0.12-0.16 on the CPU path with 256 samples), work fraction < 1 (the KDE stages sampled)."""
    cp = _cp()
    Q, K, V = bounded_diameter_instance(4096, 8, c=0.25, rng=3)
    Qd, Kd, Vd = cp.asarray(Q), cp.asarray(K), cp.asarray(V)
    kde = functools.partial(RandomSamplingKDE, sizing="adaptive")
    for seed in range(3):
        res = kdeformer(Qd, Kd, Vd, eps=0.5, n_samples=256, kde=kde, rng=seed)
        assert isinstance(res.output, cp.ndarray)
        assert relative_spectral_error(res.output, Qd, Kd, Vd, rng=0) <= 0.5
        assert res.cost.work_fraction < 1.0, res.cost


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kdeformer_result_dtype(dtype):
    cp = _cp()
    Q, K, V = (cp.asarray(a, dtype=dtype) for a in bounded_diameter_instance(512, 4, c=0.25, rng=1))
    res = kdeformer(Q, K, V, eps=0.5, n_samples=64, kde=functools.partial(RandomSamplingKDE, sizing="adaptive"),
                    rng=0)
    assert res.output.dtype == res.row_sums.dtype == res.log_row_sums.dtype == dtype
    w = WeightedExpKDE(K, eps=0.3, estimator="sampling", rng=0).query(Q)
    assert w.log_estimate.dtype == dtype


def test_kdeformer_copies_no_n_by_d_array_to_host(monkeypatch):
    """Every host copy of the package goes through ``to_numpy`` (CuPy refuses implicit conversion) or
    ``cupy.asnumpy``: none of Algorithm 1's, with adaptive sampling inside, is larger than a per-query or per-key
    vector or the d_v x d_v Gram matrix of V."""
    cp = _cp()
    sizes = []
    real = kdetheory._array.to_numpy

    def counted(a):
        sizes.append(int(a.size) if hasattr(a, "size") else 1)
        return real(a)

    for name, module in list(sys.modules.items()):
        if name.startswith("kdetheory") and getattr(module, "to_numpy", None) is real:
            monkeypatch.setattr(module, "to_numpy", counted)
    real_asnumpy = cp.asnumpy
    monkeypatch.setattr(cp, "asnumpy", lambda a, *args, **kw: (sizes.append(int(a.size)), real_asnumpy(a, *args, **kw))[1])
    n, d = 4096, 8
    Q, K, V = (cp.asarray(a) for a in bounded_diameter_instance(n, d, c=0.25, rng=3))
    kdeformer(Q, K, V, eps=0.5, n_samples=256, kde=functools.partial(RandomSamplingKDE, sizing="adaptive"), rng=0)
    assert sizes and max(sizes) <= n < n * d, sorted(sizes)[-5:]
