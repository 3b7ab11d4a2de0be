"""Corollary 3.4 at scale: KDEformer (Algorithm 1) against exact attention on bounded-diameter inputs,
max ||q_i - k_j||^2 <= c ln n, for growing n; counted work, wall time, the error of eq. (2), fitted exponents and
the measured crossover.

    python -m benchmarks.theory_scaling                        # CPU, n = 2^10 ... 2^13, c = 0.25, d = 32
    python -m benchmarks.theory_scaling --device gpu --cs 0.25 --dims 32 --budget-s 480
    python -m benchmarks.theory_scaling --threshold            # from which n worst-case sizing samples (no timing)

Instances: queries and keys in a ball of radius sqrt(c ln n)/2 (so the diameter bound holds by construction;
:func:`proofs_checks.theorem_3_4_attention.ball_instance`), heavy-tailed values, ``--dtype`` (float32 default:
SDPA runs in fp32 on the same data). KDEformer uses the random-sampling KDE under ``--sizing`` (``adaptive``:
empirical-Bernstein stopping; ``worst_case``: median of means at the density floor), a fixed m, and the backend
of the data (``cupy`` on the GPU: every stage on the device). Exact attention is timed twice: our
``softmax_attention`` and PyTorch's ``scaled_dot_product_attention`` (fp32, through DLPack, flash or
memory-efficient kernels, so it scales in memory).

The error of eq. (2), ``||O~ - O||_2 / (||D^-1 A||_2 ||V||_2)``: the numerator and ||V||_2 exactly (n x d
matrices, through their d x d Gram matrices); ||D^-1 A||_2 by power iteration on ``P^T P`` in key blocks of the
chunk budget (``_config.CHUNK_BYTES``), never forming the n x n matrix. Every iterate's ``||P x|| / ||x||`` is a
lower bound of ||P||_2 (and ``P 1 = 1`` gives ``>= 1``), so the ratio is an upper bound; for n <= ``--exact-max``
the iteration runs to convergence (relative change < 1e-9, reported ``exact``), above it for ``--power-iters``
iterations (reported ``bound``).

Per configuration (c, d, sizing): work and time exponents with 95 % intervals (``proofs_checks._stats.slope_fit``;
KDEformer fitted over the sizes where both KDE stages sampled), and the crossover: the first n of the run where
KDEformer is faster than each exact method, with the ratio. ``--budget-s`` bounds the command: before each n the
time of that size is projected from the previous one (quadratic growth, the conservative case) and the
configuration stops adding sizes when the projection exceeds its share of the remaining time.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import time
from pathlib import Path

import numpy as np

from kdetheory import _config
from kdetheory.attention import kdeformer, softmax_attention
from kdetheory.kde import RandomSamplingKDE

from . import _measure

KDE_STAGES = ("row_sums_kde", "column_norm_kde")
EXACT_METHODS = ("ours", "sdpa")
CPU_SIZES = [1 << k for k in range(10, 14)]
GPU_SIZES = [1 << k for k in range(12, 21)]


# ------------------------------------------------------------------------------------------------------------
# Instances and timing


def instance(n, d, c, seed, xp, dtype):
    """(Q, K, V) of n points in the ball of radius sqrt(c ln n)/2, in the namespace xp and the given dtype."""
    from proofs_checks.theorem_3_4_attention import ball_instance

    gen = np.random.default_rng(seed)
    return tuple(xp.ascontiguousarray(xp.asarray(a, dtype=dtype))
                 for a in ball_instance(n, n, d, math.sqrt(c * math.log(n)) / 2, gen))


def timed(fn, xp):
    """(result, wall seconds) of one call, the device synchronised around it."""
    _measure.sync(xp)
    start = time.perf_counter()
    out = fn()
    _measure.sync(xp)
    return out, time.perf_counter() - start


def sdpa(Q, K, V):
    """PyTorch's scaled_dot_product_attention at logit scale 1 on the same memory (DLPack), as an array of Q's
    namespace; None when PyTorch is missing."""
    try:
        import torch
    except ImportError:
        return None
    q, k, v = (torch.from_dlpack(a)[None, None] for a in (Q, K, V))
    with torch.no_grad():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)[0, 0]
    return _measure.xp_of(Q).from_dlpack(out.contiguous())


# ------------------------------------------------------------------------------------------------------------
# The error of eq. (2)


def _key_blocks(n):
    """Key-block length that keeps one n x block float64 logit slab within the chunk budget."""
    return max(1, min(n, _config.CHUNK_BYTES // (8 * n)))


def log_row_sums(Q, K, xp):
    """log D_ii = log sum_j e^{<q_i, k_j>}, max-shifted per block and combined in float64."""
    n_k, b = K.shape[0], _key_blocks(Q.shape[0])
    acc = xp.full(Q.shape[0], -xp.inf, dtype=xp.float64)
    for s in range(0, n_k, b):
        L = (Q @ K[s:s + b].T).astype(xp.float64)
        top = L.max(axis=1)
        block = top + xp.log(xp.exp(L - top[:, None]).sum(axis=1))
        acc = xp.logaddexp(acc, block)
    return acc


def _apply(Q, K, log_d, x, transpose, xp):
    """P x (or P^T x) for P = D^-1 A, in key blocks: P_b = exp(Q K_b^T - log D)."""
    n_k, b = K.shape[0], _key_blocks(Q.shape[0])
    out = xp.zeros(n_k if transpose else Q.shape[0], dtype=xp.float64)
    for s in range(0, n_k, b):
        P = xp.exp((Q @ K[s:s + b].T).astype(xp.float64) - log_d[:, None])
        if transpose:
            out[s:s + b] = P.T @ x
        else:
            out += P @ x[s:s + b]
    return out


def attention_matrix_norm(Q, K, xp, iterations, tol=1e-9, seed=0):
    """(lower bound of ||D^-1 A||_2, converged) by power iteration on P^T P from 1 plus noise.

    Every iterate gives ``||P x|| / ||x|| <= ||P||_2``; P is row-stochastic, so 1 is a lower bound too.
    """
    log_d = log_row_sums(Q, K, xp)
    x = xp.asarray(1.0 + 0.1 * np.random.default_rng(seed).standard_normal(K.shape[0]))
    best, previous = 1.0, 0.0
    for _ in range(iterations):
        x = x / xp.linalg.norm(x)
        y = _apply(Q, K, log_d, x, False, xp)
        estimate = float(xp.linalg.norm(y))
        best = max(best, estimate)
        if abs(estimate - previous) <= tol * estimate:
            return best, True
        previous = estimate
        x = _apply(Q, K, log_d, y, True, xp)
    return best, False


def tall_norm(M, xp):
    """||M||_2 of an n x d matrix from its d x d Gram matrix (float64)."""
    M = M.astype(xp.float64)
    return float(math.sqrt(max(float(xp.linalg.eigvalsh(M.T @ M)[-1]), 0.0)))


def eq2_error(out, exact, V, p_norm):
    """``||out - exact||_2 / (p_norm ||V||_2)``: eq. (2)'s ratio (an upper bound when p_norm is a lower bound)."""
    xp = _measure.xp_of(out)
    return tall_norm(out - exact, xp) / (p_norm * tall_norm(V, xp))


