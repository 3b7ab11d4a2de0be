"""Issue 12 regressions in the attention theory path, AMM and linear algebra: each test is the issue's
reproducer (item numbers in the docstrings), plus hypothesis properties wide enough to have found them."""
import functools

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from kdetheory.amm import SamplingMatrix, amm, required_samples, sampling_probabilities
from kdetheory.attention import softmax_attention
from kdetheory.attention.baselines import nystrom, performer, reformer, scatterbrain, uniform_sampling
from kdetheory.attention.exact import row_sums
from kdetheory.attention.kdeformer import kdeformer, sampled_attention
from kdetheory.kde import HashingBasedKDE, RandomSamplingKDE
from kdetheory.linalg import relative_spectral_error, spectral_norm, stable_rank
from kdetheory.testing import attention_inputs, seeds

rng = np.random.default_rng(0)
Q, K, V = rng.standard_normal((3, 64, 8))


def _exact_log_d(Q, K):
    L = Q.astype(np.float64) @ K.astype(np.float64).T
    top = L.max(axis=1)
    return top + np.log(np.exp(L - top[:, None]).sum(axis=1))


@pytest.mark.parametrize("tokens", ["identical", "zero"])
@pytest.mark.parametrize("kde", ["hbe", "sampling", "exact"])
def test_kdeformer_identical_or_zero_tokens(tokens, kde):
    """Item 4: kdeformer(Q, Q, Q) with identical or all-zero tokens raised 'diameter: got 0.0'."""
    X = np.tile(Q[:1], (64, 1)) if tokens == "identical" else np.zeros((64, 8))
    res = kdeformer(X, X, V, eps=0.5, kde=kde, rng=0)
    assert np.all(np.isfinite(res.output))
    # Identical logits: D_ii = n e^{<q, q>}; truncation and the estimators keep it within eps/3.
    np.testing.assert_allclose(np.asarray(res.log_row_sums), _exact_log_d(X, X), atol=0.5 / 3)


@pytest.mark.parametrize("factor", [3.0, 3.2, 30.0])
@pytest.mark.parametrize("kde", ["hbe", "sampling", "ckns"])
def test_kdeformer_large_logits(factor, kde):
    """Item 5: at 3x (max |logit| 129) "mu_min: got 0.0", at 3.2x an OverflowError; 30x gives logits in the thousands.

    The density floor stays in the log domain; no estimator can be sub-linear at such a floor, so the
    KDEs sum exactly and the cost record says so (work fraction >= 1: the exact regime).
    """
    Qf, Kf = factor * Q, factor * K
    assert np.abs(Qf @ Kf.T).max() > 120
    res = kdeformer(Qf, Kf, V, eps=0.5, kde=kde, rng=0)
    assert np.all(np.isfinite(res.output)) and np.all(np.isfinite(np.asarray(res.log_row_sums)))
    # Row sums: within 1 +- eps/3 of D for every row (here: exact class sums, truncation only).
    assert np.all(np.abs(np.expm1(np.asarray(res.log_row_sums) - _exact_log_d(Qf, Kf))) <= 0.5 / 3)
    assert res.cost.work_fraction >= 1
    assert res.cost.details["exact_class_sums"][0] > 0


def test_kdeformer_takes_an_estimator_factory():
    """Issue 11 item 4: kdeformer(kde=functools.partial(HashingBasedKDE, ...)) reaches Algorithm 1."""
    gen = np.random.default_rng(1)
    Qs, Ks, Vs = 0.3 * gen.standard_normal((200, 4)), 0.3 * gen.standard_normal((300, 4)), gen.standard_normal((300, 2))
    seen = []

    def factory(X, **kwargs):
        est = RandomSamplingKDE(X, **kwargs)
        seen.append((X.shape, kwargs["eps"], kwargs["bandwidth"]))
        return est

    # delta = 1e-6: Theorem 3.2's split bounds the chance that some row misses 1 +- eps/3 by 3.3e-7.
    res = kdeformer(Qs, Ks, Vs, eps=0.6, delta=1e-6, n_samples=50, kde=factory, rng=0)
    assert seen and all(shape[1] == 5 and bw == 1.0 for shape, _, bw in seen)  # lifted (d + 1) points
    assert np.all(np.abs(np.expm1(np.asarray(res.log_row_sums) - _exact_log_d(Qs, Ks))) <= 0.2)
    part = kdeformer(Qs, Ks, Vs, eps=0.6, n_samples=50, kde=functools.partial(HashingBasedKDE, variance_constant=0.05),
                     rng=0)
    assert np.all(np.isfinite(part.output))
    with pytest.raises(TypeError, match="^kde: got 3 of type int"):
        kdeformer(Qs, Ks, Vs, eps=0.5, kde=3)
    with pytest.raises(ValueError, match="^kde: got 'fast'"):
        kdeformer(Qs, Ks, Vs, eps=0.5, kde="fast")


