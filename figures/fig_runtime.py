"""Corollary 3.4: KDEformer's counted work versus n on bounded-diameter inputs, per KDE backend,
against exact attention's n^2. Data: claim ``corollary_3_4_runtime``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from proofs_checks import results

from . import _style

NAME = "corollary_3_4_runtime"
CLAIMS = ("corollary_3_4_runtime",)


def make(results_dir, outdir):
    data = results.load("corollary_3_4_runtime", results_dir)
    n = np.asarray(data["n"], float)
    _style.apply()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key in sorted(k for k in data if k.startswith("work_")):
        kde = key[len("work_"):]
        ax.loglog(n, np.asarray(data[key], float), "o-", color=_style.color_for(kde), label=f"KDEformer, kde={kde}")
    ax.loglog(n, n**2, "k--", label=r"exact attention, $n^2$")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("KDE-stage kernel + hash evaluations")
    ax.set_title(rf"Corollary 3.4: KDE-stage work for $\max\|q-k\|^2 \leq {float(data['c'])}\ln n$", fontsize=9)
    ax.legend(fontsize=8)
    return _style.save(fig, NAME, outdir)
