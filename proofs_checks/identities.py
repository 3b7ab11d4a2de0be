"""Claims 1-3 of docs/math.md §8: the exact identities the KDEformer analysis rests on.

1. ``exp_gaussian_identity``: exp<x,y> = e^{|x|^2/2} e^{|y|^2/2} e^{-|x-y|^2/2}, pointwise and as the reduction of
   the exponential KDE to the Gaussian KDE (the first step of Algorithm 2).
2. ``column_norm_formula``: |D^-1 A e_j|^2 = sum_i e^{2<q_i,k_j>} / D_ii^2, a weighted exponential KDE
   (docs/math.md §1).
3. ``softmax_row_stochastic``: D^-1 A 1 = 1 and 1 <= |D^-1 A|_2 <= sqrt(n) (docs/math.md §1), the range of the error
   budget in eq. (2).

Each is checked through the library (:mod:`kdetheory.attention`, :mod:`kdetheory.kde`, :mod:`kdetheory.linalg`)
against a direct formula, so a verdict "holds" also says that the library computes these quantities correctly.
"""

from __future__ import annotations

import numpy as np

from kdetheory import _config
from kdetheory._array import get_cupy, to_numpy
from kdetheory.attention import row_sums, softmax_matrix
from kdetheory.kde import exp_kde, gaussian_kde
from kdetheory.linalg import spectral_norm

from ._harness import ClaimResult, ClaimSpec, check_size, trial_generators

__all__ = ["EXP_GAUSSIAN_IDENTITY", "COLUMN_NORM_FORMULA", "SOFTMAX_ROW_STOCHASTIC"]

# Rounding of float64 sums of a few hundred terms stays near 1e-14; 1e-12 leaves room without hiding a wrong
# formula (a wrong constant or a missing weight moves the ratio by O(1)).
IDENTITY_RTOL = 1e-12


def _points(gen: np.random.Generator, n: int, d: int, max_norm: float) -> np.ndarray:
    """n points with uniformly random directions and norms uniform in [0, max_norm]."""
    x = gen.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * gen.uniform(0.0, max_norm, size=(n, 1))


def _on_backend(backend: str, *arrays):
    """Move host arrays to the GPU for backend="cupy" (the library follows the inputs' device)."""
    if backend != "cupy":
        return arrays
    cp = get_cupy()
    return tuple(cp.asarray(a) for a in arrays)


