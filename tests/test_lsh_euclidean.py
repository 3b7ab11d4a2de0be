"""p-stable Euclidean LSH: the collision probability, hashing as a matrix product, exact buckets."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import erf
from scipy.stats import norm

from kdetheory.lsh import EuclideanLSH, e2lsh_collision_probability
from kdetheory.lsh import euclidean as eu


def _p1_by_quadrature(c):
    # P[floor(b) == floor(b + t)] = E[max(0, 1 - |t|)] with t ~ N(0, c^2)
    val, _ = quad(lambda t: 2 * (1 - t) * norm.pdf(t, scale=c), 0, 1, epsabs=1e-13, epsrel=1e-13)
    return val


@pytest.mark.parametrize("c", [0.25, 0.5, 1.0, 2.0, 5.0])
def test_collision_probability_matches_quadrature(c):
    assert e2lsh_collision_probability(c, 1.0) == pytest.approx(_p1_by_quadrature(c), rel=1e-9)


@pytest.mark.parametrize("c", [0.25, 0.5, 1.0, 2.0])
def test_collision_probability_matches_monte_carlo(c):
    """Three decimals: |MC - formula| <= 1e-3 with N = 6.4e6 pairs (se <= 2e-4, so 1e-3 >= 5 se)."""
    width, r, d = 1.0, c, 3
    x = np.zeros((1, d))
    q = np.zeros((1, d))
    q[0, 0] = r
    hits, total = 0, 0
    for seed in range(8):
        lsh = EuclideanLSH(d, 1, width, n_tables=800_000, rng=np.random.SeedSequence([11, seed]))
        hx, hq = lsh.hash(x), lsh.hash(q)
        hits += int((hx == hq).all(axis=(1, 2)).sum())
        total += lsh.n_tables
    assert abs(hits / total - e2lsh_collision_probability(r, width)) <= 1e-3


def test_rehashing_formula_differs():
    """The erf(1/c) variant of the rehashing code is wrong by ~0.16 at c = 1 (docs/math.md §2.2)."""
    for c in (0.5, 1.0, 2.0):
        wrong = erf(1 / c) - np.sqrt(2 / np.pi) * c * (1 - np.exp(-1 / (2 * c * c)))
        # 0.02 is 100 standard errors of the Monte Carlo test above: that test would catch it
        assert abs(wrong - e2lsh_collision_probability(c, 1.0)) > 0.02
    assert e2lsh_collision_probability(1.0, 1.0) == pytest.approx(0.3687, abs=1e-4)


@given(r=st.floats(0, 50), w=st.floats(0.1, 20), k=st.integers(1, 12))
def test_collision_probability_properties(r, w, k):
    p1 = e2lsh_collision_probability(r, w)
    pk = e2lsh_collision_probability(r, w, k)
    assert 0 < pk <= 1
    assert pk == pytest.approx(p1**k, rel=1e-9)
    assert e2lsh_collision_probability(r * 1.1 + 1e-3, w) <= p1  # decreasing in the distance


def test_collision_probability_vectorised_and_zero():
    r = np.array([[0.0, 1.0], [2.0, 3.0]])
    p = e2lsh_collision_probability(r, 2.0, 3)
    assert p.shape == (2, 2) and p[0, 0] == 1.0
    assert p[0, 1] == pytest.approx(e2lsh_collision_probability(1.0, 2.0, 3))


def test_hash_is_floor_of_projection_plus_offset():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 7))
    lsh = EuclideanLSH(7, 4, 1.5, n_tables=3, rng=5)
    H = lsh.hash(X)
    assert H.shape == (3, 50, 4) and H.dtype == np.int64
    expect = np.floor(np.einsum("tkd,nd->tnk", lsh.projections, X) + lsh.offsets[:, None, :])
    assert np.array_equal(H, expect.astype(np.int64))
    # same seed, same hash; another seed, another hash
    assert np.array_equal(EuclideanLSH(7, 4, 1.5, n_tables=3, rng=5).hash(X), H)
    assert not np.array_equal(EuclideanLSH(7, 4, 1.5, n_tables=3, rng=6).hash(X), H)


def _tables(rng, n=400, T=5, k=3, width=1.0, weights=None):
    X = rng.normal(size=(n, 4))
    lsh = EuclideanLSH(4, k, width, n_tables=T, rng=rng)
    codes = lsh.hash(X)
    w = np.ones(n) if weights is None else weights
    return X, lsh, codes, eu.BucketTables([(codes, np.broadcast_to(np.arange(n), (T, n)))], w)


def test_buckets_hold_exactly_one_key_and_lookup_finds_it():
    rng = np.random.default_rng(0)
    X, lsh, codes, tab = _tables(rng)
    for t in range(tab.n_tables):
        for b in range(tab.bucket_ptr[t], tab.bucket_ptr[t + 1]):
            mem = tab.members[tab.first[b]:tab.last[b]]
            assert (codes[t, mem] == tab.bucket_key[b]).all()
    found = tab.lookup(codes)  # every stored point finds its own bucket
    for t in range(tab.n_tables):
        assert all(i in tab.members[tab.first[b]:tab.last[b]] for i, b in enumerate(found[t]))
    far = lsh.hash(X[:10] + 1e6)
    assert (tab.lookup(far) == -1).all()


def test_mix_collisions_never_merge_buckets(monkeypatch):
    """With a degenerate 64-bit mix (every key collides) the buckets and lookups stay exact."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    lsh = EuclideanLSH(4, 2, 1.0, n_tables=2, rng=2)
    codes = lsh.hash(X)
    honest = eu.BucketTables([(codes, np.broadcast_to(np.arange(300), (2, 300)))], np.ones(300))
    monkeypatch.setattr(eu, "key_mix", lambda c: np.zeros(np.asarray(c).shape[:-1], dtype=np.uint64))
    tab = eu.BucketTables([(codes, np.broadcast_to(np.arange(300), (2, 300)))], np.ones(300))
    assert tab.bucket_ptr[-1] == honest.bucket_ptr[-1]
    for backend in ("numpy", "numba"):
        b = tab.lookup(codes, backend)
        keys = tab.bucket_key[b]
        assert (keys == codes).all()


