"""Figure 4: relative spectral error versus feature dimension for every method on GloVe (the authors' protocol),
in the paper's metric and in the guarantee's metric (eq. 2). Data: claim ``figure_4_budget``
(proofs_checks/figure_4_budget.py, which runs benchmarks.budget at a quick size)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from proofs_checks._harness import load_claim_data

from . import _style

NAME = "figure_4_budget"
CLAIMS = ("figure_4_budget",)
# The paper's four methods drawn solid and thick; the others thin and dashed.
PAPER_METHODS = ("kdeformer", "performer", "reformer", "scatterbrain")


def make(results_dir, outdir):
    data = load_claim_data("figure_4_budget", results_dir)
    methods = list(data["methods"])
    fdim = np.asarray(data["feature_dimension"], float)
    _style.apply()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), sharex=True)
    for ax, key, ylabel in ((axes[0], "paper_error", r"$\|\tilde A - Att\|_2 / \|Att\|_2$"),
                            (axes[1], "guarantee_error", r"$\|\tilde A - Att\|_2 / (\|D^{-1}A\|_2\|V\|_2)$")):
        err = np.asarray(data[key], float)
        for i, method in enumerate(methods):
            ok = np.isfinite(err[i]) & np.isfinite(fdim[i])
            main = method in PAPER_METHODS
            color = _style.color_for("reformer" if method == "reformer_authors" else method)
            ax.loglog(fdim[i, ok], err[i, ok], "o-" if main else "x--", color=color, lw=2.2 if main else 1.0,
                      alpha=1.0 if main else 0.7, label=method.replace("_", " "))
        ticks = 2.0 ** np.arange(np.floor(np.log2(np.nanmin(fdim))), np.ceil(np.log2(np.nanmax(fdim))) + 1)
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())  # the default minor labels (3x10^2, ...) collide
        ax.set_xlabel("feature dimension")
        ax.set_ylabel(ylabel)
    axes[0].set_title("paper metric", fontsize=10)
    axes[1].set_title("guarantee metric, eq. (2)", fontsize=10)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    instances = ", ".join(str(int(i)) for i in np.atleast_1d(data["instances"]))
    fig.suptitle(f"KDEformer Figure 4: error vs feature dimension, GloVe 6B-50d, n = {int(data['n'])} "
                 f"(instances {instances})", fontsize=11)
    fig.tight_layout()
    return _style.save(fig, NAME, outdir)
