"""Instances for the KDEformer claims: synthetic generators and optional real data.

Synthetic (always available, float64, deterministic given ``rng``):
:func:`gaussian_mixture`, :func:`attention_instance`, :func:`bounded_diameter_instance`,
:func:`heavy_tailed_values`, :func:`matrix_with_stable_rank`.

Real data (extra ``pip install "kdetheory[real]"``; this package imports without it, the
optional modules are imported only inside the functions that need them):

* GloVe 6B-50d word vectors, :func:`glove_vectors`, and the paper's Figure-4 protocol,
  :func:`glove_attention_instance`;
* all-MiniLM-L6-v2 run in NumPy: :func:`minilm_attention` (real Q, K, V per layer and
  head), :func:`minilm_sentence_embedding`, :func:`minilm_embedding_table`;
* :func:`real_data_available`, :func:`missing_real_data` (the one skip message) and
  :func:`require_real_data` (the one ImportError) for checks that need them.
"""
from .glove import (
    glove_attention_instance,
    glove_vectors,
    missing_real_data,
    real_data_available,
    require_real_data,
)
from .minilm import (
    MiniLMAttention,
    minilm_attention,
    minilm_embedding_table,
    minilm_model_dir,
    minilm_sentence_embedding,
)
from .synthetic import (
    ATTENTION_KINDS,
    attention_instance,
    bounded_diameter_instance,
    gaussian_mixture,
    heavy_tailed_values,
    matrix_with_stable_rank,
)
from .texts import DEFAULT_TEXT, PASSAGES, passages

__all__ = [
    "ATTENTION_KINDS",
    "DEFAULT_TEXT",
    "PASSAGES",
    "MiniLMAttention",
    "attention_instance",
    "bounded_diameter_instance",
    "gaussian_mixture",
    "glove_attention_instance",
    "glove_vectors",
    "heavy_tailed_values",
    "matrix_with_stable_rank",
    "minilm_attention",
    "minilm_embedding_table",
    "minilm_model_dir",
    "minilm_sentence_embedding",
    "missing_real_data",
    "passages",
    "real_data_available",
    "require_real_data",
]