def test_numba_lookup_matches_numpy():
    rng = np.random.default_rng(4)
    X, lsh, codes, tab = _tables(rng, n=600, T=6, k=5, width=2.0)
    Q = rng.normal(size=(80, 4))
    qc = lsh.hash(Q)
    assert np.array_equal(tab.lookup(qc, "numpy"), tab.lookup(qc, "numba"))


def test_weighted_draw_follows_weights():
    """One bucket with weights 1, 2, 7: draws land in proportion (z-test at 5 se)."""
    codes = np.zeros((1, 3, 2), dtype=np.int64)
    tab = eu.BucketTables([(codes, np.arange(3)[None, :])], np.array([1.0, 2.0, 7.0]))
    u = np.random.default_rng(7).random((1, 100_000))
    pos = tab.draw(np.zeros((1, 100_000), dtype=np.int64), u)
    counts = np.bincount(tab.members[pos[0]], minlength=3) / 100_000
    se = np.sqrt(np.array([0.1, 0.2, 0.7]) * np.array([0.9, 0.8, 0.3]) / 100_000)
    assert (np.abs(counts - [0.1, 0.2, 0.7]) <= 5 * se).all()


@pytest.mark.parametrize("kwargs, word", [
    (dict(dim=3, n_concat=2, width=0.0), "width"),
    (dict(dim=3, n_concat=0, width=1.0), "n_concat"),
    (dict(dim=0, n_concat=1, width=1.0), "dim"),
])
def test_bad_parameters_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        EuclideanLSH(rng=0, **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="distance"):
        e2lsh_collision_probability(-1.0, 1.0)
    with pytest.raises(ValueError, match="width"):
        e2lsh_collision_probability(1.0, -1.0)
    with pytest.raises(ValueError, match="X"):
        EuclideanLSH(3, 1, 1.0, rng=0).hash(np.ones((2, 4)))


def test_tables_built_in_chunks_equal_tables_built_at_once():
    """The HBE build passes its tables in groups (bounded temporaries): the CSR arrays, global bucket
    indices and lookups must be those of a single build, whatever the grouping."""
    rng = np.random.default_rng(3)
    codes = rng.integers(-3, 3, size=(7, 200, 2))
    members = np.stack([rng.permutation(500)[:200] for _ in range(7)])
    w = rng.random(500)
    whole = eu.BucketTables([(codes, members)], w)
    parts = eu.BucketTables([(codes[:2], members[:2]), (codes[2:3], members[2:3]), (codes[3:], members[3:])], w)
    for key in ("first", "last", "bucket_ptr", "bucket_mix", "bucket_key", "members", "bucket_weight", "cdf_key"):
        assert np.array_equal(getattr(whole, key), getattr(parts, key)), key
    q = rng.integers(-3, 3, size=(4, 50, 2))
    assert np.array_equal(whole.lookup(q[:, :, :], "numpy", table0=3), parts.lookup(q, "numba", table0=3))
