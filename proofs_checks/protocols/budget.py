"""The Figure 4 protocol (docs/math.md §7.1): relative spectral error versus budget F for KDEformer and the baselines.

Shared by ``benchmarks/budget.py`` (the full sweep and its report) and the claim ``figure_4_budget`` (its quick
form). Two metrics per run, both spectral:

* paper:     ``||A~ - Att||_2 / ||Att||_2``  (the authors' Figure-4 metric), and
* guarantee: ``||A~ - Att||_2 / (||D^-1 A||_2 ||V||_2)`` (eq. 2, the value of
  :func:`kdetheory.linalg.relative_spectral_error`; computed from the same error matrix with
  ``||D^-1 A||_2`` from one Lanczos run per instance, and checked against the function once).
"""
from __future__ import annotations

import time

import numpy as np

from kdetheory.attention.baselines import METHODS, budget_parameters
from kdetheory.attention.baselines import hyperattention, nystrom, performer, reformer, scatterbrain, uniform_sampling
from kdetheory.attention.exact import softmax_attention
from kdetheory.attention.practical import kdeformer_practical
from kdetheory.linalg import relative_spectral_error, spectral_norm

__all__ = ["FUNCS", "EXTRA", "ROWS", "MAX_NYSTROM_LANDMARKS", "glove_instance", "synthetic_instance", "sweep"]

FUNCS = {"kdeformer": kdeformer_practical, "hyperattention": hyperattention, "performer": performer,
         "scatterbrain": scatterbrain, "reformer": reformer, "nystrom": nystrom, "uniform": uniform_sampling}
#: Extra row: Reformer under the authors' wrapper convention (normalised shared keys, self mask),
#: measured against the same exact target, to show what that convention does to its error.
EXTRA = {"reformer_authors": ("reformer", {"shared_qk": True})}
ROWS = METHODS + tuple(EXTRA)
MAX_NYSTROM_LANDMARKS = 1536  # the iterative pinv costs about (8k + 2) L^3 FLOPs (k = 6 iterations); larger L is skipped


def glove_instance(n, instance):
    """The Figure-4 instance on GloVe 6B-50d (Q = K = glove / 10^0.25, V a disjoint block); needs the ``real``
    extra. See :func:`kdetheory.datasets.glove.glove_attention_instance` for the arguments."""
    from kdetheory.datasets.glove import glove_attention_instance

    return glove_attention_instance(n, instance=instance)


def synthetic_instance(n, seed):
    """Gaussian-mixture ("clustered") instance, d = 50, pre-scaled."""
    from kdetheory.datasets.synthetic import attention_instance

    return attention_instance(n, 50, kind="clustered", rng=seed)


def _softmax_norm(Q, K):
    """``||D^-1 A||_2`` by Lanczos on the dense softmax matrix (n^2 floats: the exact reference
    only; 0.5 GB at n = 8192, and ~50x faster than re-forming it at every matrix-free product)."""
    P = Q @ K.T
    P -= P.max(axis=1, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(axis=1, keepdims=True)
    return spectral_norm(P, method="lanczos", rng=0, rtol=1e-8)


def sweep(datasets, budgets, seeds, verbose=True, check=True) -> list[dict]:
    """Relative spectral error of every method of :data:`ROWS` at every budget, instance and seed.

    Parameters
    ----------
    datasets : sequence of (name, n, make)
        ``make(n, seed) -> (Q, K, V)`` builds one pre-scaled instance (``A = exp(Q K^T)``), e.g.
        :func:`glove_instance` or :func:`synthetic_instance`.
    budgets : sequence of int
        Budgets F (positive); each method's parameters come from
        :func:`kdetheory.attention.baselines.budget_parameters`.
    seeds : sequence of int
        One instance per seed and data set; method ``rng`` is ``1000 * seed + F``.
    verbose : bool, default True
        Print one line per run.
    check : bool, default True
        Check once that the shortcut metric equals :func:`kdetheory.linalg.relative_spectral_error`.

    Returns
    -------
    list of dict
        One row per (data set, seed, budget, method): ``paper_error`` = ``||A~ - Att||_2 / ||Att||_2`` (the
        paper's Figure 4 metric), ``guarantee_error`` = eq. (2), ``seconds``, ``exact_seconds``, and the method's
        ``flops`` and ``kernel_evaluations`` (exact kernel entries, all queries) from its ``AttentionCost``.
        Methods whose parameters exceed the instance (or Nystrom above :data:`MAX_NYSTROM_LANDMARKS`) are
        skipped.
    """
    budgets, seeds = list(budgets), list(seeds)
    if not budgets or any(isinstance(F, bool) or not isinstance(F, (int, np.integer)) or F < 1 for F in budgets):
        raise ValueError(f"sweep: budgets={budgets!r} must be a non-empty list of positive ints")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"sweep: seeds={seeds!r} must be a non-empty list of non-negative ints")
    rows = []
    for dataset, n, make in datasets:
        for seed in seeds:
            Q, K, V = make(n, seed)
            t0 = time.perf_counter()
            exact = softmax_attention(Q, K, V)
            t_exact = time.perf_counter() - t0
            att_norm = spectral_norm(exact)
            p_norm = _softmax_norm(Q, K)
            v_norm = spectral_norm(V)
            checked = not check
            for F in budgets:
                for method in ROWS:
                    base, extra = EXTRA.get(method, (method, {}))
                    kwargs, fdim = budget_parameters(base, F)
                    kwargs = {**kwargs, **extra}
                    if method == "nystrom" and kwargs["n_landmarks"] > min(MAX_NYSTROM_LANDMARKS, n):
                        continue
                    if "bucket_size" in kwargs and kwargs["bucket_size"] > n:
                        continue
                    if method == "uniform" and kwargs["n_samples"] > n:
                        continue
                    t0 = time.perf_counter()
                    res = FUNCS[base](Q, K, V, rng=1000 * seed + F, **kwargs)
                    wall = time.perf_counter() - t0
                    err = spectral_norm(res.output - exact)
                    guarantee = err / (p_norm * v_norm)
                    if not checked:  # the shortcut equals the library's metric
                        ref = relative_spectral_error(res.output, Q, K, V, rng=0)
                        assert abs(ref - guarantee) <= 1e-6 * ref, (ref, guarantee)
                        checked = True
                    rows.append(dict(dataset=dataset, n=n, seed=seed, method=method, budget=F, feature_dimension=fdim,
                                     paper_error=err / att_norm, guarantee_error=guarantee, seconds=wall,
                                     exact_seconds=t_exact, flops=None if res.cost is None else res.cost.flops,
                                     kernel_evaluations=None if res.cost is None else res.cost.kernel_evaluations))
                    if verbose:
                        print(f"{dataset:9s} seed={seed} F={F:5d} {method:14s} paper={err / att_norm:.4f} "
                              f"guarantee={guarantee:.4f} t={wall:.2f}s", flush=True)
    return rows
