"""Exact references: agreement with naive float64 loops, stability, backend parity."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdetheory.attention import row_sums, softmax_attention, softmax_matrix
from kdetheory.kde import exp_kde, gaussian_kde
from kdetheory.testing import attention_inputs, nonnegative_weights, point_clouds

import naive

CPU = ["numpy", "numba"]


@pytest.mark.parametrize("backend", CPU)
@given(X=point_clouds(max_norm=(0.0, 6.0), max_d=5), data=st.data())
def test_exp_kde_matches_naive(backend, X, data):
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_norm=(0.0, 6.0), max_n=12))
    w = data.draw(nonnegative_weights(X.shape[0]))
    got = exp_kde(X, Y, weights=w, log=True, backend=backend)
    ref = naive.exp_kde_log(X, Y, w)
    # log S is compared absolutely: an absolute error e in log S is a relative error e in S.
    naive.assert_log_close(got, ref)


@pytest.mark.parametrize("backend", CPU)
@given(X=point_clouds(max_norm=(0.0, 4.0), max_d=5, max_n=40), data=st.data())
def test_gaussian_kde_matches_naive(backend, X, data):
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_norm=(0.0, 4.0), max_n=10))
    h = data.draw(st.floats(0.3, 5.0))
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-3, 3)))
    ref = naive.gaussian_kde(X, Y, h, w)
    got = gaussian_kde(X, Y, bandwidth=h, weights=w, backend=backend)
    # Error of the expanded squared distance: eps * (spread^2 / h^2), spread <= 8 here.
    np.testing.assert_allclose(got, ref, rtol=1e-13 * (1 + 64 / h**2), atol=0)


@pytest.mark.parametrize("backend", CPU)
@given(qkv=attention_inputs(max_logit=(0.0, 50.0)))
def test_attention_and_row_sums_match_naive(backend, qkv):
    Q, K, V = qkv
    np.testing.assert_allclose(softmax_attention(Q, K, V, backend=backend), naive.attention(Q, K, V), rtol=1e-11, atol=1e-12)
    naive.assert_log_close(row_sums(Q, K, log=True, backend=backend), naive.exp_kde_log(K, Q))


@given(qkv=attention_inputs(max_logit=(1000.0, 5000.0)))
def test_huge_logits_stay_finite_and_exact(qkv):
    """Inner products in the thousands: log-domain results are finite and exact; outputs are convex combinations."""
    Q, K, V = qkv
    log_d = row_sums(Q, K, log=True)
    assert np.all(np.isfinite(log_d))
    np.testing.assert_allclose(log_d, naive.exp_kde_log(K, Q), rtol=1e-13, atol=1e-9)
    out = softmax_attention(Q, K, V)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, naive.attention(Q, K, V), rtol=1e-9, atol=1e-9)
    assert np.all(out <= V.max(axis=0) + 1e-9) and np.all(out >= V.min(axis=0) - 1e-9)


def test_overflow_is_never_silent():
    X = np.full((3, 2), 30.0)
    with pytest.raises(OverflowError, match="log=True"):
        exp_kde(X, X)
    with pytest.raises(OverflowError, match="log=True"):
        row_sums(X, X)
    assert np.isfinite(exp_kde(X, X, log=True)).all()


@given(qkv=attention_inputs(max_n=24))
def test_backend_parity(qkv):
    Q, K, V = qkv
    a = softmax_attention(Q, K, V, backend="numpy")
    b = softmax_attention(Q, K, V, backend="numba")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(exp_kde(K, Q, log=True, backend="numpy"), exp_kde(K, Q, log=True, backend="numba"), rtol=1e-12, atol=1e-12)


def test_zero_weights_give_minus_inf_log_and_zero_density():
    X = np.random.default_rng(0).standard_normal((5, 3))
    assert np.all(exp_kde(X, X[:2], weights=np.zeros(5), log=True) == -np.inf)
    assert np.all(gaussian_kde(X, X[:2], weights=np.zeros(5)) == 0)


def test_float32_is_kept_and_accurate():
    rng = np.random.default_rng(1)
    Q, K, V = (rng.standard_normal((40, 8)) for _ in range(3))
    out = softmax_attention(Q.astype(np.float32), K.astype(np.float32), V.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, naive.attention(Q, K, V), rtol=1e-4, atol=1e-5)
    X32 = (0.3 * Q).astype(np.float32)
    for f in (lambda: gaussian_kde(X32, X32[:5], bandwidth=0.8), lambda: exp_kde(X32, X32[:5]), lambda: row_sums(X32, X32)):
        assert f().dtype == np.float32
    np.testing.assert_allclose(gaussian_kde(X32, X32[:5], bandwidth=0.8), naive.gaussian_kde(0.3 * Q, 0.3 * Q[:5], 0.8), rtol=1e-5)


def test_integers_are_converted_to_float64():
    X = np.arange(12).reshape(4, 3)
    assert exp_kde(X * 0, X * 0).dtype == np.float64


def test_leading_axes_and_rectangular_shapes():
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((2, 3, 7, 4))
    K = rng.standard_normal((2, 3, 5, 4))
    V = rng.standard_normal((2, 3, 5, 6))
    out = softmax_attention(Q, K, V)
    assert out.shape == (2, 3, 7, 6)
    np.testing.assert_allclose(out[1, 2], naive.attention(Q[1, 2], K[1, 2], V[1, 2]), rtol=1e-12)
    assert row_sums(Q, K).shape == (2, 3, 7)


def test_softmax_matrix_operator_and_transpose():
    rng = np.random.default_rng(3)
    Q, K = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    P = naive.softmax_matrix(Q, K, 0.7)
    op = softmax_matrix(Q, K, scale=0.7)
    np.testing.assert_allclose(op.todense(), P, rtol=1e-13, atol=1e-15)
    x, y = rng.standard_normal(20), rng.standard_normal(30)
    np.testing.assert_allclose(op @ x, P @ x, rtol=1e-12)
    np.testing.assert_allclose(op.T @ y, P.T @ y, rtol=1e-12)
    np.testing.assert_allclose(op.T.T @ x, P @ x, rtol=1e-12)
    np.testing.assert_allclose(op @ np.ones(20), np.ones(30), rtol=1e-13)


def test_memory_bound_exp_kde_400k_points():
    """n = 400,000 points, 2,000 queries, d = 32: peak temporary memory well under 1 GiB."""
    import tracemalloc

    rng = np.random.default_rng(4)
    X = rng.standard_normal((400_000, 32)) * 0.2
    Y = rng.standard_normal((2_000, 32)) * 0.2
    inputs = X.nbytes + Y.nbytes
    tracemalloc.start()
    out = exp_kde(X, Y, log=True, backend="numpy")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(out).all()
    assert peak < 2**30, f"peak {peak / 2**20:.0f} MiB beyond the inputs' {inputs / 2**20:.0f} MiB"
    np.testing.assert_allclose(out[:3], exp_kde(X, Y[:3], log=True, backend="numba"), rtol=1e-12)
