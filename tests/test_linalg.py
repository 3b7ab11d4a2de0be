"""Spectral norm, stable rank and the relative spectral error of eq. (2)."""
import numpy as np
import pytest
from hypothesis import given

from kdetheory.attention import softmax_attention, softmax_matrix
from kdetheory.linalg import relative_spectral_error, spectral_norm, stable_rank
from kdetheory.testing import attention_inputs, matrices_with_stable_rank

import naive


@given(ms=matrices_with_stable_rank())
def test_stable_rank_is_prescribed(ms):
    M, sr = ms
    assert stable_rank(M) == pytest.approx(sr, rel=1e-9)
    assert 1 - 1e-12 <= stable_rank(M) <= min(M.shape) + 1e-9


@pytest.mark.parametrize("method", ["exact", "lanczos", "power"])
def test_spectral_norm_methods_agree(method):
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((60, 10)))
    W, _ = np.linalg.qr(rng.standard_normal((40, 10)))
    sigma = np.r_[5.0, 2.0, np.linspace(1, 0.1, 8)]  # a clear gap so the power method converges
    M = (U * sigma) @ W.T
    assert spectral_norm(M, method=method, rng=1) == pytest.approx(5.0, rel=1e-8)


@given(qkv=attention_inputs(max_n=40))
def test_softmax_matrix_norm_and_stable_rank(qkv):
    Q, K, _ = qkv
    P = naive.softmax_matrix(Q, K)
    op = softmax_matrix(Q, K)
    exact = naive.spectral_norm(P)
    assert spectral_norm(op, rng=0, rtol=1e-10) == pytest.approx(exact, rel=1e-8)
    # Row-stochastic: P 1 = 1 gives ||P|| >= sqrt(n_q / n_k) (= 1 when square), and ||P|| <= sqrt(n_q).
    assert np.sqrt(Q.shape[0] / K.shape[0]) * (1 - 1e-9) <= exact <= np.sqrt(Q.shape[0]) + 1e-9
    assert stable_rank(op, rng=0, rtol=1e-10) == pytest.approx(stable_rank(P), rel=1e-7)
    assert op.frobenius_norm_sq() == pytest.approx(np.sum(P * P), rel=1e-12)


def test_relative_spectral_error_matches_definition():
    rng = np.random.default_rng(1)
    Q, K, V = rng.standard_normal((50, 4)), rng.standard_normal((40, 4)), rng.standard_normal((40, 3))
    att = softmax_attention(Q, K, V)
    E = 1e-3 * rng.standard_normal(att.shape)
    ref = naive.spectral_norm(E) / (naive.spectral_norm(naive.softmax_matrix(Q, K)) * naive.spectral_norm(V))
    assert relative_spectral_error(att + E, Q, K, V, rng=0) == pytest.approx(ref, rel=1e-8)
    assert relative_spectral_error(att, Q, K, V) < 1e-14


def test_softmax_matrix_beyond_one_chunk(monkeypatch):
    """Matrices larger than one chunk are streamed block by block (not kept), with the same products."""
    from kdetheory import _config

    rng = np.random.default_rng(7)
    Q, K = rng.standard_normal((50, 3)), rng.standard_normal((30, 3))
    kept = softmax_matrix(Q, K)
    monkeypatch.setattr(_config, "CHUNK_BYTES", 8 * 30 * 7)  # 7 rows per block
    streamed = softmax_matrix(Q, K)
    assert kept._dense is not None and streamed._dense is None
    x, y = rng.standard_normal(30), rng.standard_normal(50)
    np.testing.assert_allclose(streamed @ x, kept @ x, rtol=1e-13)
    np.testing.assert_allclose(streamed.T @ y, kept.T @ y, rtol=1e-13)
    assert streamed.frobenius_norm_sq() == pytest.approx(kept.frobenius_norm_sq(), rel=1e-13)
