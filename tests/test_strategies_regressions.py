"""The exported hypothesis strategies, widened, find the defects of issue 12 items 1-7 (regression properties).

Each property is deterministic (no statistical test): the library must stay exact, finite or fail with a
clear error on the inputs the widened strategies draw — tiny bandwidths with offset data, identical tokens,
logits in the thousands on the theory path, tiny and huge weights, float32 everywhere.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from kdetheory.attention import kdeformer
from kdetheory.kde import CKNSKDE, HashingBasedKDE, gaussian_kde
from kdetheory.testing import attention_inputs, bandwidths, float_dtypes, nonnegative_weights, point_clouds


@settings(max_examples=40)
@given(X=point_clouds(min_n=2, max_n=40, max_d=4, max_norm=(0.0, 3.0), offsets=(0.0, 5.0, 1e3),
                      dtype=float_dtypes(), identical=True),
       h=bandwidths(log10_range=(-8.0, 1.0)), backend=st.sampled_from(["numpy", "numba"]))
def test_exact_gaussian_kde_is_exact_at_tiny_bandwidth_and_offset_data(X, h, backend):
    """Item 1: the exact reference never exceeds the largest weight and matches direct differences."""
    Y = X[: min(5, len(X))]
    got = np.asarray(gaussian_kde(X, Y, bandwidth=h, backend=backend), dtype=np.float64)
    ref = naive.gaussian_kde(X.astype(np.float64), Y.astype(np.float64), h)
    assert np.all(got <= 1.0 + 1e-6)
    # float32 inputs: the distances themselves carry float32 rounding of the data, so compare in the exponent.
    rel = 1e-10 if X.dtype == np.float64 else 1e-3
    np.testing.assert_allclose(got, ref, rtol=rel, atol=1e-300 if X.dtype == np.float64 else 1e-30)


@settings(max_examples=15)
@given(qkv=attention_inputs(max_n=24, max_d=4, max_dv=3, max_logit=(0.0, 3000.0), identical=True,
                            dtype=float_dtypes()))
def test_theory_path_handles_identical_tokens_and_huge_logits(qkv):
    """Items 4-5: Algorithm 1 on identical tokens and logits in the thousands answers, finite, in the input dtype."""
    Q, K, V = qkv
    res = kdeformer(Q, K, V, eps=0.5, n_samples=16, kde="sampling", rng=0)
    assert res.output.dtype == Q.dtype and np.all(np.isfinite(res.output))
    assert np.all(np.isfinite(res.log_row_sums))


@settings(max_examples=10)
@given(X=point_clouds(min_n=30, max_n=60, min_d=2, max_d=3, max_norm=(0.5, 2.0)), data=st.data())
def test_estimators_are_scale_free_in_the_weights(X, data):
    """Items 6-7: tiny and huge weights neither hang nor overflow; the answer scales with the weights."""
    w = data.draw(nonnegative_weights(len(X), log10_range=(-300.0, 300.0), allow_zeros=True))
    for make in (lambda w_: CKNSKDE(X, weights=w_, eps=0.5, mu_min=1e-2, rng=0),
                 lambda w_: HashingBasedKDE(X, weights=w_, eps=0.5, mu_min=1e-2, rng=0)):
        est = make(w).query(X[:3]).estimate
        assert np.all(np.isfinite(est)) and np.all(est >= 0)
        scaled = make(w / w.max()).query(X[:3]).estimate
        np.testing.assert_allclose(est, scaled * w.max(), rtol=1e-9)  # weights are normalised to max 1 inside
