"""Figure 3: the decomposition D^-1 A = D^-1 A_spar + D^-1 A_res as heat maps, in the LSH-sorted frame. In the
residual panel black marks entries already in A_spar and blank (white) columns are keys not sampled by Pi_res.
Data: saved by claim ``figure_2_stable_rank`` (proofs_checks/figure_2_stable_rank.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from proofs_checks import results

from . import _style

NAME = "figure_3_decomposition"
CLAIMS = ("figure_2_stable_rank",)


def make(results_dir, outdir):
    data = results.load("figure_2_stable_rank", results_dir)
    P, mask = np.asarray(data["fig3_P"]), np.asarray(data["fig3_mask"]).astype(bool)
    sampled = np.asarray(data["fig3_sampled"], dtype=int)
    positive = P[P > 0]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-6), vmax=positive.max())
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")  # masked entries are drawn in white: unsampled columns, entries outside a part
    _style.apply()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    spar = np.ma.masked_where(~mask, P)
    kept = np.zeros(P.shape[1], dtype=bool)
    kept[sampled] = True
    res = np.ma.masked_where(mask | ~kept[None, :], P)
    titles = (r"$D^{-1}A$", r"$D^{-1}A_{spar}$ (LSH diagonal blocks)",
              rf"$D^{{-1}}A_{{res}}$ on the {sampled.size} distinct sampled columns")
    for ax, M, title in zip(axes, (P, spar, res), titles):
        im = ax.imshow(M, cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key (sorted)")
        ax.grid(False)
    axes[0].set_ylabel("query (sorted)")
    black = np.ma.masked_where(~mask, np.ones_like(P))
    axes[2].imshow(black, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")  # A_spar entries in black
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="attention weight (log scale)")
    fig.suptitle(f"KDEformer Figure 3: $D^{{-1}}A = D^{{-1}}A_{{spar}} + D^{{-1}}A_{{res}}$ — {data['fig3_label']}",
                 fontsize=11)
    return _style.save(fig, NAME, outdir)