@settings(max_examples=25, deadline=None)
@given(qkv=attention_inputs(max_n=24, max_logit=(0.0, 3000.0)), identical=st.booleans(), single=st.booleans(),
       seed=seeds())
def test_kdeformer_theory_path_is_robust(qkv, identical, single, seed):
    """Items 4, 5 and 24 as a property: identical tokens, logits up to 3000, float32 - never an error,
    the result in the inputs' dtype, and every row sum within 1 +- eps/3 of D.

    False-fail rate: per example, rows fail together with probability <= delta/3 = 1e-7 (Theorem 3.2's
    split), so <= 2.5e-6 for the 25 examples.
    """
    Qh, Kh, Vh = qkv
    if identical:
        Kh = np.repeat(Qh[:1], Kh.shape[0], axis=0)
    if single:
        Qh, Kh, Vh = (a.astype(np.float32) for a in (Qh, Kh, Vh))
    res = kdeformer(Qh, Kh, Vh, eps=0.5, delta=3e-7, kde="hbe", n_samples=16, rng=seed)
    assert res.output.dtype == Qh.dtype and np.asarray(res.log_row_sums).dtype == Qh.dtype
    assert np.all(np.isfinite(res.output))
    rel = np.expm1(np.asarray(res.log_row_sums, dtype=np.float64) - _exact_log_d(Qh, Kh))
    tol = 0.5 / 3 + (1e-4 * (1 + np.abs(Qh @ Kh.T).max()) if single else 0.0)  # float32 rounding of the logits
    assert np.all(np.abs(rel) <= tol)


def test_sampled_attention_messages():
    """Item 17: a batch axis was reported as 'pass a SamplingMatrix over the 1 keys'; the n-mismatch omitted n."""
    S = SamplingMatrix.draw(np.full(5, 0.2), 3, rng=0)
    with pytest.raises(ValueError, match=r"^Q: got shape \(2, 4, 2\); sampled_attention takes one"):
        sampled_attention(np.ones((2, 4, 2)), np.ones((2, 5, 2)), np.ones((2, 5, 1)), S)
    with pytest.raises(ValueError, match="^sampling: got a SamplingMatrix over 5 rows but K has 6 keys"):
        sampled_attention(np.ones((4, 2)), np.ones((6, 2)), np.ones((6, 1)), S)


def test_amm_float32():
    """Item 3: every float32 input failed the probabilities' sum check (rel_tol 1e-9)."""
    X32, Y32 = (rng.standard_normal((500, 4)).astype(np.float32) for _ in range(2))
    res = amm(X32, Y32, n_samples=50, rng=0)
    assert res.product.dtype == np.float32 and res.sampling.probabilities.sum() == pytest.approx(1.0, abs=1e-15)
    p32 = sampling_probabilities(np.sum(X32 * X32, axis=1), np.sum(Y32 * Y32, axis=1))
    assert p32.dtype == np.float32
    SamplingMatrix.draw(p32, 10, rng=0)
    thirds = np.full(3, 1 / 3, dtype=np.float32)  # sums to 1 + 3e-8: exact to float32 rounding, not to 1e-9
    assert abs(float(thirds.astype(np.float64).sum()) - 1) > 1e-8
    np.testing.assert_allclose(SamplingMatrix.draw(thirds, 4, rng=0).weights, 0.75, rtol=1e-15)
    assert amm(X32, Y32.astype(np.float64), n_samples=5, rng=0).product.dtype == np.float64  # promotion
    # The tolerance follows the dtype: 1e-3 off is refused in float32, 1e-6 off in float64.
    with pytest.raises(ValueError, match="^probabilities: got entries summing to 1.001"):
        SamplingMatrix.draw((p32 * np.float32(1.001)).astype(np.float32), 10)
    with pytest.raises(ValueError, match="^probabilities: got entries summing to 1"):
        SamplingMatrix.draw(np.full(4, 0.25 + 1e-6 / 4), 10)
    SamplingMatrix.draw(np.full(4, 0.25 + 1e-10), 10)


