"""Definition 3.1 / Algorithm 2: the weighted exponential KDE by reduction to Gaussian KDE."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdetheory.kde.weighted_exp import WeightedExpKDE
from kdetheory.testing import nonnegative_weights, point_clouds
from proofs_checks import theorem_3_3_wexpkde

import naive


@given(X=point_clouds(max_n=60, max_d=4, max_norm=(0.0, 60.0)), data=st.data())
def test_exact_inner_estimator_only_truncates(X, data):
    """With exact sums inside, the only error is the truncation, bounded by eps/2.

    Norms up to 60 give inner products in the thousands (issue 12 item 5); repeated rows (issue
    12 item 4) and a float32 copy of the data (item 24) are drawn too.
    """
    if data.draw(st.booleans()):
        X = np.repeat(X[:1], X.shape[0], axis=0)  # identical points: diameter 0
    Y = data.draw(point_clouds(min_d=X.shape[1], max_d=X.shape[1], max_n=8, max_norm=(0.0, 60.0)))
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-30, 30)))
    eps = data.draw(st.floats(0.01, 0.9))
    single = data.draw(st.booleans())
    Xin, Yin = (X.astype(np.float32), Y.astype(np.float32)) if single else (X, Y)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    res = WeightedExpKDE(Xin, log_weights=log_w if single else None, weights=None if single else w,
                         eps=eps, estimator="exact", rng=0).query(Yin)
    # log_weights are float64, so the result is float64 by NumPy's promotion even for float32 points.
    assert np.asarray(res.log_estimate).dtype == np.float64
    ref = naive.exp_kde_log(Xin.astype(np.float64), Yin.astype(np.float64), w)
    live = np.isfinite(ref)
    assert np.array_equal(np.isfinite(np.asarray(res.log_estimate)), live)
    rel = np.expm1(np.asarray(res.log_estimate)[live] - ref[live])
    # Rounding: logs of magnitude up to ~1e4 carry ~1e4 u of absolute error.
    tol = 1e-12 + 4 * np.finfo(np.float64).eps * np.max(np.abs(ref[live]), initial=0.0)
    assert np.all(rel <= tol) and np.all(rel >= -eps / 2 - tol)  # truncation only removes mass


@given(X=point_clouds(min_n=2, max_n=80, max_d=5, max_norm=(0.0, 6.0)), data=st.data())
def test_classes_make_weights_exact(X, data):
    """Inside a class the extra coordinate makes w_j e^{-|x_j - y|^2/2} = W_l e^{-|x^_j - y^|^2/2} exactly."""
    X = np.unique(X, axis=0)  # distinct rows, so each class row maps back to one point
    w = data.draw(nonnegative_weights(X.shape[0], log10_range=(-10, 10), allow_zeros=False))
    kde = WeightedExpKDE(X, w, eps=0.1, estimator="exact", rng=0)
    y = np.zeros(X.shape[1])
    log_w = np.log(w) + 0.5 * np.sum(X**2, axis=1)
    total = 0
    for cls in kde.classes:
        log_W, Xhat = cls.log_W, cls.points
        assert cls.estimator is None  # "exact" sums every class in the log domain
        extra = Xhat[:, -1]
        assert np.all((extra >= 0) & (extra <= math.sqrt(2 * math.log(2)) + 1e-12))
        lhs = log_W - 0.5 * np.sum((Xhat - np.r_[y, 0]) ** 2, axis=1)
        rows = [np.flatnonzero(np.all(X == x, axis=1))[0] for x in Xhat[:, :-1]]
        np.testing.assert_allclose(lhs, log_w[rows] - 0.5 * np.sum(X[rows] ** 2, axis=1), rtol=1e-12, atol=1e-9)
        total += Xhat.shape[0]
    assert total == X.shape[0]
    span = (log_w.max() - log_w.min()) / math.log(2)
    assert kde.n_classes <= math.floor(span) + 1


@pytest.mark.slow
def test_randomized_estimators_meet_eps_at_rate_delta():
    """Calibrated (the claim's binomial and bias tests, alpha 1e-5 each): no part of Theorem 3.3's check fails."""
    res = theorem_3_3_wexpkde.run("quick", rng=0)
    for name, m in res.measured.items():
        assert not m["accuracy"].startswith("fails") and not m["unbiased"].startswith("fails"), (name, m)
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
    (dict(estimator=3), TypeError, "^estimator: got 3 of type int"),
    (dict(estimator=lambda X, **kw: object(), mu_min=0.5), TypeError, "^estimator: the factory returned a object"),
    (dict(mu_min=True), ValueError, "^mu_min: got True"),
    (dict(log_weights=np.array(["a"] * 4)), TypeError, "^log_weights: got dtype"),
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


def test_identical_points_and_zero_diameter():
    """Issue 12 item 4: diameter 0 (identical points) is the easiest case, not an error."""
    X = np.ones((6, 3))
    res = WeightedExpKDE(X, eps=0.2, estimator="hbe", diameter=0.0, rng=0).query(X[:2])
    np.testing.assert_allclose(np.asarray(res.log_estimate), math.log(6) + 3.0, rtol=1e-12)
    # A (valid but absurd) bound whose square overflows: floor -inf in the log domain, exact classes.
    huge = WeightedExpKDE(X, eps=0.2, estimator="hbe", diameter=1e200, rng=0)
    assert huge.log_mu_min == -np.inf
    np.testing.assert_allclose(np.asarray(huge.query(X[:2]).log_estimate), math.log(6) + 3.0, rtol=1e-12)


@pytest.mark.parametrize("estimator", ["hbe", "ckns", "sampling"])
def test_large_diameter_floor_stays_in_the_log_domain(estimator):
    """Issue 12 item 7: WeightedExpKDE(X, diameter=40) raised about mu_min, which the user never passed.

    The floor e^{-(40^2 + 2 ln 2)/2} underflows; no estimator can be sub-linear there, so every
    class is summed exactly (and reported as such), with inner products in the thousands.
    """
    rng = np.random.default_rng(0)
    X, Y = 15 * rng.standard_normal((40, 3)), 15 * rng.standard_normal((5, 3))
    kde = WeightedExpKDE(X, eps=0.2, estimator=estimator, diameter=40.0, rng=1)
    assert kde.mu_min == 0.0 and kde.log_mu_min == pytest.approx(-800 - math.log(2))
    res = kde.query(Y)
    assert np.all(res.exact_classes == res.classes_used) and np.all(res.hash_evaluations == 0)
    ref = naive.exp_kde_log(X, Y)
    assert np.max(np.abs(ref)) > 500
    assert np.all(np.abs(np.expm1(np.asarray(res.log_estimate) - ref)) <= 0.1)


def test_float32_in_float32_out():
    """Issue 12 item 24: the result dtype is NumPy's promotion of data, weights and queries."""
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((30, 3)), rng.standard_normal((4, 3))
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    for Xi, w, Yi, want in [(f32(X), None, f32(Y), np.float32), (f32(X), np.ones(30), f32(Y), np.float64),
                            (f32(X), f32(np.ones(30)), f32(Y), np.float32), (f32(X), None, Y, np.float64),
                            (X, None, f32(Y), np.float64)]:
        res = WeightedExpKDE(Xi, w, eps=0.3, estimator="sampling", rng=0).query(Yi)
        assert np.asarray(res.log_estimate).dtype == want


def test_estimator_factory_reaches_the_classes():
    """Issue 11 item 4: an estimator's own settings reach Algorithm 2 through a factory."""
    import functools

    from kdetheory.kde import HashingBasedKDE

    rng = np.random.default_rng(3)
    X = 0.5 * rng.standard_normal((200, 3))
    factory = functools.partial(HashingBasedKDE, variance_constant=0.01)
    kde = WeightedExpKDE(X, eps=0.3, estimator=factory, mu_min=1e-2, rng=0)
    built = [c.estimator for c in kde.classes if c.estimator is not None]
    assert built and all(isinstance(e, HashingBasedKDE) and e.variance_constant == 0.01 for e in built)
    named = WeightedExpKDE(X, eps=0.3, estimator="hbe", mu_min=1e-2, rng=0)
    assert all(c.estimator.variance_constant != 0.01 for c in named.classes if c.estimator is not None)
    res = kde.query(X[:5])
    assert np.all(np.isfinite(np.asarray(res.log_estimate)))
