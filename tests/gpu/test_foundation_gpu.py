"""GPU (CuPy) parity of the exact references, AMM and Algorithm 1: skipped without CuPy and a GPU."""
import numpy as np
import pytest

from kdetheory._array import cupy_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")]


def _qkv(lead=(), n_q=300, n_k=257, d=16, dv=7, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(lead + (n_q, d)) * scale, rng.standard_normal(lead + (n_k, d)) * scale,
            rng.standard_normal(lead + (n_k, dv)))


@pytest.mark.parametrize("lead", [(), (2, 3)])
def test_exact_attention_and_row_sums_parity(lead):
    import cupy as cp

    from kdetheory.attention import row_sums, softmax_attention

    Q, K, V = _qkv(lead, scale=2.0)
    gpu = softmax_attention(cp.asarray(Q), cp.asarray(K), cp.asarray(V))
    assert isinstance(gpu, cp.ndarray)
    np.testing.assert_allclose(gpu.get(), softmax_attention(Q, K, V, backend="numpy"), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(row_sums(cp.asarray(Q), cp.asarray(K), log=True).get(),
                               row_sums(Q, K, log=True, backend="numpy"), rtol=1e-12)
    # Host inputs with backend="cupy" compute on the GPU and come back as NumPy.
    host = softmax_attention(Q, K, V, backend="cupy")
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(host, softmax_attention(Q, K, V, backend="numpy"), rtol=1e-12, atol=1e-13)


def test_kde_parity_and_huge_logits():
    import cupy as cp

    from kdetheory.kde import exp_kde, gaussian_kde

    rng = np.random.default_rng(1)
    X, Y, w = rng.standard_normal((2000, 8)), rng.standard_normal((100, 8)), rng.random(2000)
    np.testing.assert_allclose(gaussian_kde(cp.asarray(X), cp.asarray(Y), weights=cp.asarray(w), bandwidth=0.7).get(),
                               gaussian_kde(X, Y, weights=w, bandwidth=0.7), rtol=1e-12)
    big = 40 * X
    np.testing.assert_allclose(exp_kde(cp.asarray(big), cp.asarray(Y), log=True).get(), exp_kde(big, Y, log=True), rtol=1e-12)
    assert np.isfinite(exp_kde(cp.asarray(big), cp.asarray(Y), log=True).get()).all()


def test_float32_on_gpu():
    import cupy as cp

    from kdetheory.attention import softmax_attention

    Q, K, V = _qkv()
    out = softmax_attention(*(cp.asarray(a, dtype=cp.float32) for a in (Q, K, V)))
    assert out.dtype == cp.float32
    np.testing.assert_allclose(out.get(), softmax_attention(Q, K, V), rtol=1e-4, atol=1e-5)


def test_mixed_devices_raise():
    import cupy as cp

    from kdetheory.attention import softmax_attention

    Q, K, V = _qkv()
    with pytest.raises(ValueError, match="mix of NumPy and CuPy"):
        softmax_attention(cp.asarray(Q), K, V)
    with pytest.raises(ValueError, match="backend: got 'numba' with CuPy inputs"):
        softmax_attention(cp.asarray(Q), cp.asarray(K), cp.asarray(V), backend="numba")


def test_kdeformer_theory_parity():
    import cupy as cp

    from kdetheory.attention import kdeformer, softmax_matrix
    from kdetheory.linalg import spectral_norm

    Q, K, V = _qkv(n_q=128, n_k=128, scale=0.4)
    ref = kdeformer(Q, K, V, eps=0.5, n_samples=64, kde="sampling", rng=3, backend="numpy")
    gpu = kdeformer(cp.asarray(Q), cp.asarray(K), cp.asarray(V), eps=0.5, n_samples=64, kde="sampling", rng=3)
    assert isinstance(gpu.output, cp.ndarray)
    np.testing.assert_array_equal(gpu.indices, ref.indices)
    np.testing.assert_allclose(gpu.output.get(), ref.output, rtol=1e-10, atol=1e-12)
    assert spectral_norm(softmax_matrix(cp.asarray(Q), cp.asarray(K)), rng=0, rtol=1e-12) == pytest.approx(
        spectral_norm(softmax_matrix(Q, K), rng=0, rtol=1e-12), rel=1e-9)
