"""Every bad input gets a ValueError/TypeError naming the argument and the fix."""
import numpy as np
import pytest

from kdetheory import amm as amm_mod
from kdetheory._rng import as_generator, spawn
from kdetheory.attention import row_sums, softmax_attention, softmax_matrix
from kdetheory.kde import exp_kde, gaussian_kde
from kdetheory.linalg import relative_spectral_error, spectral_norm, stable_rank

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 3))
V = rng.standard_normal((6, 2))


def _nan():
    Z = X.copy()
    Z[1, 1] = np.nan
    return Z


def _inf():
    Z = X.copy()
    Z[0, 0] = np.inf
    return Z


BAD_MATRICES = [
    (_nan(), ValueError, "NaN or infinite"),
    (_inf(), ValueError, "NaN or infinite"),
    (X[:, 0], ValueError, "2-D"),
    (X.astype(complex), TypeError, "dtype complex"),
    (X.astype(object), TypeError, "dtype object"),
    ("abc", TypeError, "array"),
    (np.empty((0, 3)), ValueError, "empty"),
]


@pytest.mark.parametrize("bad,err,msg", BAD_MATRICES)
def test_bad_data_matrix(bad, err, msg):
    for call, name in [
        (lambda: exp_kde(bad, X), "X"),
        (lambda: gaussian_kde(bad, X), "X"),
        (lambda: exp_kde(X, bad), "Y"),
        (lambda: softmax_attention(bad, X, V), "Q"),
        (lambda: softmax_attention(X, bad, V), "K"),
        (lambda: row_sums(X, bad), "K"),
    ]:
        with pytest.raises(err, match=msg) as info:
            call()
        assert str(info.value).startswith(name + ":")


def test_shape_mismatches():
    with pytest.raises(ValueError, match=r"^Y: got 2 columns but X has 3"):
        exp_kde(X, X[:, :2])
    with pytest.raises(ValueError, match=r"^V: got 4 rows but K has 6"):
        softmax_attention(X, X, V[:4])
    with pytest.raises(ValueError, match=r"^K: got leading axes"):
        softmax_attention(X[None], X[None, None], V[None, None])
    with pytest.raises(ValueError, match=r"^weights: got 5 weights for 6 points"):
        exp_kde(X, X, weights=np.ones(5))


def test_negative_weights_and_bandwidth_and_scale():
    with pytest.raises(ValueError, match=r"^weights: got 1 negative"):
        gaussian_kde(X, X, weights=np.r_[-1.0, np.ones(5)])
    for h in (0, -1.0, np.inf, "a"):
        with pytest.raises(ValueError, match=r"^bandwidth: got"):
            gaussian_kde(X, X, bandwidth=h)
    with pytest.raises(ValueError, match=r"^scale: got"):
        softmax_attention(X, X, V, scale=0.0)


def test_backend_errors():
    with pytest.raises(ValueError, match=r"^backend: got 'gpu'"):
        exp_kde(X, X, backend="gpu")
    from kdetheory._array import cupy_available

    if not cupy_available():
        with pytest.raises(RuntimeError, match="needs CuPy and a CUDA GPU"):
            exp_kde(X, X, backend="cupy")


def test_mixed_numpy_cupy_raise():
    cp = pytest.importorskip("cupy")
    from kdetheory._array import cupy_available

    if not cupy_available():
        pytest.skip("no CUDA GPU")
    with pytest.raises(ValueError, match="mix of NumPy and CuPy"):
        exp_kde(X, cp.asarray(X))


def test_rng_normalisation():
    g = np.random.default_rng(5)
    assert as_generator(g) is g
    assert as_generator(3).random() == as_generator(3).random()
    assert as_generator(np.random.SeedSequence(3)).random() == np.random.default_rng(np.random.SeedSequence(3)).random()
    with pytest.raises(TypeError, match="^rng: got an object of type RandomState"):
        as_generator(np.random.RandomState(0))
    with pytest.raises(ValueError, match="^rng: got the negative seed"):
        as_generator(-1)
    a, b = spawn(0, 2)
    assert a.random() != b.random()
    with pytest.raises(ValueError, match="^n: got"):
        spawn(0, -1)


