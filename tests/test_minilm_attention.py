"""Attention as a parameter of the real model (issue 16 item 1): minilm_sentence_embedding(attention=, layers=),
and the bookkeeping of the end-to-end claim built on it."""
from __future__ import annotations

import types

import numpy as np
import pytest

from kdetheory.attention import softmax_attention
from kdetheory.datasets import missing_real_data

needs_minilm = pytest.mark.skipif(missing_real_data("minilm") is not None, reason=str(missing_real_data("minilm")))
TEXTS = ["A heron stands in the river.", "Clocks on ships kept time at sea for months on end.",
         "Bread needs flour, water, salt and yeast.", "A heron stands in the river."]


def mean_of_values(Q, K, V, *, scale):
    """Uniform attention: every output row is the mean of V (no keys compared)."""
    return np.broadcast_to(V.mean(axis=-2, keepdims=True), V.shape).copy()


@needs_minilm
def test_exact_reference_reproduces_the_default():
    from kdetheory.datasets import minilm_sentence_embedding

    default = minilm_sentence_embedding(TEXTS)
    through = minilm_sentence_embedding(TEXTS, attention=softmax_attention)
    np.testing.assert_allclose(through, default, rtol=0, atol=1e-10)
    # A result object with .output is accepted as well.
    wrapped = minilm_sentence_embedding(
        TEXTS, attention=lambda Q, K, V, *, scale: types.SimpleNamespace(output=softmax_attention(Q, K, V, scale=scale)))
    np.testing.assert_allclose(wrapped, default, rtol=0, atol=1e-10)


@needs_minilm
def test_the_callable_never_sees_padding_and_only_the_listed_layers():
    from kdetheory.datasets import minilm_sentence_embedding
    from kdetheory.datasets.minilm import _tokenizer

    lengths = sorted({len(_tokenizer().encode(t).ids) for t in TEXTS})  # [CLS] ... [SEP]
    seen = []

    def spy(Q, K, V, *, scale):
        assert Q.shape == K.shape == V.shape and Q.shape[0] == 12 and Q.shape[2] == 32
        assert scale == pytest.approx(32 ** -0.5)
        seen.append(Q.shape[1])
        return softmax_attention(Q, K, V, scale=scale)

    minilm_sentence_embedding(TEXTS, attention=spy, layers=[1, 4])
    assert sorted(set(seen)) == lengths  # one call per sentence and layer, at its own length
    assert len(seen) == 2 * len(TEXTS)


@needs_minilm
def test_replacing_layers_changes_the_embedding_and_batches_do_not_leak():
    from kdetheory.datasets import minilm_sentence_embedding

    exact = minilm_sentence_embedding(TEXTS)
    first = minilm_sentence_embedding(TEXTS, attention=mean_of_values, layers=[0])
    last = minilm_sentence_embedding(TEXTS, attention=mean_of_values, layers=(5,))
    every = minilm_sentence_embedding(TEXTS, attention=mean_of_values)
    for E in (first, last, every):
        np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-12)
        assert np.all(np.sum(E * exact, axis=1) < 1 - 1e-6)
    assert not np.allclose(first, last) and not np.allclose(last, every)
    alone = np.vstack([minilm_sentence_embedding(t, attention=mean_of_values, layers=[0]) for t in TEXTS])
    np.testing.assert_allclose(first, alone, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(first[0], first[3])  # identical texts, identical embeddings


@needs_minilm
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"layers": [0]}, ValueError, r"^layers: got \[0\] without an attention"),
    ({"attention": "exact"}, TypeError, r"^attention: got an object of type str"),
    ({"attention": softmax_attention, "layers": [6]}, ValueError, r"^layers: got 6"),
    ({"attention": softmax_attention, "layers": [0, 0]}, ValueError, r"^layers: got \[0, 0\]; pass distinct"),
    ({"attention": softmax_attention, "layers": []}, ValueError, r"^layers: got \[\]"),
    ({"attention": softmax_attention, "layers": "01"}, TypeError, r"^layers: got '01'"),
    ({"attention": softmax_attention, "layers": 3}, TypeError, r"^layers: got 3"),
    ({"attention": lambda Q, K, V, *, scale: V[:, :-1]}, ValueError, r"^attention: at layer 0 it returned"),
    ({"attention": lambda Q, K, V, *, scale: V * np.nan}, ValueError, r"^attention: at layer 0 it returned NaN"),
    ({"attention": lambda Q, K, V, *, scale: 3.0}, ValueError, r"^attention: at layer 0 it returned float"),
])
def test_bad_input_names_the_argument(kwargs, exc, match):
    from kdetheory.datasets import minilm_sentence_embedding

    with pytest.raises(exc, match=match):
        minilm_sentence_embedding(TEXTS[:2], **kwargs)


def test_passages_ship_with_the_package():
    from kdetheory.datasets.texts import DEFAULT_TEXT, PASSAGES, passages

    assert len(PASSAGES) == 24 and PASSAGES == passages()
    assert all(len(p.split()) >= 60 for p in PASSAGES)
    assert "".join(PASSAGES).replace("\n", "").replace(" ", "") == DEFAULT_TEXT.replace("\n", "").replace(" ", "")
    assert len(passages(1)) == 28 and len(passages(10_000)) == 8  # every paragraph / every essay whole
    with pytest.raises(ValueError, match=r"^min_words: got 0"):
        passages(0)


def test_end_to_end_verdict_rule():
    from proofs_checks.end_to_end import DROP, FLOP_FRACTION, _setting_verdict

    ok = {"flop_fraction": FLOP_FRACTION / 2, "drop_ci": [DROP / 4, DROP / 2]}
    bad = {"flop_fraction": FLOP_FRACTION / 2, "drop_ci": [2 * DROP, 3 * DROP]}
    costly = {"flop_fraction": 2 * FLOP_FRACTION, "drop_ci": [0.0, DROP / 10]}
    straddle = {"flop_fraction": FLOP_FRACTION, "drop_ci": [DROP / 2, 2 * DROP]}
    assert _setting_verdict([bad, ok]) == "holds"
    assert _setting_verdict([bad, costly]) == "fails"  # the accurate budget is not a large FLOP reduction
    assert _setting_verdict([costly]).startswith("inconclusive (no budget")
    assert _setting_verdict([bad, straddle]).startswith("inconclusive (interval")
