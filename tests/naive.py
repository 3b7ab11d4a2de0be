"""Obviously-correct slow references (plain loops, float64, math.fsum)."""
import math

import numpy as np


def exp_sum_log(X, y, w):
    """log sum_j w_j exp(<x_j, y>) by an explicit max shift and fsum."""
    logits = [math.fsum(a * b for a, b in zip(x, y)) for x in X]
    live = [(l, wj) for l, wj in zip(logits, w) if wj > 0]
    if not live:
        return -math.inf
    top = max(l + math.log(wj) for l, wj in live)
    return top + math.log(math.fsum(math.exp(l + math.log(wj) - top) for l, wj in live))


def exp_kde_log(X, Y, w=None):
    w = np.ones(len(X)) if w is None else w
    return np.array([exp_sum_log(X, y, w) for y in Y])


def gaussian_kde(X, Y, h=1.0, w=None):
    w = np.ones(len(X)) if w is None else w
    return np.array([
        math.fsum(wj * math.exp(-math.fsum((a - b) ** 2 for a, b in zip(x, y)) / (2 * h * h)) for x, wj in zip(X, w))
        / len(X)
        for y in Y
    ])


def softmax_matrix(Q, K, scale=1.0):
    L = scale * (np.asarray(Q) @ np.asarray(K).T)
    L -= L.max(axis=1, keepdims=True)
    P = np.exp(L)
    return P / P.sum(axis=1, keepdims=True)


def attention(Q, K, V, scale=1.0):
    return softmax_matrix(Q, K, scale) @ V


def spectral_norm(M):
    return float(np.linalg.svd(np.asarray(M), compute_uv=False)[0])


def assert_log_close(got, ref, rel=1e-12):
    """|got - ref| <= rel * (1 + |ref|) elementwise, with -inf matching -inf exactly."""
    got, ref = np.asarray(got), np.asarray(ref)
    inf = np.isneginf(ref)
    assert np.array_equal(np.isneginf(got), inf), "zero-weight rows must be -inf exactly"
    err = np.abs(got[~inf] - ref[~inf])
    bound = rel * (1 + np.abs(ref[~inf]))
    assert np.all(err <= bound), f"max error {err.max():.3g} above {bound[err.argmax()]:.3g}"



# Practical KDEformer (Algorithm 3): the LSH bucket order and the block mask, from the definitions in plain loops.
# They live in the claim module so that `python -m proofs_checks` (installed without tests/) can use them; they
# import nothing from the library.
from proofs_checks.practical_estimator import block_mask, bucket_position  # noqa: E402,F401