# ------------------------------------------------------------------------------------------------------------
# One configuration (c, d): sizes ascending under a time budget


def kdeformer_run(Q, K, V, args, sizing, seed, xp):
    """One timed KDEformer call: (output, row of counts and time)."""
    kde = functools.partial(RandomSamplingKDE, sizing=sizing)
    backend = "cupy" if xp is not np else "auto"
    res, seconds = timed(lambda: kdeformer(Q, K, V, eps=args.eps, n_samples=args.samples, kde=kde, rng=seed,
                                           backend=backend), xp)
    n = Q.shape[0]
    cost = res.cost
    return res.output, {
        "seconds": seconds, "work": int(cost.kernel_evaluations + cost.hash_evaluations),
        "kde_work": int(sum(cost.stage(s).kernel_evaluations + cost.stage(s).hash_evaluations for s in KDE_STAGES)),
        "fractions": {s: cost.stage(s).kernel_evaluations / n**2 for s in KDE_STAGES}}


def exact_runs(Q, K, V, methods, xp):
    """{method: (output, seconds)} of the exact attentions still within budget."""
    calls = {"ours": lambda: softmax_attention(Q, K, V), "sdpa": lambda: sdpa(Q, K, V)}
    out = {}
    for m in methods:
        o, t = timed(calls[m], xp)
        if o is not None:
            out[m] = (o, t)
    return out


