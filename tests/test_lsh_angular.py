"""Angular LSH: Gray-code order and rank, Claim 1 (collision probability, Hamming law), input checks."""
import numpy as np
import pytest
from scipy import stats

from kdetheory.lsh.angular import AngularLSH, gray_code_order, gray_code_rank, order_adjacency


def _popcount(x):
    return np.array([bin(int(v)).count("1") for v in np.ravel(x)])


@pytest.mark.parametrize("r", [1, 2, 3, 5, 7, 10])
def test_gray_order_is_a_permutation_with_unit_steps(r):
    seq = gray_code_order(r)
    assert sorted(seq.tolist()) == list(range(2**r))
    assert np.all(_popcount(seq[1:] ^ seq[:-1]) == 1)
    assert order_adjacency(r) == 1.0


@pytest.mark.parametrize("order", ["gray", "authors"])
@pytest.mark.parametrize("r", [1, 3, 7, 12])
def test_rank_is_inverse_of_order(r, order):
    seq = gray_code_order(r, order=order)
    assert np.array_equal(gray_code_rank(seq, r, order=order), np.arange(2**r))


def test_authors_order_adjacency_matches_spec():
    # docs/math.md §6.4: 75.6% for r = 7 and 85.7% for r = 3; identical to Gray for r <= 2.
    assert order_adjacency(7, order="authors") == pytest.approx(96 / 127)
    assert round(order_adjacency(7, order="authors"), 3) == 0.756
    assert round(order_adjacency(3, order="authors"), 3) == 0.857
    assert np.array_equal(gray_code_order(2, order="authors"), gray_code_order(2))


def test_codes_and_ids_agree_and_ignore_norms():
    rng = np.random.default_rng(0)
    lsh = AngularLSH(6, 5, rng=1)
    X = rng.standard_normal((3, 40, 6))
    bits = lsh.codes(X)
    assert bits.shape == (3, 40, 5)
    ids = lsh.bucket_ids(X)
    assert np.array_equal(ids, (bits.astype(np.int64) << np.arange(5)).sum(-1))
    assert np.array_equal(ids, lsh.bucket_ids(X * 7.5))
    assert np.array_equal(bits[..., 0], (X @ lsh.directions[:, 0] > 0).astype(np.uint8))


def _pair(theta, d, rng):
    x = rng.standard_normal(d)
    x /= np.linalg.norm(x)
    u = rng.standard_normal(d)
    u -= (u @ x) * x
    u /= np.linalg.norm(u)
    return x, np.cos(theta) * x + np.sin(theta) * u


@pytest.mark.parametrize("r,theta", [(3, np.pi / 4), (7, np.pi / 6)])
def test_claim_1_collision_probability_and_hamming_law(r, theta):
    rng = np.random.default_rng(2024)
    x, y = _pair(theta, 12, rng)
    trials = 20_000
    seeds = np.random.SeedSequence(7).spawn(trials)
    hamming = np.empty(trials, dtype=int)
    for t, s in enumerate(seeds):
        bits = AngularLSH(12, r, rng=s).codes(np.stack([x, y]))
        hamming[t] = int((bits[0] != bits[1]).sum())
    p_flip = theta / np.pi
    p = (1 - p_flip) ** r
    z = (np.mean(hamming == 0) - p) / np.sqrt(p * (1 - p) / trials)
    assert abs(z) < 5.0  # alpha ~ 6e-7
    observed = np.bincount(hamming, minlength=r + 1)
    expected = stats.binom.pmf(np.arange(r + 1), r, p_flip) * trials
    keep = expected >= 5  # pool the sparse tail into one cell for the chi-square test
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    assert stats.chisquare(obs, exp).pvalue > 1e-6


def test_wrong_law_is_rejected():
    # The same chi-square test must reject a Hamming law with the wrong flip probability.
    rng = np.random.default_rng(3)
    sample = rng.binomial(7, 0.2, size=20_000)
    expected = stats.binom.pmf(np.arange(8), 7, 0.25) * 20_000
    observed = np.bincount(sample, minlength=8)
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue < 1e-6


@pytest.mark.parametrize("bad", [0, 31, -1])
def test_n_hashes_out_of_range(bad):
    with pytest.raises(ValueError, match="n_hashes"):
        AngularLSH(4, bad)
    with pytest.raises(ValueError, match="n_hashes"):
        gray_code_order(bad)


def test_bad_inputs():
    with pytest.raises(TypeError, match="n_hashes"):
        AngularLSH(4, 2.5)
    with pytest.raises(ValueError, match="order"):
        gray_code_order(3, order="reflected")
    lsh = AngularLSH(4, 3, rng=0)
    with pytest.raises(ValueError, match="X"):
        lsh.codes(np.ones((5, 3)))
    with pytest.raises(ValueError, match="X"):
        lsh.codes(np.full((5, 4), np.nan))


def test_gray_code_rank_rejects_bad_ids():
    from kdetheory.lsh import gray_code_rank

    with pytest.raises(ValueError, match=r"^bucket_ids: got ids in \[0, 8\]"):
        gray_code_rank(np.array([0, 8]), 3)
    with pytest.raises(TypeError, match="^bucket_ids: got a list"):
        gray_code_rank([0, 1], 3)
    with pytest.raises(TypeError, match="^bucket_ids: got an array of dtype float64"):  # issue 12 item 26
        gray_code_rank(np.array([1.0]), 3)


@pytest.mark.parametrize("order", ["gray", "authors"])
def test_sort_keys_are_rank_times_n_plus_position(order):
    rng = np.random.default_rng(5)
    lsh = AngularLSH(6, 5, rng=1)
    X = rng.standard_normal((2, 3, 40, 6))
    keys = lsh.sort_keys(X, order=order)
    assert keys.shape == (2, 3, 40) and keys.dtype == np.int64
    np.testing.assert_array_equal(keys, lsh.ranks(X, order=order) * 40 + np.arange(40))
    with pytest.raises(ValueError, match="order"):
        lsh.sort_keys(X, order="binary")
