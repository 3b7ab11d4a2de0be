"""The fused CUDA online-softmax kernel against the NumPy reference: dtypes, odd sizes, tile
remainders, key ranges, index lists with exclusion, huge logits, split key sequences.

Skipped without CuPy and a GPU; run on the lent GPU machine.
"""
import numpy as np
import pytest

from kdetheory._array import cupy_available
from kdetheory._stream import KeyRanges, online_softmax

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _finish(mx, acc):
    """(lse, normalised products): the quantities the callers use, independent of the shift."""
    mx, acc = (np.asarray(a.get() if hasattr(a, "get") else a, dtype=np.float64) for a in (mx, acc))
    with np.errstate(divide="ignore", invalid="ignore"):
        return mx + np.log(acc[..., -1]), acc[..., :-1] / acc[..., -1:]


def _compare(got, want, tol):
    (lse_g, out_g), (lse_w, out_w) = _finish(*got), _finish(*want)
    assert np.array_equal(np.isinf(lse_g), np.isinf(lse_w))
    live = np.isfinite(lse_w)
    if not live.any():
        return
    assert np.all(np.abs(lse_g[live] - lse_w[live]) <= tol * np.maximum(1.0, np.abs(lse_w[live])))
    if out_w.shape[-1]:
        # relative norm error per (batch, row block): 1e-5 in float32, 1e-12 in float64
        err = np.linalg.norm(out_g[live] - out_w[live]) / np.linalg.norm(out_w[live])
        assert err <= tol, err


def _inputs(B, n_q, n_k, d, p, dtype, logit_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((B, n_q, d)) * logit_scale / np.sqrt(d)
    K, V = rng.standard_normal((B, n_k, d)), rng.standard_normal((B, n_k, p))
    log_w = rng.standard_normal((B, n_k))
    return [a.astype(dtype) for a in (Q, K, V, log_w)]


def _run(backend, arrays, **kw):
    import cupy as cp

    if backend == "cupy":
        arrays = [None if a is None else cp.asarray(a) for a in arrays]
        kw = {k: (cp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    Q, K, V, log_w = arrays
    return online_softmax(Q, K, V, log_w=log_w, backend=backend, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,n_q,n_k,d,p", [
    (1, 1, 1, 1, 1), (3, 65, 129, 7, 5), (2, 63, 1000, 64, 64), (1, 1000, 3001, 64, 64),
    (4, 333, 100, 50, 0), (2, 17, 250, 128, 65), (1, 5, 200_003, 64, 0),  # last: split key sequence
])
def test_full_range_matches_reference(dtype, B, n_q, n_k, d, p):
    Q, K, V, log_w = _inputs(B, n_q, n_k, d, p, dtype, logit_scale=3.0)
    log_w[:, ::5] = -np.inf
    V = V if p else None
    ref = _run("numpy", [a.astype(np.float64) if a is not None else None for a in (Q, K, V, log_w)], scale=0.9)
    got = _run("cupy", [Q, K, V, log_w], scale=0.9)
    assert got[0].dtype == dtype and got[1].shape == (B, n_q, p + 1)
    _compare(got, ref, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sum_range,with_index", [(True, False), (False, True), (True, True)])
def test_ranges_and_index_lists(dtype, sum_range, with_index):
    B, n_q, n_k, d, p, m = 3, 1000, 1100, 32, 24, 300
    Q, K, V, log_w = _inputs(B, n_q, n_k, d, p, dtype, logit_scale=2.0, seed=1)
    rng = np.random.default_rng(2)
    # blocks of uneven size, one empty query block, one empty key range, ranges not tile-aligned
    q_start = np.array([0, 70, 70, 333, 334, 801, 1000])
    k_lo, k_hi = np.array([0, 5, 90, 400, 400, 1000]), np.array([77, 5, 480, 400, 1100, 1100])
    ranges = KeyRanges(q_start, k_lo, k_hi)
    index = rng.integers(0, n_k, (B, m))
    index_log_w = rng.standard_normal((B, m)).astype(dtype)
    kw = dict(scale=1.0, ranges=ranges, sum_range=sum_range)
    if with_index:
        kw.update(index=index, index_log_w=index_log_w)
    ref = _run("numpy", [a.astype(np.float64) for a in (Q, K, V, log_w)],
               **{k: (v.astype(np.float64) if k == "index_log_w" else v) for k, v in kw.items()})
    got = _run("cupy", [Q, K, V, log_w], **kw)
    _compare(got, ref, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(dtype):
    # Integer features times 64: logits up to ~1.6e4 (exp overflows at 89 in float32), computed
    # exactly in either dtype, so the only error left is that of the reduction itself.
    rng = np.random.default_rng(3)
    Q = (rng.integers(-4, 5, (2, 300, 16)) * 64).astype(dtype)
    K = rng.integers(-4, 5, (2, 700, 16)).astype(dtype)
    V = rng.standard_normal((2, 700, 8)).astype(dtype)
    ref = _run("numpy", [a.astype(np.float64) for a in (Q, K, V)] + [None])
    got = _run("cupy", [Q, K, V, None])
    assert np.isfinite(got[0].get()).all() and np.isfinite(got[1].get()).all()
    assert float(got[0].get().max()) > 5000
    _compare(got, ref, TOL[dtype])


def test_exact_public_functions_use_the_kernel():
    import cupy as cp

    from kdetheory.attention import row_sums, softmax_attention
    from kdetheory.kde import exp_kde, gaussian_kde

    rng = np.random.default_rng(4)
    Q, K, V = rng.standard_normal((2, 3, 257, 64)) * 0.2, rng.standard_normal((2, 3, 513, 64)), rng.standard_normal((2, 3, 513, 64))
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        args = [cp.asarray(a, dtype=dtype) for a in (Q, K, V)]
        out = softmax_attention(*args)
        assert out.dtype == dtype
        want = softmax_attention(Q, K, V, backend="numpy")
        assert np.linalg.norm(out.get() - want) <= tol * np.linalg.norm(want)
        lse = row_sums(args[0], args[1], log=True).get()
        assert np.max(np.abs(lse - row_sums(Q, K, log=True, backend="numpy"))) <= tol * 10
    X, Y = rng.standard_normal((5000, 16)), rng.standard_normal((40, 16))
    np.testing.assert_allclose(gaussian_kde(cp.asarray(X), cp.asarray(Y), bandwidth=1.3).get(),
                               gaussian_kde(X, Y, bandwidth=1.3), rtol=1e-12)
    np.testing.assert_allclose(exp_kde(cp.asarray(X), cp.asarray(Y), log=True).get(), exp_kde(X, Y, log=True), rtol=1e-12)