def run_config(c, d, args, xp, dtype, deadline):
    """Rows of one (c, d) configuration: every n of ``args.sizes`` that fits before ``deadline``."""
    rows, methods, last = [], list(args.exact), None
    for n in args.sizes:
        remaining = deadline - time.perf_counter()
        if last is not None:
            growth = (n / last["n"]) ** 2
            projected = growth * last["total_s"]
            if projected > remaining:
                print(f"c={c} d={d}: stop before n={n} (projected {projected:.0f} s > {remaining:.0f} s left)")
                break
            # an exact method whose own projection takes over half the time left is dropped, the rest go on
            methods = [m for m in methods if growth * last.get(f"exact_{m}_s", 0.0) <= remaining / 2]
        start = time.perf_counter()
        Q, K, V = instance(n, d, c, seed=[n, d, round(c * 1000)], xp=xp, dtype=dtype)
        exact = exact_runs(Q, K, V, methods, xp)
        p_norm, converged = attention_matrix_norm(Q, K, xp, 300 if n <= args.exact_max else args.power_iters)
        reference = next(iter(exact.values()))[0] if exact else None
        row = {"c": c, "d": d, "n": n, "p_norm_lower_bound": p_norm, "p_norm_converged": converged,
               **{f"exact_{m}_s": t for m, (_, t) in exact.items()}, "kdeformer": {}}
        for sizing in args.sizing:
            out, r = kdeformer_run(Q, K, V, args, sizing, seed=n + d, xp=xp)
            if reference is not None:
                r["eq2_error"] = eq2_error(out, reference, V, p_norm)
                r["eq2_error_kind"] = "exact" if n <= args.exact_max and converged else "bound"
            row["kdeformer"][sizing] = r
        row["total_s"] = time.perf_counter() - start
        rows.append(row)
        last = row
        print(json.dumps(row), flush=True)
    return rows


# ------------------------------------------------------------------------------------------------------------
# Fits and crossovers


def _fit(ns, ys):
    """slope_fit as a dict (None with fewer than three points)."""
    from proofs_checks._stats import slope_fit

    if len(ns) < 3:
        return None
    f = slope_fit(ns, ys)
    return {"exponent": f.slope, "ci": [f.ci_low, f.ci_high], "n": list(ns)}


def summarise(rows, sizings):
    """Per (c, d): exponent fits of exact times, KDEformer work and time, and the measured crossovers."""
    out = []
    for key in sorted({(r["c"], r["d"]) for r in rows}):
        rs = [r for r in rows if (r["c"], r["d"]) == key]
        entry = {"c": key[0], "d": key[1], "exact_time": {}, "kdeformer": {}}
        for m in EXACT_METHODS:
            have = [r for r in rs if f"exact_{m}_s" in r]
            entry["exact_time"][m] = _fit([r["n"] for r in have], [r[f"exact_{m}_s"] for r in have])
        for s in sizings:
            sampled = [r for r in rs if max(r["kdeformer"][s]["fractions"].values()) < 1]
            ns = [r["n"] for r in sampled]
            entry["kdeformer"][s] = {
                "sampled_n": ns,
                "kde_work": _fit(ns, [r["kdeformer"][s]["kde_work"] for r in sampled]),
                "work": _fit(ns, [r["kdeformer"][s]["work"] for r in sampled]),
                "time": _fit(ns, [r["kdeformer"][s]["seconds"] for r in sampled]),
                "crossover": {m: crossover(rs, s, m) for m in EXACT_METHODS},
                "work_below_n2_from": next((r["n"] for r in rs if r["kdeformer"][s]["work"] < r["n"] ** 2), None)}
        out.append(entry)
    return out


