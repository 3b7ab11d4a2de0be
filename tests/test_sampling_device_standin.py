"""Stand-in tests of the GPU paths of random sampling, Algorithm 2 and Algorithm 1 (issue 14 item 3, issue 15 item 1).

The device code of :class:`~kdetheory.kde.RandomSamplingKDE` (indices drawn by ``device_indices``, permuted blocks
gathered for a block of queries, the stopping rule in the namespace of the samples), of
:class:`~kdetheory.kde.WeightedExpKDE` and of :func:`~kdetheory.attention.kdeformer` is namespace generic, so it runs
on NumPy arrays. With ``xp = numpy`` the index seam ``device_indices`` returns the host generator's draws, so the
stand-in must give the host reference's answers: exactly for the i.i.d. layouts (same arithmetic), and within the
host's documented rounding bound for the permuted layout (the host expands ``||x||^2 + ||y||^2 - 2<x, y>`` within
``_EXPANSION_TOLERANCE`` in the exponent; the device takes differences). The spy tests check that only per-query or
per-key vectors reach ``to_numpy`` (the only way arrays leave a GPU in this package: an implicit CuPy-to-NumPy
conversion raises). The same code on CuPy is tested in tests/gpu/test_sampling_gpu.py. No statistical test here.
"""
import functools
import sys

import numpy as np
import pytest
from standin_data import H, standin_instance

import kdetheory._array
from kdetheory.attention import kdeformer
from kdetheory.datasets import bounded_diameter_instance
from kdetheory.kde import RandomSamplingKDE, WeightedExpKDE, sampling
from kdetheory.kde._base import gathered_squared_distances
from kdetheory.kde.exact import _EXPANSION_TOLERANCE


class StandIn(RandomSamplingKDE):
    """The device code path of random sampling on NumPy arrays."""

    _on_device = True


