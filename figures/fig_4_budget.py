"""Figure 4, fair: relative spectral error (paper metric) of every method on GloVe against four cost axes — the
paper's feature dimension, exact kernel entries per query, FLOPs and wall time — with the trivial outputs (zeros,
mean of V) drawn as the levels a method must beat. Data: claim ``figure_4_budget``
(proofs_checks/figure_4_budget.py, the Figure-4 protocol of proofs_checks.protocols.budget at a quick size)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from proofs_checks import results

from . import _style

NAME = "figure_4_budget"
CLAIMS = ("figure_4_budget",)
# The paper's four methods drawn solid and thick; the others thin and dashed.
PAPER_METHODS = ("kdeformer", "performer", "reformer", "scatterbrain")
XLABELS = {"feature_dimension": "feature dimension (paper's axis)", "kernel_entries_per_query":
           "exact kernel entries per query", "flops": "FLOPs", "seconds": "wall time (s, single runs)"}


def make(results_dir, outdir):
    data = results.load("figure_4_budget", results_dir)
    rows, methods, axes = data["rows"], list(data["methods"]), list(data["axes"])
    trivial = data["trivial"]
    mean_v = np.median([t["mean_of_v"]["paper_error"] for t in trivial.values()])
    _style.apply()
    fig, panels = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 4.2))
    for ax, axis in zip(panels, axes):
        for method in methods:
            pts = {}
            for r in rows:
                if r["method"] == method and r[axis] is not None and r[axis] > 0:
                    pts.setdefault(r["budget"], []).append((r[axis], r["paper_error"]))
            if not pts:
                continue
            x, y = np.array([np.median(np.array(v), axis=0) for _, v in sorted(pts.items())]).T
            main = method in PAPER_METHODS
            color = _style.color_for("reformer" if method == "reformer_authors" else method)
            ax.loglog(x, y, "o-" if main else "x--", color=color, lw=2.2 if main else 1.0,
                      alpha=1.0 if main else 0.7, label=method.replace("_", " "))
        ax.axhline(1.0, color="0.3", ls=":", lw=1.2, label="zeros (error 1)")
        ax.axhline(mean_v, color="0.3", ls="-.", lw=1.2, label=f"mean of V ({mean_v:.3g})")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the default minor labels (3x10^2, ...) collide
        ax.set_xlabel(XLABELS.get(axis, axis))
        ax.set_ylabel(r"$\|\tilde A - Att\|_2 / \|Att\|_2$")
    panels[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    instances = ", ".join(str(int(i)) for i in np.atleast_1d(data["instances"]))
    fig.suptitle(f"KDEformer Figure 4, fair axes: GloVe 6B-50d, n = {int(data['n'])} (instances {instances}; "
                 "medians over instances)", fontsize=11)
    fig.tight_layout()
    return _style.save(fig, NAME, outdir)
