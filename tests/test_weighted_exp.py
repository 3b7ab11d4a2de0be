"""Definition 3.1 / Algorithm 2: the weighted exponential KDE by reduction to Gaussian KDE."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdetheory.kde.weighted_exp import WeightedExpKDE
from kdetheory.testing import nonnegative_weights, point_clouds, seeds
from proofs_checks import theorem_3_3_wexpkde
from proofs_checks._harness import binomial_failure_test

import naive


@given(X=point_clouds(max_n=60, max_d=4, max_norm=(0.0, 8.0)), data=st.data())
def test_exact_inner_estimator_only_truncates(X, data):
    """With exact Gaussian sums inside, the only error is the truncation, bounded by eps/2."""
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_n=8, max_norm=(0.0, 8.0)))
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-30, 30)))
    eps = data.draw(st.floats(0.01, 0.9))
    res = WeightedExpKDE(X, w, eps=eps, estimator="exact", rng=0).query(Y)
    ref = naive.exp_kde_log(X, Y, w)
    live = np.isfinite(ref)
    assert np.array_equal(np.isfinite(np.asarray(res.log_estimate)), live)
    rel = np.expm1(np.asarray(res.log_estimate)[live] - ref[live])
    assert np.all(rel <= 1e-12) and np.all(rel >= -eps / 2 - 1e-12)  # truncation only removes mass


@given(X=point_clouds(min_n=2, max_n=80, max_d=5, max_norm=(0.0, 6.0)), data=st.data())
def test_classes_make_weights_exact(X, data):
    """Inside a class the extra coordinate makes w_j e^{-|x_j - y|^2/2} = W_l e^{-|x^_j - y^|^2/2} exactly."""
    X = np.unique(X, axis=0)  # distinct rows, so each class row maps back to one point
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-10, 10), allow_zeros=False))
    kde = WeightedExpKDE(X, w, eps=0.1, estimator="exact", rng=0)
    y = np.zeros(X.shape[1])
    log_w = np.log(w) + 0.5 * np.sum(X**2, axis=1)
    total = 0
    for log_W, Xhat, _ in kde.classes:
        extra = Xhat[:, -1]
        assert np.all((extra >= 0) & (extra <= math.sqrt(2 * math.log(2)) + 1e-12))
        lhs = log_W - 0.5 * np.sum((Xhat - np.r_[y, 0]) ** 2, axis=1)
        rows = [np.flatnonzero(np.all(X == x, axis=1))[0] for x in Xhat[:, :-1]]
        np.testing.assert_allclose(lhs, log_w[rows] - 0.5 * np.sum(X[rows] ** 2, axis=1), rtol=1e-12, atol=1e-9)
        total += Xhat.shape[0]
    assert total == X.shape[0]
    span = (log_w.max() - log_w.min()) / math.log(2)
    assert kde.n_classes <= math.floor(span) + 1


def test_randomized_estimators_meet_eps_at_rate_delta():
    """Calibrated: per-query failures of (1 +- eps) are not significantly above delta for each estimator."""
    res = theorem_3_3_wexpkde.run("quick", rng=0)
    for name, m in res.measured.items():
        test = binomial_failure_test(m["failures"], m["queries"], theorem_3_3_wexpkde.DELTA)
        assert not test.significant, (name, m)
    assert res.verdict in ("holds", "inconclusive")


def test_log_weights_handle_underflowing_weights():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((5, 3))
    log_v = rng.uniform(-2000, -1990, 50)  # e^-2000 underflows; its log does not
    res = WeightedExpKDE(X, log_weights=log_v, eps=0.1, estimator="exact").query(Y)
    ref = np.array([np.logaddexp.reduce(log_v + X @ y) for y in Y])
    assert np.all(np.abs(np.asarray(res.log_estimate) - ref) <= 0.05)


def test_all_zero_weights_and_reproducibility():
    X = np.random.default_rng(1).standard_normal((20, 2))
    res = WeightedExpKDE(X, np.zeros(20), estimator="exact").query(X[:3])
    assert np.all(np.asarray(res.log_estimate) == -np.inf)
    a = WeightedExpKDE(X, eps=0.3, estimator="sampling", rng=5).query(X[:4]).log_estimate
    b = WeightedExpKDE(X, eps=0.3, estimator="sampling", rng=5).query(X[:4]).log_estimate
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,err,msg", [
    (dict(eps=0.0), ValueError, "^eps: got 0.0"),
    (dict(eps=1.5), ValueError, "^eps: got 1.5"),
    (dict(delta=1.0), ValueError, "^delta: got 1.0"),
    (dict(estimator="lsh"), ValueError, "^estimator: got 'lsh'"),
    (dict(diameter=-1.0), ValueError, "^diameter: got -1.0"),
    (dict(mu_min=0.0), ValueError, "^mu_min: got 0.0"),
    (dict(weights=-np.ones(4)), ValueError, "^weights: got 4 negative"),
    (dict(weights=np.ones(4), log_weights=np.zeros(4)), ValueError, "^log_weights: got both"),
    (dict(log_weights=np.full(4, np.nan)), ValueError, "^log_weights: got shape"),
])
def test_bad_input(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        WeightedExpKDE(np.ones((4, 2)), **kwargs)


def test_bad_query():
    kde = WeightedExpKDE(np.ones((4, 2)), estimator="exact")
    with pytest.raises(ValueError, match="^Y: got 3 columns but X has 2"):
        kde.query(np.ones((2, 3)))
    with pytest.raises(ValueError, match="^Y: got 1 NaN"):
        kde.query(np.array([[np.nan, 0.0]]))
