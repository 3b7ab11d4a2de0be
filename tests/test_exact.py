"""Exact references: agreement with naive float64 loops, stability, backend parity."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdetheory.attention import row_sums, softmax_attention, softmax_matrix
from kdetheory.kde import exp_kde, gaussian_kde
from kdetheory.testing import attention_inputs, nonnegative_weights, point_clouds

import naive



@given(X=point_clouds(max_norm=(0.0, 6.0), max_d=5), data=st.data())
def test_exp_kde_matches_naive(backend, X, data):
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_norm=(0.0, 6.0), max_n=12))
    w = data.draw(nonnegative_weights(X.shape[0]))
    got = exp_kde(X, Y, weights=w, log=True, backend=backend)
    ref = naive.exp_kde_log(X, Y, w)
    # log S is compared absolutely: an absolute error e in log S is a relative error e in S.
    naive.assert_log_close(got, ref)


@given(X=point_clouds(max_norm=(0.0, 4.0), max_d=5, max_n=40), data=st.data())
def test_gaussian_kde_matches_naive(backend, X, data):
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_norm=(0.0, 4.0), max_n=10))
    h = data.draw(st.floats(0.3, 5.0))
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-3, 3)))
    ref = naive.gaussian_kde(X, Y, h, w)
    got = gaussian_kde(X, Y, bandwidth=h, weights=w, backend=backend)
    # Error of the expanded squared distance: eps * (spread^2 / h^2), spread <= 8 here.
    np.testing.assert_allclose(got, ref, rtol=1e-13 * (1 + 64 / h**2), atol=0)


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
def test_backend_parity(backend, qkv):
    Q, K, V = qkv
    a = softmax_attention(Q, K, V, backend="numpy")
    b = softmax_attention(Q, K, V, backend=backend)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(exp_kde(K, Q, log=True, backend="numpy"), exp_kde(K, Q, log=True, backend=backend), rtol=1e-12, atol=1e-12)


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


# --- the one reduction: key ranges, index lists, exclusion, chunked merges ---------------------

def _loops(Q, K, V, scale, log_w, ranges, sum_range, index, index_log_w):
    """(mx, acc) of kdetheory._stream.online_softmax by plain loops over the definition (no library code)."""
    B, n_q, _ = Q.shape
    p = V.shape[2]
    mx, acc = np.full((B, n_q), -np.inf), np.zeros((B, n_q, p + 1))
    q_start, k_lo, k_hi = ranges
    for b in range(B):
        for t in range(len(k_lo)):
            for i in range(q_start[t], q_start[t + 1]):
                terms = []
                if sum_range:
                    terms += [(scale * math.fsum(Q[b, i] * K[b, j]) + log_w[b, j], j) for j in range(k_lo[t], k_hi[t])]
                if index is not None:
                    terms += [(scale * math.fsum(Q[b, i] * K[b, j]) + w, j) for j, w in zip(index[b], index_log_w[b])
                              if not k_lo[t] <= j < k_hi[t]]
                terms = [(x, j) for x, j in terms if x > -np.inf]
                if terms:
                    mx[b, i] = top = max(x for x, _ in terms)
                    acc[b, i] = sum(math.exp(x - top) * np.append(V[b, j], 1.0) for x, j in terms)
    return mx, acc


# query blocks (rows) and key ranges: empty query blocks, empty and overlapping key ranges,
# ranges reaching the last key; the index list repeats keys and hits inside and outside ranges.
_RANGES = ([0, 3, 6, 6, 20, 41, 70], [0, 5, 1, 9, 30, 2], [12, 5, 8, 40, 67, 3])


@pytest.mark.parametrize("sum_range,with_index", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_online_softmax_matches_loops(backend, sum_range, with_index, chunked, dtype, request):
    from kdetheory._stream import KeyRanges, online_softmax

    if chunked:
        request.getfixturevalue("small_chunks")
    rng = np.random.default_rng(11)
    B, n_q, n_k, d, p, m = 2, 70, 67, 5, 3, 23
    Q, K, V = rng.standard_normal((B, n_q, d)) * 3, rng.standard_normal((B, n_k, d)), rng.standard_normal((B, n_k, p))
    log_w = rng.standard_normal((B, n_k))
    log_w[0, [2, 40]] = -np.inf  # weight-zero keys contribute nothing
    index = rng.integers(0, n_k, (B, m))
    index[:, :3] = [[4, 4, 66], [0, 10, 35]]
    index_log_w = rng.standard_normal((B, m))
    ranges = KeyRanges(*(np.array(a) for a in _RANGES))
    want = _loops(Q, K, V, 0.7, log_w, _RANGES, sum_range, index if with_index else None, index_log_w)
    args = [a.astype(dtype) for a in (Q, K, V, log_w, index_log_w)]
    if backend == "cupy":
        import cupy as cp

        args, index = [cp.asarray(a) for a in args], cp.asarray(index)
    Qx, Kx, Vx, lwx, ilwx = args
    mx, acc = online_softmax(Qx, Kx, Vx, scale=0.7, log_w=lwx, ranges=ranges, sum_range=sum_range,
                             index=index if with_index else None, index_log_w=ilwx if with_index else None, backend=backend)
    mx, acc = (a.get() if hasattr(a, "get") else a for a in (mx, acc))
    assert mx.dtype == acc.dtype == dtype and acc.shape == (B, n_q, p + 1)
    empty = np.isinf(want[0])
    assert (~empty).any() and (empty.any() or with_index)  # empty key sets are exercised
    assert np.array_equal(np.isinf(mx), empty) and np.all(acc[empty] == 0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(mx[~empty], want[0][~empty], rtol=tol, atol=tol)
    # acc is relative to exp(mx): compare the unshifted-invariant ratios and the sums' scale.
    np.testing.assert_allclose(acc[~empty], want[1][~empty], rtol=tol, atol=tol * np.abs(want[1]).max())


def test_exact_sums_multi_block_merge(backend, small_chunks):
    """With a 2 KiB budget the exact sums run many row and column blocks (and their online merge)."""
    rng = np.random.default_rng(12)
    Q, K, V = rng.standard_normal((50, 6)) * 4, rng.standard_normal((131, 6)), rng.standard_normal((131, 5))
    from kdetheory._config import block_shape

    rows, cols = block_shape(50, 131, 8)
    assert rows < 50 and cols < 131  # the chunked path really runs
    np.testing.assert_allclose(softmax_attention(Q, K, V, backend=backend), naive.attention(Q, K, V), rtol=1e-11, atol=1e-12)
    naive.assert_log_close(row_sums(Q, K, log=True, backend=backend), naive.exp_kde_log(K, Q))
    w = rng.random(131)
    w[::7] = 0
    naive.assert_log_close(exp_kde(K, Q, weights=w, log=True, backend=backend), naive.exp_kde_log(K, Q, w))


def test_block_shape_budget_and_reset():
    from kdetheory import _config

    for rows, cols, batch in [(10**6, 10**6, 1), (7, 5, 3), (100, 10**7, 32), (1, 1, 1)]:
        r, c = _config.block_shape(rows, cols, 8, batch=batch)
        assert 1 <= r <= rows and 1 <= c <= cols
        assert r * c * batch * 2 * 8 <= max(_config.CHUNK_BYTES, 2 * 8 * batch)
    default = _config.CHUNK_BYTES
    _config.CHUNK_BYTES = 1000
    assert _config.block_shape(100, 100, 8) == (1, 62)
    _config.reset()
    assert _config.CHUNK_BYTES == default