ADAPTIVE = {"sizing": "adaptive", "eps": 0.3, "mu_min": 0.02}
LAYOUTS = {  # name -> (estimator settings, the relative tolerance of the comparison per dtype)
    "adaptive": (ADAPTIVE, {8: 0.0, 4: 0.0}),
    "plain": ({"permuted": False, "eps": 0.7, "mu_min": 0.1, "delta": 0.1}, {8: 0.0, 4: 0.0}),
    # each kernel value differs by at most the host expansion's bound in the exponent (plus a few roundings)
    "permuted": ({"permuted": True, "n_samples": 600, "n_groups": 3}, {k: 2.0 * t for k, t in _EXPANSION_TOLERANCE.items()}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_standin_matches_host_reference(layout, dtype, small_chunks):
    """Same seed, same answer: estimates and per-query counts of the device path equal the host reference's
    (weighted data; 2 KiB chunks, so the blocked loops run several blocks)."""
    X, Y, _ = standin_instance(dtype=dtype)
    w = np.random.default_rng(5).uniform(0.2, 3.0, X.shape[0])
    settings, rtol = LAYOUTS[layout]
    kw = dict(bandwidth=H, weights=w, **settings)
    ref = RandomSamplingKDE(X, rng=3, **kw).query(Y, rng=4)
    dev = StandIn(X, rng=3, **kw).query(Y, rng=4)
    assert dev.estimate.dtype == ref.estimate.dtype == dtype
    np.testing.assert_allclose(dev.estimate, ref.estimate, rtol=rtol[np.dtype(dtype).itemsize], atol=0)
    for field in ("kernel_evaluations", "hash_evaluations", "samples", "levels_visited", "below_mu_min"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert 0 < ref.samples.max() < X.shape[0]  # the queries sampled


def test_standin_exact_fallback_matches_host():
    """An adaptive query that spends its budget without a certified answer gets the exact sum on both paths."""
    X, Y, _ = standin_instance()
    X = X[:64]
    kw = {"bandwidth": H, "eps": 0.05, "delta": 0.01, "mu_min": 0.02, "sizing": "adaptive"}
    ref = RandomSamplingKDE(X, rng=3, **kw).query(Y, rng=4)
    dev = StandIn(X, rng=3, **kw).query(Y, rng=4)
    assert np.all(ref.kernel_evaluations > X.shape[0])  # every query fell back (n/2 samples + n)
    np.testing.assert_array_equal(dev.estimate, ref.estimate)
    np.testing.assert_array_equal(dev.kernel_evaluations, ref.kernel_evaluations)


def test_permuted_positions_wrap_around():
    starts = np.array([0, 5, 9])
    got = sampling.permuted_positions(starts, 2, 6, 10)
    np.testing.assert_array_equal(got, [[2, 3, 4, 5], [7, 8, 9, 0], [1, 2, 3, 4]])
    assert got.dtype == np.int64


def test_device_indices_seam_is_the_host_stream():
    a = sampling.device_indices(np.random.default_rng(8), 97, (4, 33), np)
    np.testing.assert_array_equal(a, np.random.default_rng(8).integers(0, 97, (4, 33)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gathered_squared_distances_by_differences(dtype, small_chunks):
    g = np.random.default_rng(2)
    X, Y = g.normal(size=(50, 3)).astype(dtype), g.normal(size=(7, 3)).astype(dtype)
    idx = g.integers(0, 50, (7, 11))
    got = gathered_squared_distances(X, Y, idx)
    expect = ((X[idx].astype(np.float64) - Y[:, None, :]) ** 2).sum(axis=2)
    assert got.dtype == dtype and got.shape == (7, 11)
    np.testing.assert_allclose(got, expect, rtol=1e-12 if dtype == np.float64 else 1e-5)


# ------------------------------------------------------------------------------------------------------------------
# what crosses to the host: only per-query / per-key vectors


@pytest.fixture
def host_copies(monkeypatch):
    """Sizes of every array handed to ``to_numpy`` by any kdetheory module (each module binds its own name)."""
    sizes = []
    real = kdetheory._array.to_numpy

    def counted(a):
        sizes.append(int(np.size(a)))
        return real(a)

    for name, module in list(sys.modules.items()):
        if name.startswith("kdetheory") and getattr(module, "to_numpy", None) is real:
            monkeypatch.setattr(module, "to_numpy", counted)
    return sizes


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_standin_moves_only_per_query_vectors(layout, host_copies):
    """The build copies per-key vectors at most (the weights), a query per-query vectors at most: never a sample
    matrix, a batch of the stopping rule or the data."""
    X, Y, _ = standin_instance()
    est = StandIn(X, rng=2, bandwidth=H, **LAYOUTS[layout][0])
    assert max(host_copies) <= X.shape[0], host_copies
    host_copies.clear()
    est.query(Y, rng=3)
    assert host_copies and max(host_copies) <= Y.shape[0], host_copies


def _wexp_instance(n=1200, d=4, m=40):
    g = np.random.default_rng(9)
    K = 0.35 * g.normal(size=(n, d))
    return K, np.abs(g.normal(size=n)) + 0.1, 0.35 * g.normal(size=(m, d))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_exp_standin_matches_host(dtype):
    """Algorithm 2 with the device random-sampling path inside equals it with the host path, field by field."""
    K, v, Q = (a.astype(dtype) for a in _wexp_instance())
    kw = {"eps": 0.3, "diameter": 2.5, "rng": 4}
    ref = WeightedExpKDE(K, v, estimator=functools.partial(RandomSamplingKDE, sizing="adaptive"), **kw).query(Q)
    dev = WeightedExpKDE(K, v, estimator=functools.partial(StandIn, sizing="adaptive"), **kw).query(Q)
    assert dev.log_estimate.dtype == ref.log_estimate.dtype == dtype
    for field in ("log_estimate", "kernel_evaluations", "hash_evaluations", "classes_used", "exact_fallbacks",
                  "diameter", "exact_classes"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert np.all(ref.exact_classes + ref.exact_fallbacks < ref.classes_used)  # every query sampled a class


@pytest.mark.parametrize("estimator", ["adaptive", "exact"])
def test_weighted_exp_moves_only_per_query_and_per_key_vectors(estimator, host_copies):
    """Build and query of Algorithm 2 (classes estimated by the device sampling path, or summed exactly) copy no
    (n, d) or (m, d) array to the host."""
    K, v, Q = _wexp_instance()
    v[:50] *= 1e-3  # several weight classes
    kde = functools.partial(StandIn, sizing="adaptive") if estimator == "adaptive" else "exact"
    est = WeightedExpKDE(K, v, eps=0.3, diameter=2.5, rng=4, estimator=kde)
    assert host_copies and max(host_copies) <= K.shape[0], host_copies  # per-key: the weights, the squared norms
    host_copies.clear()
    res = est.query(Q)
    assert host_copies and max(host_copies) <= Q.shape[0], host_copies  # per-query only
    assert res.classes_used.max() > 1
    assert (res.exact_classes > 0).all() == (estimator == "exact")


def test_kdeformer_standin_matches_host_and_moves_only_vectors(host_copies):
    """Algorithm 1 with adaptive random sampling inside: the device path equals the host path bit for bit, its
    row-sum stage sampled (fewer kernel evaluations than exact), and no (n, d) array reached the host."""
    Q, K, V = bounded_diameter_instance(1024, 4, c=0.25, rng=3)
    ref = kdeformer(Q, K, V, eps=0.5, n_samples=64, kde=functools.partial(RandomSamplingKDE, sizing="adaptive"), rng=6)
    host_copies.clear()
    dev = kdeformer(Q, K, V, eps=0.5, n_samples=64, kde=functools.partial(StandIn, sizing="adaptive"), rng=6)
    assert host_copies and max(host_copies) <= Q.shape[0], host_copies
    for field in ("output", "log_row_sums", "indices", "probabilities", "column_norms"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(ref, field), err_msg=field)
    assert dev.cost.stage("row_sums_kde").kernel_evaluations < 0.6 * Q.shape[0] * K.shape[0]


# ------------------------------------------------------------------------------------------------------------------
# the stopping rule: masked updates (no data-dependent index sets on the device) change no bit of the host's answer


def _index_set_bernstein(draw, m, eps, delta, R, max_samples, floor):
    """bernstein_stop as it was written before it ran on the device: updates through index sets of the active
    streams. The test oracle for the masked form (same arithmetic, hence the same bits)."""
    from kdetheory.kde._mom import LAMBDA_CAP, _checkpoints

    L = np.log(2.0 / delta)
    est, below, used = np.full(m, np.nan), np.zeros(m, dtype=bool), np.zeros(m, dtype=np.int64)
    s_x, s_q, s_lam, s_lam_x, s_psi, lb, ub = (np.zeros(m) for _ in range(7))
    ub[:] = np.inf
    active, t_prev = np.arange(m), 0
    for t in _checkpoints(max_samples):
        if active.size == 0:
            break
        X = draw(active, t_prev, t) / R
        i = np.arange(t_prev + 1, t + 1, dtype=np.float64)
        S = s_x[active, None] + np.cumsum(X, axis=1)
        mean_i = (0.5 + S) / (i + 1.0)
        mean_prev = np.concatenate([((0.5 + s_x[active]) / (t_prev + 1.0))[:, None], mean_i[:, :-1]], axis=1)
        Q = s_q[active, None] + np.cumsum((X - mean_i) ** 2, axis=1)
        var_prev = np.concatenate([((0.25 + s_q[active]) / (t_prev + 1.0))[:, None], ((0.25 + Q) / (i + 1.0))[:, :-1]],
                                  axis=1)
        lam = np.minimum(LAMBDA_CAP, np.sqrt(2.0 * L / (var_prev * i * np.log1p(i))))
        s_lam[active] += lam.sum(axis=1)
        s_lam_x[active] += (lam * X).sum(axis=1)
        s_psi[active] += ((X - mean_prev) ** 2 * (-np.log1p(-lam) - lam)).sum(axis=1)
        s_x[active], s_q[active] = S[:, -1], Q[:, -1]
        used[active] = t
        t_prev = t
        centre, half = s_lam_x[active] / s_lam[active], (L + s_psi[active]) / s_lam[active]
        lb[active] = np.maximum(lb[active], R * (centre - half))
        ub[active] = np.minimum(ub[active], R * (centre + half))
        low = ub[active] < floor
        below[active[low]] = True
        est[active[low]] = R * s_x[active[low]] / t
        stop = (1.0 + eps) * lb[active] >= (1.0 - eps) * ub[active]
        done = active[stop & ~low]
        est[done] = 0.5 * ((1.0 + eps) * lb[done] + (1.0 - eps) * ub[done])
        active = active[~(stop | low)]
    return est, used, below


@pytest.mark.parametrize("chunk_bytes", [None, 2048], ids=["one-block", "blocks-of-streams"])
def test_bernstein_stop_masked_form_is_bit_identical(chunk_bytes, monkeypatch):
    """Streams with means from far below the floor to 0.9, stopping at different checkpoints, some never; in one
    block, and in blocks of streams that keep each batch within a 2 KiB chunk budget (per-stream arithmetic does not
    depend on the blocking)."""
    from kdetheory import _config
    from kdetheory.kde._mom import bernstein_stop

    if chunk_bytes is not None:
        monkeypatch.setattr(_config, "CHUNK_BYTES", chunk_bytes)

    means = np.repeat([1e-4, 0.01, 0.05, 0.2, 0.5, 0.9], 7)
    streams = np.random.default_rng(12).binomial(1, means[:, None], size=(means.size, 3000)).astype(np.float64)
    draw = lambda idx, t0, t1: 2.0 * streams[np.asarray(idx), t0:t1]
    got = bernstein_stop(draw, means.size, 0.2, 0.05, 2.0, 3000, floor=0.02)
    expect = _index_set_bernstein(draw, means.size, 0.2, 0.05, 2.0, 3000, 0.02)
    for a, b, name in zip(got, expect, ("estimate", "used", "below")):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert got[2].any() and np.isnan(got[0]).any() and (got[1] < 3000).any()  # all three outcomes occur
