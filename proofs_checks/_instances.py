"""Attention instances shared by the claim modules: synthetic regimes and, when the `real`
extra is installed, real MiniLM attention heads."""
from __future__ import annotations

import numpy as np

from kdetheory.datasets.synthetic import attention_instance


def synthetic(kind, n, d, gen, d_v=None):
    """(label, Q, K, V) for one synthetic regime (pre-scaled: A = exp(Q K^T))."""
    Q, K, V = attention_instance(n, d, kind=kind, d_v=d_v, rng=gen)
    return f"synthetic {kind} n={n} d={d}", Q, K, V


def minilm(n, layer=2, head=0):
    """(label, Q, K, V) from all-MiniLM-L6-v2 with Q, K pre-scaled by (1/sqrt(32))^(1/2), or None."""
    from kdetheory.datasets.glove import real_data_available

    if not real_data_available("minilm"):
        return None
    from kdetheory.datasets.minilm import minilm_attention

    att = minilm_attention(layer=layer, head=head, max_tokens=n)
    root = np.sqrt(att.scale)
    return f"MiniLM-L6 layer {layer} head {head}, {att.Q.shape[0]} tokens", att.Q * root, att.K * root, att.V