def test_linalg_bad_input():
    with pytest.raises(ValueError, match=r"^method: got 'svd'"):
        spectral_norm(X, method="svd")
    with pytest.raises(ValueError, match=r"^method: got 'exact' for a matrix-free"):
        spectral_norm(softmax_matrix(X, X), method="exact")
    with pytest.raises(ValueError, match=r"^M: got"):
        stable_rank(X[0])
    with pytest.raises(ValueError, match=r"^approx: got shape"):
        relative_spectral_error(V[:, :1], X, X, V)
    with pytest.raises(ValueError, match=r"^Q: got shape"):
        softmax_matrix(X[None], X[None])


def test_amm_bad_input():
    with pytest.raises(ValueError, match="^eps: got"):
        amm_mod.required_samples(1.5, 0.1, 2, 2, 10)
    with pytest.raises(ValueError, match="^delta: got"):
        amm_mod.required_samples(0.1, 0.0, 2, 2, 10)
    with pytest.raises(ValueError, match="^srank_x: got"):
        amm_mod.required_samples(0.1, 0.1, 0.5, 2, 10)
    with pytest.raises(ValueError, match="^n_samples: got 0"):
        amm_mod.amm(X, V, n_samples=0)
    with pytest.raises(TypeError, match="^n_samples: got 2.5"):
        amm_mod.amm(X, V, n_samples=2.5)
    with pytest.raises(ValueError, match="^probabilities: got entries summing"):
        amm_mod.SamplingMatrix.draw(np.full(4, 0.5), 3)
    with pytest.raises(ValueError, match="^x_sq_norms: got negative"):
        amm_mod.sampling_probabilities(np.r_[-1.0, 1.0])
    with pytest.raises(ValueError, match="^mix: got"):
        amm_mod.sampling_probabilities(np.ones(3), np.ones(3), mix=2)
    with pytest.raises(ValueError, match=r"^Y: got 6 rows but X has 4"):
        amm_mod.amm(X[:4], V, n_samples=3)


@pytest.mark.parametrize("bad,advice", [
    (X.astype(complex), "x.real.astype(float) for complex data"),
    (X.astype(object), "np.asarray(x, dtype=float) for an object array"),
    (X.astype(str), "to parse strings of numbers"),
    (np.zeros((2, 2), dtype="datetime64[s]"), "for datetimes"),
])
def test_dtype_advice_matches_the_dtype(bad, advice):
    """Issue 12 item 26: an object array was told to take the real part of complex data."""
    with pytest.raises(TypeError, match="^Q: got dtype") as info:
        softmax_attention(bad, X, V)
    assert advice in str(info.value)
    if bad.dtype.kind != "c":
        assert "complex" not in str(info.value)


def test_float_dtype_rules():
    from kdetheory._validation import float_dtype, result_float_dtype

    assert float_dtype(np.float32) == np.float32 and float_dtype(np.float16) == np.float64
    assert float_dtype(np.int32) == np.float64 and float_dtype(bool) == np.float64
    f32 = np.ones(2, np.float32)
    assert result_float_dtype(f32, None, f32) == np.float32
    assert result_float_dtype(f32, np.ones(2)) == np.float64
    assert result_float_dtype(f32, np.ones(2, np.int8)) == np.float64  # integers become float64 first
    assert result_float_dtype() == np.float64


def test_check_positive_allow_zero():
    from kdetheory._validation import check_positive

    assert check_positive("diameter", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="^diameter: got 0; pass a finite number greater than 0"):
        check_positive("diameter", 0)
    with pytest.raises(ValueError, match="^diameter: got -1; pass a finite number greater than or equal to 0"):
        check_positive("diameter", -1, allow_zero=True)