def _max_rel_dev(a, b) -> float:
    a, b = to_numpy(a), to_numpy(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# --------------------------------------------------------------------------------------------------
# 1. exp / Gaussian identity


def run_exp_gaussian_identity(size: str = "quick", rng=0, backend: str = "auto") -> ClaimResult:
    """Check exp<x,y> = e^{|x|^2/2} e^{|y|^2/2} e^{-|x-y|^2/2} pointwise and at the level of kernel sums.

    The kernel-sum form is ``exp_kde(X, Y, w)_i = n e^{|y_i|^2/2} gaussian_kde(X, Y, w e^{|x|^2/2})_i`` (the
    Gaussian KDE is an average, hence the factor n). Norms go up to 3 so that both sides stay far from
    overflow and the check measures the identity, not the exponent range.
    """
    check_size(size, "exp_gaussian_identity")
    n_pairs, n_data, n_query = (2_000, 300, 200) if size == "quick" else (200_000, 3_000, 2_000)
    dims = (2, 16, 64)
    gens = trial_generators(rng, len(dims))
    pointwise, kde_level = [], []
    for d, gen in zip(dims, gens):
        x, y = _points(gen, n_pairs, d, 3.0), _points(gen, n_pairs, d, 3.0)
        lhs = np.exp(np.einsum("ij,ij->i", x, y))
        rhs = (np.exp(0.5 * np.einsum("ij,ij->i", x, x)) * np.exp(0.5 * np.einsum("ij,ij->i", y, y))
               * np.exp(-0.5 * np.einsum("ij,ij->i", x - y, x - y)))
        pointwise.append(_max_rel_dev(lhs, rhs))

        X, Y = _points(gen, n_data, d, 3.0), _points(gen, n_query, d, 3.0)
        w = gen.uniform(0.0, 1.0, size=n_data)
        Xb, Yb, wb, wgb = _on_backend(backend, X, Y, w, w * np.exp(0.5 * (X * X).sum(axis=1)))
        direct = exp_kde(Xb, Yb, weights=wb, backend=backend)
        via_gauss = n_data * np.exp(0.5 * (Y * Y).sum(axis=1)) * to_numpy(
            gaussian_kde(Xb, Yb, bandwidth=1.0, weights=wgb, backend=backend))
        kde_level.append(_max_rel_dev(direct, via_gauss))
    measured = {"pointwise_max_rel_dev": max(pointwise), "kde_max_rel_dev": max(kde_level)}
    holds = max(measured.values()) <= IDENTITY_RTOL
    return ClaimResult(
        name="exp_gaussian_identity",
        claim=EXP_GAUSSIAN_IDENTITY.claim,
        source=EXP_GAUSSIAN_IDENTITY.source,
        data=(f"d in {dims}; {n_pairs} random pairs and exp_kde vs gaussian_kde with {n_data} data, {n_query} "
              f"queries per d; norms uniform in [0, 3]; backend={backend}"),
        measured=measured,
        expected=f"max relative deviation <= {IDENTITY_RTOL:g}",
        verdict="holds" if holds else "fails",
        seeds=[rng],
        details=f"per d {dims}: pointwise {pointwise}, kde {kde_level}",
    )


# --------------------------------------------------------------------------------------------------
# 2. column norms of the softmax matrix


def _qk_instance(gen, kind: str, n_q: int, n_k: int, d: int):
    """Pre-scaled Q, K: 'gaussian' (logits of standard deviation about 1.5) or 'peaky' (K = Q, large norms)."""
    if kind == "gaussian":
        sigma = np.sqrt(1.5 / np.sqrt(d))
        return sigma * gen.standard_normal((n_q, d)), sigma * gen.standard_normal((n_k, d))
    Q = _points(gen, max(n_q, n_k), d, 5.0)
    return Q[:n_q], Q[:n_k]


def run_column_norm_formula(size: str = "quick", rng=0, backend: str = "auto") -> ClaimResult:
    """Check |D^-1 A e_j|^2 = sum_i e^{2<q_i,k_j>} / D_ii^2 in its three equivalent KDE forms.

    The left side squares the columns of ``softmax_matrix(Q, K)``; the right side is
    ``exp_kde(X, Y, weights=row_sums(Q, K)**-2)`` with (X, Y) = (sqrt2 Q, sqrt2 K), (2Q, K) or (Q, 2K).
    """
    check_size(size, "column_norm_formula")
    n_q, n_k, d = (200, 150, 16) if size == "quick" else (2_000, 1_500, 64)
    kinds = ("gaussian", "peaky")
    gens = trial_generators(rng, len(kinds))
    forms = {"sqrt2Q_sqrt2K": (np.sqrt(2.0), np.sqrt(2.0)), "2Q_K": (2.0, 1.0), "Q_2K": (1.0, 2.0)}
    measured = {}
    for kind, gen in zip(kinds, gens):
        Q, K = _qk_instance(gen, kind, n_q, n_k, d)
        col_sq = (softmax_matrix(Q, K).todense() ** 2).sum(axis=0)
        Qb, Kb = _on_backend(backend, Q, K)
        weights = to_numpy(row_sums(Qb, Kb, backend=backend)) ** -2.0
        (wb,) = _on_backend(backend, weights)
        for form, (a, b) in forms.items():
            kde = exp_kde(a * Qb, b * Kb, weights=wb, backend=backend)
            measured[f"{kind}:{form}"] = _max_rel_dev(kde, col_sq)
    worst = max(measured.values())
    return ClaimResult(
        name="column_norm_formula",
        claim=COLUMN_NORM_FORMULA.claim,
        source=COLUMN_NORM_FORMULA.source,
        data=f"n_q={n_q}, n_k={n_k}, d={d}; instances {kinds}; backend={backend}",
        measured={"max_rel_dev": worst, **measured},
        expected=f"max relative deviation <= {IDENTITY_RTOL:g} in every form",
        verdict="holds" if worst <= IDENTITY_RTOL else "fails",
        seeds=[rng],
        details="left side: columns of softmax_matrix(Q, K).todense(); right side: exp_kde with D from row_sums",
    )


# --------------------------------------------------------------------------------------------------
# 3. the softmax matrix is row-stochastic with 1 <= |P|_2 <= sqrt(n)


def _stochastic_instance(gen, kind: str, n: int, d: int):
    """Q, K spanning the range of |P|_2: flat (about 1), peaky (about 1), one dominant key (about sqrt n)."""
    if kind == "flat":
        return 0.05 * gen.standard_normal((n, d)), 0.05 * gen.standard_normal((n, d))
    if kind == "peaky":
        Q = _points(gen, n, d, 6.0)
        return Q, Q
    # one key aligned with every query and much longer than the others: P ~ 1 e_0^T, |P|_2 ~ sqrt(n)
    u = np.zeros(d)
    u[0] = 1.0
    Q = u + 0.1 * gen.standard_normal((n, d))
    K = 0.1 * gen.standard_normal((n, d))
    K[0] = 12.0 * u
    return Q, K


def run_softmax_row_stochastic(size: str = "quick", rng=0, backend: str = "auto") -> ClaimResult:
    """Check D^-1 A 1 = 1 and 1 <= |D^-1 A|_2 <= sqrt(n) on instances that approach both ends of the range."""
    check_size(size, "softmax_row_stochastic")
    n, d = (256, 16) if size == "quick" else (2_048, 64)
    kinds = ("flat", "peaky", "one_key")
    gens = trial_generators(rng, len(kinds))
    # Lanczos meets its relative tolerance, so a norm of exactly 1 may read 1 - NORM_RTOL; allow ten times that.
    slack = 10 * _config.NORM_RTOL
    norms, exact_norms, row_dev = [], [], []
    for kind, gen in zip(kinds, gens):
        Q, K = _on_backend(backend, *_stochastic_instance(gen, kind, n, d))
        P = softmax_matrix(Q, K)
        row_dev.append(float(np.max(np.abs(P @ np.ones(n) - 1.0))))
        norms.append(spectral_norm(P, method="lanczos", rng=gen))
        exact_norms.append(spectral_norm(P.todense(), method="exact"))
    norms_arr = np.asarray(norms)
    bound = np.sqrt(n)
    in_range = bool(np.all(norms_arr >= 1 - slack) and np.all(norms_arr <= bound * (1 + slack)))
    worst_row = max(row_dev)
    measured = {"max_row_sum_dev": worst_row, "norm_min": float(norms_arr.min()),
                "norm_max": float(norms_arr.max()), "sqrt_n": float(bound),
                "lanczos_vs_exact": float(np.max(np.abs(norms_arr - exact_norms) / np.asarray(exact_norms)))}
    holds = in_range and worst_row <= IDENTITY_RTOL
    return ClaimResult(
        name="softmax_row_stochastic",
        claim=SOFTMAX_ROW_STOCHASTIC.claim,
        source=SOFTMAX_ROW_STOCHASTIC.source,
        data=f"n={n}, d={d}; instances {kinds}; norm by Lanczos (matrix-free) and LAPACK; backend={backend}",
        measured=measured,
        expected=f"|P 1 - 1| <= {IDENTITY_RTOL:g}; 1 <= |P|_2 <= sqrt(n) = {bound:.4g}",
        verdict="holds" if holds else "fails",
        seeds=[rng],
        details=", ".join(f"{k}: |P|_2={v:.6g}" for k, v in zip(kinds, norms)),
        figure_data={"instance": list(kinds), "n": n, "norm": norms_arr, "exact_norm": np.asarray(exact_norms),
                     "sqrt_n": float(bound), "row_sum_dev": np.asarray(row_dev)},
    )


EXP_GAUSSIAN_IDENTITY = ClaimSpec(
    name="exp_gaussian_identity",
    source="docs/math.md §1 (Algorithm 2 reduction)",
    claim="exp<x,y> = e^{|x|^2/2} e^{|y|^2/2} e^{-|x-y|^2/2}, so the exponential KDE is a reweighted Gaussian KDE",
    run=run_exp_gaussian_identity,
)
COLUMN_NORM_FORMULA = ClaimSpec(
    name="column_norm_formula",
    source="docs/math.md §1 (Algorithm 1, step 2)",
    claim="|D^-1 A e_j|^2 = sum_i e^{2<q_i,k_j>} / D_ii^2, a weighted exponential KDE",
    run=run_column_norm_formula,
)
SOFTMAX_ROW_STOCHASTIC = ClaimSpec(
    name="softmax_row_stochastic",
    source="docs/math.md §1 (eq. (2) error budget)",
    claim="D^-1 A is row-stochastic and 1 <= |D^-1 A|_2 <= sqrt(n)",
    run=run_softmax_row_stochastic,
)