def test_real_scalars_are_accepted():
    """Item 18: mix=np.float32(0.3) was refused; any numbers.Real (not bool) is fine."""
    a, b = np.ones(4), np.arange(4.0)
    np.testing.assert_allclose(sampling_probabilities(a, b, mix=np.float32(0.3)), sampling_probabilities(a, b, mix=0.3),
                               rtol=1e-7)
    assert required_samples(np.float32(0.5), 0.1, np.float32(2.0), np.int64(3), 10) > 0
    for bad in (True, "0.3", 1.5):
        with pytest.raises(ValueError, match="^mix: got"):
            sampling_probabilities(a, b, mix=bad)


def test_spectral_norm_tolerance_sparse_and_zero():
    """Items 13, 15 and 16: rtol exposed and validated, scipy.sparse accepted, the metric of zeros defined."""
    M = scipy.sparse.random(60, 40, density=0.2, random_state=0, format="csr")
    dense = M.toarray()
    ref = np.linalg.svd(dense, compute_uv=False)[0]
    assert spectral_norm(M, rng=0, rtol=1e-10) == pytest.approx(ref, rel=1e-8)
    assert spectral_norm(M, method="power", rng=0, rtol=1e-12) == pytest.approx(ref, rel=1e-4)
    assert spectral_norm(dense, method="exact") == pytest.approx(ref, rel=1e-12)
    assert stable_rank(M, rng=0, rtol=1e-10) == pytest.approx(np.sum(dense**2) / ref**2, rel=1e-7)
    with pytest.raises(TypeError, match="^M: got a sparse matrix of dtype complex128"):
        spectral_norm(M.astype(complex))
    bad = M.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="^M: got 1 NaN or infinite stored entries"):
        spectral_norm(bad)
    for rtol in (0.0, 1.0, -1e-3, "1e-4", True, np.nan):
        with pytest.raises(ValueError, match="^rtol: got"):
            spectral_norm(dense, method="lanczos", rtol=rtol)
        with pytest.raises(ValueError, match="^rtol: got"):
            relative_spectral_error(dense[:, :8], dense, dense[:40], dense[:40, :8], rtol=rtol)
    # Item 15: 0/0 is 0 (the approximation is exact); a nonzero answer for V = 0 is infinitely wrong.
    Z = np.zeros((64, 8))
    assert relative_spectral_error(Z, Q, K, Z) == 0.0
    assert relative_spectral_error(Z + 1e-3, Q, K, Z) == float("inf")


def test_relative_spectral_error_rtol_is_honoured():
    """A few digits are what the metric needs: rtol=1e-4 agrees with the exact value to about 1e-4."""
    gen = np.random.default_rng(5)
    Qs, Ks, Vs = gen.standard_normal((3, 300, 8))
    approx = softmax_attention(Qs, Ks, Vs) + 1e-3 * gen.standard_normal((300, 8))
    tight = relative_spectral_error(approx, Qs, Ks, Vs, rng=0, rtol=1e-12)
    loose = relative_spectral_error(approx, Qs, Ks, Vs, rng=0, rtol=1e-4)
    assert loose == pytest.approx(tight, rel=1e-3)


def test_result_dtypes_follow_numpy_promotion():
    """Item 24: softmax_attention(Q32, K64, V64) was float32 but (Q64, K32, V32) float64."""
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    cases = [((f32(Q), K, V), np.float64), ((Q, f32(K), f32(V)), np.float64), ((f32(Q), f32(K), f32(V)), np.float32),
             ((f32(Q), f32(K), V), np.float64), ((Q.astype(np.int64), f32(K), f32(V)), np.float64)]
    for args, want in cases:
        assert softmax_attention(*args).dtype == want
        assert row_sums(*args[:2], log=True).dtype == np.result_type(*(a.dtype for a in args[:2]), np.float32)
        assert uniform_sampling(*args, n_samples=8, rng=0).output.dtype == want
        assert performer(*args, n_features=8, rng=0).output.dtype == want
        assert scatterbrain(*args, n_features=8, local_size=4, rng=0).output.dtype == want
        assert reformer(*args, bucket_size=8, n_rounds=2, rng=0).output.dtype == want
        assert nystrom(*args, n_landmarks=8).output.dtype == want
        assert kdeformer(*args, eps=0.5, n_samples=8, kde="sampling", rng=0).output.dtype == want
