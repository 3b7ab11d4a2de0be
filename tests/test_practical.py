"""Practical KDEformer (Algorithm 3): sparse part, unbiased residual, remainders, backends, input checks."""
import numpy as np
import pytest

from kdetheory.attention.exact import softmax_attention
from kdetheory.attention.practical import kdeformer_practical
from kdetheory.lsh.angular import AngularLSH, gray_code_order


def _instance(lead, n_q, n_k, d=6, dv=3, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(lead + (n_q, d)) * spread, rng.standard_normal(lead + (n_k, d)) * spread,
            rng.standard_normal(lead + (n_k, dv)))


def _reference_mask(q, k, lsh, b, order="gray"):
    """Dense (n_q, n_k) block mask of one sequence, built from the definitions (no shared code)."""
    n_q, n_k = q.shape[0], k.shape[0]
    position = {int(bucket): t for t, bucket in enumerate(gray_code_order(lsh.n_hashes, order=order))}
    rq = [position[int(i)] for i in lsh.bucket_ids(q)]
    rk = [position[int(i)] for i in lsh.bucket_ids(k)]
    sq, sk = sorted(range(n_q), key=lambda i: (rq[i], i)), sorted(range(n_k), key=lambda j: (rk[j], j))
    n_blocks = -(-n_k // b)
    mask = np.zeros((n_q, n_k), dtype=bool)
    for t in range(n_blocks):
        k0, k1 = t * b, min(n_k, (t + 1) * b)
        q0, q1 = (k0 * n_q) // n_k, (k1 * n_q) // n_k if t < n_blocks - 1 else n_q
        for u in range(q0, q1):
            mask[sq[u], [sk[v] for v in range(k0, k1)]] = True
    return mask


def _parts_true(q, k, v, mask):
    A = np.exp(q @ k.T)
    V1 = np.column_stack([v, np.ones(len(v))])
    return (A * mask) @ V1, (A * ~mask) @ V1


def _sum_scale(q, k, v, mask):
    """``(A * mask) @ |[V, 1]|``: the size of the summed terms, the scale of any sum's rounding error."""
    V1 = np.column_stack([np.abs(v), np.ones(len(v))])
    return (np.exp(q @ k.T) * mask) @ V1


@pytest.mark.parametrize("order", ["gray", "authors"])
@pytest.mark.parametrize("n_q,n_k,b", [(48, 48, 8), (37, 50, 7), (64, 29, 5), (24, 48, 8), (5, 40, 3)])
def test_sparse_part_is_exact_block_restriction(n_q, n_k, b, order):
    Q, K, V = _instance((2, 3), n_q, n_k)
    lsh = AngularLSH(Q.shape[-1], 4, rng=5)
    res = kdeformer_practical(Q, K, V, bucket_size=b, n_samples=0, order=order, lsh=lsh, backend="numpy")
    for idx in np.ndindex(2, 3):
        mask = _reference_mask(Q[idx], K[idx], lsh, b, order)
        assert mask.any(axis=1).all()  # every query sees its own, non-empty block
        sparse_true, _ = _parts_true(Q[idx], K[idx], V[idx], mask)
        got = res.sparse[idx] * np.exp(res.log_shift[idx])[:, None]
        # 1e-13 of the summed magnitudes: signed values cancel, so an entry-wise rtol is ill-posed.
        assert np.all(np.abs(got - sparse_true) <= 1e-13 * _sum_scale(Q[idx], K[idx], V[idx], mask))
        # With no samples the output is the block-restricted softmax.
        out_scale = _sum_scale(Q[idx], K[idx], V[idx], mask)
        assert np.all(np.abs(res.output[idx] - sparse_true[:, :-1] / sparse_true[:, -1:])
                      <= 1e-13 * out_scale[:, :-1] / out_scale[:, -1:])
    assert res.cost.details["exact_entries"] == res.cost.stage("sparse").kernel_evaluations == sum(int(_reference_mask(Q[i], K[i], lsh, b, order).sum()) for i in np.ndindex(2, 3))


def test_equal_split_matches_paper_blocks():
    # n_k % b == 0 and n_q % (n_k / b) == 0: the code's equal split, n_q b / n_k queries per block.
    from kdetheory.attention._blocks import BlockPartition

    part = BlockPartition.build(24, 48, 8)
    assert part.n_blocks == 6
    assert np.array_equal(np.diff(part.q_start), np.full(6, 4))
    assert np.array_equal(np.diff(part.k_start), np.full(6, 8))
    odd = BlockPartition.build(37, 50, 7)
    assert np.diff(odd.k_start).tolist() == [7] * 7 + [1]
    assert odd.q_start[-1] == 37 and np.all(np.diff(odd.q_start) >= 0)


@pytest.mark.parametrize("sampling", ["values", "columns", "uniform"])
def test_residual_estimator_unbiased_root_T_convergence(sampling):
    Q, K, V = _instance((), 40, 64, seed=1)
    lsh = AngularLSH(Q.shape[-1], 3, rng=11)
    mask = _reference_mask(Q, K, lsh, 8)
    _, res_true = _parts_true(Q, K, V, mask)
    T = 1000
    draws = np.empty((T,) + res_true.shape)
    for t, seed in enumerate(np.random.SeedSequence(99).spawn(T)):
        r = kdeformer_practical(Q, K, V, bucket_size=8, n_samples=6, sampling=sampling, lsh=lsh, rng=seed,
                                backend="numpy")
        draws[t] = r.residual * np.exp(r.log_shift)[:, None]
    sizes = np.array([10, 100, 1000])
    errors = []
    for s in sizes:  # RMS over the disjoint groups of size s (one group at s = 1000)
        groups = draws.reshape(T // s, s, *res_true.shape).mean(axis=1)
        errors.append(np.sqrt(np.mean(np.sum((groups - res_true) ** 2, axis=(1, 2)))) / np.linalg.norm(res_true))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert abs(slope + 0.5) < 0.15, (errors, slope)
    assert errors[-1] < 0.1


def test_biased_estimator_would_fail_the_slope_check():
    # Negative control: a constant 20% bias makes the same fit flatten well past the tolerance.
    rng = np.random.default_rng(0)
    truth = np.ones(300)
    draws = truth * 1.2 + rng.standard_normal((1000, 300))
    sizes = np.array([10, 100, 1000])
    errors = [np.sqrt(np.mean(np.sum((draws.reshape(1000 // s, s, 300).mean(1) - truth) ** 2, 1))) / np.linalg.norm(truth)
              for s in sizes]
    assert abs(np.polyfit(np.log(sizes), np.log(errors), 1)[0] + 0.5) > 0.15


@pytest.mark.parametrize("n_q,n_k,b,m", [(33, 50, 7, 9), (50, 33, 4, 5), (16, 16, 16, 3), (20, 31, 31, 0)])
def test_batch_and_heads_equal_per_sequence_runs(n_q, n_k, b, m):
    Q, K, V = _instance((2, 3), n_q, n_k, seed=4)
    lsh = AngularLSH(Q.shape[-1], 5, rng=3)
    full = kdeformer_practical(Q, K, V, bucket_size=b, n_samples=m, sampling="uniform", lsh=lsh, rng=0)
    assert full.output.shape == (2, 3, n_q, 3) and full.row_sums.shape == (2, 3, n_q)
    assert full.cost.feature_dimension == b + m and full.cost.samples == 6 * m
    for idx in np.ndindex(2, 3):
        single = kdeformer_practical(Q[idx], K[idx], V[idx], bucket_size=b, n_samples=0, lsh=lsh)
        # The sparse part does not depend on the draws: it must match sequence by sequence.
        np.testing.assert_allclose(full.sparse[idx] * np.exp(full.log_shift[idx])[:, None],
                                   single.sparse * np.exp(single.log_shift)[:, None], rtol=1e-13)


def test_full_block_is_exact_even_with_huge_logits():
    Q, K, V = _instance((2,), 30, 30, spread=1.0, seed=2)
    Q = Q * 40.0  # logits in the hundreds: an unshifted exp overflows
    res = kdeformer_practical(Q, K, V, bucket_size=30, n_samples=7, rng=0)
    np.testing.assert_allclose(res.output, softmax_attention(Q, K, V), rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(res.log_row_sums))
    # Samples all fall in the single block, so they are all masked: the residual is zero.
    assert np.all(res.residual == 0)


@pytest.mark.parametrize("sampling", ["values", "columns", "uniform"])
def test_numba_matches_numpy(sampling):
    Q, K, V = _instance((2, 2), 45, 61, seed=6)
    a = kdeformer_practical(Q, K, V, bucket_size=9, n_samples=13, sampling=sampling, rng=7, backend="numpy")
    b = kdeformer_practical(Q, K, V, bucket_size=9, n_samples=13, sampling=sampling, rng=7, backend="numba")
    np.testing.assert_allclose(b.output, a.output, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.log_row_sums, a.log_row_sums, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_supported(backend):
    Q, K, V = _instance((2,), 40, 40, seed=8)
    r64 = kdeformer_practical(Q, K, V, bucket_size=8, n_samples=10, rng=1, backend=backend)
    r32 = kdeformer_practical(Q.astype(np.float32), K.astype(np.float32), V.astype(np.float32),
                              bucket_size=8, n_samples=10, rng=1, backend=backend)
    assert r32.output.dtype == np.float32
    np.testing.assert_allclose(r32.output, r64.output, rtol=2e-4, atol=2e-5)


def test_estimate_improves_with_samples():
    Q, K, V = _instance((), 256, 256, seed=9, spread=0.5)
    exact = softmax_attention(Q, K, V)
    err = {m: np.mean([np.linalg.norm(kdeformer_practical(Q, K, V, bucket_size=16, n_samples=m, rng=s).output - exact)
                       for s in range(5)]) for m in (16, 1024)}
    assert err[1024] < err[16] / 3  # 64x the samples: about 8x less error expected


def test_bad_inputs_name_the_argument():
    Q, K, V = _instance((), 10, 12)
    f = kdeformer_practical
    for kwargs, name in [({"bucket_size": 0, "n_samples": 2}, "bucket_size"), ({"bucket_size": 13, "n_samples": 2}, "bucket_size"),
                         ({"bucket_size": 3, "n_samples": -1}, "n_samples"), ({"bucket_size": 3, "n_samples": 2, "n_hashes": 0}, "n_hashes"),
                         ({"bucket_size": 3, "n_samples": 2, "n_hashes": 31}, "n_hashes"),
                         ({"bucket_size": 3, "n_samples": 2, "sampling": "norms"}, "sampling"),
                         ({"bucket_size": 3, "n_samples": 2, "order": "binary"}, "order"),
                         ({"bucket_size": 3, "n_samples": 2, "scale": -1.0}, "scale")]:
        with pytest.raises(ValueError, match=name):
            f(Q, K, V, **kwargs)
    with pytest.raises(TypeError, match="bucket_size"):
        f(Q, K, V, bucket_size=2.5, n_samples=1)
    with pytest.raises(ValueError, match="V"):
        f(Q, K, V[:-1], bucket_size=3, n_samples=1)
    with pytest.raises(ValueError, match="K"):
        f(Q, K[:, :-1], V, bucket_size=3, n_samples=1)
    bad = Q.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Q"):
        f(bad, K, V, bucket_size=3, n_samples=1)
    with pytest.raises(ValueError, match="lsh"):
        f(Q, K, V, bucket_size=3, n_samples=1, lsh=AngularLSH(4, 3))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype,scale", [(np.float32, 30.0), (np.float64, 200.0)])
def test_huge_logits_every_backend_and_dtype(backend, dtype, scale):
    """Logits of a few hundred (float32) to thousands (float64) stay exact on every CPU backend: the max-shift."""
    rng = np.random.default_rng(3)
    Q, K, V = rng.standard_normal((3, 2, 40, 6))
    Q = Q * scale
    ref = softmax_attention(Q, K, V)
    res = kdeformer_practical(Q.astype(dtype), K.astype(dtype), V.astype(dtype), bucket_size=40, n_samples=5,
                              rng=0, backend=backend)
    assert res.output.dtype == dtype and np.all(np.isfinite(res.output)) and np.all(np.isfinite(res.log_row_sums))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(res.output, ref, rtol=tol, atol=tol)
