"""Corollary 3.4: KDEformer's counted KDE-stage work versus n on bounded-diameter inputs, per sizing of the
random-sampling KDE (adaptive and worst case, each at its own sizes), against exact attention's n^2. Data: claim
``corollary_3_4_runtime``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "corollary_3_4_runtime"
CLAIMS = ("corollary_3_4_runtime",)


def make(results_dir, outdir):
    data = results.load("corollary_3_4_runtime", results_dir)
    _style.apply()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizings = sorted(k[len("work_"):] for k in data if k.startswith("work_"))
    for sizing in sizings:
        ax.loglog(np.asarray(data[f"n_{sizing}"], float), np.asarray(data[f"work_{sizing}"], float), "o-",
                  color=_style.color_for(sizing), label=f"KDEformer, {sizing.replace('_', '-')} sizing")
    n = np.unique(np.concatenate([np.asarray(data[f"n_{s}"], float) for s in sizings]))
    ax.loglog(n, n**2, "k--", label=r"exact attention, $n^2$")
    ax.set_xscale("log", base=2)  # the sizes are powers of two; one label per size, no crowded minor labels
    ax.set_xticks(n, [f"$2^{{{int(round(np.log2(v)))}}}$" for v in n])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("KDE-stage kernel + hash evaluations")
    ax.set_title(rf"Corollary 3.4: KDE-stage work for $\max\|q-k\|^2 \leq {float(data['c'])}\ln n$", fontsize=9)
    ax.legend(fontsize=8)
    return _style.save(fig, NAME, outdir)
