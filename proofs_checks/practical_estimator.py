"""The two parts of the practical KDEformer (Algorithm 3, docs/math.md §4): the residual estimator is unbiased
with error ~ T^(-1/2) over T independent draws (docs/math.md §8.10), and the sparse part is exactly the
block-restricted product A_spar [V, 1] (docs/math.md §8.11).

Both are checked against a dense reference built here from the definitions, in plain loops that share no code
with the library: :func:`bucket_position` (sign bits of the hash's hyperplanes, position in the Gray-code list)
and :func:`block_mask` (stable sort, contiguous blocks). Only the hyperplanes, ``lsh.directions``, are read from
the library's hash. The library's parts come from :func:`~kdetheory.attention.practical.kdeformer_practical`
with a fixed hash, so the partition is the same in every draw and only the residual samples vary.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from kdetheory.attention.practical import kdeformer_practical
from kdetheory.lsh.angular import AngularLSH

from ._harness import ClaimResult, ClaimSpec, check_size, slope_fit, trial_generators
from ._verdicts import exact_regime, interval_verdict, verdict_reason, verdict_word

__all__ = ["RESIDUAL_UNBIASED", "SPARSE_EXACT", "block_mask", "bucket_position", "unshifted_parts"]

ALPHA = 1e-6  # family-wise false-fail rate of the unbiasedness z-tests (Bonferroni over projections and rules)
N_PROJECTIONS = 4
#: the residual's relative error must fall like T^(SLOPE +- SLOPE_TOL): a constant bias b flattens the curve
#: towards b, so at the quick size a 5 % bias gives a slope CI near [-0.49, -0.34] (issue 10), outside this band
SLOPE, SLOPE_TOL = -0.5, 0.1
# float64 rounding of a b-term sum of exponentials of d-term logits stays near (b + d |logit|) 1e-16 ~ 1e-14;
# one wrong mask entry moves the result by an entry of A relative to a row sum, orders of magnitude more.
SPARSE_RTOL = 1e-12


def bucket_position(x, directions, order="gray"):
    """Sort key of the angular-LSH bucket of one point, from the definitions (docs/math.md §5, §6.4).

    Parameters
    ----------
    x : (d,) array
    directions : (d, r) array
        The hyperplanes w_1..w_r as columns.
    order : {"gray", "authors"}
        "gray": the position of the bucket id in the list g(0), g(1), ..., g(2^r - 1), g(i) = i XOR (i >> 1);
        "authors": the authors' sort key g(id) itself.

    Returns
    -------
    int
        Bit l of the id is 1[<w_l, x> > 0]; the id is sum_l bit_l 2^l.
    """
    r = directions.shape[1]
    bucket = sum(2**l for l in range(r) if float(np.dot(x, directions[:, l])) > 0)
    if order == "authors":
        return bucket ^ (bucket >> 1)
    for i in range(2**r):  # the Gray list is a permutation: exactly one i matches
        if i ^ (i >> 1) == bucket:
            return i
    raise AssertionError("unreachable")


def block_mask(Q, K, lsh, bucket_size, order="gray"):
    """Dense block mask of Algorithm 3 in plain loops: True where ``A_spar`` keeps ``A_ij``.

    Parameters
    ----------
    Q : (n_q, d) array
    K : (n_k, d) array
    lsh : AngularLSH
        The hash shared by queries and keys (only its ``directions`` are read).
    bucket_size : int
        Key block size b.
    order : {"gray", "authors"}
        Bucket order of the sort (docs/math.md §6.4).

    Returns
    -------
    (n_q, n_k) bool ndarray
        Queries and keys are stably sorted by :func:`bucket_position`. Sorted key position p lies in block
        p // b (ceil(n_k / b) blocks, the last one may be shorter); query block t holds the sorted query
        positions floor(t b n_q / n_k) .. floor((t + 1) b n_q / n_k) - 1, the last block running to n_q. With
        n_q = n_k query and key blocks coincide; with b | n_k and n_blocks | n_q this is the paper's equal split.
    """
    W = np.asarray(lsh.directions, dtype=np.float64)
    n_q, n_k, b = len(Q), len(K), bucket_size
    q_key = [bucket_position(q, W, order) for q in np.asarray(Q, dtype=np.float64)]
    k_key = [bucket_position(k, W, order) for k in np.asarray(K, dtype=np.float64)]
    q_sorted = sorted(range(n_q), key=lambda i: (q_key[i], i))
    k_sorted = sorted(range(n_k), key=lambda j: (k_key[j], j))
    n_blocks = (n_k + b - 1) // b
    mask = np.zeros((n_q, n_k), dtype=bool)
    for t in range(n_blocks):
        keys = [k_sorted[p] for p in range(t * b, min((t + 1) * b, n_k))]
        q_lo = (t * b * n_q) // n_k
        q_hi = n_q if t == n_blocks - 1 else ((t + 1) * b * n_q) // n_k
        for p in range(q_lo, q_hi):
            mask[q_sorted[p], keys] = True
    return mask


def unshifted_parts(result):
    """``(A_spar [V,1], est(A_res [V,1]))`` of a :class:`PracticalResult`, with the per-query shift undone."""
    factor = np.exp(np.asarray(result.log_shift))[..., None]
    return np.asarray(result.sparse) * factor, np.asarray(result.residual) * factor


def _with_ones(V):
    return np.concatenate([V, np.ones(V.shape[:-1] + (1,))], axis=-1)


def _instance(n, d, gen):
    """Clustered tokens with moderate norms: logits stay O(1-3), so the unshifted parts cannot overflow."""
    centres = gen.standard_normal((8, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    Q = centres[gen.integers(8, size=n)] + 0.5 * gen.standard_normal((n, d)) / np.sqrt(d)
    K = centres[gen.integers(8, size=n)] + 0.5 * gen.standard_normal((n, d)) / np.sqrt(d)
    return 1.2 * Q, 1.2 * K, gen.standard_normal((n, d))


def _draws(Q, K, V, lsh, b, m, sampling, n_draws, gen, backend, batch=256):
    """Residual estimates of ``n_draws`` independent calls, shape (n_draws, n_q, d_v + 1).

    The calls are batched along a leading axis: one shared hash, independent samples per sequence, all drawn
    from the generator ``gen``."""
    out = []
    for t0 in range(0, n_draws, batch):
        T = min(batch, n_draws - t0)
        tiled = [np.broadcast_to(x, (T,) + x.shape) for x in (Q, K, V)]
        res = kdeformer_practical(*tiled, bucket_size=b, n_samples=m, sampling=sampling, lsh=lsh,
                                  rng=gen, backend=backend)
        out.append(unshifted_parts(res)[1])
    return np.concatenate(out)


def _z_tests(draws, target, gen, z_crit):
    """Two-sided z-tests of E[est] = target along the target itself and random projections.

    Returns the z scores and, per projection, the relative bias along it that the test detects with probability
    0.99 (``(z_crit + z_0.99) * stderr / |<u, target>|``): the power statement of the check."""
    z, detectable = [], []
    z_power = float(stats.norm.isf(0.01))
    for k in range(N_PROJECTIONS):
        # the target's own direction is where a multiplicative bias shows most; the others catch the rest
        u = target if k == 0 else gen.standard_normal(target.shape)
        s = np.einsum("tij,ij->t", draws, u)
        se = s.std(ddof=1) / np.sqrt(s.size)
        expected = float(np.sum(u * target))
        z.append((s.mean() - expected) / se)
        detectable.append((z_crit + z_power) * se / abs(expected))
    return np.array(z), np.array(detectable)


#: size -> (n, d, b, m, independent chains, T grid); the chains run to the last T.
RESIDUAL_SIZES = {"quick": (256, 16, 16, 16, 4, (4, 16, 64, 256, 1024)),
                  "full": (1024, 32, 32, 32, 8, (4, 16, 64, 256, 1024, 4096))}


def run_residual_unbiased(size="quick", rng=0, backend="auto") -> ClaimResult:
    """Mean of T residual estimates against the exact ``A_res [V, 1]``: z-tests and the T^(-1/2) slope."""
    check_size(size, "practical_residual_unbiased")
    n, d, b, m, chains, t_grid = RESIDUAL_SIZES[size]
    t_grid = np.array(t_grid)
    t_max = int(t_grid[-1])
    gen_inst, gen_lsh, gen_proj, *gen_draws = trial_generators(rng, 3 + chains + 2)
    Q, K, V = _instance(n, d, gen_inst)
    lsh = AngularLSH(d, 7, rng=gen_lsh)
    mask = block_mask(Q, K, lsh, b)
    target = (np.exp(Q @ K.T) * ~mask) @ _with_ones(V)
    target_norm = np.linalg.norm(target)

    errors = np.empty((chains, t_grid.size))
    pooled = []
    for c in range(chains):
        draws = _draws(Q, K, V, lsh, b, m, "values", t_max, gen_draws[c], backend)
        prefix = np.cumsum(draws, axis=0)
        errors[c] = [np.linalg.norm(prefix[T - 1] / T - target) / target_norm for T in t_grid]
        pooled.append(draws)
    median = np.median(errors, axis=0)
    fit = slope_fit(t_grid, median)
    rules = ("values", "uniform", "columns")
    z_crit = float(stats.norm.isf(ALPHA / (2 * N_PROJECTIONS * len(rules))))
    z, detectable = {}, {}
    z["values"], detectable["values"] = _z_tests(np.concatenate(pooled), target, gen_proj, z_crit)
    # The two other sampling rules are unbiased too (any p > 0 on the unmasked keys); fewer draws each.
    for k, rule in enumerate(rules[1:]):
        draws = _draws(Q, K, V, lsh, b, m, rule, t_max, gen_draws[chains + k], backend)
        z[rule], detectable[rule] = _z_tests(draws, target, gen_proj, z_crit)
    z_max = max(float(np.max(np.abs(v))) for v in z.values())
    # power statement: the bias along the target's direction each rule detects with probability 0.99
    bias_detectable = max(float(v[0]) for v in detectable.values())
    slope_verdict = interval_verdict(fit.ci_low, fit.ci_high, SLOPE, SLOPE_TOL)
    if z_max > z_crit or slope_verdict == "fails":
        verdict = "fails"
    else:
        verdict = slope_verdict
    # work relative to exact: b exact entries plus m samples per query, out of n keys
    work_fraction = (b + m) / n
    verdict = exact_regime(work_fraction, verdict)
    return ClaimResult(
        name="practical_residual_unbiased", source="Algorithm 3, step 4 (docs/math.md §8.10)",
        claim="The masked importance-sampled residual est(A_res [V,1]) is unbiased; the mean of T independent "
              "draws has relative error ~ T^(-1/2)",
        data=f"clustered synthetic n={n}, d={d}, b={b}, m={m}, r=7 (one fixed hash); {chains} chains of "
             f"{t_max} draws (authors' 'values' sampling) + {t_max} draws each for 'uniform' and 'columns'",
        measured={"T": t_grid, "median_relative_error": median, "slope": fit.slope,
                  "slope_ci": [fit.ci_low, fit.ci_high], "max_abs_z": z_max, "z_critical": z_crit,
                  "z": z, "detectable_relative_bias": detectable, "work_fraction": work_fraction,
                  "residual_share": float(target_norm / np.linalg.norm(np.exp(Q @ K.T) @ _with_ones(V)))},
        expected=f"slope CI inside {SLOPE} +- {SLOPE_TOL}; |z| < {z_crit:.2f} (two-sided, family-wise false-fail "
                 f"rate {ALPHA:g}, Bonferroni over {N_PROJECTIONS} projections x {len(rules)} sampling rules); "
                 "docs/math.md §8.10 measured 0.097, 0.027, 0.0094 at T = 10, 100, 1000 on its own instance",
        verdict=verdict_word(verdict), seeds=[rng],
        details=f"slope {fit.slope:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]: {slope_verdict}; largest |z| "
                f"{z_max:.2f} against {z_crit:.2f}; power 0.99 against a relative bias of {bias_detectable:.4f} along "
                f"the target (worst rule); work fraction {work_fraction:.3f} (b + m of n keys per query). "
                + (f"Verdict reason: {verdict_reason(verdict)}. " if verdict_reason(verdict) else "")
                + "Target (A o (1 - M)) [V,1] from the block mask built here in plain loops, not from the library",
        figure_data={"T": t_grid, "errors": errors, "slope": fit.slope, "intercept": fit.intercept},
    )


# (n_q, n_k, d, d_v, b, order): equal split, a last short block with n_q != n_k, and the BigGAN shape ratio.
SPARSE_CASES = ((512, 512, 16, 16, 32, "gray"), (600, 256, 16, 24, 24, "authors"), (512, 128, 16, 64, 16, "gray"))


def run_sparse_exact(size="quick", rng=0, backend="auto") -> ClaimResult:
    """Library ``A_spar [V,1]`` against the dense block-restricted product, on every host backend."""
    check_size(size, "practical_sparse_exact")
    backends = ("numpy", "numba") if backend == "auto" else (backend,)
    reps = 1 if size == "quick" else 5
    gens = trial_generators(rng, len(SPARSE_CASES) * reps)
    rows, worst = [], 0.0
    for i, (n_q, n_k, d, dv, b, order) in enumerate(SPARSE_CASES * reps):
        g = gens[i]
        Q, K, _ = _instance(max(n_q, n_k), d, g)
        Q, K, V = Q[:n_q], K[:n_k], g.standard_normal((n_k, dv))
        lsh = AngularLSH(d, 7, rng=g)
        A_spar = np.exp(Q @ K.T) * block_mask(Q, K, lsh, b, order)
        V1 = _with_ones(V)
        ref, scale = A_spar @ V1, A_spar @ np.abs(V1)  # scale: sum of |terms|, the rounding yardstick
        for be in backends:
            res = kdeformer_practical(Q, K, V, bucket_size=b, n_samples=16, order=order, lsh=lsh,
                                      rng=g.integers(2**32), backend=be)
            err = float(np.max(np.abs(unshifted_parts(res)[0] - ref) / scale))
            worst = max(worst, err)
            rows.append({"n_q": n_q, "n_k": n_k, "b": b, "order": order, "backend": be, "rel_error": err})
    return ClaimResult(
        name="practical_sparse_exact", source="Algorithm 3, step 3 (docs/math.md §8.11)",
        claim="The sparse part equals A_spar [V,1]: exp(QK^T) restricted to the LSH-sorted diagonal blocks",
        data=f"{len(rows)} runs: shapes (n_q, n_k, b) in {[c[:2] + (c[4],) for c in SPARSE_CASES]}, "
             f"backends {backends}, both bucket orders",
        measured={"max_rel_error": worst, "runs": rows},
        expected=f"max |lib - ref| / (|A_spar| |[V,1]|) <= {SPARSE_RTOL:g} (rounding; docs/math.md §8.11 measured "
                 "~1e-16)",
        verdict="holds" if worst <= SPARSE_RTOL else "fails", seeds=[rng],
        details="reference mask from the definitions in plain loops (bucket_position, block_mask): no library code",
    )


RESIDUAL_UNBIASED = ClaimSpec("practical_residual_unbiased", "Algorithm 3 (docs/math.md §8.10)",
                              "Residual estimator unbiased, error ~ T^(-1/2)", run_residual_unbiased)
SPARSE_EXACT = ClaimSpec("practical_sparse_exact", "Algorithm 3 (docs/math.md §8.11)",
                         "Sparse part equals the block-restricted product", run_sparse_exact)
