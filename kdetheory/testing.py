"""Hypothesis strategies for property-based tests of kernel sums and attention.

Exported for users' own test suites. Every strategy draws *structure* (sizes, norms,
diameters, spectra) and a seed, and builds the arrays with NumPy from that seed: shrinking
then acts on the structure, and examples stay fast to generate.

Examples
--------
>>> from hypothesis import given
>>> from kdetheory.testing import attention_inputs
>>> @given(attention_inputs(max_n=32))
... def test_rows_sum_to_one(qkv): ...
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "seeds",
    "point_clouds",
    "attention_inputs",
    "bounded_diameter_inputs",
    "matrices_with_stable_rank",
    "nonnegative_weights",
    "bandwidths",
    "float_dtypes",
]


def seeds():
    """Seeds for numpy.random.default_rng."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def _cloud(rng, n, d, max_norm):
    """n points in R^d, random directions, norms spread in [0, max_norm], the largest = max_norm."""
    X = rng.standard_normal((n, d))
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    radii = max_norm * rng.random(n) ** (1.0 / max(d, 1))
    radii[rng.integers(n)] = max_norm
    return X * radii[:, None]


def float_dtypes():
    """float64 and float32: every public function supports both."""
    return st.sampled_from([np.float64, np.float32])


def bandwidths(*, log10_range=(-9.0, 2.0)):
    """Gaussian bandwidths, log-uniform over ``log10_range`` (tiny ones expose cancellation in r^2 forms)."""
    return st.floats(*log10_range, allow_nan=False).map(lambda e: float(10.0**e))


@st.composite
def point_clouds(draw, *, min_n=1, max_n=64, min_d=1, max_d=8, max_norm=(0.0, 10.0), dtype=np.float64,
                 offsets=(0.0,), identical=False):
    """A (n, d) point cloud whose largest row norm is drawn from ``max_norm``.

    Parameters
    ----------
    min_n, max_n, min_d, max_d : int
        Shape ranges.
    max_norm : (float, float)
        Range of the largest row norm around the cloud's centre (diameter <= 2 * max_norm).
    dtype : dtype or hypothesis strategy of dtypes
        E.g. :func:`float_dtypes` to draw float32 as well.
    offsets : sequence of float
        The cloud's centre is ``offset * (1, ..., 1)`` with ``offset`` drawn from this list: offset data
        (e.g. ``(0.0, 5.0, 1e3)``) exposes cancellation in ``||x||^2 + ||y||^2 - 2 <x, y>``.
    identical : bool
        When True, sometimes every point is the same (diameter 0, the easiest and a classic crash case).
    """
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(min_d, max_d))
    radius = draw(st.floats(*max_norm, allow_nan=False, allow_infinity=False))
    offset = draw(st.sampled_from(list(offsets)))
    dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
    rng = np.random.default_rng(draw(seeds()))
    X = _cloud(rng, n, d, radius)
    if identical and draw(st.booleans()):
        X[:] = X[0]
    return (X + offset).astype(dt)


@st.composite
def nonnegative_weights(draw, n, *, log10_range=(-6.0, 6.0), allow_zeros=True):
    """n non-negative weights spanning up to ``log10_range`` orders of magnitude.

    Estimators must be scale-free: ``log10_range=(-300, 300)`` draws the tiny and huge weights that once hung
    or overflowed them.
    """
    rng = np.random.default_rng(draw(seeds()))
    lo, hi = sorted(draw(st.tuples(st.floats(*log10_range), st.floats(*log10_range))))
    w = 10.0 ** rng.uniform(lo, hi, n)
    if allow_zeros and draw(st.booleans()):
        w[rng.random(n) < 0.3] = 0.0
        w[rng.integers(n)] = 10.0**hi  # keep at least one positive weight
    return w


@st.composite
def attention_inputs(draw, *, max_n=48, max_d=8, max_dv=6, max_logit=(0.0, 30.0), cross=True, identical=False,
                     dtype=np.float64):
    """(Q, K, V) with max |<q_i, k_j>| at most the drawn ``max_logit`` (peaky to flat).

    With ``cross=False`` keys equal queries (the paper's GloVe protocol). ``max_logit=(0, 3000)`` reaches
    the logits in the thousands that exact attention handles and every approximate path must too;
    ``identical=True`` sometimes makes every token the same (diameter 0); ``dtype`` may be a strategy
    such as :func:`float_dtypes`.
    """
    n_q = draw(st.integers(1, max_n))
    n_k = draw(st.integers(1, max_n)) if cross else n_q
    d = draw(st.integers(1, max_d))
    d_v = draw(st.integers(1, max_dv))
    logit = draw(st.floats(*max_logit, allow_nan=False))
    rng = np.random.default_rng(draw(seeds()))
    r = np.sqrt(logit)
    Q = _cloud(rng, n_q, d, r)
    K = _cloud(rng, n_k, d, r) if cross else Q.copy()
    if identical and draw(st.booleans()):
        Q[:], K[:] = Q[0], Q[0]
    V = rng.standard_normal((n_k, d_v))
    dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
    return Q.astype(dt), K.astype(dt), V.astype(dt)


@st.composite
def bounded_diameter_inputs(draw, *, min_n=8, max_n=64, max_d=8, c=(0.1, 2.0)):
    """(Q, K, V, c) with ``max_{i,j} ||q_i - k_j||^2 <= c ln n`` (Corollary 3.4's regime)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, max_d))
    cval = draw(st.floats(*c, allow_nan=False))
    rng = np.random.default_rng(draw(seeds()))
    radius = 0.5 * np.sqrt(cval * np.log(n))  # ||q - k|| <= 2 * radius
    Q = _cloud(rng, n, d, radius)
    K = _cloud(rng, n, d, radius)
    V = rng.standard_normal((n, d))
    return Q, K, V, cval


@st.composite
def matrices_with_stable_rank(draw, *, max_n=64, max_m=32, decay=(0.0, 3.0)):
    """A matrix with prescribed singular values sigma_k = k^-decay; returns (M, srank).

    The stable rank ``sum sigma_k^2 / sigma_1^2`` is known exactly from the spectrum.
    """
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, max_m))
    alpha = draw(st.floats(*decay, allow_nan=False))
    rng = np.random.default_rng(draw(seeds()))
    r = min(n, m)
    sigma = np.arange(1, r + 1, dtype=float) ** (-alpha)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    W, _ = np.linalg.qr(rng.standard_normal((m, r)))
    return (U * sigma) @ W.T, float(np.sum(sigma**2) / sigma[0] ** 2)
