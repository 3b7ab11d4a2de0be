"""Where the time of ``kdeformer_practical`` goes, stage by stage (hash+sort, gather, sampling
distribution, draw, diagonal blocks, sampled residual, merge), on the CPU or the GPU.

    python -m benchmarks.profile_practical --device gpu --n 65536 --d 64 --heads 1 --bucket-size 128 --n-samples 256

Each stage function of ``kdetheory.attention.practical`` is wrapped by a timer that
synchronises the device before and after it, so the stage times add up to the total (the
synchronisation itself removes some overlap: the total is reported both ways).
"""
from __future__ import annotations

import argparse
import collections
import functools
import time

import numpy as np

from kdetheory.attention import _blocks, practical
from kdetheory.datasets.synthetic import attention_instance

from . import _measure

STAGES = {
    (practical, "_sort_by_bucket"): "hash + sort",
    (practical, "_gather_rows"): "gather (sort Q, K, V)",
    (practical, "_probabilities"): "sampling distribution",
    (practical, "_draw"): "draw samples (inverse CDF, on the inputs' device)",
    (_blocks, "block_diagonal_products"): "diagonal blocks (A_spar, key ranges)",
    (_blocks, "masked_sampled_products"): "sampled residual (A_res, index list)",
    (_blocks, "finish"): "merge + normalise + un-permute",
}


def instrument(xp, totals):
    originals = {}
    for (module, name), label in STAGES.items():
        fn = getattr(module, name)
        originals[(module, name)] = fn

        @functools.wraps(fn)
        def timed(*a, _fn=fn, _label=label, **k):
            _measure.sync(xp)
            t0 = time.perf_counter()
            out = _fn(*a, **k)
            _measure.sync(xp)
            totals[_label] += time.perf_counter() - t0
            return out

        setattr(module, name, timed)
    return originals


def profile(Q, K, V, kwargs, xp, repeat=3):
    """``{"total": s, "synced": s, stage label: s}`` of ``kdeformer_practical(Q, K, V, **kwargs)`` (medians/means)."""
    run = lambda: practical.kdeformer_practical(Q, K, V, **kwargs, rng=0)  # noqa: E731
    run()
    plain = _measure.median_time(run, xp, repeat=repeat)
    totals = collections.defaultdict(float)
    originals = instrument(xp, totals)
    try:
        _measure.sync(xp)
        t0 = time.perf_counter()
        for _ in range(repeat):
            run()
        _measure.sync(xp)
        synced = (time.perf_counter() - t0) / repeat
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    stages = {label: totals[label] / repeat for label in STAGES.values()}
    stages["other (validation, reshapes, cost)"] = synced - sum(stages.values())
    return {"total": plain, "synced": synced, "stages": stages}


def to_markdown(prof):
    lines = ["| stage | ms | share |", "|---|---|---|"]
    lines += [f"| {label} | {t * 1e3:.3f} | {t / prof['synced']:.0%} |" for label, t in prof["stages"].items()]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--bucket-size", type=int, default=128)
    p.add_argument("--n-samples", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if args.device == "gpu":
        from kdetheory._array import get_cupy

        xp = get_cupy()
    else:
        xp = np
    parts = [attention_instance(args.n, args.d, kind="clustered", rng=h) for h in range(args.heads)]
    Q, K, V = (xp.asarray(np.stack([pp[i] for pp in parts]).astype(np.float32)) for i in range(3))
    kwargs = {"bucket_size": args.bucket_size, "n_samples": args.n_samples}
    prof = profile(Q, K, V, kwargs, xp, args.repeat)
    print(f"kdeformer_practical on {_measure.machine(xp)}: n={args.n} d={args.d} heads={args.heads} {kwargs}; "
          f"total {prof['total'] * 1e3:.2f} ms (with stage synchronisation {prof['synced'] * 1e3:.2f} ms)")
    print(to_markdown(prof))


if __name__ == "__main__":
    main()