def crossover(rows, sizing, method):
    """First n of the run at which KDEformer (this sizing, both KDE stages sampling) is faster than exact
    ``method``, with the time ratio; None when it never is (or the method did not run). A KDEformer whose KDE stages
    answered exactly does exact attention's work and more: beating a slower exact code there is no crossover."""
    for r in rows:
        t_exact, k = r.get(f"exact_{method}_s"), r["kdeformer"][sizing]
        if t_exact is not None and max(k["fractions"].values()) < 1 and k["seconds"] < t_exact:
            return {"n": r["n"], "exact_over_kdeformer": t_exact / r["kdeformer"][sizing]["seconds"],
                    "first_size_run": r["n"] == rows[0]["n"]}
    return None


def _fmt_fit(f):
    return "n/a (< 3 sizes)" if f is None else f"{f['exponent']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}]"


def _fmt_pow2(n):
    return "beyond 2^40" if n is None else f"2^{n.bit_length() - 1} = {n:,}"


def markdown(rows, summary, header):
    """The results table and the fits as markdown."""
    fmt = _fmt_fit
    lines = [header, "", ("| c | d | n | sizing | work / n^2 | KDE stage fractions (rows, cols) | KDEformer s | "
                          "ours s | SDPA s | eq. (2) error |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for s, k in r["kdeformer"].items():
            err = f"{k['eq2_error']:.3g} ({k['eq2_error_kind']})" if "eq2_error" in k else "n/a"
            t = {m: f"{r[f'exact_{m}_s']:.3g}" if f"exact_{m}_s" in r else "skipped" for m in EXACT_METHODS}
            fr = k["fractions"]
            lines.append(f"| {r['c']} | {r['d']} | {r['n']} | {s} | {k['work'] / r['n'] ** 2:.3f} | "
                         f"{fr['row_sums_kde']:.3f}, {fr['column_norm_kde']:.3f} | {k['seconds']:.3g} | "
                         f"{t['ours']} | {t['sdpa']} | {err} |")
    lines += ["", ("Exponents (slope of log y on log n, 95 % interval; KDEformer over the sizes where both KDE stages "
                   "sampled):"), "",
              ("| c | d | exact ours time | exact SDPA time | sizing | KDE-stage work | total work | KDEformer time | "
               "crossover vs ours | crossover vs SDPA | work < n^2 from |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        for s, k in e["kdeformer"].items():
            cross = {m: "none in range" if k["crossover"][m] is None else
                     (f"n = {k['crossover'][m]['n']} ({k['crossover'][m]['exact_over_kdeformer']:.2f}x)"
                      + (" (first size run)" if k["crossover"][m]["first_size_run"] else ""))
                     for m in EXACT_METHODS}
            lines.append(f"| {e['c']} | {e['d']} | {fmt(e['exact_time']['ours'])} | {fmt(e['exact_time']['sdpa'])} "
                         f"| {s} | {fmt(k['kde_work'])} | {fmt(k['work'])} | {fmt(k['time'])} | {cross['ours']} | "
                         f"{cross['sdpa']} | {k['work_below_n2_from'] or 'none in range'} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------
# The worst-case sizing threshold (no timing)


def write_threshold(path):
    """The extrapolation behind Corollary 3.4's worst-case sub-verdict: per diameter constant c, the smallest
    n = 2^k at which the row-sum and column-norm KDEs' worst-case per-query sample budgets (the settings of the
    claim corollary_3_4_runtime) plus m fall below n and below n/2. A budget, not a measurement: read from the
    library's sizing rule, so it moves when that rule does."""
    from proofs_checks import corollary_3_4_runtime as cor

    lines = [(f"Date {_measure.today()}; claim settings eps = {cor.EPS}, delta = {cor.DELTA}, m = {cor.M}, "
              f"d = {cor.D}, kde = sampling, worst-case sizing. Generated by "
              "`python -m benchmarks.theory_scaling --threshold`. (Adaptive sizing samples at every size the claim "
              "runs: see the claim's record.)"), "",
             "| c | budgets (rows, columns) at n = 2^16 | both stages sample from n | work below n^2/2 from n |",
             "|---|---|---|---|"]
    for c in (0.25, 0.5, 1.0):
        rows, cols = cor.stage_budgets(1 << 16, c)
        first, half = cor.sampling_threshold(1.0, c), cor.sampling_threshold(0.5, c)
        lines.append(f"| {c} | {rows:,}, {cols:,} | {_fmt_pow2(first)} | {_fmt_pow2(half)} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="n values, ascending (default 2^10..2^13 on cpu, 2^12..2^20 on gpu)")
    p.add_argument("--cs", type=float, nargs="+", default=[0.25], help="diameter constants c (gamma^2 = c ln n)")
    p.add_argument("--dims", type=int, nargs="+", default=[32])
    p.add_argument("--sizing", nargs="+", choices=("worst_case", "adaptive"), default=["adaptive"])
    p.add_argument("--exact", nargs="*", choices=EXACT_METHODS, default=list(EXACT_METHODS))
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--samples", type=int, default=256, help="m, the sampled keys of Algorithm 1")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--exact-max", type=int, default=1 << 14,
                   help="largest n whose ||D^-1 A||_2 is iterated to convergence (above: a bound)")
    p.add_argument("--power-iters", type=int, default=3, help="power iterations above --exact-max")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget of the whole command")
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/theory_scaling_<device>)")
    p.add_argument("--threshold", action="store_true",
                   help="only write benchmarks/results/corollary_threshold.md: the n from which both KDE stages "
                        "sample under worst-case sizing, for c in 0.25, 0.5, 1")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = GPU_SIZES if args.device == "gpu" else CPU_SIZES
    if sorted(args.sizes) != args.sizes or min(args.sizes) < 16:
        p.error(f"--sizes: got {args.sizes}; pass ascending sizes >= 16")
    if not 0 < args.eps < 1:
        p.error(f"--eps: got {args.eps}; pass a value in (0, 1)")
    if args.budget_s <= 0 or args.samples < 1:
        p.error("--budget-s and --samples must be positive")
    if min(args.cs) <= 0 or min(args.dims) < 1:
        p.error(f"--cs {args.cs} / --dims {args.dims}: pass positive diameter constants and dimensions")
    return args


def main(argv=None):
    args = parse(argv)
    if args.threshold:
        write_threshold(Path("benchmarks/results/corollary_threshold.md"))
        return
    if args.device == "gpu":
        from kdetheory._array import get_cupy

        xp = get_cupy()
    else:
        xp = np
    dtype = np.dtype(args.dtype)
    start = time.perf_counter()
    # Warm-up on a tiny instance: numba compilation and CuPy kernel caches stay out of the timings.
    Qw, Kw, Vw = instance(256, args.dims[0], args.cs[0], 0, xp, dtype)
    exact_runs(Qw, Kw, Vw, args.exact, xp)
    for s in args.sizing:
        kdeformer_run(Qw, Kw, Vw, args, s, 0, xp)
    rows, configs = [], [(c, d) for c in args.cs for d in args.dims]
    for i, (c, d) in enumerate(configs):
        # each configuration gets an equal share of the time left
        share = (args.budget_s - (time.perf_counter() - start)) / (len(configs) - i)
        rows += run_config(c, d, args, xp, dtype, time.perf_counter() + share)
    summary = summarise(rows, args.sizing)
    header = (f"Machine: {_measure.machine(xp)}; date {_measure.today()}; {args.device}, {args.dtype}; ball instances "
              f"of squared diameter <= c ln n; eps = {args.eps}, m = {args.samples}, kde = random sampling "
              f"({', '.join(args.sizing)} sizing); wall {time.perf_counter() - start:.0f} s of a {args.budget_s:.0f} s "
              "budget. eq. (2) error: exact where ||D^-1 A||_2 converged (n <= "
              f"{args.exact_max}), else an upper bound ({args.power_iters} power iterations).")
    text = markdown(rows, summary, header)
    out = Path(args.out or f"benchmarks/results/theory_scaling_{args.device}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"header": header, "args": vars(args), "rows": rows,
                                                    "summary": summary}, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
